"""memberList for a guild whose GUILD_CREATE listed only some of its members (issue 18): the whole list comes over
the gateway (op 8 → GUILD_MEMBERS_CHUNK) against the fake gateway, or through REST paging when it cannot.

Real sockets on 127.0.0.1: FakeGateway + FakeDiscordRest, the real shard, translator, loader and executor.
"""

from __future__ import annotations

import copy
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
from tests.fakes.fake_gateway import FakeGateway
from tests.fakes.fake_rest import DEFAULT_BOT_ID, FakeDiscordRest

TOKEN = "test-token-for-member-lists"
GUILD = 900_000_000_000_000_001
OWNER = 900_000_000_000_000_101
GENERAL = 900_000_000_000_000_201
FIRST_USER = 910_000_000_000_000_000
MEMBERS = 2_500  # three chunks of up to 1,000


@attrs.define
class World:
    rest: FakeDiscordRest
    gateway: FakeGateway
    executor: DiscordCommandExecutor
    cache: DiscordCache
    running: Gateway


@asynccontextmanager
async def world(**cache_bounds: int) -> AsyncIterator[World]:
    rest = FakeDiscordRest(token=TOKEN)
    rest.add_guild(GUILD, "Big guild", owner_id=OWNER)
    rest.add_channel(GENERAL, "general", guild_id=GUILD)
    members = [rest.add_member(GUILD, FIRST_USER + n, username=f"member{n}") for n in range(MEMBERS)]
    guild = copy.deepcopy(rest.guilds[GUILD])
    guild["channels"] = [copy.deepcopy(rest.channels[GENERAL])]
    # a large guild: GUILD_CREATE lists the bot and one member; member_count says how many there are
    guild["members"] = [copy.deepcopy(rest.members[(GUILD, DEFAULT_BOT_ID)]), copy.deepcopy(members[0])]
    guild["member_count"] = MEMBERS + 2  # the members, the owner and the bot
    guild["large"] = True
    whole_list = [copy.deepcopy(m) for (g, _), m in rest.members.items() if g == GUILD]
    fake = FakeGateway(
        token=TOKEN,
        bot_user=copy.deepcopy(rest.users[DEFAULT_BOT_ID]),
        ready_guilds=[guild],
        guild_members={GUILD: whole_list},
    )
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
        await nursery.start(rest.serve)
        await nursery.start(fake.serve)
        info = GatewayBotInfo.from_json(fake.gateway_bot_json())

        async def fetch() -> GatewayBotInfo:
            return info

        config = DiscordConfig(api_base_url=rest.base_url, gateway_url=fake.url)
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
            yield World(rest=rest, gateway=fake, executor=executor, cache=cache, running=running)
        nursery.cancel_scope.cancel()


def user_ids(result: Any) -> set[int]:
    assert isinstance(result, MemberList)
    return {m.user_id for m in result.members}


async def test_member_list_of_a_partly_listed_guild_comes_whole_over_the_gateway() -> None:
    async with world() as w:
        assert w.running.guilds_loaded
        guild = w.cache.guilds[GUILD]
        assert not guild.members_complete and len(guild.members) == 1  # GUILD_CREATE listed one of them
        results: list[Any] = []

        async def ask() -> None:
            results.append(await w.executor.execute(ListMembers(group_id=GENERAL)))

        async with trio.open_nursery() as nursery:  # two asked before the list is complete: both wait for it
            nursery.start_soon(ask)
            nursery.start_soon(ask)
        everyone = {FIRST_USER + n for n in range(MEMBERS)} | {OWNER}
        assert [user_ids(r) for r in results] == [everyone, everyone]
        assert len(w.gateway.member_requests) == 1  # one op 8 for both
        (request,) = w.gateway.member_requests
        assert request.payload["d"]["guild_id"] == str(GUILD) and request.payload["d"]["limit"] == 0
        assert w.rest.requests_to("GET /guilds/{guild_id}/members") == []
        assert guild.members_complete
        again = await w.executor.execute(ListMembers(group_id=GENERAL))  # from the cache now
        assert user_ids(again) == everyone and len(w.gateway.member_requests) == 1


async def test_a_guild_larger_than_the_cache_bound_pages_through_rest() -> None:
    async with world(max_members_per_guild=1_000, max_members_total=5_000) as w:
        result = await w.executor.execute(ListMembers(group_id=GENERAL))
        assert len(user_ids(result)) == MEMBERS + 1
        assert w.gateway.member_requests == []
        assert len(w.rest.requests_to("GET /guilds/{guild_id}/members")) == 3  # pages of 1,000


async def test_a_list_evicted_meanwhile_is_not_complete_and_rest_answers() -> None:
    async with world(max_members_per_guild=5_000, max_members_total=1_000) as w:
        # the whole list (2,501) does not fit the global bound: the chunks evict their own members
        result = await w.executor.execute(ListMembers(group_id=GENERAL))
        assert len(user_ids(result)) == MEMBERS + 1
        assert len(w.gateway.member_requests) == 1
        assert not w.cache.guilds[GUILD].members_complete
        assert w.rest.requests_to("GET /guilds/{guild_id}/members") != []
