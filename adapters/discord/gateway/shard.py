"""Trio shell around :class:`adapters.discord.gateway.session.ShardSession` (docs/discord.md §1, §2.12).

Per connection there are two tasks in one nursery:

* the **reader** awaits websocket messages, decodes them, feeds the state machine and hands every event to
  ``on_event`` synchronously. It never awaits the framework side, so heartbeat ACKs keep being processed even
  when a framework is stalled (docs/architecture.md §5); only ``make_room`` (below) may hold it, briefly;
* the **pump** sleeps until the machine's next deadline (or until woken), runs ``tick`` (heartbeats, zombie
  detection), sends the frames the send limiter releases, and closes the socket with the machine's resumable
  close code when it asks to.

The supervisor loop around them reconnects with backoff, waits for identify slots from the shared
:class:`IdentifyGate`, and raises :class:`relay.errors.GatewayClosed` on fatal close codes.

``on_event`` must not block (it is a plain function; do slow work elsewhere). An exception it raises is a bug
in the consumer: it is logged with the event's name and the event is skipped; the reader carries on (one bad
payload never ends the gateway). Back-pressure goes through ``make_room`` instead: the reader awaits it
every :data:`READER_YIELD_EVERY` messages, so a consumer whose buffers are full can hold the reader (and only
the reader: the pump's heartbeats, commands and the framework writers keep running) until it has caught up.
It must hold only briefly: an ACK not read before the next heartbeat makes the connection a zombie (the bridge's
hold is capped at 0.5 s, see ``relay.app``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import attrs
import trio

from adapters.discord import USER_AGENT
from adapters.discord.gateway.close_codes import RESUMABLE_CLOSE_CODE
from adapters.discord.gateway.events import (
    DispatchReceived,
    GatewayEvent,
    ResumeState,
    ShardConnected,
    ShardDisconnected,
    ShardGuildsLoaded,
    ShardReady,
    ShardResumed,
)
from adapters.discord.gateway.pacing import IdentifyPacer
from adapters.discord.gateway.payloads import PayloadDecoder
from adapters.discord.gateway.presence import identify_presence
from adapters.discord.gateway.session import ShardSession, ShardStatistics
from adapters.discord.rest.client import GatewayBotInfo
from relay.config import DiscordConfig
from relay.errors import (
    ConfigError,
    FrameTooLarge,
    GatewayClosed,
    RemoteProtocolError,
    WebSocketClosed,
    WebSocketHandshakeFailed,
)
from relay.wire.client import StreamOpener, connect_websocket
from relay.wire.connection import WebSocketConnection

log = logging.getLogger(__name__)

#: seconds allowed for the TCP + TLS + websocket handshake of one connection attempt
CONNECT_TIMEOUT = 30.0
#: seconds a close handshake may take before we drop the socket (shielded cleanup is bounded by this)
CLOSE_GRACE = 5.0
#: the reader yields to other tasks after this many messages. get_messages serves a whole socket read from
#: memory without a checkpoint, and one 256 KiB zlib-stream read holds ~2,000 events (~0.3 s of work): without
#: a yield the mirai writer and the pump sat idle meanwhile and the backlog piled up in memory (bench, 40,000
#: events: peak RSS 245 MB without, ~110 MB with 256; 64 cost more CPU in smaller write batches)
READER_YIELD_EVERY = 256

#: how a failed TLS handshake's reason begins (relay.wire.client.tls_failure_text): logged at WARNING
_TLS_FAILURES = ("certificate verify failed", "TLS handshake failed")

OnEvent = Callable[[GatewayEvent], None]
#: awaited by the reader every READER_YIELD_EVERY messages; returns once the consumer can take more (it must
#: checkpoint, like any trio function). The default only yields.
MakeRoom = Callable[[], Awaitable[None]]
#: the stream opener for one gateway URL (the main or the resume URL): a proxy tunnel, or None to connect directly
OpenStreamFor = Callable[[str], StreamOpener | None]


class IdentifyGate:
    """Shared identify pacing for every shard of the process (trio wrapper of :class:`IdentifyPacer`)."""

    def __init__(self, pacer: IdentifyPacer) -> None:
        self.pacer = pacer

    @classmethod
    def for_gateway(cls, info: GatewayBotInfo, *, reserve: int) -> IdentifyGate:
        return cls(IdentifyPacer.from_limit(info.session_start_limit, now=trio.current_time(), reserve=reserve))

    async def wait_until_identify_likely(self, shard_id: int) -> None:
        """Wait (without taking a slot) until the daily budget and the shard's concurrency bucket would allow
        an identify, so no socket sits open for a long wait; the slot itself is taken after HELLO."""
        while True:
            now = trio.current_time()
            budget_wait = self.pacer.budget_delay(now)
            if budget_wait > 0:
                log.warning("shard %d: %s; waiting %.0f s", shard_id, self.pacer.budget_error(now), budget_wait)
                await trio.sleep(budget_wait)
                continue
            delay = self.pacer.slot_delay(shard_id, now)
            if delay <= 0:
                return
            await trio.sleep(delay)

    async def wait_for_slot(self, shard_id: int) -> None:
        """Wait for, and take, an identify slot (budget and max_concurrency bucket)."""
        while True:
            now = trio.current_time()
            delay = self.pacer.acquire(shard_id, now)
            if delay <= 0:
                return
            log.debug("shard %d: identify slot in %.2f s", shard_id, delay)
            await trio.sleep(delay)


@attrs.define(eq=False)
class Shard:
    """One shard: its state machine and the tasks that drive it. Build with :func:`serve_shard`."""

    config: DiscordConfig
    machine: ShardSession
    on_event: OnEvent
    identify_gate: IdentifyGate
    make_room: MakeRoom = trio.lowlevel.checkpoint
    #: the TCP stream opener for a gateway URL (a proxy tunnel, see relay.egress); None: connect directly
    open_stream: OpenStreamFor | None = None
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _ready: trio.Event = attrs.field(factory=trio.Event)
    #: set once the guilds of the current READY are loaded (see ShardGuildsLoaded); replaced on a new READY
    _guilds_loaded: trio.Event = attrs.field(factory=trio.Event)
    _identify_task_running: bool = False
    #: a graceful stop was asked for (aclose): close resumably and do not reconnect
    _closing: bool = False
    _connected: bool = False
    _stopped: trio.Event = attrs.field(factory=trio.Event)
    #: events whose ``on_event`` raised (each logged with its name, then skipped)
    consumer_errors: int = 0

    @property
    def shard_id(self) -> int:
        return self.machine.shard_id

    def session(self) -> ResumeState | None:
        """The current resumable session (persist it on shutdown to resume after a quick restart)."""
        return self.machine.session_state()

    def statistics(self) -> ShardStatistics:
        return self.machine.statistics()

    def send_nowait(self, payload: Mapping[str, Any]) -> None:
        """Queue an application payload (op 3 presence, op 8 member request...); it goes out within the
        120/60 s limit once the shard is connected. Raises trio.WouldBlock when the queue is full.
        """
        if not self.machine.queue_send(payload):
            raise trio.WouldBlock
        self._wakeup.set()

    async def wait_ready(self) -> None:
        """Wait until the shard first reached READY or RESUMED."""
        await self._ready.wait()

    @property
    def guilds_loaded(self) -> bool:
        """Every guild of the shard's READY arrived or was given up as unavailable (ShardGuildsLoaded)."""
        return self.machine.guilds_loaded

    async def wait_guilds_loaded(self) -> None:
        """Wait until :attr:`guilds_loaded` (at once when it is)."""
        while not self.machine.guilds_loaded:
            await self._guilds_loaded.wait()

    async def aclose(self) -> None:
        """Close the connection with the resumable code and stop reconnecting (the session stays resumable).

        The close happens inside the live connection, so the websocket's reader sees Discord's close reply;
        cancelling the shard instead would cancel that reader too and the close would wait out its grace.
        Callers bound the wait (``move_on_after``); idempotent.
        """
        self._closing = True
        if not self._connected:
            self._stopped.set()
        self._wakeup.set()
        await self._stopped.wait()

    async def run(self, *, task_status: trio.TaskStatus[Shard] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._supervise)
            await self._ready.wait()
            task_status.started(self)
        raise AssertionError("unreachable: _supervise never returns")  # pragma: no cover

    # ----------------------------------------------------------------- supervisor

    async def _supervise(self) -> NoReturn:
        machine = self.machine
        while True:
            if self._closing:
                self._stopped.set()
                await trio.sleep_forever()
            if machine.will_identify:
                # hold no socket open while the daily budget is spent (it can take hours) or the bucket is busy
                await self.identify_gate.wait_until_identify_likely(machine.shard_id)
            url = machine.connect_url()
            code: int | None = None
            reason = server_reason = ""
            try:
                self._connected = True
                code, server_reason = await self._run_connection(url)
            except WebSocketHandshakeFailed as exc:
                reason = f"could not connect: {exc.reason}"
                if exc.reason.startswith(_TLS_FAILURES):
                    # not a passing outage: the operator must look (a proxy or clock in the way, a wrong URL)
                    log.warning("shard %d: %s", machine.shard_id, exc.reason)
            except trio.TooSlowError:
                reason = f"could not connect within {CONNECT_TIMEOUT:.0f} s"
            except WebSocketClosed as exc:
                code, server_reason = exc.code, exc.reason
            except (OSError, trio.BrokenResourceError) as exc:
                reason = f"network error: {type(exc).__name__}"
            finally:
                self._connected = False
            if self._closing:
                log.info("shard %d: closed (session kept resumable)", machine.shard_id)
                continue
            self._identify_task_running = False
            events = machine.connection_lost(code, now=trio.current_time(), reason=reason, server_reason=server_reason)
            self._emit(events)
            if machine.fatal_error is not None:
                raise machine.fatal_error
            delay = 0.0
            for event in events:
                if isinstance(event, ShardDisconnected) and event.will_retry_in is not None:
                    delay = event.will_retry_in
            await trio.sleep(delay)

    async def _run_connection(self, url: str) -> tuple[int | None, str]:
        """One websocket connection; returns Discord's close code (None: no close frame) and its reason text."""
        machine = self.machine
        decoder = PayloadDecoder(compressed=self.config.compress, max_size=self.config.max_message_bytes)
        with trio.fail_after(CONNECT_TIMEOUT):
            ws = await connect_websocket(
                url,
                max_message_size=self.config.max_message_bytes,
                # the same User-Agent as REST (docs/discord.md §8.1): some Discord-compatible servers refuse none
                headers=[("User-Agent", USER_AGENT)],
                open_stream=self.open_stream(url) if self.open_stream is not None else None,
                peer="the Discord gateway",
            )
        try:
            self._wakeup = trio.Event()
            self._emit(machine.connection_opened(now=trio.current_time()))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, ws)
                closed = await self._read(ws, decoder, nursery)
                nursery.cancel_scope.cancel(reason="connection closed")
            return closed
        finally:
            # Always close with an explicit code: 1000 would end the Discord session (docs/discord.md §2.12).
            # aclose is idempotent, so after a close handshake this only closes the stream.
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                await ws.aclose(machine.close_code or RESUMABLE_CLOSE_CODE)

    async def _read(
        self, ws: WebSocketConnection, decoder: PayloadDecoder, nursery: trio.Nursery
    ) -> tuple[int | None, str]:
        machine = self.machine
        on_event = self.on_event
        make_room = self.make_room
        malformed_seen = machine.malformed_dispatches
        until_yield = READER_YIELD_EVERY
        while True:
            try:
                batch = await ws.get_messages()  # one await per socket read, not per message
            except WebSocketClosed as exc:
                return exc.code, exc.reason
            except FrameTooLarge as exc:
                # the socket already sent close 1009, which keeps the session resumable (docs/discord.md §2.12)
                log.warning("shard %d: %s; raise discord.max_message_bytes", machine.shard_id, exc)
                return (ws.closed.code if ws.closed is not None else None), ""
            # the messages of one read arrived together: they share a timestamp, taken again after each yield
            now = trio.current_time()
            decoder.prepare(batch)  # with zlib-stream: a busy read inflated 64 messages a call (see PayloadDecoder)
            for message in batch:
                until_yield -= 1
                if not until_yield:
                    until_yield = READER_YIELD_EVERY
                    await make_room()
                    now = trio.current_time()
                try:
                    payload = decoder.feed(message)
                    if payload is None:
                        continue  # a zlib-stream payload split over several messages
                    events = machine.receive(payload, now=now)
                except RemoteProtocolError as exc:
                    log.warning("shard %d: %s; reconnecting to resume", machine.shard_id, exc)
                    machine.abort(str(exc), now=now)
                    self._wakeup.set()
                    continue
                if machine.malformed_dispatches != malformed_seen:
                    malformed_seen = machine.malformed_dispatches
                    log.warning(
                        "shard %d: skipped a malformed dispatch (op 0 without an event name); %d so far",
                        machine.shard_id,
                        malformed_seen,
                    )
                for event in events:
                    if type(event) is DispatchReceived:
                        try:
                            on_event(event)  # the hot path: no logging, no awaiting
                        except Exception as exc:
                            self._consumer_failed(event, exc)
                    else:
                        self._emit([event])
                if machine.has_work:
                    self._wakeup.set()
                if machine.identify_pending and not self._identify_task_running:
                    self._identify_task_running = True
                    nursery.start_soon(self._identify_when_allowed)

    async def _identify_when_allowed(self) -> None:
        await self.identify_gate.wait_for_slot(self.machine.shard_id)
        self.machine.identify_now(now=trio.current_time())
        self._wakeup.set()

    async def _pump(self, ws: WebSocketConnection) -> None:
        machine = self.machine
        while True:
            deadline = min(machine.next_deadline(), machine.guilds_deadline())
            if deadline > trio.current_time():
                with trio.move_on_at(deadline):
                    await self._wakeup.wait()
            # replace the event *before* working, so a set() during the work wakes the next wait
            self._wakeup = trio.Event()
            now = trio.current_time()
            self._emit(machine.expire_guilds(now=now))
            self._emit(machine.tick(now=now))
            try:
                for frame in machine.frames_to_send(now=now):
                    await ws.send_message(frame)
            except WebSocketClosed:
                return  # the reader sees the close too and ends the connection
            if self._closing:
                with trio.move_on_after(CLOSE_GRACE):
                    await ws.aclose(RESUMABLE_CLOSE_CODE)  # docs/discord.md §2.12: keeps the session resumable
                return
            if machine.close_code is not None:
                with trio.move_on_after(CLOSE_GRACE):
                    await ws.aclose(machine.close_code)
                return
            await trio.lowlevel.checkpoint()

    # ----------------------------------------------------------------- events

    def _emit(self, events: list[GatewayEvent]) -> None:
        shard_id = self.machine.shard_id
        for event in events:
            if isinstance(event, ShardConnected):
                log.info(
                    "shard %d: connected to %s (%s)",
                    shard_id,
                    event.url,
                    "resuming" if event.resuming else "new session",
                )
            elif isinstance(event, ShardReady):
                log.info(
                    "shard %d: READY as user %s, %d guilds, session %s",
                    shard_id,
                    event.user.get("id"),
                    len(event.guild_ids),
                    event.session.session_id,
                )
                if self._guilds_loaded.is_set():
                    self._guilds_loaded = trio.Event()  # a new session loads its guilds afresh
                self._ready.set()
            elif isinstance(event, ShardGuildsLoaded):
                log.info(
                    "shard %d: guilds loaded: %d of %d (%d unavailable)",
                    shard_id,
                    event.guilds - event.unavailable,
                    event.guilds,
                    event.unavailable,
                )
                self._guilds_loaded.set()
            elif isinstance(event, ShardResumed):
                log.info(
                    "shard %d: resumed session %s (%d events replayed)",
                    shard_id,
                    event.session.session_id,
                    event.replayed,
                )
                self._ready.set()
            elif isinstance(event, ShardDisconnected):
                if event.will_retry_in is None:
                    # WARNING, not ERROR: the GatewayClosed raised next carries the advice and is reported once
                    log.warning("shard %d: fatal close code %s (%s), stopping", shard_id, event.code, event.reason)
                else:
                    log.info(
                        "shard %d: disconnected (%s); reconnecting in %.1f s to %s",
                        shard_id,
                        event.reason,
                        event.will_retry_in,
                        event.action.value,
                    )
            try:
                self.on_event(event)
            except Exception as exc:
                self._consumer_failed(event, exc)

    def _consumer_failed(self, event: GatewayEvent, exc: Exception) -> None:
        """``on_event`` raised ``exc``: a bug in the consumer. Logged with the event's name and the traceback; the
        reader carries on."""
        self.consumer_errors += 1
        name = event.name if isinstance(event, DispatchReceived) else type(event).__name__
        log.error(
            "shard %d: handling %s failed; skipped (%d so far)",
            self.shard_id,
            name,
            self.consumer_errors,
            exc_info=exc,
        )


async def serve_shard(
    *,
    config: DiscordConfig,
    token: str,
    shard_id: int,
    shard_count: int,
    gateway_url: str,
    on_event: OnEvent,
    identify_gate: IdentifyGate,
    initial_session: ResumeState | None = None,
    rng: random.Random | None = None,
    make_room: MakeRoom = trio.lowlevel.checkpoint,
    open_stream: OpenStreamFor | None = None,
    task_status: trio.TaskStatus[Shard] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run one shard forever; ``task_status.started(shard)`` once it first reached READY or RESUMED.

    ``gateway_url`` is the main URL (``/gateway/bot``'s ``url`` or ``config.gateway_url``). Raises
    :class:`GatewayClosed` (``fatal=True``) on a fatal close code.
    """
    shard = _build_shard(
        config=config,
        token=token,
        shard_id=shard_id,
        shard_count=shard_count,
        gateway_url=gateway_url,
        on_event=on_event,
        identify_gate=identify_gate,
        initial_session=initial_session,
        rng=rng or random.Random(),
        make_room=make_room,
        open_stream=open_stream,
    )
    try:
        await shard.run(task_status=task_status)
    except BaseExceptionGroup as group:
        _raise_fatal_from(group)
        raise


@attrs.define(eq=False)
class Gateway:
    """The running shards of this process (``task_status`` value of :func:`serve_gateway`)."""

    shards: dict[int, Shard]
    shard_count: int

    def sessions(self) -> dict[int, ResumeState]:
        """Resumable sessions by shard id (persist them on shutdown; pass back as ``initial_sessions``)."""
        out: dict[int, ResumeState] = {}
        for shard_id, shard in self.shards.items():
            session = shard.session()
            if session is not None:
                out[shard_id] = session
        return out

    def send_nowait(self, shard_id: int, payload: Mapping[str, Any]) -> None:
        """Queue an application payload on one shard (see :meth:`Shard.send_nowait`)."""
        shard = self.shards.get(shard_id)
        if shard is None:
            raise ConfigError("discord.shard_ids", [f"shard {shard_id} is not run by this process"])
        shard.send_nowait(payload)

    def statistics(self) -> dict[int, ShardStatistics]:
        return {shard_id: shard.statistics() for shard_id, shard in self.shards.items()}

    @property
    def guilds_loaded(self) -> bool:
        """The readiness of the Discord side: every shard reached READY (or RESUMED) and every guild its READY
        listed arrived, or was given up as unavailable. Status lines, a readiness endpoint and the supervisor
        notification all use this (issue 18); :meth:`wait_guilds_loaded` waits for it."""
        return all(shard.guilds_loaded for shard in self.shards.values())

    async def wait_guilds_loaded(self) -> None:
        """Wait until :attr:`guilds_loaded`."""
        for shard in self.shards.values():
            await shard.wait_guilds_loaded()
        if not self.guilds_loaded:  # a shard re-identified meanwhile: wait again
            await self.wait_guilds_loaded()

    async def aclose(self) -> None:
        """Close every shard resumably (see :meth:`Shard.aclose`); callers bound the wait."""
        async with trio.open_nursery() as nursery:
            for shard in self.shards.values():
                nursery.start_soon(shard.aclose)


async def serve_gateway(
    *,
    config: DiscordConfig,
    token: str,
    fetch_gateway_info: Callable[[], Awaitable[GatewayBotInfo]],
    on_event: OnEvent,
    initial_sessions: Mapping[int, ResumeState] | None = None,
    rng: random.Random | None = None,
    make_room: MakeRoom = trio.lowlevel.checkpoint,
    open_stream: OpenStreamFor | None = None,
    task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run every shard of this process in one nursery, forever.

    Shard count: ``config.shard_count`` or, when None ("auto"), ``/gateway/bot``'s ``shards``; shard ids:
    ``config.shard_ids`` or all. ``task_status.started(gateway)`` once every shard reached READY or RESUMED.
    Raises :class:`GatewayClosed` (``fatal=True``, with ``advice``) on a fatal close code of any shard, and
    :class:`ConfigError` for shard ids outside the shard count.
    """
    info = await fetch_gateway_info()
    shard_count = config.shard_count if config.shard_count is not None else info.shards
    shard_ids = tuple(config.shard_ids) if config.shard_ids else tuple(range(shard_count))
    bad = [f"shard id {sid} is outside 0..{shard_count - 1}" for sid in shard_ids if not 0 <= sid < shard_count]
    if shard_count < 1:
        bad.append(f"shard count must be at least 1, got {shard_count}")
    if bad:
        raise ConfigError("discord.shard_ids", bad)
    url = config.gateway_url or info.url
    limit = info.session_start_limit
    log.info(
        "gateway: %d of %d shards, %d/%d identifies left (resets in %.0f s), max_concurrency %d",
        len(shard_ids),
        shard_count,
        limit.remaining,
        limit.total,
        limit.reset_after,
        limit.max_concurrency,
    )
    gate = IdentifyGate.for_gateway(info, reserve=config.identify_reserve)
    base_rng = rng or random.Random()
    sessions = initial_sessions or {}
    shards = {
        sid: _build_shard(
            config=config,
            token=token,
            shard_id=sid,
            shard_count=shard_count,
            gateway_url=url,
            on_event=on_event,
            identify_gate=gate,
            initial_session=sessions.get(sid),
            rng=random.Random(base_rng.random()),
            make_room=make_room,
            open_stream=open_stream,
        )
        for sid in shard_ids
    }
    gateway = Gateway(shards=shards, shard_count=shard_count)
    try:
        async with trio.open_nursery() as nursery:
            for shard in shards.values():
                nursery.start_soon(_run_shard, shard)
            for shard in shards.values():
                await shard.wait_ready()
            log.info("gateway: all %d shards ready", len(shards))
            task_status.started(gateway)
    except BaseExceptionGroup as group:
        _raise_fatal_from(group)
        raise
    raise AssertionError("unreachable: shards never return")  # pragma: no cover


async def _run_shard(shard: Shard) -> None:
    await shard.run()


def _build_shard(
    *,
    config: DiscordConfig,
    token: str,
    shard_id: int,
    shard_count: int,
    gateway_url: str,
    on_event: OnEvent,
    identify_gate: IdentifyGate,
    initial_session: ResumeState | None,
    rng: random.Random,
    make_room: MakeRoom = trio.lowlevel.checkpoint,
    open_stream: OpenStreamFor | None = None,
) -> Shard:
    machine = ShardSession(
        shard_id=shard_id,
        shard_count=shard_count,
        token=token,
        intents=config.intents_value,
        gateway_url=gateway_url,
        rng=rng,
        compress=config.compress,
        large_threshold=config.large_threshold,
        intent_names=config.intents,
        backoff=config.reconnect,
        initial_session=initial_session,
        presence=identify_presence(config.presence),
    )
    return Shard(
        config=config,
        machine=machine,
        on_event=on_event,
        identify_gate=identify_gate,
        make_room=make_room,
        open_stream=open_stream,
    )


def _raise_fatal_from(group: BaseExceptionGroup[BaseException]) -> None:
    """Our nurseries are an implementation detail: surface a fatal GatewayClosed as itself (trio docs)."""
    matched, rest = group.split(GatewayClosed)
    if matched is not None and rest is None:
        first = matched.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
