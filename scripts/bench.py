#!/usr/bin/env python3
"""Benchmark: the bridge against a bare relay and discord.py, all fed the same stream in the same run.

    python scripts/bench.py                  # defaults take about 2 minutes on a 2-core machine
    python scripts/bench.py --events 50000 --json results.json
    python scripts/bench.py --setup-discordpy  # once: makes .bench-venv with discord.py (bench only)

Everything runs on loopback (127.0.0.1) in separate processes:

* **peer** (one process, one core): a fake Discord gateway (HELLO/IDENTIFY/READY/heartbeat ACKs, then N
  realistic ~1 KB MESSAGE_CREATE dispatches, zlib-stream on or off), the few REST routes a client needs to
  start, and a mirai-style sink (a reverse-ws *server*: it sends ``verify``, then counts pushed events and
  reads the send timestamp embedded in each message's text).
* **client under test** (its own process):
  - ``bridge``: the real ``discord-mirai-relay run`` path (store and durable outbox on);
  - ``bare``: a bare trio-websocket relay — parse, build a small mirai-shaped dict, forward to the sink;
  - ``discord.py``: consume only, ``on_message`` counter (from ``--discordpy-python``, never a dependency).

Reported per client: events/s at saturation, p50/p99 latency (gateway send → sink receive) at a paced rate,
CPU seconds and peak RSS of the client process; ratios bridge/discord.py and bridge/bare. Bridge-only extras:
peak RSS while a backlog waits in the outbox for a framework that is down (and how fast it drains), and the
command round trip (framework → bridge → fake REST → response) over the fake REST's own round trip.

The wire helpers here use wsproto directly (batched writes) so the peer is never the bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".bench-venv"
TOKEN = "bench-token-not-a-secret"
VERIFY_KEY = "bench-verify-key"
BOT_ID = 900000000000000001
GUILD_ID = 910000000000000001
CHANNEL_ID = 920000000000000001
AUTHOR_ID = 930000000000000001
HEARTBEAT_MS = 41250
#: seconds between timed commands: 40/s, under the 50/s global REST limit (docs/discord.md §8.3)
COMMAND_SPACING = 0.025
LATENCY_RE = re.compile(rb"bench (\d+) (\d+) ")
ZLIB_SUFFIX = b"\x00\x00\xff\xff"
#: a websocket message's payload, text or binary: wsproto's Message is generic over one of the two, not a union
_Payload = TypeVar("_Payload", str, bytes)


# =========================================================================== payloads


def message_payload(seq: int, sent_ns: int) -> dict[str, Any]:
    """A realistic guild MESSAGE_CREATE (~1 KB serialized), text carrying its sequence and send time."""
    content = f"bench {seq} {sent_ns} " + "lorem ipsum dolor sit amet " * 7
    return {
        "type": 0,
        "tts": False,
        "timestamp": "2026-11-22T12:00:00.000000+00:00",
        "referenced_message": None,
        "pinned": False,
        "nonce": str(1300000000000000000 + seq),
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "member": {
            "roles": [],
            "premium_since": None,
            "pending": False,
            "nick": None,
            "mute": False,
            "joined_at": "2025-01-01T00:00:00.000000+00:00",
            "flags": 0,
            "deaf": False,
            "communication_disabled_until": None,
            "avatar": None,
        },
        "id": str(1400000000000000000 + seq),
        "flags": 0,
        "embeds": [],
        "edited_timestamp": None,
        "content": content,
        "components": [],
        "channel_type": 0,
        "channel_id": str(CHANNEL_ID),
        "author": {
            "username": "alice",
            "public_flags": 0,
            "id": str(AUTHOR_ID),
            "global_name": "Alice",
            "discriminator": "0",
            "clan": None,
            "avatar_decoration_data": None,
            "avatar": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        },
        "attachments": [],
        "guild_id": str(GUILD_ID),
    }


def bot_user() -> dict[str, Any]:
    return {
        "id": str(BOT_ID),
        "username": "benchbot",
        "global_name": None,
        "discriminator": "0",
        "avatar": None,
        "bot": True,
        "flags": 0,
        "mfa_enabled": False,
        "verified": True,
    }


def guild_create() -> dict[str, Any]:
    everyone = {
        "id": str(GUILD_ID),
        "name": "@everyone",
        "permissions": "1071698660929",
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    return {
        "id": str(GUILD_ID),
        "name": "Bench Guild",
        "owner_id": str(AUTHOR_ID),
        "system_channel_id": str(CHANNEL_ID),
        "unavailable": False,
        "large": False,
        "member_count": 2,
        "joined_at": "2025-01-01T00:00:00.000000+00:00",
        "roles": [everyone],
        "emojis": [],
        "stickers": [],
        "features": [],
        "channels": [
            {
                "id": str(CHANNEL_ID),
                "type": 0,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "parent_id": None,
                "guild_id": str(GUILD_ID),
            }
        ],
        "threads": [],
        "members": [
            {
                "user": bot_user(),
                "roles": [],
                "nick": None,
                "joined_at": "2025-01-01T00:00:00.000000+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
            },
            {
                "user": message_payload(0, 0)["author"],
                "roles": [],
                "nick": None,
                "joined_at": "2025-01-01T00:00:00.000000+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
            },
        ],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "icon": None,
        "splash": None,
        "banner": None,
        "description": None,
        "application_id": None,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "vanity_url_code": None,
        "premium_subscription_count": 0,
        "max_members": 500000,
        "system_channel_flags": 0,
    }


# --------------------------------------------------------------------------- the scale grid's world
#: G guilds, each with one text channel and M members of its own (G x M distinct users); ids are offsets
SCALE_GUILD_BASE = 940000000000000000
SCALE_CHANNEL_BASE = 950000000000000000
SCALE_USER_BASE = 960000000000000000
#: GUILD_MEMBERS_CHUNK size (docs/discord.md §6.4)
CHUNK_SIZE = 1000
#: authors of the scale stream walk the G x M members with this stride (a prime), so consecutive messages come
#: from different guilds and members, as in a bot that lives in many guilds
SCALE_STRIDE = 7919


def scale_user(guild: int, member: int, members: int) -> dict[str, Any]:
    n = guild * members + member
    return {
        "username": f"user{n}",
        "public_flags": 0,
        "id": str(SCALE_USER_BASE + n),
        "global_name": f"User {n}",
        "discriminator": "0",
        "clan": None,
        "avatar_decoration_data": None,
        "avatar": f"{n:032x}",
    }


def scale_member(guild: int, member: int, members: int) -> dict[str, Any]:
    return {
        "user": scale_user(guild, member, members),
        "roles": [],
        "nick": None,
        "joined_at": f"2025-01-01T00:{member // 60 % 60:02d}:{member % 60:02d}.000000+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "premium_since": None,
        "communication_disabled_until": None,
        "avatar": None,
    }


def scale_guild_create(guild: int, members: int, listed: int) -> dict[str, Any]:
    """Guild number ``guild`` of the grid: its channel, and the first ``listed`` of its ``members`` (all of them
    under the large threshold; a large guild lists only some, and ``member_count`` says how many it has)."""
    data = guild_create()
    guild_id = str(SCALE_GUILD_BASE + guild)
    channel = {**data["channels"][0], "id": str(SCALE_CHANNEL_BASE + guild), "guild_id": guild_id}
    data["roles"][0]["id"] = guild_id
    data.update(
        id=guild_id,
        name=f"Guild {guild}",
        owner_id=str(BOT_ID),
        system_channel_id=channel["id"],
        channels=[channel],
        large=listed < members,
        member_count=members + 1,
        members=[data["members"][0], *(scale_member(guild, j, members) for j in range(listed))],
    )
    return data


def scale_message(seq: int, guilds: int, members: int) -> dict[str, Any]:
    """Message ``seq`` of the scale stream: its author is one of the G x M members, walked with a stride."""
    n = (seq * SCALE_STRIDE) % (guilds * members)
    guild, member = divmod(n, members)
    data = message_payload(seq, 0)
    data["guild_id"] = str(SCALE_GUILD_BASE + guild)
    data["channel_id"] = str(SCALE_CHANNEL_BASE + guild)
    data["author"] = scale_user(guild, member, members)
    data["member"]["joined_at"] = scale_member(guild, member, members)["joined_at"]
    return data


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


# =========================================================================== process stats (Linux /proc)


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each thread of a process has run on a CPU (``/proc/<pid>/task/<tid>/schedstat``'s first field),
    by thread id; the main thread's id is the process's. Empty where the kernel does not keep it."""
    times: dict[int, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return times
    for tid in tids:
        try:
            times[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return times


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (user+sys) and peak/current RSS (MiB) of one process, including its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {"cpu_s": float("nan"), "peak_rss_mb": float("nan"), "rss_mb": float("nan")}
    hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
    rss = re.search(r"VmRSS:\s+(\d+) kB", status)
    return {
        "cpu_s": cpu,
        "peak_rss_mb": int(hwm.group(1)) / 1024 if hwm else float("nan"),
        "rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
    }


# =========================================================================== websocket frames from clients


class ClientFrameReader:
    """Whole messages out of what a websocket *client* sends (RFC 6455 §5.2: every frame masked, §5.3), or, with
    ``masked=False``, out of what a *server* sends (never masked: the sinks that dial the bridge's ws adapter).

    The peer's gateway and sink read with this instead of wsproto: wsproto's general parser (a generator, an
    event object and a byte-by-byte unmask per frame) made the sink the larger half of the peer's CPU while it
    received the bridge's events, and the peer shares the 2 cores with the client under test (discord.py's runs
    have no sink at all). Unmasking XORs the whole payload as one integer.

    ``feed(data)`` returns ``(opcode, payload)`` per complete message (1 text, 2 binary, with continuation
    frames joined) and per control frame (8 close, 9 ping, 10 pong). Raises ``ValueError`` on an unmasked
    frame, a reserved bit, an unknown opcode or a stray continuation.
    """

    def __init__(self, *, masked: bool = True) -> None:
        self._buffer = b""
        self._parts: list[bytes] = []
        self._opcode = 0
        self._masked = masked

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer + data if self._buffer else data
        out: list[tuple[int, bytes]] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            if first & 0x70:
                raise ValueError("reserved bits set (no extension was negotiated)")
            if bool(second & 0x80) != self._masked:
                raise ValueError("a client frame must be masked, a server frame must not (RFC 6455 §5.3)")
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                head = 4
            elif length == 127:
                if end - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                head = 10
            start = offset + head + (4 if self._masked else 0)
            if end < start + length:
                break
            mask = buffer[offset + head : start]
            payload = buffer[start : start + length]
            if length and self._masked:
                key = (mask * (length // 4 + 1))[:length]
                payload = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")
            offset = start + length
            opcode = first & 0x0F
            fin = first & 0x80
            if opcode >= 8:
                if opcode not in (8, 9, 10) or not fin:
                    raise ValueError(f"bad control frame (opcode {opcode})")
                out.append((opcode, payload))
                continue
            if opcode == 0:
                if not self._parts:
                    raise ValueError("a continuation frame without a message to continue")
            elif opcode in (1, 2):
                if self._parts:
                    raise ValueError("a new message before the last one finished")
                self._opcode = opcode
            else:
                raise ValueError(f"unknown opcode {opcode}")
            if fin and not self._parts:
                out.append((opcode, payload))
                continue
            self._parts.append(payload)
            if fin:
                out.append((self._opcode, b"".join(self._parts)))
                self._parts = []
        self._buffer = buffer[offset:]
        return out


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked frame from a server (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, length))
    elif length < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big")
    return head + payload


# =========================================================================== peer (gateway + REST + sink)


def run_peer(params: dict[str, Any]) -> None:
    import h11
    import trio
    import wsproto
    import wsproto.events as wse

    mode = params["mode"]  # "saturate" | "paced" | "backlog" | "commands" | "scale" | "members"
    count = int(params["events"])
    scale = mode in ("scale", "members")
    n_guilds = int(params.get("guilds", 1))
    n_members = int(params.get("members", 100))
    listed = int(params.get("listed", n_members))
    # the scale world is encoded before the client starts, so the peer's JSON work is not timed
    guild_bodies: list[bytes] = []
    member_chunks: list[list[bytes]] = []
    scale_bodies: list[bytes] = []
    if scale:
        guild_bodies = [
            json.dumps(scale_guild_create(g, n_members, listed), separators=(",", ":")).encode()
            for g in range(n_guilds)
        ]
    if mode == "members":
        member_chunks = [
            [
                json.dumps(
                    [scale_member(g, j, n_members) for j in range(start, min(n_members, start + CHUNK_SIZE))],
                    separators=(",", ":"),
                ).encode()
                for start in range(0, n_members, CHUNK_SIZE)
            ]
            for g in range(n_guilds)
        ]
    if mode == "scale":
        scale_bodies = [
            json.dumps(scale_message(i, n_guilds, n_members), separators=(",", ":")).encode() for i in range(count)
        ]
    rate = float(params.get("rate", 1000.0))
    want_sink = params["client"] != "discordpy"
    #: latency excludes the first second of a paced run (start-up: caches filling, first GC passes)
    warmup = int(params.get("warmup", 0))
    settle = float(params.get("settle", 2.5))
    result: dict[str, Any] = {"sent": 0}
    identified = trio.Event()
    sink_verified = trio.Event()
    sink_open = trio.Event()
    all_received = trio.Event()
    #: the scale stream's first message (sent right after the last GUILD_CREATE) reached the client's consumer
    probe_seen = trio.Event()
    # pending: syncId -> channel of the command phase, resolved by the sink's reader
    sink_state: dict[str, Any] = {
        "count": 0,
        "first": None,
        "last": None,
        "lat": [],
        "conn": None,
        "pending": {},
        "next_seq": 0,
        "disorder": 0,  # events whose sequence was not the next one expected (lost, repeated or reordered)
    }
    rest_times: list[float] = []

    class WsConn:
        """A minimal wsproto connection on a trio stream: whole messages in, batched writes out."""

        def __init__(self, stream: trio.SocketStream, role: wsproto.ConnectionType) -> None:
            self.stream = stream
            self.ws = wsproto.WSConnection(role)  # the handshake and our frames; ClientFrameReader reads theirs
            self.send_lock = trio.Lock()
            self.early = b""  #: bytes read with the handshake's answer that belong to the frames after it

        async def accept(self) -> str:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError
                self.ws.receive_data(data)
                for ev in self.ws.events():
                    if isinstance(ev, wse.Request):
                        await self.stream.send_all(self.ws.send(wse.AcceptConnection()))
                        return ev.target

        async def connect(self, host: str, target: str) -> None:
            """The client side of the handshake (the sinks that dial the bridge's ws adapter)."""
            await self.stream.send_all(self.ws.send(wse.Request(host=host, target=target)))
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError
                buffer += data
            # wsproto reads the answer's head only: the frames that came with it are the reader's (the bridge
            # writes its handshake frame, then events, right after the 101)
            end = buffer.index(b"\r\n\r\n") + 4
            self.ws.receive_data(buffer[:end])
            self.early = buffer[end:]
            for ev in self.ws.events():
                if isinstance(ev, wse.AcceptConnection):
                    return
            raise trio.BrokenResourceError

        async def messages(self) -> AsyncIterator[bytes]:
            """Whole text or binary messages (bytes); answers pings and the close handshake."""
            client = self.ws.client
            reader = ClientFrameReader(masked=not client)
            data, self.early = self.early, b""
            while True:
                if not data:
                    data = await self.stream.receive_some(262144)
                    if not data:
                        return
                received, data = data, b""
                for opcode, payload in reader.feed(received):
                    if opcode <= 2:
                        yield payload
                    elif opcode == 9:
                        await self.send_raw(self.ws.send(wse.Pong(payload)) if client else server_frame(10, payload))
                    elif opcode == 8:
                        with contextlib.suppress(Exception):  # the peer may already be gone
                            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
                            closing = (
                                self.ws.send(wse.CloseConnection(code)) if client else server_frame(8, payload[:2])
                            )
                            await self.send_raw(closing)
                        return

        async def send_raw(self, data: bytes) -> None:
            async with self.send_lock:
                await self.stream.send_all(data)

        def frame(self, payload: _Payload) -> bytes:
            return self.ws.send(wse.Message(data=payload))

    # ------------------------------------------------------------------ gateway
    async def gateway_handler(stream: trio.SocketStream) -> None:
        conn = WsConn(stream, wsproto.ConnectionType.SERVER)
        target = await conn.accept()
        zlib_on = "compress=zlib-stream" in target
        zobj = zlib.compressobj()

        def encode(obj: dict[str, Any] | bytes) -> bytes:
            raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
            if zlib_on:
                return conn.frame(zobj.compress(raw) + zobj.flush(zlib.Z_SYNC_FLUSH))
            return conn.frame(raw.decode())

        seq = 0

        def dispatch(name: str, data: dict[str, Any] | bytes) -> bytes:
            nonlocal seq
            seq += 1
            if isinstance(data, bytes):
                body = b'{"op":0,"s":%d,"t":"%s","d":' % (seq, name.encode()) + data + b"}"
                return encode(body)
            return encode({"op": 0, "s": seq, "t": name, "d": data})

        await conn.send_raw(encode({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}}))

        #: set while a pre-encoded stream is being sent: its frames already advanced the zlib stream, so any other
        #: frame encoded now would reach the client out of order (its inflater would fail); replies wait for it
        stream_sent = trio.Event()
        stream_sent.set()

        def encode_stream(bodies: list[bytes]) -> list[bytes]:
            """The MESSAGE_CREATE stream, compressed and framed before the clock starts, in socket writes of 64
            frames: the peer shares the machine's two cores with the client under test, and encoding at send
            time cost it ~15 µs an event (zlib and wsproto) taken from the client's second core."""
            nonlocal stream_sent
            stream_sent = trio.Event()
            frames = [dispatch("MESSAGE_CREATE", body) for body in bodies]
            return [b"".join(frames[i : i + 64]) for i in range(0, len(frames), 64)]

        async def send_stream(writes: list[bytes]) -> None:
            try:
                for data in writes:
                    await conn.send_raw(data)
            finally:
                stream_sent.set()

        async def scale_streamer() -> None:
            await identified.wait()
            await probe_seen.wait()
            await trio.sleep(settle)
            writes = encode_stream(scale_bodies[1:])
            # the orchestrator reads the client's CPU time now, and again once the stream is consumed
            print(json.dumps({"stream_start": True}), flush=True)
            await trio.sleep(0.2)
            result["first_send"] = time.monotonic()
            await send_stream(writes)
            result["last_send"] = time.monotonic()
            result["sent"] = count

        async def send_world(ready: dict[str, Any]) -> None:
            """READY with every guild unavailable, then one GUILD_CREATE each, then (scale) the probe message."""
            ready["guilds"] = [{"id": str(SCALE_GUILD_BASE + g), "unavailable": True} for g in range(n_guilds)]
            await conn.send_raw(dispatch("READY", ready))
            if want_sink:
                # the bridge dials its framework once READY gave it the bot id: the clock starts once that
                # connection is verified, so the figure is the guilds' processing, not the dial
                await sink_verified.wait()
            result["ready_sent"] = time.monotonic()
            batch: list[bytes] = []
            size = 0
            for body in guild_bodies:
                batch.append(dispatch("GUILD_CREATE", body))
                size += len(batch[-1])
                if size >= 1 << 20:
                    await conn.send_raw(b"".join(batch))
                    batch, size = [], 0
            if mode == "scale":
                batch.append(dispatch("MESSAGE_CREATE", scale_bodies[0]))
            await conn.send_raw(b"".join(batch))
            result["guilds_sent"] = time.monotonic()
            identified.set()

        async def answer_member_request(d: dict[str, Any]) -> None:
            """op 8 for a whole guild: its members in GUILD_MEMBERS_CHUNKs of 1,000 (docs/discord.md §6.4)."""
            result["member_requests"] = result.get("member_requests", 0) + 1
            guild = int(d["guild_id"]) - SCALE_GUILD_BASE
            chunks = member_chunks[guild] if 0 <= guild < len(member_chunks) else [b"[]"]
            nonce = json.dumps(d.get("nonce")).encode()
            for index, chunk in enumerate(chunks):
                body = b'{"guild_id":"%d","members":%s,"chunk_index":%d,"chunk_count":%d,"nonce":%s}' % (
                    SCALE_GUILD_BASE + guild,
                    chunk,
                    index,
                    len(chunks),
                    nonce,
                )
                await conn.send_raw(dispatch("GUILD_MEMBERS_CHUNK", body))

        async def streamer() -> None:
            if mode == "scale":
                await scale_streamer()
                return
            await identified.wait()
            if want_sink and mode != "backlog":
                await sink_verified.wait()
            await trio.sleep(settle)
            if mode == "commands":
                return
            result["first_send"] = time.monotonic()
            if mode in ("saturate", "backlog"):
                writes = encode_stream(
                    [json.dumps(message_payload(i, 0), separators=(",", ":")).encode() for i in range(count)]
                )
                if mode == "saturate":
                    # the orchestrator reads the client's CPU time now, and again once the stream is consumed
                    print(json.dumps({"stream_start": True}), flush=True)
                    await trio.sleep(0.2)
                result["first_send"] = time.monotonic()
                await send_stream(writes)
            else:  # paced: encode at send time so the embedded timestamp is the real send time
                interval = 1.0 / rate
                start = trio.current_time()
                for i in range(count):
                    await trio.sleep_until(start + i * interval)
                    body = json.dumps(message_payload(i, time.monotonic_ns()), separators=(",", ":")).encode()
                    await conn.send_raw(dispatch("MESSAGE_CREATE", body))
            result["last_send"] = time.monotonic()
            result["sent"] = count

        async with trio.open_nursery() as nursery:
            nursery.start_soon(streamer)
            async for message in conn.messages():
                payload = json.loads(message)
                op = payload.get("op")
                await stream_sent.wait()
                if op == 1:
                    await conn.send_raw(encode({"op": 11}))
                elif op == 3:
                    # discord.py's client says it handled the probe (see DISCORDPY_CLIENT): the first thing it
                    # sends after the guilds, as the bridge's first relayed message is for the sink
                    result.setdefault("probe_reply_at", time.monotonic())
                    probe_seen.set()
                elif op == 8:
                    await answer_member_request(payload.get("d") or {})
                elif op == 2 and scale:
                    await send_world(
                        {
                            "v": 10,
                            "user": bot_user(),
                            "session_id": "bench-session",
                            "resume_gateway_url": params["gateway_url"],
                            "shard": [0, 1],
                            "application": {"id": str(BOT_ID), "flags": 0},
                        }
                    )
                elif op == 2:
                    ready = {
                        "v": 10,
                        "user": bot_user(),
                        "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                        "session_id": "bench-session",
                        "resume_gateway_url": params["gateway_url"],
                        "shard": [0, 1],
                        "application": {"id": str(BOT_ID), "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                        "presences": [],
                        "guild_join_requests": [],
                        "geo_ordered_rtc_regions": [],
                        "user_settings": {},
                    }
                    await conn.send_raw(dispatch("READY", ready) + dispatch("GUILD_CREATE", guild_create()))
                    identified.set()
                elif op == 6:
                    await conn.send_raw(dispatch("RESUMED", {}))
            nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ REST (h11)
    app_info = {
        "id": str(BOT_ID),
        "name": "benchbot",
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": message_payload(0, 0)["author"],
        "verify_key": "00",
        "flags": 0,
        "team": None,
        "summary": "",
        "rpc_origins": [],
    }
    message_counter = [1500000000000000000]

    def rest_route(method: str, path: str, body: bytes) -> tuple[int, Any]:
        path, _, query = path.partition("?")
        if path.endswith("/users/@me"):
            return 200, bot_user()
        if path.endswith("/oauth2/applications/@me"):
            return 200, app_info
        if path.endswith("/gateway/bot"):
            return 200, {
                "url": params["gateway_url"],
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1},
            }
        if path.endswith("/gateway"):
            return 200, {"url": params["gateway_url"]}
        m = re.search(r"/channels/(\d+)/messages$", path)
        if m and method == "POST":
            message_counter[0] += 1
            sent = json.loads(body or b"{}")
            return 200, {
                **message_payload(0, 0),
                "id": str(message_counter[0]),
                "author": bot_user(),
                "content": sent.get("content", ""),
                "channel_id": m.group(1),
                "member": None,
            }
        if re.search(r"/channels/(\d+)$", path):
            return 200, guild_create()["channels"][0]
        if re.search(r"/guilds/(\d+)/channels$", path):
            return 200, guild_create()["channels"]
        if re.search(r"/guilds/(\d+)/roles$", path):
            return 200, guild_create()["roles"]
        m = re.search(r"/guilds/(\d+)/members$", path)
        if m and member_chunks:
            # pages of 1,000 after the highest user id so far (docs/discord.md §6.4); the chunks are the pages
            guild = int(m.group(1)) - SCALE_GUILD_BASE
            after = int(dict(re.findall(r"(\w+)=(\d+)", query)).get("after", 0))
            start = max(0, after - (SCALE_USER_BASE + guild * n_members) + 1) if after else 0
            chunks = member_chunks[guild] if 0 <= guild < len(member_chunks) else []
            index = start // CHUNK_SIZE
            return 200, chunks[index] if index < len(chunks) else b"[]"
        if re.search(r"/guilds/(\d+)$", path):
            return 200, guild_create()
        print(f"peer REST: unhandled {method} {path}", file=sys.stderr, flush=True)
        return 404, {"message": "404: Not Found", "code": 0}

    async def rest_handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request = None
            body = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            started = time.perf_counter()
            status, obj = rest_route(request.method.decode(), request.target.decode(), body)
            payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
            out = conn.send(h11.Response(status_code=status, headers=headers)) + conn.send(h11.Data(data=payload))
            out += conn.send(h11.EndOfMessage())
            rest_times.append(time.perf_counter() - started)
            await stream.send_all(out)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    # ------------------------------------------------------------------ mirai sink (reverse-ws server)
    async def sink_handler(stream: trio.SocketStream) -> None:
        try:
            await serve_sink(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the bridge gave up on this connection (it reconnects); not a sink failure

    async def serve_sink(stream: trio.SocketStream) -> None:
        conn = WsConn(stream, wsproto.ConnectionType.SERVER)
        await conn.accept()
        sink_state["conn"] = conn
        await conn.send_raw(
            conn.frame(
                json.dumps(
                    {
                        "syncId": "#",
                        "command": "verify",
                        "content": {"verifyKey": VERIFY_KEY, "sessionKey": None, "qq": BOT_ID},
                    }
                )
            )
        )
        async for message in conn.messages():
            on_sink_message(message)

    def count_event(raw: bytes) -> None:
        """One GroupMessage the framework received (the sink checks order and, paced, latency)."""
        now = time.monotonic()
        sink_state["count"] += 1
        if sink_state["first"] is None:
            sink_state["first"] = now
        sink_state["last"] = now
        # every event exactly once and in order: the text carries the gateway's sequence (0, 1, ...)
        m = LATENCY_RE.search(raw)
        event_seq = int(m.group(1)) if m else -1
        if event_seq != sink_state["next_seq"]:
            sink_state["disorder"] += 1
        sink_state["next_seq"] = event_seq + 1
        if mode == "paced" and m and event_seq >= warmup:
            sink_state["lat"].append(time.monotonic_ns() - int(m.group(2)))
        if sink_state["count"] >= count:
            all_received.set()
        probe_seen.set()

    def on_sink_message(raw: bytes) -> None:
        """A frame the bridge pushed to the sink: an event, the verify answer, or a command's response."""
        if raw.startswith(b'{"syncId":"-1"') or b'"syncId":"-1"' in raw[:40]:
            if b'"GroupMessage"' in raw[:60]:
                count_event(raw)
            return
        frame = json.loads(raw)
        pending: dict[str, trio.MemorySendChannel[tuple[float, Any]]] = sink_state["pending"]
        if frame.get("syncId") in ("#", "") and isinstance(frame.get("data"), dict) and "session" in frame["data"]:
            sink_verified.set()  # reverse-ws: the verify answer; ws: the handshake's (docs/mirai-api-http.md §4.2)
        elif frame.get("syncId") in pending:
            pending.pop(frame["syncId"]).send_nowait((time.perf_counter(), frame.get("data")))

    # ------------------------------------------------------------------ sinks that dial the bridge (ws, http)
    sink_kind = params.get("sink", "server")  # "server" (reverse-ws) | "ws" | "http" | "fanout"
    bridge_port = int(params.get("bridge_port", 0))

    async def dial_ws(name: str | None) -> WsConn:
        """Open the bridge's /all as a framework would (retried until the bridge listens and knows its bot)."""
        target = f"/all?verifyKey={VERIFY_KEY}&qq={BOT_ID}" + (f"&client={name}" if name else "")
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", bridge_port)
            except OSError:
                await trio.sleep(0.05)
                continue
            conn = WsConn(stream, wsproto.ConnectionType.CLIENT)
            try:
                await conn.connect(f"127.0.0.1:{bridge_port}", target)
            except trio.BrokenResourceError:
                await trio.sleep(0.05)
                continue
            return conn

    async def ws_sink() -> None:
        while True:
            conn = await dial_ws(None)
            sink_state["conn"] = conn
            refused = False
            async for message in conn.messages():
                if message.startswith(b'{"syncId":"","data":{"code":') and b'"session"' not in message:
                    refused = True  # e.g. code 2 before the bridge read READY: dial again
                    break
                on_sink_message(message)
            if not refused:
                return
            await trio.sleep(0.05)

    fanout_counts: list[int] = []

    async def fanout_sink(index: int, connected: list[int]) -> None:
        while True:
            conn = await dial_ws(f"fw{index}")
            refused = False
            async for message in conn.messages():
                if message.startswith(b'{"syncId":"","data":{"code":0'):
                    connected[0] += 1
                    if connected[0] == len(fanout_counts):
                        sink_verified.set()
                elif message.startswith(b'{"syncId":"","data":{"code":'):
                    refused = True  # code 2 before the bridge read READY: dial again
                    break
                elif b'"GroupMessage"' in message[:60]:
                    fanout_counts[index] += 1
                    if fanout_counts[index] == count:
                        sink_state["last"] = time.monotonic()
                        if min(fanout_counts) >= count:
                            sink_state["count"] = count
                            all_received.set()
            if not refused:
                return
            await trio.sleep(0.05)

    http_state: dict[str, Any] = {}

    async def http_sink() -> None:
        import httpx

        base = f"http://127.0.0.1:{bridge_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while True:
                try:
                    verified = (await client.post("/verify", json={"verifyKey": VERIFY_KEY})).json()
                    bound = (await client.post("/bind", json={"sessionKey": verified["session"], "qq": BOT_ID})).json()
                except httpx.HTTPError:
                    await trio.sleep(0.05)
                    continue
                if bound.get("code") == 0:
                    break
                await trio.sleep(0.05)  # code 2 before the bridge read READY
            key = verified["session"]
            http_state["client"], http_state["key"] = client, key
            await client.get("/countMessage", params={"sessionKey": key})  # the first poll: the cursor starts here
            sink_verified.set()
            if mode == "commands":
                await trio.sleep_forever()
            while not all_received.is_set():
                answer = (await client.get("/fetchMessage", params={"sessionKey": key, "count": 100})).json()
                events = answer.get("data") or []
                for event in events:
                    if event.get("type") == "GroupMessage":
                        text = "".join(e.get("text", "") for e in event["messageChain"] if e.get("type") == "Plain")
                        count_event(text.encode())
                if not events:
                    await trio.sleep(0.001)

    async def command_round_trips(n: int) -> None:
        """Framework → bridge → fake REST → response, one at a time, beside direct REST round trips."""

        conn: WsConn = sink_state["conn"]
        rtts: list[float] = []
        failures = 0
        for i in range(n):
            send, recv = trio.open_memory_channel[tuple[float, Any]](1)
            sync_id = f"cmd{i}"
            started = time.perf_counter()
            sink_state["pending"][sync_id] = send
            await conn.send_raw(
                conn.frame(
                    json.dumps(
                        {
                            "syncId": sync_id,
                            "command": "sendGroupMessage",
                            "subCommand": None,
                            "content": {
                                "target": CHANNEL_ID,
                                "messageChain": [{"type": "Plain", "text": f"reply {i}"}],
                            },
                        }
                    )
                )
            )
            with trio.fail_after(10):
                done_at, data = await recv.receive()
            if not (isinstance(data, dict) and data.get("code") == 0):
                failures += 1
            rtts.append(done_at - started)
            # stay under Discord's global 50 requests/s, which the bridge enforces (the direct baseline does
            # not): this phase measures the bridge's overhead, not its rate limiter
            await trio.sleep(COMMAND_SPACING)
        # The fake REST's own time, twice: from a client in this process (no process hop) and from a client in
        # a process of its own, which crosses processes the way the bridge's REST call does.
        direct = await rest_round_trips(params["rest_port"], n)
        probe = await trio.run_process(
            [sys.executable, __file__, "_rest_probe", json.dumps({"rest_port": params["rest_port"], "n": n})],
            capture_stdout=True,
        )
        direct_other_process = json.loads(probe.stdout)
        result["commands"] = {
            "n": n,
            "failures": failures,
            "bridge_rtt_p50_ms": percentile(rtts, 50) * 1e3,
            "bridge_rtt_p99_ms": percentile(rtts, 99) * 1e3,
            "direct_rest_rtt_p50_ms": percentile(direct, 50) * 1e3,
            "direct_rest_other_process_rtt_p50_ms": percentile(direct_other_process, 50) * 1e3,
            "added_p50_ms": (percentile(rtts, 50) - percentile(direct_other_process, 50)) * 1e3,
            "added_over_in_process_p50_ms": (percentile(rtts, 50) - percentile(direct, 50)) * 1e3,
        }

    async def http_command_round_trips(n: int) -> None:
        """Framework → bridge's http adapter → fake REST → response, one POST at a time."""
        client, key = http_state["client"], http_state["key"]
        rtts: list[float] = []
        failures = 0
        for i in range(n):
            body = {"sessionKey": key, "target": CHANNEL_ID, "messageChain": [{"type": "Plain", "text": f"reply {i}"}]}
            started = time.perf_counter()
            data = (await client.post("/sendGroupMessage", json=body)).json()
            rtts.append(time.perf_counter() - started)
            if data.get("code") != 0:
                failures += 1
            await trio.sleep(COMMAND_SPACING)
        result["commands"] = {
            "n": n,
            "failures": failures,
            "bridge_rtt_p50_ms": percentile(rtts, 50) * 1e3,
            "bridge_rtt_p99_ms": percentile(rtts, 99) * 1e3,
        }

    async def member_lists() -> dict[str, Any]:
        """memberList for every guild at once, as a framework asks after start-up; seconds until all answered."""
        conn: WsConn = sink_state["conn"]
        sizes: dict[int, int] = {}

        async def one(guild: int, round_no: int) -> None:
            send, recv = trio.open_memory_channel[tuple[float, Any]](1)
            sync_id = f"ml{round_no}-{guild}"
            sink_state["pending"][sync_id] = send
            frame = {
                "syncId": sync_id,
                "command": "memberList",
                "subCommand": None,
                "content": {"target": SCALE_CHANNEL_BASE + guild},
            }
            await conn.send_raw(conn.frame(json.dumps(frame)))
            with trio.fail_after(300):
                _, data = await recv.receive()
            listed = data.get("data") if isinstance(data, dict) else None
            sizes[guild] = len(listed) if isinstance(listed, list) else -1

        out: dict[str, Any] = {"guilds": n_guilds, "members": n_members, "listed_in_guild_create": listed}
        for round_no, name in enumerate(("first_s", "again_s")):
            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                for guild in range(n_guilds):
                    nursery.start_soon(one, guild, round_no)
            out[name] = time.monotonic() - started
            out["complete" if round_no == 0 else "complete_again"] = all(v == n_members for v in sizes.values())
            out["sizes"] = sorted(set(sizes.values()))
        out["member_requests"] = result.get("member_requests", 0)
        return out

    async def main() -> None:
        listeners = {}
        for name in ("gateway", "rest"):
            listeners[name] = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        ports = {name: lst.socket.getsockname()[1] for name, lst in listeners.items()}
        # The sink's port is reserved by a bound socket that does not listen: while the framework is "down"
        # (backlog phase) the bridge's dials are refused, as they would be by a stopped framework, instead of
        # piling up unanswered in the kernel's accept queue.
        reserved = socket.socket()
        reserved.bind(("127.0.0.1", 0))
        ports["sink"] = reserved.getsockname()[1]

        async def open_sink() -> None:
            reserved.close()
            listeners["sink"] = (await trio.open_tcp_listeners(ports["sink"], host="127.0.0.1"))[0]
            nursery.start_soon(trio.serve_listeners, sink_handler, [listeners["sink"]])

        params["gateway_url"] = f"ws://127.0.0.1:{ports['gateway']}"
        params["rest_port"] = ports["rest"]
        print(json.dumps({"ports": ports}), flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, gateway_handler, [listeners["gateway"]])
            nursery.start_soon(trio.serve_listeners, rest_handler, [listeners["rest"]])
            if sink_kind == "ws":
                nursery.start_soon(ws_sink)
            elif sink_kind == "http":
                nursery.start_soon(http_sink)
            elif sink_kind == "fanout":
                connected = [0]
                fanout_counts.extend([0] * int(params["frameworks"]))
                for index in range(len(fanout_counts)):
                    nursery.start_soon(fanout_sink, index, connected)
            elif want_sink and mode != "backlog":
                await open_sink()
                sink_open.set()
            deadline = float(params.get("deadline", 120))
            with trio.move_on_after(deadline) as scope:
                if mode == "commands" and sink_kind == "http":
                    await sink_verified.wait()
                    await trio.sleep(settle)
                    await http_command_round_trips(int(params.get("commands", 300)))
                elif mode == "commands":
                    await sink_verified.wait()
                    await trio.sleep(settle)
                    await command_round_trips(int(params.get("commands", 300)))
                elif mode == "members":
                    await identified.wait()
                    await trio.sleep(settle)
                    result["members"] = await member_lists()
                elif mode == "backlog":
                    # the framework is down while the backlog builds; the orchestrator samples RSS meanwhile
                    await identified.wait()
                    while "last_send" not in result:
                        await trio.sleep(0.05)
                    print(json.dumps({"backlog_sent": True}), flush=True)
                    await trio.sleep(float(params.get("backlog_hold", 3.0)))
                    result["drain_start"] = time.monotonic()
                    await open_sink()
                    await all_received.wait()
                elif want_sink:
                    await all_received.wait()
                else:
                    while "last_send" not in result:
                        await trio.sleep(0.05)
            result["timed_out"] = scope.cancelled_caught
            result["sink"] = {k: sink_state[k] for k in ("count", "first", "last", "disorder")}
            if mode == "scale" and not want_sink:
                result["sink"] = {}
            lat = sink_state["lat"]
            result["sink"]["lat_p50_ms"] = percentile(lat, 50) / 1e6 if lat else None
            result["sink"]["lat_p99_ms"] = percentile(lat, 99) / 1e6 if lat else None
            result["rest_p50_ms"] = percentile(rest_times, 50) * 1e3 if rest_times else None
            print(json.dumps({"result": result}), flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)


# =========================================================================== REST probe


async def rest_round_trips(rest_port: int, n: int) -> list[float]:
    """``n`` message creates against the fake REST, one at a time and spaced like the bridge's commands (an idle
    gap before each request costs wake-up time a back-to-back loop would not pay); seconds each."""
    import httpx
    import trio

    times: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}") as client:
        for i in range(n):
            started = time.perf_counter()
            response = await client.post(f"/api/v10/channels/{CHANNEL_ID}/messages", json={"content": f"x{i}"})
            response.raise_for_status()
            times.append(time.perf_counter() - started)
            await trio.sleep(COMMAND_SPACING)
    return times


def run_rest_probe(params: dict[str, Any]) -> None:
    import trio

    print(json.dumps(trio.run(rest_round_trips, params["rest_port"], params["n"])))


# =========================================================================== bare relay client


def run_bare(params: dict[str, Any]) -> None:
    import trio
    import trio_websocket

    compress = bool(params["compress"])
    query = "?v=10&encoding=json" + ("&compress=zlib-stream" if compress else "")

    async def main() -> None:
        # stop() sends SIGINT: leave through cancellation so the websockets close cleanly (no traceback noise)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as outer:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        outer.cancel_scope.cancel()

                outer.start_soon(stop_on_signal)
                try:
                    await relay()
                except* (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
                    pass  # the peer going away first also ends the run (errors come grouped by the nursery)
                outer.cancel_scope.cancel()

    async def relay() -> None:
        inflater = zlib.decompressobj()
        buffer = bytearray()
        seq = None
        async with (
            trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{params['sink_port']}/ws", max_message_size=2**26
            ) as sink,
            trio_websocket.open_websocket_url(params["gateway_url"] + "/" + query, max_message_size=2**26) as gateway,
        ):
            verify = json.loads(await sink.get_message())
            await sink.send_message(json.dumps({"syncId": verify["syncId"], "data": {"code": 0, "session": "bare"}}))

            async def heartbeat(interval: float) -> None:
                while True:
                    await trio.sleep(interval)
                    await gateway.send_message(json.dumps({"op": 1, "d": seq}))

            async with trio.open_nursery() as nursery:
                while True:
                    message = await gateway.get_message()
                    if compress:
                        assert isinstance(message, bytes)  # a zlib-stream comes in binary messages
                        buffer.extend(message)
                        if buffer[-4:] != ZLIB_SUFFIX:
                            continue
                        message = inflater.decompress(bytes(buffer))
                        buffer.clear()
                    payload = json.loads(message)
                    op = payload["op"]
                    if op == 10:
                        nursery.start_soon(heartbeat, payload["d"]["heartbeat_interval"] / 1000)
                        await gateway.send_message(
                            json.dumps(
                                {
                                    "op": 2,
                                    "d": {
                                        "token": TOKEN,
                                        "intents": 46599,
                                        "properties": {"os": "linux", "browser": "bare", "device": "bare"},
                                    },
                                }
                            )
                        )
                    elif op == 0:
                        seq = payload["s"]
                        if payload["t"] == "MESSAGE_CREATE":
                            d = payload["d"]
                            event = {
                                "syncId": "-1",
                                "data": {
                                    "type": "GroupMessage",
                                    "messageChain": [
                                        {"type": "Source", "id": seq, "time": 0},
                                        {"type": "Plain", "text": d["content"]},
                                    ],
                                    "sender": {
                                        "id": int(d["author"]["id"]),
                                        "memberName": d["author"]["username"],
                                        "permission": "MEMBER",
                                        "group": {
                                            "id": int(d["channel_id"]),
                                            "name": "general",
                                            "permission": "MEMBER",
                                        },
                                    },
                                },
                            }
                            await sink.send_message(json.dumps(event, ensure_ascii=False, separators=(",", ":")))

    trio.run(main)


# =========================================================================== discord.py client (own venv)

DISCORDPY_CLIENT = r"""
import asyncio, json, re, resource, sys, time
import discord, yarl
from discord.gateway import DiscordWebSocket
params = json.loads(sys.argv[1])
discord.http.Route.BASE = f"http://127.0.0.1:{params['rest_port']}/api/v10"
DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(params["gateway_url"] + "/")
if not params["compress"]:
    DiscordWebSocket.from_client.__func__.__kwdefaults__["compress"] = False
count = params["events"]
pat = re.compile(r"bench (\d+) (\d+) ")
state = {"n": 0, "first": None, "last": None, "lat": []}
intents = discord.Intents.default(); intents.message_content = True; intents.members = True
client = discord.Client(intents=intents, chunk_guilds_at_startup=False)
@client.event
async def on_message(message):
    now = time.monotonic()
    state["n"] += 1
    if state["first"] is None:
        state["first"] = now
        if params["mode"] == "scale":
            # the probe (sent right after the last GUILD_CREATE) was handled: tell the peer with one op 3
            await client.change_presence(status=discord.Status.online)
    state["last"] = now
    if params["mode"] == "paced":
        m = pat.match(message.content)
        if m and int(m.group(1)) >= params.get("warmup", 0):
            state["lat"].append(time.monotonic_ns() - int(m.group(2)))
    if state["n"] >= count:
        lat = sorted(state["lat"])
        def pct(p):
            return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))] / 1e6 if lat else None
        # its own CPU and peak RSS once it has handled the last event: the peer reports when it has *sent* the
        # stream, and discord.py may still be reading it then (or have exited)
        print(json.dumps({"dpy": {"count": state["n"], "first": state["first"], "last": state["last"],
                                  "lat_p50_ms": pct(50), "lat_p99_ms": pct(99), "cpu_s": time.process_time(),
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}),
              flush=True)
        if params["mode"] == "scale":
            await asyncio.sleep(3600)  # stay alive with the caches filled: the bench reads the RSS, then stops us
        await client.close()
client.run("bench-token-not-a-secret", log_handler=None)
"""


# =========================================================================== orchestrator


def start_peer(params: dict[str, Any]) -> tuple[subprocess.Popen[str], dict[str, int]]:
    peer = subprocess.Popen(
        [sys.executable, __file__, "_peer", json.dumps(params)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert peer.stdout is not None
    line = peer.stdout.readline()
    if not line:
        raise SystemExit("bench: the peer process failed to start")
    return peer, json.loads(line)["ports"]


def read_peer_result(peer: subprocess.Popen[str], timeout: float, on_line: Any = None) -> dict[str, Any]:
    """The peer's result; ``on_line(obj)`` sees the lines before it (the scale stream's start)."""
    assert peer.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = peer.stdout.readline()
        if not line:
            break
        obj = json.loads(line)
        if "result" in obj:
            return obj["result"]  # type: ignore[no-any-return]
        if on_line is not None:
            on_line(obj)
    raise SystemExit("bench: the peer gave no result")


#: the bridge's clients: reverse-ws (it dials the sink), or a framework dialing its ws / http adapter
BRIDGE_KINDS = ("bridge", "bridge-ws", "bridge-http")


def bridge_config(
    workdir: Path, ports: dict[str, int], compress: bool, kind: str = "bridge", port: int = 0, server_port: int = 0
) -> Path:
    """The bench bridge's configuration: reverse-ws to the sink (``bridge``), or the ws and http adapters on
    ``port`` for a sink that dials it (``bridge-ws``, ``bridge-http``); ``[server]`` (its ``/metrics``) on
    ``server_port``."""
    path = workdir / "bench-bridge.toml"
    if kind == "bridge":
        adapters = f"""
[[mirai.reverse_ws.destinations]]
name = "sink"
host = "127.0.0.1"
port = {ports["sink"]}
path = "/ws"
protocol = "ws"
"""
    else:
        adapters = f"""adapters = ["ws", "http"]
[mirai.ws]
port = {port}
[mirai.http]
port = {port}
"""
    path.write_text(f"""
[discord]
api_base_url = "http://127.0.0.1:{ports["rest"]}/api/v10"
gateway_url = "ws://127.0.0.1:{ports["gateway"]}"
compress = {str(compress).lower()}

[mirai]
enable_verify = true
{adapters}

[store]
path = "{workdir / "bench.sqlite3"}"

[logging]
level = "WARNING"
status_interval = 3600

[server]
port = {server_port}
""")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: the bridge's /metrics lines the bench reads after a stream: what its SQLite writer did
DISK_METRICS_RE = re.compile(
    rb'^relay_store_(written_rows|write_batches)(?:_total)?\{table="(outbox|messages)"\} ([0-9.e+]+)$', re.M
)


def disk_writes(server_port: int) -> dict[str, float]:
    """The bridge's SQLite writes so far, from its /metrics: outbox frames and message-id rows written, and
    transactions (``{}`` when it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server_port}/metrics", timeout=5) as answer:
            text = answer.read()
    except OSError:
        return {}
    found = {f"{table.decode()}_{name.decode()}": float(value) for name, table, value in DISK_METRICS_RE.findall(text)}
    return {
        "disk_frames": found.get("outbox_written_rows", math.nan),
        "disk_rows": found.get("messages_written_rows", math.nan),
        "disk_commits": found.get("outbox_write_batches", math.nan),
    }


def launch_client(
    kind: str, params: dict[str, Any], ports: dict[str, int], workdir: Path, dpy_python: str | None
) -> subprocess.Popen[str]:
    env = {**os.environ, "DISCORD_TOKEN": TOKEN, "MIRAI_VERIFY_KEY": VERIFY_KEY}
    client_params = {
        **params,
        "gateway_url": f"ws://127.0.0.1:{ports['gateway']}",
        "rest_port": ports["rest"],
        "sink_port": ports["sink"],
    }
    if kind in BRIDGE_KINDS:
        cfg = bridge_config(
            workdir, ports, bool(params["compress"]), kind, int(params.get("bridge_port", 0)), params["server_port"]
        )
        argv = [sys.executable, "-m", "relay", "-q", "run", str(cfg)]
        if params.get("profile"):
            argv = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-o",
                str(workdir / "profile.txt"),
                "-m",
                "relay",
                "-q",
                "run",
                str(cfg),
            ]
        return subprocess.Popen(argv, env=env, cwd=workdir, text=True, stdout=subprocess.DEVNULL)
    if kind == "bare":
        return subprocess.Popen([sys.executable, __file__, "_bare", json.dumps(client_params)], env=env, text=True)
    assert dpy_python
    return subprocess.Popen(
        [dpy_python, "-c", DISCORDPY_CLIENT, json.dumps(client_params)], env=env, text=True, stdout=subprocess.PIPE
    )


def stop(proc: subprocess.Popen[str], *, grace: float = 0.0) -> None:
    """SIGINT, then kill after 10 s. ``grace``: first wait this long for the process to end by itself (the peer
    does once it has printed its result; a SIGINT while its interpreter shuts down printed a traceback)."""
    if grace and proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_scenario(
    kind: str,
    mode: str,
    compress: bool,
    events: int,
    rate: float,
    dpy_python: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "client": kind,
        "mode": mode,
        "compress": compress,
        "events": events,
        "rate": rate,
        **(extra or {}),
    }
    if kind in ("bridge-ws", "bridge-http"):
        # the sink is a framework that dials the bridge's ws (or http) adapter on a port chosen here
        params["bridge_port"] = free_port()
        params.setdefault("sink", kind.removeprefix("bridge-"))
    if kind in BRIDGE_KINDS:
        params["server_port"] = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        peer, ports = start_peer(params)
        client = launch_client(kind, params, ports, workdir, dpy_python)
        samples: list[float] = []
        try:
            if mode == "backlog":
                assert peer.stdout is not None
                # sample the bridge's RSS while the backlog builds and waits
                line = peer.stdout.readline()
                while line and "backlog_sent" not in line:
                    line = peer.stdout.readline()
                hold_until = time.monotonic() + float(params.get("backlog_hold", 3.0))
                while time.monotonic() < hold_until:
                    samples.append(proc_stats(client.pid)["rss_mb"])
                    time.sleep(0.1)
            stream_cpu: list[float] = []
            stream_threads: list[dict[int, int]] = []

            def at_stream_start(obj: dict[str, Any]) -> None:
                if obj.get("stream_start"):
                    stream_cpu.append(proc_stats(client.pid)["cpu_s"])
                    stream_threads.append(thread_cpu_ns(client.pid))

            result = read_peer_result(peer, float(params.get("deadline", 120)) + 30, at_stream_start)
            dpy: dict[str, Any] = {}
            if kind == "discordpy" and mode == "scale":
                # the RSS after the stream: read once discord.py has handled the last message (it then waits)
                assert client.stdout is not None
                dpy = json.loads(client.stdout.readline() or "{}").get("dpy", {})
            stats = proc_stats(client.pid)
            if kind in BRIDGE_KINDS and mode == "saturate":
                # what the stream cost on disk: frames still undelivered when a flush was taken are written (and
                # deleted by a later one); every relayed message has its id row
                stats.update(disk_writes(params["server_port"]))
            if stream_cpu:
                # CPU per event of the stream alone: steadier than events/s on a machine shared with others
                stats["cpu_us_per_event"] = (stats["cpu_s"] - stream_cpu[0]) / max(1, events - 1) * 1e6
            if stream_threads and kind in BRIDGE_KINDS:
                # the bridge's event loop runs on its main thread; the rest of its CPU is the store's writer (and
                # any other worker thread), which runs beside it on the other core: the loop's share is what paces
                # the stream (read now, after the sink has every event; not for discord.py, read too early here)
                start, end = stream_threads[0], thread_cpu_ns(client.pid)
                if client.pid in start and client.pid in end:
                    stats["loop_us_per_event"] = (end[client.pid] - start[client.pid]) / max(1, events - 1) / 1e3
            # the peer (gateway + REST + sink on one core) must not be the bottleneck: report its CPU too
            stats["peer_cpu_s"] = proc_stats(peer.pid)["cpu_s"]
            if kind == "discordpy":
                assert client.stdout is not None
                if not dpy:
                    dpy = json.loads(client.stdout.readline() or "{}").get("dpy", {})
                result["sink"] = {**dpy}
                if "cpu_s" in dpy:
                    # read by discord.py itself after its last event; /proc above may have been read mid-stream
                    stats["cpu_s"] = dpy["cpu_s"]
                    seen = stats["peak_rss_mb"]
                    stats["peak_rss_mb"] = dpy["peak_rss_mb"] if math.isnan(seen) else max(seen, dpy["peak_rss_mb"])
                    if stream_cpu:
                        stats["cpu_us_per_event"] = (dpy["cpu_s"] - stream_cpu[0]) / max(1, events - 1) * 1e6
        finally:
            stop(client)
            stop(peer, grace=2.0)
        if params.get("profile") and (workdir / "profile.txt").exists():
            result["profile"] = (workdir / "profile.txt").read_text()
    sink = result.get("sink", {})
    out: dict[str, Any] = {"client": kind, "mode": mode, "compress": compress, "events": events, **stats}
    if params.get("sink") == "fanout":
        out["frameworks"] = params["frameworks"]
    if mode == "scale":
        out.update(guilds=params["guilds"], members=params["members"], received=sink.get("count", 0))
        if sink.get("first") and result.get("ready_sent"):
            # READY sent → the probe (right behind the last GUILD_CREATE) handled: every guild processed. The
            # bridge's end is the sink receiving the probe's GroupMessage; discord.py's is its on_message, in its
            # own process (the same monotonic clock), so discord.py's figure has no hop back to the peer
            out["load_s"] = sink["first"] - result["ready_sent"]
            # the same, both ends seen by the peer: the probe's GroupMessage at the sink (bridge), the op 3 that
            # discord.py's on_message sends at the gateway (discord.py); each includes one hop to the peer
            reply = sink["first"] if kind in BRIDGE_KINDS else result.get("probe_reply_at")
            if reply:
                out["load_at_peer_s"] = reply - result["ready_sent"]
        if sink.get("last") and result.get("first_send"):
            out["events_per_s"] = (events - 1) / max(1e-9, sink["last"] - result["first_send"])
        if sink.get("disorder"):
            out["out_of_order"] = sink["disorder"]
    elif mode == "members":
        out["members"] = result.get("members")
    elif sink.get("count") and sink.get("last") and result.get("first_send"):
        start = result["first_send"]
        if "drain_start" in result:
            # replay speed counts from the first replayed event; the wait before it is the bridge's reconnect
            # backoff toward a framework that was down (capped by [mirai.reverse_ws.reconnect] cap)
            start = sink["first"]
            out["reconnect_wait_s"] = sink["first"] - result["drain_start"]
        out["received"] = sink["count"]
        if sink.get("disorder"):
            out["out_of_order"] = sink["disorder"]
        out["events_per_s"] = sink["count"] / max(1e-9, sink["last"] - start)
        out["lat_p50_ms"] = sink.get("lat_p50_ms")
        out["lat_p99_ms"] = sink.get("lat_p99_ms")
    else:
        out["received"] = sink.get("count", 0)
    if samples:
        out["backlog_peak_rss_mb"] = max(samples)
    for key in ("commands", "profile", "timed_out"):
        if key in result:
            out[key] = result[key]
    return out


def find_discordpy_python(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [str(BENCH_VENV / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import discord"], capture_output=True, check=False)
            if probe.returncode == 0:
                return candidate
    return None


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per saturation run (default 20000)")
    parser.add_argument("--paced-rate", type=float, default=1000.0, help="events/s for the latency runs")
    parser.add_argument(
        "--paced-seconds", type=float, default=5.0, help="length of each latency run (the first second is warm-up)"
    )
    parser.add_argument("--backlog", type=int, default=100_000, help="events queued while the framework is down")
    parser.add_argument("--commands", type=int, default=300, help="command round trips to time")
    parser.add_argument(
        "--clients",
        default="bridge,bridge-ws,bare,discordpy",
        help="comma-separated subset; bridge-ws is the bridge with a framework dialing its ws adapter",
    )
    parser.add_argument(
        "--frameworks", type=int, default=100, help="ws frameworks connected at once in the servers phase's fan-out"
    )
    parser.add_argument("--compress", default="on,off", help="zlib-stream modes to run: on,off")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: saturate,paced,backlog,commands,servers,webhooks",
    )
    parser.add_argument("--discordpy-python", help="python with discord.py installed (default .bench-venv)")
    parser.add_argument("--setup-discordpy", action="store_true", help="create .bench-venv with discord.py, exit")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="saturate",
        choices=["saturate", "paced", "backlog", "commands", "scale", "members"],
        help="profile the bridge in this phase (default: saturate) with pyinstrument",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also run the scale grid (G guilds x M members, bridge and discord.py back to back) and the "
        "large-guild member-list phase (skip either with --skip scale / --skip members)",
    )
    parser.add_argument(
        "--scale-points",
        default="1x100,1000x100,2500x100,10x10000",
        help="GxM grid points for --scale (default 1x100,1000x100,2500x100,10x10000)",
    )
    parser.add_argument("--scale-repeat", type=int, default=1, help="runs per grid point, client and zlib mode")
    parser.add_argument(
        "--scale-settle",
        type=float,
        default=2.5,
        help="seconds between the probe and the stream (discord.py dispatches its ready 2 s after the last "
        "GUILD_CREATE; the saturation runs wait 2.5 s too)",
    )
    parser.add_argument(
        "--members-guilds",
        default="10x10000",
        help="GxM of the large-guild phase: GUILD_CREATE lists 100 members, memberList must fetch the rest",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="saturation runs per client and mode, interleaved (bridge, bare, discord.py, bridge, ...); the "
        "report gives medians and ranges, and each ratio as the median of the runs' paired ratios",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    if args.setup_discordpy:
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "discord.py"], check=True)
        return 0

    clients = [c for c in args.clients.split(",") if c]
    unknown = sorted(set(clients) - {"bridge", "bridge-ws", "bare", "discordpy"})
    if unknown:
        parser.error(f"unknown client(s) {', '.join(unknown)}: choose from bridge, bridge-ws, bare, discordpy")
    dpy_python = find_discordpy_python(args.discordpy_python)
    if "discordpy" in clients and dpy_python is None:
        print("bench: discord.py not found (run with --setup-discordpy once); measuring without it", file=sys.stderr)
        clients.remove("discordpy")
    skip = set(args.skip.split(","))
    modes = [m == "on" for m in args.compress.split(",") if m]
    rows: list[dict[str, Any]] = []
    paced_events = int(args.paced_rate * args.paced_seconds)

    def profiled(kind: str, phase: str) -> dict[str, Any] | None:
        return {"profile": True} if args.profile == phase and kind == "bridge" else None

    # Saturation runs are interleaved so each repetition measures every client under the same machine load: on a
    # shared 2-core VM one run's events/s can move by 20 % with the neighbours' load.
    for repetition in range(args.repeat):
        for compress in modes:
            for kind in clients:
                if "saturate" not in skip:
                    extra = profiled(kind, "saturate") if repetition == 0 else None
                    row = run_scenario(kind, "saturate", compress, args.events, args.paced_rate, dpy_python, extra)
                    row["repetition"] = repetition
                    rows.append(row)
                    print(
                        f"  {kind:9} zlib={'on ' if compress else 'off'} saturate: "
                        f"{fmt(row.get('events_per_s'), 0)} ev/s"
                        + (f" (run {repetition + 1} of {args.repeat})" if args.repeat > 1 else ""),
                        file=sys.stderr,
                    )
    for kind in clients:
        if "paced" not in skip and kind != "bridge-ws":
            rows.append(
                run_scenario(
                    kind,
                    "paced",
                    True,
                    paced_events,
                    args.paced_rate,
                    dpy_python,
                    {"warmup": int(args.paced_rate), **(profiled(kind, "paced") or {})},
                )
            )
            print(
                f"  {kind:9} paced {args.paced_rate:.0f}/s: p50 {fmt(rows[-1].get('lat_p50_ms'), 2)} ms "
                f"p99 {fmt(rows[-1].get('lat_p99_ms'), 2)} ms",
                file=sys.stderr,
            )
    extras: dict[str, Any] = {}
    scale_points = [tuple(int(x) for x in point.split("x")) for point in args.scale_points.split(",") if point]
    if args.scale and "scale" not in skip:
        for repetition in range(args.scale_repeat):
            for guilds, members in scale_points:
                for compress in modes:
                    for kind in [c for c in clients if c in ("bridge", "discordpy")]:
                        extra = {"guilds": guilds, "members": members, "settle": args.scale_settle, "deadline": 300}
                        if repetition == 0 and args.profile == "scale" and kind == "bridge":
                            extra["profile"] = True
                        row = run_scenario(kind, "scale", compress, args.events, args.paced_rate, dpy_python, extra)
                        row["repetition"] = repetition
                        rows.append(row)
                        print(
                            f"  {kind:9} zlib={'on ' if compress else 'off'} scale {guilds}x{members}: "
                            f"{fmt(row.get('events_per_s'), 0)} ev/s, guilds loaded in {fmt(row.get('load_s'), 4)} s "
                            f"({fmt(row.get('load_at_peer_s'), 4)} s seen by the peer), "
                            f"RSS {fmt(row.get('rss_mb'))} MB",
                            file=sys.stderr,
                        )
    if args.scale and "members" not in skip and "bridge" in clients:
        guilds, members = (int(x) for x in args.members_guilds.split("x"))
        extra = {"guilds": guilds, "members": members, "listed": min(100, members), "settle": 1.0, "deadline": 300}
        if args.profile == "members":
            extra["profile"] = True
        row = run_scenario("bridge", "members", True, 0, args.paced_rate, dpy_python, extra)
        extras["members"] = row.get("members")
        if "profile" in row:
            extras["members_profile"] = row
        print(f"  bridge    member lists {guilds}x{members}: {row.get('members')}", file=sys.stderr)
    if "bridge" in clients and "backlog" not in skip:
        backlog = run_scenario(
            "bridge",
            "backlog",
            True,
            args.backlog,
            args.paced_rate,
            dpy_python,
            {"deadline": 300, "backlog_hold": 3.0, **(profiled("bridge", "backlog") or {})},
        )
        extras["backlog"] = backlog
    if "bridge" in clients and "commands" not in skip:
        commands = run_scenario(
            "bridge",
            "commands",
            True,
            0,
            args.paced_rate,
            dpy_python,
            {"commands": args.commands, **(profiled("bridge", "commands") or {})},
        )
        extras["commands"] = commands.get("commands")
        if "profile" in commands:
            extras["commands_profile"] = commands

    if "bridge" in clients and "servers" not in skip:
        # the listening adapters (issue 13), short: http polling at saturation, a fan-out to many ws frameworks,
        # and the command round trip over ws and over http (the reverse-ws one is the commands phase above)
        servers: dict[str, Any] = {}
        servers["http_polling"] = run_scenario("bridge-http", "saturate", True, args.events, args.paced_rate, None)
        fanout_events = 1_000
        servers["fanout"] = run_scenario(
            "bridge-ws",
            "saturate",
            True,
            fanout_events,
            args.paced_rate,
            None,
            {"sink": "fanout", "frameworks": args.frameworks},
        )
        for kind in ("bridge-ws", "bridge-http"):
            row = run_scenario(kind, "commands", True, 0, args.paced_rate, None, {"commands": args.commands})
            servers[f"commands_{kind.removeprefix('bridge-')}"] = row.get("commands")
        extras["servers"] = servers

    if "bridge" in clients and "webhooks" not in skip:
        # webhooks out (deliveries/s to a local receiver) and robots in (accepted/s, latency to the fake Discord):
        # scripts/bench_webhooks.py, in a process of its own
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "bench_webhooks.py")],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode == 0:
            extras["webhooks"] = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            print(f"bench: the webhooks phase failed:\n{done.stderr[-2000:]}", file=sys.stderr)

    # ------------------------------------------------------------------ report
    def find(kind: str, mode: str, compress: bool, repetition: int = 0) -> dict[str, Any]:
        for row in rows:
            if (row["client"], row["mode"], row["compress"], row.get("repetition", 0)) == (
                kind,
                mode,
                compress,
                repetition,
            ):
                return row
        return {}

    print()
    print(
        f"{'client':10} {'mode':9} {'zlib':4} {'recv':>7} {'events/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU s':>6} {'µs/ev':>6} {'loop':>5} {'peer CPU':>8} {'peak RSS MB':>11}"
    )
    for row in rows:
        print(
            f"{row['client']:10} {row['mode']:9} {'on' if row['compress'] else 'off':4} {row['received']:>7} "
            f"{fmt(row.get('events_per_s'), 0):>10} {fmt(row.get('lat_p50_ms'), 2):>7} "
            f"{fmt(row.get('lat_p99_ms'), 2):>7} {fmt(row.get('cpu_s'), 2):>6} "
            f"{fmt(row.get('cpu_us_per_event'), 1):>6} {fmt(row.get('loop_us_per_event'), 1):>5} "
            f"{fmt(row.get('peer_cpu_s'), 2):>8} "
            f"{fmt(row.get('peak_rss_mb')):>11}"
        )
    for row in rows:
        expected = args.events if row["mode"] in ("saturate", "scale") else paced_events
        problems = []
        if row["received"] != expected:
            problems.append(f"received {row['received']} of {expected}")
        if row.get("out_of_order"):
            problems.append(f"{row['out_of_order']} events lost, repeated or out of order")
        if row.get("timed_out"):
            problems.append("timed out")
        if problems:
            print(f"WARNING: {row['client']} {row['mode']}: {'; '.join(problems)}", file=sys.stderr)
    if args.repeat > 1 and "saturate" not in skip:
        print(f"\nsaturation, {args.repeat} interleaved runs each: median (min-max)")
        print(f"{'client':10} {'zlib':4} {'events/s':>24} {'CPU s':>6} {'CPU µs/event':>20} {'peak RSS MB':>11}")
        for compress in modes:
            for kind in clients:
                runs = [r for r in rows if (r["client"], r["mode"], r["compress"]) == (kind, "saturate", compress)]
                rates = [r["events_per_s"] for r in runs if r.get("events_per_s")]
                if not rates:
                    continue
                spread = f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
                per_event = [r["cpu_us_per_event"] for r in runs if r.get("cpu_us_per_event")]
                cpu_spread = "-"
                if per_event:
                    cpu_spread = f"{statistics.median(per_event):.1f} ({min(per_event):.1f}-{max(per_event):.1f})"
                loop = [r["loop_us_per_event"] for r in runs if r.get("loop_us_per_event")]
                written = [r["disk_frames"] / r["events"] for r in runs if r.get("disk_frames", math.nan) >= 0]
                commits = [r["disk_commits"] for r in runs if r.get("disk_commits", math.nan) >= 0]
                print(
                    f"{kind:10} {'on' if compress else 'off':4} {spread:>24} "
                    f"{fmt(statistics.median(r['cpu_s'] for r in runs), 2):>6} {cpu_spread:>20} "
                    f"{fmt(statistics.median(r['peak_rss_mb'] for r in runs)):>11}"
                    + (
                        f"  outbox frames written per event {statistics.median(written):.2f} "
                        f"({min(written):.2f}-{max(written):.2f}), {statistics.median(commits):.0f} commits"
                        if written and commits
                        else ""
                    )
                    + (
                        f"; event loop {statistics.median(loop):.1f} ({min(loop):.1f}-{max(loop):.1f}) µs/event"
                        if loop
                        else ""
                    )
                )
    ratios: dict[str, Any] = {}
    ratio_ranges: dict[str, Any] = {}
    for compress in modes:
        for subject, ref in (("bridge", "discordpy"), ("bridge", "bare"), ("bridge-ws", "bridge")):
            paired = []
            for repetition in range(args.repeat):
                bridge = find(subject, "saturate", compress, repetition).get("events_per_s")
                other = find(ref, "saturate", compress, repetition).get("events_per_s")
                if bridge and other:
                    paired.append(bridge / other)
            if paired:
                name = f"{subject}/{ref} zlib={'on' if compress else 'off'}"
                ratios[name] = statistics.median(paired)
                ratio_ranges[name] = [min(paired), max(paired)]
    if ratios:
        print()
        for name, value in ratios.items():
            low, high = ratio_ranges[name]
            spread = f"  (median of {args.repeat} paired runs, {low:.2f}-{high:.2f})" if args.repeat > 1 else ""
            print(f"{name:28} {value:.2f}x{spread}")
    if "backlog" in extras:
        b = extras["backlog"]
        print(
            f"\nbacklog: {args.backlog} events waited for a framework that was down: bridge peak RSS "
            f"{fmt(b.get('backlog_peak_rss_mb'))} MB while waiting, {fmt(b.get('peak_rss_mb'))} MB overall; "
            f"replayed {b.get('received', 0)} at {fmt(b.get('events_per_s'), 0)} ev/s once reconnected "
            f"({fmt(b.get('reconnect_wait_s'))} s of reconnect backoff after it came back)"
        )
    if extras.get("commands"):
        c = extras["commands"]
        print(
            f"commands: {c['n']} sendGroupMessage round trips: bridge p50 {c['bridge_rtt_p50_ms']:.2f} ms "
            f"(p99 {c['bridge_rtt_p99_ms']:.2f}), fake REST alone p50 "
            f"{c['direct_rest_other_process_rtt_p50_ms']:.2f} ms from another process "
            f"({c['direct_rest_rtt_p50_ms']:.2f} ms from the REST server's own process), "
            f"added p50 {c['added_p50_ms']:.2f} ms ({c['added_over_in_process_p50_ms']:.2f} ms over the in-process "
            f"figure), failures {c['failures']}"
        )
    if "servers" in extras:
        v = extras["servers"]
        h, f = v["http_polling"], v["fanout"]
        print(
            f"http adapter: fetchMessage(count=100) polling received {h.get('received', 0)} events at "
            f"{fmt(h.get('events_per_s'), 0)} ev/s (bridge CPU {fmt(h.get('cpu_s'), 2)} s, peak RSS "
            f"{fmt(h.get('peak_rss_mb'))} MB)"
        )
        delivered = f.get("received", 0) * f.get("frameworks", 0)
        print(
            f"ws adapter: {f.get('frameworks')} frameworks connected, {f.get('received', 0)} events each "
            f"({delivered} deliveries at {fmt((f.get('events_per_s') or 0) * f.get('frameworks', 0), 0)}/s): bridge "
            f"peak RSS {fmt(f.get('peak_rss_mb'))} MB"
        )
        for name in ("commands_ws", "commands_http"):
            c = v.get(name) or {}
            if c:
                print(
                    f"commands over {name.removeprefix('commands_')}: {c['n']} sendGroupMessage round trips p50 "
                    f"{c['bridge_rtt_p50_ms']:.2f} ms (p99 {c['bridge_rtt_p99_ms']:.2f}), failures {c['failures']}"
                )
    if "webhooks" in extras:
        w = extras["webhooks"]
        print(
            f"webhooks: {fmt(w['webhook_deliveries_per_s_batching_off'], 0)} deliveries/s to a local receiver with "
            f"batching off, {fmt(w['webhook_deliveries_per_s_batching_on'], 0)} events/s with batches of 100; robots: "
            f"{fmt(w['robot_posts_accepted_per_s'], 0)} posts accepted/s, post → fake Discord p50 "
            f"{fmt(w['robot_latency_p50_ms'], 2)} ms, p99 {fmt(w['robot_latency_p99_ms'], 2)} ms"
        )
    scale_rows = [r for r in rows if r["mode"] == "scale"]
    if scale_rows:
        print("\nscale grid: 20,000-event stream over G guilds x M members after loading them; medians of runs")
        print(
            f"{'G x M':>12} {'zlib':4} {'bridge ev/s':>11} {'dpy ev/s':>9} {'ratio':>6} "
            f"{'RSS MB bridge/dpy':>18} {'load ms bridge/dpy':>18} {'at the peer':>16} {'CPU us/ev bridge/dpy':>21} "
            f"{'bridge loop us/ev':>17}"
        )
        scale_report: list[dict[str, Any]] = []
        for guilds, members in scale_points:
            for compress in modes:

                def median_of(kind: str, key: str, g: int = guilds, m: int = members, z: bool = compress) -> float:
                    values = [
                        r[key]
                        for r in scale_rows
                        if (r["client"], r["guilds"], r["members"], r["compress"]) == (kind, g, m, z) and key in r
                    ]
                    return statistics.median(values) if values else float("nan")

                point = {
                    "guilds": guilds,
                    "members": members,
                    "zlib": compress,
                    **{
                        f"{kind}_{key}": median_of(kind, key)
                        for kind in ("bridge", "discordpy")
                        for key in ("events_per_s", "rss_mb", "load_s", "load_at_peer_s", "cpu_us_per_event")
                    },
                    "bridge_loop_us_per_event": median_of("bridge", "loop_us_per_event"),
                }
                paired = []
                for repetition in range(args.scale_repeat):
                    pair = {
                        r["client"]: r.get("events_per_s")
                        for r in scale_rows
                        if (r["guilds"], r["members"], r["compress"], r["repetition"])
                        == (guilds, members, compress, repetition)
                    }
                    bridge, discordpy = pair.get("bridge"), pair.get("discordpy")
                    if bridge and discordpy:
                        paired.append(bridge / discordpy)
                point["ratio"] = statistics.median(paired) if paired else float("nan")
                scale_report.append(point)

                def load_ms(key: str, p: dict[str, Any] = point) -> str:
                    return fmt(p[f"bridge_{key}"] * 1e3, 1) + " / " + fmt(p[f"discordpy_{key}"] * 1e3, 1)

                print(
                    f"{f'{guilds:,} x {members:,}':>12} {'on' if compress else 'off':4} "
                    f"{fmt(point['bridge_events_per_s'], 0):>11} {fmt(point['discordpy_events_per_s'], 0):>9} "
                    f"{fmt(point['ratio'], 2):>6} "
                    f"{fmt(point['bridge_rss_mb'], 0) + ' / ' + fmt(point['discordpy_rss_mb'], 0):>18} "
                    f"{load_ms('load_s'):>18} {load_ms('load_at_peer_s'):>16} "
                    f"{fmt(point['bridge_cpu_us_per_event']) + ' / ' + fmt(point['discordpy_cpu_us_per_event']):>21} "
                    f"{fmt(point['bridge_loop_us_per_event'], 1):>17}"
                )
        flatness: list[dict[str, Any]] = []
        for compress in modes:
            base = [p for p in scale_report if (p["guilds"], p["members"], p["zlib"]) == (1, 100, compress)]
            wide = [p for p in scale_report if (p["guilds"], p["members"], p["zlib"]) == (1000, 100, compress)]
            if not (base and wide):
                continue
            entry: dict[str, Any] = {"zlib": compress}
            parts = []
            for kind in ("bridge", "discordpy"):
                # each repetition runs every point once, one after the other: a 1,000-guild run over the 1-guild
                # run of the same repetition is steadier against the machine's drift than the medians' ratio
                paired = []
                for repetition in range(args.scale_repeat):

                    def rate(g: int, r: int = repetition, k: str = kind, z: bool = compress) -> float | None:
                        found = [
                            row.get("events_per_s")
                            for row in scale_rows
                            if (row["client"], row["guilds"], row["members"], row["compress"], row["repetition"])
                            == (k, g, 100, z, r)
                        ]
                        return found[0] if found and found[0] else None

                    one, thousand = rate(1), rate(1000)
                    if one and thousand:
                        paired.append(thousand / one)
                of_medians = wide[0][f"{kind}_events_per_s"] / base[0][f"{kind}_events_per_s"]
                entry[kind] = {"of_medians": of_medians, "paired": paired}
                spread = (
                    f", paired runs {statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})"
                    if paired
                    else ""
                )
                parts.append(f"{'bridge' if kind == 'bridge' else 'discord.py'} {of_medians:.2f}{spread}")
            flatness.append(entry)
            print(f"1,000-guild / 1-guild rate, zlib {'on' if compress else 'off'}: " + "; ".join(parts))
        extras["scale"] = scale_report
        extras["scale_flatness"] = flatness
    if extras.get("members"):
        m = extras["members"]
        print(
            f"\nlarge guilds: {m['guilds']} x {m['members']:,} members, {m['listed_in_guild_create']} listed by "
            f"GUILD_CREATE: memberList of every guild at once answered in {m['first_s']:.2f} s "
            f"(complete: {m['complete']}, {m['member_requests']} op 8 requests), again in {m['again_s']:.2f} s"
        )
    profiles = [(row["mode"], row.pop("profile")) for row in rows if "profile" in row]
    for key in ("backlog", "commands_profile", "members_profile"):
        if "profile" in extras.get(key, {}):
            profiles.append((extras[key]["mode"], extras[key].pop("profile")))
    extras.pop("commands_profile", None)
    extras.pop("members_profile", None)
    report = {
        "rows": rows,
        "ratios": ratios,
        "ratio_ranges": ratio_ranges,
        "repeat": args.repeat,
        **extras,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    for mode, text in profiles:
        print(f"\nbridge profile (pyinstrument, {mode} run):\n" + text[:6000])
    print("\n" + json.dumps({k: v for k, v in report.items() if k != "rows"}, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_peer":
        run_peer(json.loads(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_rest_probe":
        run_rest_probe(json.loads(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_bare":
        run_bare(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
