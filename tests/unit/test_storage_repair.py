"""``store check`` and ``store repair`` (relay.storage.repair, through the command line of relay.cli): a damaged
file is reported, its readable rows are salvaged into a fresh file, and the damaged file is kept beside it."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from relay.cli import main
from relay.config import OutboxConfig
from relay.storage import flush, repair
from relay.storage.outbox import Outbox
from relay.storage.sessions import load_gateway_sessions
from relay.storage.store import MessageStore
from tests.sqlite_damage import damage_table
from tests.unit.test_store import DM, G, msg

MESSAGES = 3_000
FRAMES = 1_000


def make_store(path: str) -> None:
    """Messages in two conversations, a backlog of frames for an absent framework, a saved session."""
    store = MessageStore.open(path)
    outbox = Outbox(path, OutboxConfig())
    outbox.register("fw")
    for n in range(1, MESSAGES + 1):
        store.record(msg(n, conversation=G if n % 3 else DM))
    for n in range(1, FRAMES + 1):
        outbox.append(f'{{"n":{n},"pad":"{"x" * 300}"}}')
    flush.flush_now(store, outbox, flush.Sessions(lambda: {0: '{"seq": 7}'}), outbox.write_lock, now=1e9)
    outbox.close()
    store.close()


def rows(path: str, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def write_config(tmp_path: Path, store: str) -> str:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[[mirai.reverse_ws.destinations]]\nhost = "127.0.0.1"\nport = 8080\n\n[store]\npath = "{store}"\n',
        encoding="utf-8",
    )  # the file `run` uses; no secrets needed
    return str(config)


def test_check_says_sound_for_a_sound_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    make_store(path)
    assert main(["store", "check", write_config(tmp_path, path)], env={}) == 0
    report = capsys.readouterr().out
    assert "integrity check: ok" in report and "result: sound" in report
    assert f"messages_map: {MESSAGES:,} rows readable" in report
    assert f"outbox_events: {FRAMES:,} rows readable" in report


@pytest.mark.parametrize("table", ["messages_map", "outbox_events"])
def test_repair_salvages_every_readable_row_and_keeps_the_damaged_file(
    tmp_path: Path, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    make_store(path)
    before = {t: rows(path, f"SELECT * FROM {t}") for t in ("messages_map", "messages_counter", "outbox_events")}
    damage_table(path, table)
    config = write_config(tmp_path, path)

    assert main(["store", "check", config], env={}) == 1
    report = capsys.readouterr().out
    assert "result: DAMAGED" in report and f"{table}: " in report and "unreadable" in report

    assert main(["store", "repair", config], env={}) == 0
    report = capsys.readouterr().out
    kept = [p for p in os.listdir(tmp_path) if p.startswith("bridge.sqlite3.damaged-")]
    assert kept and any(not p.endswith(("-wal", "-shm")) for p in kept)  # never deleted
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    after = {t: rows(path, f"SELECT * FROM {t}") for t in before}
    # the damaged table lost one page of rows, at most; every other table and row is there, unchanged
    for name, old in before.items():
        if name == table:
            assert set(after[name]) < set(old) and len(old) - len(after[name]) < 100
            assert f"{name}: {len(after[name]):,} rows recovered; lost: " in report
            assert f"{len(old) - len(after[name])} rows or fewer" in report
        else:
            assert after[name] == old
    assert load_gateway_sessions(path).sessions == {0: '{"seq": 7}'}
    assert main(["store", "check", config], env={}) == 0  # the repaired file is sound
    assert "result: sound" in capsys.readouterr().out
    store = MessageStore.open(path)  # and the bridge can use it: ids go on after the old ones
    last_issued = max(int(r[1]) for r in before["messages_map"] if r[0] == G.id)  # type: ignore[call-overload]
    assert store.record(msg(MESSAGES + 1)).local_id == last_issued + 1
    store.close()


@pytest.mark.parametrize(
    ("table", "query", "said"),
    [
        ("messages_counter", "SELECT conversation_id, last_id FROM messages_counter", "1 lost counter(s) rebuilt"),
        # the back-fill's starting point (relay/storage/store.py newest_in_channel): the channel's largest id
        ("messages_newest", "SELECT channel_id, platform_id FROM messages_newest", ""),
    ],
)
def test_a_lost_counter_or_newest_message_is_rebuilt_from_the_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, query: str, said: str
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    for n in range(1, 5):
        store.record(msg(n))
    store.close()
    db = sqlite3.connect(path)
    db.execute(f"DELETE FROM {table}")  # as if its page had been lost
    db.commit()
    db.close()
    assert repair.repair(path, out=print) == 0
    assert said in capsys.readouterr().out
    assert rows(path, query) == [(G.id, 4)]  # the group's channel is the conversation; its id 4, its newest 4


def test_nothing_to_check_or_repair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.sqlite3")
    assert repair.check(missing) == 1 and repair.repair(missing) == 1
    assert not os.path.exists(missing)
    assert "no store at" in capsys.readouterr().out
