"""The syncId correlator: exactly one response per command (pure, literal times)."""

from __future__ import annotations

from adapters.mirai.correlator import CommandCorrelator, Outcome


def test_completion_before_the_deadline() -> None:
    c = CommandCorrelator(timeout=10.0)
    t = c.begin("a", "sendGroupMessage", now=0.0)
    assert c.next_deadline() == 10.0
    r = c.complete(t, {"code": 0, "msg": "success", "messageId": 1})
    assert r is not None and r.sync_id == "a" and r.outcome is Outcome.COMPLETED
    assert c.expire(now=100.0) == []
    assert c.next_deadline() is None
    assert c.in_flight == 0


def test_timeout_gives_a_code_500_and_the_late_result_is_dropped() -> None:
    c = CommandCorrelator(timeout=5.0)
    t = c.begin("slow", "memberList", now=1.0)
    assert c.expire(now=5.9) == []
    (r,) = c.expire(now=6.0)
    assert r.sync_id == "slow" and r.outcome is Outcome.TIMED_OUT
    assert r.data["code"] == 500 and "memberList" in str(r.data["msg"]) and "5 s" in str(r.data["msg"])
    assert c.complete(t, {"code": 0}) is None
    stats = c.statistics()
    assert (stats.timed_out, stats.late_dropped, stats.in_flight) == (1, 1, 0)


def test_failure_is_code_500_and_only_once() -> None:
    c = CommandCorrelator(timeout=5.0)
    t = c.begin("x", "recall", now=0.0)
    r = c.fail(t, "internal error: boom")
    assert r is not None and r.data == {"code": 500, "msg": "internal error: boom"} and r.outcome is Outcome.FAILED
    assert c.complete(t, {"code": 0}) is None
    assert c.expire(now=10.0) == []


def test_duplicate_in_flight_sync_ids_are_each_answered_once() -> None:
    c = CommandCorrelator(timeout=5.0)
    first = c.begin("dup", "a", now=0.0)
    second = c.begin("dup", "b", now=1.0)
    assert c.statistics().duplicate_sync_ids == 1
    r2 = c.complete(second, {"code": 0, "n": 2})
    assert r2 is not None and r2.data["n"] == 2
    (r1,) = c.expire(now=5.0)
    assert r1.sync_id == "dup" and r1.outcome is Outcome.TIMED_OUT
    assert c.complete(first, {"code": 0}) is None
    assert c.begin("dup", "c", now=6.0) is not None
    assert c.statistics().duplicate_sync_ids == 1  # no longer a duplicate once the others are answered


def test_deadlines_expire_in_order_and_skip_answered_commands() -> None:
    c = CommandCorrelator(timeout=3.0)
    tickets = [c.begin(str(i), "cmd", now=float(i)) for i in range(5)]
    c.complete(tickets[0], {"code": 0})
    assert c.next_deadline() == 4.0
    assert [r.sync_id for r in c.expire(now=5.5)] == ["1", "2"]
    assert c.next_deadline() == 6.0


def test_null_sync_id_is_tracked_too() -> None:
    c = CommandCorrelator(timeout=1.0)
    t = c.begin(None, "about", now=0.0)
    r = c.complete(t, {"code": 0})
    assert r is not None and r.sync_id is None
