"""The sans-I/O gateway core: payloads and ``now`` in, events and frames out. No trio, no sockets."""

from __future__ import annotations

import json
import math
import random
import zlib
from typing import Any

import pytest

from adapters.discord.gateway.close_codes import RESUMABLE_CLOSE_CODE, CloseAction
from adapters.discord.gateway.events import (
    DispatchReceived,
    ResumeState,
    ShardConnected,
    ShardDisconnected,
    ShardReady,
    ShardResumed,
)
from adapters.discord.gateway.pacing import IdentifyPacer, SendRateLimiter
from adapters.discord.gateway.payloads import PayloadDecoder, ZlibStreamInflater, gateway_connect_url
from adapters.discord.gateway.session import MAX_PENDING_SENDS, ShardSession, ShardState
from adapters.discord.rest.client import GatewayBotInfo, SessionStartLimit
from relay.backoff import backoff_delay
from relay.config import BackoffConfig
from relay.errors import FrameTooLarge, IdentifyBudgetExhausted, LocalProtocolError, RemoteProtocolError

TOKEN = "unit-token.xyz"
MAIN = "wss://gateway.example"
RESUME = "wss://resume.example"


def make_session(**kwargs: Any) -> ShardSession:
    defaults: dict[str, Any] = {
        "shard_id": 0,
        "shard_count": 1,
        "token": TOKEN,
        "intents": 513,
        "gateway_url": MAIN,
        "rng": random.Random(1),
        "intent_names": ("GUILDS", "GUILD_MESSAGES"),
    }
    defaults.update(kwargs)
    return ShardSession(**defaults)


def hello(ms: int = 40_000) -> dict[str, Any]:
    return {"op": 10, "d": {"heartbeat_interval": ms}}


def dispatch(name: str, seq: int, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"op": 0, "t": name, "s": seq, "d": data if data is not None else {}}


def ready(seq: int = 1, session_id: str = "s1") -> dict[str, Any]:
    return dispatch(
        "READY",
        seq,
        {
            "v": 10,
            "user": {"id": "99", "username": "bot"},
            "guilds": [{"id": "5", "unavailable": True}, {"id": "6", "unavailable": True}],
            "session_id": session_id,
            "resume_gateway_url": RESUME,
        },
    )


def frames(gw: ShardSession, now: float) -> list[dict[str, Any]]:
    return [json.loads(f) for f in gw.frames_to_send(now=now)]


def connected(gw: ShardSession | None = None, now: float = 0.0) -> ShardSession:
    """A session that went through HELLO → IDENTIFY → READY at ``now``."""
    gw = gw or make_session()
    gw.connection_opened(now=now)
    gw.receive(hello(), now=now)
    gw.identify_now(now=now)
    frames(gw, now)
    gw.receive(ready(), now=now)
    return gw


# --------------------------------------------------------------------------- identify / ready


def test_hello_then_identify_payload() -> None:
    gw = make_session(shard_id=1, shard_count=3, large_threshold=100)
    (ev,) = gw.connection_opened(now=0.0)
    assert isinstance(ev, ShardConnected)
    assert not ev.resuming
    assert ev.url == MAIN + "/?v=10&encoding=json&compress=zlib-stream"
    assert gw.receive(hello(), now=0.0) == []
    assert gw.identify_pending
    assert frames(gw, 0.0) == []  # nothing until the shell grants an identify slot
    gw.identify_now(now=0.5)
    (identify,) = frames(gw, 0.5)
    assert identify["op"] == 2
    d = identify["d"]
    assert d["token"] == TOKEN
    assert d["intents"] == 513
    assert d["shard"] == [1, 3]
    assert d["compress"] is False
    assert d["large_threshold"] == 100
    assert set(d["properties"]) == {"os", "browser", "device"}
    assert gw.state is ShardState.AUTHENTICATING


def test_ready_keeps_session_user_and_guilds() -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    gw.identify_now(now=0.0)
    events = gw.receive(ready(), now=1.0)
    assert [type(e) for e in events] == [DispatchReceived, ShardReady]
    assert events[0].name == "READY"  # type: ignore[union-attr]
    r = events[1]
    assert isinstance(r, ShardReady)
    assert r.session == ResumeState(session_id="s1", seq=1, resume_url=RESUME)
    assert r.user["id"] == "99"
    assert r.guild_ids == (5, 6)
    assert gw.state is ShardState.CONNECTED
    assert gw.session_state() == r.session


def test_token_not_in_repr() -> None:
    gw = connected()
    assert TOKEN not in repr(gw)


@pytest.mark.parametrize(
    "bad",
    [
        {"session_id": "", "resume_gateway_url": RESUME, "user": {"id": "1"}},
        {"session_id": "s", "resume_gateway_url": "http://x", "user": {"id": "1"}},
        {"session_id": "s", "resume_gateway_url": RESUME, "user": {}},
    ],
)
def test_malformed_ready_is_a_remote_protocol_error(bad: dict[str, Any]) -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    gw.identify_now(now=0.0)
    with pytest.raises(RemoteProtocolError):
        gw.receive(dispatch("READY", 1, bad), now=0.0)


def test_malformed_hello_asks_to_close_and_raises() -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    with pytest.raises(RemoteProtocolError):
        gw.receive({"op": 10, "d": {}}, now=0.0)
    assert gw.close_code == RESUMABLE_CLOSE_CODE


def test_unknown_opcode_is_ignored() -> None:
    gw = connected()
    assert gw.receive({"op": 42, "d": None}, now=1.0) == []
    assert gw.state is ShardState.CONNECTED


# --------------------------------------------------------------------------- heartbeats


def test_first_heartbeat_is_jittered_then_every_interval_with_last_seq() -> None:
    rng = random.Random(5)
    expected_jitter = random.Random(5).random()
    gw = make_session(rng=rng)
    gw.connection_opened(now=100.0)
    gw.receive(hello(10_000), now=100.0)
    assert gw.next_deadline() == pytest.approx(100.0 + 10.0 * expected_jitter)
    gw.identify_now(now=100.0)
    frames(gw, 100.0)
    gw.receive(ready(seq=1), now=100.0)
    gw.receive(dispatch("MESSAGE_CREATE", 2), now=100.0)
    first = gw.next_deadline()
    assert gw.tick(now=first - 0.01) == []
    assert frames(gw, first - 0.01) == []
    gw.tick(now=first)
    assert frames(gw, first) == [{"op": 1, "d": 2}]
    gw.receive({"op": 11}, now=first + 0.2)
    assert gw.latency == pytest.approx(0.2)
    assert gw.next_deadline() == pytest.approx(first + 10.0)
    gw.receive(dispatch("MESSAGE_CREATE", 3), now=first + 1)
    gw.tick(now=first + 10.0)
    assert frames(gw, first + 10.0) == [{"op": 1, "d": 3}]


def test_heartbeat_request_is_answered_at_once() -> None:
    gw = connected()
    gw.receive(dispatch("MESSAGE_CREATE", 7), now=1.0)
    deadline = gw.next_deadline()
    gw.receive({"op": 1, "d": None}, now=1.0)
    assert gw.has_work
    assert frames(gw, 1.0) == [{"op": 1, "d": 7}]
    assert gw.next_deadline() == deadline  # schedule unchanged


def test_zombie_when_previous_heartbeat_unacked() -> None:
    gw = connected()
    t = gw.next_deadline()
    gw.tick(now=t)
    frames(gw, t)
    t2 = gw.next_deadline()
    gw.tick(now=t2)  # no ACK came
    assert gw.state is ShardState.CLOSING
    assert gw.close_code == RESUMABLE_CLOSE_CODE
    assert frames(gw, t2) == []
    (ev,) = gw.connection_lost(RESUMABLE_CLOSE_CODE, now=t2 + 0.1)
    assert isinstance(ev, ShardDisconnected)
    assert ev.action is CloseAction.RESUME
    assert "zombie" in ev.reason
    assert gw.session_state() is not None  # kept for the resume


def test_zombie_check_also_runs_on_resumed_connections() -> None:
    gw = connected()
    gw.connection_lost(1006, now=1.0)
    gw.connection_opened(now=2.0)
    gw.receive(hello(), now=2.0)
    frames(gw, 2.0)
    gw.receive(dispatch("RESUMED", 2), now=2.0)
    t = gw.next_deadline()
    gw.tick(now=t)
    frames(gw, t)
    gw.tick(now=gw.next_deadline())
    assert gw.state is ShardState.CLOSING


# --------------------------------------------------------------------------- resume and dedupe


def test_resume_after_drop_uses_resume_url_and_dedupes_replay() -> None:
    gw = connected()
    delivered = [gw.receive(dispatch("MESSAGE_CREATE", s), now=1.0) for s in (2, 3, 4)]
    assert all(len(d) == 1 for d in delivered)
    (lost,) = gw.connection_lost(None, now=2.0)
    assert isinstance(lost, ShardDisconnected)
    assert lost.action is CloseAction.RESUME
    assert lost.will_retry_in is not None
    assert gw.connect_url().startswith(RESUME + "/?v=10")
    (opened,) = gw.connection_opened(now=3.0)
    assert isinstance(opened, ShardConnected)
    assert opened.resuming
    gw.receive(hello(), now=3.0)
    assert not gw.identify_pending
    (resume,) = frames(gw, 3.0)
    assert resume == {"op": 6, "d": {"token": TOKEN, "session_id": "s1", "seq": 4}}
    # the server replays from 3 (overlap) — already-seen seqs are not handed on twice
    assert gw.receive(dispatch("MESSAGE_CREATE", 3), now=3.1) == []
    assert gw.receive(dispatch("MESSAGE_CREATE", 4), now=3.1) == []
    (new,) = gw.receive(dispatch("MESSAGE_CREATE", 5), now=3.1)
    assert isinstance(new, DispatchReceived)
    assert new.seq == 5
    events = gw.receive(dispatch("RESUMED", 6), now=3.2)
    resumed = events[-1]
    assert isinstance(resumed, ShardResumed)
    assert resumed.replayed == 1
    assert gw.statistics().duplicates_dropped == 2


def test_initial_session_resumes_instead_of_identifying() -> None:
    gw = make_session(initial_session=ResumeState(session_id="old", seq=41, resume_url=RESUME))
    assert not gw.will_identify
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    assert frames(gw, 0.0) == [{"op": 6, "d": {"token": TOKEN, "session_id": "old", "seq": 41}}]


def test_op7_closes_resumably_and_reconnects_at_once() -> None:
    gw = connected()
    assert gw.receive({"op": 7, "d": None}, now=5.0) == []
    assert gw.close_code == RESUMABLE_CLOSE_CODE
    assert gw.receive(dispatch("MESSAGE_CREATE", 2), now=5.0) == []  # ignored while closing: replayed later
    (ev,) = gw.connection_lost(RESUMABLE_CLOSE_CODE, now=5.1)
    assert isinstance(ev, ShardDisconnected)
    assert ev.action is CloseAction.RESUME
    assert ev.will_retry_in == 0.0
    assert gw.session_state() == ResumeState(session_id="s1", seq=1, resume_url=RESUME)


def test_op9_resumable_waits_then_resumes() -> None:
    gw = connected()
    gw.receive({"op": 9, "d": True}, now=5.0)
    (ev,) = gw.connection_lost(None, now=5.0)
    assert isinstance(ev, ShardDisconnected)
    assert ev.action is CloseAction.RESUME
    assert ev.will_retry_in is not None
    assert 1.0 <= ev.will_retry_in <= 5.0
    assert not gw.will_identify


def test_op9_not_resumable_drops_session_and_identifies_on_main_url() -> None:
    gw = connected()
    gw.receive(dispatch("MESSAGE_CREATE", 9), now=1.0)
    gw.receive({"op": 9, "d": False}, now=5.0)
    assert gw.close_code == RESUMABLE_CLOSE_CODE
    (ev,) = gw.connection_lost(RESUMABLE_CLOSE_CODE, now=5.0)
    assert isinstance(ev, ShardDisconnected)
    assert ev.action is CloseAction.REIDENTIFY
    assert ev.will_retry_in is not None
    assert 1.0 <= ev.will_retry_in <= 5.0
    assert gw.will_identify
    assert gw.session_state() is None
    assert gw.connect_url().startswith(MAIN + "/?")
    # the new session's seq restarts at 1 and is not mistaken for a duplicate
    connected(gw, now=10.0)
    (ev2,) = gw.receive(dispatch("MESSAGE_CREATE", 2), now=10.0)
    assert isinstance(ev2, DispatchReceived)


def test_reidentify_close_code_drops_session() -> None:
    gw = connected()
    (ev,) = gw.connection_lost(4009, now=1.0)
    assert isinstance(ev, ShardDisconnected)
    assert ev.action is CloseAction.REIDENTIFY
    assert gw.will_identify


def test_fatal_close_code_stops() -> None:
    gw = make_session(intent_names=("GUILDS", "GUILD_MEMBERS"))
    connected(gw)
    (ev,) = gw.connection_lost(4014, now=1.0)
    assert isinstance(ev, ShardDisconnected)
    assert ev.action is CloseAction.FATAL
    assert ev.will_retry_in is None
    assert gw.state is ShardState.STOPPED
    assert gw.fatal_error is not None
    assert gw.fatal_error.fatal
    assert "Server Members Intent" in gw.fatal_error.advice
    assert TOKEN not in str(gw.fatal_error)
    assert gw.connection_lost(None, now=2.0) == []


def test_connect_failures_back_off_and_fall_back_from_a_dead_resume_url() -> None:
    gw = connected()
    gw.connection_lost(1006, now=1.0)
    delays = []
    urls = []
    for i in range(7):
        urls.append(gw.connect_url())
        (ev,) = gw.connection_lost(None, now=2.0 + i, reason="could not connect")
        assert isinstance(ev, ShardDisconnected)
        assert ev.will_retry_in is not None
        delays.append(ev.will_retry_in)
    assert urls[0].startswith(RESUME)
    assert any(u.startswith(MAIN) for u in urls)  # the resume host looks dead: main URL
    assert gw.will_identify  # after RESUME_GIVE_UP_AFTER failed resumes, a new session
    assert all(0 <= d <= 60.0 for d in delays)


def test_backoff_resets_after_a_healthy_connection() -> None:
    gw = make_session(backoff=BackoffConfig(initial=1.0, factor=2.0, cap=1000.0))
    connected(gw)
    for i in range(5):
        gw.connection_lost(None, now=float(i))
    assert gw.statistics().reconnects == 5
    gw.connection_opened(now=10.0)
    gw.receive(hello(), now=10.0)
    gw.receive(dispatch("RESUMED", 2), now=10.0)
    gw.receive({"op": 11}, now=10.0)
    (ev,) = gw.connection_lost(1006, now=100.0)  # it stayed up for 90 s
    assert isinstance(ev, ShardDisconnected)
    assert ev.will_retry_in is not None
    assert ev.will_retry_in <= 1.0  # attempt 0 again: uniform(0, initial)


def test_connection_opened_twice_is_our_bug() -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    with pytest.raises(LocalProtocolError):
        gw.connection_opened(now=0.0)


# --------------------------------------------------------------------------- sends


def test_application_sends_wait_for_connected_and_respect_the_limit() -> None:
    gw = make_session()
    for i in range(200):
        assert gw.queue_send({"op": 3, "d": {"status": "online", "i": i}})
    connected(gw, now=0.0)  # identify took one slot of the window
    sent: list[tuple[float, int]] = [(0.0, 2)]  # the identify
    now = 0.0
    while sum(1 for _, op in sent if op == 3) < 200:
        sent.extend((now, json.loads(f)["op"]) for f in gw.frames_to_send(now=now))
        now = max(now + 0.001, min(gw.next_deadline(), now + 5.0))
        gw.tick(now=now)
        gw.receive({"op": 11}, now=now)
    for i, (start, _) in enumerate(sent):
        window = [op for t, op in sent[i:] if t < start + 60.0]
        assert len(window) <= 120
        assert sum(1 for op in window if op == 3) <= 117
    sent_at = [t for t, op in sent if op == 3]
    assert sent_at[0] == 0.0
    assert sent_at[-1] >= 60.0


def test_queue_send_refuses_our_own_opcodes_and_oversized_payloads() -> None:
    gw = make_session()
    with pytest.raises(LocalProtocolError):
        gw.queue_send({"op": 2, "d": {}})
    with pytest.raises(LocalProtocolError):
        gw.queue_send({"op": 3, "d": {"x": "y" * 5000}})


def test_queue_send_is_bounded() -> None:
    gw = make_session()
    for _ in range(MAX_PENDING_SENDS):
        assert gw.queue_send({"op": 3, "d": None})
    assert not gw.queue_send({"op": 3, "d": None})


def test_send_limiter_keeps_room_for_heartbeats() -> None:
    limiter = SendRateLimiter()
    for _ in range(117):
        assert limiter.delay(0.0, priority=False) == 0.0
        limiter.record(0.0)
    assert limiter.delay(1.0, priority=False) == pytest.approx(59.0)
    assert limiter.delay(1.0, priority=True) == 0.0
    for _ in range(3):
        limiter.record(1.0)
    assert limiter.delay(1.0, priority=True) == pytest.approx(59.0)
    assert limiter.delay(60.0, priority=False) == 0.0  # the first 117 left the window
    # exactly the 3 sends of t=1 still count: the normal lane has 114 left, the next one waits for t=61
    for _ in range(114):
        limiter.record(60.0)
    assert limiter.delay(60.0, priority=False) == pytest.approx(1.0)


# --------------------------------------------------------------------------- identify pacing


def limit(remaining: int = 1000, reset_after: float = 3600.0, max_concurrency: int = 1) -> SessionStartLimit:
    return SessionStartLimit(total=1000, remaining=remaining, reset_after=reset_after, max_concurrency=max_concurrency)


def test_identify_budget_zero_waits_for_reset() -> None:
    pacer = IdentifyPacer.from_limit(limit(remaining=0, reset_after=120.0), now=10.0, reserve=5)
    assert pacer.acquire(0, now=10.0) == pytest.approx(120.0)
    assert pacer.acquire(0, now=100.0) == pytest.approx(30.0)
    assert pacer.acquire(0, now=130.0) == 0.0
    assert pacer.remaining == 999


def test_identify_reserve_is_never_spent() -> None:
    pacer = IdentifyPacer.from_limit(limit(remaining=7, reset_after=1000.0), now=0.0, reserve=5)
    assert pacer.acquire(0, now=0.0) == 0.0
    assert pacer.acquire(0, now=5.0) == 0.0
    assert pacer.acquire(0, now=10.0) == pytest.approx(990.0)
    assert isinstance(pacer.budget_error(10.0), IdentifyBudgetExhausted)


def test_identify_budget_that_can_never_allow_raises() -> None:
    pacer = IdentifyPacer(total=3, remaining=0, reset_at=0.0, max_concurrency=1, reserve=5)
    with pytest.raises(IdentifyBudgetExhausted):
        pacer.acquire(0, now=1.0)


def test_identify_concurrency_buckets() -> None:
    pacer = IdentifyPacer.from_limit(limit(max_concurrency=2), now=0.0, reserve=5)
    assert pacer.acquire(0, now=0.0) == 0.0
    assert pacer.acquire(1, now=0.0) == 0.0  # other bucket: same window is fine
    assert pacer.acquire(2, now=1.0) == pytest.approx(4.0)  # bucket 0 again
    assert pacer.acquire(2, now=5.0) == 0.0
    single = IdentifyPacer.from_limit(limit(max_concurrency=1), now=0.0, reserve=5)
    assert single.acquire(0, now=0.0) == 0.0
    assert single.acquire(1, now=0.0) == pytest.approx(5.0)


# --------------------------------------------------------------------------- backoff


def test_backoff_is_full_jitter_and_capped() -> None:
    cfg = BackoffConfig(initial=1.0, factor=2.0, cap=60.0)
    rng = random.Random(0)
    for attempt in range(12):
        ceiling = min(60.0, 2.0**attempt)
        values = [backoff_delay(cfg, attempt, rng) for _ in range(50)]
        assert all(0.0 <= v <= ceiling for v in values)
    assert backoff_delay(cfg, 10_000, rng) <= 60.0  # no overflow on absurd attempt counts


# --------------------------------------------------------------------------- decoding


def compress_stream(payloads: list[bytes]) -> list[bytes]:
    comp = zlib.compressobj()
    return [comp.compress(p) + comp.flush(zlib.Z_SYNC_FLUSH) for p in payloads]


def test_zlib_stream_fast_path_and_split_payload() -> None:
    inflater = ZlibStreamInflater(max_size=1 << 20)
    first, second = compress_stream([b'{"op":11}', b'{"op":0,"t":"X","s":1,"d":{}}'])
    assert inflater.feed(first) == b'{"op":11}'
    parts = [second[:3], second[3:7], second[7:]]
    assert inflater.feed(parts[0]) is None
    assert inflater.feed(parts[1]) is None
    assert inflater.feed(parts[2]) == b'{"op":0,"t":"X","s":1,"d":{}}'


def test_zlib_stream_corrupt_and_oversized() -> None:
    with pytest.raises(RemoteProtocolError):
        ZlibStreamInflater(max_size=1000).feed(b"not zlib at all\x00\x00\xff\xff")
    (big,) = compress_stream([b"a" * 5000])
    with pytest.raises(FrameTooLarge):
        ZlibStreamInflater(max_size=1000).feed(big)
    with pytest.raises(FrameTooLarge):
        ZlibStreamInflater(max_size=10).feed(b"x" * 11)  # never-ending buffer


def test_zlib_stream_inflates_as_a_zlib_inflater_would() -> None:
    """Raw deflate after the header (no Adler-32 kept): the same bytes as the stdlib's zlib inflater, message by
    message, whatever window the sender chose."""
    payloads = [json.dumps({"op": 0, "s": n, "d": {"content": "x" * (n * 37 % 900)}}).encode() for n in range(300)]
    for wbits in (9, 12, 15):
        comp = zlib.compressobj(wbits=wbits)
        messages = [comp.compress(p) + comp.flush(zlib.Z_SYNC_FLUSH) for p in payloads]
        reference = zlib.decompressobj()
        inflater = ZlibStreamInflater(max_size=1 << 20)
        assert [inflater.feed(m) for m in messages] == [reference.decompress(m) for m in messages] == payloads


def test_zlib_stream_header_must_be_deflate_without_a_preset_dictionary() -> None:
    with_dictionary = zlib.compressobj(zdict=b'{"op":')
    message = with_dictionary.compress(b'{"op":11}') + with_dictionary.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(RemoteProtocolError, match="zlib header"):
        ZlibStreamInflater(max_size=1000).feed(message)
    (good,) = compress_stream([b'{"op":11}'])
    with pytest.raises(RemoteProtocolError, match="zlib header"):
        ZlibStreamInflater(max_size=1000).feed(bytes([good[0], good[1] ^ 1]) + good[2:])  # check bits wrong
    with pytest.raises(RemoteProtocolError, match="zlib header"):
        ZlibStreamInflater(max_size=1000).feed(b"\x00\x00\xff\xff")  # the marker alone
    split = ZlibStreamInflater(max_size=1000)  # a first payload split across messages: the header is in the first
    assert split.feed(good[:1]) is None
    assert split.feed(good[1:]) == b'{"op":11}'


def test_payload_decoder() -> None:
    plain = PayloadDecoder(compressed=False, max_size=1000)
    assert plain.feed('{"op":11}') == {"op": 11}
    for garbage in ("{", "[]", '{"op":"x"}', '"str"'):
        with pytest.raises(RemoteProtocolError):
            plain.feed(garbage)
    with pytest.raises(FrameTooLarge):
        plain.feed("x" * 1001)
    compressed = PayloadDecoder(compressed=True, max_size=1000)
    with pytest.raises(RemoteProtocolError):
        compressed.feed('{"op":11}')  # text frame on a zlib-stream connection
    (data,) = compress_stream([b'{"op":10,"d":{"heartbeat_interval":1}}'])
    assert compressed.feed(data) == {"op": 10, "d": {"heartbeat_interval": 1}}


def test_connect_url() -> None:
    assert gateway_connect_url("wss://gateway.discord.gg", compress=True) == (
        "wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream"
    )
    assert gateway_connect_url("wss://x.example/path?old=1", compress=False) == (
        "wss://x.example/path?v=10&encoding=json"
    )
    with pytest.raises(LocalProtocolError):
        gateway_connect_url("https://x.example", compress=True)


# --------------------------------------------------------------------------- models


def test_gateway_bot_info_from_json() -> None:
    info = GatewayBotInfo.from_json(
        {
            "url": "wss://gateway.discord.gg",
            "shards": 2,
            "session_start_limit": {"total": 1000, "remaining": 990, "reset_after": 14_400_000, "max_concurrency": 1},
        }
    )
    assert info.shards == 2
    assert info.session_start_limit.reset_after == pytest.approx(14_400.0)


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"url": "https://x", "shards": 1, "session_start_limit": {}},
        {"url": "wss://x", "shards": 0, "session_start_limit": {}},
        {"url": "wss://x", "shards": 1},
        {
            "url": "wss://x",
            "shards": 1,
            "session_start_limit": {"total": 1, "remaining": "1", "reset_after": 0, "max_concurrency": 1},
        },
        {
            "url": "wss://x",
            "shards": 1,
            "session_start_limit": {"total": 1, "remaining": 1, "reset_after": 0, "max_concurrency": 0},
        },
    ],
)
def test_gateway_bot_info_rejects_bad_shapes(obj: object) -> None:
    with pytest.raises(RemoteProtocolError):
        GatewayBotInfo.from_json(obj)


def test_session_state_round_trip() -> None:
    state = ResumeState(session_id="abc", seq=12, resume_url=RESUME)
    assert ResumeState.from_json(json.loads(json.dumps(state.to_json()))) == state
    for bad in ({}, {"session_id": "a", "seq": -1, "resume_url": RESUME}, {"session_id": "a", "resume_url": "x"}):
        with pytest.raises(RemoteProtocolError):
            ResumeState.from_json(bad)


def test_dispatch_with_non_object_data_passes_through_quietly() -> None:
    # issue 15: SESSIONS_REPLACE's d is a list; whether a d has the right shape is the translator's business
    gw = connected()
    (ev,) = gw.receive({"op": 0, "t": "SESSIONS_REPLACE", "s": 2, "d": [1, 2]}, now=1.0)
    assert isinstance(ev, DispatchReceived)
    assert ev.data == [1, 2]
    assert gw.statistics().malformed_dispatches == 0
    assert gw.receive({"op": 0, "s": 3, "d": {}}, now=1.0) == []  # no name: skipped, seq taken
    assert gw.malformed_dispatches == 1
    assert gw.seq == 3
    assert gw.state is ShardState.CONNECTED


def test_ready_whose_d_is_not_an_object_is_a_remote_protocol_error() -> None:
    gw = connected()
    with pytest.raises(RemoteProtocolError):
        gw.receive({"op": 0, "t": "READY", "s": 5, "d": [1]}, now=1.0)


def test_any_remote_protocol_error_finishes_the_connection() -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    gw.identify_now(now=0.0)
    with pytest.raises(RemoteProtocolError):
        gw.receive(dispatch("READY", 1, {"session_id": ""}), now=0.0)
    assert gw.state is ShardState.CLOSING
    assert gw.close_code == RESUMABLE_CLOSE_CODE
    assert gw.receive(dispatch("MESSAGE_CREATE", 2), now=0.0) == []


def test_next_deadline_is_infinite_when_disconnected() -> None:
    gw = make_session()
    assert gw.next_deadline() == math.inf


def test_slot_delay_peeks_without_taking() -> None:
    pacer = IdentifyPacer.from_limit(limit(max_concurrency=1), now=0.0, reserve=5)
    assert pacer.slot_delay(0, now=0.0) == 0.0
    assert pacer.slot_delay(0, now=0.0) == 0.0  # still free: peeking took nothing
    assert pacer.acquire(0, now=0.0) == 0.0
    assert pacer.slot_delay(1, now=2.0) == pytest.approx(3.0)
    assert pacer.remaining == 999


def test_op7_before_hello_backs_off() -> None:
    gw = connected()
    gw.connection_lost(1006, now=1.0)
    delays = []
    for i in range(6):
        gw.connection_opened(now=2.0 + i)
        gw.receive({"op": 7, "d": None}, now=2.0 + i)  # instead of HELLO
        (ev,) = gw.connection_lost(RESUMABLE_CLOSE_CODE, now=2.0 + i)
        assert isinstance(ev, ShardDisconnected)
        assert ev.will_retry_in is not None
        delays.append(ev.will_retry_in)
    assert all(d > 0.0 for d in delays)  # backoff, unlike op 7 on a live session (0.0)
