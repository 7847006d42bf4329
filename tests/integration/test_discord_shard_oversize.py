"""A gateway message above discord.max_message_bytes: close 1009 (resumable), reconnect, the shard lives on."""

from __future__ import annotations

import trio

from tests.integration.test_discord_shard import Collector, message, start_discord, start_gateway, wait_for_seq_count


async def test_oversize_message_closes_with_1009_and_reconnects(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(120):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector, compress=False, max_message_bytes=64 * 1024)
        await discord.dispatch("MESSAGE_CREATE", message(0))
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 1)
        await discord.dispatch("GUILD_CREATE", {"id": "9", "blob": "x" * 100_000})
        while len(discord.gateway.connections) < 2:  # the shard reconnected instead of crashing
            await trio.sleep(0.01)
    assert discord.gateway.client_closes[0][1] == 1009  # not 1000: the session stays resumable (docs/discord.md §2.12)
    assert not collector.dispatches("GUILD_CREATE")
