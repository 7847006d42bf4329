"""The durable outbox core (synchronous; a real SQLite file in tmp_path, injected clock)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from relay.config import OutboxConfig
from relay.storage import outbox as outbox_module
from relay.storage import sqlite
from relay.storage.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def frame(i: int) -> str:
    return f'{{"syncId":"-1","data":{{"type":"GroupMessage","n":{i}}}}}'


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sqlite3")


def test_append_assigns_increasing_sequences_and_reads_in_order(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    seqs = [box.append(frame(i)) for i in range(10)]
    assert seqs == list(range(1, 11))
    assert box.read_after(0, 3) == [(1, frame(0)), (2, frame(1)), (3, frame(2))]
    assert [s for s, _ in box.read_after(7, 100)] == [8, 9, 10]
    assert box.read_after(10, 5) == []


def test_append_does_not_touch_the_disk_until_flush(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.append(frame(1))
    assert box.statistics().pending_writes == 1
    peek = sqlite3.connect(db)
    assert peek.execute("SELECT COUNT(*) FROM outbox_events").fetchone()[0] == 0
    box.flush()
    assert peek.execute("SELECT COUNT(*) FROM outbox_events").fetchone()[0] == 1
    assert box.statistics().pending_writes == 0
    assert peek.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_backlog_and_cursors_survive_a_restart(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(100):
        box.append(frame(i))
    box.ack("a", 40)
    box.close()
    reopened = Outbox(db, OutboxConfig())
    assert reopened.register("a") == 40
    rows = reopened.read_after(40, 1000)
    assert [s for s, _ in rows] == list(range(41, 101))
    assert rows[0][1] == frame(40)
    assert reopened.append(frame(100)) == 101


def test_flushed_but_not_closed_backlog_survives_a_crash(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(50):
        box.append(frame(i))
    box.flush()  # what the periodic flusher does; then the process is killed (no close)
    survivor = Outbox(db, OutboxConfig())
    assert survivor.register("a") == 0
    assert len(survivor.read_after(0, 1000)) == 50


def test_reads_older_than_the_memory_tail_come_from_sqlite(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("slow")
    total = outbox_module.TAIL_CAPACITY + 500
    for i in range(total):
        box.append(frame(i))
    box.flush()
    rows = box.read_after(0, 10)
    assert [s for s, _ in rows] == list(range(1, 11))
    assert rows[0][1] == frame(0)
    assert [s for s, _ in box.read_after(total - 3, 10)] == [total - 2, total - 1, total]


def test_new_destinations_start_at_the_end(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.append(frame(0))
    assert box.register("late") == 1
    assert box.read_after(box.cursor("late"), 10) == []


def test_frames_delivered_everywhere_are_garbage_collected_without_counting_drops(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.register("b")
    for i in range(10):
        box.append(frame(i))
    box.ack("a", 10)
    box.ack("b", 6)
    box.flush()
    stats = box.statistics()
    assert (stats.oldest_seq, stats.retained, stats.dropped) == (7, 4, 0)
    assert [s for s, _ in box.read_after(6, 10)] == [7, 8, 9, 10]


def test_max_events_drops_the_oldest_counts_and_logs_them(db: str, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(db, OutboxConfig(max_events=1000))
    box.register("down")
    for i in range(1500):
        box.append(frame(i))
    with caplog.at_level(logging.WARNING, logger="relay.storage.outbox"):
        box.flush()
    stats = box.statistics()
    assert stats.dropped == 500
    assert stats.retained == 1000
    rows = box.read_after(box.cursor("down"), 5000)
    assert [s for s, _ in rows] == list(range(501, 1501))  # nothing else lost, in order
    assert rows[0][1] == frame(500)
    assert "dropped 500 undelivered events" in caplog.text
    # logged once per interval: more drops right away are counted but not logged again
    caplog.clear()
    for i in range(10):
        box.append(frame(i))
    with caplog.at_level(logging.WARNING, logger="relay.storage.outbox"):
        box.flush()
    assert box.statistics().dropped == 510
    assert caplog.text == ""


def test_drops_only_count_frames_some_destination_lacks(db: str) -> None:
    box = Outbox(db, OutboxConfig(max_events=10))
    box.register("a")
    for i in range(30):
        box.append(frame(i))
    box.ack("a", 25)
    box.flush()
    assert box.statistics().dropped == 0  # frames 1..20 were all delivered before the bound cut them
    assert [s for s, _ in box.read_after(25, 100)] == [26, 27, 28, 29, 30]


def test_max_age_drops_old_undelivered_frames(db: str) -> None:
    clock = Clock()
    box = Outbox(db, OutboxConfig(max_age_seconds=60), clock=clock)
    box.register("down")
    for i in range(5):
        box.append(frame(i))
    clock.now += 120
    for i in range(5, 8):
        box.append(frame(i))
    box.flush()
    stats = box.statistics()
    assert stats.dropped == 5
    assert [s for s, _ in box.read_after(0, 100)] == [6, 7, 8]


def test_sequences_never_repeat_after_everything_was_collected(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(5):
        box.append(frame(i))
    box.ack("a", 5)
    box.close()
    again = Outbox(db, OutboxConfig())
    again.register("a")
    assert again.append(frame(5)) == 6


def test_frames_every_destination_has_are_not_written_at_all(db: str) -> None:
    # a connected framework takes frames long before the next flush: durability is only for the rest
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.register("b")
    for i in range(10):
        box.append(frame(i))
    box.ack("a", 10)
    box.ack("b", 7)  # b still lacks 8..10
    batch = box.take_batch()
    assert batch is not None
    assert [row[0] for row in batch.rows] == [8, 9, 10]
    box.finish_batch(batch, box.write_batch(batch))
    peek = sqlite3.connect(db)
    assert [r[0] for r in peek.execute("SELECT seq FROM outbox_events ORDER BY seq")] == [8, 9, 10]
    # as after a crash: no close, a second process opens the file
    reopened = Outbox(db, OutboxConfig())
    assert reopened.register("b") == 7
    assert [s for s, _ in reopened.read_after(7, 100)] == [8, 9, 10]
    assert reopened.append(frame(10)) == 11  # numbering goes on past the frames that were never written


def test_append_listeners_are_called_with_the_sequence(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    seen: list[int] = []
    box.add_append_listener(seen.append)
    box.append(frame(0))
    box.append(frame(1))
    box.remove_append_listener(seen.append)
    box.append(frame(2))
    assert seen == [1, 2]


def test_other_tables_in_the_shared_file_are_left_alone(db: str) -> None:
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
    other.execute("INSERT INTO messages (body) VALUES ('keep me')")
    other.commit()
    box = Outbox(db, OutboxConfig(max_events=1))
    box.register("a")
    for i in range(5):
        box.append(frame(i))
    box.close()
    assert other.execute("SELECT body FROM messages").fetchall() == [("keep me",)]


def test_a_bad_path_is_a_store_error(tmp_path: Path) -> None:
    from relay.errors import StoreError

    with pytest.raises(StoreError, match="cannot open the outbox"):
        Outbox(str(tmp_path / "missing-dir" / "x.sqlite3"), OutboxConfig())


def test_batches_written_elsewhere_keep_order_while_appends_continue(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(5):
        box.append(frame(i))
    batch = box.take_batch()
    assert batch is not None and [r[0] for r in batch.rows] == [1, 2, 3, 4, 5]
    assert box.take_batch() is None  # one batch in flight at a time
    box.append(frame(5))  # appends go on while the batch is being written
    assert box.statistics().pending_writes == 6
    cut = box.write_batch(batch)  # what the flusher runs in a worker thread
    box.finish_batch(batch, cut)
    box.flush()
    box.close()
    reopened = Outbox(db, OutboxConfig())
    assert [s for s, _ in reopened.read_after(0, 100)] == [1, 2, 3, 4, 5, 6]


def test_a_failed_batch_is_put_back_and_written_again(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.append(frame(0))
    box.ack("a", 0)
    batch = box.take_batch()
    assert batch is not None
    box.append(frame(1))
    box.finish_batch(batch, None)  # the write failed
    assert box.statistics().pending_writes == 2
    box.flush()
    peek = sqlite3.connect(db)
    assert peek.execute("SELECT seq FROM outbox_events ORDER BY seq").fetchall() == [(1,), (2,)]


def test_a_batch_written_twice_is_harmless(db: str) -> None:
    box = Outbox(db, OutboxConfig())
    box.register("a")
    box.append(frame(0))
    batch = box.take_batch()
    assert batch is not None
    box.write_batch(batch)  # committed, but the flusher was cancelled before it could say so
    box.finish_batch(batch, None)
    box.flush()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM outbox_events").fetchone()[0] == 1


def test_a_write_runs_one_insert_per_chunk_not_per_frame(db: str) -> None:
    # Every statement execution releases and re-takes the GIL; per-frame inserts let a busy trio thread
    # stretch the transaction (and the file's write lock) to seconds. See relay/storage/sqlite.py write_chunks.
    box = Outbox(db, OutboxConfig())
    box.register("a")
    counts = []
    for size in (3, outbox_module.CHUNK_ROWS, 3 * outbox_module.CHUNK_ROWS):
        statements: list[str] = []
        box._writer_db.set_trace_callback(statements.append)  # every transaction runs there
        for i in range(size):
            box.append(frame(i))
        box.flush()
        box._writer_db.set_trace_callback(None)
        counts.append(len([s for s in statements if "outbox_events" in s and "INSERT" in s]))
    assert counts == [1, 1, 3]
    box.close()
    reopened = Outbox(db, OutboxConfig())
    rows = reopened.read_after(0, 10**6)
    assert len(rows) == 3 + 4 * outbox_module.CHUNK_ROWS
    assert rows[-1] == (len(rows), frame(3 * outbox_module.CHUNK_ROWS - 1))
    reopened.close()


@pytest.mark.parametrize("with_nul", [False, True])  # a raw NUL sends its chunk down the row-by-row path
def test_unusual_frames_are_stored_byte_for_byte(db: str, with_nul: bool) -> None:
    frames = ['{"t":"emoji 😀 中文 \\" \\\\ \\n"}', "\u2028", "é" * 3000, "x", "ß😀"]
    if with_nul:
        frames.insert(1, "raw nul \x00 inside")
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for f in frames:
        box.append(f)
    box.close()
    reopened = Outbox(db, OutboxConfig())
    assert reopened.read_after(0, 100) == list(enumerate(frames, start=1))
    reopened.close()


def test_old_sqlite_without_the_json_operators_writes_row_by_row(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "BULK_SUPPORTED", False)
    box = Outbox(db, OutboxConfig())
    box.register("a")
    for i in range(10):
        box.append(frame(i))
    box.close()
    reopened = Outbox(db, OutboxConfig())
    assert reopened.read_after(0, 100) == [(i + 1, frame(i)) for i in range(10)]
    reopened.close()
