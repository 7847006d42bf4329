"""The Discord shard against the emulated gateway over real loopback websockets (127.0.0.1, port 0).

Time-dependent tests use trio's autojump clock: heartbeats, backoff and identify waits run in virtual time.
Every test is wrapped in ``trio.fail_after`` so a hang fails instead of blocking. These tests are about the
gateway protocol, not what a message says: their messages are raw dispatches (``message(i)``), sent as given.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import pytest
import trio

from adapters.discord.gateway.close_codes import CloseAction
from adapters.discord.gateway.events import (
    DispatchReceived,
    GatewayEvent,
    ResumeState,
    ShardDisconnected,
    ShardReady,
    ShardResumed,
)
from adapters.discord.gateway.session import MAX_PENDING_SENDS
from adapters.discord.gateway.shard import READER_YIELD_EVERY, Gateway, IdentifyGate, Shard, serve_gateway, serve_shard
from adapters.discord.rest.client import GatewayBotInfo
from relay.config import DiscordConfig
from relay.errors import GatewayClosed
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, start_emulator

TOKEN = "test-token.abc.def"
OWNER = 4_000_000_000_000_000_001  #: owns the guilds start_discord seeds


@attrs.define
class Collector:
    events: list[GatewayEvent] = attrs.field(factory=list)

    def __call__(self, event: GatewayEvent) -> None:
        self.events.append(event)

    def dispatches(self, name: str | None = None, shard_id: int | None = None) -> list[DispatchReceived]:
        return [
            e
            for e in self.events
            if isinstance(e, DispatchReceived)
            and (name is None or e.name == name)
            and (shard_id is None or e.shard_id == shard_id)
        ]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def start_discord(
    nursery: trio.Nursery, *, token: str = TOKEN, guilds: tuple[int, ...] = (), **knobs: Any
) -> Emulator:
    """The emulated Discord with ``guilds`` (empty ones, the bot in each) and gateway ``knobs`` set before it
    listens (the identify budget's window starts then)."""
    discord = Emulator(token=token)
    for guild_id in guilds:
        discord.world.add_guild(guild_id, f"g{guild_id}", owner_id=OWNER)
    for name, value in knobs.items():
        if not hasattr(discord.gateway, name):
            raise AttributeError(f"the emulated gateway has no knob {name!r}")
        setattr(discord.gateway, name, value)
    return await start_emulator(nursery, discord)


async def start_gateway(
    nursery: trio.Nursery,
    discord: Emulator,
    collector: Collector,
    initial_sessions: dict[int, ResumeState] | None = None,
    make_room: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint,
    **config: Any,
) -> Gateway:
    info = GatewayBotInfo.from_json(discord.gateway.gateway_bot_json(trio.current_time()))

    async def fetch() -> GatewayBotInfo:
        return info

    cfg = DiscordConfig(**config)
    gateway: Gateway = await nursery.start(
        partial(
            serve_gateway,
            config=cfg,
            token=TOKEN,
            fetch_gateway_info=fetch,
            on_event=collector,
            initial_sessions=initial_sessions,
            rng=random.Random(7),
            make_room=make_room,
        )
    )
    return gateway


async def wait_for_seq_count(discord: Emulator, collector: Collector, name: str, count: int) -> None:
    while len(collector.dispatches(name)) < count:
        await trio.sleep(0.01)


def message(i: int) -> dict[str, Any]:
    return {"id": str(10_000 + i), "channel_id": "42", "content": f"message {i}", "author": {"id": "7"}}


def assert_exactly_once_in_order(collector: Collector, shard_id: int = 0) -> None:
    seqs = [e.seq for e in collector.dispatches(shard_id=shard_id)]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs))


async def test_identify_ready_then_messages_in_order(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        discord = await start_discord(nursery, guilds=(555,))
        collector = Collector()
        gateway = await start_gateway(nursery, discord, collector)
        await discord.dispatch_many("MESSAGE_CREATE", [message(i) for i in range(50)])
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 50)

    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == [f"message {i}" for i in range(50)]
    names = [e.name for e in collector.dispatches()]
    assert names[:2] == ["READY", "GUILD_CREATE"]
    ready = collector.of(ShardReady)[0]
    assert ready.guild_ids == (555,)
    assert ready.user["id"] == str(BOT_ID)
    assert ready.session.resume_url.endswith("/resume")
    # the connect URL and the identify payload
    assert discord.gateway.connections[0].path == "/"
    assert discord.gateway.connections[0].query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    d = discord.gateway.identifies[0].payload["d"]
    cfg = DiscordConfig()
    assert d["token"] == TOKEN
    assert d["intents"] == cfg.intents_value
    assert d["shard"] == [0, 1]
    assert d["compress"] is False
    assert d["large_threshold"] == 250
    assert set(d["properties"]) == {"os", "browser", "device"}
    assert gateway.sessions()[0].session_id == ready.session.session_id
    assert gateway.sessions()[0].seq == collector.dispatches()[-1].seq
    assert_exactly_once_in_order(collector)


async def test_heartbeats_carry_last_seq_and_first_is_jittered(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(600):
        discord = await start_discord(nursery, heartbeat_interval=10.0)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        connected_at = discord.gateway.connections[0].time
        await discord.dispatch_many("MESSAGE_CREATE", [message(i) for i in range(3)])
        await discord.wait_until(lambda: len(discord.gateway.heartbeats) >= 3)
    first = discord.gateway.heartbeats[0].time - connected_at
    assert 0 <= first < 10.0
    gaps = [b.time - a.time for a, b in zip(discord.gateway.heartbeats, discord.gateway.heartbeats[1:], strict=False)]
    assert all(abs(gap - 10.0) < 0.5 for gap in gaps)
    assert discord.gateway.heartbeats[-1].payload["d"] == collector.dispatches()[-1].seq


async def test_zombie_connection_is_dropped_and_resumed(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(600):
        discord = await start_discord(nursery, heartbeat_interval=5.0)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        await discord.dispatch_many("MESSAGE_CREATE", [message(i) for i in range(5)])
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 5)
        discord.gateway.ack_heartbeats = False
        await discord.wait_until(lambda: len(discord.gateway.client_closes) >= 1)
        discord.gateway.ack_heartbeats = True
        await discord.dispatch_many("MESSAGE_CREATE", [message(i) for i in range(5, 10)])
        await discord.wait_until(lambda: len(discord.gateway.resumes) >= 1)
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 10)
        while not collector.of(ShardResumed):
            await trio.sleep(0.1)

    assert discord.gateway.client_closes[0][1] == 4000  # resumable close, never 1000/1001
    assert len(discord.gateway.identifies) == 1
    disconnected = collector.of(ShardDisconnected)[0]
    assert "zombie" in disconnected.reason
    assert disconnected.action is CloseAction.RESUME
    assert discord.gateway.connections[-1].path == "/resume"
    assert discord.gateway.connections[-1].query["compress"] == "zlib-stream"
    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == [f"message {i}" for i in range(10)]
    assert_exactly_once_in_order(collector)


async def test_three_socket_drops_mid_stream_deliver_everything_exactly_once(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    total = 0
    with trio.fail_after(600):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        for round_ in range(3):
            await discord.dispatch_many("MESSAGE_CREATE", [message(total + i) for i in range(100)])
            total += 100
            await trio.sleep(0)  # part of the batch is on the wire, part still queued
            await discord.drop_connection()
            # dispatched while the shard is away: must come back through the resume replay
            await discord.dispatch_many("MESSAGE_CREATE", [message(total + i) for i in range(20)])
            total += 20
            await discord.wait_until(
                lambda r=round_: len(discord.gateway.resumes) >= r + 1 and bool(discord.live_shards())
            )
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", total)
        await trio.sleep(1)

    contents = [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")]
    assert contents == [f"message {i}" for i in range(total)]
    assert len(discord.gateway.identifies) == 1
    assert len(discord.gateway.resumes) == 3
    assert len(collector.of(ShardResumed)) == 3
    assert_exactly_once_in_order(collector)


async def test_op7_reconnect_resumes(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        await discord.dispatch("MESSAGE_CREATE", message(0))
        await discord.send_reconnect()
        await discord.dispatch("MESSAGE_CREATE", message(1))
        await discord.wait_until(lambda: len(discord.gateway.resumes) == 1)
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 2)
    assert discord.gateway.client_closes[0][1] == 4000
    assert discord.gateway.resumes[0].payload["d"]["session_id"] == collector.of(ShardReady)[0].session.session_id
    assert len(discord.gateway.identifies) == 1
    assert_exactly_once_in_order(collector)


async def test_op9_resumable_resumes_after_a_pause(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        await discord.invalidate_session(True)
        sent_at = trio.current_time()
        await discord.wait_until(lambda: len(discord.gateway.resumes) == 1)
    assert 1.0 <= discord.gateway.resumes[0].time - sent_at <= 5.5
    assert len(discord.gateway.identifies) == 1


async def test_op9_not_resumable_identifies_again_on_main_url(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        await discord.dispatch("MESSAGE_CREATE", message(0))
        await discord.invalidate_session(False)
        sent_at = trio.current_time()
        await discord.wait_until(lambda: len(discord.gateway.identifies) == 2)
        while len(collector.of(ShardReady)) < 2:
            await trio.sleep(0.1)
        await discord.dispatch("MESSAGE_CREATE", message(1))
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 2)
    assert 1.0 <= discord.gateway.identifies[1].time - sent_at <= 5.5
    assert discord.gateway.resumes == []
    assert discord.gateway.connections[-1].path == "/"
    first, second = collector.of(ShardReady)
    assert first.session.session_id != second.session.session_id
    # the new session's sequence starts again at 1 and its events are not taken for duplicates
    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == ["message 0", "message 1"]


@pytest.mark.parametrize(
    ("code", "expect_identifies", "expect_resumes"),
    [(4000, 1, 1), (1001, 1, 1), (4008, 1, 1), (4009, 2, 0), (4007, 2, 0)],
)
async def test_recoverable_close_codes(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, code: int, expect_identifies: int, expect_resumes: int
) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        await discord.close_with(code)
        gateway = discord.gateway
        await discord.wait_until(
            lambda: len(gateway.identifies) + len(gateway.resumes) >= 2 and bool(discord.live_shards())
        )
        await trio.sleep(1)
    assert len(discord.gateway.identifies) == expect_identifies
    assert len(discord.gateway.resumes) == expect_resumes
    disconnected = collector.of(ShardDisconnected)[0]
    assert disconnected.code == code
    assert disconnected.will_retry_in is not None


async def run_until_fatal(
    discord: Emulator, collector: Collector, after_ready: Callable[[], Awaitable[None]] | None = None
) -> GatewayClosed:
    """Run serve_gateway in this task until it raises GatewayClosed; ``after_ready`` runs once a shard is live."""
    info = GatewayBotInfo.from_json(discord.gateway.gateway_bot_json(trio.current_time()))

    async def fetch() -> GatewayBotInfo:
        return info

    async with trio.open_nursery() as helper:
        if after_ready is not None:

            async def act() -> None:
                await discord.wait_until(lambda: bool(discord.live_shards()))
                await after_ready()

            helper.start_soon(act)
        with pytest.raises(GatewayClosed) as raised:
            await serve_gateway(
                config=DiscordConfig(), token=TOKEN, fetch_gateway_info=fetch, on_event=collector, rng=random.Random(1)
            )
        helper.cancel_scope.cancel()
    return raised.value


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
async def test_fatal_close_codes_stop_with_advice(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, code: int
) -> None:
    collector = Collector()
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        error = await run_until_fatal(discord, collector, partial(discord.close_with, code))
    assert error.fatal
    assert error.code == code
    assert error.advice
    assert TOKEN not in str(error)
    assert len(discord.gateway.identifies) == 1  # no reconnect loop
    assert len(discord.gateway.connections) == 1
    disconnected = collector.of(ShardDisconnected)[-1]
    assert disconnected.action is CloseAction.FATAL
    assert disconnected.will_retry_in is None
    if code == 4014:
        assert "Server Members Intent" in error.advice
        assert "Message Content Intent" in error.advice
        assert "Developer Portal" in error.advice


async def test_disallowed_intents_on_identify_is_fatal(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        discord = await start_discord(nursery, allowed_intents=1 << 1)  # members allowed, message content not
        error = await run_until_fatal(discord, Collector())
    assert error.code == 4014
    assert "Message Content Intent (MESSAGE_CONTENT)" in error.advice


async def test_bad_token_is_fatal_and_not_logged(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with trio.fail_after(60):
        discord = await start_discord(nursery, token="the-right-token")
        error = await run_until_fatal(discord, Collector())
    assert error.code == 4004
    assert "Reset Token" in error.advice
    assert len(discord.gateway.identifies) == 1
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(error)


async def test_identify_budget_exhausted_waits_for_reset(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(600):
        discord = await start_discord(nursery, identify_remaining=0, identify_reset_after=120.0)
        started = trio.current_time()
        collector = Collector()
        await start_gateway(nursery, discord, collector)
    assert len(discord.gateway.identifies) == 1
    assert discord.gateway.identifies[0].time - started >= 120.0
    assert discord.gateway.server_closes == []  # Discord would have closed 4004 for an identify over budget


async def test_send_burst_is_spread_over_the_window(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(900):
        discord = await start_discord(nursery, heartbeat_interval=20.0)
        collector = Collector()
        gateway = await start_gateway(nursery, discord, collector)
        for i in range(200):
            gateway.send_nowait(
                0, {"op": 3, "d": {"since": None, "activities": [], "status": "online", "afk": i % 2 == 0}}
            )
        await discord.wait_until(lambda: sum(1 for s in discord.gateway.sends if s.payload["op"] == 3) >= 200)
        await trio.sleep(30)
    times = [s.time for s in discord.gateway.sends]
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 60.0)
        assert in_window <= 120
    assert discord.gateway.server_closes == []  # no 4008
    assert len(discord.gateway.heartbeats) >= 4  # heartbeats kept flowing during the burst
    assert len(discord.gateway.resumes) == 0


async def test_two_shards_identify_in_separate_buckets(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery, shards=2, max_concurrency=1)
        collector = Collector()
        gateway = await start_gateway(nursery, discord, collector)
        await discord.dispatch("MESSAGE_CREATE", message(0), shard_id=0)
        await discord.dispatch("MESSAGE_CREATE", message(1), shard_id=1)
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 2)
    shard_ids = sorted(i.payload["d"]["shard"][0] for i in discord.gateway.identifies)
    assert shard_ids == [0, 1]
    assert all(i.payload["d"]["shard"][1] == 2 for i in discord.gateway.identifies)
    # max_concurrency 1: one bucket, so the identifies are at least 5 s apart and Discord never said op 9
    assert abs(discord.gateway.identifies[1].time - discord.gateway.identifies[0].time) >= 5.0
    assert discord.gateway.invalid_sessions == []
    assert set(gateway.sessions()) == {0, 1}
    assert [e.shard_id for e in collector.dispatches("MESSAGE_CREATE")] in ([0, 1], [1, 0])


async def test_two_shards_with_max_concurrency_two_identify_together(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery, shards=2, max_concurrency=2)
        await start_gateway(nursery, discord, Collector())
    assert len(discord.gateway.identifies) == 2
    assert abs(discord.gateway.identifies[1].time - discord.gateway.identifies[0].time) < 5.0
    assert discord.gateway.invalid_sessions == []


async def test_fixed_shard_subset(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        discord = await start_discord(nursery, shards=1)
        gateway = await start_gateway(nursery, discord, Collector(), shard_count=3, shard_ids=(2,))
    assert [i.payload["d"]["shard"] for i in discord.gateway.identifies] == [[2, 3]]
    assert set(gateway.sessions()) == {2}


async def test_zlib_payload_split_over_several_frames(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        discord = await start_discord(nursery, split_frames=5)
        collector = Collector()
        await start_gateway(nursery, discord, collector)
        await discord.dispatch_many("MESSAGE_CREATE", [message(i) for i in range(20)])
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 20)
        frames = discord.frames_sent()
    assert frames >= 5 * 20
    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == [f"message {i}" for i in range(20)]


@pytest.mark.parametrize("compress", [True, False])
async def test_message_larger_than_one_mib(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, compress: bool
) -> None:
    rng = random.Random(3)
    # incompressible text, so the message is > 1 MiB on the wire with and without zlib
    big = "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(1_600_000))
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector, compress=compress)
        await discord.dispatch("GUILD_CREATE", {"id": "9", "blob": big})
        await discord.dispatch("MESSAGE_CREATE", message(0))
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 1)
    assert collector.dispatches("GUILD_CREATE")[0].data["blob"] == big
    assert discord.gateway.connections[0].query.get("compress") == ("zlib-stream" if compress else None)
    assert len(discord.gateway.connections) == 1  # no 1009 close and reconnect


async def test_shutdown_closes_resumably_and_a_restart_resumes(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        first = Collector()
        async with trio.open_nursery() as inner:
            gateway = await start_gateway(inner, discord, first)
            await discord.dispatch("MESSAGE_CREATE", message(0))
            await wait_for_seq_count(discord, first, "MESSAGE_CREATE", 1)
            saved = gateway.sessions()
            inner.cancel_scope.cancel()  # Ctrl-C
        await discord.wait_until(lambda: len(discord.gateway.client_closes) == 1)
        assert discord.gateway.client_closes[0][1] == 4000  # never 1000: the session stays resumable
        await discord.dispatch("MESSAGE_CREATE", message(1))  # happens while the bridge is down

        second = Collector()
        await start_gateway(nursery, discord, second, initial_sessions=saved)
        await wait_for_seq_count(discord, second, "MESSAGE_CREATE", 1)
    assert len(discord.gateway.identifies) == 1
    assert len(discord.gateway.resumes) == 1
    assert [e.data["content"] for e in second.dispatches("MESSAGE_CREATE")] == ["message 1"]
    assert second.of(ShardResumed)[0].replayed == 1


async def test_unreachable_gateway_backs_off_and_keeps_trying(autojump_clock: trio.abc.Clock) -> None:
    with trio.socket.socket() as probe:  # a port with nothing listening
        await probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    collector = Collector()
    info = GatewayBotInfo.from_json(
        {
            "url": f"ws://127.0.0.1:{dead_port}",
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 1000, "max_concurrency": 1},
        }
    )

    async def fetch() -> GatewayBotInfo:
        return info

    with trio.move_on_after(300), trio.fail_after(600):
        await serve_gateway(
            config=DiscordConfig(), token=TOKEN, fetch_gateway_info=fetch, on_event=collector, rng=random.Random(2)
        )
    failures = collector.of(ShardDisconnected)
    assert len(failures) >= 5
    assert all("could not connect" in f.reason for f in failures)
    assert all(f.will_retry_in is not None and f.will_retry_in <= 60.0 for f in failures)
    assert not collector.of(ShardReady)


@pytest.mark.parametrize(
    ("compress", "garbage"),
    [(False, "{this is not json"), (False, '["not", "an", "object"]'), (True, b"\x00\x01 not zlib \x00\x00\xff\xff")],
)
async def test_garbage_from_the_gateway_reconnects_and_loses_nothing(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, compress: bool, garbage: str | bytes
) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector, compress=compress)
        await discord.dispatch("MESSAGE_CREATE", message(0))
        await discord.send_raw(garbage)
        await discord.dispatch("MESSAGE_CREATE", message(1))
        await discord.wait_until(lambda: len(discord.gateway.resumes) == 1)
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 2)
    assert discord.gateway.client_closes[0][1] == 4000
    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == ["message 0", "message 1"]
    assert_exactly_once_in_order(collector)


async def test_serve_shard_alone(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        discord = await start_discord(nursery, shards=2)
        info = GatewayBotInfo.from_json(discord.gateway.gateway_bot_json(trio.current_time()))
        collector = Collector()
        shard: Shard = await nursery.start(
            partial(
                serve_shard,
                config=DiscordConfig(compress=False),
                token=TOKEN,
                shard_id=1,
                shard_count=2,
                gateway_url=info.url,
                on_event=collector,
                identify_gate=IdentifyGate.for_gateway(info, reserve=5),
                rng=random.Random(4),
            )
        )
        await discord.dispatch("MESSAGE_CREATE", message(0), shard_id=1)
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 1)
    assert shard.shard_id == 1
    assert shard.session() is not None
    assert shard.statistics().dispatches == 2
    assert discord.gateway.identifies[0].payload["d"]["shard"] == [1, 2]
    assert "compress" not in discord.gateway.connections[0].query
    with pytest.raises(trio.WouldBlock):
        for _ in range(MAX_PENDING_SENDS + 1):
            shard.send_nowait({"op": 3, "d": None})


async def test_a_consumer_without_room_holds_the_reader_and_loses_nothing(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    """make_room is the back-pressure: while it waits, no dispatch is handed on; afterwards all arrive in order."""
    holding = False
    released = trio.Event()
    asked = 0

    async def make_room() -> None:
        nonlocal asked
        asked += 1
        await trio.lowlevel.checkpoint()
        if holding:
            await released.wait()

    total = 3 * READER_YIELD_EVERY
    with trio.fail_after(600):
        discord = await start_discord(nursery, heartbeat_interval=30.0)
        collector = Collector()
        await start_gateway(nursery, discord, collector, make_room=make_room)
        holding = True
        await discord.dispatch_many("MESSAGE_CREATE", [message(i) for i in range(total)])
        while asked == 0:
            await trio.sleep(0.01)
        held = len(collector.dispatches("MESSAGE_CREATE"))
        assert held < total  # the reader stopped at a make_room call...
        await trio.sleep(5)
        assert len(collector.dispatches("MESSAGE_CREATE")) == held  # ...and stays stopped while there is no room
        holding = False
        released.set()
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", total)
    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == [f"message {i}" for i in range(total)]
    assert asked >= total // READER_YIELD_EVERY
    assert len(discord.gateway.connections) == 1  # held, not dropped
    assert_exactly_once_in_order(collector)
