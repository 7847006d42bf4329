"""A thin websocket client for the Discord gateway: wsproto on a trio stream (DESIGN.md §7).

trio-websocket runs a reader task per connection and hands every message to the caller through a memory
channel; on the gateway's event stream that hop (a task switch per message) and its 4 KiB reads were ~15 % of
the bridge's CPU (pyinstrument, 20,000 MESSAGE_CREATE). :class:`GatewaySocket` instead parses whatever one
large ``receive_some`` returned (often hundreds of frames) in the caller's task and serves the complete
messages from a deque, so most ``get_message`` calls return without touching the socket.

What it keeps from a full client, because the gateway depends on it (discord.md §2.12):

* closes always carry the caller's explicit code (4000 keeps the session resumable; nothing here turns it into
  1000), a close that never arrived is reported as ``code=None`` (1006 is never sent nor invented);
* the close handshake: :meth:`GatewaySocket.aclose` sends our close frame and waits for Discord's reply, read by
  whichever task is reading (the shard's reader keeps reading while another task closes);
* pings are answered with pongs; Discord's close frames are answered with the same code;
* messages above ``max_message_size`` are refused while they arrive (close 1009, :class:`FrameTooLarge`), not
  after buffering them whole;
* ``wss`` uses ``ssl.create_default_context()``; certificate verification cannot be turned off.

One task may read (``get_message``) while others send or close; sends are serialized by a lock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
from typing import Final, cast
from urllib.parse import urlsplit

import trio
import wsproto
import wsproto.events as ws_events
from wsproto.connection import ConnectionState

from relay.errors import DiscordError, FrameTooLarge, LocalProtocolError

log = logging.getLogger(__name__)

#: bytes per socket read: a busy gateway stream delivers hundreds of ~1 KB frames per read, parsed in one go
RECEIVE_BYTES: Final = 256 * 1024
#: RFC 6455 §7.4.1: 1009 "message too big"
CLOSE_MESSAGE_TOO_BIG: Final = 1009
#: RFC 6455 §7.4.1: 1005 "no status code" -- what wsproto reports for a close frame without a code
CLOSE_NO_STATUS: Final = 1005
_DEFAULT_PORTS: Final = {"ws": 80, "wss": 443}


class GatewayConnectionError(DiscordError):
    """The gateway websocket could not be opened or ended; the shard reconnects (and resumes) with backoff."""


class GatewayHandshakeFailed(GatewayConnectionError):
    """The websocket upgrade was refused (``status``: the HTTP status) or the connection ended during it."""

    def __init__(self, status: int | None, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(
            f"could not open the gateway websocket: {reason}; the shard retries with backoff "
            "(check discord.gateway_url and the network if this persists)"
        )


class GatewayConnectionClosed(GatewayConnectionError):
    """The connection is over. ``code``: the close code Discord sent (or we sent first when we closed);
    ``None`` when the TCP connection ended without a close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        what = f"closed with code {code}" if code is not None else "dropped without a close frame"
        super().__init__(f"gateway websocket {what}" + (f": {reason}" if reason else ""))


def _endpoint(url: str) -> tuple[bool, str, int, str, str]:
    """``(secure, host, port, host_header, resource)`` of a ws:// or wss:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise LocalProtocolError(f"gateway URL must be ws:// or wss:// with a host, got {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise LocalProtocolError(f"gateway URL has a bad port: {url!r}") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[parts.scheme] else f"{shown}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme == "wss", host, port, host_header, resource


class GatewaySocket:
    """A minimal RFC 6455 client over wsproto: whole messages in (from a deque), one frame per send.

    Build with :meth:`connect`; always finish with :meth:`aclose` and an explicit code.
    """

    def __init__(self, stream: trio.abc.Stream, *, max_message_size: int) -> None:
        self._stream = stream
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._max_message_size = max_message_size
        self._send_lock = trio.StrictFIFOLock()
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._accepted = False
        self._reading = False  # a task is inside get_message: aclose lets it read Discord's close reply
        self._closed: GatewayConnectionClosed | None = None  # set once the connection is over for reading
        self._close_seen = trio.Event()  # Discord's close frame arrived, or the stream ended

    @classmethod
    async def connect(
        cls, url: str, *, max_message_size: int, ssl_context: ssl.SSLContext | None = None
    ) -> GatewaySocket:
        """TCP connect, TLS for ``wss`` (verified; ``ssl_context`` defaults to the system trust store), upgrade.

        Bound it with ``trio.fail_after`` at the call site. Raises :class:`GatewayHandshakeFailed` when the TCP
        connect, the TLS handshake (an untrusted certificate included) or the upgrade fails.
        """
        secure, host, port, host_header, resource = _endpoint(url)
        if secure:
            ssl_context = ssl_context or ssl.create_default_context()
            if ssl_context.verify_mode is not ssl.CERT_REQUIRED or not ssl_context.check_hostname:
                raise LocalProtocolError("the gateway's TLS context must verify certificates and host names")
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise GatewayHandshakeFailed(None, f"TCP connect to {host}:{port} failed ({exc})") from None
        try:
            if secure:
                assert ssl_context is not None
                tls = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    cause = exc.__cause__ or exc
                    raise GatewayHandshakeFailed(None, f"TLS handshake with {host} failed ({cause})") from None
                stream = tls
            sock = cls(stream, max_message_size=max_message_size)
            await sock._handshake(host_header, resource)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return sock

    async def _handshake(self, host_header: str, resource: str) -> None:
        await self._send_bytes(self._ws.send(ws_events.Request(host=host_header, target=resource)))
        try:
            while not self._accepted:
                await self._receive_some()
        except GatewayConnectionClosed:
            raise GatewayHandshakeFailed(None, "the server hung up before accepting the upgrade") from None

    @property
    def closed(self) -> GatewayConnectionClosed | None:
        """Why the connection is over for reading, or None while it is open."""
        return self._closed

    async def get_message(self) -> str | bytes:
        """The next complete message (text: ``str``, binary: ``bytes``).

        Raises :class:`GatewayConnectionClosed` once the connection is over (after every message received
        before the close was returned), :class:`FrameTooLarge` for a message above the limit (after sending
        close 1009).
        """
        messages = self._messages
        if messages:
            return messages.popleft()  # the common case on a busy stream: no socket read, no task switch
        self._reading = True
        try:
            while not messages:
                if self._closed is not None:
                    raise self._closed
                await self._receive_some()
        finally:
            self._reading = False
        return messages.popleft()

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary message."""
        if self._ws.state is not ConnectionState.OPEN:
            raise self._closed or GatewayConnectionClosed(None, "the connection is closing")
        event: ws_events.Event
        if isinstance(message, str):
            event = ws_events.TextMessage(data=message)
        else:
            event = ws_events.BytesMessage(data=message)
        await self._send_bytes(self._ws.send(event))

    async def aclose(self, code: int, reason: str = "") -> None:
        """Close with ``code`` (explicit: discord.md §2.12), wait for Discord's reply, close the stream.

        Idempotent. Bound the wait at the call site (``move_on_after``); the stream is closed even when the
        wait is cancelled. If another task is reading, that task reads the reply and this one waits for it.
        """
        try:
            if self._ws.state is ConnectionState.OPEN:
                await self._send_bytes(self._ws.send(ws_events.CloseConnection(code=code, reason=reason)))
            if self._ws.state is ConnectionState.LOCAL_CLOSING:
                # RFC 6455 §7.1.1: wait for the server's close frame (or its hang-up)
                if self._reading:
                    await self._close_seen.wait()
                else:
                    while not self._close_seen.is_set():
                        await self._receive_some()
        except (GatewayConnectionError, FrameTooLarge):
            pass  # already gone (or garbage while closing): nothing left to be graceful about
        finally:
            if self._closed is None:
                self._closed = GatewayConnectionClosed(code, reason)
            self._close_seen.set()
            await trio.aclose_forcefully(self._stream)

    # ----------------------------------------------------------------- internals

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise GatewayConnectionClosed(None, f"connection lost while sending ({exc})") from None

    def _lost(self, why: str) -> GatewayConnectionClosed:
        if self._closed is None:
            self._closed = GatewayConnectionClosed(None, why)
        self._close_seen.set()
        return self._closed

    async def _receive_some(self) -> None:
        """One socket read, parsed completely: messages go to the deque, control frames are handled."""
        try:
            data = await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost(f"connection lost ({exc})") from None
        if not data:
            raise self._lost("the server closed the TCP connection")
        ws = self._ws
        if ws.state is ConnectionState.CLOSED:
            return  # bytes after the close handshake mean nothing
        ws.receive_data(cast(bytes, data))  # wsproto only appends it to a bytearray
        for event in ws.events():
            # the hot path: one whole message per frame, no fragments
            if type(event) is ws_events.BytesMessage or type(event) is ws_events.TextMessage:
                payload = cast("str | bytes", event.data)  # wsproto delivers bytes (not bytearray) and str
                if event.message_finished and not self._parts:
                    if len(payload) > self._max_message_size:
                        await self._refuse_oversize(len(payload))
                    self._messages.append(payload)
                else:
                    await self._add_part(payload, event.message_finished)
            elif isinstance(event, ws_events.Ping):
                with contextlib.suppress(GatewayConnectionError):  # a dead socket shows up on the next read
                    if ws.state is ConnectionState.OPEN:
                        await self._send_bytes(ws.send(event.response()))
            elif isinstance(event, ws_events.CloseConnection):
                await self._on_close(event)
            elif isinstance(event, ws_events.AcceptConnection):
                self._accepted = True
            elif isinstance(event, ws_events.RejectConnection):
                raise GatewayHandshakeFailed(event.status_code, f"HTTP {event.status_code}")
            # Pong, RejectData: nothing to do

    async def _add_part(self, data: str | bytes, finished: bool) -> None:
        self._size += len(data)
        if self._size > self._max_message_size:
            await self._refuse_oversize(self._size)
        self._parts.append(data)
        if finished:
            parts = self._parts
            self._messages.append("".join(parts) if isinstance(data, str) else b"".join(parts))  # type: ignore[arg-type]
            self._parts = []
            self._size = 0

    async def _refuse_oversize(self, size: int) -> None:
        self._parts = []
        self._size = 0
        self._messages.clear()
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(GatewayConnectionError):
                await self._send_bytes(
                    self._ws.send(ws_events.CloseConnection(code=CLOSE_MESSAGE_TOO_BIG, reason="message too big"))
                )
        if self._closed is None:
            self._closed = GatewayConnectionClosed(CLOSE_MESSAGE_TOO_BIG, "message too big")
        raise FrameTooLarge(size, self._max_message_size)

    async def _on_close(self, event: ws_events.CloseConnection) -> None:
        code: int | None = int(event.code)
        if code == CLOSE_NO_STATUS:  # wsproto's stand-in for an empty close frame, not a code Discord sent
            code = None
        ws = self._ws
        if self._closed is None:
            self._closed = GatewayConnectionClosed(code, event.reason or "")
        reply: ws_events.CloseConnection | None = None
        if ws.state is ConnectionState.REMOTE_CLOSING:
            # echo Discord's code (RFC 6455 §5.5.1); an empty close frame is answered with an empty one
            reply = ws_events.CloseConnection(code=code or CLOSE_NO_STATUS, reason=event.reason if code else None)
        elif ws.state is ConnectionState.OPEN:
            # wsproto could not parse the server's frames and reports it as this close (1002/1007): we close
            log.warning("gateway sent an unparsable frame (%s); closing with %d", event.reason, event.code)
            reply = ws_events.CloseConnection(code=int(event.code), reason="protocol error")
        if reply is not None:
            with contextlib.suppress(GatewayConnectionError):  # it may hang up before our reply
                await self._send_bytes(ws.send(reply))
        # after our reply, or when it answered ours, or when the parser gave up: nothing more will be read
        self._close_seen.set()
