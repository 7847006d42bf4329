"""Back-fill after a lost gateway session (issue 15), in the whole bridge against the emulated Discord.

A server that never resumes (every RESUME answered op 9) loses every dispatch of a reconnect; the messages among
them are still in the channel's history. The bridge reads them back after the new session's GUILD_CREATE and
delivers them before the channel's live messages, in Discord's order, each once. The process-level crash runs
(kill -9 during a stream) are in test_crash_restart.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from relay.config import BackfillConfig
from relay.sandbox.emulator.rest import Slow
from tests.emulated import say
from tests.integration.test_end_to_end import ALICE, CHANNEL, OTHER_CHANNEL, plain_text, running_bridge


async def wait_texts(env: object, count: int) -> list[str]:
    framework = env.framework  # type: ignore[attr-defined]
    with trio.fail_after(60):
        while True:
            texts = [plain_text(e.data) for e in framework.events if e.data.get("type") == "GroupMessage"]
            if len(texts) >= count:
                return texts
            await trio.sleep(0.02)


async def test_a_server_that_never_resumes_loses_no_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(90):
        async with running_bridge(tmp_path) as env:
            discord = env.discord
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            await say(discord, CHANNEL, ALICE, "before")
            assert await wait_texts(env, 1) == ["before"]

            discord.gateway.refuse_resume = True
            identifies = len(discord.gateway.identifies)
            await discord.drop_connection()
            # written while the bridge is away: the dead session's buffer is never replayed
            for i in range(30):
                channel = CHANNEL if i % 3 else OTHER_CHANNEL
                await say(discord, channel, ALICE, f"gap {i}")
            # the history answers slowly: live messages arrive while the channels are read back
            discord.inject("GET /channels/{channel_id}/messages", Slow(0.5), Slow(0.5))
            await discord.wait_until(lambda: len(discord.gateway.identifies) > identifies)
            await discord.wait_until(lambda: bool(discord.live_shards()))
            for i in range(10):
                await say(discord, CHANNEL, ALICE, f"live {i}")
            texts = await wait_texts(env, 41)
            await trio.sleep(0.3)  # anything delivered twice would be in by now
            texts = await wait_texts(env, 41)
    assert texts[0] == "before"
    assert sorted(texts) == sorted({*texts})  # each once
    assert len(texts) == 41
    gap_general = [t for t in texts if t.startswith("gap") and int(t.split()[1]) % 3]
    assert gap_general == [f"gap {i}" for i in range(30) if i % 3]  # Discord's order within the channel
    general = [t for t in texts if not t.startswith("gap") or int(t.split()[1]) % 3]
    assert general.index("live 0") > general.index("gap 29")  # the missed ones first
    assert [t for t in texts if t.startswith("live")] == [f"live {i}" for i in range(10)]
    line = next(r for r in caplog.records if "back-filled" in r.getMessage()).getMessage()
    assert "missed messages in 2 of 2 channels" in line  # the live ones may have been read back as well
    assert "after the gateway session was lost" in line
    assert "not recovered: events other than new messages" in line
    assert not discord.gateway.resumes[-1:] or discord.gateway.invalid_sessions  # the resume really was refused


async def test_back_fill_respects_its_count_window_and_says_what_it_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    def small_window(discord: object) -> None:
        pass

    with trio.fail_after(90):
        async with running_bridge(tmp_path, before_start=small_window, backfill=BackfillConfig(max_messages=5)) as env:
            discord = env.discord
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            await say(discord, CHANNEL, ALICE, "before")
            await wait_texts(env, 1)
            discord.gateway.refuse_resume = True
            identifies = len(discord.gateway.identifies)
            await discord.drop_connection()
            for i in range(12):
                await say(discord, CHANNEL, ALICE, f"gap {i}")
            await discord.wait_until(lambda: len(discord.gateway.identifies) > identifies)
            texts = await wait_texts(env, 6)
            with trio.fail_after(10):
                while not any("back-filled" in r.getMessage() for r in caplog.records):
                    await trio.sleep(0.05)
    assert texts == ["before", *(f"gap {i}" for i in range(5))]
    record = next(r for r in caplog.records if "back-filled" in r.getMessage())
    assert record.levelno == logging.WARNING
    assert "messages after the first 5 in 1 channels" in record.getMessage()
