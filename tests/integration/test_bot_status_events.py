"""What a framework is told about the bot (issue 15): exactly one BotOnlineEvent per verify — not a second one from
the outbox (the process's first READY) — and, while Discord is away, BotOfflineEventDropped instead of a false
BotOnlineEvent, then BotReloginEvent when it is back."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.emulated import say
from tests.integration.test_end_to_end import ALICE, CHANNEL, running_bridge, wait_group_messages


def types(connection: object) -> list[object]:
    return [e.get("type") for e in connection.events]  # type: ignore[attr-defined]


async def test_one_bot_online_event_per_verify(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env:
            discord = env.discord
            first = await env.framework.wait_connection()
            await first.wait_verified()
            await say(discord, CHANNEL, ALICE, "one")
            await wait_group_messages(env.framework, 1)
            await first.close(1001)  # the framework goes away and comes back: a second verify
            second = await env.framework.wait_connection(1)
            await second.wait_verified()
            await say(discord, CHANNEL, ALICE, "two")
            await wait_group_messages(env.framework, 2)
    assert types(first).count("BotOnlineEvent") == 1, types(first)
    assert types(second).count("BotOnlineEvent") == 1, types(second)


async def test_a_verify_while_discord_is_away_says_dropped_then_relogin(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env:
            discord = env.discord
            first = await env.framework.wait_connection()
            await first.wait_verified()
            discord.gateway.close_on_identify = 4000  # Discord stays away until told otherwise
            discord.gateway.refuse_resume = True
            await discord.drop_connection()
            await first.close(1001)
            second = await env.framework.wait_connection(1)
            await second.wait_verified()
            await second.wait_events(1)
            assert types(second)[:1] == ["BotOfflineEventDropped"]
            discord.gateway.close_on_identify = None
            with trio.fail_after(30):
                while "BotReloginEvent" not in types(second):
                    await trio.sleep(0.05)
    assert "BotOnlineEvent" not in types(second), types(second)
