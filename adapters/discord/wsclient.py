"""A thin websocket client for the Discord gateway on a trio stream (DESIGN.md §7).

trio-websocket runs a reader task per connection and hands every message to the caller through a memory
channel; on the gateway's event stream that hop (a task switch per message) and its 4 KiB reads were ~15 % of
the bridge's CPU (pyinstrument, 20,000 MESSAGE_CREATE). :class:`GatewaySocket` instead parses whatever one
large ``receive_some`` returned (often hundreds of frames) in the caller's task and serves the complete
messages from a deque, so most ``get_message`` calls return without touching the socket.

wsproto builds and checks the upgrade handshake and encodes our (masked) frames. Incoming frames are parsed by
:class:`ServerFrameParser`, a small sans-I/O parser for what a server may send a client (unmasked frames, no
extensions negotiated): wsproto's general parser (generators, an event object and a buffer copy per frame)
was the largest remaining cost of the receive path once the task hop was gone.

What it keeps from a full client, because the gateway depends on it (discord.md §2.12):

* closes always carry the caller's explicit code (4000 keeps the session resumable; nothing here turns it into
  1000), a close that never arrived is reported as ``code=None`` (1006 is never sent nor invented);
* the close handshake: :meth:`GatewaySocket.aclose` sends our close frame and waits for Discord's reply, read by
  whichever task is reading (the shard's reader keeps reading while another task closes);
* pings are answered with pongs; Discord's close frames are answered with the same code;
* a frame whose header announces more than ``max_message_size`` (alone or with the fragments before it) is
  refused before its payload is buffered (close 1009, :class:`FrameTooLarge`);
* ``wss`` uses ``ssl.create_default_context()``; certificate verification cannot be turned off.

One task may read (``get_message``) while others send or close; sends are serialized by a lock.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Final, NoReturn
from urllib.parse import urlsplit

import trio
import wsproto
import wsproto.events as ws_events
import wsproto.utilities
from wsproto.frame_protocol import CloseReason

from relay.errors import DiscordError, FrameTooLarge, LocalProtocolError

log = logging.getLogger(__name__)

#: bytes per socket read: a busy gateway stream delivers hundreds of ~1 KB frames per read, parsed in one go
RECEIVE_BYTES: Final = 256 * 1024
#: the upgrade response's headers may not exceed this (Discord's are well under 2 KiB)
MAX_HANDSHAKE_BYTES: Final = 64 * 1024
#: RFC 6455 §7.4.1 close codes used here
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_NO_STATUS: Final = 1005  #: never sent with a code: stands for "the close frame had no code"
CLOSE_INVALID_DATA: Final = 1007
CLOSE_MESSAGE_TOO_BIG: Final = 1009
#: RFC 6455 §7.4.1: codes that only describe a connection locally; wsproto would send 1000 instead
LOCAL_ONLY_CODES: Final = frozenset({1006, 1015})
_DEFAULT_PORTS: Final = {"ws": 80, "wss": 443}

# RFC 6455 §5.2 opcodes
OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
#: first header byte of an unfragmented binary (0x82) or text (0x81) message: FIN set, no RSV bits
_WHOLE_MESSAGE: Final = frozenset({0x82, 0x81})


class GatewayConnectionError(DiscordError):
    """The gateway websocket could not be opened or ended; the shard reconnects (and resumes) with backoff."""


class GatewayHandshakeFailed(GatewayConnectionError):
    """Connecting failed: TCP, TLS, or the websocket upgrade (``status``: the HTTP status if one came)."""

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


class FrameViolation(GatewayConnectionError):
    """The server broke RFC 6455; ``code`` is the close code to answer with (1002, 1007)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"the gateway sent an invalid websocket frame: {reason}")


# --------------------------------------------------------------------------- sans-I/O frame parser


class ServerFrameParser:
    """Incoming frames of a client connection → whole messages and control frames (RFC 6455 §5). No I/O.

    :meth:`feed` appends complete messages (``str`` for text, ``bytes`` for binary) to ``messages`` and
    returns the control frames it met, as ``(opcode, payload)``, in order; parsing stops at a close frame.
    Bytes of an unfinished frame are kept; they are not re-parsed until enough have arrived, so a large
    message arriving in small reads costs linear, not quadratic, time.
    Raises :class:`FrameTooLarge` as soon as a header announces too much, :class:`FrameViolation` otherwise.
    """

    __slots__ = (
        "_closed",
        "_fragment_opcode",
        "_fragments",
        "_fragments_size",
        "_max_size",
        "_need",
        "_pending",
        "_skip",
    )

    def __init__(self, *, max_message_size: int) -> None:
        self._max_size = max_message_size
        self._pending = bytearray()  # unparsed bytes (an unfinished frame)
        self._need = 0  # len(_pending) needed before parsing again is worth it
        self._fragment_opcode = 0  # opcode of the fragmented message being assembled, 0: none
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._closed = False
        self._skip = 0  # payload bytes of a refused (too large) frame still to be discarded

    def feed(self, data: bytes, messages: collections.deque[str | bytes]) -> list[tuple[int, bytes]]:
        if self._closed:
            return []  # nothing follows a close frame
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return []
            data = bytes(pending)
            pending.clear()
        self._need = 0
        controls: list[tuple[int, bytes]] = []
        append = messages.append
        max_size = self._max_size
        end = len(data)
        pos = 0
        while end - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1]
            if length & 0x80:
                raise FrameViolation(CLOSE_PROTOCOL_ERROR, "masked frame from the server")
            start = pos + 2
            if length >= 126:
                start = pos + 4 if length == 126 else pos + 10  # 16- or 64-bit extended length
                if start > end:
                    break
                length = int.from_bytes(data[pos + 2 : start], "big")
            if b0 & 0x70:
                raise FrameViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
            opcode = b0 & 0x0F
            stop = start + length
            # every frame is checked from its header, so no frame is buffered beyond the limits
            if opcode < OP_CLOSE:
                if length + self._fragments_size > max_size:
                    self._refuse(data, stop, length + self._fragments_size)
            elif not b0 & 0x80 or length > 125:  # RFC 6455 §5.5
                raise FrameViolation(CLOSE_PROTOCOL_ERROR, "fragmented or oversized control frame")
            if stop > end:
                self._need = stop - pos
                break
            payload = data[start:stop]
            pos = stop
            if b0 in _WHOLE_MESSAGE:  # the hot path: a whole binary or text message in one frame
                if self._fragment_opcode:
                    raise FrameViolation(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                if b0 == 0x82:
                    append(payload)
                else:
                    append(_utf8(payload))
            elif opcode >= OP_CLOSE:
                if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                    raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"unknown control opcode {opcode:#x}")
                controls.append((opcode, payload))
                if opcode == OP_CLOSE:
                    self._closed = True
                    return controls
            else:
                self._on_fragment(b0, opcode, payload, append)
        if pos < end:
            pending += data[pos:] if pos else data
        return controls

    def _refuse(self, data: bytes, stop: int, size: int) -> NoReturn:
        """Drop the too-large message (its bytes still to come are skipped) and raise FrameTooLarge."""
        self._fragments = []
        self._fragments_size = 0
        self._fragment_opcode = 0
        if stop <= len(data):
            self._pending += data[stop:]
        else:
            self._skip = stop - len(data)
        raise FrameTooLarge(size, self._max_size)

    def _on_fragment(self, b0: int, opcode: int, payload: bytes, append: Callable[[str | bytes], None]) -> None:
        if opcode == OP_CONTINUATION:
            if not self._fragment_opcode:
                raise FrameViolation(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragment_opcode:
                raise FrameViolation(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            self._fragment_opcode = opcode
        else:
            raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"unknown data opcode {opcode:#x}")
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if b0 & 0x80:  # FIN: the message is complete
            whole = b"".join(self._fragments)
            append(_utf8(whole) if self._fragment_opcode == OP_TEXT else whole)
            self._fragments = []
            self._fragments_size = 0
            self._fragment_opcode = 0


def _utf8(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise FrameViolation(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None


def close_payload(payload: bytes) -> tuple[int | None, str]:
    """``(code, reason)`` of a close frame's payload (RFC 6455 §5.5.1); ``code`` None for an empty payload."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code < 1000 or code in (CLOSE_NO_STATUS, 1006, 1015) or code >= 5000:
        raise FrameViolation(CLOSE_PROTOCOL_ERROR, f"close frame with an invalid code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameViolation(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return code, reason


# --------------------------------------------------------------------------- the socket


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
    """A minimal RFC 6455 client: whole messages in (from a deque), one frame per send.

    Build with :meth:`connect`; always finish with :meth:`aclose` and an explicit code.
    """

    def __init__(self, stream: trio.abc.Stream, ws: wsproto.WSConnection, *, max_message_size: int) -> None:
        self._stream = stream
        self._ws = ws  # after the handshake: only encodes our frames
        self._parser = ServerFrameParser(max_message_size=max_message_size)
        self._max_message_size = max_message_size
        self._send_lock = trio.StrictFIFOLock()
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._close_sent = False
        # held while a task reads the socket: aclose lets that task read Discord's close reply
        self._receive_lock = trio.Lock()
        self._closed: GatewayConnectionClosed | None = None  # set once the connection is over for reading
        self._close_seen = trio.Event()  # Discord's close frame arrived, or the stream ended
        self._early = b""  # frames that came with the upgrade response, not parsed yet
        self._refused: FrameTooLarge | None = None  # a too-large message, raised once the deque is empty

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
            return await cls._upgrade(stream, host_header, resource, max_message_size)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    @classmethod
    async def _upgrade(
        cls, stream: trio.abc.Stream, host_header: str, resource: str, max_message_size: int
    ) -> GatewaySocket:
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        try:
            await stream.send_all(ws.send(ws_events.Request(host=host_header, target=resource)))
            # read up to the end of the response head; whatever follows it is already websocket frames
            head = bytearray()
            while (end := head.find(b"\r\n\r\n")) < 0:
                if len(head) > MAX_HANDSHAKE_BYTES:
                    raise GatewayHandshakeFailed(None, "the upgrade response headers are too long")
                data = await stream.receive_some(RECEIVE_BYTES)
                if not data:
                    raise GatewayHandshakeFailed(None, "the server hung up before accepting the upgrade")
                head += data
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise GatewayHandshakeFailed(None, f"connection lost during the upgrade ({exc})") from None
        try:
            ws.receive_data(bytes(head[: end + 4]))
            for event in ws.events():
                if isinstance(event, ws_events.AcceptConnection):
                    break
                if isinstance(event, ws_events.RejectConnection):
                    raise GatewayHandshakeFailed(event.status_code, f"HTTP {event.status_code}")
            else:
                raise GatewayHandshakeFailed(None, "incomplete upgrade response")
        except wsproto.utilities.RemoteProtocolError as exc:
            raise GatewayHandshakeFailed(None, f"bad upgrade response ({exc})") from None
        sock = cls(stream, ws, max_message_size=max_message_size)
        sock._early = bytes(head[end + 4 :])  # parsed by the first read, so its errors surface there
        return sock

    @property
    def closed(self) -> GatewayConnectionClosed | None:
        """Why the connection is over for reading, or None while it is open."""
        return self._closed

    async def get_message(self) -> str | bytes:
        """The next complete message (text: ``str``, binary: ``bytes``).

        Raises :class:`GatewayConnectionClosed` once the connection is over (after every message received
        before the close was returned), :class:`FrameTooLarge` for a message above the limit (after sending
        close 1009). Like ``receive_some`` on a buffered stream, it returns without a checkpoint when a message
        is already waiting.
        """
        messages = self._messages
        if not messages:  # the common case on a busy stream: a message waits, no socket read, no task switch
            await self._wait_for_messages()
        return messages.popleft()

    async def get_messages(self) -> list[str | bytes]:
        """Every complete message received so far, at least one, oldest first: what one socket read brought.

        Like :meth:`get_message` (the same errors, raised once every message before them was returned), for a
        reader that handles a burst in one go: one await per socket read instead of one per message.
        """
        messages = self._messages
        if not messages:
            await self._wait_for_messages()
        batch = list(messages)
        messages.clear()
        return batch

    async def _wait_for_messages(self) -> None:
        """Read until a complete message is queued; raise the refusal or the close that came first."""
        messages = self._messages
        async with self._receive_lock:
            while not messages:
                if self._refused is not None:
                    refused, self._refused = self._refused, None
                    raise refused
                if self._closed is not None:
                    raise self._closed
                await self._receive_some()

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary message."""
        if self._close_sent or self._closed is not None:
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
            await self._send_close(code, reason)
            # RFC 6455 §7.1.1: wait for the server's close frame (or its hang-up)
            if self._receive_lock.locked():
                await self._close_seen.wait()  # the reading task will see the reply
            else:
                async with self._receive_lock:
                    while not self._close_seen.is_set():
                        await self._receive_some()
        except GatewayConnectionError:
            pass  # already gone (or garbage while closing): nothing left to be graceful about
        finally:
            if self._closed is None:
                self._closed = GatewayConnectionClosed(code, reason)
            self._close_seen.set()
            await trio.aclose_forcefully(self._stream)

    # ----------------------------------------------------------------- internals

    async def _send_close(self, code: int, reason: str) -> None:
        """Our close frame, once. ``CLOSE_NO_STATUS`` sends a close frame without a code."""
        if self._close_sent:
            return
        if code in LOCAL_ONLY_CODES:
            raise LocalProtocolError(f"close code {code} may not be sent (RFC 6455 §7.4.1)")
        self._close_sent = True
        # wsproto recognises "no code" only as the enum member (a plain 1005 would be rewritten to 1000)
        close = (
            ws_events.CloseConnection(code=CloseReason.NO_STATUS_RCVD)
            if code == CLOSE_NO_STATUS
            else ws_events.CloseConnection(code=code, reason=reason or None)
        )
        frame = self._ws.send(close)
        with contextlib.suppress(GatewayConnectionError):  # it may have hung up already
            await self._send_bytes(frame)

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
        if self._early:
            early, self._early = self._early, b""
            await self._parse(early)
            return
        try:
            data = await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost(f"connection lost ({exc})") from None
        if not data:
            raise self._lost("the server closed the TCP connection")
        await self._parse(data)

    async def _parse(self, data: bytes | bytearray) -> None:
        try:
            controls = self._parser.feed(bytes(data), self._messages)
        except FrameTooLarge as exc:
            # the messages before it are still delivered; get_message raises this after them
            self._refused = exc
            await self._send_close(CLOSE_MESSAGE_TOO_BIG, "message too big")
            if self._closed is None:
                self._closed = GatewayConnectionClosed(CLOSE_MESSAGE_TOO_BIG, "message too big")
            return
        except FrameViolation as exc:
            log.warning("%s; closing with %d", exc, exc.code)
            await self._send_close(exc.code, "protocol error")
            self._lost_with(exc.code, exc.reason)
            return
        for opcode, payload in controls:
            if opcode == OP_PING:
                if not self._close_sent:
                    with contextlib.suppress(GatewayConnectionError):  # a dead socket shows on the next read
                        await self._send_bytes(self._ws.send(ws_events.Ping(payload=payload).response()))
            elif opcode == OP_CLOSE:
                await self._on_close(payload)
            # OP_PONG: we send no pings (heartbeats are gateway payloads), nothing to do

    def _lost_with(self, code: int | None, reason: str) -> None:
        if self._closed is None:
            self._closed = GatewayConnectionClosed(code, reason)
        self._close_seen.set()  # nothing more will be parsed

    async def _on_close(self, payload: bytes) -> None:
        try:
            code, reason = close_payload(payload)
        except FrameViolation as exc:
            log.warning("%s; closing with %d", exc, exc.code)
            await self._send_close(exc.code, "protocol error")
            self._lost_with(exc.code, exc.reason)
            return
        # echo Discord's code (RFC 6455 §5.5.1), an empty close frame with an empty one; no-op if we closed first
        await self._send_close(code if code is not None else CLOSE_NO_STATUS, "")
        self._lost_with(code, reason)
