"""What the gateway session machine tells its shell: frozen event classes, and the resume state they carry.

Only data: the machine (:mod:`adapters.discord.gateway.session`) makes them, the trio shard and the adapter read
them (the shape of wsproto's ``events.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs

from adapters.discord.gateway.close_codes import CloseAction
from relay.errors import RemoteProtocolError


@attrs.frozen(kw_only=True)
class ResumeState:
    """What a RESUME needs (docs/discord.md §2.7). Persist it across a quick restart to resume instead of identify."""

    session_id: str
    seq: int | None
    resume_url: str

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "seq": self.seq, "resume_url": self.resume_url}

    @classmethod
    def from_json(cls, obj: object) -> ResumeState:
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


@attrs.frozen(kw_only=True)
class DispatchReceived:
    """Every op 0 dispatch, READY / RESUMED / GUILD_CREATE included, exactly once per sequence number."""

    shard_id: int
    name: str
    seq: int | None
    data: Any  #: raw ``d``, as sent (usually an object); the adapter's translator consumes it


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
    session: ResumeState
    user: dict[str, Any]
    guild_ids: tuple[int, ...]


@attrs.frozen(kw_only=True)
class ShardResumed:
    """RESUMED: the session continues; ``replayed`` dispatches were replayed before it."""

    shard_id: int
    session: ResumeState
    replayed: int


@attrs.frozen(kw_only=True)
class ShardGuildsLoaded:
    """Every guild READY listed has arrived (GUILD_CREATE), or was reported unavailable (GUILD_DELETE, or no
    GUILD_CREATE within the session machine's ``GUILD_LOAD_TIMEOUT``): the shard's state is loaded. Emitted once
    per READY (and on RESUMED when no READY of this process was still loading)."""

    shard_id: int
    guilds: int  #: guilds READY listed (0 after a resume)
    unavailable: int  #: of those, the ones that did not arrive


@attrs.frozen(kw_only=True)
class ShardDisconnected:
    """The connection ended. ``will_retry_in`` is None when the shard stops (fatal)."""

    shard_id: int
    code: int | None
    action: CloseAction
    will_retry_in: float | None
    reason: str


GatewayEvent: TypeAlias = (
    DispatchReceived | ShardConnected | ShardReady | ShardResumed | ShardGuildsLoaded | ShardDisconnected
)
