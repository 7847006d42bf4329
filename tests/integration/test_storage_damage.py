"""A damaged page in the store file while the bridge runs: the outbox's backlog has a damaged page, and the
bridge's flusher (store, outbox and session in one transaction) and the reverse-ws client keep delivering
(relay.storage.flush, relay.storage.outbox, adapters.mirai.reverse_ws), against the fake framework over loopback."""

from __future__ import annotations

import logging
import random
from functools import partial
from pathlib import Path

import pytest
import trio

from adapters.mirai.reverse_ws import serve_reverse_ws
from relay.config import OutboxConfig
from relay.storage.flushers import Wakeup, serve_flusher
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore
from tests.fakes.fake_framework import open_fake_framework
from tests.integration.test_mirai_client import (
    BOT,
    GUARD,
    KEY,
    FakeHandlers,
    FixedIdentity,
    event_frame,
    group_messages,
    mirai_config,
)
from tests.sqlite_damage import damage_table

BACKLOG = 1_000
NEW = 1_000


async def test_a_damaged_outbox_page_is_skipped_and_reported_and_new_events_flow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    with Outbox(path, OutboxConfig()) as box:  # a framework was away while 1,000 events came in
        box.register("fw0")
        for n in range(1, BACKLOG + 1):
            box.append(event_frame(n))
    damage_table(path, "outbox_events")
    store = MessageStore.open(path)
    caplog.set_level(logging.WARNING, logger="relay.storage")
    with trio.fail_after(GUARD), Outbox(path, OutboxConfig()) as outbox:
        async with open_fake_framework(verify_key=KEY, qq=BOT) as fw, trio.open_nursery() as nursery:
            sessions = {0: '{"seq": 1}'}
            await nursery.start(partial(serve_flusher, store, outbox, Wakeup(), sessions=lambda: sessions))
            await nursery.start(
                partial(
                    serve_reverse_ws,
                    config=mirai_config(fw.port),
                    outbox=outbox,
                    dispatcher=FakeHandlers(),
                    identity=FixedIdentity(),
                    rng=random.Random(1),
                )
            )
            while BACKLOG not in group_messages(fw):
                await trio.sleep(0.01)
            backlog = group_messages(fw)
            lost = sorted(set(range(1, BACKLOG + 1)) - set(backlog))
            for n in range(BACKLOG + 1, BACKLOG + NEW + 1):
                outbox.append(event_frame(n))
                if n % 100 == 0:
                    sessions = {0: f'{{"seq": {n}}}'}
                    await trio.sleep(0.01)  # live events: the flusher writes along
            while len(group_messages(fw)) < len(backlog) + NEW:
                await trio.sleep(0.01)
            # every new event, once and in order, on the first connection: no reconnect loop
            assert group_messages(fw) == [*backlog, *range(BACKLOG + 1, BACKLOG + NEW + 1)]
            assert len(fw.connections) == 1
            nursery.cancel_scope.cancel()
    store.close()
    assert 0 < len(lost) < 100 and lost == list(range(lost[0], lost[-1] + 1))  # one 4 KB page of the backlog
    reports = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(reports) == 1 and reports[0].levelno == logging.ERROR
    assert f"{len(lost)} undelivered frames (seq {lost[0]}–{lost[-1]})" in reports[0].getMessage()
    assert any("damaged one is kept" in r.getMessage() for r in caplog.records)  # the frames moved out of it
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r not in reports]
