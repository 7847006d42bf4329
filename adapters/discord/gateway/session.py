"""One shard's gateway session as a sans-I/O state machine (docs/discord.md §2–§5).

Nothing here does I/O, reads the clock or touches the ``random`` module's global state: the trio shell
(:mod:`adapters.discord.gateway.shard`) feeds decoded payloads and ``now`` in, and reads events, frames to send and
deadlines back out — the h11 / wsproto shape.

The pieces it uses live beside it: :mod:`~adapters.discord.gateway.payloads` (wire format),
:mod:`~adapters.discord.gateway.close_codes`, :mod:`~adapters.discord.gateway.pacing` (limiters) and
:mod:`~adapters.discord.gateway.events` (what it returns).

Theory of operation of :class:`ShardSession` (one instance per shard, for the life of the process)::

    DISCONNECTED --connection_opened--> AWAITING_HELLO --op 10--> IDENTIFY_PENDING --identify_now--> AUTHENTICATING
                                                      \\--op 10 (have session)--> AUTHENTICATING (op 6 queued)
    AUTHENTICATING --READY / RESUMED--> CONNECTED
    any connected state --op 7 / op 9 / zombie / abort()--> CLOSING (shell closes the socket with close_code)
    any connected state or CLOSING --connection_lost--> DISCONNECTED (retry after will_retry_in) or STOPPED (fatal)

The machine never closes with 1000/1001 (they end the Discord session) nor 1006 (wsproto turns it into
1000): every close it asks for uses :data:`RESUMABLE_CLOSE_CODE` (docs/discord.md §2.12).
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

import attrs

from adapters.discord.gateway.close_codes import (
    RESUMABLE_CLOSE_CODE,
    CloseAction,
    classify_close,
    close_reason_text,
    fatal_close_advice,
)
from adapters.discord.gateway.events import (
    DispatchReceived,
    GatewayEvent,
    ResumeState,
    ShardConnected,
    ShardDisconnected,
    ShardGuildsLoaded,
    ShardReady,
    ShardResumed,
)
from adapters.discord.gateway.pacing import SendRateLimiter
from adapters.discord.gateway.payloads import MAX_OUTGOING_PAYLOAD_BYTES, Op, encode_payload, gateway_connect_url
from adapters.discord.snowflakes import parse_snowflake
from relay.backoff import backoff_delay
from relay.config import BackoffConfig
from relay.errors import GatewayClosed, LocalProtocolError, RemoteProtocolError

#: op 9: wait a random 1–5 s before the next attempt (docs/discord.md §2.9)
INVALID_SESSION_DELAY: Final = (1.0, 5.0)
#: a connection that stayed READY/RESUMED this long resets the reconnect backoff (hikari's window, §2.13)
HEALTHY_CONNECTION_SECONDS: Final = 30.0
#: after this many resume attempts that never reached RESUMED, resume via the main URL (tatsuworks #87, §2.7)
RESUME_URL_FALLBACK_AFTER: Final = 3
#: ... and after this many, give the session up and identify (buape/carbon #364, docs/discord.md §2.7)
RESUME_GIVE_UP_AFTER: Final = 6
#: guilds READY listed that have not arrived when no GUILD_CREATE came for this many seconds count as unavailable
#: (an outage keeps them away; docs/discord.md §2.6: discord.py waits 2 s after the last GUILD_CREATE)
GUILD_LOAD_TIMEOUT: Final = 5.0
#: user sends queued per shard before send_nowait refuses: ~8 minutes of the 117/min normal lane
MAX_PENDING_SENDS: Final = 1000
#: distinct dispatch names counted apart (Discord has about 80); any further name counts as OTHER_DISPATCHES
MAX_DISPATCH_NAMES: Final = 256
OTHER_DISPATCHES: Final = "(other)"
#: default identify ``properties`` (docs/discord.md §2.5)
DEFAULT_PROPERTIES: Final[Mapping[str, str]] = {
    "os": "linux",
    "browser": "discord-mirai-relay",
    "device": "discord-mirai-relay",
}


class ShardState(enum.Enum):
    DISCONNECTED = "disconnected"  #: no socket; the shell reconnects after will_retry_in
    AWAITING_HELLO = "awaiting_hello"  #: socket open, waiting for op 10
    IDENTIFY_PENDING = "identify_pending"  #: HELLO seen, no session: waiting for an identify slot
    AUTHENTICATING = "authenticating"  #: op 2 / op 6 sent, waiting for READY / RESUMED
    CONNECTED = "connected"  #: READY or RESUMED seen
    CLOSING = "closing"  #: we decided to close; the shell must close with ``close_code``
    STOPPED = "stopped"  #: fatal close: ``fatal_error`` says why


#: a tuple, not a set: ``receive`` tests it for every payload, and a set would hash the member with Enum.__hash__,
#: a Python-level call (a tuple compares by identity first): 294,100 -> 293,100 instructions per relayed event
_LIVE_STATES: Final = (
    ShardState.CONNECTED,
    ShardState.AWAITING_HELLO,
    ShardState.IDENTIFY_PENDING,
    ShardState.AUTHENTICATING,
)


@attrs.frozen(kw_only=True)
class ShardStatistics:
    shard_id: int
    state: ShardState
    seq: int | None
    dispatches: int
    duplicates_dropped: int
    malformed_dispatches: int
    reconnects: int
    latency: float | None  #: last heartbeat round trip, seconds
    pending_sends: int
    identifies: int = 0  #: op 2 sent (new sessions)
    resumes: int = 0  #: op 6 sent (resume attempts)
    #: dispatches by event name ("MESSAGE_CREATE", ...; every name past MAX_DISPATCH_NAMES as OTHER_DISPATCHES)
    dispatches_by_name: Mapping[str, int] = attrs.field(factory=dict)


@attrs.define
class ShardSession:
    """One shard's gateway state machine; lives across reconnects (see the module docstring)."""

    shard_id: int
    shard_count: int
    token: str = attrs.field(repr=False)
    intents: int
    gateway_url: str  #: the main URL (from /gateway/bot or config)
    rng: random.Random = attrs.field(repr=False)
    compress: bool = True
    large_threshold: int = 250
    intent_names: tuple[str, ...] = ()  #: for the 4014 advice
    properties: Mapping[str, str] = DEFAULT_PROPERTIES
    backoff: BackoffConfig = attrs.field(factory=BackoffConfig)
    initial_session: ResumeState | None = None
    #: Identify's ``presence`` (``gateway/presence.py`` builds it from ``[discord.presence]``); None: Discord's default
    presence: Mapping[str, object] | None = None

    state: ShardState = ShardState.DISCONNECTED
    session_id: str | None = None
    seq: int | None = None
    resume_url: str | None = None
    user: dict[str, Any] | None = None
    guild_ids: tuple[int, ...] = ()
    fatal_error: GatewayClosed | None = None
    close_code: int | None = None  #: set in CLOSING: the code the shell must close the socket with
    latency: float | None = None
    #: op 0 payloads skipped because they carry no event name (the shell logs when this grows)
    malformed_dispatches: int = 0
    #: every guild of the last READY arrived or was given up as unavailable (see ShardGuildsLoaded)
    guilds_loaded: bool = False

    # per connection
    _resuming: bool = False
    _heartbeat_interval: float | None = None
    _next_heartbeat_at: float = math.inf
    _heartbeat_acked: bool = True
    _last_heartbeat_sent: float | None = None
    _limiter: SendRateLimiter = attrs.field(factory=SendRateLimiter)
    _priority_frames: deque[str] = attrs.field(factory=deque)
    _connected_since: float | None = None
    _replayed: int = 0
    _pending_action: CloseAction = CloseAction.RESUME
    _pending_reason: str = ""
    _pending_delay: float | None = None
    # across connections
    _user_frames: deque[str] = attrs.field(factory=deque)
    _attempt: int = 0
    _failed_resumes: int = 0
    _dispatch_names: dict[str, int] = attrs.field(factory=dict)
    _duplicates: int = 0
    _reconnects: int = 0
    _identifies: int = 0
    _resumes: int = 0
    # guild loading after READY (across connections: a resume replays the GUILD_CREATEs it missed)
    _guilds_pending: set[int] = attrs.field(factory=set)
    _guilds_listed: int = 0
    _guilds_unavailable: int = 0
    _guilds_deadline: float = math.inf

    def __attrs_post_init__(self) -> None:
        if self.initial_session is not None:
            self.session_id = self.initial_session.session_id
            self.seq = self.initial_session.seq
            self.resume_url = self.initial_session.resume_url

    # ----------------------------------------------------------------- queries

    @property
    def will_identify(self) -> bool:
        """The next connection starts a new session (no session to resume)."""
        return self.session_id is None

    @property
    def identify_pending(self) -> bool:
        return self.state is ShardState.IDENTIFY_PENDING

    @property
    def has_work(self) -> bool:
        """The shell should run ``tick``/``frames_to_send`` now (frames queued or a close requested)."""
        return (
            bool(self._priority_frames)
            or self.state is ShardState.CLOSING
            or (bool(self._user_frames) and self.state is ShardState.CONNECTED)
        )

    def session_state(self) -> ResumeState | None:
        if self.session_id is None or self.resume_url is None:
            return None
        return ResumeState(session_id=self.session_id, seq=self.seq, resume_url=self.resume_url)

    def connect_url(self) -> str:
        """The URL (query included) of the next connection."""
        base = self.gateway_url
        if (
            self.session_id is not None
            and self.resume_url is not None
            and self._failed_resumes < RESUME_URL_FALLBACK_AFTER
        ):
            base = self.resume_url
        return gateway_connect_url(base, compress=self.compress)

    def next_deadline(self) -> float:
        """When ``tick``/``frames_to_send`` must run next (math.inf: only on input)."""
        if self.state not in _LIVE_STATES:
            return -math.inf if self.state is ShardState.CLOSING else math.inf
        deadline = self._next_heartbeat_at
        if self._priority_frames or (self._user_frames and self.state is ShardState.CONNECTED):
            # the limiter decides; frames_to_send is cheap, so wake at the earliest time one may go
            deadline = min(deadline, self._earliest_send())
        return deadline

    def guilds_deadline(self) -> float:
        """When :meth:`expire_guilds` must run (math.inf: no guild of READY is missing, or not connected)."""
        if self._guilds_pending and self.state is ShardState.CONNECTED:
            return self._guilds_deadline
        return math.inf

    def expire_guilds(self, *, now: float) -> list[GatewayEvent]:
        """Guilds of READY still missing after :data:`GUILD_LOAD_TIMEOUT` s without one arriving are unavailable
        (an outage): the shard counts as loaded (ShardGuildsLoaded)."""
        if now < self.guilds_deadline():
            return []
        self._guilds_unavailable += len(self._guilds_pending)
        self._guilds_pending.clear()
        return self._guilds_done()

    def statistics(self) -> ShardStatistics:
        return ShardStatistics(
            shard_id=self.shard_id,
            state=self.state,
            seq=self.seq,
            dispatches=sum(self._dispatch_names.values()),
            duplicates_dropped=self._duplicates,
            malformed_dispatches=self.malformed_dispatches,
            reconnects=self._reconnects,
            latency=self.latency,
            pending_sends=len(self._user_frames),
            identifies=self._identifies,
            resumes=self._resumes,
            dispatches_by_name=dict(self._dispatch_names),
        )

    # ----------------------------------------------------------------- inputs

    def connection_opened(self, *, now: float) -> list[GatewayEvent]:
        """The shell opened a websocket to ``connect_url()``."""
        if self.state is not ShardState.DISCONNECTED:
            raise LocalProtocolError(f"shard {self.shard_id}: connection_opened in state {self.state.value}")
        self.state = ShardState.AWAITING_HELLO
        self._resuming = self.session_id is not None
        self._heartbeat_interval = None
        self._next_heartbeat_at = math.inf
        self._heartbeat_acked = True
        self._last_heartbeat_sent = None
        self._limiter = SendRateLimiter()  # the limit is per connection (docs/discord.md §3)
        self._priority_frames.clear()
        self._connected_since = None
        self._replayed = 0
        self.close_code = None
        self._pending_delay = None
        return [ShardConnected(shard_id=self.shard_id, url=self.connect_url(), resuming=self._resuming)]

    def receive(self, payload: Mapping[str, Any], *, now: float) -> list[GatewayEvent]:
        """Feed one decoded payload. Raises RemoteProtocolError on a malformed one (and asks to close)."""
        if self.state not in _LIVE_STATES:
            return []  # closing or closed: anything still in flight is replayed on resume
        try:
            return self._receive(payload, now)
        except RemoteProtocolError as exc:
            # like h11: after bad input this connection is finished; resume on a fresh one
            if self.state in _LIVE_STATES:
                self._begin_close(CloseAction.RESUME, str(exc))
            raise

    def _receive(self, payload: Mapping[str, Any], now: float) -> list[GatewayEvent]:
        op = payload.get("op")
        if op == Op.DISPATCH:
            return self._on_dispatch(payload, now)
        if op == Op.HEARTBEAT_ACK:
            self._heartbeat_acked = True
            if self._last_heartbeat_sent is not None:
                self.latency = now - self._last_heartbeat_sent
            return []
        if op == Op.HEARTBEAT:
            # answer at once, without moving the schedule (docs/discord.md §2.4 step 5)
            self._priority_frames.append(self._heartbeat_frame())
            return []
        if op == Op.HELLO:
            return self._on_hello(payload, now)
        if op == Op.RECONNECT:
            # a live session reconnects at once; op 7 instead of HELLO means the node is restarting (hikari),
            # so back off rather than hammer it
            delay = 0.0 if self.state is ShardState.CONNECTED else None
            self._begin_close(CloseAction.RESUME, "Discord asked to reconnect (op 7)", delay=delay)
            return []
        if op == Op.INVALID_SESSION:
            resumable = payload.get("d") is True
            delay = self.rng.uniform(*INVALID_SESSION_DELAY)
            if resumable:
                self._begin_close(CloseAction.RESUME, "session invalidated, resumable (op 9 d=true)", delay=delay)
            else:
                self._drop_session()
                self._begin_close(CloseAction.REIDENTIFY, "session invalidated (op 9 d=false)", delay=delay)
            return []
        return []  # Discord adds opcodes; unknown ones are ignored (docs/discord.md §2.3)

    def identify_now(self, *, now: float) -> None:
        """The shell got an identify slot: queue op 2 (no-op if the connection moved on meanwhile)."""
        if self.state is not ShardState.IDENTIFY_PENDING:
            return
        self.seq = None
        self._priority_frames.append(
            encode_payload(
                {
                    "op": Op.IDENTIFY,
                    "d": {
                        "token": self.token,
                        "intents": self.intents,
                        "properties": dict(self.properties),
                        "compress": False,  # payload compression; we use transport compression (§2.5)
                        "large_threshold": self.large_threshold,
                        "shard": [self.shard_id, self.shard_count],
                        **({"presence": dict(self.presence)} if self.presence is not None else {}),
                    },
                }
            )
        )
        self._identifies += 1
        self.state = ShardState.AUTHENTICATING

    def tick(self, *, now: float) -> list[GatewayEvent]:
        """Run timers: heartbeats and zombie detection (docs/discord.md §2.4)."""
        if self.state not in _LIVE_STATES or now < self._next_heartbeat_at:
            return []
        if not self._heartbeat_acked:
            self._begin_close(CloseAction.RESUME, "zombie connection: the last heartbeat was never acknowledged")
            return []
        self._priority_frames.append(self._heartbeat_frame())
        self._heartbeat_acked = False
        self._last_heartbeat_sent = now
        assert self._heartbeat_interval is not None  # set by HELLO together with _next_heartbeat_at
        self._next_heartbeat_at = now + self._heartbeat_interval
        return []

    def frames_to_send(self, *, now: float) -> list[str]:
        """Frames that may be sent now, in order; the rest wait for the limiter (see next_deadline)."""
        out: list[str] = []
        if self.state not in _LIVE_STATES:
            return out
        limiter = self._limiter
        while self._priority_frames and limiter.delay(now, priority=True) == 0.0:
            out.append(self._priority_frames.popleft())
            limiter.record(now)
        if self.state is ShardState.CONNECTED and not self._priority_frames:
            while self._user_frames and limiter.delay(now, priority=False) == 0.0:
                out.append(self._user_frames.popleft())
                limiter.record(now)
        return out

    def queue_send(self, payload: Mapping[str, Any]) -> bool:
        """Queue an application payload (op 3, op 8...). False when the queue is full; sent once connected."""
        if not isinstance(payload.get("op"), int) or payload["op"] in (Op.IDENTIFY, Op.RESUME, Op.HEARTBEAT):
            raise LocalProtocolError("queue_send takes application payloads; heartbeat/identify/resume are ours")
        frame = encode_payload(payload)
        if len(frame.encode()) > MAX_OUTGOING_PAYLOAD_BYTES:
            raise LocalProtocolError(
                f"gateway payload of {len(frame.encode())} bytes exceeds Discord's {MAX_OUTGOING_PAYLOAD_BYTES}-byte "
                "limit (it would close the connection with 4002)"
            )
        if len(self._user_frames) >= MAX_PENDING_SENDS:
            return False
        self._user_frames.append(frame)
        return True

    def abort(self, reason: str, *, now: float) -> None:
        """Close this connection and resume (e.g. the shell could not decode a message)."""
        if self.state in _LIVE_STATES:
            self._begin_close(CloseAction.RESUME, reason)

    def connection_lost(
        self, code: int | None, *, now: float, reason: str = "", server_reason: str = ""
    ) -> list[GatewayEvent]:
        """The socket is gone (``code``: the server's close code; None when it died without one; ``server_reason``:
        the reason text of its close frame, which ends up in the event's reason and a fatal error).

        Also call it when connecting failed. Returns one :class:`ShardDisconnected`; after a fatal code the
        state is STOPPED and ``fatal_error`` holds the GatewayClosed to raise.
        """
        if self.state is ShardState.STOPPED:
            return []
        was_connected_for = None if self._connected_since is None else now - self._connected_since
        if self.session_id is not None and was_connected_for is None:
            self._failed_resumes += 1  # this attempt (or the connect itself) never reached RESUMED
        self._connected_since = None
        if was_connected_for is not None and was_connected_for >= HEALTHY_CONNECTION_SECONDS:
            self._attempt = 0
        if self.state is ShardState.CLOSING:
            action, why, delay = self._pending_action, self._pending_reason, self._pending_delay
        else:
            action = classify_close(code, has_session=self.session_id is not None)
            said = f": {server_reason}" if server_reason else ""
            named = close_reason_text(code) if code is None else f"close code {code}, {close_reason_text(code)}"
            why = (reason or named) + said
            delay = None
            if action is CloseAction.FATAL:
                assert code is not None  # classify_close(None) is RESUME
                self._drop_session()
                self.state = ShardState.STOPPED
                self.fatal_error = GatewayClosed(
                    code,
                    close_reason_text(code) + said,
                    fatal=True,
                    advice=fatal_close_advice(code, self.intent_names),
                )
                return [
                    ShardDisconnected(shard_id=self.shard_id, code=code, action=action, will_retry_in=None, reason=why)
                ]
            if action is CloseAction.REIDENTIFY:
                self._drop_session()
        if self.session_id is not None and self._failed_resumes >= RESUME_GIVE_UP_AFTER:
            self._drop_session()
            action = CloseAction.REIDENTIFY
            why += f"; {self._failed_resumes} resume attempts failed, starting a new session"
        if action is CloseAction.RESUME and self.session_id is None:
            action = CloseAction.REIDENTIFY  # nothing to resume (closed before READY, or op 7 while identifying)
        if delay is None:
            delay = backoff_delay(self.backoff, self._attempt, self.rng)
            self._attempt += 1
        self.state = ShardState.DISCONNECTED
        self.close_code = None
        self._next_heartbeat_at = math.inf
        self._priority_frames.clear()
        self._reconnects += 1
        return [ShardDisconnected(shard_id=self.shard_id, code=code, action=action, will_retry_in=delay, reason=why)]

    # ----------------------------------------------------------------- internals

    def _heartbeat_frame(self) -> str:
        return encode_payload({"op": Op.HEARTBEAT, "d": self.seq})

    def _earliest_send(self) -> float:
        return self._limiter.available_at(priority=bool(self._priority_frames))

    def _begin_close(self, action: CloseAction, reason: str, *, delay: float | None = None) -> None:
        self.state = ShardState.CLOSING
        self.close_code = RESUMABLE_CLOSE_CODE
        self._pending_action = action
        self._pending_reason = reason
        self._pending_delay = delay
        self._next_heartbeat_at = math.inf

    def _drop_session(self) -> None:
        self.session_id = None
        self.seq = None
        self.resume_url = None
        self._failed_resumes = 0

    def _on_hello(self, payload: Mapping[str, Any], now: float) -> list[GatewayEvent]:
        if self.state is not ShardState.AWAITING_HELLO:
            return []  # a repeated HELLO changes nothing
        d = payload.get("d")
        interval_ms = d.get("heartbeat_interval") if isinstance(d, Mapping) else None
        if not isinstance(interval_ms, int | float) or isinstance(interval_ms, bool) or interval_ms <= 0:
            raise RemoteProtocolError(f"HELLO without a positive heartbeat_interval: {d!r}")
        self._heartbeat_interval = interval_ms / 1000.0
        # first beat after interval * jitter, jitter in [0, 1) (docs/discord.md §2.4 step 2)
        self._next_heartbeat_at = now + self._heartbeat_interval * self.rng.random()
        self._heartbeat_acked = True
        if self._resuming and self.session_id is not None:
            self._priority_frames.append(
                encode_payload(
                    {"op": Op.RESUME, "d": {"token": self.token, "session_id": self.session_id, "seq": self.seq}}
                )
            )
            self._resumes += 1
            self.state = ShardState.AUTHENTICATING
        else:
            self._resuming = False
            self.state = ShardState.IDENTIFY_PENDING
        return []

    def _on_dispatch(self, payload: Mapping[str, Any], now: float) -> list[GatewayEvent]:
        name = payload.get("t")
        seq = payload.get("s")
        if isinstance(seq, int):
            if self.seq is not None and seq <= self.seq:
                self._duplicates += 1  # already handed on before the resume (docs/discord.md §2.10)
                return []
            self.seq = seq
        else:
            seq = None
        if not isinstance(name, str) or not name:
            # skipped, but its seq is taken: a resume would replay the same garbage forever
            self.malformed_dispatches += 1
            return []
        # ``d`` is passed on as it is: whether its shape is right is the consumer's business (SESSIONS_REPLACE's
        # is a list, RESUMED's null); only READY's, and the ids of the guilds loading after it, are read here
        data = payload.get("d")
        names = self._dispatch_names  # one dict update per dispatch: the metrics' "events in, by kind"
        count = names.get(name)
        if count is not None:
            names[name] = count + 1
        elif len(names) < MAX_DISPATCH_NAMES:
            names[name] = 1
        else:
            names[OTHER_DISPATCHES] = names.get(OTHER_DISPATCHES, 0) + 1
        events: list[GatewayEvent] = [DispatchReceived(shard_id=self.shard_id, name=name, seq=seq, data=data)]
        if self.state is ShardState.AUTHENTICATING and self._resuming and name != "RESUMED":
            self._replayed += 1
        if name == "READY":
            if not isinstance(data, dict):
                raise RemoteProtocolError("READY whose 'd' is not an object")
            events.append(self._on_ready(data, now))
            if not self._guilds_pending:
                events.extend(self._guilds_done())
        elif name == "RESUMED":
            self.state = ShardState.CONNECTED
            self._connected_since = now
            self._failed_resumes = 0
            session = self.session_state()
            assert session is not None  # resuming implies a session
            events.append(ShardResumed(shard_id=self.shard_id, session=session, replayed=self._replayed))
            if not self._guilds_pending and not self.guilds_loaded:
                events.extend(self._guilds_done())  # resumed a session this process never saw READY of
            self._guilds_deadline = now + GUILD_LOAD_TIMEOUT
        elif self._guilds_pending and name in ("GUILD_CREATE", "GUILD_DELETE") and isinstance(data, dict):
            guild_id = parse_snowflake(data.get("id"))
            if guild_id in self._guilds_pending:
                self._guilds_pending.discard(guild_id)
                if name == "GUILD_DELETE" or data.get("unavailable"):
                    self._guilds_unavailable += 1
                self._guilds_deadline = now + GUILD_LOAD_TIMEOUT
                if not self._guilds_pending:
                    events.extend(self._guilds_done())
        return events

    def _guilds_done(self) -> list[GatewayEvent]:
        self.guilds_loaded = True
        self._guilds_deadline = math.inf
        return [
            ShardGuildsLoaded(shard_id=self.shard_id, guilds=self._guilds_listed, unavailable=self._guilds_unavailable)
        ]

    def _on_ready(self, data: Mapping[str, Any], now: float) -> ShardReady:
        session_id = data.get("session_id")
        resume_url = data.get("resume_gateway_url")
        user = data.get("user")
        guilds = data.get("guilds", [])
        if not isinstance(session_id, str) or not session_id:
            raise RemoteProtocolError("READY without session_id")
        if not isinstance(resume_url, str) or not resume_url.startswith(("ws://", "wss://")):
            raise RemoteProtocolError(f"READY with a bad resume_gateway_url: {resume_url!r}")
        if not isinstance(user, dict) or parse_snowflake(user.get("id")) is None:
            raise RemoteProtocolError("READY without a bot user id")
        if not isinstance(guilds, list):
            raise RemoteProtocolError("READY guilds is not a list")
        guild_ids = []
        for guild in guilds:
            gid = parse_snowflake(guild.get("id")) if isinstance(guild, Mapping) else None
            if gid is not None:
                guild_ids.append(gid)
        self.session_id = session_id
        self.resume_url = resume_url
        self.user = user
        self.guild_ids = tuple(guild_ids)
        self._guilds_pending = set(guild_ids)
        self._guilds_listed = len(self._guilds_pending)
        self._guilds_unavailable = 0
        self._guilds_deadline = now + GUILD_LOAD_TIMEOUT
        self.guilds_loaded = False
        self.state = ShardState.CONNECTED
        self._connected_since = now
        self._failed_resumes = 0
        session = self.session_state()
        assert session is not None
        return ShardReady(shard_id=self.shard_id, session=session, user=user, guild_ids=self.guild_ids)
