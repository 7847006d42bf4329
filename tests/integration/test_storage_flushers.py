"""The store and outbox flushers and the gateway reader's back-pressure on them (relay.storage.flushers), against a
real outbox and store."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio

from relay.config import OutboxConfig
from relay.storage.flushers import (
    FLUSH_AT_ONCE,
    READER_HOLD_FRAMES,
    READER_HOLD_MAX,
    Wakeup,
    make_room,
    serve_outbox_flusher,
    serve_store_flusher,
)
from relay.storage.outbox import FLUSH_INTERVAL, Outbox
from relay.storage.store import MessageStore
from tests.unit.test_store import msg as message


def frame(i: int) -> str:
    return f'{{"syncId":"-1","data":{{"type":"GroupMessage","n":{i}}}}}'


async def test_room_is_there_while_the_writers_keep_up(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    with Outbox(path, OutboxConfig()) as outbox:
        for i in range(READER_HOLD_FRAMES - 1):
            outbox.append(frame(i))
        with trio.fail_after(5):
            await make_room(outbox, store)()  # below the mark: returns at once
    store.close()


async def test_a_reader_waits_until_the_flusher_has_written(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    with Outbox(path, OutboxConfig()) as outbox:
        for i in range(READER_HOLD_FRAMES):
            outbox.append(frame(i))
        wait_for_room = make_room(outbox, store)
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def reader() -> None:
                await wait_for_room()
                done.set()

            nursery.start_soon(reader)
            await trio.sleep(READER_HOLD_MAX / 10)
            assert not done.is_set()  # held: the frames wait for the writer
            await nursery.start(serve_outbox_flusher, outbox)
            with trio.fail_after(READER_HOLD_MAX):
                await done.wait()  # the flusher took the batch: room again, before the hold's time limit
            assert outbox.waiting_writes < READER_HOLD_FRAMES
            nursery.cancel_scope.cancel()
        assert outbox.statistics().pending_writes == 0
        assert outbox.read_after(0, 2 * READER_HOLD_FRAMES)[-1][0] == READER_HOLD_FRAMES  # nothing lost
    store.close()


async def test_a_writer_that_never_catches_up_holds_the_reader_only_briefly(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # no flusher at all (as if the disk were failing): the hold ends after READER_HOLD_MAX, so the shard still reads
    # its heartbeat ACKs; the outbox's own bounds deal with the frames
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path)
    with Outbox(path, OutboxConfig()) as outbox:
        for i in range(READER_HOLD_FRAMES):
            outbox.append(frame(i))
        started = trio.current_time()
        with trio.fail_after(10 * READER_HOLD_MAX):
            await make_room(outbox, store)()
        assert READER_HOLD_MAX <= trio.current_time() - started < 2 * READER_HOLD_MAX
        assert outbox.waiting_writes == READER_HOLD_FRAMES
    store.close()


async def test_the_flusher_takes_a_burst_without_sleeping_out_its_interval(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # frames no framework has taken pile up (a framework is down): the flusher is woken for them instead of
    # sleeping out FLUSH_INTERVAL while the gateway reader is held
    path = str(tmp_path / "bridge.sqlite3")
    with Outbox(path, OutboxConfig()) as outbox:
        outbox.register("down")
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_outbox_flusher, outbox)
            await trio.sleep(FLUSH_INTERVAL / 5)  # the flusher is asleep now
            for i in range(FLUSH_AT_ONCE):
                outbox.append(frame(i))
            with trio.fail_after(FLUSH_INTERVAL / 2):
                while outbox.waiting_writes:
                    await trio.sleep(FLUSH_INTERVAL / 50)
            nursery.cancel_scope.cancel()
        assert [seq for seq, _ in outbox.read_after(0, 2 * FLUSH_AT_ONCE)] == list(range(1, FLUSH_AT_ONCE + 1))


async def test_a_store_flusher_cancelled_before_its_thread_starts_still_writes_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # shutdown can cancel the flusher between taking a batch and handing it to a worker thread: the batch goes
    # back, and the final flush writes it (it used to wait for a batch nobody would write)
    monkeypatch.setattr("relay.storage.store.BATCH_WAIT_TIMEOUT", 1.0)  # a regression fails here instead of hanging
    path = str(tmp_path / "bridge.sqlite3")
    wake = Wakeup()
    store = MessageStore.open(path, batch_size=4, on_batch_full=wake.set)
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_store_flusher, store, wake, threading.Lock())
                for n in range(1, 5):
                    store.record(message(n))  # the 4th fills the batch and wakes the flusher
                scope.cancel()  # pending when the flusher wakes: it takes the batch, then to_thread is cancelled
    assert store.pending == 0
    store.close()
    peek = sqlite3.connect(path)
    assert [row[0] for row in peek.execute("SELECT platform_id FROM messages_map ORDER BY platform_id")] == [1, 2, 3, 4]
    peek.close()


async def test_the_outbox_flusher_writes_periodically_and_once_more_on_exit(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    with trio.fail_after(30), Outbox(path, OutboxConfig()) as box:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_outbox_flusher, box)
            box.append(frame(1))
            peek = sqlite3.connect(path)
            while peek.execute("SELECT COUNT(*) FROM outbox_events").fetchone()[0] == 0:
                await trio.sleep(0.01)  # flushed within FLUSH_INTERVAL, not only on close
            box.append(frame(2))
            nursery.cancel_scope.cancel()
        assert peek.execute("SELECT COUNT(*) FROM outbox_events").fetchone()[0] == 2  # final flush on exit
