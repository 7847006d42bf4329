"""The HTTP request/response models the emulator's handlers speak (stand-in for ``relay.web``'s, same shape).

``relay/web`` (the project's HTTP server) defines :class:`Request` and :class:`Response` with exactly these
fields and constructors; until it is on main the emulator keeps this copy so its handlers and their tests
already have the final shape. Switching is an import change. :class:`DropConnection` is the one extra: a
handler raises it to make the server close the connection without answering (Discord's edge does that).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from relay import fastjson
from relay.errors import RelayError

Headers = tuple[tuple[str, str], ...]


@attrs.frozen
class Request:
    method: str  #: upper-case, e.g. "GET"
    target: str  #: the raw request target ("/a/b?x=1")
    path: str  #: percent-decoded path, no query
    query: tuple[tuple[str, str], ...]  #: decoded (name, value) pairs in order
    headers: Headers  #: names lower-case, values latin-1 decoded, in order
    body: bytes = attrs.field(default=b"", repr=False)
    client: tuple[str, int] | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        return next((value for key, value in self.query if key == name), None)


@attrs.frozen
class Response:
    status: int
    headers: Headers = ()
    body: bytes = attrs.field(default=b"", repr=False)

    @classmethod
    def json(cls, obj: object, status: int = 200, headers: Headers = ()) -> Response:
        return cls(status, (("content-type", "application/json"), *headers), fastjson.dumps(obj))

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Headers = ()) -> Response:
        return cls(status, (("content-type", "text/plain; charset=utf-8"), *headers), text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class DropConnection(RelayError):
    """Raised by a handler: close the connection without an answer (the request may or may not have acted)."""
