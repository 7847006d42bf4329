"""One flush, one transaction: message-id rows, outbox frames and the gateway session snapshot are committed
together (relay.storage.flush, relay.storage.flushers, relay.storage.sessions), and a crash leaves a file that is
consistent with itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import trio

from relay.config import OutboxConfig
from relay.errors import StoreError
from relay.storage import flush
from relay.storage.flushers import Wakeup, serve_flusher
from relay.storage.outbox import Outbox
from relay.storage.sessions import SavedSessions, load_gateway_sessions
from relay.storage.store import MessageStore
from tests.unit.test_store import msg

REPO = Path(__file__).resolve().parents[2]
GUARD = 60  # seconds: a hang fails the test instead of blocking the suite


def frame(n: int) -> str:
    return f'{{"syncId":"-1","data":{{"type":"GroupMessage","n":{n}}}}}'


def opened(path: str) -> tuple[MessageStore, Outbox]:
    store = MessageStore.open(path)
    outbox = Outbox(path, OutboxConfig())
    outbox.register("fw")  # a framework that is away: every frame is written
    return store, outbox


def count(path: str, sql: str) -> int:
    peek = sqlite3.connect(path)
    try:
        return int(peek.execute(sql).fetchone()[0])
    finally:
        peek.close()


def test_rows_frames_and_the_session_are_one_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store, outbox = opened(path)
    for n in range(1, 4):
        store.record(msg(n))
        outbox.append(frame(n))
    sessions = flush.Sessions(lambda: {0: '{"seq": 3}', 1: '{"seq": 9}'})
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    flush.flush_now(store, outbox, sessions, outbox.write_lock, now=1_700_000_000.0)
    store._conn.set_trace_callback(None)
    assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert count(path, "SELECT COUNT(*) FROM messages_map") == 3
    assert count(path, "SELECT COUNT(*) FROM outbox_events") == 3
    assert load_gateway_sessions(path) == SavedSessions({0: '{"seq": 3}', 1: '{"seq": 9}'}, 1_700_000_000.0)
    assert store.pending == 0 and outbox.statistics().pending_writes == 0
    outbox.close()
    store.close()


def test_a_failure_in_any_part_keeps_every_part_for_the_next_flush(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store, outbox = opened(path)
    store.record(msg(1))
    outbox.append(frame(1))
    flush.flush_now(store, outbox, None, outbox.write_lock, now=1.0)  # creates nothing for sessions yet
    # the session part fails (as a full disk would, half-way through the transaction)
    store._conn.execute("CREATE TABLE IF NOT EXISTS gateway_sessions (shard_id INTEGER PRIMARY KEY, state, saved_at)")
    store._conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON gateway_sessions BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    store.record(msg(2))
    outbox.append(frame(2))
    sessions = flush.Sessions(lambda: {0: '{"seq": 2}'})
    with pytest.raises(StoreError, match="disk full"):
        flush.flush_now(store, outbox, sessions, outbox.write_lock, now=2.0)
    assert count(path, "SELECT COUNT(*) FROM messages_map") == 1  # the row and the frame were rolled back too
    assert count(path, "SELECT COUNT(*) FROM outbox_events") == 1
    assert store.pending == 1 and outbox.waiting_writes == 1  # and are still there to write
    store._conn.execute("DROP TRIGGER refuse")
    flush.flush_now(store, outbox, sessions, outbox.write_lock, now=3.0)
    assert count(path, "SELECT COUNT(*) FROM messages_map") == 2
    assert count(path, "SELECT COUNT(*) FROM outbox_events") == 2
    assert load_gateway_sessions(path).sessions == {0: '{"seq": 2}'}
    outbox.close()
    store.close()


def test_the_snapshot_is_written_when_it_changes_and_refreshed_when_it_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    outbox = Outbox(path, OutboxConfig(), clock=lambda: 10.0)  # a clock that stands still: no second age pass
    outbox.register("fw")
    flush.flush_now(store, outbox, None, outbox.write_lock, now=9.0)  # the new destination's cursor
    current: dict[int, str] | None = None
    sessions = flush.Sessions(lambda: current)
    assert flush.take(store, outbox, sessions, 10.0) is None  # nothing to say yet (no gateway)
    current = {0: "a"}
    flush.flush_now(store, outbox, sessions, outbox.write_lock, now=10.0)
    assert flush.take(store, outbox, sessions, 11.0) is None  # unchanged and recent
    batch = flush.take(store, outbox, sessions, 10.0 + flush.SESSION_REFRESH)  # unchanged, but its time is stale
    assert batch is not None and batch.sessions == {0: "a"}
    flush.finish(batch, store, outbox, sessions, committed=False, cut=None)
    current = {}  # the session ended (e.g. invalidated): nothing to resume
    flush.flush_now(store, outbox, sessions, outbox.write_lock, now=12.0)
    assert load_gateway_sessions(path) == SavedSessions({}, 0.0)

    def broken() -> dict[int, str]:
        raise RuntimeError("adapter bug")

    sessions = flush.Sessions(broken)
    outbox.append(frame(1))
    with caplog.at_level(logging.ERROR):
        flush.flush_now(store, outbox, sessions, outbox.write_lock, now=13.0)
        outbox.append(frame(2))
        flush.flush_now(store, outbox, sessions, outbox.write_lock, now=14.0)
    assert count(path, "SELECT COUNT(*) FROM outbox_events") == 2  # the frames are written all the same
    assert len([r for r in caplog.records if "snapshot failed" in r.getMessage()]) == 1  # said once
    outbox.close()
    store.close()


def test_load_gateway_sessions_of_a_missing_or_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite3"
    assert load_gateway_sessions(str(missing)) == SavedSessions()
    assert not missing.exists()  # looking did not create it
    path = str(tmp_path / "bridge.sqlite3")
    MessageStore.open(path).close()
    assert load_gateway_sessions(path) == SavedSessions()
    assert load_gateway_sessions(":memory:") == SavedSessions()


async def test_the_flusher_writes_all_three_as_they_come(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store, outbox = opened(path)
    seq = 0
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve_flusher, store, outbox, Wakeup(), sessions=lambda: {0: json.dumps({"seq": seq})})
            )
            for n in range(1, 201):
                seq = n
                store.record(msg(n, time=int(time.time())))  # recent: the flusher's retention pass keeps it
                outbox.append(frame(n))
                if n % 50 == 0:
                    while json.loads(load_gateway_sessions(path).sessions.get(0, '{"seq": 0}'))["seq"] < n:
                        await trio.sleep(0.01)  # written within a flush interval, with the rows and frames
                    assert count(path, "SELECT COUNT(*) FROM messages_map") == n
                    assert count(path, "SELECT COUNT(*) FROM outbox_events") == n
            nursery.cancel_scope.cancel()
    outbox.close()
    store.close()


@pytest.mark.parametrize("crash", [1, 2])
async def test_a_crash_leaves_exactly_the_frames_the_saved_session_accounts_for(tmp_path: Path, crash: int) -> None:
    # kill -9 in mid-stream (~1,000 dispatches a second): whatever the moment, the saved session's seq is the
    # last dispatch whose frame is on disk, every frame up to it is there once, and each one's message id has its
    # row and a counter at least as high. Resuming from that seq then replays exactly what the file lacks.
    path = str(tmp_path / "bridge.sqlite3")
    child = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.integration.storage_crash_child", path],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with trio.fail_after(GUARD):
            while True:  # let it run for a while: some thousands of dispatches, dozens of flushes
                sessions = load_gateway_sessions(path).sessions
                if sessions and json.loads(sessions[0])["seq"] >= 1_000 * crash:
                    break
                assert child.poll() is None, "the child stopped by itself"
                await trio.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        with trio.CancelScope(shield=True), trio.fail_after(GUARD):
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = load_gateway_sessions(path)
    seq = json.loads(saved.sessions[0])["seq"]
    peek = sqlite3.connect(path)
    try:
        frames = [json.loads(f) for (f,) in peek.execute("SELECT frame FROM outbox_events ORDER BY seq")]
        rows = set(peek.execute("SELECT conversation_id, local_id FROM messages_map"))
        counters = dict(peek.execute("SELECT conversation_id, last_id FROM messages_counter"))
    finally:
        peek.close()
    assert seq >= 1_000 * crash
    assert [f["seq"] for f in frames] == list(range(1, seq + 1))
    for f in frames:
        assert (f["conversation"], f["id"]) in rows
        assert counters[f["conversation"]] >= f["id"]


async def test_flushed_returns_once_everything_before_it_is_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store, outbox = opened(path)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            flusher = await nursery.start(
                partial(serve_flusher, store, outbox, Wakeup(), sessions=lambda: {0: '{"seq": 5}'})
            )
            await flusher.flushed()  # nothing to write yet: at once
            for n in range(1, 6):
                store.record(msg(n, time=int(time.time())))
                outbox.append(frame(n))
            await flusher.flushed()
            assert count(path, "SELECT COUNT(*) FROM messages_map") == 5
            assert count(path, "SELECT COUNT(*) FROM outbox_events") == 5
            assert load_gateway_sessions(path).sessions == {0: '{"seq": 5}'}
            nursery.cancel_scope.cancel()
    outbox.close()
    store.close()
