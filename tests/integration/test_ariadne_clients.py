"""A real framework in its client modes through the whole bridge: Graia Ariadne dials the bridge.

``WebsocketClientConfig`` (the ws adapter, with ``HttpClientConfig`` beside it for uploads, sharing the ws
session) and ``HttpClientConfig`` alone (the http adapter: verify/bind, commands over HTTP, events polled with
fetchMessage). Ariadne runs from its own venv ($ARIADNE_PYTHON, skipped when unset) as a subprocess
(tests/integration/ariadne_client_bot.py); the bridge is ``serve_bridge`` with the store, the outbox, the Discord
shard and REST client against the loopback emulated Discord, and its ws and http adapters on one port.

A user's "ping" in a channel reaches Ariadne as a GroupMessage; Ariadne replies quoting it, lists the group's
members, recalls its reply, uploads a PNG and sends it. The emulated Discord must see exactly that: a reply to the
original message, a DELETE of the reply, and a message with the PNG attached.
"""

from __future__ import annotations

import json
import signal
import subprocess
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
from tests.integration.test_ariadne import ARIADNE_PYTHON, GUARD, stderr_tail

pytestmark = pytest.mark.ariadne

BOT_SCRIPT = Path(__file__).with_name("ariadne_client_bot.py")
GUILD = 9300
CHANNEL = 9301
OWNER = 9400
ALICE = 9401
KEY = "ariadne-client-verify-key"
STEPS = ("reply", "members", "recalled", "uploaded", "image")


async def read_steps(process: trio.Process, stderr_path: Path) -> dict[str, dict[str, Any]]:
    """The bot's report lines by step, until the last step."""
    assert process.stdout is not None
    steps: dict[str, dict[str, Any]] = {}
    buffer = b""
    while STEPS[-1] not in steps:
        chunk = await process.stdout.receive_some(65536)
        if not chunk:
            raise AssertionError(f"Ariadne exited (code {process.returncode}):\n" + stderr_tail(stderr_path))
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"ARIADNE_BOT "):
                fields = json.loads(line[len(b"ARIADNE_BOT ") :])
                if "step" in fields:
                    steps[str(fields["step"])] = dict(fields)
    return steps


async def connected(running: RunningBridge, mode: str, bot_id: int) -> None:
    """Until Ariadne is connected (a first-time framework gets the events after that moment, as with MAH)."""
    assert running.mirai is not None
    while True:
        if mode == "ws":
            assert running.mirai.ws is not None
            if running.mirai.ws.counters.verifications:
                return
        elif f"http:{bot_id}" in running.outbox.statistics().cursors:  # its first fetchMessage
            return
        await trio.sleep(0.05)


@pytest.mark.skipif(not ARIADNE_PYTHON, reason="ARIADNE_PYTHON is unset (.ci/run creates Ariadne's venv and sets it)")
@pytest.mark.parametrize("mode", ["ws", "http"])
async def test_ariadne_client_modes_through_the_whole_bridge(tmp_path: Path, mode: str) -> None:
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    stderr_path = tmp_path / "ariadne.stderr"
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
                [ARIADNE_PYTHON, str(BOT_SCRIPT), mode, f"http://127.0.0.1:{port}", str(BOT_ID), KEY],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            try:
                await connected(running, mode, BOT_ID)
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
    assert (reply["group"], reply["text"]) == (CHANNEL, "ping")
    assert isinstance(reply["quoted"], int) and reply["quoted"] > 0
    assert 0 < reply["reply_message_id"] < 2**31
    assert ALICE in steps["members"]["ids"]
    assert steps["recalled"]["message_id"] == reply["reply_message_id"]
    assert steps["uploaded"]["image_id"].startswith("{")

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
