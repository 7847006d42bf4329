"""What relay.app wires around the core, over real loopback sockets: the proxy for every connection to Discord
(REST and the gateway, through a real pproxy process), the presence in Identify, the gateway handshake's
User-Agent, and the systemd notifications (a datagram socket this test listens on, as systemd would)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from adapters.discord import USER_AGENT
from adapters.mirai import reverse_ws
from relay.app import RunningBridge, serve_bridge
from relay.config import ActivityType, BridgeConfig, PresenceConfig, PresenceStatus
from relay.egress import DiscordEgress
from relay.notify import Notifier
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.fakes.fake_framework import FakeFramework, open_fake_framework
from tests.integration.pproxy_server import ENCODED_PASSWORD, USER, start_pproxy
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


@asynccontextmanager
async def bridge_with(
    tmp_path: Path,
    change: Callable[[BridgeConfig], BridgeConfig] = lambda config: config,
    *,
    egress_env: dict[str, str] | None = None,
    notifier: Notifier | None = None,
) -> AsyncIterator[tuple[Emulator, FakeFramework, RunningBridge, trio.Event]]:
    discord = Emulator(token=TOKEN)
    add_guild(
        discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general", OTHER_CHANNEL: "random"}, members=[ALICE]
    )
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID) as framework:
            config = change(bridge_config(discord, framework, tmp_path))
            egress = DiscordEgress.from_config(config.discord, egress_env or {})
            stopped = trio.Event()

            async def run(task_status: trio.TaskStatus[RunningBridge] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await serve_bridge(config, egress=egress, notifier=notifier or Notifier(), task_status=task_status)
                finally:
                    stopped.set()

            running: RunningBridge = await nursery.start(run)
            yield discord, framework, running, stopped
            running.shutdown()
            await stopped.wait()
        nursery.cancel_scope.cancel()


async def test_the_gateway_handshake_sends_the_same_user_agent_as_rest(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path) as (discord, _framework, _running, _stopped):
            (connection,) = discord.gateway.connections
    assert connection.headers["user-agent"] == USER_AGENT
    assert discord.requests[0].headers["user-agent"] == USER_AGENT


async def test_the_framework_is_dialed_when_ready_is_read_not_on_a_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway listener wakes the reverse-ws dial when READY gives the bot id (relay.ports.IdentityChanged):
    with the destination's fallback poll made an hour long, the framework still gets its connection, verified with
    the bot's qq, and the bridge's messages."""
    monkeypatch.setattr(reverse_ws, "BOT_ID_POLL_INTERVAL", 3600.0)
    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path) as (discord, framework, _running, _stopped):
            connection = await framework.wait_connection()
            await connection.wait_verified()
            await say(discord, CHANNEL, ALICE, "dialed at READY")
            (event,) = await wait_group_messages(framework, 1)
    assert connection.headers["qq"] == str(BOT_ID)
    chain = event["messageChain"]
    assert isinstance(chain, list) and chain[0]["type"] == "Source"
    assert chain[1:] == [{"type": "Plain", "text": "dialed at READY"}]


async def test_the_configured_presence_is_sent_in_identify(tmp_path: Path) -> None:
    presence = PresenceConfig(status=PresenceStatus.IDLE, activity=ActivityType.WATCHING, text="the bridge")

    def with_presence(config: BridgeConfig) -> BridgeConfig:
        return attrs.evolve(config, discord=attrs.evolve(config.discord, presence=presence))

    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path, with_presence) as (discord, _framework, _running, _stopped):
            (identify,) = discord.gateway.identifies
    assert identify.payload["d"]["presence"] == {
        "since": None,
        "activities": [{"name": "the bridge", "type": 3}],
        "status": "idle",
        "afk": False,
    }


async def test_rest_and_the_gateway_go_through_the_configured_proxy(tmp_path: Path) -> None:
    proxy = await start_pproxy(tmp_path)
    try:
        url = f"http://{USER}:{ENCODED_PASSWORD}@127.0.0.1:{proxy.port}"

        def with_proxy(config: BridgeConfig) -> BridgeConfig:
            return attrs.evolve(config, discord=attrs.evolve(config.discord, proxy=url))

        with trio.fail_after(GUARD):
            # the environment names another proxy that does not exist: the configured one must win
            env = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
            async with bridge_with(tmp_path, with_proxy, egress_env=env) as (discord, framework, _running, _stopped):
                conn = await framework.wait_connection()
                await conn.wait_verified()
                await say(discord, CHANNEL, ALICE, "via the proxy")
                await wait_group_messages(framework, 1)
                assert (
                    await conn.request(
                        "sendGroupMessage",
                        {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "back through it"}]},
                    )
                )["code"] == 0
                # a dropped gateway connection resumes through the proxy too
                await discord.drop_connection()
                await discord.wait_until(lambda: len(discord.gateway.resumes) == 1)
                await say(discord, CHANNEL, ALICE, "after resume")
                await wait_group_messages(framework, 2)
        log = proxy.log()
        # REST and the gateway share the emulator's port: each TCP connection it accepted is one tunnel of the
        # proxy's, and every one of them came through it: REST's, then the gateway websocket and its resume
        rest_connections = {r.client for r in discord.requests}
        assert len(discord.gateway.connections) == 2
        assert log.count(f"127.0.0.1:{discord.port}") == len(rest_connections) + 2
        assert "127.0.0.1:9" not in log
    finally:
        await proxy.kill()


async def test_systemd_hears_ready_status_and_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        systemd.setblocking(False)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path}, pid=1)
        with trio.fail_after(GUARD):
            async with bridge_with(tmp_path, notifier=notifier) as (_world, _framework, _running, _stopped):
                # READY=1 comes when the bridge is ready (the store's first commit may follow Discord's READY)
                await trio.lowlevel.wait_readable(systemd)
                ready = systemd.recv(4096).decode()
        stopping = systemd.recv(4096).decode()
    assert ready.startswith("READY=1\nSTATUS=shards 1/1 up, guilds 1, destinations")
    assert stopping == "STOPPING=1\nSTATUS=shutting down"
