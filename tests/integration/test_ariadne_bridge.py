"""The whole bridge between a real framework and (emulated) Discord: nothing of ours is stood in for.

Graia Ariadne (its own venv, $ARIADNE_PYTHON, as a subprocess) runs its reverse-ws server; the bridge
(``serve_bridge``: store, outbox, Discord shard, REST client, reverse-ws client) connects to it and to the
loopback emulated Discord. A user's message in a channel reaches Ariadne as a GroupMessage; Ariadne's handler
replies with ``sendGroupMessage`` quoting it; the emulated Discord receives a reply to the original message,
and Ariadne receives the bridge's Int32 messageId for it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from relay.app import RunningBridge, serve_bridge
from relay.config import (
    BackoffConfig,
    BridgeConfig,
    DestinationConfig,
    DiscordConfig,
    LoggingConfig,
    MiraiConfig,
    ReverseWsConfig,
    ServerConfig,
    StoreConfig,
)
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.integration.test_ariadne import ARIADNE_PYTHON, BOT_SCRIPT, GUARD, free_loopback_port, read_report

pytestmark = pytest.mark.ariadne

GUILD = 9100
CHANNEL = 9101
OWNER = 9200
ALICE = 9201
KEY = "ariadne-bridge-verify-key"


@pytest.mark.skipif(not ARIADNE_PYTHON, reason="ARIADNE_PYTHON is unset (.ci/run creates Ariadne's venv and sets it)")
async def test_ariadne_answers_a_discord_message_through_the_whole_bridge(tmp_path: Path) -> None:
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    port = free_loopback_port()
    stderr_path = tmp_path / "ariadne.stderr"
    with stderr_path.open("wb") as stderr, trio.fail_after(GUARD):
        process = await trio.lowlevel.open_process(
            [ARIADNE_PYTHON, str(BOT_SCRIPT), str(port), str(BOT_ID), KEY, "/ws", "tok", "hdr"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            async with trio.open_nursery() as nursery:
                await start_emulator(nursery, discord)
                config = BridgeConfig(
                    discord=DiscordConfig(
                        token=discord.token, api_base_url=discord.base_url, gateway_url=discord.gateway_url
                    ),
                    mirai=MiraiConfig(
                        verify_key=KEY,
                        reverse_ws=ReverseWsConfig(
                            destinations=(
                                DestinationConfig(
                                    name="ariadne",
                                    host="127.0.0.1",
                                    port=port,
                                    path="/ws",
                                    extra_parameters={"token": "tok"},
                                    extra_headers={"X-Auth": "hdr"},
                                ),
                            ),
                            reconnect=BackoffConfig(initial=0.1, factor=1.5, cap=0.5),
                        ),
                    ),
                    store=StoreConfig(path=str(tmp_path / "bridge.sqlite3")),
                    logging=LoggingConfig(status_interval=3600),
                    server=ServerConfig(port=0),
                )
                running: RunningBridge = await nursery.start(serve_bridge, config)
                message = await say(discord, CHANNEL, ALICE, "ping")
                report = await read_report(process, stderr_path)
                running.shutdown()
                await trio.sleep(0)
                nursery.cancel_scope.cancel()
        finally:
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert report["group"] == CHANNEL
    assert report["text"] == "ping"
    assert isinstance(report["quoted"], int) and report["quoted"] > 0  # the Source.id the bridge allocated
    replies = discord.requests_to("POST /channels/{channel_id}/messages")
    assert len(replies) == 1
    body = replies[0].json
    assert body is not None
    assert body["content"] == "pong: ping"
    assert body["message_reference"]["message_id"] == message["id"]  # the quote became a Discord reply
    reply_id = report["reply_message_id"]
    assert isinstance(reply_id, int) and 0 < reply_id < 2**31  # Ariadne got the bridge's Int32 messageId
