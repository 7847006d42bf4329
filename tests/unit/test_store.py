"""The message-id store: Int32 ids per conversation, batching, restarts, lookups, retention (relay.storage.store)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from relay.envelope import (
    INT32_MAX,
    ConversationRef,
    Emoji,
    Group,
    Image,
    Member,
    Mention,
    Message,
    MessageRef,
    Quote,
    Role,
    Sticker,
    Text,
    User,
)
from relay.errors import StoreError
from relay.storage import rows, sqlite
from relay.storage import store as store_module
from relay.storage.store import MessageStore

GROUP = Group(id=222, name="Dev", bot_role=Role.MEMBER, guild_id=1)
ALICE = Member(user_id=111, display_name="Alice", role=Role.MEMBER, group=GROUP)
G = ConversationRef.group(222)
DM = ConversationRef.private(444)
DAY = 86_400
T0 = 1_700_000_000


def msg(platform_id: int, *, conversation: ConversationRef = G, time: int = T0, **kw: object) -> Message:
    fields: dict[str, object] = {
        "conversation": conversation,
        "channel_id": conversation.id if conversation.kind.value == "group" else 777,
        "platform_id": platform_id,
        "time": time,
        "sender": ALICE if conversation == G else User(id=444, name="Bob"),
        "segments": (Text(f"m{platform_id}"),),
        "group": GROUP if conversation == G else None,
    }
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sqlite3")


def test_ids_start_at_one_per_conversation_and_are_idempotent(db_path: str) -> None:
    store = MessageStore.open(db_path)
    assert store.record(msg(1001)).local_id == 1
    assert store.record(msg(1002)).local_id == 2
    assert store.record(msg(2001, conversation=DM)).local_id == 1  # ids are per conversation
    assert store.record(msg(1001)).local_id == 1  # the same Discord message keeps its id
    assert store.record(msg(1003)).local_id == 3
    store.close()


def test_record_is_memory_only_until_flush(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=100)
    store.record(msg(1))
    store.record(msg(2))
    assert store.pending == 2
    count = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM messages_map").fetchone()[0]
    assert count == 0
    assert store.flush() == 2
    assert store.pending == 0
    count = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM messages_map").fetchone()[0]
    assert count == 2
    assert store.flush() == 0
    store.close()


def test_flushes_by_itself_when_the_batch_is_full(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=3)
    for platform_id in range(1, 8):
        store.record(msg(platform_id))
    assert store.pending == 1  # two batches of 3 went to SQLite
    count = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM messages_map").fetchone()[0]
    assert count == 6
    store.close()


def test_ids_and_lookups_survive_a_restart(db_path: str) -> None:
    store = MessageStore.open(db_path)
    quoted = store.record(msg(500, segments=(Text("original"), Emoji(id=99, name="e"))))
    reply = store.record(
        msg(
            501,
            segments=(Mention(user_id=111), Text(" yes"), Image(url="https://cdn/a.png", data=b"big", width=3)),
            quote=Quote(ref=MessageRef(conversation=G, platform_id=500), author_id=111),
        )
    )
    assert reply.quote is not None
    assert reply.quote.ref.local_id == quoted.local_id == 1
    store.close()

    reopened = MessageStore.open(db_path, cache_size=1, batch_size=1)  # tiny cache: lookups must hit SQLite
    assert reopened.record(msg(501)).local_id == 2  # a replayed event keeps its id
    assert reopened.record(msg(502)).local_id == 3  # the counter continued, no reuse
    found = reopened.lookup_local(G, 2)
    assert found is not None
    assert (found.platform_id, found.channel_id, found.author_id, found.time) == (501, 222, 111, T0)
    assert found.segments == (Mention(user_id=111), Text(" yes"), Image(url="https://cdn/a.png", width=3))
    assert found.quote is not None and found.quote.ref.local_id == 1
    rebuilt = found.to_message()
    assert rebuilt.sender == ALICE
    assert rebuilt.group == GROUP
    assert rebuilt.local_id == 2 and rebuilt.conversation == G
    by_platform = reopened.lookup_platform(500)
    assert by_platform is not None
    assert by_platform.local_id == 1
    assert by_platform.segments == (Text("original"), Emoji(id=99, name="e"))
    assert reopened.lookup_local(G, 99) is None
    assert reopened.lookup_platform(12345) is None
    reopened.close()


def test_lookup_by_bare_conversation_id_finds_the_real_kind(db_path: str) -> None:
    # recall {target, messageId} does not say whether target is a group or a friend
    store = MessageStore.open(db_path)
    store.record(msg(7, conversation=DM))
    store.close()
    store = MessageStore.open(db_path)
    found = store.lookup_local(ConversationRef.group(444), 1)
    assert found is not None
    assert found.conversation == DM
    assert found.ref == MessageRef(conversation=DM, local_id=1, platform_id=7, channel_id=777)
    assert store.lookup_local(444, 1) == found
    store.close()


def test_unknown_quoted_message_gets_an_id_and_resolves_after_restart(db_path: str) -> None:
    store = MessageStore.open(db_path)
    reply = store.record(
        msg(
            601,
            quote=Quote(
                ref=MessageRef(conversation=G, platform_id=77, channel_id=222),
                author_id=5,
                origin=(Text("before the bridge"), Sticker(id=10**18, name="s")),
            ),
        )
    )
    assert reply.quote is not None
    assert reply.quote.ref.local_id == 1
    assert reply.local_id == 2
    store.close()
    store = MessageStore.open(db_path)
    quoted = store.lookup_local(G, 1)
    assert quoted is not None
    assert (quoted.platform_id, quoted.author_id) == (77, 5)
    assert quoted.segments == (Text("before the bridge"), Sticker(id=10**18, name="s"))
    assert quoted.to_message().sender == User(id=5, name="")
    store.close()


def test_record_sent(db_path: str) -> None:
    store = MessageStore.open(db_path)
    store.record(msg(1))
    local = store.record_sent(
        G, channel_id=222, platform_id=9001, author_id=900, time=T0 + 1, segments=[Text("from the framework")]
    )
    assert local == 2
    again = store.record_sent(G, channel_id=222, platform_id=9001, author_id=900, time=T0 + 1, segments=[])
    assert again == 2
    store.close()
    store = MessageStore.open(db_path)
    found = store.lookup_local(G, 2)
    assert found is not None
    assert found.author_id == 900 and found.segments == (Text("from the framework"),)
    store.close()


def test_int32_bounds_wrap_to_one_never_zero_or_negative(db_path: str) -> None:
    store = MessageStore.open(db_path)
    store.record(msg(1))  # id 1 in G: will be reused after the wrap
    store.close()
    with sqlite3.connect(db_path) as db:  # force the conversation near the Int32 limit
        db.execute("UPDATE messages_counter SET last_id = ? WHERE conversation_id = 222", (INT32_MAX - 2,))
    store = MessageStore.open(db_path)
    ids = [store.record(msg(100 + n)).local_id for n in range(4)]
    assert ids == [INT32_MAX - 1, INT32_MAX, 1, 2]
    assert all(0 < i <= INT32_MAX for i in ids)
    # id 1 now points at the new message; the old mapping was overwritten, not duplicated
    reused = store.lookup_local(G, 1)
    assert reused is not None and reused.platform_id == 102
    store.close()
    store = MessageStore.open(db_path)
    reused = store.lookup_local(G, 1)
    assert reused is not None and reused.platform_id == 102
    assert store.lookup_platform(1) is None
    assert store.record(msg(200)).local_id == 3  # the wrapped counter was persisted
    store.close()


def test_history_window_order_and_limit(db_path: str) -> None:
    store = MessageStore.open(db_path)
    for n in range(10):
        store.record(msg(n + 1, time=T0 + n))
    store.record(msg(99, conversation=DM, time=T0 + 5))
    window = store.history(G, T0 + 2, T0 + 6, 100)
    assert [m.local_id for m in window] == [3, 4, 5, 6, 7]
    assert [m.local_id for m in store.history(G, 0, 2**63 - 1, 3)] == [8, 9, 10]  # the newest, oldest first
    assert [m.local_id for m in store.history(444, 0, 2**63 - 1, 100)] == [1]
    assert store.history(G, T0 + 100, T0 + 200, 10) == []
    store.close()


def test_forget(db_path: str) -> None:
    store = MessageStore.open(db_path)
    store.record(msg(1))
    store.record(msg(2))
    assert store.forget(G, 1) is True
    assert store.lookup_local(G, 1) is None
    assert store.lookup_platform(1) is None
    assert store.forget(G, 1) is False
    store.close()
    store = MessageStore.open(db_path)
    assert store.lookup_local(G, 1) is None
    assert store.lookup_local(G, 2) is not None
    assert store.record(msg(3)).local_id == 3  # a forgotten id is not reissued
    store.close()


def test_retention_pruning(db_path: str) -> None:
    store = MessageStore.open(db_path, retention_days=7)
    store.record(msg(1, time=T0))
    store.record(msg(2, time=T0 + 6 * DAY))
    now = T0 + 8 * DAY
    assert store.prune(now) == 1
    assert store.lookup_local(G, 1) is None
    assert store.lookup_platform(1) is None
    assert store.lookup_local(G, 2) is not None
    assert store.prune(now) == 0
    store.close()
    store = MessageStore.open(db_path, retention_days=7)
    assert store.lookup_local(G, 1) is None
    assert store.record(msg(3, time=now)).local_id == 3  # pruning never rewinds the counter
    assert store.retention_days == 7
    store.close()


def test_closed_store_and_unopenable_path(tmp_path: Path, db_path: str) -> None:
    store = MessageStore.open(db_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.record(msg(1))
    with pytest.raises(StoreError, match="cannot open the message store"):
        MessageStore.open(str(tmp_path / "no-such-dir" / "x.sqlite3"))


def test_wal_mode_and_table_prefix(db_path: str) -> None:
    MessageStore.open(db_path).close()
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"messages_map", "messages_counter", "messages_newest"}


def test_full_batch_calls_the_hook_instead_of_flushing_inline(db_path: str) -> None:
    calls: list[int] = []
    store = MessageStore.open(db_path, batch_size=2, cache_size=4, on_batch_full=lambda: calls.append(1))
    for platform_id in range(1, 11):
        store.record(msg(platform_id))
    assert store.pending == 10  # nothing written inline
    assert len(calls) == 9  # every record from the second on found the batch full
    # rows evicted from the 4-entry cache but not flushed yet are still found
    first = store.lookup_local(G, 1)
    assert first is not None and first.platform_id == 1
    by_platform = store.lookup_platform(2)
    assert by_platform is not None and by_platform.local_id == 2
    assert store.flush() == 10
    assert store.lookup_local(G, 1) is not None
    store.close()


def test_failed_flush_keeps_rows_pending_and_retries(db_path: str) -> None:
    store = MessageStore.open(db_path, busy_timeout=0.01)
    store.record(msg(1))
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    with pytest.raises(StoreError, match="stay pending"):
        store.flush()
    assert store.pending == 1
    assert store.record(msg(2)).local_id == 2
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.flush() == 2
    store.close()
    store = MessageStore.open(db_path)
    assert [m.platform_id for m in store.history(G, 0, 2**63 - 1, 10)] == [1, 2]
    assert store.record(msg(3)).local_id == 3
    store.close()


def test_flushing_from_another_thread_while_recording(db_path: str) -> None:
    import threading

    store = MessageStore.open(db_path, batch_size=10**9)
    stop = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            while not stop.is_set():
                store.flush()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
            raise

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        ids = [store.record(msg(n, conversation=G if n % 2 else DM)).local_id for n in range(1, 3001)]
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    store.close()
    assert sorted(ids[0::2]) == list(range(1, 1501))  # group: odd platform ids
    assert sorted(ids[1::2]) == list(range(1, 1501))  # DM
    count = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM messages_map").fetchone()[0]
    assert count == 3000


def test_conversation_kind_of_an_ambiguous_target(db_path: str) -> None:
    store = MessageStore.open(db_path)
    store.record(msg(1, conversation=DM))
    assert store.conversation(444) == DM  # still pending
    store.record(msg(2))
    store.flush()
    assert store.conversation(222) == G
    assert store.conversation(444) == DM
    assert store.conversation(999) is None
    store.close()


def test_a_flush_runs_the_same_few_statements_whatever_the_batch_size(db_path: str) -> None:
    # Each statement execution is one GIL release + re-take in the sqlite3 module; per-row statements let a
    # busy trio thread stretch a transaction (and the file's write lock) to seconds. See relay/storage/store.py flush.
    chunk = store_module.CHUNK_ROWS
    store = MessageStore.open(db_path, batch_size=10**9)
    counts = []
    for size in (chunk // 2, chunk, 4 * chunk, chunk + 3):
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        for n in range(size):
            store.record(msg(10_000 * size + n, conversation=G if n % 2 else DM))
        assert store.flush() == size
        store._conn.set_trace_callback(None)
        counts.append(len(statements))
    # BEGIN, the map's last rowid, map rows, the channels' newest messages, counters, COMMIT
    assert counts[0] == counts[1] == 6
    assert counts[2] == counts[1] + 3  # one statement per chunk of rows
    assert counts[3] == counts[1] + 2  # the 3 rows past a chunk: a 2-row and a 1-row statement
    store.close()
    reopened = MessageStore.open(db_path)
    assert reopened.lookup_platform(10_000 * 4 * chunk + 4 * chunk - 1) is not None
    # counters persisted: every DM and group row so far, then this one
    assert reopened.record(msg(1, conversation=G)).local_id == (chunk // 2 + chunk + 4 * chunk + chunk + 3) // 2 + 1
    reopened.close()


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 437, 511, 512, 513, 1024, 1500])
def test_batches_are_cut_into_a_few_fixed_statement_sizes(rows: int) -> None:
    sizes = sqlite.fixed_chunks(rows, store_module._MAP_CHUNK_MAX)
    assert sum(sizes) == rows
    assert sizes == sorted(sizes, reverse=True)
    assert all(size & (size - 1) == 0 and size <= store_module.CHUNK_ROWS for size in sizes)
    assert len(sizes) - rows // store_module.CHUNK_ROWS == bin(rows % store_module.CHUNK_ROWS).count("1")


def test_odd_batch_sizes_do_not_grow_the_statement_cache(db_path: str) -> None:
    # a cached statement keeps its program and its last bound values: one per distinct batch size grew
    # SQLite's memory without bound while streaming (see relay.storage.sqlite.fixed_chunks)
    store = MessageStore.open(db_path, batch_size=10**9)
    inserts: set[str] = set()
    store._conn.set_trace_callback(lambda sql: inserts.add(sql[:60] + str(sql.count("("))))
    platform_id = 0
    for size in range(1, 120):
        for _ in range(size):
            platform_id += 1
            store.record(msg(platform_id))
        store.flush()
    store._conn.set_trace_callback(None)
    map_inserts = {sql for sql in inserts if "messages_map" in sql}
    assert len(map_inserts) <= store_module.CHUNK_ROWS.bit_length()  # 1, 2, 4, ... rows: not 119 shapes
    store.close()


def test_unusual_text_survives_the_bulk_write(db_path: str) -> None:
    texts = ['quote " backslash \\ tab \t newline \n', "emoji 😀 cjk 中文", "nul \x00 inside", "\u2028 sep"]
    store = MessageStore.open(db_path, batch_size=10**9)
    for n, text in enumerate(texts, start=1):
        store.record(msg(n, segments=(Text(text),)))
    store.close()
    reopened = MessageStore.open(db_path, cache_size=2, batch_size=1)
    reopened._by_local.clear()  # force the reads through SQLite
    reopened._by_platform.clear()
    assert [reopened.lookup_platform(n).segments for n in range(1, 5)] == [(Text(t),) for t in texts]  # type: ignore[union-attr]
    reopened.close()


def test_store_and_outbox_writers_share_the_file_while_another_thread_hogs_the_gil(db_path: str) -> None:
    # The bench's backlog phase logged "database is locked": the store's flush transaction re-took the GIL
    # per row while the trio thread was busy, holding the write lock past the outbox writer's busy timeout.
    # A longer switch interval makes every such re-take slower, so per-row writes would need ~10 s here.
    import sys
    import threading

    from relay.config import OutboxConfig
    from relay.storage.outbox import Outbox

    store = MessageStore.open(db_path, batch_size=10**9, busy_timeout=1.0)
    box = Outbox(db_path, OutboxConfig(), busy_timeout=1.0)
    box.register("a")
    stop = threading.Event()
    errors: list[BaseException] = []

    def hog() -> None:  # stands in for the trio thread parsing a burst
        while not stop.is_set():
            sum(range(100))

    cuts: list[int] = []

    def run(fn: object, *args: object) -> None:
        try:
            result = fn(*args)  # type: ignore[operator]
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        else:
            if args:  # write_batch returns the cut finish_batch needs
                cuts.append(result)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.02)
    hogger = threading.Thread(target=hog)
    hogger.start()
    try:
        for round_ in range(2):
            for n in range(500):
                store.record(msg(1_000 * round_ + n + 1))
                box.append(f'{{"syncId":"-1","data":{{"n":{n}}}}}')
            batch = box.take_batch()
            assert batch is not None
            writers = [
                threading.Thread(target=run, args=(store.flush,)),
                threading.Thread(target=run, args=(box.write_batch, batch)),
            ]
            for writer in writers:
                writer.start()
            for writer in writers:
                writer.join(timeout=60)
            box.finish_batch(batch, cuts.pop() if cuts else None)
            assert not errors, errors
    finally:
        stop.set()
        hogger.join(timeout=10)
        sys.setswitchinterval(previous)
    store.close()
    box.close()
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT COUNT(*) FROM messages_map").fetchone()[0] == 1000
    assert db.execute("SELECT COUNT(*) FROM outbox_events").fetchone()[0] == 1000


def test_fast_paths_match_the_converter_and_evolve() -> None:
    import attrs

    segments = (Text("a"), Text("b \u2028 😀"))
    expected = rows.segment_converter.unstructure(segments, tuple[rows.Segment, ...])
    assert rows._unstructure_segments(segments) == expected
    for sender in (ALICE, User(id=1, name="Bob")):
        unstructured = rows.segment_converter.unstructure(sender, rows.SENDER_TYPE)
        assert json.loads(rows._sender_json(sender)) == unstructured
    stored = rows.StoredMessage(
        conversation=G,
        local_id=1,
        channel_id=222,
        platform_id=3,
        author_id=111,
        time=T0,
        segments=segments,
        sender=ALICE,
        group=GROUP,
        from_self=True,
    )
    assert rows.from_row((222, 1, "group", 222, 3, 111, T0, rows.payload(stored))) == stored
    store = MessageStore.open(":memory:")
    original = msg(5, from_self=True, quote=Quote(ref=MessageRef(conversation=G, platform_id=4), author_id=9))
    recorded = store.record(original)
    assert recorded == attrs.evolve(original, local_id=recorded.local_id, quote=recorded.quote)
    assert recorded.quote is not None and recorded.quote.ref.local_id == 1 and recorded.local_id == 2
    store.close()


def test_flushed_cache_entries_are_plain_rows_the_gc_ignores_and_lookups_rebuild(db_path: str) -> None:
    import gc

    store = MessageStore.open(db_path, batch_size=10**9)
    recorded = [store.record(msg(n, segments=(Text(f"t{n}"), Mention(user_id=5)))) for n in range(1, 51)]
    before = {n: store.lookup_platform(n) for n in range(1, 51)}
    assert store.flush() == 50
    gc.collect()  # tuples of ints and strings are untracked at their first collection
    entries = list(store._by_local.values())
    assert entries and all(isinstance(e, tuple) and not gc.is_tracked(e) for e in entries)
    for message in recorded:
        assert store.lookup_platform(message.platform_id) == before[message.platform_id]
        assert store.lookup_local(G, message.local_id) == before[message.platform_id]
        assert store.record(message).local_id == message.local_id  # a replayed event keeps its id
    quoting = store.record(msg(99, quote=Quote(ref=MessageRef(conversation=G, platform_id=7))))
    assert quoting.quote is not None and quoting.quote.ref.local_id == 7 and quoting.quote.ref.channel_id == 222
    assert store.prune(T0 + 31 * DAY) == 51 and store.lookup_platform(1) is None
    store.close()


def test_old_sqlite_without_the_json_operators_writes_row_by_row(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "BULK_SUPPORTED", False)
    store = MessageStore.open(db_path, batch_size=10**9)
    ids = [store.record(msg(n)).local_id for n in range(1, 11)]
    store.close()
    reopened = MessageStore.open(db_path, cache_size=1, batch_size=1)
    reopened._by_local.clear()
    reopened._by_platform.clear()
    assert [reopened.lookup_platform(n).local_id for n in range(1, 11)] == ids  # type: ignore[union-attr]
    assert reopened.record(msg(11)).local_id == 11
    reopened.close()


def test_a_store_of_the_without_rowid_layout_is_moved_to_the_rowid_table_once(db_path: str) -> None:
    """messages_map became a rowid table (issue 18: ~1 KB rows in a WITHOUT ROWID table cost 95 µs of SQLite per
    row with 1,000 conversations in a batch); a file of the old layout keeps every row and id."""
    store = MessageStore.open(db_path)
    for platform_id in (700, 701):
        store.record(msg(platform_id))
    store.record(msg(702, conversation=DM))
    store.close()
    old_layout = store_module._SCHEMA.replace(
        "UNIQUE (conversation_id, local_id)\n);", "PRIMARY KEY (conversation_id, local_id)\n) WITHOUT ROWID;"
    )
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("ALTER TABLE messages_map RENAME TO newer")
    db.execute("DROP INDEX messages_map_platform")
    db.execute("DROP TABLE messages_newest")  # that layout had a time index instead
    db.executescript(old_layout)
    db.execute("DROP TABLE messages_newest")
    db.execute("CREATE INDEX messages_map_time ON messages_map (conversation_id, time)")
    db.execute("INSERT INTO messages_map SELECT * FROM newer")
    db.execute("DROP TABLE newer")
    assert "WITHOUT ROWID" in db.execute("SELECT sql FROM sqlite_master WHERE name = 'messages_map'").fetchone()[0]
    db.close()

    reopened = MessageStore.open(db_path, cache_size=1, batch_size=1)
    table = reopened._conn.execute("SELECT sql FROM sqlite_master WHERE name = 'messages_map'").fetchone()[0]
    assert "WITHOUT ROWID" not in table and "UNIQUE (conversation_id, local_id)" in table
    assert reopened.record(msg(701)).local_id == 2  # a replayed event keeps its id
    assert reopened.record(msg(703)).local_id == 3
    found = reopened.lookup_platform(702)
    assert found is not None and found.conversation == DM
    assert [m.platform_id for m in reopened.history(G, 0, T0 + 1, 10)] == [700, 701, 703]
    assert reopened.newest_in_channel(G.id, 222) == 703
    assert reopened.newest_in_channel(DM.id, 777) == 702
    assert not reopened._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_map_time'").fetchall()
    reopened.close()
    again = MessageStore.open(db_path)  # once: nothing left to move
    assert again.lookup_local(G, 3) is not None
    again.close()


def test_a_channels_newest_message_is_known_pending_written_and_after_reopening(db_path: str) -> None:
    """Where a back-fill starts reading (adapters/discord/backfill_task.py): the largest Discord id of the channel."""
    store = MessageStore.open(db_path, batch_size=10**9)
    for platform_id in (5, 9, 7):
        store.record(msg(platform_id))
    store.record(msg(3, conversation=DM))
    assert store.newest_in_channel(G.id, 222) == 9  # pending
    store.flush()
    assert store.newest_in_channel(G.id, 222) == 9  # written
    store.record(msg(8))  # older than the newest: it stays 9
    store.flush()
    assert store.newest_in_channel(G.id, 222) == 9
    store.record(msg(12))
    assert store.newest_in_channel(G.id, 222) == 12
    store.close()
    reopened = MessageStore.open(db_path)
    assert reopened.newest_in_channel(G.id, 222) == 12
    assert reopened.newest_in_channel(DM.id, 777) == 3
    assert reopened.newest_in_channel(G.id, 333) is None  # a channel with no message
    assert reopened.newest_in_channel(G.id, 2**64) is None  # beyond SQLite's integers
    newest = reopened.lookup_platform(12)
    assert newest is not None
    assert reopened.forget(G, newest.local_id)
    assert reopened.newest_in_channel(G.id, 222) == 12  # still a sound place to read on from
    reopened.close()


def test_the_retention_prunes_a_channels_newest_message_with_its_rows(db_path: str) -> None:
    store = MessageStore.open(db_path, retention_days=7)
    store.record(msg(1, time=T0))
    store.record(msg(2, conversation=DM, time=T0))
    store.record(msg(3, conversation=DM, time=T0 + 10 * DAY))  # the same batch: the entry takes this row's time
    store.flush()
    assert store.prune(T0 + 8 * DAY) == 2
    assert store.newest_in_channel(G.id, 222) is None  # every row of the channel went
    assert store.newest_in_channel(DM.id, 777) == 3
    store.close()


@pytest.mark.parametrize("kept", [False, True], ids=["upgrade", "upgrade-after-a-rollback"])
def test_a_file_of_the_previous_version_gets_its_newest_messages_indexed_once(db_path: str, kept: bool) -> None:
    """The previous version kept a (conversation_id, time) index and no messages_newest; one that ran after this
    one put the index back and left messages_newest as it was (``kept``: stale). Either way the table is filled
    from the rows at open and the index goes."""
    store = MessageStore.open(db_path)
    store.record(msg(700))
    store.record(msg(701, conversation=DM))
    store.close()
    db = sqlite3.connect(db_path, isolation_level=None)
    if not kept:
        db.execute("DROP TABLE messages_newest")
    db.execute("CREATE INDEX messages_map_time ON messages_map (conversation_id, time)")
    # a row that version wrote (local id 2 of the group, its counter too)
    db.execute(
        "INSERT INTO messages_map SELECT conversation_id, 2, conversation_kind, channel_id, 705, author_id, time, "
        "payload FROM messages_map WHERE platform_id = 700"
    )
    db.execute("UPDATE messages_counter SET last_id = 2 WHERE conversation_id = ?", (G.id,))
    db.close()

    reopened = MessageStore.open(db_path)
    assert reopened.newest_in_channel(G.id, 222) == 705
    assert reopened.newest_in_channel(DM.id, 777) == 701
    names = {row[0] for row in reopened._conn.execute("SELECT name FROM sqlite_master")}
    assert "messages_map_time" not in names and "messages_newest" in names
    assert reopened.record(msg(706)).local_id == 3
    reopened.close()
