"""Readiness of the Discord side over real sockets (issue 18): Gateway.guilds_loaded becomes true only once every
guild READY listed has arrived (the emulated gateway keeps one guild unavailable, as in an outage, until the test
makes it available)."""

from __future__ import annotations

import trio

from adapters.discord.gateway.events import ShardGuildsLoaded
from tests.integration.test_discord_shard import Collector, start_discord, start_gateway


async def test_the_gateway_is_ready_once_the_last_guild_of_ready_arrived() -> None:
    async with trio.open_nursery() as nursery:
        discord = await start_discord(nursery, guilds=(5, 6, 7), unavailable_guilds={7})
        collector = Collector()
        gateway = await start_gateway(nursery, discord, collector)  # returns at READY
        while len(collector.dispatches("GUILD_CREATE")) < 2:
            await trio.sleep(0.01)
        assert not gateway.guilds_loaded  # guild 7 has not arrived
        assert collector.of(ShardGuildsLoaded) == []
        await discord.guild_available(7)
        await gateway.wait_guilds_loaded()
        assert gateway.guilds_loaded
        assert collector.of(ShardGuildsLoaded) == [ShardGuildsLoaded(shard_id=0, guilds=3, unavailable=0)]
        nursery.cancel_scope.cancel()
