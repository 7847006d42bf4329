"""The SQLite file's writer, driven from trio: one flush loop for the message store, the outbox and the gateway
session snapshot, the gateway reader's back-pressure on it, and the watch over the file.

* :func:`serve_flusher` commits, every :data:`relay.storage.outbox.FLUSH_INTERVAL` (or at once when the store's
  batch is full or :data:`FLUSH_AT_ONCE` frames some framework lacks wait), the store's rows, the outbox's frames
  and cursors and the gateway session snapshot in ONE transaction (:mod:`relay.storage.flush`: after a crash the
  file is consistent with itself and the saved session resumes right after the last event it kept). It prunes
  the store by retention, and every :data:`GUARD_INTERVAL` checks that the store's files are still the ones the
  bridge opened (:class:`relay.storage.guard.StoreGuard`).
* :func:`serve_store_flusher` and :func:`serve_outbox_flusher` are the same loop for a store or an outbox alone.
* :func:`make_room` is the hook the Discord reader awaits before each read: it returns once the writer has caught
  up (it belongs with the writer because its marks are the writer's: the outbox's
  :data:`~relay.storage.outbox.MAX_PENDING_WRITES`, the store's batch size).

The loop takes its batch on the event loop (the Python work: encoding rows, choosing what to delete, the session
snapshot) and runs only the SQLite transaction in a worker thread, so the loop — the Discord reader and its
heartbeats included — never waits for the disk. Every transaction holds the file's one write lock,
:attr:`relay.storage.outbox.Outbox.write_lock` (see :mod:`relay.storage.sqlite`). The loop flushes once more,
synchronously, when it is cancelled. A :class:`~relay.errors.StoreLost` (the file deleted, replaced or damaged
beyond repair) ends it, and with it the bridge's nursery; other failures are logged and retried.

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

from relay.errors import StoreError, StoreLost
from relay.storage import flush
from relay.storage.flush import SessionSnapshot
from relay.storage.guard import StoreGuard
from relay.storage.outbox import FLUSH_INTERVAL, MAX_PENDING_WRITES, Outbox
from relay.storage.store import MessageStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: seconds between message-store flushes (rows are also flushed as soon as a batch is full). Short on purpose:
#: a flush's Python work (~10 µs a row) holds the GIL in its worker thread, and the bench's paced p99 measured
#: 7-10 ms with 0.25 s batches vs 4.4-5.5 ms with 0.05 s ones (3.5-4.3 ms with no store flushing at all). The
#: store's rows and the outbox's frames now share one flush, every FLUSH_INTERVAL (the same 0.05 s)
STORE_FLUSH_INTERVAL: Final = FLUSH_INTERVAL
#: seconds between message-store retention passes
STORE_PRUNE_INTERVAL: Final = 3600.0
#: seconds between looks whether the store's files are still the ones the bridge opened (three stat calls): a
#: store deleted or replaced under the bridge stops it within about this long
GUARD_INTERVAL: Final = 1.0
#: the flusher writes its next batch without waiting FLUSH_INTERVAL while this many frames wait: in a
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
#: the shard drop the connection as a zombie (docs/discord.md §2.4): a writer that is failing rather than slow must
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


@attrs.define(eq=False)
class Flusher:
    """What :func:`serve_flusher` hands to ``task_status.started()``: a way to wait for a flush."""

    wake: Wakeup
    #: waiters for the next flush taken after they asked, and for the flush in flight
    _asked: list[trio.Event] = attrs.field(factory=list)

    async def flushed(self) -> None:
        """Return once everything recorded, appended or snapshotted before the call is committed (a flush taken
        after the call has succeeded, or found nothing to write). Callers bound the wait."""
        done = trio.Event()
        self._asked.append(done)
        self.wake.set()
        await done.wait()

    def _take_waiters(self) -> list[trio.Event]:
        waiters, self._asked = self._asked, []
        return waiters

    def _give_back(self, waiters: list[trio.Event]) -> None:
        self._asked[:0] = waiters


def _holding(lock: threading.Lock, fn: Callable[..., _T], *args: object) -> _T:
    with lock:
        return fn(*args)


async def serve_flusher(
    store: MessageStore | None,
    outbox: Outbox | None,
    wake: Wakeup,
    *,
    sessions: SessionSnapshot | None = None,
    guard: StoreGuard | None = None,
    write_lock: threading.Lock | None = None,
    task_status: trio.TaskStatus[Flusher] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Flush ``store``, ``outbox`` and the ``sessions`` snapshot together (one transaction each time, see
    :mod:`relay.storage.flush`) off the trio thread, prune the store by retention, check the files with ``guard``,
    and flush once more on the way out.

    ``wake`` is the store's ``on_batch_full`` (see :meth:`MessageStore.open`); the flusher also sets it when
    :data:`FLUSH_AT_ONCE` frames some framework lacks wait. ``store`` and ``outbox`` must share one file.
    ``write_lock`` is the file's write lock when there is no outbox (it is the outbox's otherwise). Raises
    :class:`~relay.errors.StoreLost`; other failures are logged and retried (everything stays in memory).
    ``task_status.started()`` gets a :class:`Flusher` (:meth:`Flusher.flushed` waits for a flush).
    """
    if store is not None and outbox is not None and store.path != outbox.path:
        raise ValueError(f"the store ({store.path}) and the outbox ({outbox.path}) must share one file")
    lock = outbox.write_lock if outbox is not None else write_lock if write_lock is not None else threading.Lock()
    source = flush.Sessions(sessions) if sessions is not None else None
    hold_rows = store.batch_size if store is not None else 0

    def wake_on_burst(seq: int) -> None:
        # Frames pile up only while some framework is not taking them (down, or slow): write them as soon
        # as a batch is worth it instead of sleeping out the interval while the gateway reader is held.
        if not seq % FLUSH_CHECK_EVERY and outbox is not None and outbox.waiting_writes >= FLUSH_AT_ONCE:
            wake.set()

    def behind() -> bool:
        return (outbox is not None and outbox.waiting_writes >= FLUSH_AT_ONCE) or (
            store is not None and store.pending >= hold_rows
        )

    if outbox is not None:
        outbox.add_append_listener(wake_on_burst)
    control = Flusher(wake)
    task_status.started(control)
    failed = False
    took = False  # the last tick had something to write (a burst goes on only while there is)
    lost = False
    last_prune = 0.0
    next_guard = trio.current_time()
    try:
        while True:
            if failed:
                await trio.sleep(FLUSH_INTERVAL)  # a failing disk is not hammered
            elif took and behind():
                await trio.lowlevel.checkpoint()  # a burst: write the next batch as soon as the last is done
            else:
                with trio.move_on_after(FLUSH_INTERVAL):
                    await wake.wait()
            if guard is not None and trio.current_time() >= next_guard:
                next_guard = trio.current_time() + GUARD_INTERVAL
                guard.check()
            # an idle tick costs nothing (no worker-thread round trip); rows are encoded here and only SQLite runs
            # in the worker (see MessageStore.take_batch)
            waiters = control._take_waiters()
            batch = flush.take(store, outbox, source, time.time())
            took = batch is not None
            if batch is None:
                for waiter in waiters:  # nothing was left to write
                    waiter.set()
            else:
                committed, cut = False, None
                failed = True
                try:
                    # not abandoned on cancel: the transaction always finishes before finish runs
                    cut = await trio.to_thread.run_sync(flush.write, batch, store, outbox, lock)
                    committed, failed = True, False
                    for waiter in waiters:
                        waiter.set()
                except StoreLost:
                    raise
                except StoreError as exc:
                    log.error("%s; retrying in %.2f s", exc, FLUSH_INTERVAL)
                finally:
                    # also when cancelled before the thread started: everything goes back for the final flush
                    flush.finish(batch, store, outbox, source, committed=committed, cut=cut)
                    if not committed:
                        control._give_back(waiters)
            if store is not None and time.monotonic() - last_prune > STORE_PRUNE_INTERVAL:
                last_prune = time.monotonic()
                try:
                    pruned = await trio.to_thread.run_sync(_holding, lock, store.prune, time.time())
                except StoreError as exc:
                    log.error("message store: %s; pruning again in %.0f s", exc, STORE_PRUNE_INTERVAL)
                else:
                    if pruned:
                        log.info("message store: pruned %d mappings older than the retention", pruned)
    except StoreLost:
        lost = True
        raise
    finally:
        if outbox is not None:
            outbox.remove_append_listener(wake_on_burst)
        if not lost:
            try:
                # synchronous: cancellation cannot stop it
                flush.flush_now(store, outbox, source, lock, now=time.time())
            except StoreError as exc:
                log.error("final flush failed: %s", exc)


async def serve_store_flusher(
    store: MessageStore,
    wake: Wakeup,
    write_lock: threading.Lock,
    *,
    task_status: trio.TaskStatus[Flusher] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve_flusher` for a message store alone (``write_lock``: the file's write lock)."""
    await serve_flusher(store, None, wake, write_lock=write_lock, task_status=task_status)


async def serve_outbox_flusher(
    outbox: Outbox, *, task_status: trio.TaskStatus[Flusher] = trio.TASK_STATUS_IGNORED
) -> None:
    """:func:`serve_flusher` for an outbox alone (a framework-side test harness; the bridge flushes its outbox with
    its store). Frames every framework already has are never written (see
    :meth:`relay.storage.outbox.Outbox.take_batch`)."""
    await serve_flusher(None, outbox, Wakeup(), task_status=task_status)


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
