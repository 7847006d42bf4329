"""GroupRecallEvent.operator through the whole bridge (issue 15): the author for a self-deletion, null only for the
bridge's own recall (it used to be null always, which in mirai means the bot did it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.integration.test_end_to_end import ALICE, CHANNEL, GUILD, running_bridge, wait_group_messages


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
            world = env.world
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            created = world.user_message(CHANNEL, ALICE, "to be deleted by its author")
            await world.gateway.dispatch("MESSAGE_CREATE", created)
            (event,) = await wait_group_messages(env.framework, 1)
            await world.gateway.dispatch(
                "MESSAGE_DELETE", {"id": created["id"], "channel_id": str(CHANNEL), "guild_id": str(GUILD)}
            )
            (by_author,) = await wait_recalls(env.framework, 1)

            sent = await conn.request(
                "sendGroupMessage", {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "mine"}]}
            )
            assert (await conn.request("recall", {"target": CHANNEL, "messageId": sent["messageId"]}))["code"] == 0
            deleted = world.rest.requests_to("DELETE /channels/{channel_id}/messages/{message_id}")[-1]
            await world.gateway.dispatch(
                "MESSAGE_DELETE",
                {"id": deleted.path.rsplit("/", 1)[-1], "channel_id": str(CHANNEL), "guild_id": str(GUILD)},
            )
            by_bot = (await wait_recalls(env.framework, 2))[1]
    source_id = event["messageChain"][0]["id"]  # type: ignore[index]
    assert by_author["messageId"] == source_id and by_author["authorId"] == ALICE
    assert by_author["operator"] is not None and by_author["operator"]["id"] == ALICE
    assert by_bot["messageId"] == sent["messageId"] and by_bot["operator"] is None
