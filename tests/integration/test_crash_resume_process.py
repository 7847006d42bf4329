"""kill -9 twice under a stream of messages, each time followed by a restart (the real CLI in a subprocess, the
emulated Discord, which honours RESUME, a fake framework, loopback): the session saved with the last flush before
each crash resumes, no message is missing, and only messages relayed after the last flush come twice."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import trio

from relay.storage.sessions import load_gateway_sessions
from tests.fakes.fake_framework import FakeFramework
from tests.integration.test_end_to_end_process import ALICE, CHANNEL, bridge_process, discord_and_framework

MESSAGES = 600
CRASHES = 2
#: messages posted between two 10 ms pauses: up to ~1,000 a second
BURST = 10


def texts(framework: FakeFramework) -> list[str]:
    return [
        "".join(str(part.get("text", "")) for part in e.data["messageChain"])  # type: ignore[union-attr]
        for e in framework.events
        if e.data.get("type") == "GroupMessage"
    ]


def saved_seq(store: Path) -> int:
    sessions = load_gateway_sessions(str(store)).sessions
    return int(json.loads(sessions[0])["seq"] or 0) if 0 in sessions else 0


async def test_kill_9_twice_mid_stream_resumes_each_time_and_misses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "bridge.sqlite3"
    with trio.fail_after(120):
        async with discord_and_framework(tmp_path) as (discord, framework, config):
            sent, last_seq = 0, 0

            async def stream(until: int) -> None:
                nonlocal sent, last_seq
                while sent < until:
                    for n in range(sent, sent + BURST):
                        discord.actions.post_message(CHANNEL, f"m{n}", author_id=ALICE)
                    session = discord.gateway.session_of(0)  # kept while the bridge is down: Discord buffers
                    last_seq = session.seq if session is not None else last_seq
                    sent += BURST
                    await trio.sleep(0.01)

            after_last_flush: list[range] = []  # per crash: the messages relayed after the flush before it
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
                    after_last_flush.append(range(mark, sent))
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
    twice = [n for n, count in seen.items() if count > 1]
    assert all(any(n in window for window in after_last_flush) for n in twice), (twice, after_last_flush)
