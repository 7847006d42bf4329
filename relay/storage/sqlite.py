"""The one SQLite setup of the bridge's file (no trio): connections and their pragmas, page caches, transactions,
multi-row writes, and the rule of the write lock.

The message store (:mod:`relay.storage.store`) and the outbox (:mod:`relay.storage.outbox`) share one SQLite file,
each with tables of its own, and each opens two connections with :func:`connect`: one its transactions run on
(from a worker thread), one it reads through on the owner's thread.

* **Journal.** WAL with ``synchronous=NORMAL``: a reader neither waits for nor blocks the writer, and a commit
  does not wait for the disk; a crash of the process loses nothing committed, a power loss may lose the last
  commits. Connections are in autocommit mode and every write is an explicit ``BEGIN IMMEDIATE`` transaction
  (:class:`Transaction`).
* **Files at rest** hold message text: :func:`connect` creates a missing file with :data:`FILE_MODE` (0600), and
  SQLite gives its ``-wal`` and ``-shm`` files the database file's mode (:mod:`relay.storage.guard` makes the
  folder 0700 and tightens files that exist).
* **Page caches** are bounded per connection (the ``*_CACHE_KIB`` constants: 3.75 MiB for the four, where
  SQLite's default would allow ~8 MB each), sized to what each connection's access pattern keeps reusing; the
  outbox's writer now runs only its close and its rare emergency writes, so its cache mostly stays empty.
* **The write lock.** SQLite lets one connection of a file write at a time; another waits in its busy handler,
  which sleeps in steps of up to 100 ms. So every transaction of the bridge's writers holds one
  ``threading.Lock``, :attr:`relay.storage.outbox.Outbox.write_lock`: the outbox takes it itself, and the flusher
  (:func:`relay.storage.flushers.serve_flusher`) holds it around each flush (the store's rows, the outbox's frames
  and the session in one transaction on the store's writer) and the store's prunes. The writers then queue on
  the lock, in microseconds, instead of in SQLite. In the bench's 100,000-event burst a
  255-row outbox write took 1.4 s beside a store flush before the lock. :data:`BUSY_TIMEOUT` is left for
  another process (or a write the lock does not cover) holding the file.
* **Multi-row writes.** ``executemany`` releases the GIL around every row's ``sqlite3_step`` and must take it back
  before binding the next row; while another thread is busy (the trio thread in a burst or a replay) each
  take-back can wait ``sys.getswitchinterval()`` (5 ms), so a few hundred rows held the write lock for seconds
  and the other writer timed out with "database is locked". Rows are therefore written a chunk per statement:
  :func:`write_chunks` (one ``json_each`` statement per chunk, its text the same whatever the chunk's size) and
  :func:`insert_values` (multi-row ``VALUES`` statements of a few fixed sizes, :func:`fixed_chunks`).
* **What each writer did** (:class:`WriteCounts`): transactions committed and failed, rows written, and whether
  the last one failed, for the metrics and for readiness ("the store is writable").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import attrs

from relay import fastjson

log = logging.getLogger(__name__)

_R = TypeVar("_R", bound=Sequence[object])

#: the mode of the files the bridge creates: they hold message text
FILE_MODE: Final = 0o600
#: seconds a connection waits for a write lock held by another connection before failing
BUSY_TIMEOUT: Final = 5.0
#: prepared statements a connection caches by default (the sqlite3 module's own default)
CACHED_STATEMENTS: Final = 128
#: the ->> operator the json_each statements use arrived in SQLite 3.38; older libraries write row by row
BULK_SUPPORTED: Final = sqlite3.sqlite_version_info >= (3, 38, 0)
#: host parameters one statement may bind: 32,766 since SQLite 3.32, 999 before (SQLite docs, "Limits" §9)
MAX_VARIABLES: Final = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

# Page caches (KiB), one per connection.
#: the store's writer, which also runs the outbox's statements of a flush (relay.storage.flush: one transaction).
#: Rows are appended at the right edge of the table and of its snowflake index, so a batch's working set is its new
#: pages plus the paths down to them (~1,000 rows of ~0.7 KB are ~200 leaf pages), and the outbox writer's working
#: set (below), which its own connection now rarely needs. The (conversation_id, local_id) index is the exception:
#: a batch's entries go to one leaf page per conversation in it, ~1,000 pages (4 MB) with 1,000 busy guilds, which
#: this does not hold. 8 MB would: the writer thread's SQLite time per relayed message at 1,000 guilds
#: (scripts/measure_event_path.py --zlib --events 100000 --guilds 1000) fell from 9.7-10.0 to 8.5-8.9 µs, but
#: every busy bridge then kept 6 MB more (appended pages fill any cache: 64-65 → 70-71 MB peak RSS at 1 guild) for
#: no gain with a few guilds; not kept
STORE_WRITER_CACHE_KIB: Final = 2_048
#: the store's lookups: point lookups by key or snowflake, a few pages each
STORE_READER_CACHE_KIB: Final = 512
#: the outbox's writer: inserts touch only the right edge of one B-tree and deletes the left edge, so a
#: transaction's working set is its new pages: ~250 for 1,000 1 KB frames, which this holds without spilling
#: mid-transaction
OUTBOX_WRITER_CACHE_KIB: Final = 1_024
#: the outbox's reader: it only scans forward ranges (a replay), so beyond the interior pages a cached leaf is
#: never read again
OUTBOX_READER_CACHE_KIB: Final = 256


@attrs.define
class WriteCounts:
    """What one writer of the file did, counted where its transactions end (possibly in a worker thread: plain
    attribute updates, read on the event loop's thread by the metrics and the readiness check)."""

    batches: int = 0  #: transactions committed
    rows: int = 0  #: rows they wrote (frames or message-id rows)
    failures: int = 0  #: transactions that failed (rolled back; their rows stay in memory and are retried)
    last_success: float | None = None  #: wall-clock time of the last commit
    last_failure: float | None = None  #: wall-clock time of the last failure
    last_error: str = ""  #: what the last failure said (no secrets: SQLite's message and the file's path)
    failing: bool = False  #: the last transaction failed (cleared by the next commit)

    def succeeded(self, rows: int, now: float) -> None:
        self.batches += 1
        self.rows += rows
        self.last_success = now
        self.failing = False

    def failed(self, error: str, now: float) -> None:
        self.failures += 1
        self.last_failure = now
        self.last_error = error
        self.failing = True


def connect(
    path: str,
    *,
    cache_kib: int,
    busy_timeout: float = BUSY_TIMEOUT,
    any_thread: bool = False,
    read_only: bool = False,
    cached_statements: int = CACHED_STATEMENTS,
) -> sqlite3.Connection:
    """Open one connection to the SQLite file ``path`` (``":memory:"`` for tests) in autocommit mode.

    A writable connection puts the file in WAL mode with ``synchronous=NORMAL``; a ``read_only`` one is
    ``query_only``. ``cache_kib`` bounds its page cache (allocated as pages are touched, up to this);
    ``any_thread`` lets other threads use it (the caller serializes them); ``cached_statements=0`` for a
    connection whose statements bind large values (a cached statement keeps its last bound values).
    Raises :class:`sqlite3.Error`; callers say which file and what to do.
    """
    if not read_only and path not in ("", ":memory:"):
        create_private(path)
    db = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=not any_thread,
        cached_statements=cached_statements,
    )
    try:
        if read_only:
            db.execute("PRAGMA query_only = ON")
        else:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives app crashes, commits stay cheap
        # negative: KiB rather than pages
        db.execute(f"PRAGMA cache_size=-{cache_kib:d}")
    except BaseException:
        db.close()
        raise
    return db


def create_private(path: str) -> None:
    """Create ``path`` empty with :data:`FILE_MODE` if it does not exist (SQLite takes an empty file for a new
    database, and would create it 0644). Failures are left to SQLite's open.

    An existing file is never opened here: closing any descriptor of a database file drops every POSIX lock this
    process holds on it (SQLite's docs, "How To Corrupt An SQLite Database File" §2.2), and another process could
    then take itself for the file's last user and delete the ``-wal`` this one is writing.
    """
    if os.path.lexists(path):
        return
    with contextlib.suppress(OSError):  # O_EXCL: never a file that appeared meanwhile
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection; ``ROLLBACK`` when the block or the commit
    raises (the error goes on; a rollback that fails too is only logged)."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("a rollback after a failed transaction also failed", exc_info=True)


def write_chunks(
    db: sqlite3.Connection,
    rows: Sequence[_R],
    *,
    chunk_rows: int,
    row_sql: str,
    chunk_sql: str,
    bulk: Callable[[Sequence[_R]], Sequence[object] | None],
) -> None:
    """Write ``rows`` (inside the caller's transaction) with one ``chunk_sql`` statement per ``chunk_rows`` rows.

    ``bulk(chunk)`` gives the chunk statement's parameters, or ``None`` when the chunk must go row by row
    (``row_sql`` through ``executemany``: a value the bulk form cannot carry exactly). Single rows, and every
    row on an SQLite without the JSON operators (:data:`BULK_SUPPORTED`), go row by row too.
    """
    for first in range(0, len(rows), chunk_rows):
        chunk = rows[first : first + chunk_rows]
        params = bulk(chunk) if len(chunk) > 1 and BULK_SUPPORTED else None
        if params is None:
            db.executemany(row_sql, chunk)
        else:
            db.execute(chunk_sql, params)


def json_array(chunk: Sequence[Sequence[object]]) -> tuple[str] | None:
    """:func:`write_chunks`' ``bulk`` for a ``json_each(?)`` statement: the rows as one JSON array of arrays.

    ``None`` for what would not read back exactly: an integer beyond 64 bits (orjson refuses it; SQLite binds it
    row by row), or a NUL character (SQLite's JSON functions cut strings at an escaped NUL).
    """
    try:
        text = fastjson.dumps(chunk).decode()
    except TypeError:  # orjson.JSONEncodeError
        return None
    return None if "\\u0000" in text else (text,)


def values_chunk_max(rows: int, columns: int) -> int:
    """The row count of the largest multi-row ``VALUES`` statement: the largest power of two up to ``rows`` whose
    ``columns`` parameters a row fit in :data:`MAX_VARIABLES`."""
    return 1 << (min(rows, MAX_VARIABLES // columns).bit_length() - 1)


def fixed_chunks(rows: int, largest: int) -> list[int]:
    """Rows per statement for ``rows`` rows: whole chunks of ``largest`` (a power of two), then the rest as the
    powers of two it is made of (437 → 256, 128, 32, 16, 4, 1).

    Why fixed sizes: the connection caches each distinct statement, and a cached statement keeps its compiled
    program and its last bound values (a 500-row INSERT of message rows holds ~0.4 MB). With one statement per
    batch size, every odd-sized flush added one: SQLite's memory grew by ~2 MB a second while streaming, to
    ~60 MB with the default 128-statement cache (measured with sqlite3_memory_used). Fixed sizes cap it at
    about twice one chunk, for at most log2(largest) extra statements per batch.
    """
    sizes = [largest] * (rows // largest)
    rest = rows % largest
    size = largest >> 1
    while rest:
        if rest >= size:
            sizes.append(size)
            rest -= size
        size >>= 1
    return sizes


@functools.lru_cache(maxsize=64)
def values_statement(head: str, columns: int, rows: int) -> str:
    """``head`` (``INSERT … INTO t (a, b)``) with ``VALUES`` for ``rows`` rows of ``columns`` parameters each
    (SQLite caches the compiled statement)."""
    row = "(" + ",".join("?" * columns) + ")"
    return f"{head} VALUES " + ",".join([row] * rows)


def insert_values(db: sqlite3.Connection, head: str, columns: int, params: Sequence[object], largest: int) -> None:
    """Insert rows (``params``: ``columns`` values a row, flat) with multi-row ``VALUES`` statements of the sizes
    :func:`fixed_chunks` gives, inside the caller's transaction.

    Parameters rather than ``json_each``: binding thousands of values is a short C loop, and SQLite then inserts
    without re-parsing a JSON document per column — half the CPU per message row (measured ~13 → ~6.5 µs on
    20,000 1 KB rows), none of it holding the GIL.
    """
    first = 0
    for rows in fixed_chunks(len(params) // columns, largest):
        end = first + rows * columns
        db.execute(values_statement(head, columns, rows), params[first:end])
        first = end
