"""Whole-guild member lists over the gateway: the bookkeeping of op 8 requests and their chunks (docs/discord.md §6.4).

Pure: no trio, no clock (``now`` is a parameter), no I/O. :mod:`adapters.discord.gateway.members` sends the
payloads and waits; :class:`adapters.discord.events_in.DispatchTranslator` feeds the answers (GUILD_MEMBERS_CHUNK,
and RATE_LIMITED when Discord refuses a request).

Why op 8 and not REST paging: one gateway send asks for a whole guild, and the chunks (1,000 members each) come
back over the connection that is already open; REST needs one round trip per 1,000 members under a per-route
rate limit. The send budget (120 per 60 s, 3 kept for heartbeats) allows 117 guilds a minute, and Discord allows
one whole-guild request per guild per 30 s (docs/discord.md §3): a request is made only when a member list is asked
for and not complete in the cache, never for every guild at start-up (the trap docs/discord.md §6.4 describes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from adapters.discord.cache import DiscordCache
from adapters.discord.gateway.payloads import Op
from adapters.discord.snowflakes import to_int

log = logging.getLogger(__name__)

#: Discord answers at most one whole-guild request per guild per this many seconds (docs/discord.md §3)
WHOLE_GUILD_INTERVAL: Final = 30.0
#: a request whose chunks stopped coming for this long is given up (its connection was replaced, say)
REQUEST_STALE_AFTER: Final = 60.0

#: called with (guild id, complete) when a request ends: all chunks in, refused, or given up
OnDone = Callable[[int, bool], None]


@attrs.define
class _Request:
    nonce: str
    evictions_at_start: int
    last_progress: float
    chunk_count: int | None = None
    chunks_seen: set[int] = attrs.field(factory=set)
    members: int = 0
    unreadable: int = 0  #: entries the cache could not take (without their user object: a deviant server)


class MemberRequests:
    """Which guilds' whole member lists are being fetched, and whether each came back complete."""

    def __init__(self, cache: DiscordCache) -> None:
        self.cache = cache
        self.on_done: OnDone | None = None
        self._pending: dict[int, _Request] = {}
        self._last_request: dict[int, float] = {}
        self._counter = 0

    def in_flight(self, guild_id: int, now: float) -> bool:
        """A request for this guild is under way (a stale one is given up here)."""
        request = self._pending.get(guild_id)
        if request is not None and now - request.last_progress >= REQUEST_STALE_AFTER:
            self._finish(guild_id, complete=False)
            return False
        return request is not None

    def may_request(self, guild_id: int, now: float) -> bool:
        """Discord would answer a new whole-guild request for this guild now."""
        last = self._last_request.get(guild_id)
        return not self.in_flight(guild_id, now) and (last is None or now - last >= WHOLE_GUILD_INTERVAL)

    def start(self, guild_id: int, now: float) -> dict[str, Any]:
        """Begin a request; returns the op 8 payload to send (docs/discord.md §6.4)."""
        guild = self.cache.guilds.get(guild_id)
        self._counter += 1
        nonce = f"members-{self._counter}"
        evictions = guild.members_evicted if guild is not None else 0
        self._pending[guild_id] = _Request(nonce=nonce, evictions_at_start=evictions, last_progress=now)
        self._last_request[guild_id] = now
        if len(self._last_request) > 4 * len(self.cache.guilds) + 64:
            self._last_request = {g: t for g, t in self._last_request.items() if now - t < WHOLE_GUILD_INTERVAL}
        return {
            "op": Op.REQUEST_GUILD_MEMBERS,
            "d": {"guild_id": str(guild_id), "query": "", "limit": 0, "presences": False, "nonce": nonce},
        }

    def cancel(self, guild_id: int) -> None:
        """The payload could not be sent: forget the request (and let a new one be made)."""
        self._pending.pop(guild_id, None)
        self._last_request.pop(guild_id, None)

    def on_chunk(self, data: Mapping[str, Any], now: float, *, unreadable: int = 0) -> None:
        """A GUILD_MEMBERS_CHUNK whose members the cache has just taken in (all but ``unreadable`` of them)."""
        guild_id = to_int(data.get("guild_id"))
        request = self._pending.get(guild_id)
        if request is None or data.get("nonce") != request.nonce:
            return  # someone else's request, or one given up
        request.last_progress = now
        request.chunk_count = max(1, to_int(data.get("chunk_count"), 1))
        request.chunks_seen.add(to_int(data.get("chunk_index")))
        members = data.get("members")
        request.members += len(members) if isinstance(members, list) else 0
        request.unreadable += unreadable
        if len(request.chunks_seen) >= request.chunk_count:
            guild = self.cache.guilds.get(guild_id)
            if request.unreadable:
                log.warning(
                    "guild %d: %d of the %d members Discord sent came without their user object and cannot be named; "
                    "the member list is not complete",
                    guild_id,
                    request.unreadable,
                    request.members,
                )
            complete = (
                guild is not None
                and guild.members_evicted == request.evictions_at_start
                and request.members <= self.cache.max_members_per_guild
                and not request.unreadable
            )
            if guild is not None:
                guild.members_complete = complete
            self._finish(guild_id, complete=complete)

    def on_rate_limited(self, data: Mapping[str, Any]) -> None:
        """RATE_LIMITED for an op 8 (docs/discord.md §3): the request ends incomplete (the caller pages REST)."""
        if to_int(data.get("opcode"), -1) != Op.REQUEST_GUILD_MEMBERS:
            return
        meta = data.get("meta")
        guild_id = to_int(meta.get("guild_id")) if isinstance(meta, Mapping) else 0
        request = self._pending.get(guild_id)
        if request is not None and meta is not None and meta.get("nonce") in (None, request.nonce):
            self._finish(guild_id, complete=False)

    def _finish(self, guild_id: int, *, complete: bool) -> None:
        self._pending.pop(guild_id, None)
        if self.on_done is not None:
            self.on_done(guild_id, complete)
