"""The counters health and metrics read, and the pieces that expose them, without a running bridge: the storage
writers' WriteCounts and the outbox's per-cursor backlog, the gateway machine's dispatches by name, identifies
and resumes, the command counts, ``Metrics.add_reader`` (parsed with prometheus-client's own parser), the
readiness verdict and the health routes, and the ``[server]`` section."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.discord.gateway.session import MAX_DISPATCH_NAMES, OTHER_DISPATCHES
from adapters.mirai.handlers import UNKNOWN_COMMAND, CommandCounts, MiraiCommandHandler
from relay.check import summary_lines
from relay.config import DEFAULT_SERVER_PORT, BridgeConfig, OutboxConfig, ServerConfig
from relay.configload import load_config, parse_config
from relay.egress import DiscordEgress
from relay.envelope import Command, Result
from relay.errors import ConfigError, StoreError
from relay.health import Component, Verdict, health_routes
from relay.ports import BotIdentity
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore
from relay.web.metrics import MetricKind, Metrics, MetricSpec, Reading
from relay.web.models import Request
from relay.web.routing import Router
from tests.unit.test_config import ENV, MINIMAL, write
from tests.unit.test_gateway_protocol import connected, dispatch, hello, make_session, ready
from tests.unit.test_outbox import Clock, frame
from tests.unit.test_store import msg

# --------------------------------------------------------------------------- storage writers


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sqlite3")


@pytest.fixture
def locked(db: str) -> Iterator[sqlite3.Connection]:
    """Another connection holding the file's write lock (as another process would)."""
    Outbox(db, OutboxConfig()).close()  # the file and its tables exist
    other = sqlite3.connect(db, isolation_level=None)
    yield other
    other.close()


def test_the_outbox_counts_commits_rows_and_failures(db: str, locked: sqlite3.Connection) -> None:
    clock = Clock()
    box = Outbox(db, OutboxConfig(), clock=clock, busy_timeout=0.01)
    box.register("fw")
    box.append(frame(1))
    box.append(frame(2))
    box.flush()
    writes = box.statistics().writes
    assert (writes.batches, writes.rows, writes.failures, writes.failing) == (1, 2, 0, False)
    assert writes.last_success == clock.now

    locked.execute("BEGIN IMMEDIATE")
    clock.now += 5
    box.append(frame(3))
    with pytest.raises(StoreError, match="database is locked"):
        box.flush()  # the frame stays in memory for the next flush
    failed = box.statistics().writes
    assert (failed.batches, failed.failures, failed.failing, failed.last_failure) == (1, 1, True, clock.now)
    assert "outbox frames" in failed.last_error and db in failed.last_error and "locked" in failed.last_error
    locked.execute("ROLLBACK")

    box.flush()
    recovered = box.statistics().writes
    assert (recovered.batches, recovered.rows, recovered.failing) == (2, 3, False)
    assert recovered.last_error == failed.last_error  # kept for the record
    box.close()


def test_the_message_store_counts_commits_rows_and_failures(db: str, locked: sqlite3.Connection) -> None:
    store = MessageStore.open(db, busy_timeout=0.01)
    store.record(msg(1))
    store.flush()
    assert (store.writes.batches, store.writes.rows, store.writes.failing) == (1, 1, False)
    locked.execute("BEGIN IMMEDIATE")
    store.record(msg(2))
    with pytest.raises(StoreError, match="could not write 1 message-id rows"):
        store.flush()
    assert (store.writes.failures, store.writes.failing) == (1, True)
    assert "check free disk space" in store.writes.last_error
    locked.execute("ROLLBACK")
    store.flush()
    assert (store.writes.batches, store.writes.rows, store.writes.failing) == (2, 2, False)
    store.close()


def test_undelivered_counts_a_cursors_backlog_and_dates_its_oldest_frame(db: str) -> None:
    clock = Clock()
    box = Outbox(db, OutboxConfig(), clock=clock)
    box.register("fast")
    box.register("slow")
    assert box.undelivered("slow") == (0, None)
    for i in range(3):
        box.append(frame(i))
        clock.now += 10
    box.ack("fast", 3)
    assert box.undelivered("fast") == (0, None)
    assert box.undelivered("slow") == (3, 1_000.0)  # still in memory, waiting for a writer

    batch = box.take_batch()  # in flight: read from the batch
    assert batch is not None
    assert box.undelivered("slow") == (3, 1_000.0)
    box.finish_batch(batch, box.write_batch(batch))
    box.ack("slow", 1)
    assert box.undelivered("slow") == (2, 1_010.0)  # on disk now: one indexed read
    box.close()


def test_undelivered_starts_at_the_oldest_retained_frame_after_drops(db: str) -> None:
    clock = Clock()
    box = Outbox(db, OutboxConfig(max_events=2), clock=clock)
    box.register("down")
    for i in range(5):
        box.append(frame(i))
        clock.now += 1
    box.flush()  # the bound drops the three oldest
    assert box.undelivered("down") == (2, 1_003.0)
    box.close()


# --------------------------------------------------------------------------- the gateway machine


def test_dispatches_are_counted_by_name_with_identifies_and_resumes() -> None:
    gw = connected()
    gw.receive(dispatch("GUILD_CREATE", 2, {"id": "5"}), now=1.0)
    for seq in range(3, 6):
        gw.receive(dispatch("MESSAGE_CREATE", seq, {"id": str(seq)}), now=1.0)
    gw.receive(dispatch("MESSAGE_CREATE", 5), now=1.0)  # a duplicate (replayed): not counted again
    stats = gw.statistics()
    assert stats.dispatches_by_name == {"READY": 1, "GUILD_CREATE": 1, "MESSAGE_CREATE": 3}
    assert stats.dispatches == 5
    assert (stats.identifies, stats.resumes) == (1, 0)

    gw.connection_lost(None, now=2.0)
    gw.connection_opened(now=3.0)
    gw.receive(hello(), now=3.0)  # a session to resume: op 6
    assert (gw.statistics().identifies, gw.statistics().resumes, gw.statistics().reconnects) == (1, 1, 1)


def test_dispatch_names_beyond_the_cap_are_counted_together() -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    gw.identify_now(now=0.0)
    gw.receive(ready(), now=0.0)
    for seq in range(2, MAX_DISPATCH_NAMES + 12):
        gw.receive(dispatch(f"EVENT_{seq}", seq), now=0.0)
    names = gw.statistics().dispatches_by_name
    assert len(names) == MAX_DISPATCH_NAMES + 1
    assert names[OTHER_DISPATCHES] == 11


# --------------------------------------------------------------------------- commands


class _NoDiscord:
    """A CommandService for commands the handler answers itself (never called)."""

    async def execute(self, command: Command) -> Result:
        raise AssertionError(f"not expected: {command!r}")


class _Bot:
    bot_id = 42
    bot_name = "bot"


async def test_commands_are_counted_by_name_and_code_across_sessions() -> None:
    identity: BotIdentity = _Bot()
    handler = MiraiCommandHandler(_NoDiscord(), identity)
    session = handler.for_session("key")
    assert (await handler.dispatch("about", None, None))["code"] == 0
    assert (await session.dispatch("sendNudge", None, {}))["code"] == 6
    assert (await session.dispatch("sendGroupMessage", None, "not an object"))["code"] == 400
    for name in ("invented1", "invented2"):
        assert (await session.dispatch(name, None, {}))["code"] == 6
    handler.admission.draining = True
    assert (await session.dispatch("about", None, None))["code"] == 500
    assert handler.counts is session.counts
    assert handler.counts.answered == {
        ("about", 0): 1,
        ("sendNudge", 6): 1,
        ("sendGroupMessage", 400): 1,
        (UNKNOWN_COMMAND, 6): 2,
        ("about", 500): 1,
    }


def test_an_answer_without_a_code_is_a_success() -> None:
    counts = CommandCounts()
    counts.record("botProfile", {"nickname": "bot", "email": "", "age": 0})
    assert counts.answered == {("botProfile", 0): 1}


# --------------------------------------------------------------------------- Metrics.add_reader


def families(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    body, _ = metrics.render()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


SPECS = (
    MetricSpec("demo_things", MetricKind.COUNTER, "Things", ("kind",)),
    MetricSpec("demo_level", MetricKind.GAUGE, "Level"),
)


def test_a_reader_is_read_at_every_scrape_with_counters_as_total() -> None:
    metrics = Metrics()
    counts = {"a": 1}

    def read() -> Reading:
        return {"demo_things": {(k,): v for k, v in counts.items()}, "demo_level": {(): 0.5}}

    metrics.add_reader(SPECS, read)
    assert families(metrics)["demo_things_total"] == {(("kind", "a"),): 1.0}
    counts["a"] = 3
    counts["b"] = 1
    seen = families(metrics)
    assert seen["demo_things_total"] == {(("kind", "a"),): 3.0, (("kind", "b"),): 1.0}
    assert seen["demo_level"] == {(): 0.5}


def test_a_name_taken_twice_is_refused_when_added() -> None:
    metrics = Metrics()
    metrics.add_reader(SPECS, dict)
    with pytest.raises(ValueError, match="demo_level"):
        metrics.add_reader((MetricSpec("demo_level", MetricKind.GAUGE, "again"),), dict)
    with pytest.raises(ValueError, match="relay_webhook_posts"):  # one of the library-typed metrics
        metrics.add_reader((MetricSpec("relay_webhook_posts", MetricKind.COUNTER, "again"),), dict)


def test_a_failing_reader_leaves_the_rest_of_the_scrape_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()

    def broken() -> Reading:
        raise RuntimeError("bug")

    metrics.add_reader(SPECS, broken)
    metrics.add_reader((MetricSpec("demo_other", MetricKind.GAUGE, "Other"),), lambda: {"demo_other": {(): 1}})
    caplog.set_level(logging.ERROR)
    for _ in range(3):
        seen = families(metrics)
        assert seen["demo_other"] == {(): 1.0}
        assert "demo_things_total" not in seen
    assert len([r for r in caplog.records if "a reader failed" in r.getMessage()]) == 1


# --------------------------------------------------------------------------- the verdict and the routes


def test_the_verdict_is_ready_when_every_required_component_is() -> None:
    verdict = Verdict(
        (
            Component("discord", "1/1 shards READY"),
            Component("frameworks", "0/1 connected", ("fw is not connected",), required=False),
        )
    )
    assert verdict.ready and verdict.reasons == () and verdict.describe() == "ready"
    assert verdict.to_json()["components"] == {
        "discord": {"ready": True, "required": True, "summary": "1/1 shards READY", "problems": []},
        "frameworks": {
            "ready": False,
            "required": False,
            "summary": "0/1 connected",
            "problems": ["fw is not connected"],
        },
    }
    down = Verdict(
        (Component("discord", "0/2 shards READY", ("shard 0 is x", "shard 1 is y")), Component("store", "ok"))
    )
    assert not down.ready
    assert down.reasons == ("discord: shard 0 is x", "discord: shard 1 is y")
    assert down.describe() == "not ready: discord: shard 0 is x; discord: shard 1 is y"


def get(path: str) -> Request:
    return Request("GET", path, path, (), (), b"")


async def test_the_routes_answer_health_readiness_and_metrics() -> None:
    state = {"ready": False}
    metrics = Metrics()
    times = iter([100.0, 112.5])

    def verdict() -> Verdict:
        problems = () if state["ready"] else ("no shard has reached READY yet",)
        return Verdict((Component("discord", "connecting", problems),))

    router = Router()
    router.include(health_routes(verdict, metrics, clock=lambda: next(times)))
    alive = await router(get("/healthz"))
    assert (alive.status, json.loads(alive.body)) == (200, {"status": "alive", "uptime_seconds": 12.5})
    not_ready = await router(get("/readyz"))
    assert not_ready.status == 503
    assert json.loads(not_ready.body)["reasons"] == ["discord: no shard has reached READY yet"]
    state["ready"] = True
    ready_now = await router(get("/readyz"))
    assert (ready_now.status, json.loads(ready_now.body)["ready"]) == (200, True)
    scraped = await router(get("/metrics"))
    assert scraped.status == 200 and dict(scraped.headers)["content-type"].startswith("text/plain")
    assert b"process_" in scraped.body or scraped.body == b""  # the process collector needs /proc
    for answer in (alive, not_ready, ready_now, scraped):
        assert dict(answer.headers)["cache-control"] == "no-store"
    assert (await router(Request("POST", "/readyz", "/readyz", (), (), b""))).status == 405


# --------------------------------------------------------------------------- [server]


def test_server_defaults_and_values(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL), env=ENV).server == ServerConfig(
        host="127.0.0.1", port=DEFAULT_SERVER_PORT, ready_requires_frameworks=False
    )
    text = MINIMAL + '[server]\nhost = "::"\nport = 0\nready_requires_frameworks = true\n'
    assert load_config(write(tmp_path, text), env=ENV).server == ServerConfig(
        host="::", port=0, ready_requires_frameworks=True
    )


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("port = 70000", "server.port: expected an integer 0–65535, got 70000"),
        ("port = -1", "server.port: expected an integer 0–65535, got -1"),
        ('port = "8780"', "server.port: expected an integer 0–65535"),
        ('host = "http://0.0.0.0"', "server.host: expected a bare address or host name"),
        ('host = "[::1]"', "server.host: expected a bare address or host name"),
        ('host = ""', "server.host: expected an address or host name to listen on"),
        ("ready_requires_frameworks = 1", "server.ready_requires_frameworks: expected true or false"),
        ("prot = 1", 'server.prot: unknown key (did you mean "port"?)'),
    ],
)
def test_server_problems_name_their_key(snippet: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"mirai": {"reverse_ws": {"destinations": [{"host": "h", "port": 1}]}}, "server": _toml(snippet)},
            source="b",
            env=ENV,
        )
    assert any(problem.startswith(expected) for problem in info.value.problems), info.value.problems


def _toml(snippet: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(snippet)


def test_check_prints_where_health_and_metrics_listen() -> None:
    def lines(server: ServerConfig) -> list[str]:
        config = BridgeConfig(server=server)
        return summary_lines("b", config, ENV, DiscordEgress.from_config(config.discord, ENV))

    default = lines(ServerConfig())
    assert (
        "  health:         http://127.0.0.1:8780/healthz (alive), http://127.0.0.1:8780/readyz (ready: Discord, the "
        "store, the adapters (frameworks reported, not required))"
    ) in default
    assert "  metrics:        http://127.0.0.1:8780/metrics (Prometheus)" in default
    ipv6 = lines(ServerConfig(host="::1", port=0, ready_requires_frameworks=True))
    assert any(
        line.startswith("  metrics:        http://[::1]:<any free port, logged at start>/metrics") for line in ipv6
    )
    assert any(line.endswith("(ready: Discord, the store, the adapters and every framework)") for line in ipv6)


def test_the_readme_documents_every_metric() -> None:
    from relay.observe import SPECS as BRIDGE_SPECS

    metrics = Metrics()
    metrics.add_reader(BRIDGE_SPECS, dict)
    body, _ = metrics.render()
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(body.decode())
        if not family.name.startswith("process_")
    }
    assert "relay_discord_dispatches_total" in names
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Health and metrics") :]
    assert sorted(name for name in names if f"| `{name}` |" not in section) == []
