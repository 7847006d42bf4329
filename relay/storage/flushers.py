"""The SQLite file's two writers, driven from trio: the store's and the outbox's flush loops, side by side, and
the gateway reader's back-pressure on them.

* :func:`serve_store_flusher` writes the message store's batches (every :data:`STORE_FLUSH_INTERVAL`, or at once
  when a batch is full: :class:`Wakeup`) and prunes it by retention;
* :func:`serve_outbox_flusher` writes the outbox's frames and cursors (every
  :data:`relay.storage.outbox.FLUSH_INTERVAL`, or back to back in a burst);
* :func:`make_room` is the hook the Discord reader awaits before each read: it returns once both writers have
  caught up (it belongs with the writers because its marks are theirs: the outbox's
  :data:`~relay.storage.outbox.MAX_PENDING_WRITES`, the store's batch size).

Both loops take their batch on the event loop (the Python work: encoding rows, choosing what to delete) and run
only the SQLite transaction in a worker thread, so the loop — the Discord reader and its heartbeats included —
never waits for the disk. Every transaction holds the file's one write lock,
:attr:`relay.storage.outbox.Outbox.write_lock` (the outbox takes it itself; the store's flusher holds it around
the store's writes), so the two writers take turns on a lock instead of in SQLite's busy handler (see
:mod:`relay.storage.sqlite`). Each loop flushes once more, synchronously, when it is cancelled.

The only module of :mod:`relay.storage` that imports trio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import attrs
import trio

from relay.errors import StoreError
from relay.storage.outbox import FLUSH_INTERVAL, MAX_PENDING_WRITES, Outbox
from relay.storage.store import MessageStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: seconds between message-store flushes (rows are also flushed as soon as a batch is full). Short on purpose:
#: a flush's Python work (~10 µs a row) holds the GIL in its worker thread, and the bench's paced p99 measured
#: 7-10 ms with 0.25 s batches vs 4.4-5.5 ms with 0.05 s ones (3.5-4.3 ms with no store flushing at all)
STORE_FLUSH_INTERVAL: Final = 0.05
#: seconds between message-store retention passes
STORE_PRUNE_INTERVAL: Final = 3600.0
#: the outbox flusher writes its next batch without waiting FLUSH_INTERVAL while this many frames wait: in a
#: burst the writer thread then runs back to back, and the gateway reader (which waits for room, see
#: make_room) is held only as long as the disk really is behind
FLUSH_AT_ONCE: Final = 256
#: appends between looks whether FLUSH_AT_ONCE frames wait (the look costs a min() and a bisect)
FLUSH_CHECK_EVERY: Final = 64
#: the gateway reader waits for room while this many frames wait for the outbox's writer thread: half the
#: point where Outbox.append would write them itself on the trio thread (relay.storage.outbox.MAX_PENDING_WRITES),
#: which would stall commands and framework writes too. Only the reader waits; Discord buffers meanwhile.
READER_HOLD_FRAMES: Final = MAX_PENDING_WRITES // 2
#: ... or while this many message-id rows wait for the store's flusher (two of its batches)
READER_HOLD_STORE_BATCHES: Final = 2
#: how often a held reader looks again (the writers finish a batch in milliseconds)
READER_HOLD_POLL: Final = 0.002
#: the longest one hold lasts. The reader also reads heartbeat ACKs, and one not read before the next beat makes
#: the shard drop the connection as a zombie (discord.md §2.4): a writer that is failing rather than slow must
#: not stall Discord for that long; the outbox's own bounds (write on append, hard cap) take over instead
READER_HOLD_MAX: Final = 0.5


@attrs.define
class Wakeup:
    """A re-armable wake-up: ``set()`` may be called any number of times from the trio thread."""

    event: trio.Event = attrs.field(factory=trio.Event)

    def set(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        self.event = trio.Event()


def _holding(lock: threading.Lock, fn: Callable[..., _T], *args: object) -> _T:
    with lock:
        return fn(*args)


async def serve_store_flusher(
    store: MessageStore,
    wake: Wakeup,
    write_lock: threading.Lock,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Flush the message store off the trio thread (batched), prune by retention, flush once more at exit.

    ``wake`` is the store's ``on_batch_full`` (see :meth:`MessageStore.open`). The worker thread holds
    ``write_lock`` (the outbox's, :attr:`relay.storage.outbox.Outbox.write_lock`: both write the same SQLite file)
    around each transaction, so the two writers take turns without SQLite's sleeping busy handler between them.
    """
    task_status.started()
    last_prune = 0.0
    try:
        while True:
            with trio.move_on_after(STORE_FLUSH_INTERVAL):
                await wake.wait()
            try:
                # an idle tick costs nothing (no worker-thread round trip); the batch is encoded here and only
                # SQLite runs in the worker (see MessageStore.take_batch)
                batch = store.take_batch() if store.pending else None
                if batch is not None:
                    try:
                        await trio.to_thread.run_sync(_holding, write_lock, store.write_batch, batch)
                    finally:
                        # cancelled before the thread started: the rows go back, so the final flush writes them
                        # (it would otherwise wait for a batch that no one writes)
                        store.return_batch(batch)
                if time.monotonic() - last_prune > STORE_PRUNE_INTERVAL:
                    last_prune = time.monotonic()
                    pruned = await trio.to_thread.run_sync(_holding, write_lock, store.prune, time.time())
                    if pruned:
                        log.info("message store: pruned %d mappings older than the retention", pruned)
            except StoreError as exc:
                log.error("message store: %s; retrying", exc)
    finally:
        try:
            store.flush()
        except StoreError as exc:
            log.error("message store: final flush failed: %s", exc)


async def serve_outbox_flusher(
    outbox: Outbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Flush ``outbox`` every :data:`relay.storage.outbox.FLUSH_INTERVAL` until cancelled, and once more on the way
    out.

    Frames some framework lacks (it is down or slow) are written sooner: once :data:`FLUSH_AT_ONCE` of them wait,
    the flusher is woken and writes batch after batch until fewer wait. Frames every framework already has are
    never written (see :meth:`relay.storage.outbox.Outbox.take_batch`).

    Each transaction runs in a worker thread (``Outbox.write_batch``), so the trio loop — the Discord reader
    and its heartbeats included — never waits for the disk (measured ~14 µs of SQLite work per 1 KB event).
    Failures are logged and retried (frames stay in memory).
    """
    burst = trio.Event()

    def wake_on_burst(seq: int) -> None:
        # Frames pile up only while some framework is not taking them (down, or slow): write them as soon
        # as a batch is worth it instead of sleeping out the interval while the gateway reader is held.
        if not seq % FLUSH_CHECK_EVERY and outbox.waiting_writes >= FLUSH_AT_ONCE:
            burst.set()

    task_status.started()
    failed = False
    outbox.add_append_listener(wake_on_burst)
    try:
        while True:
            if failed:
                await trio.sleep(FLUSH_INTERVAL)  # a failing disk is not hammered
            elif outbox.waiting_writes < FLUSH_AT_ONCE:
                with trio.move_on_after(FLUSH_INTERVAL):
                    await burst.wait()
            else:
                await trio.lowlevel.checkpoint()  # a burst: write the next batch as soon as the last is done
            burst = trio.Event()
            batch = outbox.take_batch()
            if batch is None:
                continue
            cut: int | None = None
            failed = True
            try:
                # not abandoned on cancel: the transaction always finishes before finish_batch runs
                cut = await trio.to_thread.run_sync(outbox.write_batch, batch)
                failed = False
            except StoreError as exc:
                log.error("outbox: %s; retrying in %.2f s", exc, FLUSH_INTERVAL)
            finally:
                outbox.finish_batch(batch, cut)
    finally:
        outbox.remove_append_listener(wake_on_burst)
        try:
            outbox.flush()  # synchronous: cancellation cannot interrupt it
        except StoreError as exc:
            log.error("outbox: final flush failed: %s", exc)


def make_room(outbox: Outbox, store: MessageStore) -> Callable[[], Awaitable[None]]:
    """The gateway reader's back-pressure hook (``serve_gateway(make_room=...)``): awaited before each socket
    read, it returns once the outbox and the store writers have caught up, or after :data:`READER_HOLD_MAX`.

    Held while :data:`READER_HOLD_FRAMES` frames some framework lacks wait for the outbox's writer, or
    :data:`READER_HOLD_STORE_BATCHES` batches of message-id rows for the store's. Both counts are cheap reads
    (:attr:`Outbox.waiting_writes`, :attr:`MessageStore.pending`); an unheld reader pays one checkpoint.
    """
    hold_rows = READER_HOLD_STORE_BATCHES * store.batch_size

    async def wait_for_room() -> None:
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(READER_HOLD_MAX):
            while outbox.waiting_writes >= READER_HOLD_FRAMES or store.pending >= hold_rows:
                await trio.sleep(READER_HOLD_POLL)

    return wait_for_room
