"""Health, readiness and metrics of the running bridge over real loopback: the emulated Discord (gateway + REST) and
the fake framework drive events and commands through ``serve_bridge``; an HTTP client reads ``/healthz``,
``/readyz`` and ``/metrics`` from the ``[server]`` listener, and the exposition is parsed with prometheus-client's
own parser. Waits poll a condition (no timed assertions)."""

from __future__ import annotations

import resource
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from relay.app import RunningBridge, serve_bridge
from relay.config import BridgeConfig, ServerConfig
from relay.notify import Notifier
from relay.observe import status_line
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.rest import RateLimit
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.fakes.fake_framework import FakeFramework, open_fake_framework
from tests.integration.test_app_wiring import bridge_with
from tests.integration.test_end_to_end import (
    ALICE,
    CHANNEL,
    GUILD,
    OTHER_CHANNEL,
    OWNER,
    VERIFY_KEY,
    bridge_config,
    wait_group_messages,
)

GUARD = 30  # seconds: a failure guard, never a measurement
SEND = "POST /channels/{channel_id}/messages"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    """Every sample of a scrape, keyed by (sample name, its labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def http(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10)


async def scrape(port: int) -> Samples:
    async with http(port) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with http(port) as client:
        answer = await client.get("/readyz")
    return answer.status_code, answer.json()


async def wait_metric(port: int, condition: Callable[[Samples], bool]) -> Samples:
    while True:
        samples = await scrape(port)
        if condition(samples):
            return samples
        await trio.sleep(0.02)


async def wait_readyz(port: int, status: int) -> dict[str, Any]:
    while True:
        code, body = await readyz(port)
        if code == status:
            return body
        await trio.sleep(0.02)


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def requiring_frameworks(config: BridgeConfig) -> BridgeConfig:
    return attrs.evolve(config, server=ServerConfig(port=0, ready_requires_frameworks=True))


# --------------------------------------------------------------------------- counters


async def test_metrics_count_what_went_through_the_bridge(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path) as (discord, framework, running, _stopped):
            port = running.server_port
            conn = await framework.wait_connection()
            await conn.wait_verified()
            for text in ("one", "two", "three"):
                await say(discord, CHANNEL, ALICE, text)
            await wait_group_messages(framework, 3)
            discord.set_bucket(SEND, limit=1, per=0.2)  # the second send waits for the bucket
            for text in ("a", "b"):
                sent = await conn.request(
                    "sendGroupMessage", {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": text}]}
                )
                assert sent["code"] == 0
            discord.inject(SEND, RateLimit(retry_after=0.05))  # one 429, obeyed, then sent
            retried = await conn.request(
                "sendGroupMessage", {"target": OTHER_CHANNEL, "messageChain": [{"type": "Plain", "text": "c"}]}
            )
            assert retried["code"] == 0
            assert (await conn.request("recall", {"target": CHANNEL, "messageId": 999_999}))["code"] == 5
            assert (await conn.request("noSuchCommand", {}))["code"] == 6
            assert (await conn.request("sendNudge", {"target": ALICE}))["code"] == 6

            # the message-id rows (3 in, 3 sent) are written by the store's flusher shortly after
            # (and the echoes of its own sends are in: Discord sends each one back)
            samples = await wait_metric(
                port,
                lambda s: (
                    (value(s, "relay_store_written_rows_total", table="messages") or 0) >= 6
                    and (value(s, "relay_discord_dispatches_total", shard="0", event="MESSAGE_CREATE") or 0) >= 6
                ),
            )
            # the one BotOnlineEvent is the connection's own greeting after verify; READY's is published but not
            # sent again on a connection whose verify already said it (issue 15: one BotOnlineEvent per verify)
            delivered = len(framework.events) - 1

    # 3 received, and the 3 the bridge sent coming back as Discord sends them (dropped as its own echoes)
    assert value(samples, "relay_discord_dispatches_total", shard="0", event="MESSAGE_CREATE") == 3 + 3
    assert value(samples, "relay_discord_dispatches_total", shard="0", event="READY") == 1
    assert value(samples, "relay_discord_dispatches_total", shard="0", event="GUILD_CREATE") == 1
    assert value(samples, "relay_discord_gateway_identifies_total", shard="0") == 1
    assert value(samples, "relay_discord_gateway_resumes_total", shard="0") == 0
    assert value(samples, "relay_discord_gateway_connected", shard="0") == 1

    # every frame the bridge published reached the framework, and the metrics agree with what it received
    assert value(samples, "relay_events_total", result="published") == delivered + 1  # + READY's BotOnlineEvent
    assert value(samples, "relay_frames_delivered_total", adapter="reverse-ws", destination="fw") == delivered
    assert value(samples, "relay_framework_connected", adapter="reverse-ws", destination="fw") == 1
    assert value(samples, "relay_framework_connections_total", adapter="reverse-ws", destination="fw") == 1
    assert value(samples, "relay_outbox_depth", cursor="fw") == 0
    assert value(samples, "relay_outbox_oldest_age_seconds", cursor="fw") == 0

    assert value(samples, "relay_commands_total", command="sendGroupMessage", code="0") == 3
    assert value(samples, "relay_commands_total", command="recall", code="5") == 1
    assert value(samples, "relay_commands_total", command="sendNudge", code="6") == 1
    assert value(samples, "relay_commands_total", command="(unknown)", code="6") == 1

    assert value(samples, "relay_discord_rest_requests_total", route="GET /gateway/bot", status="200") == 1
    assert value(samples, "relay_discord_rest_requests_total", route=SEND, status="200") == 3
    assert value(samples, "relay_discord_rest_requests_total", route=SEND, status="429") == 1
    assert value(samples, "relay_discord_rest_rate_limited_responses_total") == 1
    waits = value(samples, "relay_discord_rest_rate_limit_waits_total")
    waited = value(samples, "relay_discord_rest_rate_limit_wait_seconds_total")
    assert waits is not None and waits >= 2 and waited is not None and waited > 0  # the bucket's, the 429's

    assert value(samples, "relay_store_written_rows_total", table="messages") == 6
    assert value(samples, "relay_store_write_failures_total", table="messages") == 0
    assert (value(samples, "relay_store_write_batches_total", table="outbox") or 0) >= 1
    assert value(samples, "relay_store_write_failures_total", table="outbox") == 0
    assert value(samples, "relay_discord_cache_entries", kind="guilds") == 1
    assert value(samples, "relay_ready") == 1
    assert value(samples, "relay_component_ready", component="store") == 1
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0


async def test_a_resume_and_a_backlog_show_in_the_metrics(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path) as (discord, framework, running, _stopped):
            port = running.server_port
            conn = await framework.wait_connection()
            await conn.wait_verified()
            await discord.drop_connection()
            await wait_metric(port, lambda s: value(s, "relay_discord_gateway_resumes_total", shard="0") == 1)
            await discord.wait_until(lambda: bool(discord.gateway.resumes) and bool(discord.live_shards()))

            # the framework has everything so far (its TCP acknowledged it): a frame still in flight when it goes
            # away would wait in the outbox too (rightly: it is replayed), and the backlog below would not be exact
            await wait_metric(port, lambda s: value(s, "relay_outbox_depth", cursor="fw") == 0)
            await framework.stop()  # the framework goes away: its events wait in the outbox
            await wait_metric(
                port, lambda s: value(s, "relay_framework_connected", adapter="reverse-ws", destination="fw") == 0
            )
            for text in ("while", "down"):
                await say(discord, CHANNEL, ALICE, text)
            backlog = await wait_metric(port, lambda s: value(s, "relay_outbox_depth", cursor="fw") == 2)
            status, body = await readyz(port)  # frameworks are reported, not required by default
            assert status == 200
            assert body["components"]["frameworks"] == {
                "ready": False,
                "required": False,
                "summary": "0/1 connected",
                "problems": ["reverse-ws destination fw is not connected"],
            }

            await framework.start()
            await wait_group_messages(framework, 2)
            drained = await wait_metric(port, lambda s: value(s, "relay_outbox_depth", cursor="fw") == 0)

    assert value(backlog, "relay_discord_gateway_reconnects_total", shard="0") == 1
    assert value(backlog, "relay_discord_gateway_identifies_total", shard="0") == 1
    assert (value(backlog, "relay_outbox_oldest_age_seconds", cursor="fw") or 0) > 0
    assert (value(drained, "relay_store_write_batches_total", table="outbox") or 0) >= 1
    assert value(drained, "relay_framework_connections_total", adapter="reverse-ws", destination="fw") == 2
    assert value(drained, "relay_outbox_oldest_age_seconds", cursor="fw") == 0


# --------------------------------------------------------------------------- readiness


@attrs.frozen
class Starting:
    discord: Emulator  #: it holds READY (gateway.hold_ready) until release_ready()
    framework: FakeFramework
    port: int  #: the [server] listener's
    started: list[RunningBridge]  #: the bridge, once serve_bridge reported it running

    async def running(self) -> RunningBridge:
        while not self.started:
            await trio.sleep(0.02)
        return self.started[0]


@asynccontextmanager
async def starting_bridge(
    tmp_path: Path,
    change: Callable[[BridgeConfig], BridgeConfig] = lambda config: config,
    *,
    notifier: Notifier | None = None,
    framework_up: bool = True,
) -> AsyncIterator[Starting]:
    """A bridge started in the background, its [server] port known before it runs, its Discord holding READY
    until ``discord.release_ready()``, and its framework down from the start unless ``framework_up``."""
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    discord.gateway.hold_ready = True
    port = free_loopback_port()
    started: list[RunningBridge] = []
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID) as framework:
            if not framework_up:
                await framework.stop()  # its port stays known: start() listens on it again
            config = change(attrs.evolve(bridge_config(discord, framework, tmp_path), server=ServerConfig(port=port)))
            config = attrs.evolve(config, server=attrs.evolve(config.server, port=port))
            stopped = trio.Event()

            async def serve(task_status: trio.TaskStatus[RunningBridge] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await serve_bridge(config, notifier=notifier or Notifier(), task_status=task_status)
                finally:
                    stopped.set()

            async def run() -> None:
                started.append(await nursery.start(serve))

            nursery.start_soon(run)
            yield Starting(discord, framework, port, started)
            await discord.release_ready()
            while not started and not stopped.is_set():
                await trio.sleep(0.02)
            if started:
                started[0].shutdown()
                await stopped.wait()  # the graceful shutdown finishes while Discord and the framework are still there
        nursery.cancel_scope.cancel()


async def wait_listening(port: int) -> None:
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.02)
            continue
        await stream.aclose()
        return


async def test_readyz_is_503_with_reasons_before_discord_is_ready_then_200(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with starting_bridge(tmp_path) as bridge:
            port, discord = bridge.port, bridge.discord
            await wait_listening(port)
            await discord.wait_until(lambda: bool(discord.gateway.identifies))
            async with http(port) as client:
                alive = await client.get("/healthz")
                before = await client.get("/readyz")
            early = await scrape(port)
            await discord.release_ready()
            body = await wait_readyz(port, 200)
            line = status_line((await bridge.running()).observed, 0.0)

    assert alive.status_code == 200
    assert alive.json()["status"] == "alive" and alive.json()["uptime_seconds"] >= 0
    assert alive.headers["cache-control"] == "no-store"
    assert before.status_code == 503
    reasons = before.json()["reasons"]
    assert "discord: no shard has reached READY yet" in reasons
    assert not [r for r in reasons if not r.startswith(("discord:", "store:"))]  # the listeners and reverse-ws run
    assert before.json()["components"]["server"]["summary"] == f"listening on 127.0.0.1:{port}"
    assert value(early, "relay_ready") == 0
    assert value(early, "relay_component_ready", component="discord") == 0
    assert body["ready"] is True and body["reasons"] == []
    assert body["components"]["discord"]["summary"].startswith("1/1 shards READY")
    assert line.endswith("; ready")


async def test_readyz_lists_a_framework_that_is_down_when_frameworks_are_required(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path, requiring_frameworks) as (_discord, framework, running, _stopped):
            port = running.server_port
            conn = await framework.wait_connection()
            await conn.wait_verified()
            await wait_readyz(port, 200)
            await framework.stop()
            down = await wait_readyz(port, 503)
            line = status_line(running.observed, 0.0)
            await framework.start()
            up = await wait_readyz(port, 200)

    assert down["reasons"] == ["frameworks: reverse-ws destination fw is not connected"]
    assert down["components"]["frameworks"]["required"] is True
    assert line.endswith("; not ready: frameworks: reverse-ws destination fw is not connected")
    assert up["components"]["frameworks"]["summary"] == "1/1 connected"


@contextmanager
def files_cannot_grow() -> Iterator[None]:
    """No file of this process may grow (a full disk): writes fail with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_readyz_is_503_while_the_store_cannot_write_and_200_when_it_can_again(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path) as (discord, framework, running, _stopped):
            port = running.server_port
            conn = await framework.wait_connection()
            await conn.wait_verified()
            await wait_readyz(port, 200)
            with files_cannot_grow():
                # the message's id row must be written: the store's flusher fails and keeps it in memory
                await say(discord, CHANNEL, ALICE, "disk full")
                # the outbox's cursor update may fail first: wait for the message store's own failure
                unwritable = await wait_readyz(port, 503)
                while not any("message-id rows" in reason for reason in unwritable["reasons"]):
                    await trio.sleep(0.02)
                    unwritable = await wait_readyz(port, 503)
                failing = await scrape(port)
            writable = await wait_readyz(port, 200)
            after = await scrape(port)

    reasons = unwritable["reasons"]
    assert all(reason.startswith("store: the last write failed: ") for reason in reasons), reasons
    assert any(
        "could not write 1 message-id rows" in reason and "check free disk space" in reason for reason in reasons
    )
    assert (value(failing, "relay_store_write_failures_total", table="messages") or 0) >= 1
    assert value(failing, "relay_component_ready", component="store") == 0
    assert writable["components"]["store"]["ready"] is True
    assert value(after, "relay_store_written_rows_total", table="messages") == 1  # retried, nothing lost


async def test_systemd_hears_ready_only_once_the_bridge_is_ready(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        systemd.setblocking(False)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path}, pid=1)
        with trio.fail_after(GUARD):
            async with starting_bridge(tmp_path, requiring_frameworks, notifier=notifier, framework_up=False) as bridge:
                await bridge.discord.release_ready()
                running = await bridge.running()  # Discord is READY, the framework is down: not ready
                framework_down = ["frameworks: reverse-ws destination fw is not connected"]
                while (not_ready := await wait_readyz(bridge.port, 503))["reasons"] != framework_down:
                    await trio.sleep(0.02)  # the store's first commit may still be on its way
                early = _pending_datagrams(systemd)
                await bridge.framework.start()
                await trio.lowlevel.wait_readable(systemd)
                ready = systemd.recv(4096).decode()
                assert running.observed.readiness().ready
    assert not_ready["components"]["frameworks"]["required"] is True
    assert early == []
    assert ready.startswith("READY=1\nSTATUS=shards 1/1 up")
    assert ready.endswith("; ready")


def _pending_datagrams(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out
