"""The message-id store (docs/architecture.md §6): per-conversation Int32 ids ⇄ Discord messages, in SQLite.

mirai-api-http message ids are Int32 and unique only within one conversation (docs/mirai-api-http.md §2), so
the bridge allocates them itself and remembers what they point at, across restarts.

**Allocation.** Each conversation has a counter; ids are handed out from the store's ``first_id`` (see
:meth:`MessageStore.open`) on, one by one, up to ``INT32_MAX`` and then wrap to 1. 0 and negatives are never
issued (mirai uses -1 for "no id", and 0 is our "unknown"). The counter is persisted with each flushed batch, so
ids are never reissued after a restart. After a wrap an id is reused and the old mapping it pointed at is
overwritten; with any sane retention that mapping was pruned long before.

**A store that replaces a lost one** (deleted, or lost with a disk) must not hand out its conversations' ids
again: frameworks may still hold them. The composition root therefore opens the store with ``first_id`` from
:func:`first_id_from_clock`: a conversation without a counter starts where the clock stands, at
:data:`SEED_IDS_PER_SECOND` ids a second. Every id a lost store issued was issued before the new store was opened,
and in each conversation it issued ids from its own seed up, one per message; so the new ids stay clear of the
old ones unless one conversation averaged more than 10 messages a second over the old store's whole life, the
wall clock went back, or the stores were opened a multiple of :data:`SEED_PERIOD_DAYS` apart (the seed wraps
around the Int32 range). Stores written before the seed existed started at 1: the seed never goes below
:data:`SEED_LOW`, so their first million ids per conversation are clear.

**Speed.** :meth:`MessageStore.record` is the per-event path: a dict lookup, a counter increment and an
append to the pending batch — no SQLite, no serialization. Rows are written by :meth:`MessageStore.flush`
in one transaction (call it periodically and at shutdown; it also runs by itself once ``batch_size`` rows
are pending). The memory cache of recent messages keeps the whole message only until it is flushed; after
that it keeps just the ids the event path needs (a replayed event keeps its id, a reply finds the id of
the message it quotes), and a lookup of the message's content reads its row from SQLite (quote, recall and
getMessage are rare next to incoming messages). On open, the cache is warmed with the most recent rows so
a replayed gateway event after a restart still finds its old id without touching disk on the hot path.

**Threads.** The store is synchronous and thread-safe. A trio app passes ``on_batch_full`` to
:meth:`MessageStore.open` so a full batch wakes its flusher instead of being written inline; the flusher
takes the batch on the event loop's thread (:meth:`MessageStore.take_batch`, which also encodes the rows:
that is the flush's Python work) and writes it in a worker thread (:meth:`MessageStore.write_batch`, SQLite
only, which runs without the GIL). :meth:`prune` and :meth:`history` also belong in a worker thread
(``trio.to_thread.run_sync``). While a batch is written, :meth:`record` keeps going (it takes only the memory
lock), and lookups see the batch's rows. Lookups that read the file use a second, read-only connection (for a
file path; ``":memory:"`` has one), so they never wait behind a flush that is waiting for another process's
write lock.

**Building messages once.** :meth:`MessageStore.record_new` takes a message's fields rather than a message and
builds it once, with its id; the Discord translator uses it as its message factory for live messages.

**Conversation keys.** Rows are keyed by the conversation *id* alone: Discord snowflakes never collide
between channels and users, and mirai commands such as ``recall {target, messageId}`` do not say whether
``target`` is a group or a friend. The stored row knows the real kind.

Tables are prefixed ``messages_`` (the outbox shares the SQLite file with ``outbox_`` tables). A row's format
(the ids, and a JSON payload with the rest) is :mod:`relay.storage.rows`.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final

import attrs
import cattrs

from relay.envelope import (
    INT32_MAX,
    ConversationKind,
    ConversationRef,
    Group,
    Member,
    Message,
    Quote,
    Segment,
    User,
)
from relay.errors import StoreError
from relay.storage import sqlite
from relay.storage.rows import (
    COLUMN_COUNT,
    COLUMNS,
    INT64_MAX,
    INT64_MIN,
    Content,
    Flushed,
    StoredMessage,
    encode_batch,
    flushed_entry,
    from_row,
    stored,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CACHE_SIZE", "MessageStore", "StoreBatch", "first_id_from_clock"]

#: rows pending before record() flushes by itself (one transaction each; keeps a burst from piling up RAM)
DEFAULT_BATCH_SIZE = 1024
#: recent messages kept in memory so the event path never reads SQLite. A pending entry is the recorded
#: message itself (alive anyway while it is relayed); a flushed one is five ints plus its two dict slots,
#: ~0.36 KB (10,000 entries measured 3.6 MB traced, down from 11-13 MB when each kept its ~700-byte payload).
DEFAULT_CACHE_SIZE = 10_000
#: rows loaded into the cache at open() so replays after a restart keep their ids
WARM_ROWS = 10_000
#: seconds a flush waits for a batch in flight before it gives up with StoreError (a write that never finishes
#: must not hang the caller, e.g. the final flush at shutdown; a slow disk finishes well within this)
BATCH_WAIT_TIMEOUT = 60.0
_SECONDS_PER_DAY = 86_400

# The clock seed of a conversation's first id (see the module docstring and first_id_from_clock).
#: the seed counts from Discord's epoch, 2015-01-01 (any fixed instant would do)
SEED_EPOCH: Final = 1_420_070_400
#: how fast the seed moves: faster than any conversation's lifetime average, slow enough to wrap rarely
SEED_IDS_PER_SECOND: Final = 10
#: the lowest seed: above the ids a store that started at 1 (before seeds) gave most conversations
SEED_LOW: Final = 1 << 20
#: ids a seeded conversation can issue before its counter wraps to 1 (~4 months at 10 messages a second)
SEED_HEADROOM: Final = 1 << 27
_SEED_SPAN: Final = INT32_MAX - SEED_HEADROOM - SEED_LOW
#: days after which the seed comes round again
SEED_PERIOD_DAYS: Final = _SEED_SPAN // SEED_IDS_PER_SECOND // _SECONDS_PER_DAY


def first_id_from_clock(now: float) -> int:
    """The first id of a conversation the store has no counter for, from the wall clock ``now`` (Unix seconds):
    in [:data:`SEED_LOW`, ``INT32_MAX - SEED_HEADROOM``), advancing :data:`SEED_IDS_PER_SECOND` a second and
    wrapping every :data:`SEED_PERIOD_DAYS` days."""
    return SEED_LOW + int((now - SEED_EPOCH) * SEED_IDS_PER_SECOND) % _SEED_SPAN


# A rowid table, its rows appended in arrival order, with (conversation_id, local_id) in a unique index. It was
# WITHOUT ROWID, keyed by those two: a batch's ~1 KB rows then went to as many places of the table as it had
# conversations (SQLite advises WITHOUT ROWID only for rows under 1/20 of a page). SQLite's own work per row
# (20,000-row batches of 500, ~1 KB payloads): 27 µs with 1 conversation, 95 µs with 1,000 (issue 18: the
# per-event cost that grew with the number of guilds); as a rowid table 8.6 and 17.6 µs.
#
# An index keyed by conversation still takes each batch's entries to as many leaf pages as the batch has
# conversations, and every page it touches is written to the WAL at the commit (and again at the checkpoint).
# The unique index is needed (lookups by id); a second one, (conversation_id, time), served only the back-fill's
# "newest message of a channel". That answer now has its own small table, messages_newest (one row a channel,
# upserted once a batch from the batch's rows, pruned with them), and the index is gone. The writer thread's
# SQLite time per relayed message over 100,000 events (scripts/measure_event_path.py --zlib --events 100000, the
# two layouts interleaved, two runs each): 1,000 guilds 13.6-14.0 → 8.0-8.7 µs; 1 guild 2.9-3.2 → 2.8-3.4 µs.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages_map (
    conversation_id INTEGER NOT NULL,
    local_id        INTEGER NOT NULL,
    conversation_kind TEXT NOT NULL,
    channel_id      INTEGER NOT NULL,
    platform_id     INTEGER NOT NULL,
    author_id       INTEGER NOT NULL,
    time            INTEGER NOT NULL,
    payload         TEXT NOT NULL,
    UNIQUE (conversation_id, local_id)
);
CREATE INDEX IF NOT EXISTS messages_map_platform ON messages_map (platform_id);
CREATE TABLE IF NOT EXISTS messages_counter (
    conversation_id INTEGER PRIMARY KEY,
    last_id         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages_newest (
    channel_id  INTEGER PRIMARY KEY,
    platform_id INTEGER NOT NULL,
    time        INTEGER NOT NULL
);
"""

#: a cache entry: the recorded content until it is flushed, then its ids (see relay.storage.rows.Flushed)
_Entry = Message | StoredMessage | Flushed


def _entry_platform(entry: _Entry) -> int:
    return entry[3] if type(entry) is tuple else entry.platform_id  # type: ignore[union-attr]


def _entry_ids(entry: _Entry) -> tuple[int, int]:
    """(local id, channel id) without rebuilding the message."""
    return (entry[1], entry[2]) if type(entry) is tuple else (entry.local_id, entry.channel_id)  # type: ignore[union-attr]


def _entry_time(entry: _Entry) -> int:
    return entry[4] if type(entry) is tuple else entry.time  # type: ignore[union-attr]


_INSERT_MAP = f"INSERT OR REPLACE INTO messages_map ({COLUMNS})"
_UPSERT_COUNTERS = (
    "INSERT INTO messages_counter (conversation_id, last_id) VALUES (?, ?) "
    "ON CONFLICT(conversation_id) DO UPDATE SET last_id = excluded.last_id"
)
# "WHERE true" resolves the parsing ambiguity of an upsert on a SELECT (SQLite docs, "UPSERT" §2.2)
_UPSERT_COUNTERS_BULK = (
    "INSERT INTO messages_counter (conversation_id, last_id) SELECT value ->> 0, value ->> 1 FROM json_each(?) "
    "WHERE true ON CONFLICT(conversation_id) DO UPDATE SET last_id = excluded.last_id"
)
# A batch's rows are the ones after the table's largest rowid before the batch (a rowid table appends; a REPLACE
# deletes the old row and appends the new one), so this reads only them. For the max() aggregate SQLite takes the
# bare column ``time`` from the row whose platform_id is the largest (SQLite docs, lang_select.html, "Bare columns in
# an aggregate query").
_UPSERT_NEWEST_OF = (
    "INSERT INTO messages_newest (channel_id, platform_id, time) "
    "SELECT channel_id, MAX(platform_id), time FROM messages_map WHERE {rows} GROUP BY channel_id "
    "ON CONFLICT(channel_id) DO UPDATE SET platform_id = excluded.platform_id, time = excluded.time "
    "WHERE excluded.platform_id > messages_newest.platform_id"
)
_UPSERT_NEWEST = _UPSERT_NEWEST_OF.format(rows="rowid > ?")
#: every channel's newest message, from the whole map ("WHERE true": the upsert-on-SELECT ambiguity, see above)
_UPSERT_NEWEST_ALL = _UPSERT_NEWEST_OF.format(rows="true")
#: rows per statement: bounds one chunk's memory (~1.5 KB a row) while keeping statements few. A power of two,
#: so every batch is written with statements of a few fixed sizes (see relay.storage.sqlite.fixed_chunks)
CHUNK_ROWS = 512
#: rows of the largest map INSERT: CHUNK_ROWS, or the power of two that fits an old SQLite's 999 variables
_MAP_CHUNK_MAX = sqlite.values_chunk_max(CHUNK_ROWS, COLUMN_COUNT)


def _migrate_without_rowid(db: sqlite3.Connection) -> bool:
    """A store written before messages_map became a rowid table (see _SCHEMA) is copied into the new layout once,
    in one transaction; returns whether it was."""
    found = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages_map'").fetchone()
    if found is None or "WITHOUT ROWID" not in found[0].upper():
        return False
    log.info("message store: moving the message map to its new layout (once)")
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE messages_map RENAME TO messages_map_old")
        db.execute("DROP INDEX IF EXISTS messages_map_platform")
        db.execute("DROP INDEX IF EXISTS messages_map_time")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"INSERT INTO messages_map ({COLUMNS}) SELECT {COLUMNS} FROM messages_map_old ORDER BY time")
        restore_newest(db)
        db.execute("DROP TABLE messages_map_old")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return True


def _schema_names(db: sqlite3.Connection) -> set[str]:
    return {str(row[0]) for row in db.execute("SELECT name FROM sqlite_master")}


def _index_newest(db: sqlite3.Connection, names_before: set[str]) -> None:
    """At open, after the schema is in place: for a file an earlier version wrote (or wrote to since, which put its
    (conversation_id, time) index back), or one without messages_newest, drop that index and fill messages_newest
    from every row (see _SCHEMA). One transaction and a full scan of the map, once."""
    if "messages_map_time" not in names_before and "messages_newest" in names_before:
        return
    if "messages_map_time" in names_before:
        log.info("message store: indexing each channel's newest message (once, after an upgrade)")
    with sqlite.Transaction(db):
        db.execute("DROP INDEX IF EXISTS messages_map_time")
        db.execute("DELETE FROM messages_newest")
        restore_newest(db)


def _write_rows(db: sqlite3.Connection, batch: StoreBatch, counters: list[tuple[int, int]]) -> None:
    """A batch's map rows (multi-row ``VALUES`` statements of fixed sizes), its channels' newest messages, and the
    counters (``json_each`` chunks)."""
    if batch.params:
        before = db.execute("SELECT max(rowid) FROM messages_map").fetchone()[0]
        sqlite.insert_values(db, _INSERT_MAP, COLUMN_COUNT, batch.params, _MAP_CHUNK_MAX)
        db.execute(_UPSERT_NEWEST, (before if before is not None else 0,))
    sqlite.write_chunks(
        db,
        counters,
        chunk_rows=CHUNK_ROWS,
        row_sql=_UPSERT_COUNTERS,
        chunk_sql=_UPSERT_COUNTERS_BULK,
        bulk=sqlite.json_array,
    )


def restore_newest(db: sqlite3.Connection) -> int:
    """Bring every channel's entry in messages_newest up to its newest recovered message, inside the caller's
    transaction (``store repair``: an entry lost to a damaged page); returns how many entries were written."""
    return db.execute(_UPSERT_NEWEST_ALL).rowcount


def restore_missing_counters(db: sqlite3.Connection) -> int:
    """Give every conversation that has rows but no counter (a counter lost to a damaged page) one at its highest
    id, inside the caller's transaction (``store repair``); returns how many were added."""
    return db.execute(
        "INSERT OR IGNORE INTO messages_counter (conversation_id, last_id) "
        "SELECT conversation_id, MAX(local_id) FROM messages_map GROUP BY conversation_id"
    ).rowcount


# --------------------------------------------------------------------------- the store


@attrs.frozen(eq=False)
class StoreBatch:
    """One transaction's worth of rows, taken and encoded on the recording thread (see
    :meth:`MessageStore.take_batch`), written by :meth:`MessageStore.write_batch`."""

    contents: list[Content]  #: the rows taken (they go back to the pending ones if the write fails)
    params: list[object]  #: eight bound values a row (see encode_batch)
    flushed: list[Flushed]  #: each written row's cache entry once it is on disk
    counter_ids: set[int]  #: conversations whose counters to persist (their values are read at write time)
    #: the rows written, when encode_batch left some out (an integer SQLite cannot hold); None: all of contents
    kept: list[Content] | None = None


class MessageStore:
    """Int32 message ids per conversation, batched into SQLite. Build with :meth:`open`.

    Two locks: ``_mem`` guards the in-memory maps and is only ever held for microseconds (the event path
    takes nothing else unless a quoted message must be looked up on disk); ``_db`` serializes use of the
    SQLite connection. Lock order is always ``_db`` → ``_mem``; code holding ``_mem`` never waits for ``_db``.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        retention_days: int,
        batch_size: int,
        cache_size: int,
        on_batch_full: Callable[[], None] | None,
        reader: sqlite3.Connection | None = None,
        first_id: int = 1,
        path: str = ":memory:",
    ) -> None:
        if not 0 < first_id <= INT32_MAX:
            raise ValueError(f"first_id must be an Int32 id (1 to {INT32_MAX}), not {first_id}")
        self._conn = db
        self._path = path
        #: a conversation without a counter starts after this (see first_id_from_clock)
        self._before_first = first_id - 1
        self._mem = threading.Lock()
        self._db = threading.RLock()
        #: lookups read through their own connection when the file allows one (WAL: a reader neither waits for
        #: nor blocks the writer), so a lookup on the event loop's thread never waits behind a flush holding
        #: ``_db``: flushed messages keep only their ids in memory, so quote/recall lookups read SQLite.
        self._reader = db if reader is None else reader
        self._read = self._db if reader is None else threading.Lock()
        self._retention_seconds = retention_days * _SECONDS_PER_DAY
        self._batch_size = max(1, batch_size)
        # pending rows are the newest cache entries, so eviction (oldest first) never drops an unflushed row
        # while fewer than cache_size/2 are pending; lookups also scan pending rows on a miss
        self._cache_size = max(2 * self._batch_size, cache_size)
        self._on_batch_full = on_batch_full
        #: (conversation id, local id) → message; insertion order = age
        self._by_local: dict[tuple[int, int], _Entry] = {}
        #: the keys of ``_by_local`` oldest first, so eviction is O(1): ``next(iter(dict))`` after popping the
        #: oldest keys scans the dict's dead slots (~3 µs a call at 10,000 entries). May hold keys already
        #: gone from the dict (forget, prune); eviction skips them.
        self._age: collections.deque[tuple[int, int]] = collections.deque()
        #: Discord snowflake → (conversation id, local id)
        self._by_platform: dict[int, tuple[int, int]] = {}
        #: conversation id → last issued id
        self._counters: dict[int, int] = {}
        self._pending: list[Content] = []
        self._dirty_counters: set[int] = set()
        #: the rows of the batch taken and not yet written (lookups scan them with the pending ones)
        self._taken: list[Content] | None = None
        #: notified when the batch in flight is written (or put back)
        self._batch_done = threading.Condition(self._mem)
        self._closed = False
        #: what the transactions of message-id rows did (counted in :meth:`_write`, possibly in a worker thread)
        self.writes = sqlite.WriteCounts()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str,
        *,
        retention_days: int = 30,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_size: int = DEFAULT_CACHE_SIZE,
        on_batch_full: Callable[[], None] | None = None,
        busy_timeout: float = sqlite.BUSY_TIMEOUT,
        first_id: int = 1,
    ) -> MessageStore:
        """Open (creating if needed) the store in the SQLite file ``path`` (``":memory:"`` for tests).

        ``first_id``: the first id of a conversation the file has no counter for. The bridge passes
        :func:`first_id_from_clock` so that a store replacing a lost one does not reissue its ids (see the module
        docstring); 1 numbers every conversation from 1.

        ``on_batch_full``: called (instead of an inline :meth:`flush`) when ``batch_size`` rows are pending,
        so an async app can wake its flusher and run :meth:`flush` in a worker thread rather than on the
        event path. It must not block and must not call back into the store. ``None`` = flush inline.
        ``busy_timeout``: seconds to wait for a write lock held by another process before failing.
        """
        try:
            db = sqlite.connect(
                path, cache_kib=sqlite.STORE_WRITER_CACHE_KIB, busy_timeout=busy_timeout, any_thread=True
            )
            names_before = _schema_names(db)
            if not _migrate_without_rowid(db):  # that migration fills messages_newest itself
                db.executescript(_SCHEMA)
                _index_newest(db, names_before)
            reader = (
                None
                if path in ("", ":memory:")
                else sqlite.connect(
                    path,
                    cache_kib=sqlite.STORE_READER_CACHE_KIB,
                    busy_timeout=busy_timeout,
                    any_thread=True,
                    read_only=True,
                )
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the message store {path!r}: {exc}; check the path and permissions") from exc
        store = cls(
            db,
            retention_days=retention_days,
            batch_size=batch_size,
            cache_size=cache_size,
            on_batch_full=on_batch_full,
            reader=reader,
            first_id=first_id,
            path=path,
        )
        try:
            store._load()
        except StoreError:
            store._close_connections()
            raise
        log.info("message store open: %s (%d conversations)", path, len(store._counters))
        return store

    def _load(self) -> None:
        try:
            counters = dict(self._conn.execute("SELECT conversation_id, last_id FROM messages_counter"))
            warm = min(WARM_ROWS, self._cache_size)
            rows = self._conn.execute(
                f"SELECT {COLUMNS} FROM (SELECT * FROM messages_map ORDER BY time DESC LIMIT ?) ORDER BY time",
                (warm,),
            ).fetchall()
            for row in rows:
                from_row(row)  # validate now: a broken file should fail at open, not at a later lookup
        except (sqlite3.Error, ValueError, cattrs.BaseValidationError) as exc:
            raise StoreError(f"the message store is unreadable: {exc}; move the file aside to start afresh") from exc
        with self._mem:
            self._counters = counters
            for row in rows:
                self._cache((row[0], row[1]), flushed_entry(row))

    def close(self) -> None:
        """Flush what is pending and close the file. Idempotent. Do not call it on the thread that took a batch
        (:meth:`take_batch`) before writing that batch."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._db:
                if not self._closed:
                    with self._mem:
                        self._closed = True
                    self._close_connections()

    def _close_connections(self) -> None:
        with self._read:
            if self._reader is not self._conn:
                self._reader.close()
        self._conn.close()

    # ------------------------------------------------------------------ writing (memory only)

    def _allocate(self, conversation_id: int) -> tuple[int, int]:
        """The next key of a conversation (call with ``_mem`` held)."""
        last = self._counters.get(conversation_id, self._before_first)
        local_id = last + 1 if last < INT32_MAX else 1  # wrap: reuse the oldest ids (see module docstring)
        self._counters[conversation_id] = local_id
        self._dirty_counters.add(conversation_id)
        key = (conversation_id, local_id)
        if key in self._by_local:
            self._drop_for_reuse(key)
        return key

    def _drop_for_reuse(self, key: tuple[int, int]) -> None:
        """An id wrapped onto a message still cached: drop it and its place in the age queue, so the queue's
        stale copy cannot evict the new message early (O(cache size), at most once per 2**31 ids)."""
        self._forget_cached(key)
        if key in self._age:
            self._age.remove(key)

    def _forget_cached(self, key: tuple[int, int]) -> _Entry | None:
        """Drop one cache entry (with ``_mem`` held); returns it, or None when it was not cached."""
        entry = self._by_local.pop(key, None)
        if entry is not None and self._by_platform.get(platform_id := _entry_platform(entry)) == key:
            del self._by_platform[platform_id]
        return entry

    def _cache(self, key: tuple[int, int], entry: _Entry) -> None:
        by_local = self._by_local
        by_local[key] = entry
        self._by_platform[_entry_platform(entry)] = key
        self._age.append(key)
        if len(by_local) > self._cache_size:
            self._evict()

    def _evict(self) -> None:
        by_local = self._by_local
        by_platform = self._by_platform
        age = self._age
        while len(by_local) > self._cache_size and age:
            oldest_key = age.popleft()
            oldest = by_local.pop(oldest_key, None)
            if oldest is not None and by_platform.get(platform_id := _entry_platform(oldest)) == oldest_key:
                del by_platform[platform_id]

    def _add(self, key: tuple[int, int], content: Content) -> bool:
        """Cache and queue one row; True when the batch is full (the caller flushes outside the lock)."""
        self._cache(key, content)
        self._pending.append(content)
        return len(self._pending) >= self._batch_size

    def _batch_full(self) -> None:
        if self._on_batch_full is not None:
            self._on_batch_full()
            return
        try:
            self.flush()
        except StoreError:
            # Rows stay pending (nothing lost); the next flush retries. The event path must not raise.
            log.warning("message store flush failed; %d rows stay pending", self.pending, exc_info=True)

    def _known(self, platform_id: int) -> _Entry | None:
        key = self._by_platform.get(platform_id)
        return None if key is None else self._by_local.get(key)

    def _needs_disk_lookup(self, platform_id: int) -> bool:
        with self._mem:
            self._check_open()
            return self._known(platform_id) is None

    def record(self, message: Message) -> Message:
        """Give ``message`` its Int32 id (its existing one if this Discord message is already known).

        A quoted message that is not known yet gets an id too (a reference-only row built from the
        quote), so frameworks can quote or recall it later. Raises :class:`StoreError` once the store is closed.
        """
        self._check_open()
        return self.record_new(
            conversation=message.conversation,
            channel_id=message.channel_id,
            platform_id=message.platform_id,
            time=message.time,
            sender=message.sender,
            segments=message.segments,
            quote=message.quote,
            from_self=message.from_self,
            group=message.group,
        )

    def record_new(
        self,
        *,
        conversation: ConversationRef,
        channel_id: int,
        platform_id: int,
        time: int,
        sender: Member | User,
        segments: tuple[Segment, ...],
        quote: Quote | None = None,
        from_self: bool = False,
        group: Group | None = None,
    ) -> Message:
        """:meth:`record` for a message still to be built: it is built once, with its id (the same fields as
        :class:`~relay.envelope.Message`, so a translator can take either as its message factory).

        The event path: building the message and then a copy with its id cost a second frozen ``__init__``
        (~1.6 µs of the event loop per relayed message), and building it through a closure handed to a shared
        helper another 0.4 µs (2.0 → 1.6 µs a call, ``timeit``). Once the store is closed the message comes back
        without an id, as the plain class would build it; :meth:`record` then reports the closed store where the
        caller handles failures.

        The id is that of ``platform_id`` (allocated, or the known one: a replayed event keeps its id); the
        message is cached and queued as its row. ``channel_id``, ``time`` and ``group`` also place a quoted
        message not seen before (a reference-only row).
        """
        if self._closed:
            return Message(
                conversation=conversation,
                channel_id=channel_id,
                platform_id=platform_id,
                time=time,
                sender=sender,
                segments=segments,
                quote=quote,
                from_self=from_self,
                group=group,
            )
        quoted_on_disk: StoredMessage | None = None
        quoted_pid = quote.ref.platform_id if quote is not None and quote.ref.local_id is None else None
        if quoted_pid is not None and self._needs_disk_lookup(quoted_pid):
            quoted_on_disk = self._select_platform(quoted_pid)  # rare: older than the memory cache
        with self._mem:
            if self._closed:
                self._check_open()
            full = False
            if quote is not None and quoted_pid is not None:
                quote, full = self._resolve_quote(
                    conversation, quote, quoted_pid, quoted_on_disk, channel_id=channel_id, time=time, group=group
                )
            by_local = self._by_local
            known = self._by_platform.get(platform_id)
            key: tuple[int, int] | None = None  # the new message's, to cache and queue it
            if known is not None and known in by_local:  # a replayed event keeps its id
                local_id = known[1]
            else:
                # _allocate, inlined: this runs once per relayed message
                conversation_id = conversation.id
                last = self._counters.get(conversation_id, self._before_first)
                local_id = last + 1 if last < INT32_MAX else 1  # wrap: see the module docstring
                self._counters[conversation_id] = local_id
                self._dirty_counters.add(conversation_id)
                key = (conversation_id, local_id)
                if key in by_local:  # the id wrapped onto a message still cached
                    self._drop_for_reuse(key)
            recorded = Message(
                conversation=conversation,
                channel_id=channel_id,
                platform_id=platform_id,
                local_id=local_id,
                time=time,
                sender=sender,
                segments=segments,
                quote=quote,
                from_self=from_self,
                group=group,
            )
            if key is not None:
                # _add, inlined; the pending row is the returned message itself: nothing else is built
                by_local[key] = recorded
                self._by_platform[platform_id] = key
                self._age.append(key)
                if len(by_local) > self._cache_size:
                    self._evict()
                pending = self._pending
                pending.append(recorded)
                full = full or len(pending) >= self._batch_size
        if full:
            self._batch_full()
        return recorded

    def _resolve_quote(
        self,
        conversation: ConversationRef,
        quote: Quote,
        platform_id: int,
        on_disk: StoredMessage | None,
        *,
        channel_id: int,
        time: int,
        group: Group | None,
    ) -> tuple[Quote, bool]:
        full = False
        known = self._known(platform_id)
        if known is not None:
            local_id, channel_id = _entry_ids(known)
        elif on_disk is not None:
            local_id, channel_id = on_disk.local_id, on_disk.channel_id
        else:
            key = self._allocate(conversation.id)
            local_id = key[1]
            found = StoredMessage(
                conversation=conversation,
                local_id=local_id,
                channel_id=quote.ref.channel_id if quote.ref.channel_id is not None else channel_id,
                platform_id=platform_id,
                author_id=quote.author_id,
                time=time,  # the quoted message's own time is unknown; retention counts from here
                segments=quote.origin,
                group=group,
            )
            full = self._add(key, found)
            channel_id = found.channel_id
        ref = attrs.evolve(quote.ref, local_id=local_id, channel_id=channel_id)
        return attrs.evolve(quote, ref=ref), full

    def record_sent(
        self,
        conversation: ConversationRef,
        *,
        channel_id: int,
        platform_id: int,
        author_id: int,
        time: int,
        segments: Iterable[Segment],
        sender: Member | User | None = None,
        group: Group | None = None,
    ) -> int:
        """Record a message the bot sent through the bridge; returns its Int32 id (idempotent)."""
        on_disk = self._select_platform(platform_id) if self._needs_disk_lookup(platform_id) else None
        with self._mem:
            self._check_open()
            known = self._known(platform_id)
            if known is not None:
                return _entry_ids(known)[0]
            if on_disk is not None:
                return on_disk.local_id
            key = self._allocate(conversation.id)
            local_id = key[1]
            full = self._add(
                key,
                StoredMessage(
                    conversation=conversation,
                    local_id=local_id,
                    channel_id=channel_id,
                    platform_id=platform_id,
                    author_id=author_id,
                    time=time,
                    segments=tuple(segments),
                    sender=sender,
                    group=group,
                ),
            )
        if full:
            self._batch_full()
        return local_id

    # ------------------------------------------------------------------ writing (SQLite)

    def flush(self) -> int:
        """Write pending rows and counters in one transaction; returns how many rows were written.

        The synchronous form of :meth:`take_batch` + :meth:`write_batch`, for tests, close and the read paths:
        a batch already in flight is waited for first, so everything recorded before the call is on disk when
        it returns. On failure the rows go back to the pending batch and :class:`~relay.errors.StoreError` is
        raised. Do not call it on the thread that took a batch before writing that batch (it would wait for
        itself).
        """
        self._wait_for_batch()
        with self._db:
            return self._write(self.take_batch())

    def take_batch(self) -> StoreBatch | None:
        """Take the pending rows and encode them; ``None`` when there is nothing to write or a batch is in flight.

        Call it on the thread that records (an app's event loop) and hand the batch to :meth:`write_batch`,
        which may run in a worker thread. The split keeps every Python step of a flush on the recording thread:
        a worker thread holding the GIL for the encoding (~3 µs a row) made the event loop wait for the GIL
        twice as long (bench: 5 vs 10 µs of the loop's time per relayed message); SQLite itself runs without
        the GIL.
        """
        with self._mem:
            if self._closed or self._taken is not None or (not self._pending and not self._dirty_counters):
                return None
            contents = self._pending
            self._pending = []
            counter_ids = self._dirty_counters
            self._dirty_counters = set()
            self._taken = contents
        try:
            params, flushed, skipped = encode_batch(contents)
        except BaseException:
            self._put_back(contents, counter_ids)
            raise
        kept = None
        if skipped:
            left_out = {id(content) for content in skipped}
            kept = [content for content in contents if id(content) not in left_out]
        return StoreBatch(contents=contents, params=params, flushed=flushed, counter_ids=counter_ids, kept=kept)

    def write_batch(self, batch: StoreBatch) -> int:
        """Write ``batch`` in one transaction (safe in a worker thread) and return how many rows it had.

        Cached entries then keep only their ids (see Flushed). On failure the rows go back to the pending
        batch (nothing is lost; the next batch retries them) and :class:`~relay.errors.StoreError` is raised.
        """
        with self._db:
            return self._write(batch)

    def return_batch(self, batch: StoreBatch) -> None:
        """Give back a batch that will not be written (say its writer was cancelled before it started): its rows
        go back to the front of the pending ones. A no-op once :meth:`write_batch` has run, whatever its outcome,
        so a caller may call it in a ``finally``."""
        with self._mem:
            if self._taken is not batch.contents:
                return
        self._put_back(batch.contents, batch.counter_ids)

    def _wait_for_batch(self) -> None:
        with self._mem:
            if not self._batch_done.wait_for(lambda: self._taken is None, timeout=BATCH_WAIT_TIMEOUT):
                raise StoreError(
                    f"a batch of {len(self._taken or ())} message-id rows was taken {BATCH_WAIT_TIMEOUT:.0f} s ago "
                    "and neither written nor given back (MessageStore.return_batch); not waiting for it any longer"
                )

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The store's writer connection, for a transaction that writes a batch with :meth:`write_rows` beside
        other tables of the file (:mod:`relay.storage.flush`): one flush, one transaction. Holds the connection's
        lock; raises :class:`StoreError` when the store is closed."""
        with self._db:
            self._check_open()
            yield self._conn

    def write_rows(self, db: sqlite3.Connection, batch: StoreBatch) -> None:
        """The statements of ``batch`` inside the caller's transaction on ``db`` (the writer connection, see
        :meth:`writing`); then :meth:`finish_batch` with whether the transaction committed. Raises
        :class:`sqlite3.Error`."""
        with self._mem:
            self._check_open()
            # read now, not when the batch was taken: a later batch may already have been written, and a
            # counter must never go back (ids would be issued twice after a restart). A conversation id beyond
            # SQLite's integers has no row either (see encode_batch)
            counters = [(cid, self._counters[cid]) for cid in batch.counter_ids if INT64_MIN <= cid <= INT64_MAX]
        _write_rows(db, batch, counters)

    def finish_batch(self, batch: StoreBatch, written: bool) -> int:
        """After :meth:`write_rows`' transaction: ``written`` (it committed) → cached entries keep only their ids;
        else the rows go back to the pending ones. Returns the rows written."""
        if not written:
            self._put_back(batch.contents, batch.counter_ids)
            return 0
        with self._mem:  # cached entries keep only their ids (see Flushed); skipped if re-recorded meanwhile
            by_local = self._by_local
            rows = batch.contents if batch.kept is None else batch.kept
            for content, entry in zip(rows, batch.flushed, strict=True):
                key = (entry[0], entry[1])
                if by_local.get(key) is content:
                    by_local[key] = entry
            if self._taken is batch.contents:
                self._taken = None
            self._batch_done.notify_all()
        return len(batch.flushed)

    def _write(self, batch: StoreBatch | None) -> int:
        """The transaction of ``batch`` (call with ``_db`` held)."""
        if batch is None:
            return 0
        written = False
        try:
            with sqlite.Transaction(self._conn):
                self.write_rows(self._conn, batch)
            written = True
        except sqlite3.Error as exc:
            error = StoreError(
                f"could not write {len(batch.contents)} message-id rows: {exc}; they stay pending and are retried "
                "on the next flush (check free disk space)"
            )
            self.writes.failed(str(error), time.time())
            raise error from exc
        finally:
            self.finish_batch(batch, written)
        self.writes.succeeded(len(batch.flushed), time.time())
        return len(batch.flushed)

    def _put_back(self, contents: list[Content], counter_ids: set[int]) -> None:
        with self._mem:
            self._pending[:0] = contents
            self._dirty_counters.update(counter_ids)
            if self._taken is contents:
                self._taken = None
            self._batch_done.notify_all()

    # ------------------------------------------------------------------ reading

    def lookup_local(self, conversation: ConversationRef | int, local_id: int) -> StoredMessage | None:
        """The message with mirai id ``local_id`` in ``conversation`` (a ref or a bare conversation id)."""
        conversation_id = conversation if isinstance(conversation, int) else conversation.id
        key = (conversation_id, local_id)
        with self._mem:
            self._check_open()
            cached = self._by_local.get(key)
        if cached is not None and type(cached) is not tuple:
            return stored(cached)  # type: ignore[arg-type]
        found = self._select_one("WHERE conversation_id = ? AND local_id = ?", key)
        if found is None:
            with self._mem:  # evicted from the cache but not flushed yet (flusher behind)
                pending = next((p for p in self._unwritten() if (p.conversation.id, p.local_id) == key), None)
            return None if pending is None else stored(pending)
        return found

    def lookup_platform(self, platform_id: int) -> StoredMessage | None:
        """The mapping of one Discord message (snowflakes are globally unique, so no channel is needed)."""
        with self._mem:
            self._check_open()
            known = self._known(platform_id)
        if known is not None:
            if type(known) is not tuple:
                return stored(known)  # type: ignore[arg-type]
            # by its key: a message recorded again after its eviction has two rows, and the cache knows the newer
            found = self._select_one("WHERE conversation_id = ? AND local_id = ?", (known[0], known[1]))
            if found is not None and found.platform_id == platform_id:
                return found
        found = self._select_platform(platform_id)
        if found is None:
            with self._mem:
                pending = next((p for p in self._unwritten() if p.platform_id == platform_id), None)
            return None if pending is None else stored(pending)
        return found

    def conversation(self, conversation_id: int) -> ConversationRef | None:
        """The real kind of a conversation id seen before (mirai's ``target`` may be a group or a friend)."""
        with self._mem:
            self._check_open()
            for stored in reversed(self._unwritten()):
                if stored.conversation.id == conversation_id:
                    return stored.conversation
        with self._read:
            self._check_open()
            try:
                row = self._reader.execute(
                    "SELECT conversation_kind FROM messages_map WHERE conversation_id = ? LIMIT 1", (conversation_id,)
                ).fetchone()
            except OverflowError:  # beyond SQLite's integers: never stored (see encode_batch)
                row = None
            except sqlite3.Error as exc:
                raise StoreError(f"message store lookup failed: {exc}") from exc
        return None if row is None else ConversationRef(ConversationKind(row[0]), conversation_id)

    def knows_conversation(self, conversation_id: int) -> bool:
        """Whether the store has recorded any message of the conversation (in memory: every row's conversation has
        a counter, loaded at open and set when an id is issued; ``store repair`` restores one a damaged page lost).
        Safe in any thread."""
        with self._mem:
            return conversation_id in self._counters

    def newest_in_channel(self, conversation_id: int, channel_id: int) -> int | None:
        """The newest (largest) Discord message id recorded in ``channel_id`` (of ``conversation_id``), or None:
        where a back-fill after a lost gateway session starts reading the channel's history
        (adapters/discord/backfill.py). Safe in a worker thread; one row of messages_newest (see _SCHEMA), which
        keeps a channel's newest id after that message is forgotten (it is still a sound place to read on from)
        and drops it once the retention prunes the channel's newest message."""
        with self._mem:
            self._check_open()
            unwritten = [
                p.platform_id
                for p in self._unwritten()
                if p.conversation.id == conversation_id and p.channel_id == channel_id
            ]
        with self._read:
            self._check_open()
            try:
                row = self._reader.execute(
                    "SELECT platform_id FROM messages_newest WHERE channel_id = ?", (channel_id,)
                ).fetchone()
            except OverflowError:  # beyond SQLite's integers: never stored (see encode_batch)
                row = None
            except sqlite3.Error as exc:
                raise StoreError(f"message store lookup failed: {exc}") from exc
        found = [*unwritten, *([int(row[0])] if row is not None else [])]
        return max(found) if found else None

    def _select_platform(self, platform_id: int) -> StoredMessage | None:
        return self._select_one("WHERE platform_id = ? ORDER BY time DESC LIMIT 1", (platform_id,))

    def _select_one(self, where: str, params: tuple[int, ...]) -> StoredMessage | None:
        with self._read:
            self._check_open()
            try:
                row = self._reader.execute(f"SELECT {COLUMNS} FROM messages_map {where}", params).fetchone()
            except OverflowError:  # an id beyond SQLite's integers: never stored (see encode_batch)
                row = None
            except sqlite3.Error as exc:
                raise StoreError(f"message store lookup failed: {exc}") from exc
        return None if row is None else from_row(row)

    def history(
        self, conversation: ConversationRef | int, time_start: int, time_end: int, limit: int
    ) -> list[StoredMessage]:
        """Messages of a conversation with ``time_start <= time <= time_end``, oldest first, at most ``limit``
        (the newest ``limit`` when more match). It reads every row of the conversation (through its id index; there
        is no time index, see _SCHEMA): for tests and tools, not for a command's path."""
        conversation_id = conversation if isinstance(conversation, int) else conversation.id
        self.flush()  # before taking _db: it may wait for a batch in flight, whose writer needs _db
        with self._db:
            self._check_open()
            try:
                rows = self._conn.execute(
                    f"SELECT {COLUMNS} FROM (SELECT * FROM messages_map WHERE conversation_id = ? "
                    "AND time >= ? AND time <= ? ORDER BY time DESC, local_id DESC LIMIT ?) "
                    "ORDER BY time, local_id",
                    (conversation_id, max(time_start, INT64_MIN), min(time_end, INT64_MAX), max(0, limit)),
                ).fetchall()
            except OverflowError:  # a conversation id beyond SQLite's integers: never stored
                rows = []
            except sqlite3.Error as exc:
                raise StoreError(f"message store history query failed: {exc}") from exc
        return [from_row(row) for row in rows]

    # ------------------------------------------------------------------ removal

    def forget(self, conversation: ConversationRef | int, local_id: int) -> bool:
        """Drop one mapping (e.g. after the message was deleted and its recall event was pushed).

        The id is not reissued (the conversation's counter never goes back).
        """
        conversation_id = conversation if isinstance(conversation, int) else conversation.id
        key = (conversation_id, local_id)
        self.flush()  # before taking _db: it may wait for a batch in flight, whose writer needs _db
        with self._db:
            self._check_open()
            with self._mem:
                cached = self._forget_cached(key)
            try:
                with sqlite.Transaction(self._conn):
                    deleted = self._conn.execute(
                        "DELETE FROM messages_map WHERE conversation_id = ? AND local_id = ?", key
                    ).rowcount
            except OverflowError:  # beyond SQLite's integers: never stored
                deleted = 0
            except sqlite3.Error as exc:
                raise StoreError(f"message store delete failed: {exc}") from exc
        return cached is not None or deleted > 0

    def prune(self, now: float) -> int:
        """Delete mappings older than the retention (by message time); returns how many rows went."""
        cutoff = int(now) - self._retention_seconds
        self.flush()  # before taking _db: it may wait for a batch in flight, whose writer needs _db
        with self._db:
            self._check_open()
            with self._mem:
                for key, entry in list(self._by_local.items()):
                    if _entry_time(entry) < cutoff:
                        del self._by_local[key]
                        if self._by_platform.get(_entry_platform(entry)) == key:
                            del self._by_platform[_entry_platform(entry)]
                self._age = collections.deque(self._by_local)  # drop the pruned keys (dict order = age)
            try:
                with sqlite.Transaction(self._conn):
                    cursor = self._conn.execute("DELETE FROM messages_map WHERE time < ?", (cutoff,))
                    self._conn.execute("DELETE FROM messages_newest WHERE time < ?", (cutoff,))
            except sqlite3.Error as exc:
                raise StoreError(f"message store prune failed: {exc}") from exc
        if cursor.rowcount:
            log.info("message store: pruned %d mappings older than %d days", cursor.rowcount, self.retention_days)
        return cursor.rowcount

    # ------------------------------------------------------------------ misc

    @property
    def path(self) -> str:
        return self._path

    @property
    def retention_days(self) -> int:
        return self._retention_seconds // _SECONDS_PER_DAY

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def pending(self) -> int:
        """Rows recorded but not yet flushed."""
        return len(self._pending)

    def _unwritten(self) -> list[Content]:
        """Rows recorded but not on disk yet, oldest first (call with ``_mem`` held)."""
        return self._pending if self._taken is None else self._taken + self._pending

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the message store is closed; open it again with MessageStore.open()")
