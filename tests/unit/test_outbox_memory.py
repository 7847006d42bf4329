"""The outbox's memory bounds: back-pressure when the writer falls behind, the shared write lock, the age scan."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from relay.config import OutboxConfig
from relay.storage import outbox as outbox_module
from relay.storage.outbox import Outbox
from tests.unit.test_outbox import Clock, frame

#: a small threshold so the tests stay fast (the module reads it when an Outbox is created and after failures)
SMALL_PENDING = 10


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sqlite3")


@pytest.fixture
def small_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "MAX_PENDING_WRITES", SMALL_PENDING)


def on_disk(db: str) -> list[int]:
    peek = sqlite3.connect(db)
    try:
        return [row[0] for row in peek.execute("SELECT seq FROM outbox_events ORDER BY seq")]
    finally:
        peek.close()


def test_a_writer_that_fell_behind_makes_append_write_the_backlog_itself(db: str, small_pending: None) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(3):
        box.append(frame(i))
    in_flight = box.take_batch()  # the worker thread is still busy with these three
    assert in_flight is not None
    for i in range(3, 3 + SMALL_PENDING):
        box.append(frame(i))
    # the buffered frames went to disk on this thread; the batch in flight still counts as unwritten
    assert on_disk(db) == list(range(4, 4 + SMALL_PENDING))
    assert box.statistics().pending_writes == 3
    assert [s for s, _ in box.read_after(0, 100)] == list(range(1, 4 + SMALL_PENDING))

    box.finish_batch(in_flight, box.write_batch(in_flight))
    box.close()
    reopened = Outbox(db, OutboxConfig())
    assert reopened.register("a") == 0
    assert [s for s, _ in reopened.read_after(0, 100)] == list(range(1, 4 + SMALL_PENDING))


def test_without_a_batch_in_flight_the_backlog_is_flushed_with_cursors(db: str, small_pending: None) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.ack("a", 0)
    for i in range(SMALL_PENDING):
        box.append(frame(i))
    assert box.statistics().pending_writes == 0
    assert on_disk(db) == list(range(1, SMALL_PENDING + 1))


def test_frames_every_destination_has_never_count_as_waiting_nor_force_a_write(db: str, small_pending: None) -> None:
    # A connected framework takes every frame about as soon as it is appended: however fast events arrive,
    # nothing waits for a writer, so the gateway reader is never held and append never writes on its thread.
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(10 * SMALL_PENDING):
        seq = box.append(frame(i))
        box.ack("a", seq)
        assert box.waiting_writes == 0
    assert box.statistics().pending_writes == 0
    assert on_disk(db) == []
    box.append(frame(10 * SMALL_PENDING))  # this one "a" lacks
    assert box.waiting_writes == 1
    box.close()
    reopened = Outbox(db, OutboxConfig())
    assert reopened.register("a") == 10 * SMALL_PENDING  # the cursor and the numbering survive
    assert [s for s, _ in reopened.read_after(10 * SMALL_PENDING, 100)] == [10 * SMALL_PENDING + 1]
    assert reopened.append(frame(0)) == 10 * SMALL_PENDING + 2


def test_waiting_writes_counts_only_what_some_destination_lacks(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.register("b")
    for i in range(10):
        box.append(frame(i))
    assert box.waiting_writes == 10
    box.ack("a", 10)
    assert box.waiting_writes == 10  # b has none of them
    box.ack("b", 6)
    assert box.waiting_writes == 4
    assert box.statistics().pending_writes == 4
    box.ack("b", 10)
    assert box.waiting_writes == 0


def test_the_newest_sequence_is_saved_when_every_frame_was_delivered_before_the_flush(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(5):
        box.ack("a", box.append(frame(i)))
    box.flush()
    assert on_disk(db) == []
    # as after a crash: no close
    reopened = Outbox(db, OutboxConfig())
    assert reopened.register("a") == 5
    assert reopened.append(frame(5)) == 6


def test_a_failing_disk_keeps_frames_and_is_retried_only_after_more_frames(
    db: str, small_pending: None, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.flush()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("ALTER TABLE outbox_events RENAME TO outbox_events_away")  # every insert now fails at once
    caplog.set_level(logging.ERROR, logger="relay.storage.outbox")

    for i in range(SMALL_PENDING):
        box.append(frame(i))
    assert len(caplog.records) == 1 and "keeping 10 frames in memory" in caplog.records[0].getMessage()
    for i in range(SMALL_PENDING, 2 * SMALL_PENDING - 1):
        box.append(frame(i))
    assert len(caplog.records) == 1  # no attempt per append while the disk is failing
    assert box.statistics().pending_writes == 2 * SMALL_PENDING - 1

    other.execute("ALTER TABLE outbox_events_away RENAME TO outbox_events")
    box.append(frame(2 * SMALL_PENDING - 1))  # the retry point: this write succeeds
    assert box.statistics().pending_writes == 0
    assert on_disk(db) == list(range(1, 2 * SMALL_PENDING + 1))
    assert [s for s, _ in box.read_after(0, 100)] == list(range(1, 2 * SMALL_PENDING + 1))
    other.close()


def test_each_transaction_waits_for_the_shared_write_lock(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.append(frame(0))
    batch = box.take_batch()
    assert batch is not None
    result: list[int] = []
    with box.write_lock:  # e.g. the message store's flusher is writing the same file
        worker = threading.Thread(target=lambda: result.append(box.write_batch(batch)))
        worker.start()
        worker.join(0.2)
        assert on_disk(db) == []  # nothing can be written while another writer holds the lock
    worker.join(10)
    assert not worker.is_alive()
    box.finish_batch(batch, result[0])
    assert on_disk(db) == [1]


def test_the_age_bound_drops_everything_when_every_frame_is_too_old(db: str) -> None:
    clock = Clock()
    box = Outbox(db, OutboxConfig(max_age_seconds=60), clock=clock)
    box.register("down")
    for i in range(4):
        box.append(frame(i))
    box.flush()
    clock.now += 120
    box.flush()
    assert box.statistics().dropped == 4
    assert box.read_after(0, 100) == []
    assert box.append(frame(4)) == 5
    assert [s for s, _ in box.read_after(0, 100)] == [5]


def test_the_age_bound_keeps_everything_from_the_first_young_frame_on(db: str) -> None:
    clock = Clock()
    box = Outbox(db, OutboxConfig(max_age_seconds=60), clock=clock)
    box.register("down")
    for i in range(3):
        box.append(frame(i))
    clock.now += 30
    for i in range(3, 6):
        box.append(frame(i))
    box.flush()
    clock.now += 45  # the first three are 75 s old now, the others 45 s
    box.flush()
    assert box.statistics().dropped == 3
    assert [s for s, _ in box.read_after(0, 100)] == [4, 5, 6]
