"""NoneBot2's official mirai adapter (nonebot-adapter-mirai 2.3) through the whole bridge, as its users run it.

The adapter dials the bridge's ws adapter (``/all?qq=…&verifyKey=…``) for events and sends every command over the
http adapter on the same port with the ws session's key — the ws and http adapters sharing sessions and one
port, as mirai-api-http does. NoneBot runs from its own venv ($NONEBOT_PYTHON: ``nonebot2[httpx,websockets]`` and
``nonebot-adapter-mirai``; skipped when unset) as a subprocess (tests/integration/nonebot_bot.py).

A user's "ping" reaches NoneBot as a GroupMessage; it replies quoting it, lists the group's members, recalls its
reply, uploads a PNG and sends it; the emulated Discord must see exactly that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from relay.app import RunningBridge, serve_bridge
from relay.config import (
    BridgeConfig,
    DiscordConfig,
    HttpServerConfig,
    LoggingConfig,
    MiraiConfig,
    StoreConfig,
    WsServerConfig,
)
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.integration.test_ariadne import GUARD, stderr_tail

NONEBOT_PYTHON = os.environ.get("NONEBOT_PYTHON", "")
BOT_SCRIPT = Path(__file__).with_name("nonebot_bot.py")
GUILD = 9300
CHANNEL = 9301
OWNER = 9400
ALICE = 9401
KEY = "nonebot-verify-key"
STEPS = ("reply", "members", "recalled", "uploaded", "image")


async def read_steps(process: trio.Process, stderr_path: Path) -> dict[str, dict[str, Any]]:
    """The bot's report lines by step, until the last step."""
    assert process.stdout is not None
    steps: dict[str, dict[str, Any]] = {}
    buffer = b""
    while STEPS[-1] not in steps:
        chunk = await process.stdout.receive_some(65536)
        if not chunk:
            raise AssertionError(f"NoneBot exited (code {process.returncode}):\n" + stderr_tail(stderr_path))
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"NONEBOT_BOT "):
                print(line.decode(errors="replace"), file=sys.stderr)  # NoneBot's own log, shown on failure
            else:
                fields = json.loads(line[len(b"NONEBOT_BOT ") :])
                if "step" in fields:
                    steps[str(fields["step"])] = dict(fields)
    return steps


async def connected(running: RunningBridge) -> None:
    """Until NoneBot is connected (a first-time framework gets the events after that moment, as with MAH)."""
    assert running.mirai is not None and running.mirai.ws is not None
    while not running.mirai.ws.counters.verifications:
        await trio.sleep(0.05)


@pytest.mark.skipif(not NONEBOT_PYTHON, reason="NONEBOT_PYTHON is unset (.ci/run creates NoneBot's venv and sets it)")
async def test_nonebot_through_the_whole_bridge(tmp_path: Path) -> None:
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    stderr_path = tmp_path / "nonebot.stderr"
    with stderr_path.open("wb") as stderr, trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await start_emulator(nursery, discord)
            config = BridgeConfig(
                discord=DiscordConfig(
                    token=discord.token, api_base_url=discord.base_url, gateway_url=discord.gateway_url
                ),
                mirai=MiraiConfig(
                    verify_key=KEY,
                    adapters=("ws", "http"),
                    ws=WsServerConfig(host="127.0.0.1", port=0),
                    http=HttpServerConfig(host="127.0.0.1", port=0),
                ),
                store=StoreConfig(path=str(tmp_path / "bridge.sqlite3")),
                logging=LoggingConfig(status_interval=3600),
            )
            running: RunningBridge = await nursery.start(serve_bridge, config)
            assert running.mirai is not None
            port = running.mirai.ports["mirai.ws"]
            assert running.mirai.ports["mirai.http"] == port  # one port for both, as in mirai-api-http
            process = await trio.lowlevel.open_process(
                [NONEBOT_PYTHON, str(BOT_SCRIPT), "127.0.0.1", str(port), str(BOT_ID), KEY],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            try:
                await connected(running)
                message = await say(discord, CHANNEL, ALICE, "ping")
                steps = await read_steps(process, stderr_path)
            finally:
                process.send_signal(signal.SIGINT)
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            running.shutdown()
            await trio.sleep(0)
            nursery.cancel_scope.cancel()

    reply = steps["reply"]
    assert reply["group"] == CHANNEL
    assert isinstance(reply["quoted"], int) and reply["quoted"] > 0
    assert 0 < reply["reply_message_id"] < 2**31
    assert ALICE in steps["members"]["ids"]
    assert steps["recalled"]["message_id"] == reply["reply_message_id"]
    assert steps["uploaded"]["image_id"].startswith("{")
    # every command went over http with the ws session (NoneBot's default), none over the websocket
    assert running.mirai is not None and running.mirai.http is not None and running.mirai.http.requests >= 5

    posts = discord.requests_to("POST /channels/{channel_id}/messages")
    assert len(posts) == 2
    answer, picture = posts
    assert answer.json["content"] == "pong: ping"
    assert answer.json["message_reference"]["message_id"] == message["id"]  # the quote became a Discord reply
    (deleted,) = discord.requests_to("DELETE /channels/{channel_id}/messages/{message_id}")
    assert deleted.status == 204
    left = [m["content"] for m in discord.world.messages[CHANNEL].values()]
    assert left == ["ping", "a picture"]  # the reply was the message recalled
    assert picture.json["content"] == "a picture"
    (attachment,) = [part for part in picture.parts if part.name.startswith("files[")]
    assert attachment.data.startswith(b"\x89PNG\r\n\x1a\n")
