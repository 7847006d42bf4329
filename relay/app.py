"""The composition root: one trio nursery runs the store, the outbox, the Discord shard(s) and every
reverse-ws destination (docs/architecture.md §1). Only this module (and the CLI) imports adapters.

Lifecycle:

* :func:`serve_bridge` opens everything, starts the adapters and calls ``task_status.started()`` once the
  Discord side is ready — every shard READY (or RESUMED) and the guilds of READY loaded
  (``Gateway.guilds_loaded``) — and every destination loop is running (a framework that is down does
  not hold up startup: its events wait in the outbox). The ``[server]`` listener (health, readiness, metrics)
  starts before Discord, so ``/readyz`` answers from the first second; systemd hears ``READY=1`` when
  :func:`relay.observe.readiness` first holds (the definition ``/readyz`` and the status line use too).
* Shutdown (:meth:`RunningBridge.shutdown`, or SIGINT/SIGTERM under :func:`relay.main.run`): new commands are refused,
  in-flight ones get :data:`COMMAND_GRACE` seconds to finish (each still gets a response), the Discord
  connection closes with a resumable code, then the outbox and the store are flushed (with the session, so a
  quick restart resumes instead of identifying) and closed. A second signal exits at once.
* Every flush commits the message ids, the frames and each shard's resume state in one transaction
  (:mod:`relay.storage.flush`, :class:`GatewaySessions`): a start after a clean stop or a crash resumes the saved
  sessions while Discord still keeps them (:func:`resumable_sessions`), and Discord replays exactly what the
  store lacks.
* A store deleted, replaced or damaged beyond repair stops the bridge (:class:`~relay.errors.StoreLost`).
* A fatal Discord error (bad token, disallowed intents) ends :func:`relay.main.run` with exit code 1 and one line
  that says what to do; the process around the bridge (signals, exit codes) is :mod:`relay.main`'s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Final

import attrs
import trio

from adapters.discord.backfill import Backfill, channels_to_read
from adapters.discord.backfill_task import serve_backfill
from adapters.discord.cache import DiscordCache
from adapters.discord.commands_out import DiscordCommandExecutor
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.gateway.members import GatewayMemberLoader
from adapters.discord.gateway.resume import GatewaySessions, hydrate_cache, resumable_sessions
from adapters.discord.gateway.shard import Gateway, serve_gateway
from adapters.discord.listener import GatewayListener, gateway_listener
from adapters.discord.member_requests import MemberRequests
from adapters.discord.own_actions import OwnActions
from adapters.discord.rest.client import RestClient, open_rest_client
from adapters.mirai.deadletters import DeadLetters
from adapters.mirai.events_out import encode_event_frame
from adapters.mirai.handlers import CommandAdmission, CommandCounts, MiraiCommandHandler, PresentedIdentity
from adapters.mirai.reverse_ws import ReverseWsClient
from adapters.mirai.sessions import SessionRegistry
from adapters.mirai.uploads import UploadStore
from adapters.robots.queue import DeliveryQueue
from adapters.robots.service import RobotService, robot_routes, serve_robots
from relay import process
from relay.bridge import Bridge
from relay.config import BridgeConfig, IdMode
from relay.egress import DiscordEgress
from relay.errors import StoreError
from relay.health import health_routes
from relay.ids import SNOWFLAKE_IDS
from relay.listeners import Mount
from relay.notify import Notifier, serve_watchdog
from relay.observe import SPECS, Observed, read_metrics, status_line
from relay.ports import IdPresenter
from relay.proxy import proxied_stream_opener
from relay.storage import guard as store_guard
from relay.storage.contacts import DmContacts
from relay.storage.flushers import STORE_FLUSH_INTERVAL, Wakeup, make_room, serve_flusher
from relay.storage.idmap import open_small_ids
from relay.storage.outbox import Outbox
from relay.storage.sessions import load_gateway_sessions
from relay.storage.store import MessageStore, first_id_from_clock
from relay.transports import MiraiAdapters, serve_mirai_adapters
from relay.web.metrics import Metrics

log = logging.getLogger(__name__)

#: seconds in-flight commands get to finish at shutdown before their connection is closed
COMMAND_GRACE: Final = 5.0
#: seconds the gateway gets to close with its resumable code (the shard itself caps its close at 5 s)
GATEWAY_CLOSE_GRACE: Final = 6.0
#: how often startup looks again whether the bridge is ready, for systemd's READY=1 (only until it is)
READY_POLL_INTERVAL: Final = 0.1
#: seconds between looks at what the gateway listener holds until a deadline (a recall waits 2 s for its entry)
LISTENER_TICK: Final = 0.25


def _activity(bridge: Bridge, outbox: Outbox) -> Callable[[], int]:
    """A counter that grows with the allocation churn: events published plus frames delivered."""

    def count() -> int:
        return bridge.statistics().events_published + sum(outbox.statistics().cursors.values())

    return count


# --------------------------------------------------------------------------- the core object graph


@attrs.frozen(eq=False)
class Core:
    """The objects both data paths run through, wired once (:func:`compose_core`), shared by every transport."""

    cache: DiscordCache
    translator: DispatchTranslator  #: Discord dispatch → envelope events (events_in)
    executor: DiscordCommandExecutor  #: envelope commands → Discord REST (commands_out)
    bridge: Bridge  #: ids through the store, frames into the outbox; the commands' id-resolving front
    identity: PresentedIdentity  #: the bot as frameworks see it
    admission: CommandAdmission  #: refuses new commands while draining at shutdown
    handler: MiraiCommandHandler  #: mirai command → envelope → bridge → mirai data, for every transport
    commands: CommandCounts  #: the handler's answers by command and code (the metrics read them)
    member_loader: GatewayMemberLoader  #: whole member lists over the gateway (op 8); attach() the gateway


def compose_core(
    config: BridgeConfig,
    *,
    store: MessageStore,
    outbox: Outbox,
    rest: RestClient,
    ids: IdPresenter = SNOWFLAKE_IDS,
    uploads: UploadStore | None = None,
) -> Core:
    """Wire the translators, the bridge and the mirai command handler around ``store``, ``outbox`` and ``rest``.

    Both directions meet only in the bridge: events_in → bridge → outbox (events_out encodes the frame), and
    handler (commands_in) → bridge → commands_out → REST. The only object both Discord directions share is
    ``own`` (what the bridge itself did, written by commands_out, read by events_in). ``ids`` is how frameworks
    see Discord ids (``[mirai] ids``, :func:`open_ids`): the frame encoder and the handler present and resolve
    through it, the relay and the Discord side keep Discord ids. ``uploads`` holds what frameworks uploaded over
    the ws/http adapters; the handler sends it when a chain names it.
    """
    cache = DiscordCache.from_config(config.discord.cache)
    entities = EntityFactory(cache, config.mapping)
    own = OwnActions()  # the executor notes what the bridge does, the translator drops its echoes
    member_requests = MemberRequests(cache)  # op 8 chunks: fed by the translator, awaited by memberList
    member_loader = GatewayMemberLoader(member_requests, cache)
    # live messages are built once, with their ids, by the store (see MessageStore.record_new)
    translator = DispatchTranslator(
        entities,
        own,
        new_message=store.record_new,
        member_requests=member_requests,
        author_of=_author_of(store),
    )
    executor = DiscordCommandExecutor(rest, entities, own, config, member_loader=member_loader)
    identity = PresentedIdentity(cache, config.mirai.bot_id, ids)
    reserved = config.mirai.reserved_sync_id
    bridge = Bridge(
        store=store,
        outbox=outbox,
        encode_frame=lambda ev: encode_event_frame(ev, bot_id=identity.bot_id, reserved_sync_id=reserved, ids=ids),
        executor=executor,
        identity=cache,  # the Discord bot itself: the store keeps Discord ids only
    )
    admission = CommandAdmission()
    commands = CommandCounts()
    handler = MiraiCommandHandler(bridge, identity, admission=admission, uploads=uploads, counts=commands)
    return Core(
        cache=cache,
        translator=translator,
        executor=executor,
        bridge=bridge,
        identity=identity,
        admission=admission,
        handler=handler,
        commands=commands,
        member_loader=member_loader,
    )


def _author_of(store: MessageStore) -> Callable[[int], int | None]:
    """The author of a message the store recorded (a recall's operator, when nobody else deleted it)."""

    def author_of(platform_id: int) -> int | None:
        try:
            stored = store.lookup_platform(platform_id)
        except StoreError:
            return None
        return stored.author_id if stored is not None else None

    return author_of


async def _serve_listener_timers(listener: GatewayListener) -> None:
    """What the gateway listener holds until a deadline (recalls waiting for their audit-log entry)."""
    while True:
        await trio.sleep(LISTENER_TICK)
        listener.tick()


@contextlib.contextmanager
def _open_contacts(store_path: str, outbox: Outbox) -> Iterator[DmContacts]:
    """The DM contacts (mirai's friends) in the store's file, written under its one write lock (the outbox's)."""
    contacts = DmContacts.open(store_path, write_lock=outbox.write_lock)
    try:
        yield contacts
    finally:
        contacts.close()


def _keep_contacts(cache: DiscordCache, contacts: DmContacts) -> None:
    """Load the DM contacts of earlier runs into the cache, and persist each new one the cache learns."""
    for channel_id, user_id in contacts.load(cache.dm_partners.limit):
        cache.note_dm_channel(channel_id, user_id)

    def remember(channel_id: int, user_id: int) -> None:
        try:
            contacts.remember(channel_id, user_id, time.time())
        except StoreError as exc:  # the message that taught it still flows; friendList forgets it at a restart
            log.error("%s", exc)

    cache.on_new_dm_channel = remember


def _known_to(store: MessageStore) -> Callable[[int], bool]:
    """Whether the store has recorded a Discord message (the back-fill delivers only those it has not)."""

    def known(platform_id: int) -> bool:
        try:
            return store.lookup_platform(platform_id) is not None
        except StoreError:
            return False  # a closed store: the bridge is stopping, and an unknown message is delivered at worst twice

    return known


def open_ids(config: BridgeConfig, store_path: str, outbox: Outbox) -> AbstractContextManager[IdPresenter]:
    """How frameworks see Discord ids (``[mirai] ids``): as they are, or small ids kept in the store's file (written
    under the file's one write lock, the outbox's)."""
    if config.mirai.ids is IdMode.SMALL:
        return open_small_ids(store_path, write_lock=outbox.write_lock)
    return contextlib.nullcontext(SNOWFLAKE_IDS)


# --------------------------------------------------------------------------- the running bridge


@attrs.define(eq=False)
class RunningBridge:
    """What :func:`serve_bridge` hands to ``task_status.started()``."""

    bridge: Bridge
    gateway: Gateway
    reverse_ws: ReverseWsClient
    outbox: Outbox
    store: MessageStore
    cache: DiscordCache
    observed: Observed  #: the components as the operator sees them: readiness and metrics
    metrics: Metrics
    mirai: MiraiAdapters | None = None
    shutdown_requested: trio.Event = attrs.field(factory=trio.Event)

    @property
    def server_port(self) -> int:
        """The port the ``[server]`` listener is bound to (useful with ``port = 0``)."""
        address = self.observed.listeners["server"]
        assert address is not None  # bound before the bridge reports it is running
        return int(address.rsplit(":", 1)[1])

    def shutdown(self) -> None:
        """Begin the graceful shutdown; :func:`serve_bridge` returns when it is done."""
        self.shutdown_requested.set()


async def _notify_when_ready(running: RunningBridge, notifier: Notifier) -> None:
    """systemd's ``READY=1`` once the bridge is first ready (the readiness ``/readyz`` answers), unless the
    shutdown began first."""
    while not running.observed.readiness().ready:
        if running.shutdown_requested.is_set():
            return
        await trio.sleep(READY_POLL_INTERVAL)
    if not running.shutdown_requested.is_set():
        notifier.ready(status_line(running.observed, 0.0))


async def _log_status(running: RunningBridge, interval: float, notifier: Notifier) -> None:
    previous = running.bridge.statistics().events_published
    while True:
        await trio.sleep(interval)
        published = running.bridge.statistics().events_published
        line = status_line(running.observed, (published - previous) / interval)
        previous = published
        log.info("status: %s", line)
        notifier.status(line)


async def _scoped(
    scope: trio.CancelScope, done: trio.Event, fn: Callable[..., Awaitable[None]], *, task_status: Any
) -> None:
    try:
        with scope:
            await fn(task_status=task_status)
    finally:
        done.set()


async def serve_bridge(
    config: BridgeConfig,
    *,
    egress: DiscordEgress | None = None,
    notifier: Notifier | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole bridge until :meth:`RunningBridge.shutdown` (then shut down gracefully and return).

    ``egress`` decides the proxy of every connection to Discord (default: ``[discord] proxy`` with this process's
    environment); ``notifier`` tells a supervisor (systemd) when the bridge is ready, its status and when it stops
    (default: ``$NOTIFY_SOCKET``, a no-op without it). Raises :class:`~relay.errors.GatewayClosed` (inside an
    ExceptionGroup) on a fatal Discord close.
    """
    egress = egress or DiscordEgress.from_config(config.discord, os.environ)
    notifier = notifier or Notifier.from_environment()
    store_path = config.store.path
    # private folder and files, the start-up integrity check, and the watch over the files while running
    guard = store_guard.prepare(store_path, also_private=[f"{store_path}.session.json"])  # an earlier version's
    store_wake = Wakeup()
    store = MessageStore.open(
        store_path,
        retention_days=config.store.message_retention_days,
        on_batch_full=store_wake.set,
        first_id=first_id_from_clock(time.time()),  # a store replacing a lost one issues none of its ids again
    )
    try:
        with (
            Outbox(store_path, config.outbox) as outbox,
            open_ids(config, store_path, outbox) as ids,
            _open_contacts(store_path, outbox) as contacts,
            contextlib.ExitStack() as stack,  # the robots' queue and the webhooks' dead letters, when configured
        ):
            rest_proxy = egress.choice(config.discord.api_base_url).proxy
            async with open_rest_client(config.discord, config.discord.token, proxy=rest_proxy) as rest:
                mirai = config.mirai
                mirai_sessions = SessionRegistry(
                    verify_key=mirai.verify_key,
                    enable_verify=mirai.enable_verify,
                    single_mode=mirai.single_mode,
                    rng=random.SystemRandom(),
                )
                uploads = None
                if mirai.runs("ws") or mirai.runs("http"):
                    uploads = UploadStore(
                        store_path + ".uploads",
                        max_bytes=config.discord.max_upload_bytes,
                        total_bytes=mirai.uploads.total_bytes,
                        retention_seconds=mirai.uploads.retention_seconds,
                        rng=random.SystemRandom(),
                        now=time.time(),
                    )
                core = compose_core(config, store=store, outbox=outbox, rest=rest, ids=ids, uploads=uploads)
                cache, translator, bridge = core.cache, core.translator, core.bridge
                _keep_contacts(cache, contacts)
                identity, admission, handler = core.identity, core.admission, core.handler
                observed = Observed(
                    config=config,
                    bridge=bridge,
                    outbox=outbox,
                    store=store,
                    cache=cache,
                    rest=rest,
                    commands=core.commands,
                )
                metrics = Metrics()
                metrics.add_reader(SPECS, functools.partial(read_metrics, observed))
                robots = (
                    RobotService(
                        config.robots,
                        queue=stack.enter_context(contextlib.closing(DeliveryQueue(store_path))),
                        service=bridge,
                        events=bridge,
                        metrics=metrics,
                        write_lock=outbox.write_lock,
                    )
                    if config.robots
                    else None
                )
                dead_letters = (
                    stack.enter_context(contextlib.closing(DeadLetters(store_path)))
                    if config.mirai.webhook.destinations
                    else None
                )
                # health, readiness, metrics and the robots: the bridge's own listener, [server]
                server_mount = Mount(
                    "server",
                    config.server.host,
                    config.server.port,
                    routes=(*health_routes(observed.readiness, metrics), *(robot_routes(robots) if robots else ())),
                )
                for name in ("server", *(section for section in ("mirai.ws", "mirai.http") if mirai.runs(section[6:]))):
                    observed.expect_listener(name)
                # saved with the last flush before the bridge stopped, cleanly or not
                saved = load_gateway_sessions(store_path)
                sessions = resumable_sessions(saved.sessions, age=saved.age(time.time()))
                if sessions and not await hydrate_cache(rest, cache):
                    sessions = {}
                gateway_scope, gateway_done = trio.CancelScope(), trio.Event()
                mirai_scope, mirai_done = trio.CancelScope(), trio.Event()
                snapshot = GatewaySessions(resuming=dict(sessions))
                backfill = Backfill(
                    config.discord.backfill,
                    channels_of=functools.partial(channels_to_read, translator.entities),
                    known=_known_to(store),
                    conversation_known=store.knows_conversation,
                    flush_interval=STORE_FLUSH_INTERVAL,
                )
                # the reverse-ws dial and the webhooks wait for the bot id: woken when a Discord session starts
                identity_changed = trio.lowlevel.ParkingLot()
                listener = gateway_listener(
                    translator, bridge, time.time, backfill, on_session=identity_changed.unpark_all
                )
                # where a back-fill after this start reads channels the store knows no message of from
                listener.previous_run_saved_at = saved.saved_at or None
                async with trio.open_nursery() as nursery:
                    # message ids, outbox frames and the gateway session: one flush, one transaction
                    flusher = await nursery.start(
                        functools.partial(
                            serve_flusher,
                            store,
                            outbox,
                            store_wake,
                            sessions=snapshot,
                            guard=guard,
                        )
                    )
                    # after a lost session: each bridged channel's missed messages, from its history
                    await nursery.start(
                        functools.partial(
                            serve_backfill,
                            backfill,
                            rest=rest,
                            newest_known=store.newest_in_channel,
                            deliver=listener.deliver,
                        )
                    )
                    if robots is not None:
                        await nursery.start(serve_robots, robots)  # its queue runs before the route takes posts
                    # the listeners, [server] included, answer from now on (/readyz: 503 until Discord is ready)
                    adapters: MiraiAdapters = await nursery.start(
                        _scoped,
                        mirai_scope,
                        mirai_done,
                        functools.partial(
                            serve_mirai_adapters,
                            config=config,
                            outbox=outbox,
                            handler=handler,
                            identity=identity,
                            sessions=mirai_sessions,
                            uploads=uploads,
                            metrics=metrics,
                            dead_letters=dead_letters,
                            mounts=(server_mount,),
                            # a verify announces the bot online only while Discord is (else: dropped)
                            bot_online=lambda: translator.online,
                            identity_changed=identity_changed.park,
                        ),
                    )
                    observed.reverse_ws = adapters.reverse_ws
                    observed.webhooks = adapters.webhooks
                    observed.ws, observed.http = adapters.ws, adapters.http
                    listening = {"server": config.server.host, "mirai.ws": mirai.ws.host, "mirai.http": mirai.http.host}
                    for name, port in adapters.ports.items():
                        observed.listening(name, f"{listening[name]}:{port}")
                    server_host = f"[{config.server.host}]" if ":" in config.server.host else config.server.host
                    log.info(
                        "health and metrics on http://%s:%d (/healthz, /readyz, /metrics)%s",
                        server_host,
                        adapters.ports["server"],
                        f", robots at /robots/<name> ({len(config.robots)})" if config.robots else "",
                    )
                    gateway = await nursery.start(
                        _scoped,
                        gateway_scope,
                        gateway_done,
                        functools.partial(
                            serve_gateway,
                            config=config.discord,
                            token=config.discord.token,
                            fetch_gateway_info=rest.get_gateway_bot,
                            on_event=snapshot.listen(listener),
                            initial_sessions=sessions,
                            make_room=make_room(outbox, store),
                            open_stream=lambda url: proxied_stream_opener(egress.choice(url).proxy),
                        ),
                    )
                    snapshot.gateway = gateway
                    observed.gateway = gateway
                    core.member_loader.attach(gateway)
                    running = RunningBridge(
                        bridge=bridge,
                        gateway=gateway,
                        reverse_ws=adapters.reverse_ws,
                        outbox=outbox,
                        store=store,
                        cache=cache,
                        observed=observed,
                        metrics=metrics,
                        mirai=adapters,
                    )
                    nursery.start_soon(_log_status, running, config.logging.status_interval, notifier)
                    nursery.start_soon(_serve_listener_timers, listener)
                    await nursery.start(process.serve_memory_trim, _activity(bridge, outbox))
                    # running means the guilds are loaded, not just READY (issue 18): Gateway.guilds_loaded
                    await gateway.wait_guilds_loaded()
                    # the reader that loaded the last guild woke this task before the framework writers it woke
                    # for the events right behind that guild: let them go first (the log line and the readiness
                    # steps below took ~0.25 ms of the 1 x 100 bench's READY → first relayed message)
                    await trio.lowlevel.checkpoint()
                    log.info(
                        "bridge running: %d shard(s), %d guild(s) loaded, mirai adapters %s, %d destination(s), "
                        "store %s",
                        len(gateway.shards),
                        len(cache.guilds),
                        ", ".join(config.mirai.adapters),
                        len(adapters.reverse_ws.destinations),
                        store_path,
                    )
                    task_status.started(running)
                    # systemd (Type=notify): READY=1 once the bridge is ready (relay.observe.readiness, as /readyz
                    # answers), at once when it already is; the watchdog is fed meanwhile
                    if observed.readiness().ready:
                        notifier.ready(status_line(running.observed, 0.0))
                    else:
                        nursery.start_soon(_notify_when_ready, running, notifier)
                    await nursery.start(serve_watchdog, notifier)
                    await running.shutdown_requested.wait()
                    observed.stopping = True  # /readyz answers 503 from now on
                    notifier.stopping("shutting down")

                    log.info("shutting down: refusing new commands, finishing %d in flight", admission.in_flight)
                    with trio.move_on_after(COMMAND_GRACE) as grace:
                        await admission.drain()
                    if grace.cancelled_caught:
                        log.warning(
                            "shutdown: %d commands still running after %.0f s", admission.in_flight, COMMAND_GRACE
                        )
                    live_sessions = snapshot.final = gateway.sessions()
                    with trio.move_on_after(GATEWAY_CLOSE_GRACE):
                        await gateway.aclose()  # 4000 from inside the connection: Discord keeps the session
                    gateway_scope.cancel(reason="shutdown")
                    with trio.move_on_after(GATEWAY_CLOSE_GRACE):
                        await gateway_done.wait()
                    # saved in the store with the last events before the frameworks are let go
                    snapshot.final = gateway.sessions() or live_sessions
                    with trio.move_on_after(GATEWAY_CLOSE_GRACE):
                        await flusher.flushed()
                    mirai_scope.cancel(reason="shutdown")
                    with trio.move_on_after(GATEWAY_CLOSE_GRACE):
                        await mirai_done.wait()
                    nursery.cancel_scope.cancel(reason="shutdown")
    finally:
        store.close()
    log.info("bridge stopped")
