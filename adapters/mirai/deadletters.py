"""The webhook dead letters: events whose POSTs kept failing, kept in the store's SQLite file (no trio).

A webhook destination moves on after an event's last retry (so one poison event does not stop the queue); the
event lands here with the destination's label, the last error, the number of attempts and the time, and stays
until ``discord-mirai-relay webhooks replay`` delivers it (then the row is deleted) or someone deletes the table.
Its own table, ``webhook_dead_letters``, in the file of the message store and the outbox; writers take the
outbox's write lock around each transaction (the trio side runs them in a worker thread).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Final

import attrs

from relay.errors import StoreError

__all__ = ["DeadLetter", "DeadLetters"]

#: seconds SQLite waits for a lock held by another connection to the file
SQLITE_BUSY_TIMEOUT: Final = 5.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS webhook_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    event TEXT NOT NULL,
    bot_id INTEGER NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created REAL NOT NULL,
    last_attempt REAL NOT NULL
);
"""
_COLUMNS: Final = "id, destination, seq, event_type, event, bot_id, error, attempts, created, last_attempt"


@attrs.frozen(kw_only=True)
class DeadLetter:
    id: int = 0  #: 0 until stored
    destination: str  #: the destination's label
    seq: int  #: the event's outbox sequence number
    event_type: str
    event: str = attrs.field(repr=False)  #: the bare event object's JSON text
    bot_id: int  #: the bot id its headers carried (a replay runs offline, without Discord to ask)
    error: str  #: the last attempt's error
    attempts: int
    created: float  #: when it was given up (epoch seconds)
    last_attempt: float = 0.0  #: the last replay attempt (epoch seconds), or ``created``


class DeadLetters:
    """The ``webhook_dead_letters`` table (one connection; not thread-safe: one thread at a time)."""

    def __init__(self, path: str) -> None:
        self._path = path
        try:
            self._db = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the webhook dead letters in {path!r}: {exc}") from None

    def add(self, letters: Sequence[DeadLetter]) -> list[int]:
        """Store ``letters`` in one transaction; returns their ids."""
        ids: list[int] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for letter in letters:
                cursor = self._db.execute(
                    "INSERT INTO webhook_dead_letters (destination, seq, event_type, event, bot_id, error, attempts, "
                    "created, last_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        letter.destination,
                        letter.seq,
                        letter.event_type,
                        letter.event,
                        letter.bot_id,
                        letter.error,
                        letter.attempts,
                        letter.created,
                        letter.last_attempt or letter.created,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"writing {len(letters)} webhook dead letters to {self._path!r} failed: {exc}") from None
        return ids

    def list(self, *, ids: Iterable[int] | None = None, destination: str | None = None) -> list[DeadLetter]:
        """Dead letters in the order they were given up, all of them or those with ``ids`` / of ``destination``."""
        query = f"SELECT {_COLUMNS} FROM webhook_dead_letters"
        args: list[object] = []
        where: list[str] = []
        if ids is not None:
            wanted = list(ids)
            where.append(f"id IN ({','.join('?' * len(wanted))})" if wanted else "0")
            args.extend(wanted)
        if destination is not None:
            where.append("destination = ?")
            args.append(destination)
        if where:
            query += " WHERE " + " AND ".join(where)
        try:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the webhook dead letters from {self._path!r} failed: {exc}") from None
        return [
            DeadLetter(
                id=int(row[0]),
                destination=str(row[1]),
                seq=int(row[2]),
                event_type=str(row[3]),
                event=str(row[4]),
                bot_id=int(row[5]),
                error=str(row[6]),
                attempts=int(row[7]),
                created=float(row[8]),
                last_attempt=float(row[9]),
            )
            for row in rows
        ]

    def count(self) -> int:
        try:
            return int(self._db.execute("SELECT COUNT(*) FROM webhook_dead_letters").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"reading the webhook dead letters from {self._path!r} failed: {exc}") from None

    def remove(self, letter_id: int) -> None:
        """Forget a dead letter that was delivered after all."""
        self._execute("DELETE FROM webhook_dead_letters WHERE id = ?", (letter_id,))

    def record_attempt(self, letter_id: int, error: str, *, now: float | None = None) -> None:
        """A replay of ``letter_id`` failed with ``error``: count it."""
        self._execute(
            "UPDATE webhook_dead_letters SET attempts = attempts + 1, error = ?, last_attempt = ? WHERE id = ?",
            (error, time.time() if now is None else now, letter_id),
        )

    def _execute(self, statement: str, args: tuple[object, ...]) -> None:
        try:
            self._db.execute(statement, args)
        except sqlite3.Error as exc:
            raise StoreError(f"updating the webhook dead letters in {self._path!r} failed: {exc}") from None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
