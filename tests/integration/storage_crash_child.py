"""A stand-in for the bridge's storage side under load, to be killed with SIGKILL by
tests/integration/test_storage_flush.py: ``python -m tests.integration.storage_crash_child PATH``.

A pretend gateway hands over dispatch after dispatch (its sequence number ``seq``), each one a message that gets
its id from the store and a frame in the outbox naming both, while the bridge's flusher commits store rows,
frames and the session snapshot together. The destination "fw" never acknowledges, so every frame stays on disk.
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial

import trio

from relay.config import OutboxConfig
from relay.envelope import ConversationRef, Text, User
from relay.storage.flushers import Wakeup, serve_flusher
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore, first_id_from_clock

CONVERSATIONS = 7
PER_TICK = 10  # dispatches between two yields to the event loop: about 1,000 a second


async def main(path: str) -> None:
    wake = Wakeup()
    store = MessageStore.open(path, on_batch_full=wake.set, first_id=first_id_from_clock(1_700_000_000))
    outbox = Outbox(path, OutboxConfig())
    outbox.register("fw")
    seq = 0

    def snapshot() -> dict[int, str]:
        return {0: json.dumps({"session_id": "s", "seq": seq, "resume_url": "wss://example.invalid"})}

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_flusher, store, outbox, wake, sessions=snapshot))
        while True:
            for _ in range(PER_TICK):
                seq += 1  # the gateway's sequence number and its dispatch's handling happen in one step
                conversation = ConversationRef.group(1000 + seq % CONVERSATIONS)
                message = store.record_new(
                    conversation=conversation,
                    channel_id=conversation.id,
                    platform_id=10**15 + seq,
                    time=int(time.time()),  # recent: the flusher's retention pass keeps it
                    sender=User(id=42, name="a"),
                    segments=(Text(f"m{seq}"),),
                )
                outbox.append(json.dumps({"seq": seq, "conversation": conversation.id, "id": message.local_id}))
            await trio.sleep(0.01)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
