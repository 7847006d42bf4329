"""The sandbox's chat page without a browser: its files, its JSON API and its live websocket over real loopback
sockets, with the demo bot and the bridge behind the emulated Discord; and the page API's loopback rules.

(tests/integration/test_sandbox_browser.py drives the same page in headless Chromium.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from relay.errors import WebSocketHandshakeFailed
from relay.sandbox import chatpage
from relay.sandbox.emulator import defaults
from relay.sandbox.run import RunningSandbox
from relay.wire.client import connect_websocket
from relay.wire.connection import WebSocketConnection
from tests.integration.sandboxing import GUARD, framework_log, make_png, running_sandbox

GENERAL = str(defaults.GENERAL)
PNG = make_png()


def origin(running: RunningSandbox) -> str:
    return running.emulator.origin


async def open_live(running: RunningSandbox, *, origin_header: str | None = None) -> WebSocketConnection:
    headers = [("origin", origin_header or origin(running))]
    return await connect_websocket(
        f"ws://127.0.0.1:{running.emulator.port}{chatpage.LIVE_PATH}", max_message_size=1 << 20, headers=headers
    )


async def notices_until(ws: WebSocketConnection, predicate: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while not any(predicate(n) for n in seen):
        seen.append(json.loads(await ws.get_message()))
    return seen


def page_client(running: RunningSandbox) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=origin(running), headers={"origin": origin(running)})


async def test_the_page_and_its_files_are_served(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with running_sandbox(tmp_path, demo_bot=False) as running, page_client(running) as http:
            assert running.url == f"{origin(running)}/sandbox/"
            root = await http.get("/")
            assert (root.status_code, root.headers["location"]) == (303, "/sandbox/")
            page = await http.get("/sandbox/")
            css = await http.get("/sandbox/static/page.css")
            script = await http.get("/sandbox/static/page.js")
            missing = await http.get("/sandbox/static/other.js")
            discord = await http.get("/api/v10/users/@me")  # the emulated Discord is still there, beside the page
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert b"/sandbox/static/page.js" in page.content
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "https:" not in policy  # nothing from the internet
    assert css.headers["content-type"].startswith("text/css") and b"#messages" in css.content
    assert script.headers["content-type"].startswith("text/javascript") and b"/sandbox/live" in script.content
    assert missing.status_code == 404
    assert discord.status_code == 401  # no token: Discord's own answer


async def test_a_member_talks_to_the_demo_bot_and_the_page_sees_it_live(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with framework_log() as framework, running_sandbox(tmp_path) as running, page_client(running) as http:
            await framework.wait_for(lambda line: "verify: ok" in line)
            live = await open_live(running)
            sent = await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages",
                json={"author_id": str(defaults.BOB), "content": "echo hi"},
            )
            assert sent.status_code == 201
            asked = sent.json()["id"]
            notices = await notices_until(
                live, lambda n: n["type"] == "request" and n["entry"]["route"] == "POST /channels/{channel_id}/messages"
            )
            messages = (await http.get(f"/sandbox/api/channels/{GENERAL}/messages")).json()
            entries = (await http.get("/sandbox/api/requests")).json()
            await live.aclose(1000)
    assert {"type": "dispatch", "name": "MESSAGE_CREATE", "channel_id": GENERAL} in notices
    answer = messages[-1]
    assert (answer["author"], answer["bot"], answer["content"]) == ("relay-bot", True, "hi")
    assert answer["reply"]["id"] == asked and answer["reply"]["content"] == "echo hi"
    sent_entry = next(e for e in entries if e["route"] == "POST /channels/{channel_id}/messages")
    assert sent_entry["status"] == 200 and json.loads(sent_entry["sent"])["content"] == "hi"
    assert json.loads(sent_entry["sent"])["message_reference"]["message_id"] == asked
    assert sent_entry["result"] == f"id {answer['id']}"
    assert entries[0]["route"] == "GET /gateway/bot"  # the bridge's first call
    assert framework.find(lambda line: "GroupMessage" in line and "'echo hi'" in line)


async def test_uploads_deletes_and_member_actions_reach_the_framework(tmp_path: Path) -> None:
    erin = str(defaults.ERIN)
    with trio.fail_after(GUARD):
        async with framework_log() as framework, running_sandbox(tmp_path) as running, page_client(running) as http:
            await framework.wait_for(lambda line: "verify: ok" in line)
            upload = await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages",
                data={"author_id": str(defaults.ALICE), "content": "a dot"},
                files={"file": ("dot.png", PNG, "image/png")},
            )
            assert upload.status_code == 201, upload.text
            await framework.wait_for(lambda line: "'a dot' [Image]" in line)
            shown = (await http.get(f"/sandbox/api/channels/{GENERAL}/messages")).json()[-1]
            image = await http.get(shown["attachments"][0]["url"])
            assert (image.status_code, image.content) == (200, PNG)

            joined = await http.post(f"/sandbox/api/members/{erin}/join", json={"actor_id": str(defaults.ALICE)})
            assert joined.status_code == 200
            await framework.wait_for(lambda line: line.startswith("MemberJoinEvent: Erin"))
            welcome = await framework.wait_for(lambda line: "sendGroupMessage" in line and "welcome" in line)

            timeout = await http.post(
                f"/sandbox/api/members/{erin}/timeout", json={"actor_id": str(defaults.BOB), "minutes": 10}
            )
            assert timeout.status_code == 200
            await framework.wait_for(lambda line: line.startswith("MemberMuteEvent"))
            refused = await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages", json={"author_id": erin, "content": "let me speak"}
            )
            assert refused.status_code == 403 and "timed out" in refused.json()["message"]

            nick = await http.post(f"/sandbox/api/members/{erin}/nick", json={"nick": "E"})
            assert nick.status_code == 200
            await framework.wait_for(lambda line: line.startswith("MemberCardChangeEvent"))

            bot_messages = [m for m in (await http.get(f"/sandbox/api/channels/{GENERAL}/messages")).json() if m["bot"]]
            deleted = await http.delete(
                f"/sandbox/api/channels/{GENERAL}/messages/{bot_messages[-1]['id']}",
                params={"actor_id": str(defaults.ALICE)},
            )
            assert deleted.status_code == 200
            # Discord does not say who deleted a message: the bridge reports no operator (docs: events_in)
            await framework.wait_for(lambda line: line.startswith("GroupRecallEvent"))

            kicked = await http.post(f"/sandbox/api/members/{erin}/kick", json={"actor_id": str(defaults.ALICE)})
            assert kicked.status_code == 200
            await framework.wait_for(lambda line: line.startswith("MemberLeaveEventKick"))
            state = (await http.get("/sandbox/api/state")).json()
    assert "welcome" in welcome
    assert erin in [u["id"] for u in state["outside"]]


async def test_what_the_page_api_refuses(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with running_sandbox(tmp_path, demo_bot=False) as running, page_client(running) as http:
            rebinding = await http.get("/sandbox/api/state", headers={"host": "evil.example"})
            cross_site = await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages",
                json={"author_id": str(defaults.BOB), "content": "hi"},
                headers={"origin": "http://evil.example"},
            )
            with pytest.raises(WebSocketHandshakeFailed) as live:
                await open_live(running, origin_header="http://evil.example")
            outsider = await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages", json={"author_id": str(defaults.ERIN), "content": "hi"}
            )
            empty = await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages", json={"author_id": str(defaults.BOB), "content": " "}
            )
            unknown_channel = await http.get("/sandbox/api/channels/1/messages")
            kick_the_bot = await http.post(f"/sandbox/api/members/{running.emulator.world.bot_user_id}/kick", json={})
            what = await http.post(f"/sandbox/api/members/{defaults.BOB}/dance", json={})
            in_world = len(running.emulator.world.messages[defaults.GENERAL])
    assert rebinding.status_code == 403 and "loopback" in rebinding.json()["message"]
    assert cross_site.status_code == 403 and "another origin" in cross_site.json()["message"]
    assert live.value.status == 403
    assert outsider.status_code == 403 and "not a member" in outsider.json()["message"]
    assert empty.status_code == 422
    assert unknown_channel.status_code == 404 and unknown_channel.json()["message"] == "Unknown Channel"
    assert kick_the_bot.status_code == 422
    assert what.status_code == 404
    assert in_world == 1  # only the welcome message: nothing refused was posted


async def test_a_restart_keeps_the_world(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        async with running_sandbox(tmp_path, demo_bot=False) as running, page_client(running) as http:
            await http.post(
                f"/sandbox/api/channels/{GENERAL}/messages", json={"author_id": str(defaults.DAVE), "content": "kept"}
            )
        async with running_sandbox(tmp_path, demo_bot=False) as running, page_client(running) as http:
            contents = [m["content"] for m in (await http.get(f"/sandbox/api/channels/{GENERAL}/messages")).json()]
    assert contents[-1] == "kept" and len(contents) == 2
    assert set(os.listdir(tmp_path)) >= {"discord.sqlite3", "bridge.sqlite3"}
