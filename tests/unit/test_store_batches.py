"""The message store's split flush: take_batch on the recording thread, write_batch anywhere (relay.storage.store)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from relay.errors import StoreError
from relay.storage.store import MessageStore, StoreBatch
from tests.unit.test_store import DM, G, msg


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sqlite3")


def batch_in_flight(db_path: str) -> tuple[MessageStore, StoreBatch]:
    """A store whose message 1 was taken as a batch (not written yet) and whose message 2 was recorded after."""
    store = MessageStore.open(db_path, batch_size=10**9)
    store.record(msg(1))
    batch = store.take_batch()
    assert batch is not None
    store.record(msg(2))
    return store, batch


def on_disk(db_path: str) -> list[int]:
    peek = sqlite3.connect(db_path)
    try:
        return [row[0] for row in peek.execute("SELECT platform_id FROM messages_map ORDER BY platform_id")]
    finally:
        peek.close()


def test_a_batch_is_taken_encoded_and_written_while_recording_goes_on(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=10**9)
    for n in range(1, 4):
        store.record(msg(n))
    batch = store.take_batch()
    assert batch is not None and [c.platform_id for c in batch.contents] == [1, 2, 3]
    assert store.pending == 0
    assert store.take_batch() is None  # one batch in flight at a time
    assert store.record(msg(4)).local_id == 4  # recording goes on meanwhile
    assert store.write_batch(batch) == 3
    assert on_disk(db_path) == [1, 2, 3]
    assert store.flush() == 1
    assert on_disk(db_path) == [1, 2, 3, 4]
    store.close()
    reopened = MessageStore.open(db_path)
    assert reopened.record(msg(5)).local_id == 5  # the counter was persisted with the rows
    reopened.close()


def test_rows_in_flight_are_found_even_when_evicted_from_the_cache(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=10**9, cache_size=2)
    first = store.record(msg(1))
    batch = store.take_batch()
    assert batch is not None
    for n in range(2, 12):  # evicts message 1 from the small cache
        store.record(msg(n, conversation=DM))
    found = store.lookup_local(G, first.local_id or 0)
    assert found is not None and found.platform_id == 1
    by_platform = store.lookup_platform(1)
    assert by_platform is not None and by_platform.local_id == first.local_id
    assert store.conversation(G.id) == G
    store.write_batch(batch)
    store.close()


def test_a_failed_write_puts_the_rows_back_and_the_next_batch_writes_them(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=10**9)
    store.record(msg(1))
    store.record(msg(2))
    batch = store.take_batch()
    assert batch is not None
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    store._conn.execute("PRAGMA busy_timeout = 0")
    with pytest.raises(StoreError, match="stay pending"):
        store.write_batch(batch)
    assert store.pending == 2
    store.record(msg(3))
    blocker.execute("ROLLBACK")
    blocker.close()
    again = store.take_batch()
    assert again is not None and [c.platform_id for c in again.contents] == [1, 2, 3]  # the order is kept
    assert store.write_batch(again) == 3
    assert on_disk(db_path) == [1, 2, 3]
    store.close()


def test_counters_are_read_when_the_batch_is_written(db_path: str) -> None:
    # ids recorded after a batch was taken are newer than the batch: its counter row must not lag behind them
    store, batch = batch_in_flight(db_path)
    store.write_batch(batch)
    peek = sqlite3.connect(db_path)
    assert peek.execute("SELECT last_id FROM messages_counter WHERE conversation_id = ?", (G.id,)).fetchone() == (2,)
    peek.close()
    store.close()


def test_flush_waits_for_a_batch_another_thread_is_writing(db_path: str) -> None:
    store, batch = batch_in_flight(db_path)
    flushed: list[int] = []
    flusher = threading.Thread(target=lambda: flushed.append(store.flush()))
    flusher.start()
    flusher.join(timeout=0.2)
    assert flusher.is_alive()  # waiting for the batch in flight, so it cannot write row 2 before row 1
    store.write_batch(batch)
    flusher.join(timeout=10)
    assert not flusher.is_alive() and flushed == [1]
    assert on_disk(db_path) == [1, 2]
    store.close()


def test_a_batch_given_back_unwritten_is_written_by_the_next_flush(db_path: str) -> None:
    # the flusher's task was cancelled before its worker thread started: nothing may wait for that batch
    store, batch = batch_in_flight(db_path)
    store.return_batch(batch)
    assert store.pending == 2
    assert store.flush() == 2  # does not wait for the returned batch, and keeps the order
    assert on_disk(db_path) == [1, 2]
    store.return_batch(batch)  # once given back (or written), a no-op
    assert store.pending == 0
    store.close()


def test_giving_back_a_written_batch_changes_nothing(db_path: str) -> None:
    store, batch = batch_in_flight(db_path)
    store.write_batch(batch)
    store.return_batch(batch)  # as in the flusher's finally
    assert store.pending == 1
    assert store.flush() == 1
    assert on_disk(db_path) == [1, 2]
    store.close()


def test_a_flush_gives_up_on_a_batch_nobody_writes(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("relay.storage.store.BATCH_WAIT_TIMEOUT", 0.05)
    store, _batch = batch_in_flight(db_path)
    with pytest.raises(StoreError, match="neither written nor given back"):
        store.flush()
