"""One framework connection, whatever carries it (trio; transport-independent).

A mirai-api-http framework connection is the same conversation over every message transport (docs/mirai-api-http.md
§3.4): commands come in as frames with a ``syncId``, responses go back with the same ``syncId``, events are pushed
with the reserved one. :class:`FrameworkConnection` runs that conversation over any :class:`MessageTransport`
— today a websocket the reverse-ws dialer opened (:mod:`adapters.mirai.reverse_ws`); a websocket a framework
opened to the bridge works the same way. The transport only moves whole messages; everything about mirai lives
in the sans-I/O :class:`~adapters.mirai.session.MiraiSession` (verify, junk, built-in answers) and in the
command handler.

Per connection:

* the **reader** (the connection's main task) feeds every message to the session, sends handshake replies
  directly, and starts one task per command (at most :data:`MAX_CONCURRENT_COMMANDS` run at once; the rest wait
  their turn, none is dropped);
* the **writer** (started once the framework is verified) first replays every outbox frame after the
  connection's cursor, then keeps sending new outbox frames and queued responses. A frame counts as delivered
  (see :mod:`relay.storage.outbox`) once the framework's TCP acknowledged its last byte, when the transport can tell
  (:class:`AcknowledgingTransport`: plain TCP under Linux; the **acknowledgement watcher** looks every
  :data:`ACK_POLL` while frames wait for it, also while a write waits for the framework's window), else once
  ``send_messages`` returned (wss). The cursor moves only then, so when the connection drops the frames still
  queued in the kernel are sent again on the next one;
* the **expirer** answers commands that outlive ``command_timeout`` with a code-500 response
  (:class:`~adapters.mirai.correlator.CommandCorrelator`), so every command gets exactly one response.

Memory stays bounded when a framework stops reading: events wait in the durable outbox (the writer only reads
:data:`WRITE_BATCH` at a time), and at most :data:`MAX_UNANSWERED_COMMANDS` commands may be unanswered before the
reader stops reading (TCP back-pressure to the framework).
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import random
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

import attrs
import trio

from adapters.mirai import codec
from adapters.mirai.codec import IncomingFrame
from adapters.mirai.correlator import CommandCorrelator, Response, Ticket
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
from adapters.mirai.sessions import SessionRegistry
from relay.config import MiraiConfig
from relay.errors import WebSocketError
from relay.storage.outbox import Outbox

log = logging.getLogger(__name__)

#: commands of one connection running at the same time; 256 so a burst of a few hundred (each waiting on
#: Discord's rate limiter) never queues behind one slow call
MAX_CONCURRENT_COMMANDS: Final = 256
#: commands received but not yet answered on one connection; beyond this the reader stops reading, so a
#: framework that floods commands without reading responses cannot grow memory without bound
MAX_UNANSWERED_COMMANDS: Final = 4_096
#: outbox frames read per writer round (memory per round ~ this many frames)
WRITE_BATCH: Final = 256
#: a command whose timeout response was sent is cancelled this long after its deadline (late results dropped)
LATE_COMPLETION_GRACE: Final = 5.0
#: seconds the writer waits after a wake-up for more events to share the socket write (adds at most this to
#: event latency; skipped when command responses are waiting)
WRITE_COALESCE_DELAY: Final = 0.001
#: a wake-up sooner than this after the last write means events arrive faster than one per pause: a burst
BURST_GAP: Final = 0.0005
#: seconds between looks at the peer's acknowledgements while written frames wait for one (one ioctl each)
ACK_POLL: Final = 0.005
#: bad frames of one connection logged each at WARNING; after that one line per REJECTED_LOG_EVERY (a framework
#: stuck sending garbage must not flood the log; every frame is still answered)
REJECTED_LOGGED: Final = 10
REJECTED_LOG_EVERY: Final = 1000


class MessageTransport(Protocol):
    """What a framework connection needs from its transport: whole messages in, batches of text frames out.

    Both raise :class:`~relay.errors.WebSocketError` (or :class:`~relay.errors.FrameTooLarge`) once the
    connection is over; that ends :meth:`FrameworkConnection.run`.
    """

    async def get_message(self) -> str | bytes: ...

    async def send_messages(self, messages: list[str]) -> None: ...


@runtime_checkable
class AcknowledgingTransport(Protocol):
    """A transport that can also say which of its bytes the peer's TCP acknowledged
    (:class:`relay.wire.connection.WebSocketConnection` on plain TCP under Linux: ``ack_tracking``)."""

    @property
    def ack_tracking(self) -> bool: ...

    @property
    def bytes_sent(self) -> int: ...

    def acknowledged_bytes(self) -> int | None: ...

    async def send_messages_counted(self, messages: list[str], placed: Callable[[list[int]], None]) -> None: ...


@attrs.define
class ConnectionCounters:
    """Counts kept across the connections of one framework destination or listener."""

    connections: int = 0  #: transports opened
    verifications: int = 0  #: successful verifies
    timed_out: int = 0  #: commands answered by their timeout
    frames_delivered: int = 0  #: event frames written to a verified connection (the cursor moved past them)


class FrameworkConnection:
    """The state of one framework connection; lives exactly as long as its transport. Run it with :meth:`run`.

    ``cursor`` names the outbox cursor this connection delivers from (registered by the caller). ``session`` may
    already be verified (a transport that authenticates during its own handshake): the writer then starts at
    once. ``dispatcher_for_session``, if given, is called with the session key after a successful verify and its
    result serves this connection instead of ``dispatcher`` (so ``sessionInfo`` can report the key).
    """

    def __init__(
        self,
        *,
        label: str,
        transport: MessageTransport,
        session: MiraiSession,
        outbox: Outbox,
        cursor: str,
        dispatcher: CommandDispatcher,
        config: MiraiConfig,
        bot_id: Callable[[], int],
        counters: ConnectionCounters,
        bot_online: Callable[[], bool] = lambda: True,
        dispatcher_for_session: Callable[[str], CommandDispatcher] | None = None,
        keep_frame: Callable[[str], bool] | None = None,
    ) -> None:
        self.label = label
        self.transport = transport
        self.session = session
        self.outbox = outbox
        self.cursor = cursor
        self.dispatcher = dispatcher
        self.dispatcher_for_session = dispatcher_for_session
        #: which outbox frames this connection delivers (a ws channel's filter); None = every frame
        self.keep_frame = keep_frame
        self.command_timeout = config.command_timeout
        self.bot_id = bot_id
        self.bot_online = bot_online
        #: a connection that verifies here announces the bot's state itself, so a BotOnlineEvent in the outbox (the
        #: process's first READY, before any framework could verify) would be a second one: not sent on it. One
        #: that arrives verified (the ws adapter's handshake) keeps the outbox's ("\0": a prefix no frame has).
        self._online_prefix = (
            "\0"
            if session.state is SessionState.VERIFIED
            else codec.event_frame_prefix(config.reserved_sync_id, "BotOnlineEvent")
        )
        self.counters = counters
        self.correlator = CommandCorrelator(timeout=config.command_timeout)
        self.limiter = trio.CapacityLimiter(MAX_CONCURRENT_COMMANDS)
        # one token per unanswered command / queued response; released when the response is written
        self.unanswered = trio.Semaphore(MAX_UNANSWERED_COMMANDS)
        self.responses: collections.deque[str] = collections.deque()
        self.wake = trio.Event()
        #: the expirer sleeps in this scope until the earliest command deadline (inf: no command in flight)
        self.expiry = trio.CancelScope()
        self.writing = False  #: the writer runs (after verify); before that the reader sends replies itself
        self._on_session_closed: Callable[[], None] | None = None
        #: the transport, when it tells what the peer's TCP acknowledged: the cursor then follows that, not writes
        self._acks = transport if isinstance(transport, AcknowledgingTransport) and transport.ack_tracking else None
        #: per written batch, oldest first: where each of its event frames ends in the byte stream, and their seqs
        #: (not acknowledged yet); one entry a batch keeps the event path free of per-frame bookkeeping
        self._unacknowledged: collections.deque[tuple[list[int], list[int]]] = collections.deque()
        self._acknowledgement_wanted = trio.Event()
        self.rejected = 0  #: frames answered with the bare 400 (each is logged up to REJECTED_LOGGED)

    @property
    def verified(self) -> bool:
        return self.session.state is SessionState.VERIFIED

    def _wake_writer(self, _seq: int = 0) -> None:
        self.wake.set()

    async def run(self) -> None:
        """Serve the connection until its transport ends (the transport's error propagates), or until its session
        is released by another transport (then it returns). The session's reference is given back either way."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._expire_commands)
                if self._acks is not None:
                    nursery.start_soon(self._watch_acknowledgements)
                if self.verified:
                    self._start_writing(nursery)
                while True:
                    message = await self.transport.get_message()
                    try:
                        actions = self.session.receive(
                            message, bot_id=self.bot_id(), now=trio.current_time(), bot_online=self.bot_online()
                        )
                    except Exception as exc:  # a bug in the session: this frame is lost, the connection is not
                        log.error("%s: a frame could not be handled; answered as a bad frame", self.label, exc_info=exc)
                        actions = [FrameRejected(f"{type(exc).__name__}: {exc}")]
                        if self.verified:
                            actions.insert(0, SendFrame(codec.encode_raw(codec.INVALID_PARAMETER)))
                    for action in actions:
                        await self._apply(action, nursery)
        finally:
            held = self.session.session
            if held is not None and self._on_session_closed is not None:
                held.remove_close_listener(self._on_session_closed)
            self.session.leave()

    def _end_with_session(self, nursery: trio.Nursery) -> None:
        """When the session is removed elsewhere (http ``/release``), this connection ends
        (docs/mirai-api-http.md §4.2)."""
        session = self.session.session
        if session is None:
            return

        def session_closed() -> None:
            log.info("%s: the session was released; closing the connection", self.label)
            nursery.cancel_scope.cancel(reason="session released")

        if session.closed:
            session_closed()
        else:
            self._on_session_closed = session_closed
            session.add_close_listener(session_closed)

    def _start_writing(self, nursery: trio.Nursery) -> None:
        log.info(
            "%s: framework verified (bot %d); delivering from outbox seq %d",
            self.label,
            self.session.bot_id,
            self.outbox.cursor(self.cursor) + 1,
        )
        self.writing = True
        self._end_with_session(nursery)
        nursery.start_soon(self._write)

    async def _apply(
        self, action: SendFrame | Verified | Execute | Ignored | FrameRejected, nursery: trio.Nursery
    ) -> None:
        if isinstance(action, SendFrame):
            if self.writing:
                await self._queue_response(action.text)
            else:
                await self.transport.send_messages([action.text])  # handshake replies: the writer is not running yet
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
            self.counters.verifications += 1
            if self.dispatcher_for_session is not None:
                self.dispatcher = self.dispatcher_for_session(action.session_key)
            self._start_writing(nursery)
        elif isinstance(action, FrameRejected):
            self.rejected += 1
            if self.rejected <= REJECTED_LOGGED or not self.rejected % REJECTED_LOG_EVERY:
                log.warning(
                    "%s: bad frame from the framework answered with code 400: %s (%d so far)",
                    self.label,
                    action.reason,
                    self.rejected,
                )
        else:
            log.debug("%s: %s", self.label, action.reason)

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
        hard_stop = trio.current_time() + self.command_timeout + LATE_COMPLETION_GRACE
        response: Response | None = None
        with trio.move_on_at(hard_stop):
            try:
                self.limiter.acquire_nowait()  # a fresh task: no need to checkpoint again before it runs
            except trio.WouldBlock:
                await self.limiter.acquire()
            try:
                data = await self.dispatcher.dispatch(frame.command, frame.sub_command, frame.content)
            except Exception as exc:
                log.exception("%s: command %r (syncId %r) failed", self.label, frame.command, frame.sync_id)
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
        # round trip (~0.1 ms each on the bench machine). The transport's send lock keeps whole frames apart.
        try:
            await self.transport.send_messages([codec.encode_response(response.sync_id, response.data)])
        except WebSocketError:
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
                self.counters.timed_out += 1
                self._answer(response)

    async def _write(self) -> None:
        """Replay the backlog after the cursor, then stream new events and queued responses (command tasks write
        their own responses once verified; the transport's send lock keeps frames whole)."""
        outbox = self.outbox
        name = self.cursor
        cursor = outbox.cursor(name)  # the last frame written (read on from here); the outbox's cursor may lag
        outbox.add_append_listener(self._wake_writer)
        last_write_at = float("-inf")
        acks = self._acks
        unacknowledged = self._unacknowledged
        try:
            while True:
                self.wake = trio.Event()
                texts: list[str] = []
                while self.responses and len(texts) < WRITE_BATCH:
                    texts.append(self.responses.popleft())
                answered = len(texts)
                batch = outbox.read_after(cursor, WRITE_BATCH)
                online = self._online_prefix
                keep = self.keep_frame
                seqs: list[int] = []
                if acks is None and keep is None:
                    texts.extend([frame for _, frame in batch if not frame.startswith(online)])
                else:
                    for seq, frame in batch:
                        if not frame.startswith(online) and (keep is None or keep(frame)):
                            texts.append(frame)
                            seqs.append(seq)
                if not texts and batch:  # nothing for this connection in it (another channel's; a BotOnlineEvent)
                    cursor = batch[-1][0]
                    if acks is not None and unacknowledged:
                        unacknowledged.append(([acks.bytes_sent], [cursor]))  # delivered once what precedes is
                    else:
                        outbox.ack(name, cursor)
                    continue
                if not texts:
                    await self.wake.wait()
                    if not self.responses and trio.current_time() - last_write_at < BURST_GAP:
                        # Events come one per gateway message; waking per event meant one socket write per
                        # frame (a third of the bridge's CPU in the bench profile). When the next event follows
                        # the last write this closely a burst is on, and a short pause lets it share one write.
                        # A lone event, or a command response, goes out at once: a pause would only add latency.
                        await trio.sleep(WRITE_COALESCE_DELAY)
                    continue
                if acks is None:
                    await self.transport.send_messages(texts)  # one socket write for the whole batch
                else:
                    last = batch[-1][0] if batch else 0

                    def placed(
                        ends: list[int], answered: int = answered, seqs: list[int] = seqs, last: int = last
                    ) -> None:
                        # each event frame is delivered once the framework's TCP acknowledged its last byte
                        frame_ends = ends[answered:]
                        if last and (not seqs or seqs[-1] != last):
                            frame_ends.append(ends[-1])  # a skipped frame closes the batch
                            seqs.append(last)
                        if seqs:
                            unacknowledged.append((frame_ends, seqs))
                            self._acknowledgement_wanted.set()

                    await acks.send_messages_counted(texts, placed)
                last_write_at = trio.current_time()
                for _ in range(answered):
                    self.unanswered.release()
                if batch:
                    cursor = batch[-1][0]
                    if acks is None:
                        outbox.ack(name, cursor)  # delivered: written to a verified connection's socket (wss)
                    else:
                        self._ack_acknowledged()  # delivered: acknowledged by the framework's TCP
                    # written (the cursor follows the acknowledgements); a frame this connection skips is not counted
                    self.counters.frames_delivered += len(texts) - answered
        finally:
            # a last look: frames acknowledged since the last one count; the rest stay after the cursor and are
            # sent again on the next connection (after a reset the kernel's queue proves nothing: not trusted)
            self._ack_acknowledged()
            outbox.remove_append_listener(self._wake_writer)

    async def _watch_acknowledgements(self) -> None:
        """While written frames wait for the framework's acknowledgement, look every :data:`ACK_POLL` (also while
        the writer itself waits for the framework's window to open)."""
        while True:
            if not self._unacknowledged:
                self._acknowledgement_wanted = trio.Event()
                await self._acknowledgement_wanted.wait()
            await trio.sleep(ACK_POLL)
            self._ack_acknowledged()

    def _ack_acknowledged(self) -> None:
        """Move the outbox cursor over the written frames the peer's TCP has acknowledged."""
        unacknowledged = self._unacknowledged
        if self._acks is None or not unacknowledged:
            return
        acknowledged = self._acks.acknowledged_bytes()
        if acknowledged is None:
            return  # not established any more: what is not acknowledged yet is replayed
        seq = 0
        while unacknowledged:
            ends, seqs = unacknowledged[0]
            if ends[-1] <= acknowledged:
                seq = seqs[-1]
                unacknowledged.popleft()
                continue
            done = bisect.bisect_right(ends, acknowledged)
            if done:
                seq = seqs[done - 1]
                unacknowledged[0] = (ends[done:], seqs[done:])
            break
        if seq:
            self.outbox.ack(self.cursor, seq)


def new_session(config: MiraiConfig, rng: random.Random, registry: SessionRegistry | None = None) -> MiraiSession:
    """A session awaiting the framework's ``verify``, configured from ``[mirai]``; ``registry`` is the bridge's
    sessions shared by every transport (a private one when None)."""
    return MiraiSession(
        verify_key=config.verify_key,
        enable_verify=config.enable_verify,
        single_mode=config.single_mode,
        reserved_sync_id=config.reserved_sync_id,
        max_frame_bytes=config.max_frame_bytes,
        rng=rng,
        registry=registry,
    )
