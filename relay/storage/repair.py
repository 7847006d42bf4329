"""``discord-mirai-relay store check`` and ``store repair``: the offline integrity check of the bridge's SQLite file
and the salvage of a damaged one (no trio; run them with the bridge stopped).

* :func:`check` runs SQLite's full ``PRAGMA integrity_check`` and reads every table in key order, counting the
  rows it can read and the key ranges it cannot (:mod:`relay.storage.salvage`). Exit code 0: sound; 1: damaged
  or unreadable.
* :func:`repair` copies every readable row of every table into a fresh file (the tables and indexes created from
  the damaged file's own schema), then renames the damaged file (with its ``-wal`` and ``-shm``) to
  ``<store>.damaged-<time>`` beside it — it is never deleted — and puts the fresh one in its place. SQLite's
  ``.recover`` is not reachable from Python's module, so rows are read table by table, skipping the ranges that
  raise. A table the bridge set aside while running (``outbox_events_damaged_<n>``, whose readable rows it had
  already moved) is left out. It reports, per table, the rows recovered and what was lost: for tables whose keys
  are consecutive (the outbox's sequence numbers, a conversation's message ids) the count, otherwise the key
  ranges. A bridge that is still running notices its store replaced and stops.

Message counters live in their own small table: ids are never issued twice as long as it is readable. A counter
that is lost is rebuilt from the highest id of its conversation's recovered messages; without any, the bridge's
clock seed (:func:`relay.storage.store.first_id_from_clock`) keeps new ids away from old ones.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import attrs

from relay.storage import guard, salvage, sqlite
from relay.storage.store import restore_missing_counters, restore_newest

Out = Callable[[str], None]

#: problems of the integrity check quoted in the report
PROBLEMS_SHOWN: Final = 20
#: rows copied per statement while repairing
COPY_CHUNK: Final = 500
_SET_ASIDE = re.compile(r"_damaged_\d+$")
_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)

EXIT_SOUND: Final = 0
EXIT_DAMAGED: Final = 1


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@attrs.frozen
class TablePlan:
    """How one table is read and rewritten."""

    name: str
    sql: str
    key: salvage.Key | None  #: None: no integer key to read by (read in one go, up to the first failure)
    columns: tuple[str, ...]  #: key columns first; ("rowid", ...) for a rowid table without an alias


@attrs.define
class TableReport:
    name: str
    rows: int = 0
    gaps: list[salvage.Gap] = attrs.field(factory=list)
    unreadable: str = ""  #: why nothing of it could be read

    def lost(self, key: salvage.Key | None) -> str:
        if self.unreadable:
            return f"all of it ({self.unreadable})"
        if not self.gaps:
            return "none"
        spans = [gap.span(key) if key is not None else None for gap in self.gaps]
        ranges = ", ".join(_describe_gap(gap) for gap in self.gaps[:5]) + (" …" if len(self.gaps) > 5 else "")
        if all(span is not None for span in spans):
            total = sum(span for span in spans if span is not None)
            return f"{total} rows or fewer in {len(self.gaps)} unreadable range(s): {ranges}"
        return f"an unknown number of rows in {len(self.gaps)} unreadable range(s): {ranges}"


def _describe_gap(gap: salvage.Gap) -> str:
    first = ",".join(map(str, gap.first))
    if gap.resume is None:
        return f"keys from ({first}) on"
    return f"keys ({first}) to before ({','.join(map(str, gap.resume))})"


def _plans(db: sqlite3.Connection) -> list[TablePlan]:
    plans = []
    tables = db.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rootpage"
    ).fetchall()
    for name, sql in tables:
        info = db.execute(f"PRAGMA table_info({_quote(name)})").fetchall()  # cid, name, type, notnull, dflt, pk
        names = tuple(str(row[1]) for row in info)
        pk = [(row[5], str(row[1]), str(row[2]).upper()) for row in info if row[5]]
        pk.sort()
        pk_names = tuple(column for _, column, _ in pk)
        rest = tuple(column for column in names if column not in pk_names)
        if _WITHOUT_ROWID.search(sql or ""):
            integer = all("INT" in declared for _, _, declared in pk)
            key = salvage.Key(tuple(_quote(c) for c in pk_names)) if integer else None
            plans.append(TablePlan(str(name), str(sql), key, pk_names + rest))
        elif len(pk) == 1 and pk[0][2] == "INTEGER":  # an alias of the rowid
            plans.append(TablePlan(str(name), str(sql), salvage.Key((_quote(pk_names[0]),)), pk_names + rest))
        else:
            plans.append(TablePlan(str(name), str(sql), salvage.Key(("rowid",)), ("rowid", *names)))
    return plans


def _read(db: sqlite3.Connection, plan: TablePlan, report: TableReport) -> Iterator[list[salvage.Row]]:
    """The readable rows of ``plan``'s table in chunks (gaps go into ``report``)."""
    key_width = len(plan.key.columns) if plan.key is not None else 0
    if plan.key is None:
        rows: list[salvage.Row] = []
        try:
            for row in db.execute(f"SELECT {', '.join(map(_quote, plan.columns))} FROM {_quote(plan.name)}"):
                rows.append(row)
                if len(rows) >= COPY_CHUNK:
                    yield rows
                    rows = []
        except sqlite3.Error as exc:
            if not salvage.is_damage(exc):
                raise
            report.gaps.append(salvage.Gap((), None))
        if rows:
            yield rows
        return
    rest = ", ".join(_quote(c) for c in plan.columns[key_width:])
    for item in salvage.scan(db, _quote(plan.name), plan.key, rest, chunk=COPY_CHUNK):
        if isinstance(item, salvage.Gap):
            report.gaps.append(item)
        else:
            yield item


def _open_read_only(path: str) -> sqlite3.Connection:
    return sqlite.connect(path, cache_kib=sqlite.OUTBOX_READER_CACHE_KIB, read_only=True)


def check(path: str, out: Out = print) -> int:
    """The report of :func:`check` (see the module docstring) through ``out``; returns the exit code."""
    if not os.path.exists(path):
        out(f"no store at {path}")
        return EXIT_DAMAGED
    out(f"store {path} ({os.path.getsize(path):,} bytes)")
    damaged = False
    db = _open_read_only(path)
    try:
        try:
            problems = [str(r[0]) for r in db.execute(f"PRAGMA integrity_check({PROBLEMS_SHOWN})")]
        except sqlite3.Error as exc:
            problems = [f"the check itself failed: {exc}"]
        if problems == ["ok"]:
            out("integrity check: ok")
        else:
            damaged = True
            out(f"integrity check: {len(problems)} problem(s){' (the first ones)' if len(problems) >= 20 else ''}")
            for problem in problems:
                out(f"  {problem}")
        try:
            plans = _plans(db)
        except sqlite3.Error as exc:
            out(f"the list of tables cannot be read ({exc}): nothing can be salvaged")
            return EXIT_DAMAGED
        for plan in plans:
            report = TableReport(plan.name)
            try:
                for rows in _read(db, plan, report):
                    report.rows += len(rows)
            except sqlite3.Error as exc:
                report.unreadable = str(exc)
            damaged = damaged or bool(report.gaps or report.unreadable)
            lost = report.lost(plan.key)
            out(f"{plan.name}: {report.rows:,} rows readable" + ("" if lost == "none" else f"; unreadable: {lost}"))
    finally:
        db.close()
    if damaged:
        out("result: DAMAGED — with the bridge stopped, `discord-mirai-relay store repair` salvages the readable rows")
        return EXIT_DAMAGED
    out("result: sound")
    return EXIT_SOUND


def repair(path: str, out: Out = print, *, now: float | None = None) -> int:
    """Salvage ``path`` into a fresh file and keep the damaged one beside it (see the module docstring); the report
    goes through ``out``. Returns the exit code: 0 repaired (rows may have been lost: the report says which), 1
    nothing was changed."""
    if not os.path.exists(path):
        out(f"no store at {path}")
        return EXIT_DAMAGED
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    kept = f"{path}.damaged-{stamp}"
    fresh = f"{path}.repairing"
    for leftover in (fresh, *guard.companions(fresh)):
        Path(leftover).unlink(missing_ok=True)
    source = _open_read_only(path)
    try:
        try:
            plans = _plans(source)
            extras = source.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE type IN ('index', 'trigger', 'view') "
                "AND sql IS NOT NULL"
            ).fetchall()
        except sqlite3.Error as exc:
            out(f"the list of tables of {path} cannot be read ({exc}): nothing can be salvaged; the file is unchanged")
            return EXIT_DAMAGED
        target = sqlite.connect(fresh, cache_kib=sqlite.STORE_WRITER_CACHE_KIB)
        try:
            with sqlite.Transaction(target):
                reports = _copy(source, target, plans, extras, out)
        finally:
            target.close()
    finally:
        source.close()
    for name, moved in zip((path, *guard.companions(path)), (kept, *guard.companions(kept)), strict=True):
        if os.path.exists(name):
            os.replace(name, moved)
    os.replace(fresh, path)
    out(f"the damaged file is kept as {kept} (never deleted: remove it yourself once the bridge runs well)")
    lost_any = any(r.gaps or r.unreadable for r in reports)
    out(f"repaired {path}: " + ("some rows were lost (see above)" if lost_any else "every row was recovered"))
    return EXIT_SOUND


def _copy(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    plans: list[TablePlan],
    extras: list[tuple[str, str, str, str]],
    out: Out,
) -> list[TableReport]:
    reports = []
    copied = set()
    for plan in plans:
        if _SET_ASIDE.search(plan.name):
            out(f"{plan.name}: left out (set aside by the bridge, which had moved its readable rows)")
            continue
        target.execute(plan.sql)
        copied.add(plan.name)
        report = TableReport(plan.name)
        insert = (
            f"INSERT INTO {_quote(plan.name)} ({', '.join(c if c == 'rowid' else _quote(c) for c in plan.columns)}) "
            f"VALUES ({', '.join('?' * len(plan.columns))})"
        )
        try:
            for rows in _read(source, plan, report):
                target.executemany(insert, rows)
                report.rows += len(rows)
        except sqlite3.Error as exc:
            if not salvage.is_damage(exc):
                raise
            report.unreadable = str(exc)
        reports.append(report)
        out(f"{plan.name}: {report.rows:,} rows recovered; lost: {report.lost(plan.key)}")
    for kind, name, table, sql in extras:
        if table in copied:
            try:
                target.execute(sql)
            except sqlite3.Error as exc:
                out(f"{kind} {name}: not recreated ({exc})")
    if {"messages_map", "messages_counter"} <= copied:
        restored = restore_missing_counters(target)
        if restored:
            out(f"messages_counter: {restored} lost counter(s) rebuilt from the highest id of their messages")
    if {"messages_map", "messages_newest"} <= copied:
        # an entry lost with a damaged page would make the back-fill start from the time of loss, not the channel's
        # newest message; the recovered rows say where each channel stands
        restore_newest(target)
    return reports
