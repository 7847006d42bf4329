"""Cursors made on the fly (frameworks that connect to the bridge) can be listed and forgotten."""

from __future__ import annotations

from pathlib import Path

from relay.config import OutboxConfig
from relay.storage.outbox import Outbox


def frame(i: int) -> str:
    return f'{{"syncId":"-1","data":{{"type":"GroupMessage","n":{i}}}}}'


def test_a_forgotten_cursor_stops_holding_frames_and_is_deleted_on_disk(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    with Outbox(path, OutboxConfig()) as box:
        box.register("reverse")
        box.register("ws:42:all")
        box.register("ws:42:message")
        for i in range(5):
            box.append(frame(i))
        box.ack("reverse", 5)
        box.ack("ws:42:message", 2)
        box.flush()
        assert box.statistics().retained == 5  # the ws cursors have not got them
        assert box.saved_cursors("ws:") == {"ws:42:all": 0, "ws:42:message": 2}
        box.forget("ws:42:all")
        box.forget("ws:42:message")
        assert box.saved_cursors("ws:") == {}
        box.flush()
        assert box.statistics().retained == 0  # every remaining cursor has them all: collected
        assert "ws:42:all" not in box.statistics().cursors
    with Outbox(path, OutboxConfig()) as box:
        assert box.saved_cursors("ws:") == {}
        assert box.saved_cursors("") == {"reverse": 5}
        box.append(frame(6))
        assert box.register("ws:42:all") == 6  # a new framework starts at the end


def test_registering_a_forgotten_name_before_the_flush_starts_afresh(tmp_path: Path) -> None:
    path = str(tmp_path / "bridge.sqlite3")
    with Outbox(path, OutboxConfig()) as box:
        box.register("http:7")
        box.append(frame(1))
        box.flush()  # the cursor is saved at 0
        box.forget("http:7")
        box.append(frame(2))
        assert box.register("http:7") == 2  # not the saved 0
        box.flush()
    with Outbox(path, OutboxConfig()) as box:
        assert box.saved_cursors("http:") == {"http:7": 2}


def test_saved_cursors_matches_the_prefix_exactly(tmp_path: Path) -> None:
    with Outbox(str(tmp_path / "b.sqlite3"), OutboxConfig()) as box:
        for name in ("ws:a:all", "WS:b:all", "wsx", "w_:c", "http:d"):
            box.register(name)
        box.flush()
        assert set(box.saved_cursors("ws:")) == {"ws:a:all"}
        assert set(box.saved_cursors("w_")) == {"w_:c"}
