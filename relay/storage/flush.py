"""One flush, one SQLite transaction (no trio): the message store's batch, the outbox's batch and the gateway session
snapshot, taken together on the event loop's thread and committed together from a worker thread.

Why together: after a crash (kill -9) the file must be consistent with itself. A frame on disk names a message id
whose row and counter are on disk too (no id can be issued twice after the restart), and the saved gateway
session's sequence number is the one up to which every dispatch had become frames when the batch was taken, so
resuming from it replays exactly what the file lacks. What a crash loses is what was taken after the last
commit: at most one flush interval of events, which Discord replays on resume (and which the frameworks may
then see twice, if they had already received them).

* :func:`take` runs on the event loop's thread: it takes the store's rows (encoded there, see
  :meth:`relay.storage.store.MessageStore.take_batch`), the outbox's frames and cursors, and the snapshot from
  the callable the composition root passes (:class:`Sessions`); all three describe the same instant.
* :func:`write` runs in a worker thread under the file's write lock: only SQLite, on the store's writer
  connection (it caches the store's statements). A damaged page met by the outbox's statements makes the
  outbox move its readable frames to a fresh table and the transaction is tried once more; damage anywhere
  else raises :class:`~relay.errors.StoreLost`, which stops the bridge. Other failures raise
  :class:`~relay.errors.StoreError` and everything stays in memory for the next flush.
* :func:`finish` runs back on the event loop's thread: it tells each part whether the transaction committed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import attrs

from relay.errors import StoreError, StoreLost
from relay.storage import salvage, sessions, sqlite
from relay.storage.outbox import Outbox, WriteBatch
from relay.storage.store import MessageStore, StoreBatch

log = logging.getLogger(__name__)

#: the composition root's gateway session snapshot: shard id → the adapter's opaque text (its session id, resume
#: URL and the sequence number up to which every dispatch has been handed over), or None when there is nothing to
#: say yet (no gateway); called on the event loop's thread when a batch is taken
SessionSnapshot = Callable[[], Mapping[int, str] | None]

#: seconds after which an unchanged snapshot is written again, so that its time says when the bridge was last
#: alive (the next start judges Discord's resume window by it)
SESSION_REFRESH: Final = 5.0


@attrs.define
class Sessions:
    """The gateway session snapshot's source, and what was last written of it."""

    snapshot: SessionSnapshot
    written: dict[int, str] | None = None
    written_at: float = float("-inf")
    failed: bool = False

    def take(self, now: float) -> dict[int, str] | None:
        """The snapshot to write with this flush, or None when it has not changed since the last one written (and
        that one is recent)."""
        try:
            current = self.snapshot()
        except Exception:  # a bug on the adapter's side must not stop the flushes of events
            if not self.failed:
                log.exception("gateway session snapshot failed; the session is not saved until it works again")
            self.failed = True
            return None
        self.failed = False
        if current is None:
            return None
        taken = dict(current)
        if taken == self.written and now - self.written_at < SESSION_REFRESH:
            return None
        return taken

    def done(self, written: dict[int, str], at: float) -> None:
        self.written = written
        self.written_at = at


@attrs.frozen(eq=False)
class Flush:
    """One transaction's worth: any of the three parts may be missing."""

    store: StoreBatch | None
    outbox: WriteBatch | None
    sessions: dict[int, str] | None
    saved_at: float  #: wall-clock time of the snapshot

    def describe(self) -> str:
        parts = []
        if self.store is not None:
            parts.append(f"{len(self.store.flushed)} message-id rows")
        if self.outbox is not None:
            parts.append(f"{len(self.outbox.rows)} outbox frames")
        if self.sessions is not None:
            parts.append("the gateway session")
        return " and ".join(parts) or "nothing"


def take(
    store: MessageStore | None, outbox: Outbox | None, sessions_source: Sessions | None, now: float
) -> Flush | None:
    """Take everything to write (on the event loop's thread); None when there is nothing."""
    store_batch = store.take_batch() if store is not None and store.pending else None
    outbox_batch = outbox.take_batch() if outbox is not None else None
    snapshot = sessions_source.take(now) if sessions_source is not None else None
    if store_batch is None and outbox_batch is None and snapshot is None:
        return None
    return Flush(store=store_batch, outbox=outbox_batch, sessions=snapshot, saved_at=now)


class _OutboxDamaged(Exception):
    """The outbox's statements met a damaged page (the transaction is given up and tried again)."""


@contextmanager
def _writer(store: MessageStore | None, outbox: Outbox | None) -> Iterator[tuple[sqlite3.Connection, bool]]:
    """The connection a flush writes on, and whether it caches statements."""
    if store is not None:
        with store.writing() as db:
            yield db, True
    elif outbox is not None:
        yield outbox.writer, False
    else:
        raise ValueError("a flush needs a store or an outbox")


def write(flush: Flush, store: MessageStore | None, outbox: Outbox | None, lock: threading.Lock) -> int | None:
    """Commit ``flush`` in one transaction (safe in a worker thread); returns the outbox's cut (None without an
    outbox batch). Raises :class:`StoreLost` for damage the bridge cannot work around, :class:`StoreError` for
    other failures (then :func:`finish` puts everything back). Each writer's :class:`~relay.storage.sqlite.WriteCounts`
    count the outcome (the metrics and the readiness check read them)."""
    try:
        cut = _write(flush, store, outbox, lock)
    except StoreError as exc:
        now = time.time()
        for counts in _counts(flush, store, outbox):
            counts.failed(str(exc), now)
        raise
    now = time.time()
    if flush.store is not None and store is not None:
        store.writes.succeeded(len(flush.store.flushed), now)
    if flush.outbox is not None and outbox is not None:
        outbox.writes.succeeded(len(flush.outbox.rows), now)
    return cut


def _counts(flush: Flush, store: MessageStore | None, outbox: Outbox | None) -> list[sqlite.WriteCounts]:
    found = []
    if flush.store is not None and store is not None:
        found.append(store.writes)
    if flush.outbox is not None and outbox is not None:
        found.append(outbox.writes)
    return found


def _write(flush: Flush, store: MessageStore | None, outbox: Outbox | None, lock: threading.Lock) -> int | None:
    path = store.path if store is not None else outbox.path if outbox is not None else "?"
    rebuild = flush.outbox is not None and flush.outbox.rebuild
    with lock, _writer(store, outbox) as (db, cached):
        while True:
            try:
                with sqlite.Transaction(db):
                    return _statements(db, flush, store, outbox, rebuild=rebuild, cached=cached)
            except _OutboxDamaged:
                rebuild = True  # the outbox moves its readable frames to a fresh table, then once more
            except sqlite3.Error as exc:
                if salvage.is_damage(exc):
                    raise StoreLost(
                        f"the store file {path} is damaged where the bridge cannot work around it ({exc}) while "
                        f"writing {flush.describe()}: stopping rather than lose track of the ids it issued. With the "
                        "bridge stopped, `discord-mirai-relay store repair` salvages every readable row"
                    ) from None
                raise StoreError(
                    f"could not write {flush.describe()} to {path}: {exc}; they stay in memory and are retried on "
                    "the next flush (check free disk space)"
                ) from None


def _statements(
    db: sqlite3.Connection,
    flush: Flush,
    store: MessageStore | None,
    outbox: Outbox | None,
    *,
    rebuild: bool,
    cached: bool,
) -> int | None:
    if flush.store is not None and store is not None:
        store.write_rows(db, flush.store)
    if flush.sessions is not None:
        sessions.write_sessions(db, flush.sessions, flush.saved_at)
    if flush.outbox is None or outbox is None:
        return None
    try:
        return outbox.write_in(db, flush.outbox, rebuild=rebuild, cached=cached)
    except sqlite3.Error as exc:
        if rebuild or not salvage.is_damage(exc):
            raise
        raise _OutboxDamaged from exc


def finish(
    flush: Flush,
    store: MessageStore | None,
    outbox: Outbox | None,
    sessions_source: Sessions | None,
    *,
    committed: bool,
    cut: int | None,
) -> None:
    """Back on the event loop's thread: apply the outcome of :func:`write` (``committed``: it returned)."""
    if flush.store is not None and store is not None:
        store.finish_batch(flush.store, committed)
    if flush.outbox is not None and outbox is not None:
        outbox.finish_batch(flush.outbox, cut if committed else None)
    if committed and flush.sessions is not None and sessions_source is not None:
        sessions_source.done(flush.sessions, flush.saved_at)


def flush_now(
    store: MessageStore | None,
    outbox: Outbox | None,
    sessions_source: Sessions | None,
    lock: threading.Lock,
    *,
    now: float,
) -> None:
    """Take, write and finish on this thread (the flusher's last flush). Raises like :func:`write`."""
    batch = take(store, outbox, sessions_source, now)
    if batch is None:
        return
    committed, cut = False, None
    try:
        cut = write(batch, store, outbox, lock)
        committed = True
    finally:
        finish(batch, store, outbox, sessions_source, committed=committed, cut=cut)
