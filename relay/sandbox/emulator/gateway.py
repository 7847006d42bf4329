"""The emulated Discord gateway's protocol (docs/discord.md §2–§4), without I/O: sessions and connections.

:class:`Gateway` holds every session (sequence numbers, a bounded replay buffer per session, intents, shard)
and every live :class:`Connection`. The I/O shell feeds it what happens — a connection opened
(:meth:`Gateway.connect`), a client message (:meth:`Gateway.receive`), the connection lost
(:meth:`Gateway.connection_lost`) — each with ``now``, and sends what :meth:`Connection.take` returns:
text or binary websocket messages, a close frame with a code, or an abort (TCP dropped, no close frame).

What it does, like Discord:

* HELLO on every connection; ``v=10&encoding=json`` or close 4012; heartbeats ACKed (op 11) unless
  ``ack_heartbeats`` is off;
* IDENTIFY: token (4004), shard (4010), intents (4013 unknown bits, 4014 privileged bits the "portal" has not
  enabled: ``allowed_intents``), ``max_concurrency`` (two identifies of one bucket within ``identify_window``,
  5 s, → op 9 false), the ``session_start_limit`` budget (none left → 4004, as Discord resets the token), a
  second IDENTIFY (4005); READY with ``resume_gateway_url`` (path ``/resume``) and the application's id and
  flags, then GUILD_CREATE per guild of the shard (a guild over the Identify's ``large_threshold`` lists only
  the bot among its members, docs/discord.md §5); ``unavailable_guilds`` stay unavailable (READY lists them, no
  GUILD_CREATE follows: an outage) until :meth:`Gateway.guild_available`; ``hold_ready`` keeps identified
  clients waiting for READY until :meth:`Gateway.release_ready` (a slow start-up);
* dispatches sequenced per session and kept for replay; RESUME replays everything after the client's ``seq``
  then RESUMED; an unknown or expired session gets op 9 false; a ``seq`` from the future closes 4007;
* op 8 (request guild members) answered with GUILD_MEMBERS_CHUNK (:mod:`.member_chunks`), a whole-guild request
  more often than once per guild per 30 s with RATE_LIMITED (docs/discord.md §3); op 3/4 accepted; other opcodes 4001;
  anything but op 1/2/6 before IDENTIFY 4003; undecodable or >4096-byte payloads 4002; more than 120 client
  payloads per 60 s per connection 4008; a client close with 1000/1001 ends the session (docs/discord.md §2.12);
* events from the world (:meth:`Gateway.publish`) go to every session of the right shard whose intents want
  them (:mod:`.intents`), with content gated without MESSAGE_CONTENT; raw :meth:`Gateway.dispatch` is for
  tests and goes to the shard's session as given (queued until one exists);
* zlib-stream when asked (``compress=zlib-stream``), each payload optionally split over ``split_frames``
  websocket messages; op 7, op 9, any close code (with a reason), dropped connections and raw messages on
  request.

Servers that deviate from Discord, for the bridge's tests of them: ``refuse_resume`` (every RESUME answered op 9
false, as a server that never resumes) and ``close_on_identify`` (an IDENTIFY answered by a close with that code
and ``close_on_identify_reason``).

Every client payload, identify, resume, heartbeat, op 8, connection (with its upgrade headers and peer) and
close is recorded with ``now``.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from relay import fastjson
from relay.sandbox.emulator import intents as it
from relay.sandbox.emulator import member_chunks, payloads
from relay.sandbox.emulator.world import Dispatch

JSON = dict[str, Any]

#: client sends allowed per connection per 60 s before 4008 (docs/discord.md §3)
SEND_LIMIT: Final = 120
SEND_WINDOW: Final = 60.0
#: identify concurrency window (docs/discord.md §3)
IDENTIFY_WINDOW: Final = 5.0
#: largest client payload Discord accepts (docs/discord.md §2.3); bigger closes 4002
MAX_CLIENT_PAYLOAD: Final = 4096
#: opcodes a client may send (docs/discord.md §2.3)
CLIENT_OPCODES: Final = frozenset({1, 2, 3, 4, 6, 8, 31, 43})
#: Identify's large_threshold range (docs/discord.md §2.5); the default is payloads.LARGE_THRESHOLD
LARGE_THRESHOLD_RANGE: Final = (50, 250)


@attrs.frozen
class SendText:
    text: str


@attrs.frozen
class SendBinary:
    data: bytes = attrs.field(repr=False)


@attrs.frozen
class Close:
    """Send a close frame with ``code`` (and ``reason``) and end the connection."""

    code: int
    reason: str = ""


@attrs.frozen
class Abort:
    """Drop the TCP connection without a close frame."""


Output = SendText | SendBinary | Close | Abort


@attrs.frozen
class Recorded:
    """One client payload (or identify/resume/heartbeat) with the gateway's clock."""

    time: float
    shard_id: int | None
    payload: JSON


@attrs.frozen
class ConnectionRecord:
    time: float
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = attrs.field(factory=dict)  #: the upgrade request's, names lower-cased
    peer: str | None = None  #: "host:port" of the client


@attrs.define(eq=False)
class Session:
    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    seq: int = 0
    buffer: deque[tuple[int, str]] = attrs.field(factory=deque)  #: (seq, payload text) for RESUME
    conn: Connection | None = None


@attrs.define(eq=False)
class Connection:
    """One websocket connection's protocol state and its queue of outputs for the shell."""

    index: int
    path: str
    query: Mapping[str, str]
    compress: bool
    split_frames: int
    max_pending: int
    shard_id: int | None = None
    session: Session | None = None
    identified: bool = False
    live: bool = True
    frames_sent: int = 0
    #: called whenever outputs were queued (the shell wakes its writer)
    wake: Callable[[], None] = attrs.field(default=lambda: None)
    sent_times: deque[float] = attrs.field(factory=deque)
    _outputs: deque[Output] = attrs.field(factory=deque)
    _compressor: Any = attrs.field(factory=zlib.compressobj)

    def take(self) -> list[Output]:
        """Everything queued since the last call, in order (a Close or Abort is always last)."""
        outputs = list(self._outputs)
        self._outputs.clear()
        self.frames_sent += sum(1 for o in outputs if isinstance(o, SendText | SendBinary))
        return outputs

    def pending(self) -> int:
        return len(self._outputs)

    def queue_payload(self, text: str) -> None:
        """A gateway payload: as text, or zlib-stream compressed over ``split_frames`` binary messages."""
        self.queue_payloads((text,))

    def queue_payloads(self, texts: Iterable[str], *, bounded: bool = True) -> None:
        """Payloads in order; past ``max_pending`` unsent outputs the connection is dropped (``bounded``: not
        for a RESUME's replay, which the replay buffer already bounds)."""
        if not self.live:
            return
        for text in texts:
            if not self.compress:
                self._outputs.append(SendText(text))
                continue
            data = self._compressor.compress(text.encode()) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
            parts = max(1, min(self.split_frames, len(data)))
            step = -(-len(data) // parts)
            self._outputs.extend(SendBinary(data[start : start + step]) for start in range(0, len(data), step))
        if bounded and len(self._outputs) > self.max_pending:  # this far behind: dropped (its session resumes)
            self._outputs.clear()
            self.end(Abort())
        self.wake()

    def queue_raw(self, message: str | bytes) -> None:
        """A websocket message exactly as given (never compressed)."""
        if self.live:
            self._outputs.append(SendText(message) if isinstance(message, str) else SendBinary(message))
            self.wake()

    def end(self, how: Close | Abort) -> None:
        if self.live:
            self.live = False
            self._outputs.append(how)
            self.wake()


def _dumps(obj: object) -> str:
    try:
        return fastjson.dumps(obj).decode()
    except TypeError:  # what orjson does not write (an integer beyond 64 bits, a lone surrogate): a raw
        return json.dumps(obj, separators=(",", ":"))  # dispatch of a test about malformed payloads


def _dispatch_text(name: str, seq: int, data_json: str) -> str:
    return f'{{"op":0,"t":"{name}","s":{seq},"d":{data_json}}}'


#: (shard id, shard count, large threshold) → GUILD_CREATE payloads of that shard's guilds
GuildsForShard = Callable[[int, int, int], list[JSON]]
MembersOfGuild = Callable[[int], list[JSON]]


@attrs.define(eq=False)
class Gateway:
    """See the module docstring. Attributes may be changed at any time; they apply to what comes next."""

    token: str = attrs.field(repr=False)
    heartbeat_interval: float = 41.25  #: seconds (sent as milliseconds)
    ack_heartbeats: bool = True
    split_frames: int = 1  #: websocket messages per zlib-compressed payload
    shards: int = 1  #: recommended shard count in gateway_bot_json()
    max_concurrency: int = 1
    identify_total: int = 1000
    identify_remaining: int = 1000
    identify_reset_after: float = 24 * 3600.0  #: seconds, from start()
    #: two identifies of one concurrency bucket within this many seconds: the second gets op 9 (Discord: 5 s)
    identify_window: float = IDENTIFY_WINDOW
    allowed_intents: int = it.ALL  #: the "developer portal": privileged bits missing here → 4014
    enforce_send_limit: bool = True
    replay_buffer_size: int = 20_000  #: dispatches kept per session for RESUME (Discord keeps a few minutes)
    max_pending: int = 100_000  #: outputs queued for one connection before it is dropped
    bot_user: JSON = attrs.field(
        factory=lambda: {"id": "1000", "username": "relay-bot", "global_name": None, "bot": True}
    )
    #: READY's ``application`` (id and flags); None: the bot user's id, flags 0
    application: JSON | None = None
    #: full guild objects sent as GUILD_CREATE after READY; None: ask ``guilds_for_shard``
    ready_guilds: list[JSON] | None = None
    #: (shard id, shard count, large threshold) → GUILD_CREATE payloads of that shard's guilds (the world's)
    guilds_for_shard: GuildsForShard | None = None
    #: guild id → its members as lists show them (op 8); None: op 8 is accepted and not answered
    members_of_guild: MembersOfGuild | None = None
    member_chunk_size: int = member_chunks.CHUNK_SIZE  #: members per GUILD_MEMBERS_CHUNK (docs/discord.md §6.4)
    #: ids of guilds in an outage: READY lists them (unavailable), no GUILD_CREATE follows (see guild_available)
    unavailable_guilds: set[int] = attrs.field(factory=set)
    #: identified clients wait for READY until release_ready() (a Discord slow to start a session)
    hold_ready: bool = False
    #: a server that never resumes: every RESUME is answered op 9 false (some Discord-compatible servers)
    refuse_resume: bool = False
    #: answer IDENTIFY by closing with this code (and ``close_on_identify_reason``) instead of READY
    close_on_identify: int | None = None
    close_on_identify_reason: str = ""
    url: str = ""  #: ws://host:port the shell listens at (READY's resume_gateway_url is url + "/resume")
    #: called whenever something was recorded or a connection came or went (the shell's wait_until)
    on_change: Callable[[], None] = attrs.field(default=lambda: None)

    identifies: list[Recorded] = attrs.field(factory=list)
    resumes: list[Recorded] = attrs.field(factory=list)
    heartbeats: list[Recorded] = attrs.field(factory=list)
    sends: list[Recorded] = attrs.field(factory=list)  #: every client payload
    connections: list[ConnectionRecord] = attrs.field(factory=list)
    client_closes: list[tuple[float, int | None]] = attrs.field(factory=list)
    server_closes: list[tuple[float, int]] = attrs.field(factory=list)
    invalid_sessions: list[tuple[float, bool]] = attrs.field(factory=list)
    member_requests: list[Recorded] = attrs.field(factory=list)  #: every op 8

    _sessions: dict[str, Session] = attrs.field(factory=dict)
    _current: dict[int, Session] = attrs.field(factory=dict)  #: shard id → its latest session
    _pending: dict[int, list[tuple[str, JSON]]] = attrs.field(factory=dict)  #: raw dispatches before a session
    _live: list[Connection] = attrs.field(factory=list)
    _last_identify: dict[int, float] = attrs.field(factory=dict)
    _last_member_request: dict[int, float] = attrs.field(factory=dict)  #: guild id → when (whole-guild op 8)
    #: identified while hold_ready: (connection, shard id, shard count, intents, large threshold)
    _held: list[tuple[Connection, int, int, int, int]] = attrs.field(factory=list)
    _budget_reset_at: float = 0.0
    _session_counter: int = 0
    _conn_counter: int = 0

    # ----------------------------------------------------------------- setup

    def start(self, now: float) -> None:
        """The gateway opens at ``now``: the identify budget's window starts."""
        self._budget_reset_at = now + self.identify_reset_after

    def gateway_bot_json(self, now: float | None = None) -> JSON:
        """What ``GET /gateway/bot`` answers (docs/discord.md §2.1)."""
        if self._budget_reset_at and now is not None:
            reset_after_ms = int(max(0.0, self._budget_reset_at - now) * 1000)
        else:
            reset_after_ms = int(self.identify_reset_after * 1000)
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

    # ----------------------------------------------------------------- the shell's inputs

    def connect(
        self,
        path: str,
        query: Mapping[str, str],
        now: float,
        *,
        headers: Mapping[str, str] | None = None,
        peer: str | None = None,
    ) -> Connection:
        """A websocket connection was accepted at ``path`` with ``query`` (``headers``: the upgrade request's, names
        lower-cased; ``peer``: the client's address): HELLO (or close 4012) is queued."""
        self._conn_counter += 1
        conn = Connection(
            index=self._conn_counter,
            path=path,
            query=dict(query),
            compress=query.get("compress") == "zlib-stream",
            split_frames=self.split_frames,
            max_pending=self.max_pending,
        )
        self.connections.append(ConnectionRecord(now, path, dict(query), dict(headers or {}), peer))
        self._live.append(conn)
        if query.get("v") != "10" or query.get("encoding") != "json":
            self._close(conn, 4012, now)
        else:
            conn.queue_payload(_dumps({"op": 10, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}}))
        self.on_change()
        return conn

    def receive(self, conn: Connection, message: str | bytes, now: float) -> None:
        """One websocket message from the client."""
        if not conn.live:
            return
        try:
            if len(message) > MAX_CLIENT_PAYLOAD:
                raise ValueError("payload too large")
            payload = fastjson.loads(message)
            op = payload["op"]
            if not isinstance(payload, dict) or not isinstance(op, int):
                raise TypeError(op)
        except (ValueError, TypeError, KeyError):
            self._close(conn, 4002, now)
            return
        self.sends.append(Recorded(now, conn.shard_id, payload))
        self.on_change()
        conn.sent_times.append(now)
        while conn.sent_times and conn.sent_times[0] <= now - SEND_WINDOW:
            conn.sent_times.popleft()
        if self.enforce_send_limit and len(conn.sent_times) > SEND_LIMIT:
            self._close(conn, 4008, now)
            return
        d = payload.get("d")
        if op not in CLIENT_OPCODES:
            self._close(conn, 4001, now)
        elif op == 1:
            self.heartbeats.append(Recorded(now, conn.shard_id, payload))
            if self.ack_heartbeats:
                conn.queue_payload('{"op":11}')
        elif op == 2:
            self._identify(conn, d if isinstance(d, dict) else {}, now)
        elif op == 6:
            self._resume(conn, d if isinstance(d, dict) else {}, now)
        elif conn.session is None:
            self._close(conn, 4003, now)
        elif op == 8:
            self._request_members(conn.session, d if isinstance(d, dict) else {}, now)

    def connection_lost(self, conn: Connection, code: int | None, now: float) -> None:
        """The connection ended: the client closed with ``code`` (None/1006: it vanished), or our close went
        out. A client close with 1000/1001 ends the session (docs/discord.md §2.12); any other keeps it resumable."""
        if conn.live:  # not closed by us
            conn.live = False
            self.client_closes.append((now, code))
            if code in (1000, 1001) and conn.session is not None and conn.session.conn is conn:
                self._forget_session(conn.session.shard_id)
        self._detach(conn)

    # ----------------------------------------------------------------- events

    def publish(self, dispatch: Dispatch) -> None:
        """A world event: to the session of its shard on every shard count in use, if its intents want it."""
        bot_id = int(self.bot_user["id"])
        in_guild = dispatch.guild_id is not None
        data_json: str | None = None
        for session in list(self._current.values()):
            guild_id = dispatch.guild_id
            shard = (guild_id >> 22) % session.shard_count if guild_id is not None else 0
            if shard != session.shard_id:
                continue
            if not it.receives(session.intents, dispatch.name, dispatch.data, in_guild=in_guild, bot_id=bot_id):
                continue
            if it.needs_content_gate(session.intents, dispatch.name, dispatch.data, bot_id=bot_id):
                self._send(session, dispatch.name, [_dumps(it.gate_content(dispatch.data, bot_id))])
                continue
            if data_json is None:
                data_json = _dumps(dispatch.data)
            self._send(session, dispatch.name, [data_json])

    def dispatch(self, name: str, data: Mapping[str, Any], *, shard_id: int = 0) -> int | None:
        """Sequence and send one dispatch as given (buffered for resume). Its seq; None: no session yet (it goes
        out after the next READY)."""
        seqs = self.dispatch_many(name, [data], shard_id=shard_id)
        return seqs[0] if seqs else None

    def dispatch_many(self, name: str, datas: Iterable[Mapping[str, Any]], *, shard_id: int = 0) -> list[int]:
        """Sequence and send many dispatches at once (the benchmark's bulk path)."""
        session = self._current.get(shard_id)
        if session is None:
            self._pending.setdefault(shard_id, []).extend((name, dict(d)) for d in datas)
            return []
        return self._send(session, name, [_dumps(d) for d in datas])

    def _send(self, session: Session, name: str, data_jsons: Sequence[str], *, bounded: bool = True) -> list[int]:
        texts = []
        seqs = []
        for data_json in data_jsons:
            session.seq += 1
            text = _dispatch_text(name, session.seq, data_json)
            session.buffer.append((session.seq, text))
            texts.append(text)
            seqs.append(session.seq)
        while len(session.buffer) > self.replay_buffer_size:
            session.buffer.popleft()
        if session.conn is not None:
            session.conn.queue_payloads(texts, bounded=bounded)
        return seqs

    # ----------------------------------------------------------------- control (tests, the page)

    def send_reconnect(self, *, shard_id: int = 0) -> None:
        """op 7 on the shard's live connection."""
        self._conn_for(shard_id).queue_payload('{"op":7,"d":null}')

    def request_heartbeat(self, *, shard_id: int = 0) -> None:
        """op 1 from the server: the client must heartbeat at once."""
        self._conn_for(shard_id).queue_payload('{"op":1,"d":null}')

    def invalidate_session(self, resumable: bool, now: float, *, shard_id: int = 0) -> None:
        """op 9; with ``resumable=False`` the session is forgotten (a resume then fails too)."""
        conn = self._conn_for(shard_id)
        if not resumable:
            self._forget_session(shard_id)
        self.invalid_sessions.append((now, resumable))
        conn.queue_payload(_dumps({"op": 9, "d": resumable}))
        self.on_change()

    def close_with(self, code: int, now: float, *, shard_id: int = 0, reason: str = "") -> None:
        """Close the shard's live connection with ``code`` and ``reason`` (4007/4009 also end the session)."""
        conn = self._conn_for(shard_id)
        if code in (4007, 4009):
            self._forget_session(shard_id)
        self._close(conn, code, now, reason)

    def release_ready(self) -> None:
        """End ``hold_ready``: the clients identified meanwhile get their READY now."""
        self.hold_ready = False
        held, self._held = self._held, []
        for conn, shard_id, shard_count, intents, large_threshold in held:
            if conn.live:
                self._start_session(conn, shard_id, shard_count, intents, large_threshold)

    def guild_available(self, guild: JSON) -> None:
        """A guild of ``unavailable_guilds`` is back: its GUILD_CREATE (``guild``) goes to its shard's sessions."""
        guild_id = int(guild["id"])
        self.unavailable_guilds.discard(guild_id)
        for session in list(self._current.values()):
            if (guild_id >> 22) % session.shard_count == session.shard_id:
                self._send(session, "GUILD_CREATE", [_dumps(guild)])

    def drop_connection(self, *, shard_id: int = 0) -> None:
        """Drop the TCP connection without a close frame (the session stays resumable)."""
        conn = self._conn_for(shard_id)
        conn.end(Abort())
        self._detach(conn)

    def send_raw(self, message: str | bytes, *, shard_id: int = 0) -> None:
        """Send a websocket message as-is (text or binary, never compressed): for bad-input tests."""
        self._conn_for(shard_id).queue_raw(message)

    def live_shards(self) -> set[int]:
        return {c.shard_id for c in self._live if c.shard_id is not None and c.session is not None}

    def live_connections(self) -> list[Connection]:
        return list(self._live)

    def frames_sent(self) -> int:
        return sum(c.frames_sent for c in self._live)

    def session_of(self, shard_id: int = 0) -> Session | None:
        return self._current.get(shard_id)

    # ----------------------------------------------------------------- internals

    def _conn_for(self, shard_id: int) -> Connection:
        for conn in reversed(self._live):
            if conn.shard_id == shard_id:
                return conn
        raise LookupError(f"emulated gateway: shard {shard_id} has no live connection")

    def _forget_session(self, shard_id: int) -> None:
        session = self._current.pop(shard_id, None)
        if session is not None:
            self._sessions.pop(session.session_id, None)
            session.conn = None

    def _detach(self, conn: Connection) -> None:
        if conn in self._live:
            self._live.remove(conn)
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        self.on_change()

    def _close(self, conn: Connection, code: int, now: float, reason: str = "") -> None:
        self.server_closes.append((now, code))
        conn.end(Close(code, reason))
        self._detach(conn)

    def _identify(self, conn: Connection, d: JSON, now: float) -> None:
        shard = d.get("shard") or [0, 1]
        try:
            shard_id, shard_count = int(shard[0]), int(shard[1])
        except (TypeError, ValueError, IndexError):
            shard_id, shard_count = 0, 0
        conn.shard_id = shard_id
        self.identifies.append(Recorded(now, shard_id, {"op": 2, "d": d}))
        self.on_change()
        if d.get("token") != self.token:
            self._close(conn, 4004, now)
            return
        if conn.identified:
            self._close(conn, 4005, now)
            return
        if self.close_on_identify is not None:
            self._close(conn, self.close_on_identify, now, self.close_on_identify_reason)
            return
        if now >= self._budget_reset_at:
            self.identify_remaining = self.identify_total
            self._budget_reset_at = now + 24 * 3600.0
        if self.identify_remaining <= 0:
            self._close(conn, 4004, now)  # Discord resets the token of bots that exhaust the budget
            return
        self.identify_remaining -= 1
        if not 0 <= shard_id < shard_count:
            self._close(conn, 4010, now)
            return
        intents = d.get("intents", 0)
        if not isinstance(intents, int) or intents < 0 or intents & ~it.ALL:
            self._close(conn, 4013, now)
            return
        if intents & it.PRIVILEGED & ~self.allowed_intents:
            self._close(conn, 4014, now)
            return
        bucket = shard_id % self.max_concurrency
        last = self._last_identify.get(bucket)
        self._last_identify[bucket] = now
        if last is not None and now - last < self.identify_window:
            self.invalid_sessions.append((now, False))
            conn.queue_payload('{"op":9,"d":false}')
            return
        conn.identified = True
        large = d.get("large_threshold", payloads.LARGE_THRESHOLD)
        low, high = LARGE_THRESHOLD_RANGE
        large_threshold = min(max(large, low), high) if isinstance(large, int) else payloads.LARGE_THRESHOLD
        if self.hold_ready:
            self._held.append((conn, shard_id, shard_count, intents, large_threshold))
            return
        self._start_session(conn, shard_id, shard_count, intents, large_threshold)

    def _start_session(
        self, conn: Connection, shard_id: int, shard_count: int, intents: int, large_threshold: int
    ) -> None:
        """A new session for an identified connection: READY, GUILD_CREATEs, then dispatches queued for it."""
        self._forget_session(shard_id)
        self._session_counter += 1
        session = Session(
            session_id=f"session-{self._session_counter}", shard_id=shard_id, shard_count=shard_count, intents=intents
        )
        self._sessions[session.session_id] = session
        self._current[shard_id] = session
        session.conn = conn
        conn.session = session
        if self.ready_guilds is not None:
            guilds = self.ready_guilds
        elif self.guilds_for_shard is not None:
            guilds = self.guilds_for_shard(shard_id, shard_count, large_threshold)
        else:
            guilds = []
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "resume_gateway_url": f"{self.url}/resume",
            "shard": [shard_id, shard_count],
            "application": self.application or {"id": self.bot_user["id"], "flags": 0},
        }
        self._send(session, "READY", [_dumps(ready)])
        available = [g for g in guilds if int(g["id"]) not in self.unavailable_guilds]
        if available:
            self._send(session, "GUILD_CREATE", [_dumps(g) for g in available])
        for name, data in self._pending.pop(shard_id, []):
            self._send(session, name, [_dumps(data)])
        self.on_change()

    def _resume(self, conn: Connection, d: JSON, now: float) -> None:
        self.resumes.append(Recorded(now, None, {"op": 6, "d": d}))
        self.on_change()
        if d.get("token") != self.token:
            self._close(conn, 4004, now)
            return
        session = self._sessions.get(str(d.get("session_id")))
        seq = d.get("seq") or 0
        if not isinstance(seq, int):
            self._close(conn, 4002, now)
            return
        if self.refuse_resume or session is None or (session.buffer and session.buffer[0][0] > seq + 1):
            self.invalid_sessions.append((now, False))
            conn.queue_payload('{"op":9,"d":false}')
            return
        if seq > session.seq:
            self._close(conn, 4007, now)
            return
        conn.shard_id = session.shard_id
        conn.identified = True
        conn.queue_payloads((text for s, text in session.buffer if s > seq), bounded=False)
        if session.conn is not None and session.conn is not conn:
            session.conn.session = None
        session.conn = conn
        conn.session = session
        self._send(session, "RESUMED", ["null"], bounded=False)
        self.on_change()

    def _request_members(self, session: Session, d: JSON, now: float) -> None:
        """op 8 → GUILD_MEMBERS_CHUNK (:mod:`.member_chunks`); a whole-guild request within 30 s of the last one
        for that guild → RATE_LIMITED (docs/discord.md §3)."""
        self.member_requests.append(Recorded(now, session.shard_id, {"op": 8, "d": d}))
        self.on_change()
        if self.members_of_guild is None:
            return
        try:
            guild_id = int(d["guild_id"])
        except (KeyError, TypeError, ValueError):
            return
        if member_chunks.is_whole_guild(d):
            last = self._last_member_request.get(guild_id)
            if last is not None and now - last < member_chunks.WHOLE_GUILD_INTERVAL:
                limited = member_chunks.rate_limited(d, guild_id, member_chunks.WHOLE_GUILD_INTERVAL - (now - last))
                self._send(session, "RATE_LIMITED", [_dumps(limited)])
                return
            self._last_member_request[guild_id] = now
        chunks = member_chunks.answer(self.members_of_guild(guild_id), d, guild_id, self.member_chunk_size)
        self._send(session, "GUILD_MEMBERS_CHUNK", [_dumps(c) for c in chunks])
