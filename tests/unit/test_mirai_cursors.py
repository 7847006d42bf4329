"""Cursors of frameworks that connect to the bridge, and the http adapter's unread queue (a real outbox file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.mirai import codec
from adapters.mirai.cursors import DynamicCursors, PollQueue, http_cursor, valid_client_name, ws_cursor
from relay.config import OutboxConfig
from relay.storage.outbox import Outbox


def frame(n: int) -> str:
    return codec.encode_event("-1", {"type": "GroupMessage", "n": n})


def numbers(frames: list[str]) -> list[int]:
    return [int(codec.event_data_text(f).split('"n":')[1].rstrip("}")) for f in frames]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(str(tmp_path / "b.sqlite3"), OutboxConfig())
    box.register("reverse")
    return box


def test_names() -> None:
    assert ws_cursor("42", "all") == "ws:42:all" and http_cursor("bot-a") == "http:bot-a"
    assert valid_client_name("bot.a_1-2") and not valid_client_name("") and not valid_client_name("a b")
    assert not valid_client_name("x" * 65) and not valid_client_name("a:b")


def test_cursors_live_while_used_and_are_forgotten_after_max_idle(outbox: Outbox) -> None:
    cursors = DynamicCursors(outbox, max_idle=100.0)
    assert cursors.acquire("ws:1:all", now=0.0) == 0
    cursors.touch("http:1", now=0.0)
    assert cursors.sweep(now=1_000.0) == ["http:1"]  # the connected one stays, however long
    cursors.release("ws:1:all", now=1_000.0)
    assert cursors.sweep(now=1_050.0) == []
    assert cursors.sweep(now=1_101.0) == ["ws:1:all"]
    assert set(outbox.statistics().cursors) == {"reverse"}


def test_saved_cursors_are_adopted_at_start(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite3")
    with Outbox(path, OutboxConfig()) as box:
        DynamicCursors(box, max_idle=10).acquire("ws:7:message", now=0)
        box.append(frame(1))
    with Outbox(path, OutboxConfig()) as box:
        cursors = DynamicCursors(box, max_idle=10)
        assert cursors.adopt_saved(now=500.0) == ["ws:7:message"]
        assert box.cursor("ws:7:message") == 0  # holds frame 1 for its framework
        assert cursors.sweep(now=505.0) == [] and cursors.sweep(now=511.0) == ["ws:7:message"]


def test_poll_queue_fetch_peek_and_count(outbox: Outbox) -> None:
    DynamicCursors(outbox, max_idle=10).touch("http:q", now=0)
    queue = PollQueue(outbox, "http:q", window=5)
    for n in range(1, 9):
        outbox.append(frame(n))
    assert queue.count() == 5
    assert numbers(queue.peek(2)) == [1, 2]
    assert numbers(queue.peek_latest(2)) == [5, 4]
    assert numbers(queue.peek_latest(0)) == []
    assert numbers(queue.fetch(3)) == [1, 2, 3]
    assert outbox.cursor("http:q") == 3
    assert numbers(queue.fetch_latest(2)) == [8, 7]  # the window is now 4..8
    assert outbox.cursor("http:q") == 3  # 4, 5 and 6 are still unread
    assert numbers(queue.peek(10)) == [4, 5, 6]
    assert queue.count() == 3
    outbox.append(frame(9))
    assert numbers(queue.peek(10)) == [4, 5, 6, 9]
    assert numbers(queue.fetch(2)) == [4, 5]
    assert outbox.cursor("http:q") == 5
    assert numbers(queue.fetch(1)) == [6]
    assert outbox.cursor("http:q") == 8  # past 7 and 8, taken before
    assert numbers(queue.fetch(10)) == [9]
    assert queue.fetch(10) == [] and queue.fetch_latest(3) == [] and queue.count() == 0


def test_fetch_latest_of_the_whole_window_moves_the_cursor(outbox: Outbox) -> None:
    DynamicCursors(outbox, max_idle=10).touch("http:q", now=0)
    queue = PollQueue(outbox, "http:q", window=3)
    for n in range(1, 6):
        outbox.append(frame(n))
    assert numbers(queue.fetch_latest(10)) == [3, 2, 1]
    assert outbox.cursor("http:q") == 3
    assert numbers(queue.fetch(10)) == [4, 5]
    assert queue.fetch_latest(-1) == []
