"""One open websocket connection on a trio stream, either role: whole messages in, batched frames out.

Reading: one large ``receive_some`` is parsed whole by :class:`~relay.wire.frames.FrameParser` and the
complete messages are served from a deque, so most reads of a busy stream return without touching the socket
or switching tasks (trio-websocket's reader task and its channel hop per message were ~15% of the bridge's
CPU on the gateway's stream). :meth:`WebSocketConnection.get_messages` hands a whole read over in one await.

Writing: :meth:`WebSocketConnection.send_messages` encodes a whole batch of text frames and writes it with
one socket write (pushing events one write each cost about 4x more CPU per event). A client masks every frame
with a fresh key from ``os.urandom`` (RFC 6455 §5.3); a server never masks.

What every owner relies on:

* closes always carry the caller's explicit code (the Discord gateway's 4000 keeps a session resumable;
  nothing here turns it into 1000); a connection that ended without a close frame reports ``code=None``
  (1006 is never sent nor invented);
* the close handshake (§7.1): :meth:`WebSocketConnection.aclose` sends our close frame and waits for the
  peer's reply, read by whichever task is reading (a reader may keep reading while another task closes);
  the peer's close frame is answered with the same code; bound the wait at the call site;
* pings are answered with pongs (§5.5.2);
* a message above ``max_message_size`` (alone or with the fragments before it) is refused from its frame
  header, before its payload is buffered: the messages before it are still delivered, then
  :class:`~relay.errors.FrameTooLarge` is raised once and the connection is closed with 1009;
* a frame that breaks RFC 6455 closes the connection with 1002/1007 (:class:`~relay.errors.WebSocketClosed`).

One task may read while others send or close; sends are serialized by a lock, so frames never interleave.

At TRACE (``-vv``) every message in and out is logged (``peer ← …`` / ``peer → …``), shortened by
:func:`relay.logs.shorten_payload` and redacted by the log handler like every line. Whether TRACE is on is read
once, when the connection is made, so the event path pays one boolean test per read and per write.

**What the peer has received.** On a plain TCP socket under Linux a connection also counts the bytes it wrote
(:attr:`WebSocketConnection.bytes_sent`) and says how many of them the peer's TCP has acknowledged
(:meth:`WebSocketConnection.acknowledged_bytes`: the written bytes minus the socket's send queue, ``TIOCOUTQ``), so
an owner can tell which messages reached the other host rather than only the local socket buffer. Elsewhere (TLS,
whose records hide the byte counts; other systems) that is unknown and the owner keeps counting a message
delivered once it was written.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Final

import trio

from relay.errors import FrameTooLarge, WebSocketClosed
from relay.logs import TRACE, shorten_payload
from relay.wire import frames

log = logging.getLogger(__name__)

#: bytes per socket read: a busy stream delivers hundreds of ~1 KB frames per read, parsed in one go
RECEIVE_BYTES: Final = 256 * 1024

try:  # Linux: the bytes of a TCP socket's send queue not yet acknowledged by the peer
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
    _TCP_INFO: int | None = socket.TCP_INFO
except (ImportError, AttributeError):  # pragma: no cover - other systems: acknowledgements stay unknown
    _TIOCOUTQ = _TCP_INFO = None
#: tcpi_state values (linux/tcp_states.h) in which the send queue is still the kernel's account of what the peer
#: lacks; after a reset the kernel drops the queue, so an empty queue then proves nothing
_TCP_ESTABLISHED: Final = 1
_TCP_CLOSE_WAIT: Final = 8


def _tracked_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket whose acknowledgements can be read: a plain TCP stream on Linux, else None."""
    if _TIOCOUTQ is None or not isinstance(stream, trio.SocketStream):
        return None
    sock = stream.socket
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock


class _PromptLock:
    """A first-come-first-served lock (``async with``) that is taken at once when free, and raises ``Cancelled``
    (left free) when its taker is cancelled.

    trio's ``Lock.acquire`` lets every other runnable task run before it returns, even when the lock was free, so a
    frame ready to go waited behind whatever else was runnable: at start-up, the first message after the guilds
    loaded waited ~0.3 ms behind the task reporting readiness (issue 18's READY → first message at one guild).
    Taken at once, the write under it is the schedule point: a socket send lets the other tasks run after it wrote.

    The cancellation check comes once the lock is held and before the block runs: nothing yields between it and the
    socket send's own check, so a sender that places its frames in the byte stream before writing
    (:meth:`WebSocketConnection.send_messages_counted`) only does so for bytes that will be written. (With
    ``acquire``, a cancellation that came while it yielded was raised by the send, after the frames were placed.)
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = trio.StrictFIFOLock()

    async def __aenter__(self) -> None:
        lock = self._lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await trio.lowlevel.checkpoint_if_cancelled()  # yields only to raise
        except BaseException:
            lock.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()


def fresh_masking_keys(frame_count: int) -> bytes:
    """One 4-byte masking key per frame, from a strong source of entropy (RFC 6455 §5.3: unpredictable keys);
    one ``os.urandom`` call for a whole batch."""
    return os.urandom(frames.MASKING_KEY_BYTES * frame_count)


class WebSocketConnection:
    """An open websocket (after the upgrade). Build it with :func:`relay.wire.client.connect_websocket` or
    :func:`relay.wire.server.accept_websocket`; always finish with :meth:`aclose` and an explicit code.

    ``peer`` names the other end in errors and logs (no secrets: never a URL with its query string).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        max_message_size: int,
        peer: str,
        early: bytes = b"",
    ) -> None:
        self._stream = stream
        self._client = client
        self.peer = peer
        # a server reads masked client frames; a client reads unmasked server frames (RFC 6455 §5.1)
        self._parser = frames.FrameParser(max_message_size=max_message_size, masked=not client)
        self._send_lock = _PromptLock()
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._close_sent = False
        # held while a task reads the socket: aclose lets that task read the peer's close reply
        self._receive_lock = trio.Lock()
        self._closed: WebSocketClosed | None = None  # set once the connection is over for reading
        self._close_seen = trio.Event()  # the peer's close frame arrived, or the stream ended
        self._early = early  # frames that came with the upgrade, not parsed yet
        self._refused: FrameTooLarge | None = None  # a too-large message, raised once the deque is empty
        self._trace = log.isEnabledFor(TRACE)  # read once: the hot path tests a boolean
        self._bytes_sent = 0
        self._tracked = _tracked_socket(stream)

    @property
    def closed(self) -> WebSocketClosed | None:
        """Why the connection is over for reading, or None while it is open."""
        return self._closed

    @property
    def is_open(self) -> bool:
        """Neither side has started closing: a send would be written."""
        return not self._close_sent and self._closed is None

    # ----------------------------------------------------------------- reading

    async def get_message(self) -> str | bytes:
        """The next complete message (text: ``str``, binary: ``bytes``).

        Raises :class:`~relay.errors.WebSocketClosed` once the connection is over (after every message received
        before the close was returned), :class:`~relay.errors.FrameTooLarge` for a message above the limit (after
        sending close 1009). Like ``receive_some`` on a buffered stream, it returns without a checkpoint when a
        message is already waiting.
        """
        messages = self._messages
        if not messages:  # the common case on a busy stream: a message waits, no socket read, no task switch
            await self._wait_for_messages()
        return messages.popleft()

    async def get_messages(self) -> list[str | bytes]:
        """Every complete message received so far, at least one, oldest first: what one socket read brought.

        The same errors as :meth:`get_message`, raised once every message before them was returned; for a reader
        that handles a burst in one go (one await per socket read instead of one per message).
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

    # ----------------------------------------------------------------- writing

    def _masking_keys(self, frame_count: int) -> bytes | None:
        return fresh_masking_keys(frame_count) if self._client else None

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary message as one frame."""
        self._raise_unless_open()
        if self._trace:
            self._trace_messages("→", (message,))
        if isinstance(message, str):
            data = frames.encode_text_frames((message,), self._masking_keys(1))
        else:
            data = frames.encode_frame(frames.OP_BINARY, message, self._masking_keys(1))
        await self._send_bytes(data)

    @property
    def bytes_sent(self) -> int:
        """Bytes this connection has written to its stream so far (frames only; not the upgrade)."""
        return self._bytes_sent

    @property
    def ack_tracking(self) -> bool:
        """:meth:`acknowledged_bytes` can answer (a plain TCP socket on Linux)."""
        return self._tracked is not None

    def acknowledged_bytes(self) -> int | None:
        """How many of :attr:`bytes_sent` the peer's TCP has acknowledged (one ``ioctl`` and one ``getsockopt``);
        None when that is unknown: no :attr:`ack_tracking`, or the connection is no longer established."""
        sock = self._tracked
        if sock is None or _TIOCOUTQ is None or _TCP_INFO is None:
            return None
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0"))[0]
            state = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0]  # tcpi_state, asked after the queue
        except OSError:
            return None
        if state not in (_TCP_ESTABLISHED, _TCP_CLOSE_WAIT):
            return None
        return self._bytes_sent - int(queued)

    async def send_messages_counted(self, messages: list[str], placed: Callable[[list[int]], None]) -> None:
        """:meth:`send_messages`, telling ``placed`` where each message will end in :attr:`bytes_sent` (compare
        with :meth:`acknowledged_bytes`) once its place in the stream is fixed, before it is written: a write that
        waits for the peer's window can be followed while it waits."""
        self._raise_unless_open()
        if self._trace:
            self._trace_messages("→", messages)
        ends: list[int] = []
        data = frames.encode_text_frames(messages, self._masking_keys(len(messages)), ends)
        async with self._send_lock:
            self._raise_unless_open()
            start = self._bytes_sent
            placed([start + end for end in ends])
            await self._send_all_locked(data)

    async def send_messages(self, messages: list[str]) -> None:
        """Write ``messages`` as text frames with one socket write; when this returns, all were written.

        The open check runs before encoding and again under the send lock: a close may arrive from the peer
        while this batch waits behind a pong, and RFC 6455 §5.5.1 only lets an endpoint finish its *current*
        message before it answers a close, while a batch holds many.
        """
        self._raise_unless_open()
        if self._trace:
            self._trace_messages("→", messages)
        data = frames.encode_text_frames(messages, self._masking_keys(len(messages)))
        async with self._send_lock:
            self._raise_unless_open()
            await self._send_all_locked(data)

    def _raise_unless_open(self) -> None:
        if self._close_sent or self._closed is not None:
            raise self._closed or WebSocketClosed(self.peer, None, "the connection is closing")

    async def aclose(self, code: int, reason: str = "") -> None:
        """Close with ``code`` (explicit: see the module docstring), wait for the peer's reply, close the stream.

        Idempotent. Bound the wait at the call site (``move_on_after``); the stream is closed even when the wait
        is cancelled. If another task is reading, that task reads the reply and this one waits for it.
        :data:`~relay.wire.frames.CLOSE_NO_STATUS` sends a close frame without a code.
        """
        try:
            await self._send_close(code, reason)
            # RFC 6455 §7.1.1: wait for the peer's close frame (or its hang-up)
            if self._receive_lock.locked():
                await self._close_seen.wait()  # the reading task will see the reply
            else:
                async with self._receive_lock:
                    while not self._close_seen.is_set():
                        await self._receive_some()
        except WebSocketClosed:
            pass  # already gone (or garbage while closing): nothing left to be graceful about
        finally:
            if self._closed is None:
                self._closed = WebSocketClosed(self.peer, code, reason)
            self._close_seen.set()
            await trio.aclose_forcefully(self._stream)

    # ----------------------------------------------------------------- internals

    async def _send_close(self, code: int, reason: str) -> None:
        """Our close frame, once."""
        if self._close_sent:
            return
        payload = frames.encode_close_payload(code, reason)  # refuses codes that may not be sent
        self._close_sent = True
        with contextlib.suppress(WebSocketClosed):  # the peer may have hung up already
            await self._send_bytes(frames.encode_frame(frames.OP_CLOSE, payload, self._masking_keys(1)))

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            await self._send_all_locked(data)

    async def _send_all_locked(self, data: bytes) -> None:
        """Write ``data``; the caller holds ``_send_lock``."""
        try:
            sock = self._tracked
            if sock is None:
                await self._stream.send_all(data)
                self._bytes_sent += len(data)
                return
            # counted as the kernel takes it, so a write still blocked on a full window is counted exactly
            with memoryview(data) as view:
                total = 0
                while total < len(view):
                    sent = await sock.send(view[total:])
                    total += sent
                    self._bytes_sent += sent
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WebSocketClosed(self.peer, None, f"connection lost while sending ({exc})") from None
        except OSError as exc:  # the raw socket's own errors (a reset peer)
            raise WebSocketClosed(self.peer, None, f"connection lost while sending ({exc})") from None

    def _lost(self, why: str) -> WebSocketClosed:
        self._end(None, why)
        assert self._closed is not None
        return self._closed

    def _end(self, code: int | None, reason: str) -> None:
        if self._closed is None:
            self._closed = WebSocketClosed(self.peer, code, reason)
        self._close_seen.set()  # nothing more will be parsed

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
            raise self._lost("the peer closed the TCP connection")
        await self._parse(data)

    def _trace_messages(self, direction: str, messages: Iterable[str | bytes]) -> None:
        for message in messages:
            log.log(TRACE, "%s %s %s", self.peer, direction, shorten_payload(message))

    async def _parse(self, data: bytes | bytearray) -> None:
        queued = len(self._messages)
        try:
            controls = self._parser.feed(bytes(data), self._messages)
        except FrameTooLarge as exc:
            # the messages before it are still delivered; get_message raises this after them
            self._refused = exc
            await self._send_close(frames.CLOSE_MESSAGE_TOO_BIG, "message too big")
            if self._closed is None:
                self._closed = WebSocketClosed(self.peer, frames.CLOSE_MESSAGE_TOO_BIG, "message too big")
            return
        except frames.FrameViolation as exc:
            log.warning("%s from %s; closing with %d", exc, self.peer, exc.code)
            await self._send_close(exc.code, "protocol error")
            self._end(exc.code, exc.reason)
            return
        finally:
            if self._trace and len(self._messages) > queued:
                self._trace_messages("←", itertools.islice(self._messages, queued, None))
        for opcode, payload in controls:
            if opcode == frames.OP_PING:
                if not self._close_sent:
                    with contextlib.suppress(WebSocketClosed):  # a dead socket shows on the next read
                        await self._send_bytes(frames.encode_frame(frames.OP_PONG, payload, self._masking_keys(1)))
            elif opcode == frames.OP_CLOSE:
                await self._on_close(payload)
            # OP_PONG: nothing here sends pings, nothing to do

    async def _on_close(self, payload: bytes) -> None:
        try:
            code, reason = frames.close_payload(payload)
        except frames.FrameViolation as exc:
            log.warning("%s from %s; closing with %d", exc, self.peer, exc.code)
            await self._send_close(exc.code, "protocol error")
            self._end(exc.code, exc.reason)
            return
        # echo the peer's code (RFC 6455 §5.5.1), an empty close frame with an empty one; no-op if we closed first
        await self._send_close(code if code is not None else frames.CLOSE_NO_STATUS, "")
        self._end(code, reason)
