"""The emulator's SQLite file: every object of the emulated Discord as JSON, uploaded files, a little metadata.

The world (:mod:`.world`) keeps its objects in memory and writes each change through to this file inside one
transaction per operation, so a restart of the emulator finds the same guilds, members, messages, pins, bans,
audit log and uploads. Objects are stored by ``(kind, key)``; the world decides kinds and keys. A new file is
created with mode 0600 (it holds everything said in the sandbox); SQLite gives its -wal/-shm files the same
mode. ``":memory:"`` keeps nothing (tests).

No trio here: the calls are short and synchronous (WAL with ``synchronous=NORMAL``: a commit does not wait for
the disk).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from relay import fastjson
from relay.sandbox.emulator.errors import StateFileError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    json BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StateFile:
    """One SQLite connection holding the emulator's state. Use :meth:`open`; :meth:`close` when done."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db = db
        self.path = path
        self._depth = 0

    @classmethod
    def open(cls, path: str) -> StateFile:
        """Open (creating it 0600 if missing) the state file at ``path``; ``":memory:"`` for a throwaway one."""
        in_memory = path in ("", ":memory:")
        try:
            if not in_memory and not os.path.exists(path):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if not in_memory:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                db.close()
                raise StateFileError(
                    f"{path}: the emulator's state file has schema {row[0]}, this version reads {SCHEMA_VERSION}; "
                    "move the file aside to start a fresh world"
                )
        except (sqlite3.Error, OSError) as exc:
            raise StateFileError(f"{path}: cannot open the emulator's state file: {exc}") from exc
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes of one operation into one commit (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ objects

    def put(self, kind: str, key: object, obj: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO objects (kind, key, json) VALUES (?, ?, ?)", (kind, str(key), fastjson.dumps(obj))
        )

    def delete(self, kind: str, key: object) -> None:
        self._db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (kind, str(key)))

    def load(self, kind: str) -> list[tuple[str, Any]]:
        """Every ``(key, object)`` of ``kind``, in key order."""
        try:
            rows = self._db.execute("SELECT key, json FROM objects WHERE kind = ? ORDER BY key", (kind,)).fetchall()
            return [(key, fastjson.loads(data)) for key, data in rows]
        except (sqlite3.Error, ValueError) as exc:
            raise StateFileError(f"{self.path}: the emulator's state file is unreadable ({kind}): {exc}") from exc

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM objects LIMIT 1").fetchone() is None

    # ------------------------------------------------------------------ files and metadata

    def put_file(self, path: str, data: bytes, content_type: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files (path, content_type, data) VALUES (?, ?, ?)", (path, content_type, data)
        )

    def get_file(self, path: str) -> tuple[bytes, str] | None:
        row = self._db.execute("SELECT data, content_type FROM files WHERE path = ?", (path,)).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]))

    def get_meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
