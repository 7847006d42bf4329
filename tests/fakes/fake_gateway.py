"""A fake Discord gateway on 127.0.0.1 that behaves like the real one (docs/discord.md §2–§4).

* HELLO with a configurable interval; heartbeat ACKs (``ack_heartbeats`` switches them off);
* IDENTIFY: validates the token (4004), the shard (4010), privileged intents (4014 unless allowed),
  ``max_concurrency`` (two identifies of a bucket within 5 s → op 9 d=false) and the identify budget of
  ``session_start_limit`` (identifying with none left closes 4004, like the token reset Discord does);
  answers READY with ``resume_gateway_url`` pointing back here (path ``/resume``), then GUILD_CREATE per guild
  (``ready_gate``, when set, holds READY until the event is set);
* sequenced dispatches with a per-session replay buffer: RESUME replays every dispatch after the client's
  ``seq``, then RESUMED; an unknown/expired session gets op 9 d=false;
* op 7, op 9 true/false, arbitrary close codes, dropping the TCP connection without a close frame;
* op 8 for a whole guild answered with GUILD_MEMBERS_CHUNKs of ``guild_members`` (one request per guild per 30 s,
  else RATE_LIMITED);
* zlib-stream when the client asks for it (``compress=zlib-stream``), optionally splitting each payload over
  ``split_frames`` websocket messages;
* enforces 120 client sends per 60 s per connection (close 4008);
* records every client payload with ``trio.current_time()``.

Start it with ``url = await nursery.start(fake.serve)``; the bulk path (:meth:`FakeGateway.dispatch_many`)
is cheap enough for the benchmark.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
import trio_websocket

#: client sends allowed per connection per 60 s before 4008 (docs/discord.md §3)
SEND_LIMIT = 120
SEND_WINDOW = 60.0
#: identify concurrency window (docs/discord.md §3)
IDENTIFY_WINDOW = 5.0
#: whole-guild member requests Discord answers per guild (docs/discord.md §3)
MEMBER_REQUEST_INTERVAL = 30.0
#: privileged intent bits (docs/discord.md §5)
PRIVILEGED_INTENT_BITS = (1 << 1) | (1 << 8) | (1 << 15)
#: websocket message size the fake accepts from clients (Discord: 4096-byte payloads; generous here)
MAX_CLIENT_MESSAGE = 1 << 20


@attrs.frozen
class Recorded:
    """One client payload (or connection) with the fake's clock."""

    time: float
    shard_id: int | None
    payload: dict[str, Any]


@attrs.frozen
class ConnectionRecord:
    time: float
    path: str
    query: dict[str, str]
    headers: dict[str, str] = attrs.field(factory=dict)  #: the upgrade request's, names lower-cased


@attrs.define(eq=False)
class _Session:
    session_id: str
    shard_id: int
    seq: int = 0
    buffer: deque[tuple[int, str]] = attrs.field(factory=deque)
    conn: _Connection | None = None


@attrs.frozen
class _RawText:
    text: str


@attrs.define(eq=False)
class _Connection:
    ws: trio_websocket.WebSocketConnection
    stream: trio.SocketStream
    compress: bool
    split_frames: int
    index: int
    shard_id: int | None = None
    session: _Session | None = None
    sent_times: deque[float] = attrs.field(factory=deque)
    _outgoing: deque[str | bytes | _RawText] = attrs.field(factory=deque)  #: bytes/_RawText go out as-is
    _wakeup: trio.Event = attrs.field(factory=trio.Event)
    _compressor: Any = attrs.field(factory=zlib.compressobj)
    frames_sent: int = 0

    def queue(self, text: str) -> None:
        self._outgoing.append(text)
        self._wakeup.set()

    def queue_raw_text(self, text: str) -> None:
        self._outgoing.append(_RawText(text))
        self._wakeup.set()

    def queue_raw(self, data: bytes) -> None:
        self._outgoing.append(data)
        self._wakeup.set()

    def queue_many(self, texts: Iterable[str]) -> None:
        self._outgoing.extend(texts)
        self._wakeup.set()

    async def writer(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                while self._outgoing:
                    text = self._outgoing.popleft()
                    if isinstance(text, bytes | _RawText):
                        await self.ws.send_message(text.text if isinstance(text, _RawText) else text)
                        self.frames_sent += 1
                        continue
                    if not self.compress:
                        await self.ws.send_message(text)
                        self.frames_sent += 1
                        continue
                    data = self._compressor.compress(text.encode()) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
                    parts = max(1, min(self.split_frames, len(data)))
                    step = -(-len(data) // parts)
                    for start in range(0, len(data), step):
                        await self.ws.send_message(data[start : start + step])
                        self.frames_sent += 1
        except trio_websocket.ConnectionClosed:
            return


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


@attrs.define(eq=False)
class FakeGateway:
    """See the module docstring. Attributes may be changed while it runs; they apply to what comes next."""

    token: str
    heartbeat_interval: float = 41.25  #: seconds (sent as milliseconds)
    ack_heartbeats: bool = True
    split_frames: int = 1  #: websocket messages per zlib-compressed payload
    shards: int = 1  #: recommended shard count in gateway_bot_json()
    max_concurrency: int = 1
    identify_total: int = 1000
    identify_remaining: int = 1000
    identify_reset_after: float = 24 * 3600.0  #: seconds, from when serve() started
    allowed_intents: int = (1 << 26) - 1  #: privileged bits missing here → 4014
    enforce_send_limit: bool = True
    replay_buffer_size: int = 20_000  #: dispatches kept per session for RESUME (Discord keeps a few minutes)
    #: a server that never resumes: every RESUME is answered op 9 d=false (some Discord-compatible servers)
    refuse_resume: bool = False
    #: answer IDENTIFY by closing with this code (and ``close_on_identify_reason``) instead of READY
    close_on_identify: int | None = None
    close_on_identify_reason: str | None = None
    #: two identifies of one concurrency bucket within this many seconds: the second gets op 9 (Discord: 5 s)
    identify_window: float = IDENTIFY_WINDOW
    bot_user: dict[str, Any] = attrs.field(
        factory=lambda: {"id": "1000", "username": "relay-bot", "global_name": None, "bot": True}
    )
    ready_guilds: list[dict[str, Any]] = attrs.field(factory=list)  #: full guild objects; GUILD_CREATE after READY
    #: when set, an Identify is answered (READY) only once this event is set: a client held before READY
    ready_gate: trio.Event | None = None
    #: ids of ready_guilds READY lists but whose GUILD_CREATE is not sent (the test dispatches it, or never)
    withheld_guilds: set[int] = attrs.field(factory=set)
    #: guild id → every member object: what op 8 (query "", limit 0) answers, in GUILD_MEMBERS_CHUNKs; an op 8 for
    #: a guild not in it is recorded and left unanswered
    guild_members: Mapping[int, list[dict[str, Any]]] = attrs.field(factory=dict)
    member_chunk_size: int = 1000  #: docs/discord.md §6.4
    member_requests: list[Recorded] = attrs.field(factory=list)  #: every op 8

    url: str = ""
    identifies: list[Recorded] = attrs.field(factory=list)
    resumes: list[Recorded] = attrs.field(factory=list)
    heartbeats: list[Recorded] = attrs.field(factory=list)
    sends: list[Recorded] = attrs.field(factory=list)  #: every client payload
    connections: list[ConnectionRecord] = attrs.field(factory=list)
    client_closes: list[tuple[float, int | None]] = attrs.field(factory=list)
    server_closes: list[tuple[float, int]] = attrs.field(factory=list)
    invalid_sessions: list[tuple[float, bool]] = attrs.field(factory=list)

    _sessions: dict[str, _Session] = attrs.field(factory=dict)
    _current: dict[int, _Session] = attrs.field(factory=dict)  #: shard id → its latest session
    _pending: dict[int, list[tuple[str, dict[str, Any]]]] = attrs.field(factory=dict)  #: before any session
    _live: list[_Connection] = attrs.field(factory=list)
    _last_identify: dict[int, float] = attrs.field(factory=dict)
    _last_member_request: dict[int, float] = attrs.field(factory=dict)  #: guild id → when (1 per 30 s, §3)
    _budget_reset_at: float = 0.0
    _session_counter: int = 0
    _conn_counter: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    # ----------------------------------------------------------------- setup

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (port 0); ``task_status.started(url)``."""
        self._budget_reset_at = trio.current_time() + self.identify_reset_after
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, self._handle_tcp, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}"
            task_status.started(self.url)

    def gateway_bot_json(self) -> dict[str, Any]:
        """What ``GET /gateway/bot`` would answer."""
        reset_after_ms = (
            int(max(0.0, self._budget_reset_at - _now_or_zero()) * 1000)
            if self._budget_reset_at
            else int(self.identify_reset_after * 1000)
        )
        return {
            "url": self.url,
            "shards": self.shards,
            "session_start_limit": {
                "total": self.identify_total,
                "remaining": self.identify_remaining,
                "reset_after": reset_after_ms,
                "max_concurrency": self.max_concurrency,
            },
        }

    # ----------------------------------------------------------------- driving

    async def dispatch(self, name: str, data: Mapping[str, Any], *, shard_id: int = 0) -> int | None:
        """Sequence and send one dispatch (buffered for resume). Returns its seq (None: no session yet)."""
        seqs = self._dispatch(name, [data], shard_id)
        await trio.lowlevel.checkpoint()
        return seqs[0] if seqs else None

    async def dispatch_many(self, name: str, datas: Iterable[Mapping[str, Any]], *, shard_id: int = 0) -> list[int]:
        """Sequence and send many dispatches at once (the benchmark's bulk path)."""
        seqs = self._dispatch(name, list(datas), shard_id)
        await trio.lowlevel.checkpoint()
        return seqs

    async def send_reconnect(self, *, shard_id: int = 0) -> None:
        """op 7 on the shard's live connection."""
        conn = self._conn_for(shard_id)
        conn.queue(_dumps({"op": 7, "d": None}))
        await trio.lowlevel.checkpoint()

    async def invalidate_session(self, resumable: bool, *, shard_id: int = 0) -> None:
        """op 9; with ``resumable=False`` the session is forgotten (a resume then fails too)."""
        conn = self._conn_for(shard_id)
        if not resumable:
            self._forget_session(shard_id)
        self.invalid_sessions.append((trio.current_time(), resumable))
        conn.queue(_dumps({"op": 9, "d": resumable}))
        await trio.lowlevel.checkpoint()

    async def close_with(self, code: int, *, shard_id: int = 0, reason: str | None = None) -> None:
        """Close the shard's live connection with ``code`` and ``reason`` (4007/4009 also end the session)."""
        conn = self._conn_for(shard_id)
        if code in (4007, 4009):
            self._forget_session(shard_id)
        await self._close(conn, code, reason)

    async def drop_connection(self, *, shard_id: int = 0) -> None:
        """Drop the TCP connection without a close frame (the session stays resumable)."""
        conn = self._conn_for(shard_id)
        self._detach(conn)
        await conn.stream.aclose()

    async def send_raw(self, message: str | bytes, *, shard_id: int = 0) -> None:
        """Send a websocket message as-is (text or binary, never compressed): for bad-input tests."""
        conn = self._conn_for(shard_id)
        if isinstance(message, str):
            conn.queue_raw_text(message)
        else:
            conn.queue_raw(message)
        await trio.lowlevel.checkpoint()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever the fake records something."""
        while not predicate():
            await self._changed.wait()

    def live_shards(self) -> set[int]:
        return {c.shard_id for c in self._live if c.shard_id is not None and c.session is not None}

    def frames_sent(self) -> int:
        return sum(c.frames_sent for c in self._live)

    # ----------------------------------------------------------------- internals

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _dispatch(self, name: str, datas: Sequence[Mapping[str, Any]], shard_id: int) -> list[int]:
        session = self._current.get(shard_id)
        if session is None:
            self._pending.setdefault(shard_id, []).extend((name, dict(d)) for d in datas)
            return []
        texts = []
        seqs = []
        for data in datas:
            session.seq += 1
            text = _dumps({"op": 0, "t": name, "s": session.seq, "d": data})
            session.buffer.append((session.seq, text))
            texts.append(text)
            seqs.append(session.seq)
        while len(session.buffer) > self.replay_buffer_size:
            session.buffer.popleft()
        if session.conn is not None:
            session.conn.queue_many(texts)
        return seqs

    def _conn_for(self, shard_id: int) -> _Connection:
        for conn in reversed(self._live):
            if conn.shard_id == shard_id:
                return conn
        raise LookupError(f"fake gateway: shard {shard_id} has no live connection")

    def _forget_session(self, shard_id: int) -> None:
        session = self._current.pop(shard_id, None)
        if session is not None:
            self._sessions.pop(session.session_id, None)
            session.conn = None

    def _detach(self, conn: _Connection) -> None:
        if conn in self._live:
            self._live.remove(conn)
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        self._notify()

    async def _close(self, conn: _Connection, code: int, reason: str | None = None) -> None:
        self.server_closes.append((trio.current_time(), code))
        self._detach(conn)
        with trio.move_on_after(5):
            await conn.ws.aclose(code, reason)

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        async with trio.open_nursery() as nursery:
            try:
                request = await trio_websocket.wrap_server_stream(nursery, stream, max_message_size=MAX_CLIENT_MESSAGE)
                parts = urlsplit(request.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                ws = await request.accept()
            except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, trio.BrokenResourceError):
                nursery.cancel_scope.cancel()
                return
            self._conn_counter += 1
            conn = _Connection(
                ws=ws,
                stream=stream,
                compress=query.get("compress") == "zlib-stream",
                split_frames=self.split_frames,
                index=self._conn_counter,
            )
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
            self.connections.append(ConnectionRecord(trio.current_time(), parts.path, query, headers))
            self._live.append(conn)
            self._notify()
            nursery.start_soon(conn.writer)
            if query.get("v") != "10" or query.get("encoding") != "json":
                await self._close(conn, 4012)
            else:
                conn.queue(_dumps({"op": 10, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}}))
                await self._read_client(conn)
            self._detach(conn)
            nursery.cancel_scope.cancel()

    async def _read_client(self, conn: _Connection) -> None:
        while True:
            try:
                message = await conn.ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                if conn in self._live:  # the client closed (not us)
                    self.client_closes.append((trio.current_time(), exc.reason.code if exc.reason else None))
                return
            now = trio.current_time()
            try:
                payload = json.loads(message)
                op = payload["op"]
            except (ValueError, TypeError, KeyError):
                await self._close(conn, 4002)
                return
            self.sends.append(Recorded(now, conn.shard_id, payload))
            self._notify()
            conn.sent_times.append(now)
            while conn.sent_times and conn.sent_times[0] <= now - SEND_WINDOW:
                conn.sent_times.popleft()
            if self.enforce_send_limit and len(conn.sent_times) > SEND_LIMIT:
                await self._close(conn, 4008)
                return
            if op == 1:
                self.heartbeats.append(Recorded(now, conn.shard_id, payload))
                if self.ack_heartbeats:
                    conn.queue(_dumps({"op": 11}))
            elif op == 2:
                if not await self._identify(conn, payload.get("d") or {}, now):
                    return
            elif op == 6 and not await self._resume(conn, payload.get("d") or {}, now):
                return
            elif op == 8:
                self._answer_member_request(conn, payload.get("d") or {}, now)

    def _answer_member_request(self, conn: _Connection, d: dict[str, Any], now: float) -> None:
        """op 8 for a whole guild → GUILD_MEMBERS_CHUNKs; a second one within 30 s → RATE_LIMITED
        (docs/discord.md §3)."""
        self.member_requests.append(Recorded(now, conn.shard_id, {"op": 8, "d": d}))
        guild_id = int(d.get("guild_id") or 0)
        nonce = d.get("nonce")
        last = self._last_member_request.get(guild_id)
        if last is not None and now - last < MEMBER_REQUEST_INTERVAL:
            meta = {"guild_id": str(guild_id), "nonce": nonce}
            limited = {"opcode": 8, "retry_after": MEMBER_REQUEST_INTERVAL - (now - last), "meta": meta}
            self._dispatch("RATE_LIMITED", [limited], conn.shard_id)
            return
        if guild_id not in self.guild_members:
            return
        self._last_member_request[guild_id] = now
        members = self.guild_members[guild_id]
        size = self.member_chunk_size
        count = max(1, -(-len(members) // size))
        chunks = [
            {
                "guild_id": str(guild_id),
                "members": members[index * size : (index + 1) * size],
                "chunk_index": index,
                "chunk_count": count,
                "nonce": nonce,
            }
            for index in range(count)
        ]
        self._dispatch("GUILD_MEMBERS_CHUNK", chunks, conn.shard_id)

    async def _identify(self, conn: _Connection, d: dict[str, Any], now: float) -> bool:
        shard = d.get("shard") or [0, 1]
        shard_id, shard_count = int(shard[0]), int(shard[1])
        conn.shard_id = shard_id
        self.identifies.append(Recorded(now, shard_id, {"op": 2, "d": d}))
        self._notify()
        if d.get("token") != self.token:
            await self._close(conn, 4004)
            return False
        if self.close_on_identify is not None:
            await self._close(conn, self.close_on_identify, self.close_on_identify_reason)
            return False
        if now >= self._budget_reset_at:
            self.identify_remaining = self.identify_total
            self._budget_reset_at = now + 24 * 3600.0
        if self.identify_remaining <= 0:
            await self._close(conn, 4004)  # Discord resets the token of bots that exhaust the budget
            return False
        self.identify_remaining -= 1
        if not 0 <= shard_id < shard_count:
            await self._close(conn, 4010)
            return False
        if int(d.get("intents", 0)) & PRIVILEGED_INTENT_BITS & ~self.allowed_intents:
            await self._close(conn, 4014)
            return False
        bucket = shard_id % self.max_concurrency
        last = self._last_identify.get(bucket)
        self._last_identify[bucket] = now
        if last is not None and now - last < self.identify_window:
            self.invalid_sessions.append((now, False))
            conn.queue(_dumps({"op": 9, "d": False}))
            return True
        if self.ready_gate is not None:
            await self.ready_gate.wait()
        self._forget_session(shard_id)
        self._session_counter += 1
        session = _Session(session_id=f"session-{self._session_counter}", shard_id=shard_id)
        self._sessions[session.session_id] = session
        self._current[shard_id] = session
        session.conn = conn
        conn.session = session
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": g["id"], "unavailable": True} for g in self.ready_guilds],
            "session_id": session.session_id,
            "resume_gateway_url": f"{self.url}/resume",
            "shard": [shard_id, shard_count],
            "application": {"id": self.bot_user["id"], "flags": 0},
        }
        self._dispatch("READY", [ready], shard_id)
        created = [g for g in self.ready_guilds if int(g["id"]) not in self.withheld_guilds]
        if created:
            self._dispatch("GUILD_CREATE", created, shard_id)
        for name, data in self._pending.pop(shard_id, []):
            self._dispatch(name, [data], shard_id)
        self._notify()
        return True

    async def _resume(self, conn: _Connection, d: dict[str, Any], now: float) -> bool:
        self.resumes.append(Recorded(now, None, {"op": 6, "d": d}))
        self._notify()
        if d.get("token") != self.token:
            await self._close(conn, 4004)
            return False
        session = self._sessions.get(str(d.get("session_id")))
        seq = d.get("seq") or 0
        if self.refuse_resume or session is None or (session.buffer and session.buffer[0][0] > seq + 1):
            self.invalid_sessions.append((now, False))
            conn.queue(_dumps({"op": 9, "d": False}))
            return True
        if seq > session.seq:
            await self._close(conn, 4007)
            return False
        conn.shard_id = session.shard_id
        # replay and attach without awaiting in between, so new dispatches queue after the replay
        conn.queue_many(text for s, text in session.buffer if s > seq)
        if session.conn is not None and session.conn is not conn:
            session.conn.session = None
        session.conn = conn
        conn.session = session
        session.seq += 1
        text = _dumps({"op": 0, "t": "RESUMED", "s": session.seq, "d": None})
        session.buffer.append((session.seq, text))
        conn.queue(text)
        self._notify()
        return True


def _now_or_zero() -> float:
    try:
        return trio.current_time()
    except RuntimeError:
        return 0.0
