"""A damaged page in the outbox's table (relay.storage.outbox with relay.storage.salvage): delivery goes past it,
the loss is reported once, and the next write moves the readable frames into a fresh table."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from relay.config import OutboxConfig
from relay.storage.outbox import Outbox
from tests.sqlite_damage import damage_table

BACKLOG = 1_000


def frame(i: int) -> str:
    return f'{{"syncId":"-1","data":{{"type":"GroupMessage","n":{i},"pad":"{"x" * 700}"}}}}'


def damaged_backlog(path: str) -> None:
    """A file whose outbox holds BACKLOG frames for the destination "fw", one leaf page of them damaged."""
    with Outbox(path, OutboxConfig()) as box:
        box.register("fw")
        for i in range(1, BACKLOG + 1):
            box.append(frame(i))
    damage_table(path, "outbox_events")


def read_all(box: Outbox, destination: str) -> list[int]:
    seen = []
    while batch := box.read_after(box.cursor(destination), 128):
        seen.extend(seq for seq, _ in batch)
        box.ack(destination, batch[-1][0])
    return seen


def test_a_reader_goes_past_a_damaged_page_and_the_loss_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    damaged_backlog(path)
    with caplog.at_level(logging.ERROR, logger="relay.storage.outbox"), Outbox(path, OutboxConfig()) as box:
        box.register("fw")
        with pytest.raises(sqlite3.DatabaseError):  # the file really is damaged there
            box._db.execute("SELECT COUNT(*) FROM outbox_events").fetchone()
        seen = read_all(box, "fw")
        lost = sorted(set(range(1, BACKLOG + 1)) - set(seen))
        assert seen == sorted(seen) and seen[-1] == BACKLOG
        assert 0 < len(lost) < 20 and lost == list(range(lost[0], lost[-1] + 1))  # one leaf page's frames
        reports = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
        assert len(reports) == 1
        assert f"{len(lost)} undelivered frames (seq {lost[0]}–{lost[-1]})" in reports[0] and path in reports[0]
        assert box.statistics().unreadable == len(lost)
        # a second destination reading the same range is not reported again
        box.register("fw2")
        box._cursors["fw2"] = 0
        assert read_all(box, "fw2") == seen
        assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1


def test_the_next_write_moves_the_readable_frames_to_a_fresh_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    damaged_backlog(path)
    with caplog.at_level(logging.WARNING, logger="relay.storage.outbox"), Outbox(path, OutboxConfig()) as box:
        box.register("fw")
        seen = read_all(box, "fw")[:100]  # the framework has a hundred of them, then goes away
        box._cursors["fw"] = seen[-1]
        for i in range(BACKLOG + 1, BACKLOG + 1_001):
            box.append(frame(i))
        box.flush()  # its DELETE of the delivered frames reaches the damaged page: the frames move first
        assert any("damaged one is kept" in r.getMessage() for r in caplog.records)
        tables = {r[0] for r in box._db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert "outbox_events_damaged_1" in tables
        assert box._db.execute("PRAGMA quick_check(outbox_events)").fetchall() == [("ok",)]
        rest = read_all(box, "fw")
        assert rest[-1000:] == list(range(BACKLOG + 1, BACKLOG + 1_001))  # every new frame
        assert rest[0] == 101
        box.flush()  # and writing goes on
    with Outbox(path, OutboxConfig()) as reopened:  # the fresh table opens cleanly; everything was delivered
        assert reopened.read_after(reopened.register("fw"), 10) == []
        assert reopened.last_seq == BACKLOG + 1_000


def test_an_outbox_whose_oldest_frames_are_damaged_still_opens_and_delivers_the_rest(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    with Outbox(path, OutboxConfig()) as box:
        box.register("fw")
        for i in range(1, BACKLOG + 1):
            box.append(frame(i))
    damage_table(path, "outbox_events", which=0.0)  # the first leaf: MIN(seq) cannot be read
    with Outbox(path, OutboxConfig()) as box:
        seen = read_all(box, "fw") if box.register("fw") == 0 else []
        assert seen[-1] == BACKLOG and 0 < BACKLOG - len(seen) < 20
        assert box.statistics().unreadable == BACKLOG - len(seen)
