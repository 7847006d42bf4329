"""Message ids a store may hand out: the clock seed of a conversation's first id, and rows whose integers SQLite
cannot hold (relay.storage.store, relay.storage.rows)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from relay.envelope import INT32_MAX, ConversationRef, MessageRef, Quote, Text, User
from relay.storage import store as store_module
from relay.storage.store import MessageStore, first_id_from_clock
from tests.unit.test_store import DM, T0, G, msg

DAY = 86_400


def test_the_clock_seed_stays_in_its_window_and_moves_with_time() -> None:
    low, high = store_module.SEED_LOW, INT32_MAX - store_module.SEED_HEADROOM
    for now in (0.0, store_module.SEED_EPOCH, T0, 2_000_000_000.0, 4_000_000_000.0, -1e9):
        assert low <= first_id_from_clock(now) < high
    # ten ids a second: a store opened a day after another starts 864,000 ids further on
    assert first_id_from_clock(T0 + DAY) - first_id_from_clock(T0) == DAY * store_module.SEED_IDS_PER_SECOND
    assert store_module.SEED_PERIOD_DAYS > 6 * 365  # it comes round again after more than six years


def test_a_store_that_replaces_a_lost_one_issues_none_of_its_ids(tmp_path: Path) -> None:
    # a store lived for a day and issued 500,000 ids in one busy conversation (almost 6 a second), then was lost
    lost_at = T0 + DAY
    first = MessageStore.open(str(tmp_path / "old.sqlite3"), first_id=first_id_from_clock(T0))
    issued = [first.record(msg(n)).local_id for n in range(1, 11)]
    first._counters[G.id] = issued[-1] + 500_000 - 10  # the rest of its day, without building the messages
    last_issued = first.record(msg(11)).local_id
    first.close()
    # its replacement, opened a minute after the loss, starts above every id the old one gave out
    second = MessageStore.open(str(tmp_path / "new.sqlite3"), first_id=first_id_from_clock(lost_at + 60))
    assert second.record(msg(1)).local_id > last_issued
    assert second.record(msg(2, conversation=DM)).local_id > last_issued
    second.close()


def test_first_id_applies_only_to_conversations_without_a_counter(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)  # from 1, as before seeds existed
    assert [store.record(msg(n)).local_id for n in (1, 2)] == [1, 2]
    store.close()
    reopened = MessageStore.open(path, first_id=5_000_000)
    assert reopened.record(msg(3)).local_id == 3  # a known conversation keeps counting
    assert reopened.record(msg(4, conversation=DM)).local_id == 5_000_000  # a new one starts at the seed
    reopened.close()
    with pytest.raises(ValueError, match="first_id"):
        MessageStore.open(":memory:", first_id=0)


def test_knows_conversation_follows_the_ids_issued_and_what_the_file_holds(tmp_path: Path) -> None:
    # what the back-fill asks on a first start: whether a conversation could have anything to read back
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    assert not store.knows_conversation(G.id) and not store.knows_conversation(DM.id)
    store.record(msg(1))
    assert store.knows_conversation(G.id) and not store.knows_conversation(DM.id)  # pending, not written yet
    store.close()
    reopened = MessageStore.open(path)
    assert reopened.knows_conversation(G.id) and not reopened.knows_conversation(DM.id)
    reopened.close()


@pytest.mark.parametrize(
    "field",
    ["platform_id", "author", "conversation", "channel_id", "time"],
)
def test_a_row_sqlite_cannot_hold_is_skipped_with_a_warning_not_the_batch(
    tmp_path: Path, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 15 item 4: a message id >= 2**63 reached the writer and OverflowError failed every later flush
    huge = 2**63
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    store.record(msg(1))
    if field == "platform_id":
        bad = msg(huge)
    elif field == "author":
        bad = msg(2, sender=User(id=huge, name="x"))
    elif field == "conversation":
        bad = msg(2, conversation=ConversationRef.group(10**400))
    elif field == "channel_id":
        bad = msg(2, channel_id=-(2**63) - 1)
    else:
        bad = msg(2, time=huge)
    recorded = store.record(bad)
    assert recorded.local_id >= 1  # it is relayed with an id all the same
    store.record(msg(3))
    with caplog.at_level(logging.WARNING, logger="relay.storage.rows"):
        assert store.flush() == 2  # the two others are written, in the same transaction
    assert any("beyond SQLite's 64-bit integers" in r.getMessage() for r in caplog.records)
    assert store.pending == 0
    store.record(msg(4))
    assert store.flush() == 1  # and later flushes are not wedged
    store.close()
    peek = sqlite3.connect(path)
    assert [r[0] for r in peek.execute("SELECT platform_id FROM messages_map ORDER BY platform_id")] == [1, 3, 4]
    peek.close()


def test_lookups_of_ids_sqlite_cannot_hold_find_nothing_instead_of_raising(tmp_path: Path) -> None:
    store = MessageStore.open(str(tmp_path / "bridge.sqlite3"))
    store.record(msg(1))
    store.flush()
    huge = 2**64
    assert store.lookup_platform(huge) is None
    assert store.lookup_local(huge, 1) is None
    assert store.conversation(huge) is None
    assert store.history(huge, 0, 2**70, 10) == []
    assert store.forget(huge, 1) is False
    # a reply quoting a message with such an id still gets its own id (the quote's lookup finds nothing)
    quote = Quote(
        ref=MessageRef(conversation=G, local_id=None, platform_id=huge, channel_id=G.id),
        author_id=5,
        origin=(Text("q"),),
    )
    assert store.record(msg(2, quote=quote)).local_id == 3  # the quoted message got id 2, the reply 3
    store.close()
