"""A frame counts as delivered once the framework's TCP acknowledged it, not once it was written into the local
socket buffer (issue 15). A framework that reads some frames, stops reading until its receive window is full and
then drops gets, after it reconnects, every frame it had not received — exactly once, in order.

Plain TCP on Linux (the bridge reads its socket's send queue, TIOCOUTQ); over wss a frame still counts once written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from relay.config import OutboxConfig
from relay.storage.outbox import Outbox
from tests.fakes.fake_framework import open_fake_framework
from tests.integration.test_mirai_client import BOT, GUARD, KEY, group_messages, mirai_config, running_bridge

FIRST = 50
FLOOD = 60_000
PAD = "x" * 100  # small frames: a whole batch fits in the socket buffer; 10 MB in all, far beyond both sockets' buffers


def frame(n: int) -> str:
    data = {"type": "GroupMessage", "n": n, "messageChain": [{"type": "Plain", "text": PAD}]}
    return json.dumps({"syncId": "-1", "data": data}, separators=(",", ":"))


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(str(tmp_path / "bridge.sqlite3"), OutboxConfig())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="acknowledgements are read with Linux's TIOCOUTQ")
async def test_a_framework_that_drops_with_a_full_window_gets_every_frame_it_had_not_received(outbox: Outbox) -> None:
    with trio.fail_after(GUARD * 2):
        async with (
            open_fake_framework(verify_key=KEY, qq=BOT, record_frames=False) as fw,
            running_bridge(mirai_config(fw.port), outbox) as client,
        ):
            conn = await fw.wait_connection()
            await conn.wait_verified()
            for n in range(FIRST):
                outbox.append(frame(n))
            await fw.wait_events(1 + FIRST)  # BotOnlineEvent + the first ones: read
            fw.pause_reading()  # stuck: its receive window fills, then the bridge's send queue
            for n in range(FIRST, FIRST + FLOOD):
                outbox.append(frame(n))
            # wait until the bridge's writes are blocked and its cursor has stopped moving
            last, still = -1, 0
            while still < 5:
                await trio.sleep(0.1)
                delivered = client.statistics()[0].delivered_seq
                still = still + 1 if delivered == last else 0
                last = delivered
            assert last < outbox.last_seq  # frames were still queued on the bridge's side
            peeked = await conn.drop_after_peek()
            received_before = list(group_messages(fw))
            fw.resume_reading()
            again = await fw.wait_connection(1)
            await again.wait_verified()
            while client.statistics()[0].delivered_seq < outbox.last_seq:  # the bridge counts it all delivered
                await trio.sleep(0.05)
            await trio.sleep(0.2)  # the last frames' events are recorded by now
    received = group_messages(fw)
    assert peeked > 0 and len(received_before) > FIRST  # the drop came with frames in both kernels' buffers
    missing = sorted(set(range(FIRST + FLOOD)) - set(received))
    assert received == list(range(FIRST + FLOOD)), (
        f"{len(received)} received, {len(set(received))} distinct, {len(missing)} missing (from {missing[:1]}); "
        f"first out of order at {next((i for i, n in enumerate(received) if n != i), None)}"
    )
