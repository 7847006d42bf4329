"""Discord gateway protocol, sans-I/O (discord.md §2–§5).

Nothing here does I/O, reads the clock or touches the ``random`` module's global state: the trio shell
(:mod:`adapters.discord.gateway.shard`) feeds decoded payloads and ``now`` in, and reads events, frames to send and
deadlines back out — the h11 / wsproto shape.

Pieces:

* constants (:class:`Op`, close codes) and :func:`classify_close` / :func:`fatal_close_advice`;
* :class:`ZlibStreamInflater` and :class:`PayloadDecoder` (transport decompression + JSON);
* :class:`GatewayBotInfo` (``GET /gateway/bot``) and :class:`SessionState` (what a resume needs);
* pure limiters: :class:`SendRateLimiter` (120 sends / 60 s per connection), :class:`IdentifyPacer`
  (daily identify budget + ``max_concurrency`` buckets) and :func:`backoff_delay`;
* :class:`ShardSession`, one shard's state machine that survives reconnects.

Theory of operation of :class:`ShardSession` (one instance per shard, for the life of the process)::

    DISCONNECTED --connection_opened--> AWAITING_HELLO --op 10--> IDENTIFY_PENDING --identify_now--> AUTHENTICATING
                                                      \\--op 10 (have session)--> AUTHENTICATING (op 6 queued)
    AUTHENTICATING --READY / RESUMED--> CONNECTED
    any connected state --op 7 / op 9 / zombie / abort()--> CLOSING (shell closes the socket with close_code)
    any connected state or CLOSING --connection_lost--> DISCONNECTED (retry after will_retry_in) or STOPPED (fatal)

The machine never closes with 1000/1001 (they end the Discord session) nor 1006 (wsproto turns it into
1000): every close it asks for uses :data:`RESUMABLE_CLOSE_CODE` (discord.md §2.12).
"""

from __future__ import annotations

import enum
import json
import math
import random
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeAlias
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs

from adapters.discord.snowflakes import parse_snowflake
from relay import fastjson
from relay.backoff import backoff_delay
from relay.config import PRIVILEGED_INTENTS, BackoffConfig
from relay.errors import FrameTooLarge, GatewayClosed, IdentifyBudgetExhausted, LocalProtocolError, RemoteProtocolError

# --------------------------------------------------------------------------- constants

#: gateway API version we speak (discord.md §2.2)
GATEWAY_VERSION: Final = 10
#: Z_SYNC_FLUSH marker that ends every complete zlib-stream payload (discord.md §4.1)
ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
#: outgoing payloads larger than this make Discord close with 4002 (discord.md §2.3)
MAX_OUTGOING_PAYLOAD_BYTES: Final = 4096
#: gateway sends allowed per connection per window (discord.md §3)
SEND_LIMIT: Final = 120
SEND_WINDOW_SECONDS: Final = 60.0
#: sends kept free for heartbeats/identify/resume; the normal lane gets SEND_LIMIT - this (hikari uses 3, §3)
PRIORITY_SEND_RESERVE: Final = 3
#: at most ``max_concurrency`` identifies per this many seconds, bucketed by shard id (discord.md §3)
IDENTIFY_WINDOW_SECONDS: Final = 5.0
#: Discord's identify budget window when reset_after has passed and we have not re-read /gateway/bot (§2.5)
IDENTIFY_BUDGET_WINDOW_SECONDS: Final = 24 * 3600.0
#: op 9: wait a random 1–5 s before the next attempt (discord.md §2.9)
INVALID_SESSION_DELAY: Final = (1.0, 5.0)
#: a connection that stayed READY/RESUMED this long resets the reconnect backoff (hikari's window, §2.13)
HEALTHY_CONNECTION_SECONDS: Final = 30.0
#: our close code when we mean to resume: any 4xxx keeps the session (discord.md §2.12; discord.py uses 4000)
RESUMABLE_CLOSE_CODE: Final = 4000
#: after this many resume attempts that never reached RESUMED, resume via the main URL (tatsuworks #87, §2.7)
RESUME_URL_FALLBACK_AFTER: Final = 3
#: ... and after this many, give the session up and identify (buape/carbon #364, discord.md §2.7)
RESUME_GIVE_UP_AFTER: Final = 6
#: user sends queued per shard before send_nowait refuses: ~8 minutes of the 117/min normal lane
MAX_PENDING_SENDS: Final = 1000
#: default identify ``properties`` (discord.md §2.5)
DEFAULT_PROPERTIES: Final[Mapping[str, str]] = {
    "os": "linux",
    "browser": "discord-mirai-relay",
    "device": "discord-mirai-relay",
}


class Op(enum.IntEnum):
    """Gateway opcodes (discord.md §2.3)."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


# Close codes sent by Discord (discord.md §2.11).
CLOSE_UNKNOWN_ERROR: Final = 4000
CLOSE_UNKNOWN_OPCODE: Final = 4001
CLOSE_DECODE_ERROR: Final = 4002
CLOSE_NOT_AUTHENTICATED: Final = 4003
CLOSE_AUTHENTICATION_FAILED: Final = 4004
CLOSE_ALREADY_AUTHENTICATED: Final = 4005
CLOSE_INVALID_SEQ: Final = 4007
CLOSE_RATE_LIMITED: Final = 4008
CLOSE_SESSION_TIMED_OUT: Final = 4009
CLOSE_INVALID_SHARD: Final = 4010
CLOSE_SHARDING_REQUIRED: Final = 4011
CLOSE_INVALID_API_VERSION: Final = 4012
CLOSE_INVALID_INTENTS: Final = 4013
CLOSE_DISALLOWED_INTENTS: Final = 4014

#: codes after which reconnecting cannot help (discord.md §2.11, "reconnect: no")
FATAL_CLOSE_CODES: Final = frozenset(
    {
        CLOSE_AUTHENTICATION_FAILED,
        CLOSE_INVALID_SHARD,
        CLOSE_SHARDING_REQUIRED,
        CLOSE_INVALID_API_VERSION,
        CLOSE_INVALID_INTENTS,
        CLOSE_DISALLOWED_INTENTS,
    }
)
#: codes after which the session is gone: skip the pointless resume and identify (discord.md §2.11 tip).
#: 4003 "not authenticated" means Discord has no session for us either.
REIDENTIFY_CLOSE_CODES: Final = frozenset({CLOSE_NOT_AUTHENTICATED, CLOSE_INVALID_SEQ, CLOSE_SESSION_TIMED_OUT})

#: what the Developer Portal calls each privileged intent (Bot → Privileged Gateway Intents)
PORTAL_INTENT_NAMES: Final[Mapping[str, str]] = {
    "GUILD_MEMBERS": "Server Members Intent",
    "GUILD_PRESENCES": "Presence Intent",
    "MESSAGE_CONTENT": "Message Content Intent",
}


class CloseAction(enum.Enum):
    """What to do after the connection ended."""

    RESUME = "resume"  #: reconnect and resume the session
    REIDENTIFY = "reidentify"  #: reconnect and start a new session
    FATAL = "fatal"  #: stop: reconnecting cannot help


def classify_close(code: int | None) -> CloseAction:
    """Classify a close code from Discord (``None``: the socket died without a close frame). discord.md §2.11."""
    if code is None:
        return CloseAction.RESUME
    if code in FATAL_CLOSE_CODES:
        return CloseAction.FATAL
    if code in REIDENTIFY_CLOSE_CODES:
        return CloseAction.REIDENTIFY
    # 1000/1001 from the server, other transport codes, 4000-4002, 4005, 4008 and unknown codes: try a resume;
    # if the session is really gone Discord answers op 9 d=false and we identify.
    return CloseAction.RESUME


def fatal_close_advice(code: int, intents: Iterable[str] = ()) -> str:
    """What the operator must do after a fatal close code (never contains the token)."""
    if code == CLOSE_AUTHENTICATION_FAILED:
        return (
            "Discord rejected the bot token. Copy it again from the Developer Portal (Bot → Reset Token) into the "
            "environment variable named by discord.token_env"
        )
    if code == CLOSE_INVALID_SHARD:
        return "the shard id/count is invalid: check discord.shard_ids and discord.shard_count (or use 'auto')"
    if code == CLOSE_SHARDING_REQUIRED:
        return "the bot is in too many guilds for one shard: set discord.shard_count to 'auto' or a larger number"
    if code == CLOSE_INVALID_API_VERSION:
        return f"Discord no longer accepts gateway v{GATEWAY_VERSION}: upgrade discord-mirai-relay"
    if code == CLOSE_INVALID_INTENTS:
        return "the intents bitfield is invalid: check the names in discord.intents"
    if code == CLOSE_DISALLOWED_INTENTS:
        wanted = sorted(name for name in intents if name in PRIVILEGED_INTENTS)
        if not wanted:
            wanted = sorted(PRIVILEGED_INTENTS)
        portal = ", ".join(f"{PORTAL_INTENT_NAMES[name]} ({name})" for name in wanted)
        return (
            f"enable the privileged intents {portal} in the Discord Developer Portal (your application → Bot → "
            "Privileged Gateway Intents), or remove them from discord.intents"
        )
    return f"close code {code} is not recoverable"


def close_reason_text(code: int | None) -> str:
    """A short human name for a close code, for logs."""
    names = {
        None: "connection lost without a close frame",
        1000: "normal closure",
        1001: "going away",
        1006: "abnormal closure (socket dropped)",
        1009: "message too big",
        CLOSE_UNKNOWN_ERROR: "unknown error",
        CLOSE_UNKNOWN_OPCODE: "unknown opcode",
        CLOSE_DECODE_ERROR: "decode error",
        CLOSE_NOT_AUTHENTICATED: "not authenticated",
        CLOSE_AUTHENTICATION_FAILED: "authentication failed",
        CLOSE_ALREADY_AUTHENTICATED: "already authenticated",
        CLOSE_INVALID_SEQ: "invalid seq",
        CLOSE_RATE_LIMITED: "rate limited (more than 120 sends in 60 s)",
        CLOSE_SESSION_TIMED_OUT: "session timed out",
        CLOSE_INVALID_SHARD: "invalid shard",
        CLOSE_SHARDING_REQUIRED: "sharding required",
        CLOSE_INVALID_API_VERSION: "invalid API version",
        CLOSE_INVALID_INTENTS: "invalid intents",
        CLOSE_DISALLOWED_INTENTS: "disallowed intents",
    }
    return names.get(code, "close code")


def gateway_connect_url(base_url: str, *, compress: bool) -> str:
    """``base_url`` with the query Discord wants (discord.md §2.2); used for the main and the resume URL alike."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise LocalProtocolError(f"gateway URL must be ws:// or wss:// with a host, got {base_url!r}")
    query: dict[str, str | int] = {"v": GATEWAY_VERSION, "encoding": "json"}
    if compress:
        query["compress"] = "zlib-stream"
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


# --------------------------------------------------------------------------- decoding


class ZlibStreamInflater:
    """zlib-stream transport decompression: one instance per connection (discord.md §4.1).

    Binary messages are buffered until the buffer ends with ``00 00 ff ff``; a message that is complete on its
    own (the usual case) is inflated without copying it into the buffer.
    """

    __slots__ = ("_buffer", "_inflater", "_max_size")

    def __init__(self, *, max_size: int) -> None:
        self._inflater = zlib.decompressobj()
        self._buffer = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> bytes | None:
        """Feed one websocket message; return the inflated payload once complete, else ``None``."""
        if not self._buffer and data.endswith(ZLIB_SUFFIX):
            return self._inflate(data)
        self._buffer += data
        if len(self._buffer) > self._max_size:
            size = len(self._buffer)
            self._buffer.clear()
            raise FrameTooLarge(size, self._max_size)
        if not self._buffer.endswith(ZLIB_SUFFIX):
            return None
        chunk = bytes(self._buffer)
        self._buffer.clear()
        return self._inflate(chunk)

    def _inflate(self, data: bytes) -> bytes:
        try:
            out = self._inflater.decompress(data, self._max_size + 1)
        except zlib.error as exc:
            raise RemoteProtocolError(f"corrupt zlib-stream data from the gateway: {exc}") from None
        if len(out) > self._max_size or self._inflater.unconsumed_tail:
            raise FrameTooLarge(len(out), self._max_size)
        return out


class PayloadDecoder:
    """Websocket message → payload dict, for one connection (decompression when ``compressed``)."""

    __slots__ = ("_inflater", "_max_size")

    def __init__(self, *, compressed: bool, max_size: int) -> None:
        self._inflater = ZlibStreamInflater(max_size=max_size) if compressed else None
        self._max_size = max_size

    def feed(self, message: bytes | str) -> dict[str, Any] | None:
        """Return the payload, ``None`` while a split zlib payload is incomplete; RemoteProtocolError on garbage."""
        raw: bytes | str | None
        if self._inflater is not None:
            if isinstance(message, str):
                raise RemoteProtocolError("text frame on a zlib-stream connection (expected binary)")
            raw = self._inflater.feed(message)
            if raw is None:
                return None
        else:
            raw = message
            if len(raw) > self._max_size:
                raise FrameTooLarge(len(raw), self._max_size)
        payload = _loads(raw)
        if not isinstance(payload, dict) or not isinstance(payload.get("op"), int):
            raise RemoteProtocolError("gateway payload is not an object with an integer 'op'")
        return payload


def _loads(raw: bytes | str) -> Any:
    """``json.loads(raw)``, through orjson for the usual document (~3x faster on a 1 KB dispatch). orjson is
    stricter than the stdlib (no NaN, no lone surrogate escapes, no byte order mark); whatever it refuses goes
    through json.loads itself, so results and errors are the stdlib's. One difference remains: an integer beyond
    64 bits becomes a float. Discord sends every id and bit set as a string (discord.md §10), so no real
    payload has one."""
    try:
        return fastjson.loads(raw)
    except ValueError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"gateway sent invalid JSON: {exc}") from None


def encode_payload(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- models


@attrs.frozen(kw_only=True)
class SessionStartLimit:
    """``session_start_limit`` of ``GET /gateway/bot`` (discord.md §2.1). ``reset_after`` is in seconds."""

    total: int
    remaining: int
    reset_after: float
    max_concurrency: int


def _require_int(obj: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RemoteProtocolError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class GatewayBotInfo:
    """What ``GET /gateway/bot`` says (discord.md §2.1)."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit

    @classmethod
    def from_json(cls, obj: object) -> GatewayBotInfo:
        """Parse the JSON body; RemoteProtocolError names the first bad field."""
        if not isinstance(obj, Mapping):
            raise RemoteProtocolError(f"/gateway/bot: expected a JSON object, got {type(obj).__name__}")
        url = obj.get("url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise RemoteProtocolError(f"/gateway/bot: url must be a ws:// or wss:// URL, got {url!r}")
        shards = _require_int(obj, "shards", "/gateway/bot", minimum=1)
        limit = obj.get("session_start_limit")
        if not isinstance(limit, Mapping):
            raise RemoteProtocolError("/gateway/bot: session_start_limit must be an object")
        where = "/gateway/bot: session_start_limit"
        return cls(
            url=url,
            shards=shards,
            session_start_limit=SessionStartLimit(
                total=_require_int(limit, "total", where),
                remaining=_require_int(limit, "remaining", where),
                reset_after=_require_int(limit, "reset_after", where) / 1000.0,  # milliseconds on the wire
                max_concurrency=_require_int(limit, "max_concurrency", where, minimum=1),
            ),
        )


@attrs.frozen(kw_only=True)
class SessionState:
    """What a RESUME needs (discord.md §2.7). Persist it across a quick restart to resume instead of identify."""

    session_id: str
    seq: int | None
    resume_url: str

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "seq": self.seq, "resume_url": self.resume_url}

    @classmethod
    def from_json(cls, obj: object) -> SessionState:
        if not isinstance(obj, Mapping):
            raise RemoteProtocolError("stored gateway session: expected an object")
        session_id, seq, resume_url = obj.get("session_id"), obj.get("seq"), obj.get("resume_url")
        if not isinstance(session_id, str) or not session_id:
            raise RemoteProtocolError("stored gateway session: session_id must be a non-empty string")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise RemoteProtocolError("stored gateway session: seq must be null or an integer >= 0")
        if not isinstance(resume_url, str) or not resume_url.startswith(("ws://", "wss://")):
            raise RemoteProtocolError("stored gateway session: resume_url must be a ws:// or wss:// URL")
        return cls(session_id=session_id, seq=seq, resume_url=resume_url)


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class DispatchReceived:
    """Every op 0 dispatch, READY / RESUMED / GUILD_CREATE included, exactly once per sequence number."""

    shard_id: int
    name: str
    seq: int | None
    data: dict[str, Any]  #: raw ``d``; the adapter's translator consumes it


@attrs.frozen(kw_only=True)
class ShardConnected:
    """A websocket to Discord is open (HELLO not yet received)."""

    shard_id: int
    url: str
    resuming: bool


@attrs.frozen(kw_only=True)
class ShardReady:
    """READY: a new session. ``user`` is the bot user object, ``guild_ids`` the (still unavailable) guilds."""

    shard_id: int
    session: SessionState
    user: dict[str, Any]
    guild_ids: tuple[int, ...]


@attrs.frozen(kw_only=True)
class ShardResumed:
    """RESUMED: the session continues; ``replayed`` dispatches were replayed before it."""

    shard_id: int
    session: SessionState
    replayed: int


@attrs.frozen(kw_only=True)
class ShardDisconnected:
    """The connection ended. ``will_retry_in`` is None when the shard stops (fatal)."""

    shard_id: int
    code: int | None
    action: CloseAction
    will_retry_in: float | None
    reason: str


GatewayEvent: TypeAlias = DispatchReceived | ShardConnected | ShardReady | ShardResumed | ShardDisconnected


# --------------------------------------------------------------------------- limiters


@attrs.define
class SendRateLimiter:
    """Sliding-window gateway send limiter for one connection (discord.md §3).

    The normal lane may use ``limit - reserve`` sends per window; priority sends (heartbeat, identify,
    resume) may use all ``limit``, so a heartbeat always fits.
    """

    limit: int = SEND_LIMIT
    reserve: int = PRIORITY_SEND_RESERVE
    window: float = SEND_WINDOW_SECONDS
    _sent: deque[float] = attrs.field(factory=deque)

    def delay(self, now: float, *, priority: bool) -> float:
        """Seconds until one more send of this lane is allowed (0.0: now)."""
        sent = self._sent
        window = self.window
        # same arithmetic as available_at(), so "available at t" really means "delay(t) == 0"
        while sent and sent[0] + window <= now:
            sent.popleft()
        allowed = self.limit if priority else self.limit - self.reserve
        if len(sent) < allowed:
            return 0.0
        return sent[len(sent) - allowed] + window - now

    def record(self, now: float) -> None:
        self._sent.append(now)

    def available_at(self, *, priority: bool) -> float:
        """Earliest time one more send of this lane may go (-inf: now); may be early, never late."""
        allowed = self.limit if priority else self.limit - self.reserve
        sent = self._sent
        if len(sent) < allowed:
            return -math.inf
        return sent[len(sent) - allowed] + self.window

    def in_window(self, now: float) -> int:
        self.delay(now, priority=True)
        return len(self._sent)


@attrs.define
class IdentifyPacer:
    """Identify pacing shared by all shards of a process (discord.md §2.5, §3).

    * budget: never spend the last ``reserve`` identifies of ``session_start_limit``; when only those are
      left, wait for ``reset_after`` instead (a crash loop must not burn the budget: Discord resets the token);
    * concurrency: bucket = ``shard_id % max_concurrency``; never two identifies of a bucket within 5 s.
    """

    total: int
    remaining: int
    reset_at: float
    max_concurrency: int
    reserve: int
    _last_identify: dict[int, float] = attrs.field(factory=dict)

    @classmethod
    def from_limit(cls, limit: SessionStartLimit, *, now: float, reserve: int) -> IdentifyPacer:
        return cls(
            total=limit.total,
            remaining=limit.remaining,
            reset_at=now + limit.reset_after,
            max_concurrency=max(1, limit.max_concurrency),
            reserve=max(0, reserve),
        )

    def budget_delay(self, now: float) -> float:
        """Seconds until the budget allows an identify. Raises IdentifyBudgetExhausted if it never will."""
        if now >= self.reset_at:
            self.remaining = self.total
            self.reset_at = now + IDENTIFY_BUDGET_WINDOW_SECONDS
        if self.remaining > self.reserve:
            return 0.0
        if self.total <= self.reserve:
            raise IdentifyBudgetExhausted(self.remaining, self.reset_at - now)
        return self.reset_at - now

    def budget_error(self, now: float) -> IdentifyBudgetExhausted:
        """The error describing the current budget wait (for a log line)."""
        return IdentifyBudgetExhausted(self.remaining, max(0.0, self.reset_at - now))

    def slot_delay(self, shard_id: int, now: float) -> float:
        """Seconds until ``acquire`` would likely succeed for this shard, without taking anything."""
        wait = self.budget_delay(now)
        last = self._last_identify.get(shard_id % self.max_concurrency)
        if last is not None:
            wait = max(wait, last + IDENTIFY_WINDOW_SECONDS - now)
        return max(0.0, wait)

    def acquire(self, shard_id: int, now: float) -> float:
        """0.0: the shard may identify now (the slot is taken); else the seconds to wait before asking again."""
        wait = self.budget_delay(now)
        if wait > 0:
            return wait
        bucket = shard_id % self.max_concurrency
        last = self._last_identify.get(bucket)
        if last is not None and now - last < IDENTIFY_WINDOW_SECONDS:
            return last + IDENTIFY_WINDOW_SECONDS - now
        self._last_identify[bucket] = now
        self.remaining -= 1
        return 0.0


# --------------------------------------------------------------------------- the shard state machine


class ShardState(enum.Enum):
    DISCONNECTED = "disconnected"  #: no socket; the shell reconnects after will_retry_in
    AWAITING_HELLO = "awaiting_hello"  #: socket open, waiting for op 10
    IDENTIFY_PENDING = "identify_pending"  #: HELLO seen, no session: waiting for an identify slot
    AUTHENTICATING = "authenticating"  #: op 2 / op 6 sent, waiting for READY / RESUMED
    CONNECTED = "connected"  #: READY or RESUMED seen
    CLOSING = "closing"  #: we decided to close; the shell must close with ``close_code``
    STOPPED = "stopped"  #: fatal close: ``fatal_error`` says why


_LIVE_STATES: Final = frozenset(
    {ShardState.AWAITING_HELLO, ShardState.IDENTIFY_PENDING, ShardState.AUTHENTICATING, ShardState.CONNECTED}
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
    initial_session: SessionState | None = None

    state: ShardState = ShardState.DISCONNECTED
    session_id: str | None = None
    seq: int | None = None
    resume_url: str | None = None
    user: dict[str, Any] | None = None
    guild_ids: tuple[int, ...] = ()
    fatal_error: GatewayClosed | None = None
    close_code: int | None = None  #: set in CLOSING: the code the shell must close the socket with
    latency: float | None = None
    #: dispatches skipped or stripped because their shape was wrong (the shell logs when this grows)
    malformed_dispatches: int = 0

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
    _dispatches: int = 0
    _duplicates: int = 0
    _reconnects: int = 0

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

    def session_state(self) -> SessionState | None:
        if self.session_id is None or self.resume_url is None:
            return None
        return SessionState(session_id=self.session_id, seq=self.seq, resume_url=self.resume_url)

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

    def statistics(self) -> ShardStatistics:
        return ShardStatistics(
            shard_id=self.shard_id,
            state=self.state,
            seq=self.seq,
            dispatches=self._dispatches,
            duplicates_dropped=self._duplicates,
            malformed_dispatches=self.malformed_dispatches,
            reconnects=self._reconnects,
            latency=self.latency,
            pending_sends=len(self._user_frames),
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
        self._limiter = SendRateLimiter()  # the limit is per connection (discord.md §3)
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
            # answer at once, without moving the schedule (discord.md §2.4 step 5)
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
        return []  # Discord adds opcodes; unknown ones are ignored (discord.md §8a lesson)

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
                    },
                }
            )
        )
        self.state = ShardState.AUTHENTICATING

    def tick(self, *, now: float) -> list[GatewayEvent]:
        """Run timers: heartbeats and zombie detection (discord.md §2.4)."""
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

    def connection_lost(self, code: int | None, *, now: float, reason: str = "") -> list[GatewayEvent]:
        """The socket is gone (``code``: the server's close code; None when it died without one).

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
            action = classify_close(code)
            why = reason or f"{close_reason_text(code)}"
            delay = None
            if action is CloseAction.FATAL:
                assert code is not None  # classify_close(None) is RESUME
                self._drop_session()
                self.state = ShardState.STOPPED
                self.fatal_error = GatewayClosed(
                    code, close_reason_text(code), fatal=True, advice=fatal_close_advice(code, self.intent_names)
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
        # first beat after interval * jitter, jitter in [0, 1) (discord.md §2.4 step 2)
        self._next_heartbeat_at = now + self._heartbeat_interval * self.rng.random()
        self._heartbeat_acked = True
        if self._resuming and self.session_id is not None:
            self._priority_frames.append(
                encode_payload(
                    {"op": Op.RESUME, "d": {"token": self.token, "session_id": self.session_id, "seq": self.seq}}
                )
            )
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
                self._duplicates += 1  # already handed on before the resume (discord.md §2.10)
                return []
            self.seq = seq
        else:
            seq = None
        if not isinstance(name, str) or not name:
            # skipped, but its seq is taken: a resume would replay the same garbage forever
            self.malformed_dispatches += 1
            return []
        data = payload.get("d")
        if not isinstance(data, dict):
            if data is not None:
                self.malformed_dispatches += 1
            data = {}
        self._dispatches += 1
        events: list[GatewayEvent] = [DispatchReceived(shard_id=self.shard_id, name=name, seq=seq, data=data)]
        if self.state is ShardState.AUTHENTICATING and self._resuming and name != "RESUMED":
            self._replayed += 1
        if name == "READY":
            events.append(self._on_ready(data, now))
        elif name == "RESUMED":
            self.state = ShardState.CONNECTED
            self._connected_since = now
            self._failed_resumes = 0
            session = self.session_state()
            assert session is not None  # resuming implies a session
            events.append(ShardResumed(shard_id=self.shard_id, session=session, replayed=self._replayed))
        return events

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
        self.state = ShardState.CONNECTED
        self._connected_since = now
        self._failed_resumes = 0
        session = self.session_state()
        assert session is not None
        return ShardReady(shard_id=self.shard_id, session=session, user=user, guild_ids=self.guild_ids)
