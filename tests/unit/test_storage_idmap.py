"""The small-id table in the store's SQLite file (relay/storage/idmap.py): durable before use, stable across
restarts, readable by the CLI without writing."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from relay.config import OutboxConfig
from relay.errors import StoreError
from relay.ids import IdMap
from relay.storage.idmap import IdTable, open_small_ids, read_small_ids
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore

CHANNEL = 1_234_567_890_123_456_789
USER = 1_100_000_000_000_000_001


def stored_pairs(path: Path) -> set[tuple[int, int]]:
    """What another connection (a process started after a crash) reads from the file."""
    db = sqlite3.connect(path)
    try:
        return set(db.execute("SELECT real, presented FROM ids_map"))
    finally:
        db.close()


def test_a_first_sight_is_committed_before_present_returns(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite3"
    with open_small_ids(str(path), write_lock=threading.Lock()) as ids:
        channel = ids.present(CHANNEL)
        assert stored_pairs(path) == {(CHANNEL, channel)}  # before anything could send it


def test_ids_are_the_same_after_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    with open_small_ids(path, write_lock=threading.Lock()) as ids:
        channel, user = ids.present(CHANNEL), ids.present(USER)
    with open_small_ids(path, write_lock=threading.Lock()) as ids:
        assert len(ids) == 2
        assert ids.resolve(channel) == CHANNEL and ids.resolve(user) == USER
        assert ids.present(USER) == user


def test_deferred_ids_are_written_together_when_the_block_ends(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite3"
    with open_small_ids(str(path), write_lock=threading.Lock()) as ids:
        with ids.deferred():
            presented = [ids.present(USER + n) for n in range(2000)]
            assert stored_pairs(path) == set()
        assert stored_pairs(path) == {(USER + n, p) for n, p in enumerate(presented)}


def test_the_table_shares_the_file_with_the_store_and_the_outbox(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    try:
        with Outbox(path, OutboxConfig()) as outbox, open_small_ids(path, write_lock=outbox.write_lock) as ids:
            channel = ids.present(CHANNEL)
            outbox.append('{"syncId":"-1","data":{}}')
    finally:
        store.close()
    assert stored_pairs(tmp_path / "bridge.sqlite3") == {(CHANNEL, channel)}


def test_a_write_waits_for_the_files_write_lock(tmp_path: Path) -> None:
    lock = threading.Lock()
    table = IdTable.open(str(tmp_path / "bridge.sqlite3"), write_lock=lock)
    try:
        lock.acquire()
        writer = threading.Thread(target=table.write, args=([(CHANNEL, 1_000_000_000_000_001)],))
        writer.start()
        writer.join(0.05)
        assert writer.is_alive() and table.load() == []  # held by "a flusher"
        lock.release()
        writer.join()
        assert table.load() == [(CHANNEL, 1_000_000_000_000_001)]
    finally:
        table.close()


def test_a_failed_write_raises_store_error(tmp_path: Path) -> None:
    table = IdTable.open(str(tmp_path / "bridge.sqlite3"), write_lock=threading.Lock())
    table.close()
    with pytest.raises(StoreError, match="could not store 1 small id"):
        table.write([(CHANNEL, 1_000_000_000_000_001)])


def test_the_cli_view_reads_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite3"
    assert len(read_small_ids(str(path))) == 0
    assert not path.exists()  # looking created nothing
    with open_small_ids(str(path), write_lock=threading.Lock()) as ids:
        channel = ids.present(CHANNEL)
    view = read_small_ids(str(path))
    assert view.lookup(CHANNEL) == channel and view.resolve(channel) == CHANNEL
    assert view.preview(USER) == IdMap().present(USER)
    view.present(USER)  # a view has nowhere to write: nothing reaches the file
    assert stored_pairs(path) == {(CHANNEL, channel)}


def test_the_cli_view_of_a_store_without_the_table_is_empty(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    MessageStore.open(path).close()
    assert len(read_small_ids(path)) == 0
