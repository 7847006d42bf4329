"""The gateway session snapshot in the bridge's SQLite file (no trio): written with every flush that carries events,
read at the next start.

A snapshot is opaque text per shard id (the Discord adapter's JSON of a session id, a resume URL and the sequence
number up to which every dispatch has become outbox frames): storage never imports an adapter, and never looks
inside. :mod:`relay.storage.flush` writes it in the same transaction as the frames and message ids it accounts
for, so after a crash the file holds a session that resumes exactly after the last event it kept.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping
from typing import Final

import attrs

from relay.errors import StoreError
from relay.storage import sqlite

log = logging.getLogger(__name__)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS gateway_sessions (
    shard_id INTEGER PRIMARY KEY,
    state    TEXT NOT NULL,
    saved_at REAL NOT NULL
);
"""


@attrs.frozen
class SavedSessions:
    """What the last flush of a previous run left: ``sessions`` (shard id → the adapter's text) and when it was
    written (``saved_at``, Unix seconds; 0 when there is none), so the caller can tell whether Discord still
    keeps them (its resume window)."""

    sessions: dict[int, str] = attrs.field(factory=dict)
    saved_at: float = 0.0

    def age(self, now: float) -> float:
        """Seconds since the snapshot was written."""
        return now - self.saved_at


def write_sessions(db: sqlite3.Connection, sessions: Mapping[int, str], saved_at: float) -> None:
    """Replace the snapshot inside the caller's transaction: shards missing from ``sessions`` have none to resume."""
    db.execute(SCHEMA)
    db.execute("DELETE FROM gateway_sessions")
    db.executemany(
        "INSERT INTO gateway_sessions (shard_id, state, saved_at) VALUES (?, ?, ?)",
        [(shard_id, state, saved_at) for shard_id, state in sessions.items()],
    )


def load_gateway_sessions(path: str) -> SavedSessions:
    """The gateway sessions the last flush wrote to the SQLite file ``path`` (none for a new or missing file).

    Raises :class:`StoreError` when the file cannot be read.
    """
    if path in ("", ":memory:") or not os.path.exists(path):
        return SavedSessions()
    try:
        db = sqlite.connect(path, cache_kib=sqlite.STORE_READER_CACHE_KIB, read_only=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the saved gateway sessions in {path!r}: {exc}") from exc
    try:
        if db.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'gateway_sessions'").fetchone():
            rows = db.execute("SELECT shard_id, state, saved_at FROM gateway_sessions").fetchall()
        else:
            rows = []
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the saved gateway sessions in {path!r}: {exc}") from exc
    finally:
        db.close()
    if not rows:
        return SavedSessions()
    return SavedSessions(sessions={int(r[0]): str(r[1]) for r in rows}, saved_at=min(float(r[2]) for r in rows))
