"""The small-id table (``[mirai] ids = "small"``, relay/ids.py) in the store's SQLite file (no trio).

One table, ``ids_map (real PRIMARY KEY, presented UNIQUE)``, beside the store's ``messages_*`` and the outbox's
``outbox_*`` tables. :func:`open_small_ids` loads every pair into an :class:`~relay.ids.IdMap` at start and gives
it :meth:`IdTable.write`, which makes new pairs durable in one transaction of their own before the map hands
them out. :func:`read_small_ids` is the CLI's read-only view.

**Crash ordering.** The write is synchronous, on the thread that first meets the id, *before* the frame carrying
it is even built into the outbox or a command response: so whatever a framework has seen is in a committed
transaction (WAL with ``synchronous=NORMAL``, like everything in the file: a crash of the process loses nothing
committed). Writing with the outbox's batch would not do: frames are delivered from memory within a millisecond,
long before their batch is written, and frames every framework already has are never written at all. A power
loss may lose the last commits of the file; a lost pair is then derived again, equal, on the next sight of its
snowflake (relay/ids.py), and until then a command naming it is answered "not found" — never a wrong target.

**Cost.** A first sight costs one small transaction on the event loop (measured in docs/performance.md, "Where
the time goes on one guild"): it takes the file's write lock (:attr:`relay.storage.outbox.Outbox.write_lock`), so
it may wait for a flusher's batch in flight (milliseconds). Ids already seen cost one dict lookup and no I/O.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from relay.errors import StoreError
from relay.ids import IdMap, Pair
from relay.storage import sqlite

log = logging.getLogger(__name__)

__all__ = ["IdTable", "open_small_ids", "read_small_ids"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS ids_map (
    real      INTEGER PRIMARY KEY,
    presented INTEGER NOT NULL UNIQUE
);
"""
_INSERT: Final = "INSERT OR IGNORE INTO ids_map (real, presented)"
#: rows of the largest multi-row INSERT (two parameters a row)
_CHUNK_MAX: Final = sqlite.values_chunk_max(512, 2)
_SELECT_ALL: Final = "SELECT real, presented FROM ids_map"
#: the table is read once at start and written a few rows at a time: a small page cache does
_CACHE_KIB: Final = 256


class IdTable:
    """The ``ids_map`` table on a connection of its own. :meth:`write` may be called from any one thread at a
    time; it holds ``write_lock`` (the file's one write lock) around its transaction."""

    def __init__(self, db: sqlite3.Connection, write_lock: threading.Lock) -> None:
        self._db = db
        self._write_lock = write_lock

    @classmethod
    def open(cls, path: str, *, write_lock: threading.Lock, busy_timeout: float = sqlite.BUSY_TIMEOUT) -> IdTable:
        """Open (creating the table if needed) in the SQLite file ``path`` (``":memory:"`` for tests)."""
        try:
            db = sqlite.connect(path, cache_kib=_CACHE_KIB, busy_timeout=busy_timeout, any_thread=True)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the small-id table in {path!r}: {exc}; check the path and permissions"
            ) from exc
        try:
            with write_lock:
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot create the small-id table in {path!r}: {exc}") from exc
        return cls(db, write_lock)

    def load(self) -> list[Pair]:
        """Every stored pair."""
        try:
            return [(int(real), int(presented)) for real, presented in self._db.execute(_SELECT_ALL)]
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"the small-id table is unreadable: {exc}") from exc

    def write(self, pairs: Sequence[Pair]) -> None:
        """Store ``pairs`` in one committed transaction, or raise :class:`~relay.errors.StoreError`."""
        params = [value for pair in pairs for value in pair]
        try:
            with self._write_lock, sqlite.Transaction(self._db):
                sqlite.insert_values(self._db, _INSERT, 2, params, _CHUNK_MAX)
        except sqlite3.Error as exc:
            raise StoreError(f"could not store {len(pairs)} small id(s): {exc} (check free disk space)") from exc

    def close(self) -> None:
        self._db.close()


@contextlib.contextmanager
def open_small_ids(path: str, *, write_lock: threading.Lock) -> Iterator[IdMap]:
    """The small-id map of the store ``path``, loaded, writing its new pairs under ``write_lock`` (the file's one
    write lock); on exit what is still pending (after a failed write) is tried once more and the table closed."""
    table = IdTable.open(path, write_lock=write_lock)
    try:
        pairs = table.load()
        log.info("small ids: %d Discord ids have a presented id", len(pairs))
        ids = IdMap(pairs, persist=table.write)
        try:
            yield ids
        finally:
            ids.flush()
    finally:
        table.close()


def read_small_ids(path: str) -> IdMap:
    """The stored pairs of ``path`` as a read-only map, for the CLI (an absent file or table: an empty map).

    Its :meth:`~relay.ids.IdMap.preview` tells the id a snowflake would get; it writes nothing.
    """
    try:
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return IdMap()  # no file yet
    try:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ids_map'").fetchone()
        pairs = [] if exists is None else [(int(r), int(p)) for r, p in db.execute(_SELECT_ALL)]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the small-id table in {path!r}: {exc}") from exc
    finally:
        db.close()
    return IdMap(pairs)
