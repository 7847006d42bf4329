"""GroupRecallEvent.operator through the whole bridge (issue 15): the author for a self-deletion, null only for the
bridge's own recall (it used to be null always, which in mirai means the bot did it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.emulated import say
from tests.integration.test_end_to_end import ALICE, CHANNEL, running_bridge, wait_group_messages


async def wait_recalls(framework: Any, count: int) -> list[dict[str, Any]]:
    with trio.fail_after(20):
        while True:
            found = [e.data for e in framework.events if e.data.get("type") == "GroupRecallEvent"]
            if len(found) >= count:
                return found
            await trio.sleep(0.02)


async def test_recall_operator_is_the_author_or_null_for_the_bot(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env:
            discord = env.discord
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            created = await say(discord, CHANNEL, ALICE, "to be deleted by its author")
            (event,) = await wait_group_messages(env.framework, 1)
            discord.actions.delete_message(CHANNEL, int(created["id"]), actor_id=ALICE)
            (by_author,) = await wait_recalls(env.framework, 1)

            sent = await conn.request(
                "sendGroupMessage", {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "mine"}]}
            )
            assert (await conn.request("recall", {"target": CHANNEL, "messageId": sent["messageId"]}))["code"] == 0
            # Discord's MESSAGE_DELETE for the bot's own delete comes by itself (the old fake had to be told to)
            (deleted,) = discord.requests_to("DELETE /channels/{channel_id}/messages/{message_id}")
            assert deleted.status == 204
            by_bot = (await wait_recalls(env.framework, 2))[1]
    source_id = event["messageChain"][0]["id"]  # type: ignore[index]
    assert by_author["messageId"] == source_id and by_author["authorId"] == ALICE
    assert by_author["operator"] is not None and by_author["operator"]["id"] == ALICE
    assert by_bot["messageId"] == sent["messageId"] and by_bot["operator"] is None
