"""Whole-guild member lists through the gateway, trio side: send op 8 within the shard's send budget and wait
for the chunks (:mod:`adapters.discord.member_requests` keeps the books; docs/discord.md §6.4).

:class:`GatewayMemberLoader` is what :class:`adapters.discord.commands_out.DiscordCommandExecutor` awaits for a
``memberList`` whose guild is not complete in the cache. It answers False (the caller then pages through REST)
when the list cannot come this way: no gateway yet, a guild larger than the cache's per-guild bound, Discord's
one-request-per-30-s limit, a full send queue, or Discord refusing (RATE_LIMITED).
"""

from __future__ import annotations

import logging

import trio

from adapters.discord.cache import DiscordCache
from adapters.discord.gateway.shard import Gateway
from adapters.discord.member_requests import MemberRequests
from relay.errors import ConfigError

log = logging.getLogger(__name__)


class GatewayMemberLoader:
    """Fetches a guild's whole member list into the cache with op 8 (one request per guild at a time)."""

    def __init__(self, requests: MemberRequests, cache: DiscordCache) -> None:
        self.requests = requests
        self.cache = cache
        self.gateway: Gateway | None = None
        self._waiting: dict[int, trio.Event] = {}
        requests.on_done = self._done

    def attach(self, gateway: Gateway) -> None:
        """The running gateway (requests go out on the shard of each guild)."""
        self.gateway = gateway

    async def load_all(self, guild_id: int) -> bool:
        """True when the cache holds the guild's whole member list (now, or once the chunks are in).

        A caller that is cancelled meanwhile leaves the request running: the chunks still fill the cache.
        """
        guild = self.cache.guilds.get(guild_id)
        if guild is None or self.gateway is None:
            return False
        if guild.members_complete:
            return True
        if guild.member_count > self.cache.max_members_per_guild:
            return False  # it would not fit: REST lists it page by page
        now = trio.current_time()
        done = self._waiting.get(guild_id)
        if done is None or not self.requests.in_flight(guild_id, now):
            if not self.requests.may_request(guild_id, now):
                return False
            payload = self.requests.start(guild_id, now)
            shard_id = (guild_id >> 22) % self.gateway.shard_count  # docs/discord.md §3 (sharding)
            try:
                self.gateway.send_nowait(shard_id, payload)
            except (trio.WouldBlock, ConfigError) as exc:
                self.requests.cancel(guild_id)
                log.info("member list of guild %s: no op 8 (%s); paging through REST", guild_id, type(exc).__name__)
                return False
            done = self._waiting[guild_id] = trio.Event()
        await done.wait()
        current = self.cache.guilds.get(guild_id)
        return current is not None and current.members_complete

    def _done(self, guild_id: int, complete: bool) -> None:
        done = self._waiting.pop(guild_id, None)
        if done is not None:
            done.set()
