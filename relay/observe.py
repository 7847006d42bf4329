"""What the running bridge tells its operator (composition: it reads every component's own counters): the one
readiness definition, the status line, and the Prometheus metrics read from the components' ``statistics()`` at
scrape time.

**Readiness** (:func:`readiness`) is the only definition of "ready": ``/readyz``, the status line and systemd's
``READY=1`` all call it. Ready means the bridge is not shutting down, and every required component is:

* ``discord`` — every shard of this process has reached READY (or RESUMED) and is connected;
* ``store`` — the file takes writes: the outbox's periodic transaction has committed since the start, and the
  last transaction of neither the outbox nor the message store failed (a failing disk or a lock held by another
  process fails a transaction within :data:`relay.storage.sqlite.BUSY_TIMEOUT`);
* every adapter that is configured runs: ``reverse-ws`` (its destinations' dial loops), ``webhooks`` (its
  destinations' loops), and every HTTP listener (``[server]``, and the mirai ws/http listeners) is bound;
* ``frameworks`` (required only with ``[server] ready_requires_frameworks``) — every reverse-ws destination is
  connected and verified, every webhook receiver reachable. Reported either way.

**Metrics** (:data:`SPECS`, :func:`read_metrics`): the components count in plain ints and dicts on their own
paths (a dispatch is one dict update in the gateway's machine, a delivered batch one addition); this module
copies those counters into metric families when Prometheus scrapes, never per event.

:class:`Observed` holds the components as they start (the gateway only exists once its shards are READY), so
both work from the first second: before READY, ``/readyz`` answers 503 with "no shard has reached READY yet".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from adapters.discord.cache import DiscordCache
from adapters.discord.gateway.session import ShardState
from adapters.discord.gateway.shard import Gateway
from adapters.discord.rest.client import RestClient
from adapters.mirai.handlers import CommandCounts
from adapters.mirai.http_server import HttpAdapter
from adapters.mirai.reverse_ws import ReverseWsClient
from adapters.mirai.webhook import Webhooks
from adapters.mirai.ws_server import WsAdapter
from relay.bridge import Bridge
from relay.config import BridgeConfig
from relay.health import Component, Verdict
from relay.storage.outbox import Outbox
from relay.storage.sqlite import WriteCounts
from relay.storage.store import MessageStore
from relay.web.metrics import MetricKind, MetricSpec, Reading, Samples

__all__ = ["SPECS", "Observed", "read_metrics", "readiness", "status_line"]

COUNTER: Final = MetricKind.COUNTER
GAUGE: Final = MetricKind.GAUGE


@attrs.define(eq=False)
class Observed:
    """The running bridge's components, filled in by the composition root as each one starts."""

    config: BridgeConfig
    bridge: Bridge
    outbox: Outbox
    store: MessageStore
    cache: DiscordCache
    rest: RestClient
    commands: CommandCounts  #: the mirai command handler's answers by command and code
    gateway: Gateway | None = None  #: None until every shard reached READY
    reverse_ws: ReverseWsClient | None = None
    webhooks: Webhooks | None = None
    ws: WsAdapter | None = None  #: mirai-api-http's ws adapter, when it runs
    http: HttpAdapter | None = None  #: mirai-api-http's http adapter, when it runs
    #: every HTTP listener the configuration asks for (``"server"``, ``"mirai.ws"``...) → the address it is bound
    #: to ("127.0.0.1:8780"), None until it is
    listeners: dict[str, str | None] = attrs.field(factory=dict)
    clock: Callable[[], float] = time.time  #: wall clock (the outbox and the store stamp their writes with it)
    stopping: bool = False  #: the graceful shutdown has begun (not ready from then on)

    def expect_listener(self, name: str) -> None:
        self.listeners.setdefault(name, None)

    def listening(self, name: str, address: str) -> None:
        self.listeners[name] = address

    def readiness(self) -> Verdict:
        return readiness(self)


# --------------------------------------------------------------------------- the status line


def status_line(observed: Observed, rate: float) -> str:
    """The one-line summary logged every ``[logging] status_interval`` and sent to systemd as ``STATUS=``: shards,
    guilds, frameworks, the outbox, ``rate`` (events/s) and commands; it ends with the readiness verdict
    (``ready``, or ``not ready: <reasons>``), as ``/readyz`` gives it."""
    bridge = observed.bridge.statistics()
    shards = observed.gateway.statistics() if observed.gateway is not None else {}
    ready = sum(1 for s in shards.values() if s.state is ShardState.CONNECTED)
    destinations = observed.reverse_ws.statistics() if observed.reverse_ws is not None else []
    verified = sum(1 for d in destinations if d.verified)
    outbox = observed.outbox.statistics()
    cache = observed.cache.statistics()
    return (
        f"shards {ready}/{len(shards)} up, guilds {cache.get('guilds', 0)}, destinations {verified}/"
        f"{len(destinations)} verified, outbox {outbox.retained} retained ({outbox.dropped} dropped), "
        f"{rate:.1f} events/s, commands {bridge.commands} ({bridge.commands_failed} failed); "
        f"{observed.readiness().describe()}"
    )


# --------------------------------------------------------------------------- readiness: the one definition


def readiness(observed: Observed) -> Verdict:
    """Whether the bridge is ready, and every reason it is not (see the module docstring for the definition)."""
    config = observed.config
    components = [_discord(observed), _store(observed)]
    if observed.stopping:
        components.insert(0, Component("bridge", "shutting down", ("shutting down",)))
    if config.mirai.reverse_ws.destinations:
        components.append(_started("reverse-ws", observed.reverse_ws is not None, "dialing every destination"))
    if config.mirai.webhook.destinations:
        components.append(_started("webhooks", observed.webhooks is not None, "posting to every destination"))
    components.extend(_listener(name, address) for name, address in observed.listeners.items())
    frameworks = _frameworks(observed)
    if frameworks is not None:
        components.append(frameworks)
    return Verdict(tuple(components))


def _discord(observed: Observed) -> Component:
    gateway = observed.gateway
    guilds = len(observed.cache.guilds)
    if gateway is None:
        return Component("discord", f"connecting, {guilds} guilds", ("no shard has reached READY yet",))
    shards = gateway.statistics()
    problems = tuple(
        f"shard {shard_id} is {stats.state.value.replace('_', ' ')} (not READY)"
        for shard_id, stats in sorted(shards.items())
        if stats.state is not ShardState.CONNECTED
    )
    if not problems and not gateway.guilds_loaded:
        # ready means the guilds of READY loaded, not only READY (docs/architecture.md §5)
        problems = ("still loading the guilds READY listed",)
    up = sum(1 for stats in shards.values() if stats.state is ShardState.CONNECTED)
    return Component("discord", f"{up}/{len(shards)} shards READY, {guilds} guilds", problems)


def _store(observed: Observed) -> Component:
    now = observed.clock()
    outbox, messages = observed.outbox.writes, observed.store.writes
    problems = [f"the last write failed: {w.last_error}" for w in (outbox, messages) if w.failing]
    if outbox.last_success is None and not problems:
        problems.append("no write has committed yet")
    last = max((t for t in (outbox.last_success, messages.last_success) if t is not None), default=None)
    summary = "no write yet" if last is None else f"last write {max(0.0, now - last):.1f} s ago"
    return Component("store", summary, tuple(problems))


def _started(name: str, started: bool, summary: str) -> Component:
    return Component(name, summary if started else "starting", () if started else ("not started yet",))


def _listener(name: str, address: str | None) -> Component:
    if address is None:
        return Component(name, "starting", ("not listening yet",))
    return Component(name, f"listening on {address}")


def _frameworks(observed: Observed) -> Component | None:
    problems: list[str] = []
    total = 0
    if observed.reverse_ws is not None:
        for destination in observed.reverse_ws.statistics():
            total += 1
            if not destination.connected:
                problems.append(f"reverse-ws destination {destination.label} is not connected")
            elif not destination.verified:
                problems.append(f"reverse-ws destination {destination.label} has not verified yet")
    if observed.webhooks is not None:
        for hook in observed.webhooks.statistics():
            total += 1
            if hook.down:
                problems.append(f"webhook destination {hook.label} is unreachable")
    if not total:
        return None
    summary = f"{total - len(problems)}/{total} connected"
    return Component("frameworks", summary, tuple(problems), required=observed.config.server.ready_requires_frameworks)


# --------------------------------------------------------------------------- metrics


def _spec(name: str, kind: MetricKind, help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, kind, help_text, labels)


#: Every metric this module reads (README "Health and metrics" lists them). Counters are exposed with ``_total``.
SPECS: Final = (
    # Discord: events in
    _spec(
        "relay_discord_dispatches",
        COUNTER,
        "Gateway dispatches received (events in), by shard and event",
        "shard",
        "event",
    ),
    _spec("relay_discord_gateway_identifies", COUNTER, "Gateway sessions started (op 2 Identify sent)", "shard"),
    _spec("relay_discord_gateway_resumes", COUNTER, "Gateway resume attempts (op 6 Resume sent)", "shard"),
    _spec("relay_discord_gateway_reconnects", COUNTER, "Gateway connections lost or closed and reopened", "shard"),
    _spec("relay_discord_gateway_connected", GAUGE, "1 while the shard is READY or RESUMED", "shard"),
    _spec("relay_discord_gateway_latency_seconds", GAUGE, "The shard's last heartbeat round trip", "shard"),
    _spec("relay_discord_cache_entries", GAUGE, "Objects in the Discord cache, by kind", "kind"),
    _spec("relay_discord_cache_members_evicted", COUNTER, "Members evicted from the cache by its bounds"),
    # Discord: REST
    _spec(
        "relay_discord_rest_requests",
        COUNTER,
        "REST attempts by route and HTTP status (error: no answer)",
        "route",
        "status",
    ),
    _spec("relay_discord_rest_retries", COUNTER, "REST attempts repeated after a 5xx, network error or timeout"),
    _spec("relay_discord_rest_rate_limit_waits", COUNTER, "REST requests that waited for a rate-limit bucket"),
    _spec("relay_discord_rest_rate_limit_wait_seconds", COUNTER, "Time REST requests spent waiting for rate limits"),
    _spec("relay_discord_rest_rate_limited_responses", COUNTER, "429 answers received"),
    _spec(
        "relay_discord_rest_invalid_requests",
        GAUGE,
        "401/403/429 answers in the last 10 minutes (Discord bans at 10,000)",
    ),
    # the relay
    _spec(
        "relay_events", COUNTER, "Events from Discord by outcome (published to the outbox, skipped, failed)", "result"
    ),
    _spec(
        "relay_commands", COUNTER, "Framework commands answered, by command and mirai status code", "command", "code"
    ),
    # the outbox
    _spec("relay_outbox_retained", GAUGE, "Event frames retained in the outbox"),
    _spec("relay_outbox_pending_writes", GAUGE, "Frames some destination lacks that are not written to disk yet"),
    _spec("relay_outbox_dropped", COUNTER, "Frames dropped by the outbox bounds before every destination had them"),
    _spec(
        "relay_outbox_depth", GAUGE, "Frames a cursor (a framework destination) has not been delivered yet", "cursor"
    ),
    _spec("relay_outbox_oldest_age_seconds", GAUGE, "Age of the oldest frame a cursor lacks (0: none)", "cursor"),
    # the store
    _spec("relay_store_write_batches", COUNTER, "SQLite transactions committed, by writer", "table"),
    _spec("relay_store_written_rows", COUNTER, "Rows written, by writer (outbox frames, message-id rows)", "table"),
    _spec("relay_store_write_failures", COUNTER, "SQLite transactions that failed (retried), by writer", "table"),
    _spec("relay_store_last_write_timestamp_seconds", GAUGE, "Unix time of the writer's last commit", "table"),
    # frameworks: events out
    _spec(
        "relay_frames_delivered",
        COUNTER,
        "Event frames delivered, by adapter and destination",
        "adapter",
        "destination",
    ),
    _spec(
        "relay_framework_connected",
        GAUGE,
        "1 while the destination is connected and verified (webhook: reachable)",
        "adapter",
        "destination",
    ),
    _spec(
        "relay_framework_connections",
        COUNTER,
        "Websocket connections opened to the destination",
        "adapter",
        "destination",
    ),
    # readiness
    _spec("relay_ready", GAUGE, "1 while /readyz answers 200"),
    _spec("relay_component_ready", GAUGE, "1 while the component is ready (see /readyz)", "component"),
)


def read_metrics(observed: Observed) -> Reading:
    """Every metric of :data:`SPECS`, read from the components now (at a scrape)."""
    reading: dict[str, Samples] = {}
    if observed.gateway is not None:
        reading.update(_gateway(observed.gateway))
    reading.update(_cache(observed.cache))
    reading.update(_rest(observed.rest))
    bridge = observed.bridge.statistics()
    reading["relay_events"] = {
        ("published",): bridge.events_published,
        ("skipped",): bridge.events_skipped,
        ("failed",): bridge.events_failed,
    }
    reading["relay_commands"] = {(name, str(code)): n for (name, code), n in observed.commands.answered.items()}
    reading.update(_outbox(observed.outbox, observed.clock()))
    reading.update(_writes({"outbox": observed.outbox.writes, "messages": observed.store.writes}))
    reading.update(_frameworks_out(observed))
    verdict = readiness(observed)
    reading["relay_ready"] = {(): float(verdict.ready)}
    reading["relay_component_ready"] = {(c.name,): float(c.ready) for c in verdict.components}
    return reading


def _gateway(gateway: Gateway) -> dict[str, Samples]:
    shards = gateway.statistics()
    dispatches: dict[tuple[str, ...], float] = {}
    for shard_id, stats in shards.items():
        for name, count in stats.dispatches_by_name.items():
            dispatches[(str(shard_id), name)] = count
    return {
        "relay_discord_dispatches": dispatches,
        "relay_discord_gateway_identifies": {(str(i),): s.identifies for i, s in shards.items()},
        "relay_discord_gateway_resumes": {(str(i),): s.resumes for i, s in shards.items()},
        "relay_discord_gateway_reconnects": {(str(i),): s.reconnects for i, s in shards.items()},
        "relay_discord_gateway_connected": {
            (str(i),): float(s.state is ShardState.CONNECTED) for i, s in shards.items()
        },
        "relay_discord_gateway_latency_seconds": {
            (str(i),): s.latency for i, s in shards.items() if s.latency is not None
        },
    }


def _cache(cache: DiscordCache) -> dict[str, Samples]:
    stats = cache.statistics()
    evicted = stats.pop("members_evicted", 0)
    return {
        "relay_discord_cache_entries": {(kind,): count for kind, count in stats.items()},
        "relay_discord_cache_members_evicted": {(): evicted},
    }


def _rest(rest: RestClient) -> dict[str, Samples]:
    stats = rest.statistics()
    return {
        "relay_discord_rest_requests": {(route, status): n for (route, status), n in stats.by_route.items()},
        "relay_discord_rest_retries": {(): stats.retries},
        "relay_discord_rest_rate_limit_waits": {(): stats.rate_limited_waits},
        "relay_discord_rest_rate_limit_wait_seconds": {(): stats.rate_limited_wait_seconds},
        "relay_discord_rest_rate_limited_responses": {(): stats.rate_limited_responses},
        "relay_discord_rest_invalid_requests": {(): stats.invalid_requests_window},
    }


def _outbox(outbox: Outbox, now: float) -> dict[str, Samples]:
    stats = outbox.statistics()
    depth: dict[tuple[str, ...], float] = {}
    age: dict[tuple[str, ...], float] = {}
    for cursor in stats.cursors:
        count, oldest = outbox.undelivered(cursor)
        depth[(cursor,)] = count
        age[(cursor,)] = max(0.0, now - oldest) if oldest is not None else 0.0
    return {
        "relay_outbox_retained": {(): stats.retained},
        "relay_outbox_pending_writes": {(): stats.pending_writes},
        "relay_outbox_dropped": {(): stats.dropped},
        "relay_outbox_depth": depth,
        "relay_outbox_oldest_age_seconds": age,
    }


def _writes(writers: dict[str, WriteCounts]) -> dict[str, Samples]:
    return {
        "relay_store_write_batches": {(name,): w.batches for name, w in writers.items()},
        "relay_store_written_rows": {(name,): w.rows for name, w in writers.items()},
        "relay_store_write_failures": {(name,): w.failures for name, w in writers.items()},
        "relay_store_last_write_timestamp_seconds": {
            (name,): w.last_success for name, w in writers.items() if w.last_success is not None
        },
    }


def _frameworks_out(observed: Observed) -> dict[str, Samples]:
    delivered: dict[tuple[str, ...], float] = {}
    connected: dict[tuple[str, ...], float] = {}
    connections: dict[tuple[str, ...], float] = {}
    if observed.reverse_ws is not None:
        for destination in observed.reverse_ws.statistics():
            key = ("reverse-ws", destination.label)
            delivered[key] = destination.frames_delivered
            connected[key] = float(destination.verified)
            connections[key] = destination.connections
    if observed.ws is not None:
        counters = observed.ws.counters  # every framework connection to the ws adapter, whatever its identity
        delivered[("ws", "ws")] = counters.frames_delivered
        connections[("ws", "ws")] = counters.connections
    if observed.http is not None:
        delivered[("http", "http")] = observed.http.polled_events  # events handed out by fetch/peek
    if observed.ws is not None:
        counters = observed.ws.counters  # every framework connection to the ws adapter, whatever its identity
        delivered[("ws", "ws")] = counters.frames_delivered
        connections[("ws", "ws")] = counters.connections
    if observed.http is not None:
        delivered[("http", "http")] = observed.http.polled_events  # events handed out by fetch/peek
    if observed.webhooks is not None:
        for hook in observed.webhooks.statistics():
            key = ("webhook", hook.label)
            delivered[key] = hook.events_delivered
            connected[key] = float(not hook.down)
    return {
        "relay_frames_delivered": delivered,
        "relay_framework_connected": connected,
        "relay_framework_connections": connections,
    }


def metric_names() -> Iterable[str]:
    """The exposed names: counters with ``_total``."""
    return [spec.name + ("_total" if spec.kind is COUNTER else "") for spec in SPECS]
