"""The message-id store (DESIGN.md §6): per-conversation Int32 ids ⇄ Discord messages, in SQLite.

mirai-api-http message ids are Int32 and unique only within one conversation (mirai-api-http.md §2), so
the bridge allocates them itself and remembers what they point at, across restarts.

**Allocation.** Each conversation has a counter; ids are handed out 1, 2, 3, ... up to ``INT32_MAX`` and
then wrap to 1. 0 and negatives are never issued (mirai uses -1 for "no id", and 0 is our "unknown").
The counter is persisted with each flushed batch, so ids are never reissued after a restart. After a
wrap (2,147,483,647 messages in *one* conversation) an id is reused and the old mapping it pointed at is
overwritten; with any sane retention that mapping was pruned long before.

**Speed.** :meth:`MessageStore.record` is the per-event path: a dict lookup, a counter increment and an
append to the pending batch — no SQLite. Rows are written by :meth:`MessageStore.flush` in one transaction
(call it periodically and at shutdown; it also runs by itself once ``batch_size`` rows are pending).
Lookups read the in-memory cache of recent messages first, then SQLite. On open, the cache is warmed
with the most recent rows so a replayed gateway event after a restart still finds its old id without
touching disk on the hot path.

**Threads.** The store is synchronous. A trio app may run :meth:`flush`/:meth:`prune` in a worker thread
(``trio.to_thread.run_sync``); every public method holds one internal lock, so that is safe.

**Conversation keys.** Rows are keyed by the conversation *id* alone: Discord snowflakes never collide
between channels and users, and mirai commands such as ``recall {target, messageId}`` do not say whether
``target`` is a group or a friend. The stored row knows the real kind.

Tables are prefixed ``messages_`` (the outbox shares the SQLite file with ``outbox_`` tables).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable

import attrs
import cattrs
from cattrs.strategies import configure_tagged_union

from relay.envelope import (
    INT32_MAX,
    Audio,
    ConversationKind,
    ConversationRef,
    Emoji,
    File,
    Group,
    Image,
    Member,
    Mention,
    MentionAll,
    Message,
    MessageRef,
    Quote,
    RichContent,
    Segment,
    Sticker,
    Text,
    Unsupported,
    User,
)
from relay.errors import LocalProtocolError, StoreError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CACHE_SIZE", "MessageStore", "StoredMessage", "segment_converter"]

#: rows pending before record() flushes by itself (one transaction each; keeps a burst from piling up RAM)
DEFAULT_BATCH_SIZE = 1000
#: recent messages kept in memory for lookups without SQLite (~ a few hundred bytes each)
DEFAULT_CACHE_SIZE = 50_000
#: rows loaded into the cache at open() so replays after a restart keep their ids
WARM_ROWS = 10_000

_SECONDS_PER_DAY = 86_400

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
    PRIMARY KEY (conversation_id, local_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_map_platform ON messages_map (platform_id);
CREATE INDEX IF NOT EXISTS messages_map_time ON messages_map (conversation_id, time);
CREATE TABLE IF NOT EXISTS messages_counter (
    conversation_id INTEGER PRIMARY KEY,
    last_id         INTEGER NOT NULL
);
"""


# --------------------------------------------------------------------------- serialization


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    # Outbound media bytes are never persisted (could be megabytes); a stored image keeps its id/url.
    converter.register_unstructure_hook(bytes, lambda _value: None)
    converter.register_structure_hook(bytes, lambda _value, _type: None)
    segment_types = (Text, Mention, MentionAll, Emoji, Image, Audio, File, Sticker, RichContent, Unsupported)
    configure_tagged_union(Segment, converter, tag_name="kind", tag_generator=lambda cls: cls.__name__)
    configure_tagged_union(Member | User, converter, tag_name="kind", tag_generator=lambda cls: cls.__name__)
    if set(Segment.__args__) != set(segment_types):
        raise LocalProtocolError("relay/store.py: list every envelope Segment type in _make_converter")
    return converter


#: the store's cattrs converter for envelope segments / senders (relay/ may not import adapter codecs)
segment_converter = _make_converter()


@attrs.frozen(kw_only=True)
class StoredMessage:
    """One mapping: the mirai id of a Discord message and what is known about the message."""

    conversation: ConversationRef
    local_id: int
    channel_id: int
    platform_id: int
    author_id: int
    time: int
    segments: tuple[Segment, ...] = ()
    sender: Member | User | None = None
    group: Group | None = None
    quote: Quote | None = None
    from_self: bool = False

    @property
    def ref(self) -> MessageRef:
        return MessageRef(
            conversation=self.conversation,
            local_id=self.local_id,
            platform_id=self.platform_id,
            channel_id=self.channel_id,
        )

    def to_message(self) -> Message:
        """Rebuild the envelope message (sender falls back to a bare user when it was never known)."""
        sender = self.sender if self.sender is not None else User(id=self.author_id, name="")
        return Message(
            conversation=self.conversation,
            channel_id=self.channel_id,
            platform_id=self.platform_id,
            local_id=self.local_id,
            time=self.time,
            sender=sender,
            segments=self.segments,
            quote=self.quote,
            from_self=self.from_self,
            group=self.group,
        )


_SEGMENTS_TYPE = tuple[Segment, ...]
_SENDER_TYPE = Member | User
#: one reusable encoder: json.dumps with options builds a new encoder per call
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _payload(stored: StoredMessage) -> str:
    unstructure = segment_converter.unstructure
    data = {
        "segments": unstructure(stored.segments, _SEGMENTS_TYPE),
        "sender": None if stored.sender is None else unstructure(stored.sender, _SENDER_TYPE),
        "group": None if stored.group is None else unstructure(stored.group, Group),
        "quote": None if stored.quote is None else unstructure(stored.quote, Quote),
        "from_self": stored.from_self,
    }
    return _JSON.encode(data)


def _from_row(row: tuple[int, int, str, int, int, int, int, str]) -> StoredMessage:
    conversation_id, local_id, kind, channel_id, platform_id, author_id, time, payload = row
    data = json.loads(payload)
    sender = data.get("sender")
    group = data.get("group")
    quote = data.get("quote")
    return StoredMessage(
        conversation=ConversationRef(ConversationKind(kind), conversation_id),
        local_id=local_id,
        channel_id=channel_id,
        platform_id=platform_id,
        author_id=author_id,
        time=time,
        segments=segment_converter.structure(data.get("segments", []), _SEGMENTS_TYPE),
        sender=None if sender is None else segment_converter.structure(sender, _SENDER_TYPE),  # type: ignore[arg-type]
        group=None if group is None else segment_converter.structure(group, Group),
        quote=None if quote is None else segment_converter.structure(quote, Quote),
        from_self=bool(data.get("from_self", False)),
    )


_COLUMNS = "conversation_id, local_id, conversation_kind, channel_id, platform_id, author_id, time, payload"


# --------------------------------------------------------------------------- the store


class MessageStore:
    """Int32 message ids per conversation, batched into SQLite. Build with :meth:`open`."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        retention_days: int,
        batch_size: int,
        cache_size: int,
    ) -> None:
        self._db = db
        self._lock = threading.RLock()
        self._retention_seconds = retention_days * _SECONDS_PER_DAY
        self._batch_size = max(1, batch_size)
        self._cache_size = max(2 * self._batch_size, cache_size)
        #: (conversation id, local id) → message; insertion order = age (oldest first, evicted first)
        self._by_local: dict[tuple[int, int], StoredMessage] = {}
        #: Discord snowflake → (conversation id, local id)
        self._by_platform: dict[int, tuple[int, int]] = {}
        #: conversation id → last issued id
        self._counters: dict[int, int] = {}
        self._pending: list[StoredMessage] = []
        self._dirty_counters: set[int] = set()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str,
        *,
        retention_days: int = 30,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> MessageStore:
        """Open (creating if needed) the store in the SQLite file ``path`` (``":memory:"`` for tests)."""
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast commits
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the message store {path!r}: {exc}; check the path and permissions") from exc
        store = cls(db, retention_days=retention_days, batch_size=batch_size, cache_size=cache_size)
        store._load()
        log.info("message store open: %s (%d conversations)", path, len(store._counters))
        return store

    def _load(self) -> None:
        try:
            self._counters = dict(self._db.execute("SELECT conversation_id, last_id FROM messages_counter"))
            warm = min(WARM_ROWS, self._cache_size)
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM (SELECT * FROM messages_map ORDER BY time DESC LIMIT ?) ORDER BY time",
                (warm,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the message store is unreadable: {exc}; move the file aside to start afresh") from exc
        for row in rows:
            self._cache(_from_row(row))

    def close(self) -> None:
        """Flush what is pending and close the file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
            finally:
                self._closed = True
                self._db.close()

    # ------------------------------------------------------------------ writing

    def _allocate(self, conversation_id: int) -> int:
        last = self._counters.get(conversation_id, 0)
        local_id = last + 1 if last < INT32_MAX else 1  # wrap: reuse the oldest ids (see module docstring)
        self._counters[conversation_id] = local_id
        self._dirty_counters.add(conversation_id)
        evicted = self._by_local.pop((conversation_id, local_id), None)
        if evicted is not None:
            self._by_platform.pop(evicted.platform_id, None)
        return local_id

    def _cache(self, stored: StoredMessage) -> None:
        key = (stored.conversation.id, stored.local_id)
        self._by_local[key] = stored
        self._by_platform[stored.platform_id] = key
        if len(self._by_local) > self._cache_size:
            # Evict the oldest. cache_size >= 2 * batch_size, so it is already in SQLite (pending rows are the newest).
            oldest_key = next(iter(self._by_local))
            oldest = self._by_local.pop(oldest_key)
            if self._by_platform.get(oldest.platform_id) == oldest_key:
                del self._by_platform[oldest.platform_id]

    def _add(self, stored: StoredMessage) -> None:
        self._cache(stored)
        self._pending.append(stored)
        if len(self._pending) >= self._batch_size:
            try:
                self.flush()
            except StoreError:
                # Keep the rows pending (nothing lost); the next flush retries. The hot path must not raise.
                log.warning("message store flush failed; %d rows stay pending", len(self._pending), exc_info=True)

    def _known(self, platform_id: int) -> StoredMessage | None:
        key = self._by_platform.get(platform_id)
        return None if key is None else self._by_local.get(key)

    def record(self, message: Message) -> Message:
        """Give ``message`` its Int32 id (existing one if this Discord message is already known).

        A quoted message that is not known yet gets an id too (a reference-only row built from the
        quote), so frameworks can quote or recall it later.
        """
        with self._lock:
            self._check_open()
            known = self._known(message.platform_id)
            quote = self._resolve_quote(message) if message.quote is not None else None
            if known is not None:
                return attrs.evolve(message, local_id=known.local_id, quote=quote)
            conversation_id = message.conversation.id
            local_id = self._allocate(conversation_id)
            sender = message.sender
            author_id = sender.user_id if isinstance(sender, Member) else sender.id
            self._add(
                StoredMessage(
                    conversation=message.conversation,
                    local_id=local_id,
                    channel_id=message.channel_id,
                    platform_id=message.platform_id,
                    author_id=author_id,
                    time=message.time,
                    segments=message.segments,
                    sender=sender,
                    group=message.group,
                    quote=quote,
                    from_self=message.from_self,
                )
            )
            return attrs.evolve(message, local_id=local_id, quote=quote)

    def _resolve_quote(self, message: Message) -> Quote | None:
        quote = message.quote
        if quote is None or quote.ref.local_id is not None or quote.ref.platform_id is None:
            return quote
        platform_id = quote.ref.platform_id
        found = self._known(platform_id) or self._select_platform(platform_id)
        if found is None:
            conversation = message.conversation
            channel_id = quote.ref.channel_id if quote.ref.channel_id is not None else message.channel_id
            local_id = self._allocate(conversation.id)
            found = StoredMessage(
                conversation=conversation,
                local_id=local_id,
                channel_id=channel_id,
                platform_id=platform_id,
                author_id=quote.author_id,
                time=message.time,  # the quoted message's own time is unknown; retention counts from here
                segments=quote.origin,
                group=message.group,
            )
            self._add(found)
        ref = attrs.evolve(quote.ref, local_id=found.local_id, channel_id=found.channel_id)
        return attrs.evolve(quote, ref=ref)

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
        with self._lock:
            self._check_open()
            known = self._known(platform_id) or self._select_platform(platform_id)
            if known is not None:
                return known.local_id
            local_id = self._allocate(conversation.id)
            self._add(
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
                )
            )
            return local_id

    def flush(self) -> int:
        """Write pending rows and counters in one transaction; returns how many rows were written."""
        with self._lock:
            if self._closed or (not self._pending and not self._dirty_counters):
                return 0
            batch = self._pending
            rows = [
                (
                    s.conversation.id,
                    s.local_id,
                    s.conversation.kind.value,
                    s.channel_id,
                    s.platform_id,
                    s.author_id,
                    s.time,
                    _payload(s),
                )
                for s in batch
            ]
            counters = [(cid, self._counters[cid]) for cid in self._dirty_counters]
            try:
                with self._transaction():
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO messages_map ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", rows
                    )
                    self._db.executemany(
                        "INSERT INTO messages_counter (conversation_id, last_id) VALUES (?, ?) "
                        "ON CONFLICT(conversation_id) DO UPDATE SET last_id = excluded.last_id",
                        counters,
                    )
            except sqlite3.Error as exc:
                raise StoreError(
                    f"could not write {len(rows)} message-id rows: {exc}; they stay pending and are retried "
                    "on the next flush (check free disk space)"
                ) from exc
            self._pending = []
            self._dirty_counters = set()
            return len(rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # ------------------------------------------------------------------ reading

    def lookup_local(self, conversation: ConversationRef | int, local_id: int) -> StoredMessage | None:
        """The message with mirai id ``local_id`` in ``conversation`` (a ref or a bare conversation id)."""
        conversation_id = conversation if isinstance(conversation, int) else conversation.id
        with self._lock:
            self._check_open()
            cached = self._by_local.get((conversation_id, local_id))
            if cached is not None:
                return cached
            return self._select_one(
                "WHERE conversation_id = ? AND local_id = ?",
                (conversation_id, local_id),
            )

    def lookup_platform(self, platform_id: int) -> StoredMessage | None:
        """The mapping of one Discord message (snowflakes are globally unique, so no channel is needed)."""
        with self._lock:
            self._check_open()
            return self._known(platform_id) or self._select_platform(platform_id)

    def _select_platform(self, platform_id: int) -> StoredMessage | None:
        return self._select_one("WHERE platform_id = ? ORDER BY time DESC LIMIT 1", (platform_id,))

    def _select_one(self, where: str, params: tuple[int, ...]) -> StoredMessage | None:
        try:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM messages_map {where}", params).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"message store lookup failed: {exc}") from exc
        return None if row is None else _from_row(row)

    def history(
        self, conversation: ConversationRef | int, time_start: int, time_end: int, limit: int
    ) -> list[StoredMessage]:
        """Messages of a conversation with ``time_start <= time <= time_end``, oldest first, at most ``limit``
        (the newest ``limit`` when more match)."""
        conversation_id = conversation if isinstance(conversation, int) else conversation.id
        with self._lock:
            self._check_open()
            self.flush()
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM (SELECT * FROM messages_map WHERE conversation_id = ? "
                    "AND time >= ? AND time <= ? ORDER BY time DESC, local_id DESC LIMIT ?) "
                    "ORDER BY time, local_id",
                    (conversation_id, max(time_start, -(2**63)), min(time_end, 2**63 - 1), max(0, limit)),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"message store history query failed: {exc}") from exc
            return [_from_row(row) for row in rows]

    # ------------------------------------------------------------------ removal

    def forget(self, conversation: ConversationRef | int, local_id: int) -> bool:
        """Drop one mapping (e.g. after the message was deleted and its recall event was pushed)."""
        conversation_id = conversation if isinstance(conversation, int) else conversation.id
        with self._lock:
            self._check_open()
            self.flush()
            cached = self._by_local.pop((conversation_id, local_id), None)
            if cached is not None and self._by_platform.get(cached.platform_id) == (conversation_id, local_id):
                del self._by_platform[cached.platform_id]
            try:
                with self._transaction():
                    cursor = self._db.execute(
                        "DELETE FROM messages_map WHERE conversation_id = ? AND local_id = ?",
                        (conversation_id, local_id),
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"message store delete failed: {exc}") from exc
            return cached is not None or cursor.rowcount > 0

    def prune(self, now: float) -> int:
        """Delete mappings older than the retention (by message time); returns how many rows went."""
        cutoff = int(now) - self._retention_seconds
        with self._lock:
            self._check_open()
            self.flush()
            for key, stored in list(self._by_local.items()):
                if stored.time < cutoff:
                    del self._by_local[key]
                    if self._by_platform.get(stored.platform_id) == key:
                        del self._by_platform[stored.platform_id]
            try:
                with self._transaction():
                    cursor = self._db.execute("DELETE FROM messages_map WHERE time < ?", (cutoff,))
            except sqlite3.Error as exc:
                raise StoreError(f"message store prune failed: {exc}") from exc
            if cursor.rowcount:
                log.info("message store: pruned %d mappings older than %d days", cursor.rowcount, self.retention_days)
            return cursor.rowcount

    # ------------------------------------------------------------------ misc

    @property
    def retention_days(self) -> int:
        return self._retention_seconds // _SECONDS_PER_DAY

    @property
    def pending(self) -> int:
        """Rows recorded but not yet flushed."""
        return len(self._pending)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the message store is closed; open it again with MessageStore.open()")


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` / ``ROLLBACK`` on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
