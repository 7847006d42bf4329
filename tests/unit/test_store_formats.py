"""The message store's row format and lean cache: old files keep loading, odd content survives, the cache stays
small (relay/storage/store.py)."""

from __future__ import annotations

import gc
import json
import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from relay.envelope import (
    INT32_MAX,
    Audio,
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
    Text,
    User,
)
from relay.errors import StoreError
from relay.storage import rows
from relay.storage.rows import StoredMessage
from relay.storage.store import MessageStore

GROUP = Group(id=222, name="Dev", bot_role=Role.MEMBER, guild_id=1)
ALICE = Member(
    user_id=111,
    display_name="Alice 中",
    role=Role.ADMINISTRATOR,
    group=GROUP,
    joined_at=5,
    last_spoke_at=6,
    special_title="t",
)
BOB = User(id=444, name="Bob", username="bob")
G = ConversationRef.group(222)
DM = ConversationRef.private(444)
T0 = 1_700_000_000

#: payloads exactly as the previous store version (json module, before orjson) wrote them
OLD_GROUP_PAYLOAD = (
    '{"segments":[{"text":"hi \\"there\\" 😀","kind":"Text"},{"user_id":5,"display":"Bob","kind":"Mention"},'
    '{"id":null,"url":"https://cdn/a.png","data":null,"filename":"","content_type":"","size":0,"width":3,'
    '"height":0,"is_emoji":false,"kind":"Image"}],"sender":{"user_id":111,"display_name":"Alice 中",'
    '"role":"ADMINISTRATOR","group":{"id":222,"name":"Dev","bot_role":"MEMBER","guild_id":1},"joined_at":5,'
    '"last_spoke_at":6,"mute_remaining":0,"special_title":"t","is_bot":false,"kind":"Member"},'
    '"group":{"id":222,"name":"Dev","bot_role":"MEMBER","guild_id":1},"quote":{"ref":{"conversation":'
    '{"kind":"group","id":222},"local_id":6,"platform_id":1006,"channel_id":222},"author_id":5,'
    '"origin":[{"text":"q","kind":"Text"}]},"from_self":true}'
)
OLD_DM_PAYLOAD = (
    '{"segments":[{"text":"dm","kind":"Text"}],"sender":{"id":444,"name":"Bob","username":"bob","is_bot":false,'
    '"avatar_url":"","kind":"User"},"group":null,"quote":null,"from_self":false}'
)
OLD_GROUP_MESSAGE = StoredMessage(
    conversation=G,
    local_id=7,
    channel_id=222,
    platform_id=1007,
    author_id=111,
    time=T0,
    segments=(Text('hi "there" 😀'), Mention(user_id=5, display="Bob"), Image(url="https://cdn/a.png", width=3)),
    sender=ALICE,
    group=GROUP,
    quote=Quote(
        ref=MessageRef(conversation=G, local_id=6, platform_id=1006, channel_id=222), author_id=5, origin=(Text("q"),)
    ),
    from_self=True,
)
OLD_DM_MESSAGE = StoredMessage(
    conversation=DM,
    local_id=1,
    channel_id=777,
    platform_id=2001,
    author_id=444,
    time=T0 + 1,
    segments=(Text("dm"),),
    sender=BOB,
)


def msg(platform_id: int, *, conversation: ConversationRef = G, **kw: object) -> Message:
    fields: dict[str, object] = {
        "conversation": conversation,
        "channel_id": 222 if conversation == G else 777,
        "platform_id": platform_id,
        "time": T0 + platform_id,
        "sender": ALICE if conversation == G else BOB,
        "segments": (Text(f"m{platform_id}"),),
        "group": GROUP if conversation == G else None,
    }
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "bridge.sqlite3")


def test_a_file_written_by_the_previous_version_still_loads(db_path: str) -> None:
    MessageStore.open(db_path).close()  # the schema is unchanged; only the rows below matter
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "INSERT INTO messages_map VALUES (?,?,?,?,?,?,?,?)",
            [
                (222, 7, "group", 222, 1007, 111, T0, OLD_GROUP_PAYLOAD),
                (444, 1, "private", 777, 2001, 444, T0 + 1, OLD_DM_PAYLOAD),
            ],
        )
        db.executemany("INSERT INTO messages_counter VALUES (?, ?)", [(222, 7), (444, 1)])
    store = MessageStore.open(db_path)
    assert store.lookup_local(G, 7) == OLD_GROUP_MESSAGE
    assert store.lookup_platform(2001) == OLD_DM_MESSAGE
    assert store.lookup_local(444, 1) == OLD_DM_MESSAGE
    assert store.history(G, 0, 2**63 - 1, 10) == [OLD_GROUP_MESSAGE]
    # the warmed cache knows both ids: replays keep them, new messages continue the counters
    assert store.record(OLD_GROUP_MESSAGE.to_message()).local_id == 7
    assert store.record(msg(3000)).local_id == 8
    store.close()


def test_new_rows_keep_the_previous_format(db_path: str) -> None:
    # a file written now stays readable by the previous version (a rollback keeps working)
    for stored, old in ((OLD_GROUP_MESSAGE, OLD_GROUP_PAYLOAD), (OLD_DM_MESSAGE, OLD_DM_PAYLOAD)):
        assert json.loads(rows.payload(stored)) == json.loads(old)
    store = MessageStore.open(db_path)
    store.record(OLD_DM_MESSAGE.to_message())
    store.close()
    row = sqlite3.connect(db_path).execute("SELECT payload FROM messages_map").fetchone()
    assert json.loads(row[0]) == json.loads(OLD_DM_PAYLOAD)


def test_the_fast_dict_builders_match_the_converter() -> None:
    converter = rows.segment_converter
    for sender in (ALICE, BOB, User(id=1, name="")):
        assert rows._sender_dict(sender) == converter.unstructure(sender, rows.SENDER_TYPE)
    assert rows._group_dict(GROUP) == converter.unstructure(GROUP, Group)
    for segments in ((Text("one"),), (Text("a"), Text("b")), (Text("a"), Emoji(id=1, name="e")), ()):
        expected = converter.unstructure(segments, tuple[rows.Segment, ...])
        assert list(rows._unstructure_segments(segments)) == list(expected)


def test_content_orjson_refuses_is_stored_through_the_stdlib(db_path: str) -> None:
    # A lone surrogate can reach a message (the gateway decoder falls back to json.loads, which accepts
    # "\ud800" escapes) and so can an id beyond 64 bits; neither may cost the row its content or wedge a flush.
    store = MessageStore.open(db_path, batch_size=10**9)
    lone = Text("broken \ud800 pair")
    huge = Emoji(id=2**70, name="big")
    store.record(msg(1, segments=(lone,)))
    store.record(msg(2, segments=(Text("ok"), huge)))
    store.record(msg(3))
    # a NaN duration (json.loads accepts one from the gateway) must not make the file unreadable at open
    store.record(msg(4, segments=(Audio(url="https://cdn/v.ogg", duration=math.nan),)))
    store.record(msg(5, quote=Quote(ref=MessageRef(conversation=G, platform_id=4), origin=(Audio(duration=math.inf),))))
    assert store.flush() == 5
    store.close()
    reopened = MessageStore.open(db_path)
    assert reopened.lookup_local(G, 1).segments == (lone,)  # type: ignore[union-attr]
    assert reopened.lookup_local(G, 2).segments == (Text("ok"), huge)  # type: ignore[union-attr]
    assert reopened.lookup_local(G, 3).segments == (Text("m3"),)  # type: ignore[union-attr]
    audio = reopened.lookup_local(G, 4).segments[0]  # type: ignore[union-attr]
    assert isinstance(audio, Audio) and audio.url == "https://cdn/v.ogg" and math.isnan(audio.duration)
    quote = reopened.lookup_local(G, 5).quote  # type: ignore[union-attr]
    assert quote is not None and quote.origin == (Audio(duration=math.inf),)
    reopened.close()


def test_flushed_entries_keep_only_ids_and_lookups_read_the_rest_from_sqlite(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=10**9)
    quoted = store.record(msg(1, segments=(Text("original"), Mention(user_id=5))))
    reply = store.record(msg(2, quote=Quote(ref=MessageRef(conversation=G, platform_id=1), author_id=111)))
    dm = store.record(msg(3, conversation=DM))
    before = [store.lookup_platform(n) for n in (1, 2, 3)]
    assert store.flush() == 3
    gc.collect()
    for entry in store._by_local.values():
        assert type(entry) is tuple and all(type(value) is int for value in entry)  # no payload kept
        assert not gc.is_tracked(entry)
    assert [store.lookup_platform(n) for n in (1, 2, 3)] == before
    assert store.lookup_local(G, quoted.local_id) == before[0]
    assert store.lookup_local(444, dm.local_id) == before[2]
    assert reply.quote is not None and reply.quote.ref.local_id == quoted.local_id
    # the event path still needs nothing from disk: replays and replies resolve from the ids alone
    statements: list[str] = []
    for connection in (store._conn, store._reader):
        connection.set_trace_callback(statements.append)
    assert store.record(reply).local_id == reply.local_id
    again = store.record(msg(4, quote=Quote(ref=MessageRef(conversation=G, platform_id=2))))
    assert again.quote is not None
    assert (again.quote.ref.local_id, again.quote.ref.channel_id) == (reply.local_id, 222)
    assert statements == []
    assert store.lookup_platform(1) == before[0]
    assert statements  # a flushed message's content is read back from the file
    store.close()


def test_the_cache_stays_bounded_through_eviction_forget_and_prune(db_path: str) -> None:
    store = MessageStore.open(db_path, batch_size=5, cache_size=20)
    local_ids = [store.record(msg(n, conversation=G if n % 3 else DM)).local_id for n in range(1, 201)]
    assert len(store._by_local) == 20
    assert len(store._by_platform) == 20
    assert len(store._age) <= 40
    # the oldest are gone from memory but found in SQLite; the newest are still cached
    assert store.lookup_platform(1) is not None and store.lookup_platform(1).local_id == local_ids[0]  # type: ignore[union-attr]
    for n in range(190, 201):
        assert store.forget(G if n % 3 else DM, local_ids[n - 1]) is True
    for n in range(201, 301):
        store.record(msg(n, conversation=G if n % 3 else DM))
    assert len(store._by_local) == 20 and len(store._age) <= 40
    store.prune(T0 + 30 * 86_400 + 290)  # the default 30-day retention: everything older than T0 + 290 goes
    assert sorted(store._by_platform) == list(range(290, 301))
    assert len(store._age) == len(store._by_local) == 11
    store.close()


def test_lookups_do_not_wait_for_a_flush_stuck_on_the_write_lock(db_path: str) -> None:
    # Flushed messages keep only their ids in memory, so a recall or quote of one reads SQLite on the event
    # loop's thread. It must not queue behind a flush waiting (up to busy_timeout) for another writer.
    store = MessageStore.open(db_path, busy_timeout=30.0)
    store.record(msg(1, segments=(Text("flushed"),)))
    store.flush()
    store.record(msg(2))  # gives the next flush something to write
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            store.flush()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    flusher = threading.Thread(target=flush)
    flusher.start()
    try:
        for _ in range(10_000):  # until the flusher holds the store's write lock (bounded: ~10 s at most)
            if not store._db.acquire(blocking=False):
                break
            store._db.release()
            time.sleep(0.001)
        else:
            pytest.fail("the flusher never took the write lock")
        found = store.lookup_platform(1)
        assert found is not None and found.segments == (Text("flushed"),)
        assert store.lookup_local(G, 1) == found
        assert store.conversation(222) == G
        assert flusher.is_alive()  # still waiting for the other writer: the lookups did not queue behind it
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        flusher.join(timeout=60)
    assert not errors
    assert store.pending == 0
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.lookup_platform(1)


def test_an_id_that_wraps_onto_a_cached_message_is_evicted_in_its_new_turn(db_path: str) -> None:
    store = MessageStore.open(db_path)
    for platform_id in (1, 2, 3):
        store.record(msg(platform_id))  # ids 1, 2, 3 in G
    store.close()
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE messages_counter SET last_id = ? WHERE conversation_id = 222", (INT32_MAX,))
    store = MessageStore.open(db_path, batch_size=2, cache_size=4, on_batch_full=lambda: None)
    assert sorted(store._by_platform) == [1, 2, 3]  # warmed: the oldest entries of the cache
    wrapped = store.record(msg(50))
    assert wrapped.local_id == 1  # the counter wrapped onto message 1, still cached
    store.record(msg(60, conversation=DM))
    store.record(msg(61, conversation=DM))  # one over the cache size: the oldest entry (message 2) goes
    assert sorted(store._by_platform) == [3, 50, 60, 61]
    assert store.record(msg(50)).local_id == 1  # the newest G message is still known without SQLite
    store.close()


def test_a_message_recorded_again_after_eviction_is_looked_up_by_its_newest_id(db_path: str) -> None:
    # record() only knows cached messages: a replay older than the cache gets a new id (and a second row);
    # lookups follow the cache, as the framework saw the newest id last
    store = MessageStore.open(db_path, batch_size=2, cache_size=4)
    first = store.record(msg(1)).local_id
    for platform_id in range(2, 8):
        store.record(msg(platform_id))
    again = store.record(msg(1)).local_id
    assert again != first
    store.flush()
    found = store.lookup_platform(1)
    assert found is not None and found.local_id == again
    assert store.lookup_local(G, first) is not None  # the older mapping still answers its own id
    store.close()
