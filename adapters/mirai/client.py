"""The mirai reverse-ws client (trio shell): the bridge dials each framework's websocket server.

One loop per configured destination (mirai-api-http.md §3.2, §3.6), all in one nursery; a destination that is
down never affects the others. Per connection:

* the **reader** (the connection's main task) feeds every message to the sans-I/O
  :class:`~adapters.mirai.session.MiraiSession`, sends handshake replies directly, and starts one task per
  command (at most :data:`MAX_CONCURRENT_COMMANDS` run at once; the rest wait their turn, none is dropped);
* the **writer** (started once the framework has verified) first replays every outbox frame after the
  destination's cursor, then keeps sending new outbox frames and command responses. A frame counts as
  delivered once ``send_messages`` returned on this verified connection (see :mod:`relay.outbox`); the cursor
  moves only then;
* the **expiry** task answers commands that outlive ``mirai.command_timeout`` with a code-500 response
  (:class:`~relay.correlator.CommandCorrelator`), so every command gets exactly one response.

Memory stays bounded when a framework stops reading: events wait in the durable outbox (the writer only reads
:data:`WRITE_BATCH` at a time), and at most :data:`MAX_UNANSWERED_COMMANDS` commands may be unanswered before
the reader stops reading (TCP backpressure to the framework). Incoming frames larger than
``mirai.max_frame_bytes`` close the connection with 1009 (Message Too Big) before they are buffered whole;
the client logs it and reconnects. The websocket itself is :class:`FrameworkSocket`, a thin shell over
wsproto that writes a whole batch of frames with one socket write (the text frames themselves are encoded by
:mod:`adapters.mirai.frames`).

Any error — refused connection, refused handshake, TLS failure, dropped socket — ends the connection and the
destination reconnects forever with exponential backoff, full jitter and a cap (``[mirai.reverse_ws.reconnect]``;
mirai-api-http itself gives up on several of these, §3.6). The dial waits until the bot id is known (Discord
READY, or ``mirai.bot_id``), because a framework binds to that id when it verifies.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import random
import ssl
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio
import wsproto
import wsproto.events as ws_events
from wsproto.connection import ConnectionState

from adapters.mirai import codec
from adapters.mirai.codec import IncomingFrame
from adapters.mirai.frames import MASKING_KEY_BYTES, encode_text_frames
from adapters.mirai.session import (
    CommandDispatcher,
    Execute,
    FrameRejected,
    Ignored,
    MiraiSession,
    SendFrame,
    SessionState,
    Verified,
)
from relay.backoff import backoff_delay
from relay.config import DestinationConfig, MiraiConfig, Protocol
from relay.correlator import CommandCorrelator, Response, Ticket
from relay.errors import (
    FrameTooLarge,
    FrameworkConnectionError,
    FrameworkDisconnected,
    FrameworkHandshakeRefused,
    RelayError,
    StoreError,
)
from relay.outbox import FLUSH_INTERVAL, Outbox
from relay.ports import BotIdentity

log = logging.getLogger(__name__)

#: commands of one connection running at the same time; 256 so a burst of a few hundred (each waiting on
#: Discord's rate limiter) never queues behind one slow call
MAX_CONCURRENT_COMMANDS: Final = 256
#: commands received but not yet answered on one connection; beyond this the reader stops reading, so a
#: framework that floods commands without reading responses cannot grow memory without bound
MAX_UNANSWERED_COMMANDS: Final = 4_096
#: outbox frames read per writer round (memory per round ~ this many frames)
WRITE_BATCH: Final = 256
#: the outbox flusher writes its next batch without waiting FLUSH_INTERVAL while this many frames wait: in a
#: burst the writer thread then runs back to back, and the gateway reader (which waits for room, see
#: relay.app) is held only as long as the disk really is behind
FLUSH_AT_ONCE: Final = 256
#: appends between looks whether FLUSH_AT_ONCE frames wait (the look costs a min() and a bisect)
FLUSH_CHECK_EVERY: Final = 64
#: bytes per socket read
RECEIVE_BYTES: Final = 65_536
#: RFC 6455 §7.4.1: 1009 "message too big"
CLOSE_MESSAGE_TOO_BIG: Final = 1009
#: how often to look again whether Discord READY told us the bot id, before dialing
BOT_ID_POLL_INTERVAL: Final = 0.1
#: a command whose timeout response was sent is cancelled this long after its deadline (late results dropped)
LATE_COMPLETION_GRACE: Final = 5.0
#: seconds granted to the closing handshake when a connection ends
CLOSE_GRACE: Final = 2.0
#: seconds to put our close frame on the wire when the connection's tasks are being cancelled (shutdown): the
#: peer's reply cannot be read any more then, so waiting the full CLOSE_GRACE would only delay the exit
CLOSE_FRAME_GRACE: Final = 0.25
#: RFC 6455 §7.4.1: 1001 "going away" — the bridge is leaving or reconnecting (explicit, never 1006)
CLOSE_GOING_AWAY: Final = 1001


# --------------------------------------------------------------------------- pure helpers


def merged(adapter_wide: dict[str, str], per_destination: dict[str, str]) -> dict[str, str]:
    """Adapter-wide values, overridden by the destination's (mirai-api-http.md §3.2, documented semantics).

    Keys compare case-insensitively (HTTP header names), keeping the destination's spelling.
    """
    result: dict[str, str] = {}
    lower_to_key: dict[str, str] = {}
    for source in (adapter_wide, per_destination):
        for key, value in source.items():
            previous = lower_to_key.pop(key.lower(), None)
            if previous is not None:
                del result[previous]
            result[key] = value
            lower_to_key[key.lower()] = key
    return result


def destination_resource(config: MiraiConfig, destination: DestinationConfig) -> str:
    """The request target: ``path`` plus the merged ``extra_parameters`` as the query string."""
    path = destination.path if destination.path.startswith("/") else "/" + destination.path
    params = merged(config.reverse_ws.extra_parameters, destination.extra_parameters)
    if params:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
    return path


def _host_port(destination: DestinationConfig) -> str:
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    return f"{host}:{destination.port}"


def destination_url(config: MiraiConfig, destination: DestinationConfig) -> str:
    """``{protocol}://{host}:{port}{path}`` plus the merged ``extra_parameters`` (mirai-api-http.md §3.2)."""
    return f"{destination.protocol.value}://{_host_port(destination)}{destination_resource(config, destination)}"


def destination_headers(config: MiraiConfig, destination: DestinationConfig, bot_id: int) -> list[tuple[bytes, bytes]]:
    """The merged ``extra_headers``, plus ``qq: <bot id>`` unless ``mirai.send_qq_header`` is false."""
    headers = merged(config.reverse_ws.extra_headers, destination.extra_headers)
    if config.send_qq_header and not any(key.lower() == "qq" for key in headers):
        headers["qq"] = str(bot_id)
    return [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]


def ssl_context_for(destination: DestinationConfig) -> ssl.SSLContext | None:
    """Certificate-verifying TLS for ``wss`` (system trust store, plus ``ca_file``); never disabled."""
    if destination.protocol is not Protocol.WSS:
        return None
    context = ssl.create_default_context()
    if destination.ca_file:
        try:
            context.load_verify_locations(cafile=destination.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise RelayError(
                f"destination {destination.label}: cannot load ca_file {destination.ca_file!r}: {exc}; "
                "fix the path or remove ca_file to use the system trust store"
            ) from None
    return context


# --------------------------------------------------------------------------- the websocket


def encode_outgoing_text_frames(messages: Sequence[str]) -> bytes:
    """``messages`` as masked client text frames, each with its own fresh masking key.

    RFC 6455 §5.3 wants the keys unpredictable, from a strong source of entropy: ``os.urandom``, one call for
    the whole batch (4 bytes per frame).
    """
    return encode_text_frames(messages, os.urandom(MASKING_KEY_BYTES * len(messages)))


class FrameworkSocket:
    """A minimal RFC 6455 client over wsproto on a trio stream: whole messages in, batched frames out.

    trio-websocket writes every message with its own socket write; pushing events one by one that way costs
    about 4x more CPU per event than encoding a batch of frames and writing them at once (measured on loopback:
    ~2,600 vs ~12,000 frames/s), so the event path uses wsproto directly, as DESIGN.md §7 allows. Outgoing
    text frames skip even wsproto (:func:`encode_outgoing_text_frames`): its per-frame encoding was ~10% of the
    bridge's CPU at saturation. wsproto keeps the handshake, reading, and control frames (pong, close).
    Pings are answered, a close from the framework is answered and reported as :class:`FrameworkDisconnected`,
    incoming messages above ``max_message_size`` close the connection with 1009 and raise :class:`FrameTooLarge`.
    One task may receive while another sends (sends are serialized by a lock).
    """

    def __init__(self, stream: trio.abc.Stream, *, max_message_size: int) -> None:
        self._stream = stream
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._max_message_size = max_message_size
        self._send_lock = trio.StrictFIFOLock()
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._text_parts: list[str] = []
        self._byte_parts: list[bytes] = []
        self._size = 0
        self._accepted = False
        self._closed: FrameworkConnectionError | None = None

    @classmethod
    async def connect(
        cls,
        *,
        host: str,
        port: int,
        host_header: str,
        resource: str,
        headers: list[tuple[bytes, bytes]],
        ssl_context: ssl.SSLContext | None,
        max_message_size: int,
    ) -> FrameworkSocket:
        """TCP connect, TLS handshake (certificate verified) when ``ssl_context``, websocket upgrade."""
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        try:
            if ssl_context is not None:
                tls = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
                await tls.do_handshake()
                stream = tls
            sock = cls(stream, max_message_size=max_message_size)
            await sock._handshake(host_header, resource, headers)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return sock

    async def _handshake(self, host_header: str, resource: str, headers: list[tuple[bytes, bytes]]) -> None:
        await self._send_bytes(
            self._ws.send(ws_events.Request(host=host_header, target=resource, extra_headers=headers))
        )
        while not self._accepted:
            await self._receive_some()

    async def get_message(self) -> str | bytes:
        """The next complete message; raises :class:`FrameworkConnectionError` once the connection is over."""
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            await self._receive_some()
        return self._messages.popleft()

    async def send_messages(self, messages: list[str]) -> None:
        """Write ``messages`` as text frames with one socket write. When this returns, all were written.

        The frames bypass wsproto, which is sound because on a client's send side wsproto keeps no state per
        data frame beyond its ``OPEN`` check (``FrameProtocol._outbound_opcode`` only tracks fragmented messages,
        which nothing here sends) and no extension is ever negotiated (our handshake proposes none, and wsproto
        refuses an accept naming one). So its close and ping handling stays correct. The ``OPEN`` check runs
        before encoding and again under the send lock: a close may arrive from the framework while this batch
        waits behind a pong, and RFC 6455 §5.5.1 only lets an endpoint finish its *current* message before it
        answers a close, while a batch holds many. The outbox frames of a batch not sent go out again on the
        next connection (the cursor moves only after this returns).
        """
        self._raise_unless_open()
        data = encode_outgoing_text_frames(messages)
        async with self._send_lock:
            self._raise_unless_open()
            await self._send_all_locked(data)

    def _raise_unless_open(self) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            raise self._closed or FrameworkDisconnected(None, "the connection is closing")

    async def aclose(self, code: int = 1001, reason: str = "") -> None:
        """Send a close frame (if still open), wait briefly for the framework to hang up, close the stream."""
        try:
            if self._ws.state is ConnectionState.OPEN:
                await self._send_bytes(self._ws.send(ws_events.CloseConnection(code=code, reason=reason)))
                # RFC 6455 §7.1.1: the client waits for the server to close the TCP connection (bounded)
                with trio.move_on_after(CLOSE_FRAME_GRACE):
                    while await self._stream.receive_some(RECEIVE_BYTES):
                        pass
        except (FrameworkConnectionError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # already gone: nothing left to be graceful about
        finally:
            if self._closed is None:
                self._closed = FrameworkDisconnected(code, reason)
            await trio.aclose_forcefully(self._stream)

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            await self._send_all_locked(data)

    async def _send_all_locked(self, data: bytes) -> None:
        """Write ``data``; the caller holds ``_send_lock``."""
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise FrameworkDisconnected(None, f"connection lost while sending ({exc})") from exc

    async def _receive_some(self) -> None:
        try:
            data = await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise FrameworkDisconnected(None, f"connection lost ({exc})") from exc
        if not data:
            self._closed = self._closed or FrameworkDisconnected(None, "")
            raise self._closed
        self._ws.receive_data(bytes(data))
        for event in self._ws.events():
            if isinstance(event, ws_events.TextMessage | ws_events.BytesMessage):
                self._size += len(event.data)
                if self._size > self._max_message_size:
                    size, self._size = self._size, 0
                    self._text_parts.clear()
                    self._byte_parts.clear()
                    await self.aclose(CLOSE_MESSAGE_TOO_BIG, "message too big")
                    raise FrameTooLarge(size, self._max_message_size)
                if isinstance(event, ws_events.TextMessage):
                    self._text_parts.append(event.data)
                    if event.message_finished:
                        self._messages.append("".join(self._text_parts))
                        self._text_parts.clear()
                        self._size = 0
                else:
                    self._byte_parts.append(bytes(event.data))
                    if event.message_finished:
                        self._messages.append(b"".join(self._byte_parts))
                        self._byte_parts.clear()
                        self._size = 0
            elif isinstance(event, ws_events.Ping):
                await self._send_bytes(self._ws.send(event.response()))
            elif isinstance(event, ws_events.CloseConnection):
                self._closed = FrameworkDisconnected(event.code, event.reason or "")
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(FrameworkConnectionError):  # it may hang up before our reply
                        await self._send_bytes(self._ws.send(event.response()))
            elif isinstance(event, ws_events.AcceptConnection):
                self._accepted = True
            elif isinstance(event, ws_events.RejectConnection):
                raise FrameworkHandshakeRefused(event.status_code)
            # Pong, RejectData: nothing to do


# --------------------------------------------------------------------------- statistics


@attrs.frozen(kw_only=True)
class DestinationStatistics:
    label: str
    connected: bool
    verified: bool
    delivered_seq: int  #: the destination's outbox cursor
    backlog: int  #: outbox frames not yet delivered to it
    commands_in_flight: int
    responses_queued: int
    connections: int  #: successful websocket handshakes so far
    verifications: int
    timed_out_commands: int


#: seconds the writer waits after a wake-up for more events to share the socket write (adds at most this to
#: event latency; skipped when command responses are waiting)
WRITE_COALESCE_DELAY: Final = 0.001
#: a wake-up sooner than this after the last write means events arrive faster than one per pause: a burst
BURST_GAP: Final = 0.0005


# --------------------------------------------------------------------------- one connection


class _Connection:
    """State of one websocket connection (lives exactly as long as the socket)."""

    def __init__(self, client: DestinationClient, ws: FrameworkSocket) -> None:
        self.client = client
        self.ws = ws
        config = client.config
        self.session = MiraiSession(
            verify_key=config.verify_key,
            enable_verify=config.enable_verify,
            single_mode=config.single_mode,
            reserved_sync_id=config.reserved_sync_id,
            max_frame_bytes=config.max_frame_bytes,
            rng=client.rng,
        )
        self.correlator = CommandCorrelator(timeout=config.command_timeout)
        self.limiter = trio.CapacityLimiter(MAX_CONCURRENT_COMMANDS)
        # one token per unanswered command / queued response; released when the response is written
        self.unanswered = trio.Semaphore(MAX_UNANSWERED_COMMANDS)
        self.responses: collections.deque[str] = collections.deque()
        self.wake = trio.Event()
        #: the expirer sleeps in this scope until the earliest command deadline (inf: no command in flight)
        self.expiry = trio.CancelScope()
        self.writing = False  #: the writer runs (after verify); before that the reader sends replies itself
        self.dispatcher: CommandDispatcher = client.dispatcher

    @property
    def verified(self) -> bool:
        return self.session.state is SessionState.VERIFIED

    def _wake_writer(self, _seq: int = 0) -> None:
        self.wake.set()

    async def run(self) -> None:
        client = self.client
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_commands)
            while True:
                message = await self.ws.get_message()
                for action in self.session.receive(message, bot_id=client.bot_id()):
                    await self._apply(action, nursery)

    async def _apply(
        self, action: SendFrame | Verified | Execute | Ignored | FrameRejected, nursery: trio.Nursery
    ) -> None:
        client = self.client
        if isinstance(action, SendFrame):
            if self.writing:
                await self._queue_response(action.text)
            else:
                await self.ws.send_messages([action.text])  # handshake replies: the writer is not running yet
        elif isinstance(action, Execute):
            # nowait first: every checkpoint on a command's way costs a scheduler pass (~0.1 ms on the bench
            # machine); the reader checkpoints on its next socket read anyway
            try:
                self.unanswered.acquire_nowait()
            except trio.WouldBlock:
                await self.unanswered.acquire()
            now = trio.current_time()
            ticket = self.correlator.begin(action.frame.sync_id, action.frame.command, now=now)
            # moving the expirer's deadline wakes no task (it would cost every command a task switch)
            self.expiry.deadline = min(self.expiry.deadline, now + self.correlator.timeout)
            nursery.start_soon(self._run_command, ticket, action.frame)
        elif isinstance(action, Verified):
            client.verifications += 1
            if client.dispatcher_for_session is not None:
                self.dispatcher = client.dispatcher_for_session(action.session_key)
            log.info(
                "%s: framework verified (bot %d); delivering from outbox seq %d",
                client.label,
                self.session.bot_id,
                client.outbox.cursor(client.label) + 1,
            )
            self.writing = True
            nursery.start_soon(self._write)
        elif isinstance(action, FrameRejected):
            log.warning("%s: bad frame from the framework answered with code 400: %s", client.label, action.reason)
        else:
            log.debug("%s: %s", client.label, action.reason)

    async def _queue_response(self, text: str) -> None:
        await self.unanswered.acquire()
        self.responses.append(text)
        self.wake.set()

    def _answer(self, response: Response | None) -> None:
        """Queue a command's response (its ``unanswered`` token was taken when the command arrived)."""
        if response is None:
            return  # already answered by a timeout; the correlator logged it
        self.responses.append(codec.encode_response(response.sync_id, response.data))
        self.wake.set()

    async def _run_command(self, ticket: Ticket, frame: IncomingFrame) -> None:
        client = self.client
        hard_stop = trio.current_time() + client.config.command_timeout + LATE_COMPLETION_GRACE
        response: Response | None = None
        with trio.move_on_at(hard_stop):
            try:
                self.limiter.acquire_nowait()  # a fresh task: no need to checkpoint again before it runs
            except trio.WouldBlock:
                await self.limiter.acquire()
            try:
                data = await self.dispatcher.dispatch(frame.command, frame.sub_command, frame.content)
            except Exception as exc:
                log.exception("%s: command %r (syncId %r) failed", client.label, frame.command, frame.sync_id)
                response = self.correlator.fail(ticket, f"internal error in {frame.command}: {exc}")
            else:
                response = self.correlator.complete(ticket, data)
            finally:
                self.limiter.release()
        if response is None:
            return  # answered by the timeout already (the correlator logged it), or cut off at the hard stop
        if not self.writing:
            self._answer(response)
            return
        # Written by this task rather than queued for the writer: one task switch less on every command's
        # round trip (~0.1 ms each on the bench machine). The send lock keeps whole frames apart.
        try:
            await self.ws.send_messages([codec.encode_response(response.sync_id, response.data)])
        except FrameworkConnectionError:
            pass  # the connection is closing; its reader ends it (a queued response would be lost the same way)
        finally:
            self.unanswered.release()

    async def _expire_commands(self) -> None:
        """Answer the commands whose deadline passed; sleeps until the earliest deadline (see ``expiry``)."""
        while True:
            deadline = self.correlator.next_deadline()
            self.expiry = trio.CancelScope(deadline=math.inf if deadline is None else deadline)
            with self.expiry:
                await trio.sleep_forever()
            for response in self.correlator.expire(now=trio.current_time()):
                self.client.timed_out += 1
                self._answer(response)

    async def _write(self) -> None:
        """Replay the backlog after the cursor, then stream new events and queued responses (command tasks write
        their own responses once verified; the send lock keeps frames whole)."""
        client = self.client
        outbox = client.outbox
        label = client.label
        cursor = outbox.cursor(label)
        outbox.add_append_listener(self._wake_writer)
        last_write_at = float("-inf")
        try:
            while True:
                self.wake = trio.Event()
                texts: list[str] = []
                while self.responses and len(texts) < WRITE_BATCH:
                    texts.append(self.responses.popleft())
                answered = len(texts)
                batch = outbox.read_after(cursor, WRITE_BATCH)
                texts.extend([frame for _, frame in batch])
                if not texts:
                    await self.wake.wait()
                    if not self.responses and trio.current_time() - last_write_at < BURST_GAP:
                        # Events come one per gateway message; waking per event meant one socket write per
                        # frame (a third of the bridge's CPU in the bench profile). When the next event follows
                        # the last write this closely a burst is on, and a short pause lets it share one write.
                        # A lone event, or a command response, goes out at once: a pause would only add latency.
                        await trio.sleep(WRITE_COALESCE_DELAY)
                    continue
                await self.ws.send_messages(texts)  # one socket write for the whole batch
                last_write_at = trio.current_time()
                for _ in range(answered):
                    self.unanswered.release()
                if batch:
                    cursor = batch[-1][0]
                    outbox.ack(label, cursor)  # delivered: written to a verified connection's socket
        finally:
            outbox.remove_append_listener(self._wake_writer)


# --------------------------------------------------------------------------- one destination


class DestinationClient:
    """The connection loop of one destination. Use :func:`serve_destination` or :func:`serve_reverse_ws`."""

    def __init__(
        self,
        *,
        destination: DestinationConfig,
        config: MiraiConfig,
        outbox: Outbox,
        dispatcher: CommandDispatcher,
        identity: BotIdentity,
        rng: random.Random | None = None,
        dispatcher_for_session: Callable[[str], CommandDispatcher] | None = None,
    ) -> None:
        self.destination = destination
        self.dispatcher_for_session = dispatcher_for_session
        self.config = config
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.identity = identity
        self.rng = rng if rng is not None else random.Random()
        self.label = destination.label
        self.connections = 0
        self.verifications = 0
        self.timed_out = 0
        self._connection: _Connection | None = None

    def bot_id(self) -> int:
        """The qq the bridge presents: ``mirai.bot_id`` when set, else the Discord bot user id (0 before READY)."""
        return self.config.bot_id or self.identity.bot_id

    def statistics(self) -> DestinationStatistics:
        conn = self._connection
        cursor = self.outbox.cursor(self.label) if self.label in self.outbox.statistics().cursors else 0
        return DestinationStatistics(
            label=self.label,
            connected=conn is not None,
            verified=conn is not None and conn.verified,
            delivered_seq=cursor,
            backlog=max(0, self.outbox.last_seq - cursor),
            commands_in_flight=conn.correlator.in_flight if conn else 0,
            responses_queued=len(conn.responses) if conn else 0,
            connections=self.connections,
            verifications=self.verifications,
            timed_out_commands=self.timed_out,
        )

    async def serve(self, *, task_status: trio.TaskStatus[DestinationClient] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect — forever. Ready (``started``) once the destination's cursor exists."""
        self.outbox.register(self.label)
        if self.destination.method.upper() != "GET":
            log.warning(
                "%s: method %r ignored: a websocket upgrade is always a GET (RFC 6455 §4.1)",
                self.label,
                self.destination.method,
            )
        task_status.started(self)
        attempt = 0
        while True:
            await self._wait_for_bot_id()
            verifications_before = self.verifications
            # except*: the connection's tasks run in a nursery, which wraps whatever ends them in a group
            try:
                await self._connect_and_serve()
                log.info("%s: connection ended", self.label)
            except* FrameTooLarge as group:
                log.warning(
                    "%s: %s (mirai.max_frame_bytes); connection closed with 1009 — raise the limit if such "
                    "frames are legitimate",
                    self.label,
                    _first(group),
                )
            except* FrameworkHandshakeRefused as group:
                log.warning("%s: %s", self.label, _first(group))
            except* FrameworkDisconnected as group:
                log.info("%s: disconnected: %s", self.label, _first(group))
            except* trio.TooSlowError:
                log.warning(
                    "%s: connecting took longer than mirai.reverse_ws.connect_timeout=%g s",
                    self.label,
                    self.config.reverse_ws.connect_timeout,
                )
            except* (OSError, ssl.SSLError, trio.BrokenResourceError, RelayError) as group:
                log.warning("%s: connection failed: %s", self.label, _describe(_first(group)))
            except* Exception:  # reconnect on ANY error (DESIGN.md §5), but show what went wrong
                log.exception("%s: unexpected error on the connection", self.label)
            finally:
                self._connection = None
            if self.verifications > verifications_before:
                attempt = 0  # a verified session resets the backoff
            delay = backoff_delay(self.config.reverse_ws.reconnect, attempt, self.rng)
            attempt += 1
            log.info("%s: reconnecting in %.1f s", self.label, delay)
            await trio.sleep(delay)

    async def _wait_for_bot_id(self) -> None:
        if self.bot_id():
            return
        log.info("%s: waiting for the Discord bot id (READY) before dialing the framework", self.label)
        while not self.bot_id():
            await trio.sleep(BOT_ID_POLL_INTERVAL)

    async def _connect_and_serve(self) -> None:
        config = self.config
        safe_url = f"{self.destination.protocol.value}://{self.destination.host}:{self.destination.port}"
        log.info("%s: connecting to %s%s", self.label, safe_url, self.destination.path)
        with trio.fail_after(config.reverse_ws.connect_timeout):
            ws = await FrameworkSocket.connect(
                host=self.destination.host,
                port=self.destination.port,
                host_header=_host_port(self.destination),
                resource=destination_resource(config, self.destination),
                headers=destination_headers(config, self.destination, self.bot_id()),
                ssl_context=ssl_context_for(self.destination),
                max_message_size=config.max_frame_bytes,
            )
        self.connections += 1
        log.info("%s: connected; waiting for the framework's verify", self.label)
        connection = _Connection(self, ws)
        self._connection = connection
        try:
            await connection.run()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                await ws.aclose(CLOSE_GOING_AWAY, "relay connection closing")


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group, for a one-line log message."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


# --------------------------------------------------------------------------- all destinations


class ReverseWsClient:
    """Every configured destination; ``statistics()`` gives one record per destination."""

    def __init__(self, destinations: tuple[DestinationClient, ...]) -> None:
        self.destinations = destinations

    def statistics(self) -> tuple[DestinationStatistics, ...]:
        return tuple(d.statistics() for d in self.destinations)


async def serve_outbox_flusher(
    outbox: Outbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Flush ``outbox`` every :data:`relay.outbox.FLUSH_INTERVAL` until cancelled, and once more on the way out.

    Frames some framework lacks (it is down or slow) are written sooner: once :data:`FLUSH_AT_ONCE` of them wait,
    the flusher is woken and writes batch after batch until fewer wait. Frames every framework already has are
    never written (see :meth:`relay.outbox.Outbox.take_batch`).

    Each transaction runs in a worker thread (``Outbox.write_batch``), so the trio loop — the Discord reader
    and its heartbeats included — never waits for the disk (measured ~14 µs of SQLite work per 1 KB event).
    :func:`serve_reverse_ws` runs this itself. Failures are logged and retried (frames stay in memory).
    """
    burst = trio.Event()

    def wake_on_burst(seq: int) -> None:
        # Frames pile up only while some framework is not taking them (down, or slow): write them as soon
        # as a batch is worth it instead of sleeping out the interval while the gateway reader is held.
        if not seq % FLUSH_CHECK_EVERY and outbox.waiting_writes >= FLUSH_AT_ONCE:
            burst.set()

    task_status.started()
    failed = False
    outbox.add_append_listener(wake_on_burst)
    try:
        while True:
            if failed:
                await trio.sleep(FLUSH_INTERVAL)  # a failing disk is not hammered
            elif outbox.waiting_writes < FLUSH_AT_ONCE:
                with trio.move_on_after(FLUSH_INTERVAL):
                    await burst.wait()
            else:
                await trio.lowlevel.checkpoint()  # a burst: write the next batch as soon as the last is done
            burst = trio.Event()
            batch = outbox.take_batch()
            if batch is None:
                continue
            cut: int | None = None
            failed = True
            try:
                # not abandoned on cancel: the transaction always finishes before finish_batch runs
                cut = await trio.to_thread.run_sync(outbox.write_batch, batch)
                failed = False
            except StoreError as exc:
                log.error("outbox: %s; retrying in %.2f s", exc, FLUSH_INTERVAL)
            finally:
                outbox.finish_batch(batch, cut)
    finally:
        outbox.remove_append_listener(wake_on_burst)
        try:
            outbox.flush()  # synchronous: cancellation cannot interrupt it
        except StoreError as exc:
            log.error("outbox: final flush failed: %s", exc)


async def serve_destination(
    *,
    destination: DestinationConfig,
    config: MiraiConfig,
    outbox: Outbox,
    dispatcher: CommandDispatcher,
    identity: BotIdentity,
    rng: random.Random | None = None,
    dispatcher_for_session: Callable[[str], CommandDispatcher] | None = None,
    task_status: trio.TaskStatus[DestinationClient] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one destination's connection loop forever (``started(DestinationClient)``)."""
    client = DestinationClient(
        destination=destination,
        config=config,
        outbox=outbox,
        dispatcher=dispatcher,
        identity=identity,
        rng=rng,
        dispatcher_for_session=dispatcher_for_session,
    )
    await client.serve(task_status=task_status)


async def serve_reverse_ws(
    *,
    config: MiraiConfig,
    outbox: Outbox,
    dispatcher: CommandDispatcher,
    identity: BotIdentity,
    rng: random.Random | None = None,
    dispatcher_for_session: Callable[[str], CommandDispatcher] | None = None,
    task_status: trio.TaskStatus[ReverseWsClient] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every destination of ``config.reverse_ws`` forever; ``started(ReverseWsClient)`` once all cursors exist.

    Also flushes ``outbox`` periodically (:func:`serve_outbox_flusher`); the caller closes it after this ends.
    ``dispatcher`` answers every authenticated command. ``dispatcher_for_session``, if given, is called with the
    session key after each successful verify and its result serves that connection instead (so ``sessionInfo``
    can report the key: ``dispatcher_for_session=handler.for_session``). ``rng`` (session keys, backoff jitter)
    defaults to a fresh ``random.Random()``. Frames larger than ``config.max_frame_bytes`` close the offending
    connection (1009) and it reconnects.
    """
    shared_rng = rng if rng is not None else random.Random()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_outbox_flusher, outbox)
        clients: list[DestinationClient] = []
        for destination in config.reverse_ws.destinations:
            client = await nursery.start(
                _serve_client,
                DestinationClient(
                    destination=destination,
                    config=config,
                    outbox=outbox,
                    dispatcher=dispatcher,
                    identity=identity,
                    rng=shared_rng,
                    dispatcher_for_session=dispatcher_for_session,
                ),
            )
            clients.append(client)
        task_status.started(ReverseWsClient(tuple(clients)))
        if not clients:
            log.warning("no [[mirai.reverse_ws.destinations]] configured: events are kept in the outbox only")
            await trio.sleep_forever()


async def _serve_client(
    client: DestinationClient, *, task_status: trio.TaskStatus[DestinationClient] = trio.TASK_STATUS_IGNORED
) -> None:
    await client.serve(task_status=task_status)


__all__ = [
    "BOT_ID_POLL_INTERVAL",
    "MAX_CONCURRENT_COMMANDS",
    "MAX_UNANSWERED_COMMANDS",
    "WRITE_BATCH",
    "DestinationClient",
    "DestinationStatistics",
    "FrameworkSocket",
    "ReverseWsClient",
    "destination_headers",
    "destination_resource",
    "destination_url",
    "encode_outgoing_text_frames",
    "serve_destination",
    "serve_outbox_flusher",
    "serve_reverse_ws",
    "ssl_context_for",
]
