"""The real bridge process, started through its CLI with a config file, against the emulated Discord and a fake
framework on loopback.

The emulated Discord (gateway + REST) and the fake mirai framework run in the test process; the bridge runs as
``python -m relay run bridge.toml`` exactly as a user starts it. These tests use the real clock: a
subprocess cannot follow trio's virtual one. Time limits here are hang guards, not performance checks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.rest import Slow
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.fakes.fake_framework import FakeFramework, open_fake_framework

GUILD = 7000
CHANNEL = 7001
OWNER = 8000
ALICE = 8001
VERIFY_KEY = "process-verify-key"
REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, discord: Emulator, framework_port: int) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[discord]
api_base_url = "{discord.base_url}"
gateway_url = "{discord.gateway_url}"

[[mirai.reverse_ws.destinations]]
name = "framework"
host = "127.0.0.1"
port = {framework_port}
path = "/"
protocol = "ws"

[store]
path = "{tmp_path / "bridge.sqlite3"}"

[logging]
level = "INFO"
status_interval = 3600

[server]
port = 0
""",
        encoding="utf-8",
    )
    return path


@attrs.define
class BridgeProcess:
    process: trio.Process
    stderr: bytearray = attrs.field(factory=bytearray)

    @property
    def log(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@asynccontextmanager
async def bridge_process(config: Path, *, token: str, args: tuple[str, ...] = ()) -> AsyncIterator[BridgeProcess]:
    env = {**os.environ, "DISCORD_TOKEN": token, "MIRAI_VERIFY_KEY": VERIFY_KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("RELAY_LOG_LEVEL", None)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "relay", *args, "run", str(config)],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = BridgeProcess(process)
    async with trio.open_nursery() as nursery:

        async def drain_stderr() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some(65536):
                running.stderr.extend(chunk)

        nursery.start_soon(drain_stderr)
        try:
            yield running
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await process.wait()


@asynccontextmanager
async def discord_and_framework(tmp_path: Path) -> AsyncIterator[tuple[Emulator, FakeFramework, Path]]:
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID) as framework:
            yield discord, framework, write_config(tmp_path, discord, framework.port)
        nursery.cancel_scope.cancel()


async def test_cli_bridge_relays_both_ways_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with discord_and_framework(tmp_path) as (discord, framework, config):
            async with bridge_process(config, token=discord.token) as bridge:
                conn = await framework.wait_connection()
                await conn.wait_verified()
                await say(discord, CHANNEL, ALICE, "from discord")
                while not any(e.data.get("type") == "GroupMessage" for e in framework.events):
                    await trio.sleep(0.05)
                event = next(e.data for e in framework.events if e.data.get("type") == "GroupMessage")
                source_id = event["messageChain"][0]["id"]  # type: ignore[index]

                reply = await conn.request(
                    "sendGroupMessage",
                    {"target": CHANNEL, "quote": source_id, "messageChain": [{"type": "Plain", "text": "pong"}]},
                )
                assert reply["code"] == 0 and reply["messageId"] > 0  # type: ignore[operator]
                post = discord.requests_to("POST /channels/{channel_id}/messages")[-1]
                assert post.json is not None and post.json["content"] == "pong"
                assert post.json["message_reference"]["message_id"] == event_platform_id(discord, "from discord")

                bridge.process.send_signal(signal.SIGINT)
                with trio.fail_after(15):
                    code = await bridge.process.wait()
            assert code == 0, bridge.log
            assert discord.token not in bridge.log and VERIFY_KEY not in bridge.log
            assert "bridge stopped" in bridge.log
            # Discord was left with a resumable close, never 1000/1001
            assert discord.gateway.client_closes
            assert all(close not in (1000, 1001) for _t, close in discord.gateway.client_closes)


def event_platform_id(discord: Emulator, content: str) -> str:
    return next(m["id"] for m in discord.world.messages[CHANNEL].values() if m["content"] == content)


async def test_bad_token_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            discord_and_framework(tmp_path) as (_discord, _framework, config),
            bridge_process(config, token="not-the-right-token") as bridge,
        ):
            with trio.fail_after(30):
                code = await bridge.process.wait()
    assert code == 1
    errors = [line for line in bridge.log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, bridge.log
    assert "rejected the bot token" in errors[0] and "DISCORD_TOKEN" in errors[0]
    assert "not-the-right-token" not in bridge.log


async def test_disallowed_intent_exits_1_naming_the_portal_toggle(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with discord_and_framework(tmp_path) as (discord, _framework, config):
            discord.gateway.allowed_intents = (1 << 26) - 1 - (1 << 15)  # MESSAGE_CONTENT not enabled in the portal
            async with bridge_process(config, token=discord.token) as bridge:
                with trio.fail_after(30):
                    code = await bridge.process.wait()
    assert code == 1, bridge.log
    errors = [line for line in bridge.log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, bridge.log
    assert "4014" in errors[0] and "Message Content" in errors[0]
    assert len(discord.gateway.identifies) == 1  # fatal: it did not loop


async def test_verbose_logs_each_event_and_command(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with discord_and_framework(tmp_path) as (discord, framework, config):
            async with bridge_process(config, token=discord.token, args=("-v",)) as bridge:
                conn = await framework.wait_connection()
                await conn.wait_verified()
                await say(discord, CHANNEL, ALICE, "loud")
                while not any(e.data.get("type") == "GroupMessage" for e in framework.events):
                    await trio.sleep(0.05)
                await conn.request("groupList", {})
                bridge.process.send_signal(signal.SIGINT)
                with trio.fail_after(15):
                    assert await bridge.process.wait() == 0
    log = bridge.log
    # a new store numbers a conversation's messages from the clock (relay.storage.store.first_id_from_clock), not 1
    assert re.search(rf"message \d+ in group {CHANNEL} from {ALICE}", log), log
    assert "command ListGroups()" in log
    assert discord.token not in log and VERIFY_KEY not in log


async def test_second_sigint_exits_at_once_while_a_command_is_in_flight(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with discord_and_framework(tmp_path) as (discord, framework, config):
            async with bridge_process(config, token=discord.token) as bridge:
                conn = await framework.wait_connection()
                await conn.wait_verified()
                discord.inject("POST /channels/{channel_id}/messages", Slow(30.0))
                await conn.send_command(
                    "sendGroupMessage", {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "slow"}]}
                )
                while not discord.requests_to("POST /channels/{channel_id}/messages"):
                    await trio.sleep(0.02)
                bridge.process.send_signal(signal.SIGINT)  # graceful: waits for the in-flight command
                while "shutting down" not in bridge.log:
                    await trio.sleep(0.02)
                bridge.process.send_signal(signal.SIGINT)  # the user insists
                with trio.fail_after(10):  # a hang guard; the 30 s slow request must not be waited for
                    code = await bridge.process.wait()
    assert code == 130, bridge.log


async def test_one_sigterm_before_the_first_ready_stops_cleanly_with_exit_0(tmp_path: Path) -> None:
    # issue 15: a signal before startup finished was taken as the second one (exit 130)
    with trio.fail_after(60):
        async with discord_and_framework(tmp_path) as (discord, _framework, config):
            discord.gateway.close_on_identify = 4000  # the shard never reaches READY: startup never finishes
            async with bridge_process(config, token=discord.token) as bridge:
                await discord.wait_until(lambda: len(discord.gateway.identifies) >= 1)
                bridge.process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    code = await bridge.process.wait()
    assert code == 0, bridge.log
    assert "before startup finished" in bridge.log
    assert "again: exiting now" not in bridge.log
    assert "Discord REST client closed" in bridge.log  # it stopped by unwinding, not by being killed
