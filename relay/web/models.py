"""The values an HTTP exchange is made of: Request, Response, Handler, ServerLimits, and the error answers.

Pure (no trio, no sockets): the server in ``relay/web/server.py`` builds a :class:`Request` from what h11
parsed, calls a :data:`Handler`, and writes the :class:`Response` it returns. Handlers and the helpers beside
them (``bodies``, ``multipart``, ``routing``, ``cors``) refuse a request by raising :class:`RequestRejected`,
which the server answers with :func:`json_error`'s body; a handler that must not answer at all raises
:class:`DropConnection` (the server closes the connection); any other exception from a handler is answered 500.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Final, TypeAlias

import attrs

from relay import fastjson
from relay.errors import RelayError

__all__ = [
    "DropConnection",
    "Handler",
    "Request",
    "RequestRejected",
    "Response",
    "ServerLimits",
    "build_request",
    "header_tokens",
    "is_websocket_upgrade",
    "json_error",
    "reason_phrase",
]

Headers: TypeAlias = tuple[tuple[str, str], ...]

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"

#: query strings are bounded by the head size already; this bounds the work of splitting one into fields
MAX_QUERY_FIELDS: Final = 1000


@attrs.frozen
class Request:
    """One HTTP request, its body read in full (at most ``ServerLimits.max_body_bytes``)."""

    #: upper-case, e.g. "GET"
    method: str
    #: the raw request target ("/a/b?x=1")
    target: str
    #: percent-decoded path, no query ("*" for ``OPTIONS *``)
    path: str
    #: decoded (name, value) pairs in order
    query: tuple[tuple[str, str], ...]
    #: names lower-case, values latin-1 decoded, in order
    headers: Headers
    body: bytes = attrs.field(repr=False)
    #: the peer's (address, port), when the transport has one
    client: tuple[str, int] | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (exact case), or None."""
        return next((value for key, value in self.query if key == name), None)


@attrs.frozen
class Response:
    """What a handler answers. The server adds Content-Length (and drops any the handler set)."""

    status: int
    headers: Headers = ()
    body: bytes = attrs.field(default=b"", repr=False)

    @classmethod
    def json(cls, obj: object, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """``obj`` as compact UTF-8 JSON (``relay.fastjson``), with a JSON Content-Type."""
        return cls(status, (("content-type", JSON_CONTENT_TYPE), *headers), fastjson.dumps(obj))

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """``text`` as UTF-8 plain text."""
        return cls(status, (("content-type", TEXT_CONTENT_TYPE), *headers), text.encode())


#: answers one request; raising :class:`RequestRejected` answers its status, anything else answers 500
Handler: TypeAlias = Callable[[Request], Awaitable[Response]]


@attrs.frozen(kw_only=True)
class ServerLimits:
    """What one HTTP server accepts from its clients, and how long it waits for them.

    Each timeout is a deadline for a whole phase, not for each read, so a client that trickles bytes
    (slowloris) is cut off just like a silent one.
    """

    #: request line plus headers; h11's default, which it compares with node (80 KiB) and tomcat (8 KiB)
    max_header_bytes: int = attrs.field(default=16 * 1024, validator=attrs.validators.gt(0))
    #: a body is held in memory whole: 32 MiB covers Discord's largest attachment for a bot without boosts
    #: (25 MiB) with room for multipart framing; larger ones are refused with 413 before they are read
    max_body_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=attrs.validators.gt(0))
    #: seconds from a request's first byte to the end of its head; then 408 and close
    header_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    #: seconds from the end of the head to the end of the body; then 408 and close
    body_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    #: seconds a connection may wait for its next request (its first one too) before it is closed silently;
    #: longer than the keep-alive of common clients (httpx 5 s, aiohttp 15 s) so they close first, as nginx's 75 s
    keep_alive_timeout: float = attrs.field(default=75.0, validator=attrs.validators.gt(0))
    #: seconds to write one response to a client that does not read it; then the connection is closed
    send_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    #: connections served at once (upgraded websockets included); more are answered 503 and closed. Each is a
    #: file descriptor: the process's limit (``ulimit -n``, often 1,024) must be above this plus its own files
    max_connections: int = attrs.field(default=1024, validator=attrs.validators.gt(0))


class RequestRejected(RelayError):
    """A request is refused with ``status`` and a message for the client (never a secret, never its body)."""

    def __init__(self, status: int, message: str, *, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.status = status
        self.message = message
        self.headers: Headers = tuple(headers)
        super().__init__(f"HTTP {status}: {message}")

    def response(self) -> Response:
        return json_error(self.status, self.message, headers=self.headers)


class DropConnection(RelayError):
    """Raised by a handler: close the connection without answering the request (nor any pipelined after it).

    For servers that play an unreliable peer on purpose (the Discord emulator's injected ``Drop``: Discord's
    edge sometimes closes a connection mid-request, and the client cannot tell whether the request acted).
    The message is logged at DEBUG.
    """


def reason_phrase(status: int) -> str:
    """RFC 9110's reason phrase for ``status`` ("" for a code it does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def json_error(status: int, message: str, *, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """The JSON error body of every status relay/web answers itself:
    ``{"status": 413, "error": "<reason phrase>", "message": "the body is larger than ..."}``."""
    return Response.json({"status": status, "error": reason_phrase(status), "message": message}, status, headers)


def header_tokens(value: str | None) -> set[str]:
    """The lower-case comma-separated tokens of a header value (``Connection: keep-alive, Upgrade``)."""
    if not value:
        return set()
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def is_websocket_upgrade(request: Request) -> bool:
    """A GET asking to switch to websocket (RFC 6455 §4.1: ``Upgrade: websocket``, ``Connection: Upgrade``)."""
    return (
        request.method == "GET"
        and "websocket" in header_tokens(request.header("upgrade"))
        and "upgrade" in header_tokens(request.header("connection"))
    )


def build_request(
    method: bytes,
    target: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    client: tuple[str, int] | None = None,
) -> Request:
    """A :class:`Request` from a parsed request head. A target that is not ASCII, or whose path or query does
    not percent-decode to UTF-8, is refused with 400."""
    try:
        raw_target = target.decode("ascii")
    except UnicodeDecodeError:
        raise RequestRejected(400, "the request target is not ASCII") from None
    if raw_target == "*":  # asterisk-form, OPTIONS only (RFC 9112 §3.2.4)
        raw_path, raw_query = "*", ""
    elif raw_target.startswith("/"):  # origin-form
        raw_path, _, raw_query = raw_target.partition("?")
    else:  # absolute-form (RFC 9112 §3.2.2) or, for CONNECT, authority-form
        parts = urllib.parse.urlsplit(raw_target)
        raw_path, raw_query = (parts.path or "/"), parts.query
    try:
        path = urllib.parse.unquote(raw_path, errors="strict")
        query = urllib.parse.parse_qsl(
            raw_query, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except UnicodeDecodeError:
        raise RequestRejected(400, "the request target does not percent-decode to UTF-8") from None
    except ValueError:  # more than MAX_QUERY_FIELDS fields
        raise RequestRejected(400, f"the query has more than {MAX_QUERY_FIELDS} fields") from None
    return Request(
        method=method.decode("ascii").upper(),
        target=raw_target,
        path=path,
        query=tuple(query),
        headers=tuple((name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers),
        body=body,
        client=client,
    )
