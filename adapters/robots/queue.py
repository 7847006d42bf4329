"""The robots' delivery table, ``robot_deliveries``, in the store's SQLite file (no trio: the service runs the
writes in a worker thread, holding the outbox's write lock like every writer of that file).

A post is answered 202 only after its row is committed, so a crash or a Discord outage after that loses nothing:
queued rows are sent on the next start. A row records the post as it will be shown (rendered), its status
(``queued``, ``sent``, ``failed`` with Discord's error), the Standard Webhooks ``webhook-id`` it came with (a
repeat within :data:`relay.signatures.REPLAY_WINDOW` returns the first one's delivery id instead of posting
again) and its times. Finished rows are kept :data:`KEEP_FINISHED` seconds for ``GET .../deliveries/<id>``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from relay.errors import StoreError

__all__ = ["KEEP_FINISHED", "Delivery", "DeliveryQueue"]

#: seconds a sent or failed delivery stays readable (7 days)
KEEP_FINISHED: Final = 7 * 24 * 3600.0
SQLITE_BUSY_TIMEOUT: Final = 5.0

QUEUED: Final = "queued"
SENT: Final = "sent"
FAILED: Final = "failed"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS robot_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    robot TEXT NOT NULL,
    channel INTEGER NOT NULL,
    msg_id TEXT,
    text TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS robot_deliveries_msg_id ON robot_deliveries (robot, msg_id) WHERE msg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS robot_deliveries_queued ON robot_deliveries (status, seq);
"""
_COLUMNS: Final = "id, robot, channel, msg_id, text, status, error, created, updated"


@attrs.frozen(kw_only=True)
class Delivery:
    id: str  #: "rd_" + 128 random bits: knowing it is what lets a sender read its status
    robot: str
    channel: int
    msg_id: str | None  #: the Standard Webhooks webhook-id, when the post had one
    text: str = attrs.field(repr=False)  #: rendered (robot name and text)
    status: str = QUEUED
    error: str = ""
    created: float
    updated: float = 0.0


def _delivery(row: Sequence[object]) -> Delivery:
    return Delivery(
        id=str(row[0]),
        robot=str(row[1]),
        channel=int(row[2]),  # type: ignore[call-overload]
        msg_id=None if row[3] is None else str(row[3]),
        text=str(row[4]),
        status=str(row[5]),
        error=str(row[6]),
        created=float(row[7]),  # type: ignore[arg-type]
        updated=float(row[8]),  # type: ignore[arg-type]
    )


class DeliveryQueue:
    """The ``robot_deliveries`` table: reads on the owner's thread, writes (``add``, ``finish``, ``prune``) on a
    connection of their own, so a worker thread may write while the owner reads."""

    def __init__(self, path: str) -> None:
        self._path = path
        try:
            self._db = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None)
            self._writer = sqlite3.connect(
                path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the robots' delivery table in {path!r}: {exc}") from None

    def add(self, deliveries: Sequence[Delivery]) -> None:
        """Commit ``deliveries`` (one transaction)."""
        self._transaction(
            "INSERT INTO robot_deliveries (id, robot, channel, msg_id, text, status, error, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (d.id, d.robot, d.channel, d.msg_id, d.text, d.status, d.error, d.created, d.updated or d.created)
                for d in deliveries
            ],
        )

    def repeat_of(self, robot: str, msg_id: str, *, since: float) -> str | None:
        """The delivery id of ``robot``'s post with ``msg_id`` received after ``since``, if any."""
        row = self._query(
            "SELECT id FROM robot_deliveries WHERE robot = ? AND msg_id = ? AND created >= ? ORDER BY seq LIMIT 1",
            (robot, msg_id, since),
        )
        return str(row[0][0]) if row else None

    def queued(self) -> list[Delivery]:
        """Every delivery not sent yet, in the order the posts were accepted."""
        return [
            _delivery(row)
            for row in self._query(f"SELECT {_COLUMNS} FROM robot_deliveries WHERE status = ? ORDER BY seq", (QUEUED,))
        ]

    def get(self, delivery_id: str) -> Delivery | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM robot_deliveries WHERE id = ?", (delivery_id,))
        return _delivery(rows[0]) if rows else None

    def finish(self, ids: Iterable[str], status: str, error: str, now: float) -> None:
        """Mark ``ids`` sent or failed (with Discord's error)."""
        self._transaction(
            "UPDATE robot_deliveries SET status = ?, error = ?, updated = ? WHERE id = ?",
            [(status, error, now, delivery_id) for delivery_id in ids],
        )

    def prune(self, before: float) -> int:
        """Forget finished deliveries last updated before ``before``; returns how many."""
        try:
            cursor = self._writer.execute(
                "DELETE FROM robot_deliveries WHERE status != ? AND updated < ?", (QUEUED, before)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"pruning the robots' delivery table in {self._path!r} failed: {exc}") from None
        return cursor.rowcount

    def _query(self, statement: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return list(self._db.execute(statement, args).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"reading the robots' delivery table in {self._path!r} failed: {exc}") from None

    def _transaction(self, statement: str, rows: list[tuple[object, ...]]) -> None:
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            self._writer.executemany(statement, rows)
            self._writer.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("ROLLBACK")
            raise StoreError(f"writing the robots' delivery table in {self._path!r} failed: {exc}") from None

    def close(self) -> None:
        self._db.close()
        self._writer.close()
