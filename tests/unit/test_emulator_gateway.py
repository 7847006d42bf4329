"""The emulator's gateway machine: payloads and ``now`` in, websocket messages and closes out. No trio, no sockets.

Identify, READY and GUILD_CREATE, every close code it produces, identify concurrency and budget, resume with
replay, heartbeats, zlib-stream, intents, content gating, sharding, op 8, and the world's events fanned out.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from relay.sandbox.emulator import intents as it
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.gateway import Abort, Close, Connection, Gateway, SendBinary, SendText
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH

TOKEN = "gw-token"
QUERY = {"v": "10", "encoding": "json"}
BRIDGE_INTENTS = 46599  # docs/discord.md §5: the bridge's set, privileged bits included
GUILD = 700_000_000_000_000_001
OWNER = 700_000_000_000_000_101
ALICE = 700_000_000_000_000_102
CHANNEL = 700_000_000_000_000_201


class Client:
    """One connection seen from the client: sends payloads, decodes what comes back (zlib-stream aware)."""

    def __init__(self, gateway: Gateway, now: float = 0.0, **query: str) -> None:
        self.gateway = gateway
        self.conn: Connection = gateway.connect("/", {**QUERY, **query}, now)
        self.inflater = zlib.decompressobj()
        self.buffer = b""
        self.closed: int | None = None
        self.aborted = False
        self.messages = 0

    def send(self, payload: Any, now: float = 0.0) -> None:
        self.gateway.receive(self.conn, payload if isinstance(payload, str) else json.dumps(payload), now)

    def received(self) -> list[dict[str, Any]]:
        out = []
        for output in self.conn.take():
            if isinstance(output, Close):
                self.closed = output.code
            elif isinstance(output, Abort):
                self.aborted = True
            elif isinstance(output, SendText):
                self.messages += 1
                out.append(json.loads(output.text))
            elif isinstance(output, SendBinary):
                self.messages += 1
                self.buffer += output.data
                if self.buffer.endswith(b"\x00\x00\xff\xff"):
                    out.append(json.loads(self.inflater.decompress(self.buffer)))
                    self.buffer = b""
        return out

    def identify(self, now: float = 0.0, *, intents: int = BRIDGE_INTENTS, shard: list[int] | None = None) -> None:
        d: dict[str, Any] = {"token": TOKEN, "intents": intents, "properties": {}}
        if shard is not None:
            d["shard"] = shard
        self.send({"op": 2, "d": d}, now)


def names(payloads: list[dict[str, Any]]) -> list[Any]:
    return [p.get("t") or p["op"] for p in payloads]


def make_gateway(**knobs: Any) -> Gateway:
    gateway = Gateway(token=TOKEN, url="ws://127.0.0.1:9", **knobs)
    gateway.start(0.0)
    return gateway


def make_emulator() -> Emulator:
    em = Emulator(token=TOKEN, epoch=FAKE_EPOCH)
    em.world.add_guild(GUILD, "Guild", owner_id=OWNER)
    em.world.add_channel(CHANNEL, "general", guild_id=GUILD)
    em.world.add_member(GUILD, ALICE, username="alice")
    em.bound(9)
    return em


# ---------------------------------------------------------------------- hello and identify


def test_hello_identify_ready_and_guild_create_from_the_world() -> None:
    em = make_emulator()
    client = Client(em.gateway)
    assert client.received() == [{"op": 10, "d": {"heartbeat_interval": 41250}}]
    client.identify()
    ready, guild = client.received()
    assert (ready["t"], ready["s"], guild["t"], guild["s"]) == ("READY", 1, "GUILD_CREATE", 2)
    assert ready["d"]["user"]["id"] == str(em.world.bot_user_id)
    assert ready["d"]["guilds"] == [{"id": str(GUILD), "unavailable": True}]
    assert ready["d"]["resume_gateway_url"] == "ws://127.0.0.1:9/resume"
    assert ready["d"]["shard"] == [0, 1]
    assert [c["name"] for c in guild["d"]["channels"]] == ["general"]
    assert "guild_id" not in guild["d"]["channels"][0]
    assert guild["d"]["member_count"] == 3 and guild["d"]["unavailable"] is False
    assert em.gateway.live_shards() == {0}
    assert len(em.gateway.identifies) == 1 and em.gateway.identifies[0].shard_id == 0


@pytest.mark.parametrize(
    ("query", "identify", "code"),
    [
        ({"v": "9"}, None, 4012),
        ({"encoding": "etf"}, None, 4012),
        ({}, {"token": "wrong", "intents": 1}, 4004),
        ({}, {"token": TOKEN, "intents": 1, "shard": [1, 1]}, 4010),
        ({}, {"token": TOKEN, "intents": 1 << 30}, 4013),
        ({}, {"token": TOKEN, "intents": "all"}, 4013),
    ],
)
def test_identify_refusals(query: dict[str, str], identify: dict[str, Any] | None, code: int) -> None:
    gateway = make_gateway()
    client = Client(gateway, **query)
    if identify is not None:
        client.received()
        client.send({"op": 2, "d": identify})
    client.received()
    assert client.closed == code
    assert gateway.server_closes == [(0.0, code)] and gateway.live_shards() == set()


def test_privileged_intents_must_be_enabled_in_the_portal() -> None:
    gateway = make_gateway(allowed_intents=it.ALL & ~it.MESSAGE_CONTENT)
    client = Client(gateway)
    client.identify()
    client.received()
    assert client.closed == 4014
    ok = Client(gateway, 10.0)
    ok.identify(10.0, intents=BRIDGE_INTENTS & ~it.MESSAGE_CONTENT)
    assert "READY" in names(ok.received())


def test_protocol_violations_close_with_their_codes() -> None:
    gateway = make_gateway()
    cases: list[tuple[Any, int]] = [
        ("{not json", 4002),
        ({"op": 1, "d": "x" * 5000}, 4002),
        ([1, 2], 4002),
        ({"op": 99}, 4001),
        ({"op": 8, "d": {"guild_id": "1"}}, 4003),  # before identify
    ]
    for payload, code in cases:
        client = Client(gateway)
        client.send(payload)
        client.received()
        assert client.closed == code, payload
    twice = Client(gateway)
    twice.identify()
    twice.identify(1.0)
    twice.received()
    assert twice.closed == 4005


def test_identify_concurrency_and_budget() -> None:
    gateway = make_gateway(identify_total=2, identify_remaining=2)
    first = Client(gateway)
    first.identify(0.0)
    assert "READY" in names(first.received())
    second = Client(gateway, 1.0)
    second.identify(1.0)  # within 5 s of the last identify of bucket 0
    assert second.received()[-1] == {"op": 9, "d": False} and gateway.invalid_sessions == [(1.0, False)]
    third = Client(gateway, 10.0)
    third.identify(10.0)  # the budget of 2 is spent (the refused one counted)
    third.received()
    assert third.closed == 4004
    assert gateway.gateway_bot_json(10.0)["session_start_limit"]["remaining"] == 0
    later = Client(gateway, 24 * 3600.0)
    later.identify(24 * 3600.0)  # the window reset
    assert "READY" in names(later.received())


def test_heartbeats_are_acked_unless_switched_off() -> None:
    gateway = make_gateway()
    client = Client(gateway)
    client.received()
    client.send({"op": 1, "d": None}, 1.0)
    assert client.received() == [{"op": 11}]
    gateway.ack_heartbeats = False
    client.send({"op": 1, "d": None}, 2.0)
    assert client.received() == []
    assert [h.time for h in gateway.heartbeats] == [1.0, 2.0]
    with pytest.raises(LookupError):  # not identified: no connection of shard 0 yet
        gateway.request_heartbeat()
    client.identify()
    client.received()
    gateway.request_heartbeat()
    assert client.received() == [{"op": 1, "d": None}]


def test_send_limit_closes_4008() -> None:
    gateway = make_gateway()
    client = Client(gateway)
    for i in range(120):
        client.send({"op": 1, "d": None}, i * 0.1)
    assert client.closed is None and gateway.live_connections()
    client.send({"op": 1, "d": None}, 12.5)
    client.received()
    assert client.closed == 4008
    relaxed = Client(gateway)
    gateway.enforce_send_limit = False
    for _ in range(200):
        relaxed.send({"op": 1, "d": None})
    assert relaxed.conn.live


# ---------------------------------------------------------------------- dispatches and resume


def test_resume_replays_what_was_missed_then_resumed() -> None:
    gateway = make_gateway()
    client = Client(gateway)
    client.identify()
    session_id = client.received()[-1]["d"]["session_id"]
    assert gateway.dispatch("MESSAGE_CREATE", {"n": 1}) == 2
    client.received()
    gateway.drop_connection()
    assert client.received() == [] and client.aborted
    assert gateway.dispatch_many("MESSAGE_CREATE", [{"n": 2}, {"n": 3}]) == [3, 4]  # buffered
    again = Client(gateway, 5.0)
    again.send({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 2}}, 5.0)
    replay = again.received()
    assert [(p["t"], p["s"]) for p in replay[1:]] == [("MESSAGE_CREATE", 3), ("MESSAGE_CREATE", 4), ("RESUMED", 5)]
    assert gateway.live_shards() == {0} and len(gateway.resumes) == 1


def test_resume_failures() -> None:
    gateway = make_gateway(replay_buffer_size=3)
    client = Client(gateway)
    client.identify()
    session_id = client.received()[-1]["d"]["session_id"]
    gateway.dispatch_many("X", [{}] * 5)  # seq 2..6; only 4..6 kept
    gateway.drop_connection()
    expired = Client(gateway)
    expired.send({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 1}})
    assert expired.received()[-1] == {"op": 9, "d": False}
    unknown = Client(gateway)
    unknown.send({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 1}})
    assert unknown.received()[-1] == {"op": 9, "d": False}
    future = Client(gateway)
    future.send({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 99}})
    future.received()
    assert future.closed == 4007
    wrong = Client(gateway)
    wrong.send({"op": 6, "d": {"token": "bad", "session_id": session_id, "seq": 3}})
    wrong.received()
    assert wrong.closed == 4004
    assert len(gateway.invalid_sessions) == 2


@pytest.mark.parametrize(("code", "resumable"), [(1000, False), (1001, False), (4000, True), (None, True)])
def test_client_close_1000_1001_ends_the_session(code: int | None, resumable: bool) -> None:
    gateway = make_gateway()
    client = Client(gateway)
    client.identify()
    session_id = client.received()[-1]["d"]["session_id"]
    gateway.connection_lost(client.conn, code, 1.0)
    assert gateway.client_closes == [(1.0, code)] and gateway.live_shards() == set()
    again = Client(gateway, 2.0)
    again.send({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 1}}, 2.0)
    assert (again.received()[-1].get("t") == "RESUMED") is resumable


def test_raw_dispatches_before_a_session_go_out_after_ready() -> None:
    gateway = make_gateway()
    assert gateway.dispatch("MESSAGE_CREATE", {"early": True}) is None
    client = Client(gateway)
    client.identify()
    assert names(client.received()) == [10, "READY", "MESSAGE_CREATE"]


def test_reconnect_invalidate_close_and_raw() -> None:
    gateway = make_gateway()
    client = Client(gateway)
    client.identify()
    client.received()
    gateway.send_reconnect()
    gateway.invalidate_session(True, 3.0)
    assert client.received() == [{"op": 7, "d": None}, {"op": 9, "d": True}]
    gateway.send_raw(b"\x00binary")
    gateway.send_raw("not json")
    assert [type(o) for o in client.conn.take()] == [SendBinary, SendText]
    gateway.invalidate_session(False, 4.0)
    assert gateway.session_of(0) is None
    gateway.close_with(4009, 5.0)
    client.received()
    assert client.closed == 4009 and gateway.server_closes == [(5.0, 4009)]
    with pytest.raises(LookupError):
        gateway.send_reconnect()


def test_zlib_stream_split_over_frames() -> None:
    gateway = make_gateway(split_frames=3)
    client = Client(gateway, compress="zlib-stream")
    client.identify()
    gateway.dispatch("MESSAGE_CREATE", {"content": "x" * 300})
    payloads = client.received()
    assert names(payloads) == [10, "READY", "MESSAGE_CREATE"]
    assert client.messages == 9 and payloads[-1]["d"]["content"] == "x" * 300
    assert client.conn.frames_sent == 9


def test_a_client_too_far_behind_is_dropped_and_can_resume() -> None:
    gateway = make_gateway(max_pending=10)
    client = Client(gateway)
    client.identify()
    session_id = client.received()[-1]["d"]["session_id"]
    gateway.dispatch_many("X", [{"i": i} for i in range(11)])
    assert client.received() == [] and client.aborted
    gateway.connection_lost(client.conn, None, 1.0)
    again = Client(gateway, 2.0)
    again.send({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 1}}, 2.0)
    assert len(again.received()) == 1 + 11 + 1


# ---------------------------------------------------------------------- the world's events


def test_world_events_reach_sessions_by_intents() -> None:
    em = make_emulator()
    everything = Client(em.gateway)
    everything.identify()
    everything.received()
    em.actions.post_message(CHANNEL, "hi", author_id=ALICE)
    em.actions.kick(GUILD, ALICE)
    assert names(everything.received()) == ["MESSAGE_CREATE", "GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_MEMBER_REMOVE"]
    # a session without GUILD_MEMBERS / GUILD_MODERATION / MESSAGE_CONTENT
    em.gateway.drop_connection()
    narrow = Client(em.gateway, 10.0)
    narrow.identify(10.0, intents=it.GUILDS | it.GUILD_MESSAGES)
    narrow.received()
    em.actions.member_join(GUILD, ALICE)
    em.actions.post_message(CHANNEL, "secret", author_id=ALICE)
    em.actions.post_message(CHANNEL, f"hey <@{em.world.bot_user_id}>", author_id=ALICE)
    em.actions.post_message(CHANNEL, "mine")
    join_notice, gated, mention, own = narrow.received()
    assert join_notice["d"]["type"] == 7  # the system message, not GUILD_MEMBER_ADD
    assert gated["d"]["content"] == "" and gated["d"]["attachments"] == []
    assert mention["d"]["content"].startswith("hey") and own["d"]["content"] == "mine"
    assert em.world.messages[CHANNEL][int(gated["d"]["id"])]["content"] == "secret"  # only the event is gated
    # the bot's own member update arrives without GUILD_MEMBERS
    em.actions.update_member(GUILD, em.world.bot_user_id, nick="relay")
    assert names(narrow.received()) == ["GUILD_MEMBER_UPDATE"]


def test_dm_events_need_direct_messages() -> None:
    em = make_emulator()
    client = Client(em.gateway)
    client.identify(intents=it.GUILDS | it.GUILD_MESSAGES | it.MESSAGE_CONTENT)
    client.received()
    dm = em.actions.open_dm(ALICE)
    em.actions.post_message(int(dm["id"]), "psst", author_id=ALICE)
    assert client.received() == []


def test_guild_events_go_to_their_shard_and_dms_to_shard_zero() -> None:
    em = make_emulator()
    other_guild = GUILD + (1 << 22)  # (id >> 22) % 2 differs
    em.world.add_guild(other_guild, "Other", owner_id=OWNER)
    em.world.add_channel(other_guild + 1, "elsewhere", guild_id=other_guild)
    shards = [Client(em.gateway), Client(em.gateway)]
    shards[0].identify(0.0, shard=[0, 2])
    shards[1].identify(10.0, shard=[1, 2])
    created = [[p["d"]["id"] for p in s.received() if p.get("t") == "GUILD_CREATE"] for s in shards]
    mine = (GUILD >> 22) % 2
    assert created[mine] == [str(GUILD)] and created[1 - mine] == [str(other_guild)]
    em.actions.post_message(CHANNEL, "in guild", author_id=ALICE)
    em.actions.post_message(int(em.actions.open_dm(ALICE)["id"]), "in dm", author_id=ALICE)
    received = [[p["d"]["content"] for p in s.received()] for s in shards]
    assert received[mine][0] == "in guild" and "in guild" not in received[1 - mine]
    assert "in dm" in received[0] and "in dm" not in received[1]


def test_request_guild_members_op8() -> None:
    em = make_emulator()
    client = Client(em.gateway)
    client.identify()
    client.received()
    client.send({"op": 8, "d": {"guild_id": str(GUILD), "query": "ali", "limit": 0, "nonce": "n"}})
    (chunk,) = client.received()
    assert chunk["t"] == "GUILD_MEMBERS_CHUNK"
    assert [m["user"]["username"] for m in chunk["d"]["members"]] == ["alice"]
    assert (chunk["d"]["chunk_index"], chunk["d"]["chunk_count"], chunk["d"]["nonce"]) == (0, 1, "n")
    client.send({"op": 8, "d": {"guild_id": str(GUILD), "user_ids": [str(ALICE), "5"]}})
    (by_id,) = client.received()
    assert len(by_id["d"]["members"]) == 1 and by_id["d"]["not_found"] == ["5"]
    client.send({"op": 8, "d": {"guild_id": str(GUILD), "query": "", "limit": 0, "nonce": "all"}}, 1.0)
    (whole,) = client.received()
    assert len(whole["d"]["members"]) == 3 and whole["d"]["nonce"] == "all"
    assert [r.payload["d"].get("nonce") for r in em.gateway.member_requests] == ["n", None, "all"]


def test_whole_guild_member_requests_are_rate_limited_per_guild() -> None:
    em = make_emulator()
    em.gateway.member_chunk_size = 2
    client = Client(em.gateway)
    client.identify()
    client.received()
    whole = {"guild_id": str(GUILD), "query": "", "limit": 0}
    client.send({"op": 8, "d": {**whole, "nonce": "a"}}, 1.0)
    chunks = client.received()
    assert [(c["d"]["chunk_index"], c["d"]["chunk_count"], len(c["d"]["members"])) for c in chunks] == [
        (0, 2, 2),
        (1, 2, 1),
    ]
    client.send({"op": 8, "d": {**whole, "nonce": "b"}}, 11.0)  # docs/discord.md §3: once per guild per 30 s
    (limited,) = client.received()
    assert limited["t"] == "RATE_LIMITED"
    assert limited["d"] == {"opcode": 8, "retry_after": 20.0, "meta": {"guild_id": str(GUILD), "nonce": "b"}}
    client.send({"op": 8, "d": {"guild_id": str(GUILD), "user_ids": [str(ALICE)]}}, 12.0)  # by id: not limited
    assert [c["t"] for c in client.received()] == ["GUILD_MEMBERS_CHUNK"]
    client.send({"op": 8, "d": {**whole, "nonce": "c"}}, 31.0)
    assert {c["t"] for c in client.received()} == {"GUILD_MEMBERS_CHUNK"}
    assert len(em.gateway.member_requests) == 4


def test_a_guild_over_the_large_threshold_lists_only_the_bot() -> None:
    em = make_emulator()
    for n in range(60):
        em.world.add_member(GUILD, ALICE + 1000 + n)
    small = Client(em.gateway)
    small.send({"op": 2, "d": {"token": TOKEN, "intents": BRIDGE_INTENTS, "large_threshold": 250}})
    guild = small.received()[-1]["d"]
    assert guild["large"] is False and len(guild["members"]) == 63
    em.gateway.drop_connection()
    large = Client(em.gateway, 10.0)
    large.identify(10.0)  # large_threshold left out: Discord's default, 50
    guild = large.received()[-1]["d"]
    assert guild["large"] is True and guild["member_count"] == 63
    assert [m["user"]["id"] for m in guild["members"]] == [str(em.world.bot_user_id)]


def test_members_without_user_in_guild_create_and_op8_as_a_deviant_server_lists_them() -> None:
    em = make_emulator()
    em.world.deviations.members_without_user.add((GUILD, ALICE))
    client = Client(em.gateway)
    client.identify()
    guild = client.received()[-1]["d"]
    assert sorted("user" in m for m in guild["members"]) == [False, True, True]
    client.send({"op": 8, "d": {"guild_id": str(GUILD), "query": "", "limit": 0}})
    (chunk,) = client.received()
    assert sorted("user" in m for m in chunk["d"]["members"]) == [False, True, True]
    client.send({"op": 8, "d": {"guild_id": str(GUILD), "query": "a", "limit": 10}})
    assert client.received()[0]["d"]["members"] == []  # an entry without its user matches no name
    assert em.world.members[(GUILD, ALICE)]["user"]["username"] == "alice"  # the member itself is whole


def test_ready_carries_the_application() -> None:
    em = Emulator(token=TOKEN, application_id=4242, application_flags=it.GATEWAY_MESSAGE_CONTENT_LIMITED)
    em.bound(9)
    client = Client(em.gateway)
    client.identify(intents=it.GUILDS | it.MESSAGE_CONTENT)
    ready = client.received()[-1]
    assert ready["d"]["application"] == {"id": "4242", "flags": it.GATEWAY_MESSAGE_CONTENT_LIMITED}
    refused = Client(em.gateway, 10.0)
    refused.identify(10.0, intents=it.GUILDS | it.GUILD_MEMBERS)  # not enabled by the flags: 4014
    refused.received()
    assert refused.closed == 4014


def test_connections_record_their_upgrade_headers_and_peer() -> None:
    gateway = make_gateway()
    gateway.connect("/", QUERY, 1.0, headers={"user-agent": "DiscordBot (x, 1)"}, peer="127.0.0.1:5000")
    (record,) = gateway.connections
    assert (record.path, record.headers["user-agent"], record.peer) == ("/", "DiscordBot (x, 1)", "127.0.0.1:5000")


# ---------------------------------------------------------------------- slow, unavailable and deviant servers


def test_hold_ready_answers_identify_only_when_released() -> None:
    gateway = make_gateway(hold_ready=True)
    client = Client(gateway)
    client.identify()
    assert names(client.received()) == [10] and gateway.live_shards() == set()
    client.send({"op": 1, "d": None}, 1.0)
    assert client.received() == [{"op": 11}]  # the connection is alive meanwhile
    gone = Client(gateway, 2.0)
    gone.identify(20.0)
    gateway.connection_lost(gone.conn, None, 21.0)
    gateway.release_ready()
    assert names(client.received()) == ["READY"] and gateway.live_shards() == {0}
    assert len(gateway.identifies) == 2 and gateway.session_of(0) is not None


def test_an_unavailable_guild_comes_with_its_own_guild_create() -> None:
    em = make_emulator()
    em.gateway.unavailable_guilds.add(GUILD)
    client = Client(em.gateway)
    client.identify()
    ready = client.received()[-1]
    assert names([ready]) == ["READY"] and ready["d"]["guilds"] == [{"id": str(GUILD), "unavailable": True}]
    em.gateway.guild_available(em.world.guild_create(GUILD))
    (created,) = client.received()
    assert created["t"] == "GUILD_CREATE" and created["d"]["id"] == str(GUILD)
    assert em.gateway.unavailable_guilds == set()


def test_a_server_that_refuses_every_resume() -> None:
    gateway = make_gateway(refuse_resume=True)
    client = Client(gateway)
    client.identify()
    session_id = client.received()[-1]["d"]["session_id"]
    gateway.drop_connection()
    again = Client(gateway, 5.0)
    again.send({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 1}}, 5.0)
    assert again.received()[-1] == {"op": 9, "d": False}
    assert gateway.invalid_sessions == [(5.0, False)]


def test_a_server_that_closes_on_identify_with_a_reason() -> None:
    gateway = make_gateway(close_on_identify=4014, close_on_identify_reason="intents not enabled")
    client = Client(gateway)
    client.identify()
    assert client.conn.take()[-1] == Close(4014, "intents not enabled")
    assert gateway.live_shards() == set() and gateway.server_closes == [(0.0, 4014)]
    gateway.close_on_identify = None
    ok = Client(gateway, 1.0)
    ok.identify(1.0)  # its first identify did not count against the 5 s window
    assert "READY" in names(ok.received())


def test_close_with_a_reason_and_a_shorter_identify_window() -> None:
    gateway = make_gateway(identify_window=1.0)
    client = Client(gateway)
    client.identify()
    client.received()
    gateway.close_with(4000, 1.0, reason="node draining")
    outputs = client.conn.take()
    assert outputs == [Close(4000, "node draining")]
    second = Client(gateway, 1.5)
    second.identify(1.5)  # 1.5 s after the last identify: fine within a 1 s window
    assert "READY" in names(second.received())


def test_a_raw_dispatch_json_cannot_hold_goes_out_as_the_standard_library_writes_it() -> None:
    gateway = make_gateway()
    client = Client(gateway)
    client.identify()
    client.received()
    gateway.dispatch("MESSAGE_CREATE", {"id": 2**64, "content": "\ud800"})  # no Discord sends these: bad-input tests
    (message,) = client.received()
    assert message["d"] == {"id": 2**64, "content": "\ud800"}
