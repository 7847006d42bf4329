"""The bot's direct-message contacts — mirai's friends — in the bridge's SQLite file, kept across restarts (no trio).

A Discord bot has no friends list; the bridge answers ``friendList`` with the users it has a DM channel with
(learned from their messages, or from opening one to send). Those were held in memory only, so ``friendList``
forgot everyone on a restart (issue 15). One small table, ``dm_contacts (user_id PRIMARY KEY, channel_id,
seen_at)``, beside the store's, the outbox's and the id map's: the composition root loads it into the Discord
cache at start and writes each new contact as the cache learns it.

A new contact is rare (a user's first DM), so it is written at once, in one transaction of its own under the
file's write lock (:attr:`relay.storage.outbox.Outbox.write_lock`), like a first sight in
:mod:`relay.storage.idmap`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Final

from relay.errors import StoreError
from relay.storage import sqlite

log = logging.getLogger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dm_contacts (
    user_id    INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    seen_at    REAL NOT NULL
);
"""
#: the page cache of its one connection: the table is a few rows a contact
_CACHE_KIB: Final = 64


class DmContacts:
    """The ``dm_contacts`` table. Open with :meth:`open`; call from one thread (the trio thread)."""

    def __init__(self, db: sqlite3.Connection, path: str, write_lock: threading.Lock) -> None:
        self._db = db
        self._path = path
        self._write_lock = write_lock

    @classmethod
    def open(cls, path: str, *, write_lock: threading.Lock) -> DmContacts:
        """Open (creating it if needed) the table in the SQLite file ``path``; raises :class:`StoreError`."""
        try:
            db = sqlite.connect(path, cache_kib=_CACHE_KIB)
            with write_lock:
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the DM contacts in {path!r}: {exc}") from None
        return cls(db, path, write_lock)

    def load(self, limit: int) -> list[tuple[int, int]]:
        """The ``limit`` most recently seen contacts as (channel id, user id), oldest first."""
        try:
            rows = self._db.execute(
                "SELECT channel_id, user_id FROM dm_contacts ORDER BY seen_at DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the DM contacts in {self._path!r} failed: {exc}") from None
        return [(int(channel), int(user)) for channel, user in reversed(rows)]

    def remember(self, channel_id: int, user_id: int, now: float) -> None:
        """Keep one contact (a new one, or a user's new DM channel); raises :class:`StoreError`."""
        try:
            with self._write_lock, sqlite.Transaction(self._db):
                self._db.execute(
                    "INSERT INTO dm_contacts (user_id, channel_id, seen_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(user_id) DO UPDATE SET channel_id = excluded.channel_id, seen_at = excluded.seen_at",
                    (user_id, channel_id, now),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"writing a DM contact to {self._path!r} failed: {exc}") from None

    def close(self) -> None:
        self._db.close()
