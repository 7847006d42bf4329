"""Reading what is still readable of a damaged SQLite table (no trio): its rows in key order, past the key ranges
whose pages cannot be read, and which ranges those were.

SQLite reads a table's B-tree page by page. A damaged page makes every statement that reaches it fail with
SQLITE_CORRUPT ("database disk image is malformed"), while a seek to a key beyond it descends to another leaf
and works. So a table is read in key order; at a failure the next readable key is found by probing
``key >= k`` for k = f + 1, f + 2, f + 4, ... (each probe is one descent of the tree) and bisecting back between
the last failing and the first working probe, and reading goes on from there. The keys are integers: a rowid, or
the integer primary key columns of a ``WITHOUT ROWID`` table, ordered as one number (:class:`Key`).

Used by the outbox, which reads past a damaged part of its backlog and moves its readable frames into a fresh
table (:func:`move_readable`), and by the offline ``store repair`` (:mod:`relay.storage.repair`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

import attrs

from relay.storage import sqlite

log = logging.getLogger(__name__)

#: rows read per statement while scanning
SCAN_CHUNK: Final = 256
#: the primary result codes of unreadable content: a damaged page or record, a file that is not a database
DAMAGE_CODES: Final = frozenset((sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_FORMAT))
_BIAS: Final = 1 << 63  # a key column (a signed 64-bit integer) as an unsigned one
_COLUMN_BITS: Final = 64


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the file's content is unreadable (a damaged page, a row whose text does not decode)
    rather than something about the environment (locked, out of disk or memory, an I/O error) or the statement."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the sqlite3 module itself: text that is not UTF-8
        return "decode" in str(exc)
    return (code & 0xFF) in DAMAGE_CODES


@attrs.frozen
class Key:
    """The integer key a table is read by, in order: ``("rowid",)`` or a primary key's columns."""

    columns: tuple[str, ...]

    @property
    def end(self) -> int:
        """One past the largest position."""
        return 1 << (_COLUMN_BITS * len(self.columns))

    def position(self, values: Sequence[int]) -> int:
        """The key as one non-negative number with the same order."""
        out = 0
        for value in values:
            out = (out << _COLUMN_BITS) | (int(value) + _BIAS)
        return out

    def values(self, position: int) -> tuple[int, ...]:
        """The key at ``position`` (the inverse of :meth:`position`)."""
        mask = (1 << _COLUMN_BITS) - 1
        out = [((position >> (_COLUMN_BITS * i)) & mask) - _BIAS for i in range(len(self.columns))]
        return tuple(reversed(out))

    def where_from(self) -> str:
        names = ", ".join(self.columns)
        marks = ", ".join("?" * len(self.columns))
        return f"({names}) >= ({marks})" if len(self.columns) > 1 else f"{names} >= ?"

    def order(self) -> str:
        return ", ".join(self.columns)


@attrs.frozen
class Gap:
    """Keys that could not be read: from ``first`` (a position that failed) up to ``resume`` (the first readable
    key after it; ``None`` when nothing after ``first`` could be read)."""

    first: tuple[int, ...]
    resume: tuple[int, ...] | None

    def span(self, key: Key) -> int | None:
        """How many keys the gap covers when they are consecutive integers of one column (or share all but the
        last column); ``None`` when unknown. For a table whose keys are dense (the outbox's sequence numbers) it
        is the number of rows lost; otherwise an upper bound."""
        if self.resume is None or self.first[:-1] != self.resume[:-1]:
            return None
        return self.resume[-1] - self.first[-1]


Row = tuple[object, ...]


@attrs.define
class Ranges:
    """Inclusive integer ranges known to be unreadable (the outbox's lost sequence numbers)."""

    ranges: list[tuple[int, int]] = attrs.field(factory=list)

    def add(self, first: int, last: int) -> list[tuple[int, int]]:
        """Add ``first``..``last``; returns the parts that were not known yet."""
        new = [(first, last)] if first <= last else []
        for known_first, known_last in self.ranges:
            new = [
                part
                for lo, hi in new
                for part in ((lo, min(hi, known_first - 1)), (max(lo, known_last + 1), hi))
                if part[0] <= part[1]
            ]
        self.ranges.extend(new)
        return new

    def past(self, value: int) -> int:
        """``value``, or the first value after the known ranges it falls in."""
        moved = True
        while moved:
            moved = False
            for first, last in self.ranges:
                if first <= value <= last:
                    value, moved = last + 1, True
        return value


def scan(
    conn: sqlite3.Connection,
    table: str,
    key: Key,
    columns: str,
    *,
    start: Sequence[int] | None = None,
    chunk: int = SCAN_CHUNK,
) -> Iterator[list[Row] | Gap]:
    """Every readable row of ``table`` from the key ``start`` on (key values first, then ``columns``), in key
    order, in lists of up to ``chunk`` rows, with a :class:`Gap` where rows could not be read.

    Raises :class:`sqlite3.Error` for what :func:`is_damage` does not count as damage.
    """
    select = (
        f"SELECT {key.order()}{', ' + columns if columns else ''} FROM {table} "
        f"WHERE {key.where_from()} ORDER BY {key.order()} LIMIT ?"
    )
    width = len(key.columns)
    position = 0 if start is None else key.position(start)
    while position < key.end:
        rows: list[Row] = []
        failed = False
        try:
            for row in conn.execute(select, (*key.values(position), chunk)):
                rows.append(row)
        except sqlite3.Error as exc:
            if not is_damage(exc):
                raise
            failed = True
        if rows:
            yield rows
            # after a failure, read on from the row after the last one read: the module reads a row ahead, so
            # the failing step may have hidden one readable row; a short chunk without a failure is the end
            position = key.position(rows[-1][:width]) + 1  # type: ignore[arg-type]
            if not failed and len(rows) < chunk:
                return
            continue
        if not failed:
            return  # nothing at or after position
        resume = _next_readable(conn, table, key, position)
        yield Gap(key.values(position), None if resume is None else key.values(resume))
        if resume is None:
            return
        position = resume


def _probe(conn: sqlite3.Connection, table: str, key: Key, position: int) -> tuple[bool, int | None]:
    """(readable, the first key position at or after ``position``, or None at the end of the table)."""
    try:
        row = conn.execute(
            f"SELECT {key.order()} FROM {table} WHERE {key.where_from()} ORDER BY {key.order()} LIMIT 1",
            key.values(position),
        ).fetchone()
    except sqlite3.Error as exc:
        if not is_damage(exc):
            raise
        return False, None
    return True, None if row is None else key.position(row)


def _next_readable(conn: sqlite3.Connection, table: str, key: Key, failed: int) -> int | None:
    """The first key position after ``failed`` (which failed) from which a read works: galloping, then
    bisecting; None when no probe after it works or the table ends."""
    bad, step = failed, 1
    while True:
        probe = failed + step
        if probe >= key.end:
            return None
        ok, _ = _probe(conn, table, key, probe)
        if ok:
            good = probe
            break
        bad, step = probe, step * 2
    while good - bad > 1:
        middle = (bad + good) // 2
        ok, _ = _probe(conn, table, key, middle)
        if ok:
            good = middle
        else:
            bad = middle
    _, first = _probe(conn, table, key, good)
    return first


def read_some(
    conn: sqlite3.Connection, table: str, key: Key, columns: str, *, start: Sequence[int], limit: int
) -> tuple[list[Row], list[Gap]]:
    """Up to ``limit`` readable rows from ``start`` on (see :func:`scan`), and the gaps passed on the way."""
    rows: list[Row] = []
    gaps: list[Gap] = []
    for item in scan(conn, table, key, columns, start=start, chunk=max(1, min(limit, SCAN_CHUNK))):
        if isinstance(item, Gap):
            gaps.append(item)
            continue
        rows.extend(item[: limit - len(rows)])
        if len(rows) >= limit:
            break
    return rows, gaps


def move_readable(
    writer: sqlite3.Connection,
    reader: sqlite3.Connection,
    table: str,
    create_sql: str,
    *,
    key: Key,
    columns: Sequence[str],
    start: Sequence[int] | None = None,
) -> tuple[str, int, list[Gap]]:
    """Inside the caller's transaction on ``writer``: rename the damaged ``table`` to ``<table>_damaged_<n>``
    (kept, never dropped: dropping walks its pages), create it afresh with ``create_sql`` and copy into it every
    row ``reader`` can still read (from the key ``start`` on). Returns (the damaged table's new name, rows copied,
    gaps).

    ``reader`` is another connection to the same file outside any write transaction: it still sees the committed
    table under its old name, and a failed read there cannot spoil the writer's transaction (SQLite gives up a
    whole write transaction once one of its statements hits a damaged page).
    """
    if list(columns[: len(key.columns)]) != list(key.columns):
        raise ValueError("move_readable: the columns must start with the key columns")
    names = {row[0] for row in writer.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    n = 1
    while f"{table}_damaged_{n}" in names:
        n += 1
    damaged = f"{table}_damaged_{n}"
    writer.execute(f"ALTER TABLE {table} RENAME TO {damaged}")
    writer.execute(create_sql)
    copied = 0
    gaps: list[Gap] = []
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    extra = [c for c in columns if c not in key.columns]
    for item in scan(reader, table, key, ", ".join(extra), start=start):
        if isinstance(item, Gap):
            gaps.append(item)
            continue
        writer.executemany(insert, item)
        copied += len(item)
    return damaged, copied, gaps


def connect_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for a salvage (small page cache: a scan reads each page once)."""
    return sqlite.connect(path, cache_kib=sqlite.OUTBOX_READER_CACHE_KIB, read_only=True, any_thread=True)
