#!/usr/bin/env python3
"""The Discord → framework event path in one process, without sockets: CPU per event, stage by stage.

For micro-optimisations, where ``scripts/bench.py``'s events/s moves 20-40 % with a shared machine's load. The
same ~1 KB ``MESSAGE_CREATE`` stream as the bench (its own payload builders), 64 gateway messages per "socket
read", through the objects ``relay.app`` wires (:func:`relay.app.compose_core`, the gateway listener with its
back-fill, the session snapshot, a real store and outbox in a temporary file):

* ``read``: the websocket parser (:class:`relay.wire.frames.FrameParser`) on one socket read's bytes;
* ``relay``: for each message, the payload decoder (zlib-stream when ``--zlib``) and the shard's state machine,
  as ``Shard._read`` runs them, then the listener → translator → store id → mirai frame → outbox append
  (``on_event``);
* ``write``: what a framework connection's writer does per batch (``Outbox.read_after``, the masked frames of
  :func:`relay.wire.frames.encode_text_frames`, ``Outbox.ack``), without the socket;
* ``flush``: the flusher's work on the event loop (:func:`relay.storage.flush.take`, every 1,000 events as at
  20,000 events/s with its 50 ms interval) and, apart, the SQLite transaction its worker thread runs.

    python scripts/measure_event_path.py                 # 20,000 events, zlib off, best of 5; one author
    python scripts/measure_event_path.py --zlib --repeat 7
    python scripts/measure_event_path.py --guilds 1000 --members 100   # authors walk a large world
    python scripts/measure_event_path.py --guilds 1 --members 99      # one guild, 99 authors walked as in the grid
    # instructions per event, steadier than time on a shared machine: divide the total by --events
    PYTHONHASHSEED=0 valgrind --tool=callgrind --toggle-collect=sys_call_tracing --callgrind-out-file=/dev/null \
        python scripts/measure_event_path.py --events 5000 --repeat 1

The figures are CPU time of this thread (``time.thread_time_ns``, read a few times per socket read: it is a system
call) per event, the best of ``--repeat`` runs, each on a fresh bridge. They leave out what only sockets and trio
add: system calls, the scheduler, the acknowledgement bookkeeping of ``adapters/mirai/connection.py``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import random
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench

from adapters.discord.backfill import Backfill
from adapters.discord.gateway.payloads import PayloadDecoder
from adapters.discord.gateway.resume import GatewaySessions
from adapters.discord.gateway.session import ShardSession
from adapters.discord.listener import gateway_listener
from adapters.discord.rest.client import open_rest_client
from adapters.mirai import codec
from relay import process
from relay.app import Core, compose_core
from relay.config import BridgeConfig, DiscordConfig, MiraiConfig, OutboxConfig
from relay.storage import flush
from relay.storage.flushers import FLUSH_AT_ONCE, FLUSH_CHECK_EVERY
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore
from relay.wire import frames
from relay.wire.connection import fresh_masking_keys

READ_MESSAGES = 64  #: gateway messages per socket read (the bench's peer writes 64 per write)
FLUSH_EVERY = 1_000  #: events between flushes: 50 ms at 20,000 events/s
WRITE_BATCH = 256
STAGES = ("read", "relay", "write", "flush", "sqlite")


def gateway_stream(events: int, *, zlib_on: bool, guilds: int, members: int) -> tuple[list[bytes], list[bytes]]:
    """(the world: READY and GUILD_CREATEs, as socket reads), (the MESSAGE_CREATE stream, as socket reads)."""
    compressor = zlib.compressobj()
    seq = 0

    def message(payload: dict[str, Any] | bytes, name: str | None = None, op: int = 0) -> bytes:
        nonlocal seq
        if name is None:
            raw = json.dumps(payload).encode()
        else:
            seq += 1
            body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
            raw = b'{"op":0,"s":%d,"t":"%s","d":' % (seq, name.encode()) + body + b"}"
        if zlib_on:
            return frames.encode_frame(
                frames.OP_BINARY, compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH), None
            )
        return frames.encode_frame(frames.OP_TEXT, raw, None)

    scale = guilds > 1 or members != 100
    ready = {
        "v": 10,
        "user": bench.bot_user(),
        "session_id": "measure",
        "resume_gateway_url": "ws://127.0.0.1:1",
        "shard": [0, 1],
        "application": {"id": str(bench.BOT_ID), "flags": 0},
    }
    world = [message({"op": 10, "d": {"heartbeat_interval": bench.HEARTBEAT_MS}})]
    if scale:
        ready["guilds"] = [{"id": str(bench.SCALE_GUILD_BASE + g), "unavailable": True} for g in range(guilds)]
        world.append(message(ready, "READY"))
        world += [message(bench.scale_guild_create(g, members, members), "GUILD_CREATE") for g in range(guilds)]
        bodies = [
            json.dumps(bench.scale_message(i, guilds, members), separators=(",", ":")).encode() for i in range(events)
        ]
    else:
        ready["guilds"] = [{"id": str(bench.GUILD_ID), "unavailable": True}]
        world += [message(ready, "READY"), message(bench.guild_create(), "GUILD_CREATE")]
        bodies = [json.dumps(bench.message_payload(i, 0), separators=(",", ":")).encode() for i in range(events)]
    stream = [message(body, "MESSAGE_CREATE") for body in bodies]
    reads = [b"".join(stream[i : i + READ_MESSAGES]) for i in range(0, len(stream), READ_MESSAGES)]
    return [world[0], b"".join(world[1:])], reads  # HELLO apart: the shard identifies before READY comes


class Flag:
    """A flag any callback may raise (the store's ``on_batch_full``)."""

    raised = False

    def set(self) -> None:
        self.raised = True


class Pipeline:
    """The bridge's event path, wired as ``relay.app`` wires it, fed from memory (see the module docstring)."""

    def __init__(
        self,
        core: Core,
        store: MessageStore,
        outbox: Outbox,
        config: BridgeConfig,
        flush_wanted: Flag,
        *,
        zlib_on: bool,
    ) -> None:
        self.core, self.store, self.outbox = core, store, outbox
        self.totals = dict.fromkeys(STAGES, 0)
        self.flush_wanted = flush_wanted
        backfill = Backfill(
            config.discord.backfill,
            channels_of=lambda guild_id: [],  # no gaps: the steady state once a first start's read-back is done
            known=lambda platform_id: False,
            flush_interval=0.05,
        )
        snapshot = GatewaySessions()
        self.on_event = snapshot.listen(gateway_listener(core.translator, core.bridge, time.time, backfill))
        self.machine = ShardSession(
            shard_id=0,
            shard_count=1,
            token=bench.TOKEN,
            intents=1 << 15 | 1 << 9 | 1 << 1 | 1,
            gateway_url="ws://127.0.0.1:1",
            rng=random.Random(1),
        )
        self.machine.connection_opened(now=0.0)
        self.parser = frames.FrameParser(max_message_size=config.discord.max_message_bytes)
        self.decoder = PayloadDecoder(compressed=zlib_on, max_size=config.discord.max_message_bytes)
        self.sessions = flush.Sessions(snapshot)
        self.online = codec.event_frame_prefix(config.mirai.reserved_sync_id, "BotOnlineEvent")
        self.cursor = 0
        self.messages: collections.deque[str | bytes] = collections.deque()
        # what listens to appends in the app: a framework writer's wake-up and the flusher's burst check
        writer_wake = trio.Event()
        flusher_wake = trio.Event()

        def wake_on_burst(seq: int) -> None:
            if not seq % FLUSH_CHECK_EVERY and outbox.waiting_writes >= FLUSH_AT_ONCE:
                flusher_wake.set()

        outbox.add_append_listener(lambda seq: writer_wake.set())
        outbox.add_append_listener(wake_on_burst)

    def read(self, data: bytes, now: float) -> int:
        """One socket read through the shard's reader (timed as ``read`` and ``relay``); the messages it held."""
        clock = time.thread_time_ns
        totals = self.totals
        machine, on_event, decoder = self.machine, self.on_event, self.decoder
        t0 = clock()
        self.parser.feed(data, self.messages)
        batch = list(self.messages)
        self.messages.clear()
        t1 = clock()
        decoder.prepare(batch)  # as the shard does: with zlib-stream, 64 messages an inflate
        for message in batch:  # one payload alive at a time, as in the shard (the collector sees as many)
            payload = decoder.feed(message)
            if payload is None:
                continue
            for event in machine.receive(payload, now=now):
                on_event(event)
        totals["read"] += t1 - t0
        totals["relay"] += clock() - t1
        if machine.identify_pending:
            machine.identify_now(now=now)
            machine.frames_to_send(now=now)
        return len(batch)

    def write(self) -> None:
        """What a framework connection's writer does with the new frames (timed as ``write``)."""
        t0 = time.thread_time_ns()
        outbox = self.outbox
        while True:
            batch = outbox.read_after(self.cursor, WRITE_BATCH)
            if not batch:
                break
            texts = [frame for _, frame in batch if not frame.startswith(self.online)]
            ends: list[int] = []
            frames.encode_text_frames(texts, fresh_masking_keys(len(texts)), ends)
            self.cursor = batch[-1][0]
            outbox.ack("framework", self.cursor)
        self.totals["write"] += time.thread_time_ns() - t0

    def flush(self) -> None:
        """One flush: ``flush`` is the event loop's part, ``sqlite`` the worker thread's."""
        clock = time.thread_time_ns
        store, outbox, totals = self.store, self.outbox, self.totals
        self.flush_wanted.raised = False
        t0 = clock()
        taken = flush.take(store, outbox, self.sessions, time.time())
        t1 = clock()
        totals["flush"] += t1 - t0
        if taken is not None:
            cut = flush.write(taken, store, outbox, outbox.write_lock)
            t2 = clock()
            flush.finish(taken, store, outbox, self.sessions, committed=True, cut=cut)
            totals["flush"] += clock() - t2
            totals["sqlite"] += t2 - t1


@contextlib.asynccontextmanager
async def open_pipeline(workdir: Path, *, zlib_on: bool = False) -> AsyncIterator[Pipeline]:
    config = BridgeConfig(
        discord=DiscordConfig(token=bench.TOKEN, api_base_url="http://127.0.0.1:1/api/v10"),
        mirai=MiraiConfig(verify_key=bench.VERIFY_KEY),
    )
    path = str(workdir / "measure.sqlite3")
    wanted = Flag()  # set by the store when a batch is full: the flusher would be woken
    store = MessageStore.open(path, on_batch_full=wanted.set)
    try:
        with Outbox(path, OutboxConfig()) as outbox:
            outbox.register("framework")
            transport = httpx.MockTransport(lambda request: httpx.Response(404))
            async with open_rest_client(config.discord, config.discord.token, http_transport=transport) as rest:
                core = compose_core(config, store=store, outbox=outbox, rest=rest)
                yield Pipeline(core, store, outbox, config, wanted, zlib_on=zlib_on)
    finally:
        store.close()


async def run_once(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    world, reads = gateway_stream(args.events, zlib_on=args.zlib, guilds=args.guilds, members=args.members)
    async with open_pipeline(workdir, zlib_on=args.zlib) as pipe:
        for data in world:
            pipe.read(data, 0.0)
        pipe.write()
        pipe.flush()
        gc.collect()
        gc.freeze()  # as the app does once the guilds are loaded
        pipe.totals = dict.fromkeys(STAGES, 0)

        def stream() -> None:
            events = 0
            next_flush = FLUSH_EVERY
            for data in reads:
                events += pipe.read(data, time.monotonic())
                pipe.write()
                if events >= next_flush or pipe.flush_wanted.raised:
                    next_flush = events + FLUSH_EVERY
                    pipe.flush()
            pipe.flush()

        # through a C function nothing else here calls, so callgrind can count the stream alone (the module
        # docstring); call_tracing only saves and restores the (unused) tracing state around the call
        sys.call_tracing(stream, ())
        outbox = pipe.outbox
        if outbox.cursor("framework") != outbox.last_seq:
            raise SystemExit(f"measure: {outbox.last_seq - outbox.cursor('framework')} frames were not delivered")
        published = pipe.core.bridge.statistics().events_published
        if published < args.events:
            raise SystemExit(f"measure: only {published} events published")
        totals = pipe.totals
    return {stage: totals[stage] / args.events / 1000 for stage in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--zlib", action="store_true", help="zlib-stream transport compression (the default's)")
    parser.add_argument("--guilds", type=int, default=1)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the runs as JSON too")
    args = parser.parse_args()
    process.collect_young_less_often()  # as the app does (relay/main.py)
    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="measure-") as tmp:
            runs.append(trio.run(run_once, args, Path(tmp)))
        gc.unfreeze()
    best = min(runs, key=lambda run: sum(run[stage] for stage in STAGES if stage != "sqlite"))
    loop = sum(best[stage] for stage in STAGES if stage != "sqlite")
    print(
        f"{args.events} events, zlib {'on' if args.zlib else 'off'}, {args.guilds} x {args.members}; "
        f"µs of CPU per event, best of {args.repeat}:"
    )
    for stage in STAGES:
        print(f"  {stage:7} {best[stage]:6.2f}")
    totals = ", ".join(f"{sum(run[stage] for stage in STAGES if stage != 'sqlite'):.2f}" for run in runs)
    print(f"  event loop total {loop:.2f} (runs: {totals})")
    if args.json:
        print(json.dumps(runs))
    with contextlib.suppress(Exception):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
