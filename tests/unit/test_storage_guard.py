"""The store file's safety (relay.storage.guard): private at rest, checked at start, watched while running."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from relay.config import OutboxConfig
from relay.errors import StoreLost
from relay.storage import guard
from relay.storage.flushers import GUARD_INTERVAL, Wakeup, serve_flusher
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore
from tests.sqlite_damage import damage_table
from tests.unit.test_store import G, msg


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual umask, whatever the test runner's
    try:
        yield
    finally:
        os.umask(previous)


def opened(path: str) -> tuple[MessageStore, Outbox]:
    store = MessageStore.open(path)
    store.record(msg(1))
    store.flush()
    return store, Outbox(path, OutboxConfig())


@pytest.mark.usefixtures("umask_022")
def test_the_store_and_its_companions_are_created_0600_in_a_0700_folder(tmp_path: Path) -> None:
    path = str(tmp_path / "data" / "bridge.sqlite3")
    guard.prepare(path)
    store, outbox = opened(path)
    assert mode(tmp_path / "data") == 0o700
    for name in (path, *guard.companions(path)):
        assert mode(name) == 0o600, name
    outbox.close()
    store.close()


@pytest.mark.usefixtures("umask_022")
def test_a_store_opened_without_prepare_is_created_0600_too(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store, outbox = opened(path)  # relay.storage.sqlite.connect creates the file
    for name in (path, *guard.companions(path)):
        assert mode(name) == 0o600, name
    outbox.close()
    store.close()


@pytest.mark.usefixtures("umask_022")
def test_existing_loose_files_are_tightened_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    path = str(folder / "bridge.sqlite3")
    db = sqlite3.connect(path)  # as an earlier version made it: 0644
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    session = folder / "bridge.sqlite3.session.json"
    session.write_text("{}")
    assert mode(path) == mode(session) == 0o644
    with caplog.at_level(logging.WARNING, logger="relay.storage.guard"):
        guard.prepare(path, also_private=[str(session)])
    db.close()
    assert mode(path) == mode(session) == 0o600
    warnings = [r.getMessage() for r in caplog.records]
    assert any(path in w and "made it 0600" in w for w in warnings)
    assert any(str(session) in w and "made it 0600" in w for w in warnings)
    # the folder may be one the user shares: reported, not changed
    assert any(str(folder) in w and "chmod 700" in w for w in warnings)
    assert mode(folder) == 0o755


def test_making_files_private_keeps_the_processs_sqlite_locks(tmp_path: Path) -> None:
    # closing any descriptor of a database file drops the process's POSIX locks on it; another process closing
    # its connection then takes itself for the last user and deletes the -wal this one writes (found by the
    # kill -9 test as "database disk image is malformed")
    path = str(tmp_path / "bridge.sqlite3")
    guard.prepare(path)
    store, outbox = opened(path)  # the outbox's connections come after the store's: nothing may reopen the file
    store.record(msg(2))
    store.flush()
    peek = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM messages_map'); c.close()"
    subprocess.run([sys.executable, "-c", peek, path], check=True, timeout=60)
    assert os.path.exists(path + "-wal")  # still this process's, with its content
    store.record(msg(3))
    store.flush()
    assert len(store.history(G, 0, 2**40, 10)) == 3
    outbox.close()
    store.close()


def test_private_umask_makes_later_files_private(tmp_path: Path) -> None:
    previous = guard.private_umask()
    try:
        (tmp_path / "later.json").write_text("{}")
        (tmp_path / "uploads").mkdir()
    finally:
        os.umask(previous)
    assert mode(tmp_path / "later.json") == 0o600
    assert mode(tmp_path / "uploads") == 0o700


@pytest.mark.parametrize("victim", ["store", "wal", "shm"])
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_the_guard_notices_a_file_deleted_or_replaced(tmp_path: Path, victim: str, how: str) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    watch = guard.prepare(path)
    store, outbox = opened(path)
    watch.check()  # all there: nothing to say
    target = {"store": path, "wal": path + "-wal", "shm": path + "-shm"}[victim]
    if how == "deleted":
        os.unlink(target)
    else:
        (tmp_path / "other").write_bytes(Path(target).read_bytes())
        os.replace(tmp_path / "other", target)
    with pytest.raises(StoreLost, match=f"{target} was {how}"):
        watch.check()
    outbox.close()
    store.close()


async def test_the_flusher_stops_the_bridge_when_the_store_is_deleted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    watch = guard.prepare(path)
    store, outbox = opened(path)
    with pytest.raises(BaseExceptionGroup) as caught:
        # the mechanism's own poll interval bounds it (a failure guard, not a measurement)
        with trio.fail_after(3 * GUARD_INTERVAL):
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(serve_flusher, store, outbox, Wakeup(), guard=watch))
                for name in (path, *guard.companions(path)):
                    os.unlink(name)
                await trio.sleep_forever()  # the flusher's StoreLost ends the nursery
    lost, rest = caught.value.split(StoreLost)
    assert rest is None and lost is not None
    assert f"{path} was deleted" in str(lost.exceptions[0])
    outbox.close()
    store.close()


def test_a_damaged_store_is_refused_at_start(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    for n in range(1, 2_001):
        store.record(msg(n))
    store.close()
    damage_table(path, "messages_map")
    with pytest.raises(StoreLost, match="store repair"):
        guard.prepare(path)


def test_the_start_check_is_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    for n in range(1, 2_001):
        store.record(msg(n))
    store.close()
    assert guard.quick_check(path) == guard.QuickCheck((), complete=True)
    # with no time at all the check stops at its first look at the clock and says so
    assert guard.quick_check(path, seconds=0.0) == guard.QuickCheck((), complete=False)
