"""The durable outbox: every event frame for the frameworks, in order, with one cursor per destination.

docs/architecture.md §5: no event is lost while a framework is down or slow. The app appends each already-encoded event
frame (``{"syncId":"-1","data":{...}}``) with :meth:`Outbox.append`; every reverse-ws destination reads the
frames after its cursor with :meth:`Outbox.read_after` and acknowledges them with :meth:`Outbox.ack`.

**Delivered** means: acknowledged by the TCP of a *verified* connection's peer (on plain TCP under Linux the
connection reads its socket's unacknowledged bytes, see :mod:`adapters.mirai.connection`; over wss, written to the
socket). A destination's cursor only moves over delivered frames, so after a reconnect + verify it replays, in
order, everything after its cursor — also the frames still queued in the kernel of a connection that died.
Whether the framework *processed* a frame is unknowable at this layer (mirai has no event acks).

Durability and cost:

* ``append`` never touches the disk on the per-event path: frames are buffered in memory and written in one
  transaction per batch. Frames every destination has already received when the batch is taken are not
  written at all (a connected framework has them within a millisecond of the append; only the sequence
  number is persisted), so while the frameworks keep up the outbox writes little more than cursors. The
  periodic flusher (every :data:`FLUSH_INTERVAL`) takes a batch on the owner's thread
  (:meth:`Outbox.take_batch`), runs the transaction in a worker thread on a second connection
  (:meth:`Outbox.write_batch`) and applies the result back on the owner's thread (:meth:`Outbox.finish_batch`).
  The producer should pace itself on :attr:`Outbox.waiting_writes`, the frames some destination lacks that wait
  for a writer (the bridge holds its Discord reader while too many wait, see
  :func:`relay.storage.flushers.make_room`). As a last resort, when :data:`MAX_PENDING_WRITES` such frames are
  buffered anyway, ``append`` writes them itself on the owner's thread, after the batch in flight if there is
  one: the whole event loop then waits for the disk, but a burst the disk cannot absorb does not pile up in
  memory.
  SQLite runs in WAL mode with ``synchronous=NORMAL``. A crash (kill -9) may lose the frames appended during
  the last flush interval, and cursors are persisted with the same batching, so after a crash a destination
  may see up to one interval of frames twice (at-least-once across crashes; exactly-once across reconnects).
* Recent frames (:data:`TAIL_CAPACITY`) are also kept in memory so live delivery never reads the disk;
  a destination that fell further behind reads from SQLite in batches.
* **A damaged page** in ``outbox_events`` (the file was damaged on disk) must not stop delivery. A read that
  meets one goes on past it (:mod:`relay.storage.salvage`), the frames it held are reported once at ERROR (how
  many, which sequence numbers), and the next write moves every readable frame into a fresh ``outbox_events``,
  keeping the damaged table aside as ``outbox_events_damaged_<n>`` (writes that reach a damaged page fail, and
  SQLite then gives up their whole transaction). Live frames never depend on the disk.

Bounds (``[outbox]`` ``max_events`` / ``max_age_seconds``): the oldest frames beyond either bound are deleted
even if some destination has not received them; every such frame is counted (``dropped``) and logged at
WARNING at most once per :data:`DROP_LOG_INTERVAL`. Frames every registered destination has received are
deleted as well (that is garbage collection, not a drop).

Tables (shared SQLite file with the message store, our own tables only): ``outbox_events``,
``outbox_cursors``, ``outbox_state``. Every method but :meth:`Outbox.write_batch` must be called from one
thread (the trio thread). Each transaction holds :attr:`Outbox.write_lock`, the file's one write lock, which
the message store's flusher takes as well (see :mod:`relay.storage.sqlite`: the two writers queue on it instead
of in SQLite's busy handler; both writers' unwritten rows were most of the memory peak of the bench's
100,000-event burst before).

This module is plain synchronous code (no trio): the periodic flush is
:func:`relay.storage.flushers.serve_flusher`, which writes the outbox's batch in the same transaction as the
message store's rows and the gateway session (:mod:`relay.storage.flush`; ``serve_outbox_flusher`` for an outbox
alone), and the owner closes the outbox (``with Outbox(...) as outbox:`` or :meth:`Outbox.close`), which flushes
what is left.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from types import TracebackType
from typing import Final

import attrs

from relay.config import OutboxConfig
from relay.errors import StoreError
from relay.storage import salvage, sqlite

log = logging.getLogger(__name__)

#: seconds between periodic flushes: bounds the frames a crash can lose, keeps commits batched
FLUSH_INTERVAL: Final = 0.05
#: append writes the buffered frames itself at this many (~0.8 KB each), so a writer that falls behind slows
#: the event loop down instead of growing memory: ~20 flush intervals at the ~1,000 events/s a busy bot sees,
#: ~0.1 s in a saturating burst (bench: no measurable change in events/s; 5,000 let the unwritten frames
#: and the message store's unwritten rows reach 16,000 and 20,000 in a 100,000-event burst).
#: After a failed write, the next attempt waits for this many more frames (a failing disk is not hammered)
MAX_PENDING_WRITES: Final = 1_000
#: if the disk keeps failing, buffered frames beyond this are dropped (counted) rather than exhaust memory
MAX_PENDING_WRITES_HARD: Final = 200_000
#: recent frames kept in memory so live delivery never reads the disk. Each costs ~0.8 KB (a 1 KB event's
#: frame and its tuple), so 1,024 is ~0.8 MB; 8,192 held ~6.5 MB of a 60 MB budget (bench, issue #7). A
#: destination further behind reads SQLite in batches; frames not yet written are read from the pending lists
TAIL_CAPACITY: Final = 1_024
#: drops are logged at most this often (seconds)
DROP_LOG_INTERVAL: Final = 60.0
#: the age bound is checked at most this often (seconds): it needs a range scan
AGE_CHECK_INTERVAL: Final = 1.0

_EVENTS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS outbox_events (seq INTEGER PRIMARY KEY, created REAL NOT NULL, frame TEXT NOT NULL)"
)
#: the key the events are read by around a damaged page
_SEQ_KEY: Final = salvage.Key(("seq",))
_SCHEMA: Final = f"""
{_EVENTS_TABLE};
CREATE TABLE IF NOT EXISTS outbox_cursors (destination TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


_INSERT_ROWS: Final = "INSERT OR IGNORE INTO outbox_events (seq, created, frame) VALUES (?, ?, ?)"
#: one statement for many rows: ?1 is a JSON array of [seq, created, byte offset, byte length], ?2 the frames'
#: UTF-8 concatenated (a BLOB, so substr counts bytes); json_each needs SQLite >= 3.38
_INSERT_CHUNK: Final = (
    "INSERT OR IGNORE INTO outbox_events (seq, created, frame) "
    "SELECT value ->> 0, value ->> 1, CAST(substr(?2, value ->> 2, value ->> 3) AS TEXT) FROM json_each(?1)"
)
#: rows per statement: bounds the memory of one chunk (~1 KB a frame: the frames' bytes twice, ~1 MB) while
#: keeping statements few
CHUNK_ROWS: Final = 500
#: one reusable encoder (json.dumps with options builds a new encoder per call)
_META_JSON: Final = json.JSONEncoder(separators=(",", ":"))


def _frames_chunk(chunk: Sequence[tuple[int, float, str]]) -> tuple[str, bytes] | None:
    """:data:`_INSERT_CHUNK`'s parameters for a chunk of rows (see :func:`relay.storage.sqlite.write_chunks`).

    Frames are passed as raw bytes with offsets (no JSON escaping of the frame text: that would cost more than the
    insert); a frame holding a NUL byte (never an encoded event frame) sends its chunk down the row-by-row path.
    """
    encoded = [frame.encode() for _, _, frame in chunk]
    blob = b"".join(encoded)
    if b"\x00" in blob:
        return None
    lengths = list(map(len, encoded))
    del encoded
    meta = [
        (seq, created, offset, length)
        for (seq, created, _), offset, length in zip(
            chunk, itertools.accumulate(lengths, initial=1), lengths, strict=False
        )
    ]
    return (_META_JSON.encode(meta), blob)


@attrs.frozen(kw_only=True)
class OutboxStatistics:
    last_seq: int  #: sequence of the newest frame (0 = none ever)
    oldest_seq: int  #: sequence of the oldest retained frame (last_seq + 1 when empty)
    retained: int  #: frames retained (on disk or waiting to be written)
    pending_writes: int  #: frames some destination lacks that are not yet written to SQLite
    dropped: int  #: frames deleted by the bounds before every destination received them (this process)
    cursors: dict[str, int]  #: registered destination → last delivered seq
    writes: sqlite.WriteCounts  #: the outbox's transactions (a copy)
    unreadable: int = 0  #: undelivered frames lost to a damaged page of the file (this process)


#: a pending row's sequence number (rows are (seq, created, frame))
_row_seq = itemgetter(0)


@attrs.frozen(kw_only=True)
class WriteBatch:
    """One transaction's worth of outbox work, taken on the owner's thread (see :meth:`Outbox.take_batch`)."""

    rows: list[tuple[int, float, str]]  #: (seq, created, frame)
    cursors: list[tuple[str, int]]
    delete_through: int  #: delete frames with seq <= this (delivered everywhere, or beyond max_events)
    oldest_seq: int
    age_cutoff: float | None  #: also delete frames created before this (None: not checked this time)
    #: the newest sequence number handed out, persisted even when no row is written, so numbering never
    #: restarts below a saved cursor (0: nothing new)
    last_seq: int = 0
    #: move the readable frames to a fresh table first (outbox_events has a damaged page)
    rebuild: bool = False
    #: the newest sequence number on disk when the batch was taken (the end of a damaged range at the end)
    on_disk_through: int = 0
    #: filled by the writer when it moved the frames: (the damaged table's new name, [(first, last) lost seqs])
    moved: list[tuple[str, list[tuple[int, int]]]] = attrs.field(factory=list)
    #: cursors to delete (:meth:`Outbox.forget`), before ``cursors`` are written
    forgotten: list[str] = attrs.field(factory=list)


def _disk_bounds(db: sqlite3.Connection) -> tuple[int | None, int | None, list[salvage.Gap]]:
    """The oldest and newest sequence numbers of ``outbox_events`` (None: no frame, or for the newest: its page is
    damaged), and the gap before the oldest readable frame when the first pages are damaged. Two statements: one
    with both MIN and MAX would scan the table, and meet any damaged page."""
    gaps: list[salvage.Gap] = []
    try:
        oldest = db.execute("SELECT MIN(seq) FROM outbox_events").fetchone()[0]
    except sqlite3.Error as exc:
        if not salvage.is_damage(exc):
            raise
        # frames every destination had may be long gone: the lost ones start after the lowest cursor
        row = db.execute("SELECT MIN(seq) FROM outbox_cursors").fetchone()
        start = (row[0] or 0) + 1
        rows, gaps = salvage.read_some(db, "outbox_events", _SEQ_KEY, "", start=(start,), limit=1)
        oldest = gaps[0].first[0] if gaps else int(rows[0][0]) if rows else None  # type: ignore[call-overload]
    try:
        newest = db.execute("SELECT MAX(seq) FROM outbox_events").fetchone()[0]
    except sqlite3.Error as exc:
        if not salvage.is_damage(exc):
            raise
        newest = None  # the last page: outbox_state's last_seq is at least as new
    return oldest, newest, gaps


def _move_readable(db: sqlite3.Connection, path: str, batch: WriteBatch) -> None:
    """Inside ``batch``'s transaction: set the damaged ``outbox_events`` aside and copy its readable frames from
    the batch's oldest on into a fresh one (:func:`relay.storage.salvage.move_readable`); the lost ranges go
    into ``batch.moved`` for the owner's thread to report."""
    reader = salvage.connect_reader(path)
    try:
        damaged, _, gaps = salvage.move_readable(
            db,
            reader,
            "outbox_events",
            _EVENTS_TABLE,
            key=_SEQ_KEY,
            columns=("seq", "created", "frame"),
            start=(batch.oldest_seq,),
        )
    finally:
        reader.close()
    lost = [(gap.first[0], gap.resume[0] - 1 if gap.resume is not None else batch.on_disk_through) for gap in gaps]
    batch.moved.append((damaged, lost))


def _write_statements(db: sqlite3.Connection, batch: WriteBatch, *, cached: bool = False) -> int:
    """The statements of ``batch``'s transaction; returns the cut (frames up to it are deleted). ``cached``: ``db``
    keeps prepared statements (see below)."""
    if batch.rows:
        sqlite.write_chunks(
            db, batch.rows, chunk_rows=CHUNK_ROWS, row_sql=_INSERT_ROWS, chunk_sql=_INSERT_CHUNK, bulk=_frames_chunk
        )
        if cached and len(batch.rows) > 1 and sqlite.BULK_SUPPORTED:
            # on a connection that caches statements (the flush's, see relay.storage.flush) the chunk statement
            # would keep its last ~1 MB of bound frames until the next batch: bind it again to nothing
            db.execute(_INSERT_CHUNK, ("[]", b""))
    last_seq = max(batch.last_seq, batch.rows[-1][0] if batch.rows else 0)
    if last_seq:
        db.execute(
            "INSERT INTO outbox_state (key, value) VALUES ('last_seq', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
            (last_seq,),
        )
    if batch.forgotten:
        db.executemany("DELETE FROM outbox_cursors WHERE destination = ?", [(name,) for name in batch.forgotten])
    if batch.cursors:
        db.executemany(
            "INSERT INTO outbox_cursors (destination, seq) VALUES (?, ?) "
            "ON CONFLICT(destination) DO UPDATE SET seq = max(seq, excluded.seq)",
            batch.cursors,
        )
    cut = batch.delete_through
    if batch.age_cutoff is not None:
        # Frames are appended in time order, so everything before the oldest frame young enough is
        # too old: the scan reads the expired frames plus one instead of every retained frame (a
        # full scan of a 100,000-frame backlog held the write lock for 30-50 ms each second). After
        # the wall clock steps back, older frames wait behind younger ones until those expire.
        row = db.execute(
            "SELECT seq FROM outbox_events WHERE seq >= ? AND created >= ? ORDER BY seq LIMIT 1",
            (batch.oldest_seq, batch.age_cutoff),
        ).fetchone()
        if row is None:
            row = db.execute("SELECT MAX(seq) FROM outbox_events").fetchone()
            expired = row[0] if row and row[0] is not None else None
        else:
            expired = int(row[0]) - 1
        if expired is not None:
            cut = max(cut, int(expired))
    if cut >= batch.oldest_seq:
        db.execute("DELETE FROM outbox_events WHERE seq <= ?", (cut,))
    return cut


class Outbox:
    """Durable, bounded, append-only frame log with per-destination cursors (synchronous core)."""

    def __init__(
        self,
        path: str,
        config: OutboxConfig,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = sqlite.BUSY_TIMEOUT,
    ) -> None:
        """Open (creating if needed) the outbox tables in the SQLite file ``path``; ``busy_timeout``: seconds to
        wait for a write lock held by another process before failing."""
        self._config = config
        self._clock = clock
        self._path = path
        try:
            self._db = sqlite.connect(path, cache_kib=sqlite.OUTBOX_READER_CACHE_KIB, busy_timeout=busy_timeout)
            # Every transaction runs on a second connection, from a worker thread (write_batch) or this one
            # (flush, the back-pressure write): write_lock makes those uses take turns. No statement cache on
            # it: a cached statement keeps its last bound values, and a chunk binds ~1 MB of frames, which
            # stayed allocated between batches (measured 0.5-0.65 MB per connection). Preparing the few
            # statements of a batch again costs microseconds.
            self._writer_db = sqlite.connect(
                path,
                cache_kib=sqlite.OUTBOX_WRITER_CACHE_KIB,
                busy_timeout=busy_timeout,
                any_thread=True,
                cached_statements=0,
            )
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM outbox_state WHERE key = 'last_seq'").fetchone()
            stored_last = row[0] if row else 0
            oldest, newest, gaps = _disk_bounds(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the outbox in {path!r}: {exc}; check the path and permissions") from None
        self._last_seq: int = max(stored_last, newest or 0)
        #: the newest sequence number known to be on disk (as a row or as outbox_state's last_seq)
        self._saved_seq: int = self._last_seq
        self._oldest_seq: int = oldest if oldest is not None else self._last_seq + 1
        self._pending: list[tuple[int, float, str]] = []
        self._tail: collections.deque[tuple[int, str]] = collections.deque(maxlen=TAIL_CAPACITY)
        self._cursors: dict[str, int] = {}
        self._dirty_cursors: set[str] = set()
        self._forgotten: set[str] = set()  #: cursors to delete with the next batch
        self._listeners: list[Callable[[int], None]] = []
        self._dropped = 0
        self._unlogged_drops = 0
        self._last_drop_log = float("-inf")
        self._last_age_check = float("-inf")
        self._in_flight: WriteBatch | None = None
        self._closed = False
        self._write_now_at = MAX_PENDING_WRITES  # append writes on its own thread at this many buffered frames
        #: sequence ranges known unreadable on disk (reported; reads go past them)
        self._unreadable = salvage.Ranges()
        self._unreadable_count = 0
        #: outbox_events has a damaged page: the next write moves the readable frames to a fresh table
        self._rebuild = newest is None and oldest is not None
        for gap in gaps:  # the oldest frames are unreadable
            self._note_unreadable(gap.first[0], gap.resume[0] - 1 if gap.resume is not None else self._saved_seq)
        #: held during every transaction on the SQLite file; other writers of the file should take it too
        self.write_lock = threading.Lock()
        #: what the transactions did (counted where they end, see :meth:`_write_locked`)
        self.writes = sqlite.WriteCounts()

    # ----------------------------------------------------------------- writing

    def append(self, frame: str) -> int:
        """Add one encoded event frame; returns its sequence number. Never waits on disk per event."""
        if self._closed:
            raise StoreError("the outbox is closed; events can no longer be queued")
        self._last_seq += 1
        seq = self._last_seq
        self._pending.append((seq, self._clock(), frame))
        self._tail.append((seq, frame))
        if len(self._pending) >= self._write_now_at:
            self._forget_delivered()
            if len(self._pending) >= self._write_now_at:
                self._write_pending_now()
        for listener in self._listeners:
            listener(seq)
        return seq

    def _write_pending_now(self) -> None:
        """Write the buffered frames on this thread: the writer fell behind (see :data:`MAX_PENDING_WRITES`)."""
        try:
            if self._in_flight is None:
                self.flush()
            else:
                # frames only (cursors and bounds wait for the next batch); write_lock makes this wait for the
                # worker's transaction; rows carry their seq, so writing them after that batch keeps the order
                rows, self._pending = self._pending, []
                nothing_to_delete = self._oldest_seq - 1
                batch = WriteBatch(
                    rows=rows,
                    cursors=[],
                    delete_through=nothing_to_delete,
                    oldest_seq=self._oldest_seq,
                    age_cutoff=None,
                )
                try:
                    self._write(batch)
                except StoreError:
                    self._pending = rows + self._pending
                    raise
        except StoreError as exc:
            log.error("outbox: %s; keeping %d frames in memory and retrying", exc, len(self._pending))
            self._shed_pending_overflow()
            self._write_now_at = len(self._pending) + MAX_PENDING_WRITES
        else:
            self._write_now_at = MAX_PENDING_WRITES

    def flush(self) -> None:
        """Write buffered frames and cursors in one transaction and apply the bounds, on this thread.

        The periodic flusher uses :meth:`take_batch` / :meth:`write_batch` / :meth:`finish_batch` instead, so
        the transaction runs in a worker thread; this synchronous form is for close and for emergencies.
        """
        if self._in_flight is not None:
            return  # a worker thread is writing; its batch finishes on the owner's thread
        batch = self.take_batch()
        if batch is None:
            return
        cut: int | None = None
        try:
            cut = self._write(batch)
        finally:
            self.finish_batch(batch, cut)

    def take_batch(self) -> WriteBatch | None:
        """Take everything to write (frames, cursors, the cut the bounds ask for); ``None`` if nothing to do.

        At most one batch is in flight; hand it to :meth:`write_batch` and then to :meth:`finish_batch`.
        """
        if self._in_flight is not None or self._closed:
            return None
        now = self._clock()
        delivered_to_all = self._delivered_to_all()
        size_cut = self._last_seq - self._config.max_events
        age_cutoff: float | None = None
        if now - self._last_age_check >= AGE_CHECK_INTERVAL:
            self._last_age_check = now
            age_cutoff = now - self._config.max_age_seconds
        delete_through = max(size_cut, delivered_to_all)
        unsaved_seq = self._last_seq > self._saved_seq
        if (
            not unsaved_seq
            and not self._dirty_cursors
            and not self._forgotten
            and age_cutoff is None
            and delete_through < self._oldest_seq
            and not self._rebuild
        ):
            self._log_drops(now)
            return None
        self._forget_delivered(delivered_to_all)
        batch = WriteBatch(
            rows=self._pending,
            cursors=[(dest, self._cursors[dest]) for dest in self._dirty_cursors],
            delete_through=delete_through,
            oldest_seq=self._oldest_seq,
            age_cutoff=age_cutoff,
            last_seq=self._last_seq if unsaved_seq else 0,
            rebuild=self._rebuild,
            on_disk_through=self._saved_seq,
            forgotten=sorted(self._forgotten),
        )
        self._pending = []
        self._dirty_cursors.clear()
        self._forgotten.clear()
        self._in_flight = batch
        return batch

    def write_batch(self, batch: WriteBatch) -> int:
        """Run ``batch``'s transaction on the writer connection (safe in a worker thread); returns the cut.

        Touches nothing but ``batch`` and the writer connection, so the owner's thread may keep appending and
        reading meanwhile. Raises :class:`StoreError`.
        """
        return self._write(batch)

    def finish_batch(self, batch: WriteBatch, cut: int | None) -> None:
        """Back on the owner's thread: apply the result of :meth:`write_batch` (``cut`` None = it failed)."""
        if self._in_flight is batch:
            self._in_flight = None
        if cut is None:  # put everything back; INSERT OR IGNORE makes a repeated write harmless
            self._pending = batch.rows + self._pending
            self._dirty_cursors.update(dest for dest, _ in batch.cursors)
            self._forgotten.update(name for name in batch.forgotten if name not in self._cursors)
            return
        for damaged, lost in batch.moved:
            self._rebuild = False
            for first, last in lost:
                self._note_unreadable(first, last)
            log.warning(
                "outbox: the readable frames now live in a fresh table; the damaged one is kept in %s as %s "
                "(`discord-mirai-relay store repair`, with the bridge stopped, reclaims its space)",
                self._path,
                damaged,
            )
        self._saved_seq = max(self._saved_seq, batch.last_seq, batch.rows[-1][0] if batch.rows else 0)
        now = self._clock()
        if cut >= self._oldest_seq:
            dropped = max(0, cut - max(self._delivered_to_all(), self._oldest_seq - 1))
            self._oldest_seq = cut + 1
            while self._tail and self._tail[0][0] <= cut:
                self._tail.popleft()
            if dropped:
                self._dropped += dropped
                self._unlogged_drops += dropped
        self._log_drops(now)

    def write_in(self, db: sqlite3.Connection, batch: WriteBatch, *, rebuild: bool, cached: bool = False) -> int:
        """``batch``'s statements inside the caller's transaction on ``db`` (a writer connection to this file, see
        :mod:`relay.storage.flush`; ``cached``: it caches prepared statements); ``rebuild`` first moves the
        readable frames out of a damaged table (as ``batch.rebuild`` asks, or after an attempt failed on a damaged
        page). Returns the cut for :meth:`finish_batch`; raises :class:`sqlite3.Error`."""
        batch.moved.clear()  # a rolled-back attempt moved nothing
        if rebuild:
            _move_readable(db, self._path, batch)
        return _write_statements(db, batch, cached=cached)

    def _write(self, batch: WriteBatch) -> int:
        with self.write_lock:
            return self._write_locked(self._writer_db, batch)

    def _write_locked(self, db: sqlite3.Connection, batch: WriteBatch) -> int:
        rebuild = batch.rebuild
        while True:
            try:
                with sqlite.Transaction(db):
                    cut = self.write_in(db, batch, rebuild=rebuild)
            except sqlite3.Error as exc:
                if not rebuild and salvage.is_damage(exc):
                    rebuild = True  # a damaged page spoils the whole transaction: move the frames, then retry
                    continue
                error = StoreError(f"writing {len(batch.rows)} outbox frames to {self._path!r} failed: {exc}")
                self.writes.failed(str(error), self._clock())
                raise error from None
            self.writes.succeeded(len(batch.rows), self._clock())
            return cut

    def _delivered_to_all(self) -> int:
        return min(self._cursors.values()) if self._cursors else self._oldest_seq - 1

    def _forget_delivered(self, delivered_to_all: int | None = None) -> None:
        """Drop the buffered frames every destination already has; only their sequence number is saved.

        A connected framework takes each frame within a millisecond of its append, the flush comes every
        :data:`FLUSH_INTERVAL`: durability is for frames still to deliver. Writing the others would only delete
        them again in the same transaction (that was most of the outbox's SQLite work while streaming).
        Pending rows are in seq order.
        """
        pending = self._pending
        if delivered_to_all is None:
            delivered_to_all = self._delivered_to_all()
        if pending and pending[0][0] <= delivered_to_all:
            del pending[: bisect.bisect_right(pending, delivered_to_all, key=_row_seq)]

    def close(self) -> None:
        """Flush and close (idempotent). Call it when no :meth:`write_batch` is running."""
        if self._closed:
            return
        try:
            self._in_flight = None
            self.flush()
        finally:
            self._closed = True
            self._db.close()
            self._writer_db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- reading and cursors

    def register(self, destination: str) -> int:
        """Declare a destination (from the config) and return its cursor.

        A destination never seen before starts at the current end: it receives events appended from now on.
        Only registered destinations hold back garbage collection.
        """
        if destination not in self._cursors and destination in self._forgotten:
            # forgotten but not yet deleted on disk: it starts afresh (the batch deletes, then writes it anew)
            self._cursors[destination] = self._last_seq
            self._dirty_cursors.add(destination)
        elif destination not in self._cursors:
            try:
                row = self._db.execute(
                    "SELECT seq FROM outbox_cursors WHERE destination = ?", (destination,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"reading the outbox cursor of {destination!r} failed: {exc}") from None
            if row is None:
                self._cursors[destination] = self._last_seq
                self._dirty_cursors.add(destination)
            else:
                self._cursors[destination] = min(row[0], self._last_seq)
        return self._cursors[destination]

    def forget(self, destination: str) -> None:
        """Drop a cursor, in memory and (with the next flush) on disk: it no longer holds back garbage collection,
        and registering the name again starts at the current end. For cursors made on the fly (the frameworks
        that connect to the bridge), which would otherwise pin the outbox after their framework is gone."""
        self._cursors.pop(destination, None)
        self._dirty_cursors.discard(destination)
        self._forgotten.add(destination)

    def saved_cursors(self, prefix: str) -> dict[str, int]:
        """Every cursor whose name starts with ``prefix``, saved or registered, with its sequence."""
        try:
            rows = self._db.execute(
                "SELECT destination, seq FROM outbox_cursors WHERE substr(destination, 1, length(?1)) = ?1", (prefix,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the outbox cursors from {self._path!r} failed: {exc}") from None
        found = {str(name): int(seq) for name, seq in rows if str(name) not in self._forgotten}
        found.update((name, seq) for name, seq in self._cursors.items() if name.startswith(prefix))
        return found

    def cursor(self, destination: str) -> int:
        """The last sequence delivered to ``destination`` (it must be registered)."""
        return self._cursors[destination]

    def ack(self, destination: str, seq: int) -> None:
        """``destination`` has been delivered every frame up to ``seq`` (persisted with the next flush)."""
        if seq > self._cursors.get(destination, 0):
            self._cursors[destination] = seq
            self._dirty_cursors.add(destination)

    def read_after(self, seq: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` retained frames with sequence > ``seq``, in order.

        If frames after ``seq`` were dropped by the bounds, reading resumes at the oldest retained frame; frames a
        damaged page of the file lost are skipped (and reported once).
        """
        start = self._unreadable.past(max(seq + 1, self._oldest_seq))
        if start > self._last_seq or limit <= 0:
            return []
        tail = self._tail
        if tail and tail[0][0] <= start:
            offset = start - tail[0][0]
            # index, don't islice: a live reader is near the right end, and deque indexing starts from the
            # nearer end while islice walks from the left (up to TAIL_CAPACITY steps per call)
            return [tail[i] for i in range(offset, min(len(tail), offset + limit))]
        unwritten: list[list[tuple[int, float, str]]] = [self._in_flight.rows] if self._in_flight else []
        for unwritten_rows in [*unwritten, self._pending]:
            if unwritten_rows and unwritten_rows[0][0] <= start <= unwritten_rows[-1][0]:
                # only when unwritten frames outgrew the tail (a long disk outage)
                offset = start - unwritten_rows[0][0]
                return [(s, frame) for s, _, frame in unwritten_rows[offset : offset + limit]]
        try:
            rows = self._db.execute(
                "SELECT seq, frame FROM outbox_events WHERE seq >= ? ORDER BY seq LIMIT ?", (start, limit)
            ).fetchall()
        except sqlite3.Error as exc:
            if not salvage.is_damage(exc):
                raise StoreError(f"reading the outbox from {self._path!r} failed: {exc}") from None
            rows, gaps = salvage.read_some(self._db, "outbox_events", _SEQ_KEY, "frame", start=(start,), limit=limit)
            for gap in gaps:
                self._note_unreadable(gap.first[0], gap.resume[0] - 1 if gap.resume is not None else self._saved_seq)
            if not rows and self._unreadable.past(start) > start:
                return self.read_after(self._unreadable.past(start) - 1, limit)  # the rest is in memory
        return [(int(s), str(f)) for s, f in rows]

    def _note_unreadable(self, first: int, last: int) -> None:
        """Frames ``first``..``last`` cannot be read from the file: reads go past them, the next write moves the
        readable frames to a fresh table, and the undelivered ones among them are reported once (ERROR)."""
        delivered = self._delivered_to_all()
        for lo, hi in self._unreadable.add(max(first, self._oldest_seq), last):
            self._rebuild = True
            undelivered = max(0, hi - max(lo, delivered + 1) + 1)
            self._unreadable_count += undelivered
            log.error(
                "outbox: %d undelivered frames (seq %d–%d) cannot be read: %s is damaged there; they are skipped and "
                "delivery goes on after them (live events are not affected). `discord-mirai-relay store check` "
                "with the bridge stopped tells more",
                undelivered,
                lo,
                hi,
                self._path,
            )

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def path(self) -> str:
        return self._path

    @property
    def writer(self) -> sqlite3.Connection:
        """The connection transactions run on (hold :attr:`write_lock` while using it; see write_in)."""
        return self._writer_db

    @property
    def waiting_writes(self) -> int:
        """Frames some destination still lacks that no writer has taken yet: what the next batch will write.

        Cheap (the producer's back-pressure checks it). Frames every destination already has are not counted:
        they are never written (see :meth:`_forget_delivered`), so while the frameworks keep up this stays near
        zero however fast events arrive.
        """
        pending = self._pending
        if not pending:
            return 0
        delivered_to_all = self._delivered_to_all()
        if pending[0][0] > delivered_to_all:
            return len(pending)
        if pending[-1][0] <= delivered_to_all:
            return 0
        return len(pending) - bisect.bisect_right(pending, delivered_to_all, key=_row_seq)

    def add_append_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(seq)`` after every append (synchronously; it must not block)."""
        self._listeners.append(listener)

    def remove_append_listener(self, listener: Callable[[int], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            last_seq=self._last_seq,
            oldest_seq=self._oldest_seq,
            retained=self._last_seq - self._oldest_seq + 1,
            pending_writes=self.waiting_writes + (len(self._in_flight.rows) if self._in_flight else 0),
            dropped=self._dropped,
            cursors=dict(self._cursors),
            writes=attrs.evolve(self.writes),
            unreadable=self._unreadable_count,
        )

    def undelivered(self, destination: str) -> tuple[int, float | None]:
        """How many retained frames ``destination`` (registered) still lacks, and the wall-clock time the oldest of
        them was appended (None when it lacks none, or that time cannot be read).

        For the metrics, at scrape time: a frame a destination lacks is never forgotten before it is written, so
        its time is in the frames waiting for a writer or, once written, one indexed read of the file away.
        """
        first = max(self._cursors[destination] + 1, self._oldest_seq)
        if first > self._last_seq:
            return 0, None
        count = self._last_seq - first + 1
        unwritten = [self._in_flight.rows] if self._in_flight else []
        for rows in [*unwritten, self._pending]:
            if rows and rows[0][0] <= first <= rows[-1][0]:
                return count, rows[bisect.bisect_left(rows, first, key=_row_seq)][1]
        try:
            row = self._db.execute(
                "SELECT created FROM outbox_events WHERE seq >= ? ORDER BY seq LIMIT 1", (first,)
            ).fetchone()
        except sqlite3.Error:
            return count, None
        return count, None if row is None else float(row[0])

    # ----------------------------------------------------------------- bounds

    def _log_drops(self, now: float) -> None:
        if self._unlogged_drops and now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.warning(
                "outbox: dropped %d undelivered events (%d in total) to stay within max_events=%d / "
                "max_age_seconds=%d; a destination was down or too slow — raise [outbox] bounds to keep more",
                self._unlogged_drops,
                self._dropped,
                self._config.max_events,
                self._config.max_age_seconds,
            )
            self._unlogged_drops = 0
            self._last_drop_log = now

    def _shed_pending_overflow(self) -> None:
        excess = len(self._pending) - MAX_PENDING_WRITES_HARD
        if excess > 0:
            del self._pending[:excess]
            self._oldest_seq = max(self._oldest_seq, self._pending[0][0])
            self._dropped += excess
            self._unlogged_drops += excess
            self._log_drops(self._clock())
