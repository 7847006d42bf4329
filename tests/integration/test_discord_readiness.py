"""Readiness of the Discord side over real sockets (issue 18): Gateway.guilds_loaded becomes true only once every
guild READY listed has arrived (the fake gateway holds one GUILD_CREATE back until the test sends it)."""

from __future__ import annotations

import trio

from adapters.discord.gateway.events import ShardGuildsLoaded
from tests.integration.test_discord_shard import Collector, start_fake, start_gateway


def guild(guild_id: int) -> dict[str, object]:
    return {"id": str(guild_id), "name": f"g{guild_id}", "channels": [], "members": [], "roles": []}


async def test_the_gateway_is_ready_once_the_last_guild_of_ready_arrived() -> None:
    async with trio.open_nursery() as nursery:
        fake = await start_fake(nursery, ready_guilds=[guild(5), guild(6), guild(7)], withheld_guilds={7})
        collector = Collector()
        gateway = await start_gateway(nursery, fake, collector)  # returns at READY
        while len(collector.dispatches("GUILD_CREATE")) < 2:
            await trio.sleep(0.01)
        assert not gateway.guilds_loaded  # guild 7 has not arrived
        assert collector.of(ShardGuildsLoaded) == []
        await fake.dispatch("GUILD_CREATE", guild(7))
        await gateway.wait_guilds_loaded()
        assert gateway.guilds_loaded
        assert collector.of(ShardGuildsLoaded) == [ShardGuildsLoaded(shard_id=0, guilds=3, unavailable=0)]
        nursery.cancel_scope.cancel()
