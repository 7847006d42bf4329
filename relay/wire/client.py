"""Dialing a websocket: TCP (directly or through an injected stream opener such as a proxy tunnel), TLS for
``wss`` (certificates always verified), the HTTP upgrade (RFC 6455 §4.1), then a
:class:`~relay.wire.connection.WebSocketConnection` in the client role.

Used by the Discord gateway shard, the reverse-ws destinations and ``check --online``, so ``check`` tests what
``run`` does. wsproto writes the upgrade request and checks the response (the ``Sec-WebSocket-Accept`` key, the
status); frames that arrive in the same read as the response head are kept for the connection.

Every failure to open is a :class:`~relay.errors.WebSocketHandshakeFailed` whose reason is one plain clause:
refused, timed out (bound the call with ``trio.fail_after``), ``certificate verify failed for HOST: ...``,
``HTTP 404``, ...
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import attrs
import trio
import wsproto
import wsproto.events as ws_events
import wsproto.utilities

from relay.errors import LocalProtocolError, WebSocketHandshakeFailed
from relay.wire.connection import RECEIVE_BYTES, WebSocketConnection

#: the upgrade response's head may not exceed this (real servers send well under 2 KiB)
MAX_HANDSHAKE_BYTES: Final = 64 * 1024
_DEFAULT_PORTS: Final = {"ws": 80, "wss": 443}

#: opens a TCP stream to (host, port): ``trio.open_tcp_stream`` or a proxy tunnel
StreamOpener = Callable[[str, int], Awaitable[trio.abc.Stream]]


@attrs.frozen
class Endpoint:
    """Where a ``ws://`` / ``wss://`` URL points."""

    secure: bool
    host: str
    port: int
    host_header: str  #: the ``Host`` header: the host, with the port unless it is the scheme's default
    resource: str = attrs.field(repr=False)  #: path and query (the query may carry credentials)

    @property
    def display(self) -> str:
        """Scheme, host, port and path, without the query: safe for logs and errors."""
        path = self.resource.split("?", 1)[0]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{path}"


def parse_endpoint(url: str) -> Endpoint:
    """The :class:`Endpoint` of a ws:// or wss:// URL; :class:`LocalProtocolError` for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise LocalProtocolError(f"a websocket URL must be ws:// or wss:// with a host, got {_without_query(url)!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise LocalProtocolError(f"the websocket URL has a bad port: {_without_query(url)!r}") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[parts.scheme] else f"{shown}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(secure=parts.scheme == "wss", host=host, port=port, host_header=host_header, resource=resource)


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


def verifying_context(ca_file: str = "") -> ssl.SSLContext:
    """The system trust store (plus ``ca_file``), verifying certificates and host names; never relaxed."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


async def connect_websocket(
    url: str | Endpoint,
    *,
    max_message_size: int,
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    open_stream: StreamOpener | None = None,
    peer: str | None = None,
) -> WebSocketConnection:
    """Open a websocket to ``url``: TCP (``open_stream``, default ``trio.open_tcp_stream``), TLS for ``wss``
    (``ssl_context`` defaults to :func:`verifying_context`; one that does not verify is refused), the upgrade
    with ``headers`` added to the request.

    ``peer`` names the other end in errors (default: the URL without its query). Bound the call with
    ``trio.fail_after`` at the call site. Raises :class:`~relay.errors.WebSocketHandshakeFailed`.
    """
    endpoint = url if isinstance(url, Endpoint) else parse_endpoint(url)
    peer = peer or endpoint.display
    if endpoint.secure:
        ssl_context = ssl_context or verifying_context()
        if ssl_context.verify_mode is not ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise LocalProtocolError("a wss:// connection must verify certificates and host names")
    opener = open_stream or trio.open_tcp_stream
    try:
        stream: trio.abc.Stream = await opener(endpoint.host, endpoint.port)
    except OSError as exc:
        raise WebSocketHandshakeFailed(peer, None, _connect_failure(endpoint, exc)) from None
    try:
        if endpoint.secure:
            assert ssl_context is not None
            stream = await _tls(stream, ssl_context, endpoint.host, peer)
        return await _upgrade(stream, endpoint, headers, max_message_size, peer)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _connect_failure(endpoint: Endpoint, exc: OSError) -> str:
    """One plain clause for a failed TCP connect. trio's ``open_tcp_stream`` tries every address of the host and
    raises one OSError whose cause groups the attempts' errors; the first leaf says what happened."""
    where = f"{endpoint.host}:{endpoint.port}"
    cause: BaseException = exc
    while True:
        if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        elif isinstance(cause.__cause__, BaseException) and cause is exc:
            cause = cause.__cause__
        else:
            break
    if isinstance(cause, ConnectionRefusedError):
        return f"connection to {where} refused (is the server running and listening there?)"
    if isinstance(cause, TimeoutError):
        return f"connecting to {where} timed out"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve {endpoint.host} ({cause.strerror or cause})"
    detail = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return f"TCP connect to {where} failed ({detail})"


async def _tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, host: str, peer: str
) -> trio.SSLStream[trio.abc.Stream]:
    tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        raise WebSocketHandshakeFailed(peer, None, tls_failure_text(exc.__cause__ or exc, host)) from None
    return tls


def tls_failure_text(exc: BaseException, host: str) -> str:
    """One clause for a failed TLS handshake; a certificate problem says so plainly."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed for {host}: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed with {host}: {exc.reason or exc}"
    return f"TLS handshake failed with {host} ({exc})"


async def _upgrade(
    stream: trio.abc.Stream,
    endpoint: Endpoint,
    headers: Sequence[tuple[str, str]],
    max_message_size: int,
    peer: str,
) -> WebSocketConnection:
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    try:
        await stream.send_all(
            ws.send(ws_events.Request(host=endpoint.host_header, target=endpoint.resource, extra_headers=extra))
        )
        # read up to the end of the response head; whatever follows it is already websocket frames
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            if len(head) > MAX_HANDSHAKE_BYTES:
                raise WebSocketHandshakeFailed(peer, None, "the upgrade response headers are too long")
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise WebSocketHandshakeFailed(peer, None, "the server hung up before accepting the upgrade")
            head += data
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise WebSocketHandshakeFailed(peer, None, f"connection lost during the upgrade ({exc})") from None
    try:
        ws.receive_data(bytes(head[: end + 4]))
        for event in ws.events():
            if isinstance(event, ws_events.AcceptConnection):
                break
            if isinstance(event, ws_events.RejectConnection):
                raise WebSocketHandshakeFailed(peer, event.status_code, f"HTTP {event.status_code}")
        else:
            raise WebSocketHandshakeFailed(peer, None, "incomplete upgrade response")
    except wsproto.utilities.RemoteProtocolError as exc:
        raise WebSocketHandshakeFailed(peer, None, f"bad upgrade response ({exc})") from None
    # the frames that came with the head are parsed by the first read, so their errors surface there
    return WebSocketConnection(
        stream, client=True, max_message_size=max_message_size, peer=peer, early=bytes(head[end + 4 :])
    )
