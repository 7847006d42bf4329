"""memberList for a guild whose GUILD_CREATE listed only some of its members (issue 18): the whole list comes over
the gateway (op 8 → GUILD_MEMBERS_CHUNK), or through REST paging when it cannot.

Real sockets on 127.0.0.1: the emulated Discord (a guild over the Identify's large_threshold: its GUILD_CREATE lists
only the bot, as Discord's does), the real shard, translator, loader and executor.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from adapters.discord.cache import DiscordCache
from adapters.discord.commands_out import DiscordCommandExecutor
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.gateway.events import DispatchReceived, GatewayEvent
from adapters.discord.gateway.members import GatewayMemberLoader
from adapters.discord.gateway.shard import Gateway, serve_gateway
from adapters.discord.member_requests import MemberRequests
from adapters.discord.own_actions import OwnActions
from adapters.discord.rest.client import GatewayBotInfo, open_rest_client
from relay.config import BridgeConfig, DiscordConfig
from relay.envelope import ListMembers, MemberList
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import start_emulator

TOKEN = "test-token-for-member-lists"
GUILD = 900_000_000_000_000_001
OWNER = 900_000_000_000_000_101
GENERAL = 900_000_000_000_000_201
FIRST_USER = 910_000_000_000_000_000
MEMBERS = 2_500  # three chunks of up to 1,000


@attrs.define
class World:
    discord: Emulator
    executor: DiscordCommandExecutor
    cache: DiscordCache
    running: Gateway


@asynccontextmanager
async def world(**cache_bounds: int) -> AsyncIterator[World]:
    discord = Emulator(token=TOKEN)
    discord.world.add_guild(GUILD, "Big guild", owner_id=OWNER)
    discord.world.add_channel(GENERAL, "general", guild_id=GUILD)
    for n in range(MEMBERS):
        discord.world.add_member(GUILD, FIRST_USER + n, username=f"member{n}")
    cache = DiscordCache(**cache_bounds)
    entities = EntityFactory(cache, BridgeConfig().mapping)
    own = OwnActions()
    requests = MemberRequests(cache)
    translator = DispatchTranslator(entities, own, member_requests=requests)
    loader = GatewayMemberLoader(requests, cache)

    def on_event(event: GatewayEvent) -> None:
        if isinstance(event, DispatchReceived):
            translator.on_dispatch(event.name, event.data, trio.current_time())

    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        info = GatewayBotInfo.from_json(discord.gateway.gateway_bot_json(trio.current_time()))

        async def fetch() -> GatewayBotInfo:
            return info

        config = DiscordConfig(api_base_url=discord.base_url, gateway_url=discord.gateway_url)
        running: Gateway = await nursery.start(
            partial(
                serve_gateway,
                config=config,
                token=TOKEN,
                fetch_gateway_info=fetch,
                on_event=on_event,
                rng=random.Random(3),
            )
        )
        await running.wait_guilds_loaded()
        loader.attach(running)
        async with open_rest_client(config, TOKEN) as client:
            executor = DiscordCommandExecutor(client, entities, own, BridgeConfig(), member_loader=loader)
            yield World(discord=discord, executor=executor, cache=cache, running=running)
        nursery.cancel_scope.cancel()


def user_ids(result: Any) -> set[int]:
    assert isinstance(result, MemberList)
    return {m.user_id for m in result.members}


async def test_member_list_of_a_partly_listed_guild_comes_whole_over_the_gateway() -> None:
    async with world() as w:
        assert w.running.guilds_loaded
        guild = w.cache.guilds[GUILD]
        # a large guild: GUILD_CREATE listed only the bot (none of the others), member_count says how many there are
        assert not guild.members_complete and len(guild.members) == 0 and guild.member_count == MEMBERS + 2
        results: list[Any] = []

        async def ask() -> None:
            results.append(await w.executor.execute(ListMembers(group_id=GENERAL)))

        async with trio.open_nursery() as nursery:  # two asked before the list is complete: both wait for it
            nursery.start_soon(ask)
            nursery.start_soon(ask)
        everyone = {FIRST_USER + n for n in range(MEMBERS)} | {OWNER}
        assert [user_ids(r) for r in results] == [everyone, everyone]
        assert len(w.discord.gateway.member_requests) == 1  # one op 8 for both
        (request,) = w.discord.gateway.member_requests
        assert request.payload["d"]["guild_id"] == str(GUILD) and request.payload["d"]["limit"] == 0
        assert w.discord.requests_to("GET /guilds/{guild_id}/members") == []
        assert guild.members_complete
        again = await w.executor.execute(ListMembers(group_id=GENERAL))  # from the cache now
        assert user_ids(again) == everyone and len(w.discord.gateway.member_requests) == 1


async def test_a_guild_larger_than_the_cache_bound_pages_through_rest() -> None:
    async with world(max_members_per_guild=1_000, max_members_total=5_000) as w:
        result = await w.executor.execute(ListMembers(group_id=GENERAL))
        assert len(user_ids(result)) == MEMBERS + 1
        assert w.discord.gateway.member_requests == []
        assert len(w.discord.requests_to("GET /guilds/{guild_id}/members")) == 3  # pages of 1,000


async def test_a_list_evicted_meanwhile_is_not_complete_and_rest_answers() -> None:
    async with world(max_members_per_guild=5_000, max_members_total=1_000) as w:
        # the whole list (2,501) does not fit the global bound: the chunks evict their own members
        result = await w.executor.execute(ListMembers(group_id=GENERAL))
        assert len(user_ids(result)) == MEMBERS + 1
        assert len(w.discord.gateway.member_requests) == 1
        assert not w.cache.guilds[GUILD].members_complete
        assert w.discord.requests_to("GET /guilds/{guild_id}/members") != []
