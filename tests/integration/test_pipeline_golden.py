"""Golden tests of both data paths through tests/pipeline.py (the production wiring, no sockets).

Discord → framework: a dispatch goes in, the exact frame text comes out (compared byte for byte with a file
under tests/golden/, so a change in any module on the path shows up as a diff of the frame).
Framework → Discord: a command frame goes in, the exact REST request and the exact response frame come out.

To update a golden file after an intended change: run the test with ``GOLDEN_UPDATE=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline import BOT_ID, Pipeline, open_pipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "discord"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GUILD = json.loads((FIXTURES / "guild_create.json").read_text(encoding="utf-8"))
GENERAL = 1_100_000_000_000_000_100  # a text channel of the fixture guild: group id = channel id
OWNER = 1_100_000_000_000_000_500  # a member of the fixture guild


def golden(name: str, text: str) -> str:
    path = GOLDEN / name
    if os.environ.get("GOLDEN_UPDATE"):
        path.write_text(text + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").rstrip("\n")


async def test_message_create_becomes_the_exact_group_message_frame(tmp_path: Path) -> None:
    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(GUILD)
        await pipe.verify()
        payload = json.loads((FIXTURES / "message_create_rich.json").read_text(encoding="utf-8"))
        (frame,) = pipe.dispatch("MESSAGE_CREATE", payload)
    assert frame == golden("message_create_rich.frame.json", frame)


async def test_message_delete_of_a_seen_message_becomes_a_group_recall_frame(tmp_path: Path) -> None:
    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(GUILD)
        payload = json.loads((FIXTURES / "message_create_rich.json").read_text(encoding="utf-8"))
        (message_frame,) = pipe.dispatch("MESSAGE_CREATE", payload)
        local_id = json.loads(message_frame)["data"]["messageChain"][0]["id"]
        frames = pipe.dispatch(
            "MESSAGE_DELETE",
            {"id": payload["id"], "channel_id": payload["channel_id"], "guild_id": payload["guild_id"]},
        )
    (recall,) = (json.loads(f)["data"] for f in frames)
    assert recall["type"] == "GroupRecallEvent"
    assert recall["messageId"] == local_id
    assert recall["group"]["id"] == GENERAL


async def send_group_message(pipe: Pipeline, content: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    frames, requests = await pipe.command(
        json.dumps({"syncId": "7", "command": "sendGroupMessage", "content": content})
    )
    (frame,) = frames
    return json.loads(frame), requests


async def test_send_group_message_becomes_the_exact_rest_request_and_response(tmp_path: Path) -> None:
    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(GUILD)
        await pipe.verify()
        payload = json.loads((FIXTURES / "message_create_rich.json").read_text(encoding="utf-8"))
        (incoming,) = pipe.dispatch("MESSAGE_CREATE", payload)
        quoted = json.loads(incoming)["data"]["messageChain"][0]["id"]
        response, requests = await send_group_message(
            pipe,
            {
                "target": GENERAL,
                "quote": quoted,
                "messageChain": [{"type": "At", "target": OWNER}, {"type": "Plain", "text": " hello"}],
            },
        )
        (request,) = requests
    assert request.method == "POST"
    assert request.url.path == f"/api/v10/channels/{GENERAL}/messages"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bot pipeline-token"
    body = json.loads(request.content)
    nonce = body.pop("nonce")
    assert isinstance(nonce, str) and 0 < len(nonce) <= 25  # Discord's nonce limit; random per send
    assert body == {
        "allowed_mentions": {"parse": [], "users": [str(OWNER)], "replied_user": False},
        "content": f"<@{OWNER}> hello",
        "message_reference": {"message_id": payload["id"], "fail_if_not_exists": False},
        "enforce_nonce": True,
    }
    assert response == {"syncId": "7", "data": {"code": 0, "msg": "success", "messageId": quoted + 1}}


async def test_recall_of_the_bridges_own_message_becomes_one_delete(tmp_path: Path) -> None:
    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(GUILD)
        await pipe.verify()
        sent, (post,) = await send_group_message(
            pipe, {"target": GENERAL, "messageChain": [{"type": "Plain", "text": "to be recalled"}]}
        )
        assert json.loads(post.content)["content"] == "to be recalled"
        frames, requests = await pipe.command(
            json.dumps(
                {
                    "syncId": "8",
                    "command": "recall",
                    "content": {"target": GENERAL, "messageId": sent["data"]["messageId"]},
                }
            )
        )
    (delete,) = requests
    assert delete.method == "DELETE"
    assert delete.url.path.startswith(f"/api/v10/channels/{GENERAL}/messages/1300000000000000000")
    assert [json.loads(f) for f in frames] == [{"syncId": "8", "data": {"code": 0, "msg": "success"}}]


@pytest.mark.parametrize("target", [GENERAL + 999, 42])
async def test_a_command_for_an_unknown_group_asks_discord_once_and_answers_code_5(tmp_path: Path, target: int) -> None:
    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(GUILD)
        await pipe.verify()
        response, requests = await send_group_message(
            pipe, {"target": target, "messageChain": [{"type": "Plain", "text": "x"}]}
        )
    # a channel the cache does not know may still exist (created before the bot saw it): one lookup, then 5
    assert [(r.method, r.url.path) for r in requests] == [("GET", f"/api/v10/channels/{target}")]
    assert response["syncId"] == "7" and response["data"]["code"] == 5


async def test_the_bot_id_presented_is_the_discord_bot_user(tmp_path: Path) -> None:
    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(GUILD)
        frames = await pipe.verify()
    assert json.loads(frames[0])["data"]["code"] == 0
    assert pipe.core.identity.bot_id == BOT_ID
