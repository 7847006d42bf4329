"""friendList across a restart (issue 15): the users the bot has a DM channel with are kept in the store's file,
so a restarted bridge still lists them (it used to forget everyone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from relay.sandbox.emulator.emulator import Emulator
from tests.integration.test_end_to_end import running_bridge

CAROL = 6301


def with_carol(discord: Emulator) -> None:
    discord.world.add_user(CAROL, "carol", global_name="Carol C")


async def friend_ids(env: Any) -> list[int]:
    conn = await env.framework.wait_connection()
    await conn.wait_verified()
    answer = await conn.request("friendList", {})
    assert answer["code"] == 0, answer
    return [friend["id"] for friend in answer["data"]]


async def test_a_dm_contact_is_still_a_friend_after_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_bridge(tmp_path, before_start=with_carol) as env:
            discord = env.discord
            dm = discord.actions.open_dm(CAROL)
            discord.actions.post_message(int(dm["id"]), "hello bot", author_id=CAROL)
            with trio.fail_after(20):
                while not any(e.data.get("type") == "FriendMessage" for e in env.framework.events):
                    await trio.sleep(0.02)
            assert CAROL in await friend_ids(env)
        async with running_bridge(tmp_path, before_start=with_carol) as again:
            friends = await friend_ids(again)
            conn = again.framework.connections[0]
            answer: dict[str, Any] = await conn.request("friendList", {})
    assert CAROL in friends
    carol = next(f for f in answer["data"] if f["id"] == CAROL)
    assert carol["nickname"] == "Carol C"  # the name is fetched again; the contact itself was kept
