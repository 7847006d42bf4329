"""The outbox flusher (trio): writes the durable outbox's buffered frames to SQLite in a worker thread.

Started by :func:`adapters.mirai.reverse_ws.serve_reverse_ws` for now; it belongs with the storage layer.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from relay.errors import StoreError
from relay.storage.outbox import FLUSH_INTERVAL, Outbox

log = logging.getLogger(__name__)

#: the outbox flusher writes its next batch without waiting FLUSH_INTERVAL while this many frames wait: in a
#: burst the writer thread then runs back to back, and the gateway reader (which waits for room, see
#: relay.app) is held only as long as the disk really is behind
FLUSH_AT_ONCE: Final = 256
#: appends between looks whether FLUSH_AT_ONCE frames wait (the look costs a min() and a bisect)
FLUSH_CHECK_EVERY: Final = 64


async def serve_outbox_flusher(
    outbox: Outbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Flush ``outbox`` every :data:`relay.storage.outbox.FLUSH_INTERVAL` until cancelled, and once more on the way out.

    Frames some framework lacks (it is down or slow) are written sooner: once :data:`FLUSH_AT_ONCE` of them wait,
    the flusher is woken and writes batch after batch until fewer wait. Frames every framework already has are
    never written (see :meth:`relay.storage.outbox.Outbox.take_batch`).

    Each transaction runs in a worker thread (``Outbox.write_batch``), so the trio loop — the Discord reader
    and its heartbeats included — never waits for the disk (measured ~14 µs of SQLite work per 1 KB event).
    :func:`serve_reverse_ws` runs this itself. Failures are logged and retried (frames stay in memory).
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
