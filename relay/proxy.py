"""Tunnels through a proxy (trio), and the same proxy for httpx: the bridge's one way out through a proxy.

:func:`open_proxied_stream` returns a ``trio.abc.Stream`` connected to ``(host, port)`` through a proxy
(:class:`relay.proxyurl.ProxySettings`): HTTP ``CONNECT`` for ``http://`` and ``https://`` proxies (``https``:
TLS to the proxy itself first), SOCKS5 with optional username/password authentication for ``socks5://``
(target names resolved here) and ``socks5h://`` (names resolved by the proxy). The caller then speaks to the
target over it, TLS included (``trio.SSLStream(stream, context, server_hostname=host)``), exactly as over
``trio.open_tcp_stream``. Failures before the tunnel is up raise the :class:`relay.errors.ProxyError` family,
whose messages carry the redacted proxy URL, never the password; once it is up, a proxy that goes away shows
as the stream ending or breaking (``b""`` / ``trio.BrokenResourceError``), and the caller reconnects.

:func:`httpx_proxy_options` gives ``httpx.AsyncClient`` the same proxy (REST and media downloads).

Libraries, and why not python-socks: the wire work is done by two sans-I/O libraries that httpx already
brings along for its own proxy support, so REST and the gateway share one implementation of each protocol:
**h11** parses the proxy's answer to ``CONNECT`` (a complete HTTP/1.1 response head, however the proxy splits
it across segments, with the bytes after it handed back), and **socksio** encodes and decodes the SOCKS5
messages (it is httpx's own SOCKS codec, ``httpx[socks]``). This module is the thin trio shell: it reads
exactly the bytes each SOCKS5 reply has, and maps every step's failure to a typed error saying what to fix.
python-socks (maintained, runs on trio, downloads nothing) was evaluated: it reads the ``CONNECT`` answer
with a single ``receive`` and parses only its status line (a proxy that sends its head in two segments
leaves header bytes in front of the target's TLS), reports a refused password only as message text, and
would be a second SOCKS implementation beside httpx's.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Final, TypedDict

import attrs
import h11
import httpx
import socksio
import trio

from relay.errors import (
    ProxyAuthenticationRefused,
    ProxyCannotReachTarget,
    ProxyConnectFailed,
    ProxyError,
    ProxyProtocolError,
    ProxyTimeout,
)
from relay.proxyurl import ProxyScheme, ProxySettings, format_host_port

__all__ = [
    "DEFAULT_PROXY_TIMEOUT",
    "HttpxProxyOptions",
    "StreamOpener",
    "httpx_proxy_options",
    "open_proxied_stream",
    "proxied_stream_opener",
]

log = logging.getLogger(__name__)

#: seconds for everything before the tunnel is up (connect, TLS to the proxy, the proxy's handshake)
DEFAULT_PROXY_TIMEOUT: Final = 30.0

_RECEIVE_SIZE: Final = 16 * 1024
_NAME_LIMIT: Final = 255  # SOCKS5 DOMAINNAME: one length byte

#: RFC 1928 §6 reply codes, worded for "the proxy could not connect to X: ..."
_SOCKS5_REPLIES: Final = {
    1: "general SOCKS server failure",
    2: "the proxy's rules do not allow this connection",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "the proxy does not support CONNECT",
    8: "the proxy does not support this address type",
}


class _Closed(Exception):
    """The proxy closed (or reset) the connection during the handshake."""


@attrs.define
class _Attempt:
    """One tunnel being opened: what for, and the step reached (for errors and timeouts)."""

    proxy: ProxySettings
    host: str
    port: int
    step: str = "the TCP connection to the proxy"

    @property
    def target(self) -> str:
        return format_host_port(self.host, self.port)

    @property
    def shown(self) -> str:
        return self.proxy.redacted()


async def open_proxied_stream(
    proxy: ProxySettings,
    host: str,
    port: int,
    *,
    proxy_ssl_context: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_PROXY_TIMEOUT,
) -> trio.abc.Stream:
    """A stream to ``(host, port)`` through ``proxy``; see the module docstring.

    ``proxy_ssl_context`` verifies an ``https://`` proxy (default: ``ssl.create_default_context()``, the system's
    trust store). ``timeout`` bounds everything up to the open tunnel; when it runs out, :class:`ProxyTimeout`
    names the step that was waiting. Raises the :class:`ProxyError` family; never swallows cancellation."""
    attempt = _Attempt(proxy, host.removeprefix("[").removesuffix("]"), port)
    try:
        with trio.fail_after(timeout):
            stream = await _open(attempt, proxy_ssl_context)
    except trio.TooSlowError:
        raise ProxyTimeout(attempt.shown, attempt.target, attempt.step, timeout) from None
    log.debug("tunnel to %s open through %s", attempt.target, attempt.shown)
    return stream


#: opens a stream to (host, port): what :func:`relay.wire.client.connect_websocket` takes as ``open_stream``
StreamOpener = Callable[[str, int], Awaitable[trio.abc.Stream]]


def proxied_stream_opener(
    proxy: ProxySettings | None,
    *,
    proxy_ssl_context: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_PROXY_TIMEOUT,
) -> StreamOpener | None:
    """``open_stream=`` for :func:`relay.wire.client.connect_websocket`: tunnels through ``proxy`` (chosen by
    :class:`relay.egress.DiscordEgress`), or None for a direct connection (the client's default opener)."""
    if proxy is None:
        return None

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        return await open_proxied_stream(proxy, host, port, proxy_ssl_context=proxy_ssl_context, timeout=timeout)

    return open_stream


async def _open(attempt: _Attempt, proxy_ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    proxy = attempt.proxy
    address = attempt.host
    if proxy.scheme is ProxyScheme.SOCKS5 and not _is_address(address):
        address = await _resolve_here(attempt)
    stream: trio.abc.Stream = await _connect(attempt)
    try:
        if proxy.tls:
            stream = await _start_tls(stream, attempt, proxy_ssl_context or ssl.create_default_context())
        if proxy.is_socks:
            await _socks5_handshake(stream, attempt, address)
        else:
            await _http_connect(stream, attempt)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


# --------------------------------------------------------------------------- reaching the proxy


async def _resolve_here(attempt: _Attempt) -> str:
    attempt.step = f"resolving {attempt.host}"
    try:
        infos = await trio.socket.getaddrinfo(attempt.host, attempt.port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        raise ProxyError(
            attempt.shown,
            attempt.target,
            f"cannot resolve {attempt.host} here: {_os_reason(exc)} (socks5:// resolves names locally; "
            "socks5h:// lets the proxy resolve them)",
        ) from None
    if not infos:
        raise ProxyError(attempt.shown, attempt.target, f"{attempt.host} resolves to no address")
    resolved = str(infos[0][4][0])
    return resolved.partition("%")[0]  # an IPv6 scope id is meaningless to the proxy


async def _connect(attempt: _Attempt) -> trio.SocketStream:
    attempt.step = "the TCP connection to the proxy"
    try:
        return await trio.open_tcp_stream(attempt.proxy.host, attempt.proxy.port)
    except OSError as exc:
        reason = _os_reason(exc)
        if isinstance(exc, trio.socket.gaierror):
            reason = f"cannot resolve the proxy's host name ({reason})"
        else:
            reason += " (is the proxy running, and are the host and port in its URL right?)"
        raise ProxyConnectFailed(attempt.shown, attempt.target, reason) from None


async def _start_tls(
    stream: trio.abc.Stream, attempt: _Attempt, context: ssl.SSLContext
) -> trio.SSLStream[trio.abc.Stream]:
    attempt.step = "the TLS handshake with the proxy"
    tls = trio.SSLStream(stream, context, server_hostname=attempt.proxy.host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        reason = str(exc.__cause__) if exc.__cause__ is not None else "the connection was closed"
        raise ProxyConnectFailed(
            attempt.shown,
            attempt.target,
            f"the TLS handshake with the proxy failed: {reason} (an https:// proxy must speak TLS itself; for a "
            "plain HTTP proxy write http://)",
        ) from None
    return tls


def _os_reason(exc: OSError) -> str:
    """The useful part of an OSError: trio wraps per-address failures in a group under a generic message."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons = sorted({_os_reason(e) if isinstance(e, OSError) else str(e) for e in cause.exceptions})
        return "; ".join(reasons)
    return exc.strerror or str(exc)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _send(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except trio.BrokenResourceError:
        raise _Closed from None


async def _receive_exactly(stream: trio.abc.Stream, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        try:
            chunk = await stream.receive_some(count - len(data))
        except trio.BrokenResourceError:
            raise _Closed from None
        if not chunk:
            raise _Closed
        data += chunk
    return bytes(data)


# --------------------------------------------------------------------------- SOCKS5 (RFC 1928, RFC 1929)


async def _socks5_handshake(stream: trio.abc.Stream, attempt: _Attempt, address: str) -> None:
    proxy = attempt.proxy
    conn = socksio.SOCKS5Connection()
    with_password = proxy.username is not None
    offered = socksio.SOCKS5AuthMethod.USERNAME_PASSWORD if with_password else socksio.SOCKS5AuthMethod.NO_AUTH_REQUIRED

    attempt.step = "the SOCKS5 greeting"
    conn.send(socksio.SOCKS5AuthMethodsRequest([offered]))
    try:
        await _send(stream, conn.data_to_send())
        answer = await _receive_exactly(stream, 2)
    except _Closed:
        if not with_password:
            raise ProxyAuthenticationRefused(
                attempt.shown,
                attempt.target,
                "it closed the connection when offered no authentication: it probably wants user:password@ in the URL",
            ) from None
        raise ProxyProtocolError(
            attempt.shown, attempt.target, "it closed the connection after the SOCKS5 greeting; is it a SOCKS5 proxy?"
        ) from None
    if answer[0] != 5:
        raise ProxyProtocolError(
            attempt.shown,
            attempt.target,
            "it did not answer the SOCKS5 greeting as a SOCKS5 proxy (an HTTP proxy needs http:// in the URL)",
        )
    method = _socks5_receive(conn, answer, attempt)
    assert isinstance(method, socksio.socks5.SOCKS5AuthReply)
    if method.method is socksio.SOCKS5AuthMethod.NO_ACCEPTABLE_METHODS:
        what = "a user name and password" if with_password else "no authentication"
        wants = "" if with_password else " (it probably wants user:password@ in the URL)"
        raise ProxyAuthenticationRefused(attempt.shown, attempt.target, f"it does not accept {what}{wants}")
    if method.method is socksio.SOCKS5AuthMethod.USERNAME_PASSWORD and with_password:
        await _socks5_authenticate(stream, conn, attempt)
    elif method.method is not socksio.SOCKS5AuthMethod.NO_AUTH_REQUIRED:
        raise ProxyProtocolError(
            attempt.shown, attempt.target, "it chose a SOCKS5 authentication method that was not offered"
        )

    attempt.step = "the SOCKS5 CONNECT request"
    name = address.encode("idna") if not address.isascii() else address.encode("ascii")
    if len(name) > _NAME_LIMIT:
        raise ProxyError(attempt.shown, attempt.target, "the target's host name is too long for SOCKS5")
    conn.send(
        socksio.SOCKS5CommandRequest.from_address(socksio.SOCKS5Command.CONNECT, (name.decode("ascii"), attempt.port))
    )
    try:
        await _send(stream, conn.data_to_send())
        reply = await _receive_socks5_reply(stream, attempt)
    except _Closed:
        raise ProxyCannotReachTarget(
            attempt.shown, attempt.target, "it closed the connection without answering the CONNECT request"
        ) from None
    _socks5_receive(conn, reply, attempt)


async def _socks5_authenticate(stream: trio.abc.Stream, conn: socksio.SOCKS5Connection, attempt: _Attempt) -> None:
    attempt.step = "SOCKS5 authentication"
    proxy = attempt.proxy
    assert proxy.username is not None
    conn.send(socksio.SOCKS5UsernamePasswordRequest(proxy.username.encode(), proxy.password.encode()))
    try:
        await _send(stream, conn.data_to_send())
        answer = await _receive_exactly(stream, 2)
    except _Closed:
        raise ProxyAuthenticationRefused(
            attempt.shown, attempt.target, "it closed the connection on receiving the user name and password"
        ) from None
    verdict = _socks5_receive(conn, answer, attempt)
    assert isinstance(verdict, socksio.socks5.SOCKS5UsernamePasswordReply)
    if not verdict.success:
        raise ProxyAuthenticationRefused(attempt.shown, attempt.target, "wrong user name or password")


async def _receive_socks5_reply(stream: trio.abc.Stream, attempt: _Attempt) -> bytes:
    """One complete CONNECT reply: VER REP RSV ATYP BND.ADDR BND.PORT, read to its exact length."""
    head = await _receive_exactly(stream, 2)
    if head[0] != 5:
        raise ProxyProtocolError(attempt.shown, attempt.target, "its answer to CONNECT is not a SOCKS5 reply")
    if head[1] != 0:  # a failure reply may be cut short and the connection closed: do not read on
        reason = _SOCKS5_REPLIES.get(head[1], f"SOCKS5 reply code {head[1]}")
        raise ProxyCannotReachTarget(attempt.shown, attempt.target, reason)
    rest = await _receive_exactly(stream, 2)
    address_type = rest[1]
    if address_type == 1:
        address = await _receive_exactly(stream, 4)
    elif address_type == 4:
        address = await _receive_exactly(stream, 16)
    elif address_type == 3:
        size = await _receive_exactly(stream, 1)
        address = size + await _receive_exactly(stream, size[0])
    else:
        raise ProxyProtocolError(attempt.shown, attempt.target, f"its CONNECT reply has address type {address_type}")
    return head + rest + address + await _receive_exactly(stream, 2)


def _socks5_receive(
    conn: socksio.SOCKS5Connection, data: bytes, attempt: _Attempt
) -> socksio.socks5.SOCKS5AuthReply | socksio.socks5.SOCKS5Reply | socksio.socks5.SOCKS5UsernamePasswordReply:
    try:
        return conn.receive_data(data)
    except socksio.ProtocolError:
        raise ProxyProtocolError(
            attempt.shown, attempt.target, f"malformed SOCKS5 answer during {attempt.step}"
        ) from None


# --------------------------------------------------------------------------- HTTP CONNECT (RFC 9110 §9.3.6)


async def _http_connect(stream: trio.abc.Stream, attempt: _Attempt) -> None:
    attempt.step = "the HTTP CONNECT request"
    proxy = attempt.proxy
    target = attempt.target
    headers = [("Host", target)]
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode("ascii")
        headers.append(("Proxy-Authorization", f"Basic {token}"))
    conn = h11.Connection(h11.CLIENT)
    request = conn.send(h11.Request(method="CONNECT", target=target, headers=headers))
    end = conn.send(h11.EndOfMessage())
    try:
        await _send(stream, (request or b"") + (end or b""))
        response = await _receive_http_response(stream, conn, attempt)
    except _Closed:
        raise ProxyCannotReachTarget(
            attempt.shown, target, "it closed the connection without answering the CONNECT request"
        ) from None
    status = response.status_code
    reason = response.reason.decode("latin-1")
    if status == 407:
        why = "wrong user name or password" if proxy.username is not None else "it wants user:password@ in the URL"
        raise ProxyAuthenticationRefused(attempt.shown, target, f"{why} (HTTP 407 {reason})")
    if not 200 <= status < 300:
        raise ProxyCannotReachTarget(attempt.shown, target, f"it answered CONNECT with HTTP {status} {reason}")
    trailing, _ = conn.trailing_data
    if trailing:
        raise ProxyProtocolError(
            attempt.shown, target, f"it sent {len(trailing)} bytes from the target before we sent anything"
        )


async def _receive_http_response(stream: trio.abc.Stream, conn: h11.Connection, attempt: _Attempt) -> h11.Response:
    received = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProxyProtocolError(
                attempt.shown,
                attempt.target,
                f"its answer to CONNECT is not HTTP ({exc}); a SOCKS5 proxy needs socks5:// or socks5h:// in the URL",
            ) from None
        if isinstance(event, h11.Response):
            return event
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed
        if event is h11.NEED_DATA:
            try:
                chunk = await stream.receive_some(_RECEIVE_SIZE)
            except trio.BrokenResourceError:
                raise _Closed from None
            if not chunk and not received:
                raise _Closed  # closed without a word; h11 would call it a protocol error
            received += len(chunk)
            conn.receive_data(bytes(chunk))  # b"" after a partial answer: h11 says what is missing
        # an InformationalResponse (1xx) is skipped: the final answer follows


# --------------------------------------------------------------------------- httpx


class HttpxProxyOptions(TypedDict):
    """Keyword arguments for ``httpx.AsyncClient(**options, ...)``."""

    proxy: httpx.Proxy | None
    mounts: dict[str, httpx.AsyncBaseTransport | None]


def httpx_proxy_options(
    proxy: ProxySettings | None, *, proxy_ssl_context: ssl.SSLContext | None = None
) -> HttpxProxyOptions:
    """What ``httpx.AsyncClient`` needs to use ``proxy`` (chosen by :func:`relay.proxyurl.choose_proxy`) and no
    other, on trio as on asyncio (httpcore picks the backend).

    * A proxy becomes ``proxy=httpx.Proxy(...)`` with the credentials as ``auth`` (httpx masks the password in
      its ``repr``); an ``https://`` proxy is verified with ``proxy_ssl_context`` or, as for the gateway, the
      system's trust store. SOCKS needs socksio (the ``httpx[socks]`` extra, a dependency of the bridge). Note
      that httpx sends the target's *name* through SOCKS5 for ``socks5://`` too: the local resolution that
      ``socks5://`` means is only done by :func:`open_proxied_stream`.
    * No proxy becomes ``mounts`` that route every URL to the direct transport, so httpx does not apply the
      environment's proxy variables with its own, different ``NO_PROXY`` rules: ``choose_proxy`` already did,
      with the gateway's. (``trust_env`` stays on for ``SSL_CERT_FILE``/``SSL_CERT_DIR``.)
    """
    if proxy is None:
        return {"proxy": None, "mounts": {"http://": None, "https://": None, "all://": None}}
    auth = (proxy.username, proxy.password) if proxy.username is not None else None
    context = (proxy_ssl_context or ssl.create_default_context()) if proxy.tls else None
    return {
        "proxy": httpx.Proxy(f"{proxy.scheme.value}://{proxy.address}", auth=auth, ssl_context=context),
        "mounts": {},
    }
