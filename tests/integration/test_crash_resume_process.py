"""kill -9 twice under a stream of messages, each time followed by a restart (the real CLI in a subprocess, the
emulated Discord, which honours RESUME, a fake framework, loopback): the session saved with the last flush before
each crash resumes, no message is missing, and only messages the last flush had not saved as delivered come twice.

What a crash may repeat (docs/architecture.md §5, at-least-once across crashes): the dispatches after the session's
saved seq (Discord replays them on RESUME), and the outbox frames after the framework's saved cursor (the restarted
bridge sends them again). A frame the framework's TCP acknowledged just after the last flush took its batch is one
of the second kind even when its dispatch is older than the saved seq; both sets are read from the file the crash
left behind."""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from relay.storage import sqlite
from relay.storage.sessions import load_gateway_sessions
from tests.fakes.fake_framework import FakeFramework
from tests.integration.test_end_to_end_process import ALICE, CHANNEL, bridge_process, discord_and_framework

MESSAGES = 600
CRASHES = 2
#: messages posted between two 10 ms pauses: up to ~1,000 a second
BURST = 10


def chain_text(data: Mapping[str, Any]) -> str:
    """The text of an event's message chain."""
    return "".join(str(part.get("text", "")) for part in data.get("messageChain", []))


def texts(framework: FakeFramework) -> list[str]:
    return [chain_text(e.data) for e in framework.events if e.data.get("type") == "GroupMessage"]


def saved_seq(store: Path) -> int:
    sessions = load_gateway_sessions(str(store)).sessions
    return int(json.loads(sessions[0])["seq"] or 0) if 0 in sessions else 0


def undelivered_on_disk(store: Path) -> set[int]:
    """The messages of the outbox frames after the framework's saved cursor: what a restart sends again."""
    db = sqlite.connect(str(store), cache_kib=1024, read_only=True)
    try:
        cursors = [seq for (seq,) in db.execute("SELECT seq FROM outbox_cursors")]
        frames = db.execute("SELECT frame FROM outbox_events WHERE seq > ?", (min(cursors, default=0),)).fetchall()
    finally:
        db.close()
    texts_on_disk = (chain_text(json.loads(frame)["data"]) for (frame,) in frames)
    return {int(text[1:]) for text in texts_on_disk if text.startswith("m")}


async def test_kill_9_twice_mid_stream_resumes_each_time_and_misses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "bridge.sqlite3"
    with trio.fail_after(120):
        async with discord_and_framework(tmp_path) as (discord, framework, config):
            sent, last_seq = 0, 0
            seq_of: dict[int, int] = {}  # message → the seq of its MESSAGE_CREATE

            async def stream(until: int) -> None:
                nonlocal sent, last_seq
                while sent < until:
                    for n in range(sent, sent + BURST):
                        discord.actions.post_message(CHANNEL, f"m{n}", author_id=ALICE)
                        session = discord.gateway.session_of(0)  # kept while the bridge is down: Discord buffers
                        if session is not None:
                            seq_of[n] = last_seq = session.seq
                    sent += BURST
                    await trio.sleep(0.01)

            may_repeat: set[int] = set()  # per crash, what the file it left says a restart may send again
            for crash in range(1, CRASHES + 1):
                async with bridge_process(config, token=discord.token) as bridge:
                    while "bridge running" not in bridge.log:  # Discord READY (or RESUMED), frameworks dialled
                        await trio.sleep(0.01)
                    await stream(MESSAGES * crash // (CRASHES + 1))
                    committed, mark = last_seq, sent
                    while saved_seq(store) < committed:  # the bridge has flushed everything up to here...
                        await stream(sent + BURST)  # ...while the stream goes on
                    await stream(sent + 2 * BURST)
                    bridge.process.kill()  # SIGKILL mid-stream: no clean stop, nothing saved on the way out
                    assert await bridge.process.wait() == -9
                    resumed_after = saved_seq(store)
                    assert resumed_after >= committed  # the flush the test waited for stayed on disk
                    replayed = {n for n, seq in seq_of.items() if seq > resumed_after}
                    assert replayed <= set(range(mark, sent))  # Discord's replay starts after the last flush
                    may_repeat |= replayed | undelivered_on_disk(store)
                await stream(sent + 5 * BURST)  # Discord goes on while the bridge is down

            async with bridge_process(config, token=discord.token) as bridge:
                await stream(MESSAGES)
                while not {f"m{n}" for n in range(MESSAGES)} <= set(texts(framework)):
                    await trio.sleep(0.05)
                bridge.process.terminate()
    # every restart resumed the session its predecessor saved with its last flush
    assert len(discord.gateway.identifies) == 1
    assert len(discord.gateway.resumes) == CRASHES
    seen = collections.Counter(int(text[1:]) for text in texts(framework))
    assert [n for n in range(MESSAGES) if not seen[n]] == []  # 0 missing
    twice = sorted(n for n, count in seen.items() if count > 1)
    assert set(twice) <= may_repeat, (twice, sorted(may_repeat))
