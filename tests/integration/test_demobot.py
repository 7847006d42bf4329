"""The demo bot (relay/sandbox/demobot.py), driven from the bridge's side over real loopback sockets.

Each test dials the demo bot with relay.wire's client, as the bridge's reverse-ws destination does, and plays
mirai-api-http by hand (docs/mirai-api-http.md §3): it expects ``verify`` (after ``botList`` when the bot has no
qq configured), answers the success frame, pushes events, and checks and answers the commands the bot sends.
"Nothing was sent" is shown without a clock: after the event under test the test pushes ``echo <marker>`` and
the next command the bot sends must be that echo.

The last test runs the demo bot behind the whole bridge against the emulated Discord.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from relay.app import serve_bridge
from relay.config import BridgeConfig, DiscordConfig, MiraiConfig, ReverseWsConfig, ServerConfig, StoreConfig
from relay.errors import WebSocketClosed, WebSocketHandshakeFailed
from relay.sandbox.demobot import DEFAULT_PATH, demo_destination, serve_demo_bot
from relay.sandbox.demobot_logic import HELP_TEXT, RECALL_HINT
from relay.sandbox.emulator.emulator import Emulator
from relay.wire.client import connect_websocket
from relay.wire.connection import WebSocketConnection
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.integration.webclient import RawClient

GUARD = 10  # seconds: a failure guard only, never a measurement
KEY = "demo-verify-key"
BOT = 4242
GROUP = 5001
OTHER_GROUP = 5002
ALICE = 6001
BOB = 6002

Frame = dict[str, Any]


# --------------------------------------------------------------------------- the bridge's side


def member(member_id: int, name: str, group: int = GROUP) -> Frame:
    return {
        "id": member_id,
        "memberName": name,
        "specialTitle": "",
        "permission": "MEMBER",
        "joinTimestamp": 1_600_000_000,
        "lastSpeakTimestamp": 1_700_000_000,
        "muteTimeRemaining": 0,
        "group": {"id": group, "name": "Dev" if group == GROUP else "Other", "permission": "ADMINISTRATOR"},
        "active": None,
    }


def group_message(
    text: str, *, source: int = 100, sender: int = ALICE, group: int = GROUP, quote: int | None = None
) -> Frame:
    chain: list[Frame] = [{"type": "Source", "id": source, "time": 1_700_000_000}]
    if quote is not None:
        chain.append({"type": "Quote", "id": quote, "senderId": BOB, "targetId": group, "groupId": group, "origin": []})
        chain.append({"type": "At", "target": BOB, "display": ""})  # a Discord reply usually mentions too
    chain.append({"type": "Plain", "text": text})
    return {"type": "GroupMessage", "messageChain": chain, "sender": member(sender, "Alice", group)}


class Bridge:
    """One connection to the demo bot, seen from the bridge (mirai-api-http's side of reverse-ws)."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def receive(self) -> Frame:
        frame = json.loads(await self.ws.get_message())
        assert isinstance(frame, dict)
        return frame

    async def expect(self, command: str) -> Frame:
        frame = await self.receive()
        assert frame["command"] == command, frame
        assert isinstance(frame["syncId"], str) and frame["syncId"] != "-1", frame
        return frame

    async def answer(self, frame: Frame, data: Frame) -> None:
        await self.ws.send_message(json.dumps({"syncId": frame["syncId"], "data": data}, ensure_ascii=False))

    async def push(self, event: Frame) -> None:
        await self.ws.send_message(json.dumps({"syncId": "-1", "data": event}, ensure_ascii=False))

    async def verify(self, qq: int | None = BOT) -> Frame:
        """Expect verify, answer the success frame and push BotOnlineEvent, as the bridge does (§3.3, §3.7)."""
        frame = await self.expect("verify")
        assert frame["content"] == {"verifyKey": KEY, "sessionKey": None, "qq": qq}
        await self.answer(frame, {"code": 0, "session": "Ab3dE6gH"})
        await self.push({"type": "BotOnlineEvent", "qq": BOT})
        return frame

    async def expect_send(self, *, message_id: int = 900) -> Frame:
        """The next command must be a sendGroupMessage; answer it with success; return its content."""
        frame = await self.expect("sendGroupMessage")
        await self.answer(frame, {"code": 0, "msg": "success", "messageId": message_id})
        content = frame["content"]
        assert isinstance(content, dict)
        return content

    async def expect_nothing_more(self) -> None:
        """Whatever the bot still had to say about earlier events comes before the echo of a marker."""
        await self.push(group_message("echo marker", source=999))
        content = await self.expect_send()
        assert content["messageChain"] == [{"type": "Plain", "text": "marker"}]


@asynccontextmanager
async def dialed(port: int, path: str = DEFAULT_PATH) -> AsyncIterator[Bridge]:
    ws = await connect_websocket(f"ws://127.0.0.1:{port}{path}", max_message_size=1 << 20)
    try:
        yield Bridge(ws)
    finally:
        with trio.move_on_after(GUARD):
            await ws.aclose(1000)


@asynccontextmanager
async def verified(port: int) -> AsyncIterator[Bridge]:
    async with dialed(port) as bridge:
        await bridge.verify()
        yield bridge


async def start_bot(nursery: trio.Nursery, *, bot_qq: int | None = BOT) -> int:
    port: int = await nursery.start(partial(serve_demo_bot, port=0, verify_key=KEY, bot_qq=bot_qq))
    return port


# --------------------------------------------------------------------------- handshake


async def test_verifies_with_its_key_and_qq_then_echoes_with_a_quote(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.sandbox")
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push(group_message("echo  hello there ", source=12))
            content = await bridge.expect_send()
    assert content == {"target": GROUP, "messageChain": [{"type": "Plain", "text": "hello there"}], "quote": 12}
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("→ verify as bot 4242") for line in lines), lines
    assert any("GroupMessage in group 5001 from Alice (6001): 'echo  hello there '" in line for line in lines)
    assert any(line.startswith("→ sendGroupMessage to group 5001, quoting message 12 (echo)") for line in lines)
    assert any(line == "← sendGroupMessage: ok, message 900" for line in lines)
    assert KEY not in caplog.text


async def test_without_a_qq_it_asks_botlist_first(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery, bot_qq=None)
    with trio.fail_after(GUARD):
        async with dialed(port) as bridge:
            bot_list = await bridge.expect("botList")
            await bridge.answer(bot_list, {"code": 0, "msg": "", "data": [BOT]})
            await bridge.verify(qq=BOT)
            await bridge.expect_nothing_more()
        # a bridge that knows no bot yet: verify without a qq
        async with dialed(port) as bridge:
            bot_list = await bridge.expect("botList")
            await bridge.answer(bot_list, {"code": 0, "msg": "", "data": []})
            await bridge.verify(qq=None)
            await bridge.expect_nothing_more()


async def test_messages_from_the_bound_bot_itself_are_not_answered(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery, bot_qq=None)
    with trio.fail_after(GUARD):
        async with dialed(port) as bridge:
            await bridge.answer(await bridge.expect("botList"), {"code": 0, "msg": "", "data": [BOT]})
            await bridge.verify(qq=BOT)
            await bridge.push(group_message("echo loop", sender=BOT))
            await bridge.expect_nothing_more()


@pytest.mark.parametrize(
    ("refusal", "advice"),
    [
        ({"code": 1, "msg": "Auth Key错误"}, "the verify key differs from the bridge's mirai.verify_key"),
        ({"code": 2, "msg": "指定Bot不存在"}, "the bridge does not serve bot 4242"),
    ],
)
async def test_a_refused_verify_is_explained_and_the_connection_closed(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, refusal: Frame, advice: str
) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with dialed(port) as bridge:
            await bridge.expect("verify")
            await bridge.ws.send_message(json.dumps(refusal, ensure_ascii=False))  # raw: no syncId (§3.3)
            with pytest.raises(WebSocketClosed) as closed:
                await bridge.receive()
            assert closed.value.code == 1000
        # the bridge dials again: a new verify
        async with verified(port) as bridge:
            await bridge.expect_nothing_more()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"← verify refused: code {refusal['code']} ({refusal['msg']}): {advice}" in e for e in errors), errors


async def test_reconnects_get_a_fresh_verify_each(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        for round_ in range(3):
            async with verified(port) as bridge:
                await bridge.push(group_message(f"echo round {round_}"))
                content = await bridge.expect_send()
                assert content["messageChain"] == [{"type": "Plain", "text": f"round {round_}"}]
        # a connection dropped without a close frame, then a new one
        bridge_ws = await connect_websocket(f"ws://127.0.0.1:{port}{DEFAULT_PATH}", max_message_size=1 << 20)
        await Bridge(bridge_ws).expect("verify")
        await trio.aclose_forcefully(bridge_ws._stream)  # the bridge's process died mid-handshake
        async with verified(port) as bridge:
            await bridge.expect_nothing_more()


# --------------------------------------------------------------------------- what it understands


async def test_members_lists_the_count_and_a_few_names(nursery: trio.Nursery) -> None:
    names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace"]
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push(group_message("Members", source=31))
            frame = await bridge.expect("memberList")
            assert frame["content"] == {"target": GROUP}
            members = [member(7000 + i, name) for i, name in enumerate(names)]
            await bridge.answer(frame, {"code": 0, "msg": "", "data": members})
            content = await bridge.expect_send()
            assert content["quote"] == 31
            assert content["messageChain"] == [
                {"type": "Plain", "text": "7 members besides me: Alice, Bob, Carol, Dave, Erin and 2 more."}
            ]

            await bridge.push(group_message("member count", source=32))
            frame = await bridge.expect("memberList")
            await bridge.answer(frame, {"code": 0, "msg": "", "data": [member(ALICE, "Alice")]})
            content = await bridge.expect_send()
            assert content["messageChain"] == [{"type": "Plain", "text": "1 member besides me: Alice."}]

            # a failure is answered in the chat
            await bridge.push(group_message("members", source=33))
            frame = await bridge.expect("memberList")
            await bridge.answer(frame, {"code": 10, "msg": "无操作权限"})
            content = await bridge.expect_send()
            assert content["quote"] == 33
            assert content["messageChain"] == [{"type": "Plain", "text": "memberList failed: code 10 (无操作权限)"}]


async def test_recall_as_a_reply_recalls_the_quoted_message(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.sandbox")
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push(group_message(" recall", source=41, quote=40))
            frame = await bridge.expect("recall")
            assert frame["content"] == {"target": GROUP, "messageId": 40}
            await bridge.answer(frame, {"code": 0, "msg": "success"})
            await bridge.expect_nothing_more()  # success: the message just disappears

            await bridge.push(group_message("recall", source=43, quote=42))
            frame = await bridge.expect("recall")
            await bridge.answer(frame, {"code": 5, "msg": "指定对象不存在"})
            content = await bridge.expect_send()
            assert content["quote"] == 43
            assert content["messageChain"] == [
                {"type": "Plain", "text": "I could not recall that message: code 5 (指定对象不存在)"}
            ]

            # not a reply: a hint
            await bridge.push(group_message("recall", source=44))
            content = await bridge.expect_send()
            assert content["messageChain"] == [{"type": "Plain", "text": RECALL_HINT}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["← recall failed: code 5 (指定对象不存在)"]


async def test_help_says_what_it_understands(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push(group_message("HELP", source=51))
            content = await bridge.expect_send()
    assert content == {"target": GROUP, "messageChain": [{"type": "Plain", "text": HELP_TEXT}], "quote": 51}
    for word in ("echo", "members", "recall", "help"):
        assert f"\n{word}" in HELP_TEXT


async def test_a_newcomer_is_welcomed(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push({"type": "MemberJoinEvent", "member": member(BOB, "bob"), "invitor": None})
            content = await bridge.expect_send()
    assert content == {
        "target": GROUP,
        "messageChain": [
            {"type": "At", "target": BOB, "display": ""},
            {"type": "Plain", "text": " welcome to Dev! Say help to see what I can do."},
        ],
    }


async def test_anything_else_gets_nothing(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery)
    others: list[Frame] = [
        group_message("hello"),
        group_message("echo"),
        group_message("echoes of the past"),
        group_message("please recall"),
        {**group_message("echo hi"), "type": "FriendMessage", "sender": {"id": ALICE, "nickname": "A", "remark": ""}},
        {"type": "GroupRecallEvent", "authorId": ALICE, "messageId": 3, "time": 1, "group": {"id": GROUP}},
        {"type": "MemberLeaveEventQuit", "member": member(BOB, "bob")},
        {"type": "NoSuchEvent"},
    ]
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            for event in others:
                await bridge.push(event)
            await bridge.expect_nothing_more()


async def test_several_commands_in_flight_are_matched_by_sync_id(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push(group_message("members", source=61, group=GROUP))
            await bridge.push(group_message("members", source=62, group=OTHER_GROUP))
            first, second = await bridge.expect("memberList"), await bridge.expect("memberList")
            assert first["syncId"] != second["syncId"]
            by_group = {first["content"]["target"]: first, second["content"]["target"]: second}
            # answered in the opposite order
            await bridge.answer(by_group[OTHER_GROUP], {"code": 0, "msg": "", "data": [member(BOB, "Bob")]})
            content = await bridge.expect_send()
            assert (content["target"], content["quote"]) == (OTHER_GROUP, 62)
            assert content["messageChain"][0]["text"] == "1 member besides me: Bob."
            await bridge.answer(by_group[GROUP], {"code": 0, "msg": "", "data": []})
            content = await bridge.expect_send()
            assert (content["target"], content["quote"]) == (GROUP, 61)
            assert content["messageChain"][0]["text"] == "Nobody here but me."


# --------------------------------------------------------------------------- what it ignores


async def test_bad_frames_are_ignored_and_the_bot_keeps_going(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    port = await start_bot(nursery)
    junk: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"syncId": "-1"}',
        '{"syncId": "-1", "data": {"no": "type"}}',
        '{"syncId": "nobody-asked", "data": {"code": 0}}',
        b"\xff\xfe binary garbage",
        '{"code": 400, "msg": "无效参数"}',  # the bridge could not read a frame (raw, §3.5)
        "指定Bot不存在",
    ]
    with trio.fail_after(GUARD):
        async with dialed(port) as bridge:
            frame = await bridge.expect("verify")
            for message in junk[:6]:  # before the verify answer too
                await bridge.ws.send_message(message)
            await bridge.answer(frame, {"code": 0, "session": "Ab3dE6gH"})
            for message in junk:
                await bridge.ws.send_message(message)
            # an event that is not what its type says
            await bridge.push({"type": "GroupMessage", "messageChain": "?", "sender": None})
            await bridge.push({"type": "MemberJoinEvent", "member": {"id": "x"}})
            await bridge.expect_nothing_more()
            # a response with a syncId the bot used before, after it was answered
            await bridge.push(group_message("echo again"))
            echoed = await bridge.expect("sendGroupMessage")
            await bridge.answer(echoed, {"code": 0, "msg": "success", "messageId": 1})
            await bridge.answer(echoed, {"code": 0, "msg": "success", "messageId": 1})
            await bridge.expect_nothing_more()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the bridge could not read a frame of ours: code 400 (无效参数)" in warnings
    assert sum(w.startswith("ignoring a frame from the bridge: not JSON") for w in warnings) == 5
    assert "ignoring a frame from the bridge: not JSON: '指定Bot不存在'" in warnings


async def test_a_failed_send_is_logged(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        async with verified(port) as bridge:
            await bridge.push(group_message("echo too long"))
            frame = await bridge.expect("sendGroupMessage")
            await bridge.answer(frame, {"code": 30, "msg": "消息过长"})
            await bridge.expect_nothing_more()  # nothing said in the chat about it: it would fail too
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["← sendGroupMessage failed: code 30 (消息过长)"]


async def test_other_paths_and_plain_http_are_refused(nursery: trio.Nursery) -> None:
    port = await start_bot(nursery)
    with trio.fail_after(GUARD):
        with pytest.raises(WebSocketHandshakeFailed) as refused:
            await connect_websocket(f"ws://127.0.0.1:{port}/elsewhere", max_message_size=1 << 20)
        assert refused.value.status == 404
        async with RawClient.connect(port) as client:
            at_path = await client.request("GET", DEFAULT_PATH)
            elsewhere = await client.request("GET", "/")
        async with verified(port) as bridge:  # still serving
            await bridge.expect_nothing_more()
    assert at_path.status == 426 and b"demo bot" in at_path.body
    assert elsewhere.status == 404


# --------------------------------------------------------------------------- behind the real bridge

GUILD = 7000
CHANNEL = 7001
OWNER = 7100


async def test_echo_and_recall_through_the_bridge_and_the_emulated_discord(tmp_path: Path) -> None:
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    messages = discord.world.messages[CHANNEL]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await start_emulator(nursery, discord)
            port = await nursery.start(partial(serve_demo_bot, port=0, verify_key=KEY))
            config = BridgeConfig(
                discord=DiscordConfig(
                    token=discord.token, api_base_url=discord.base_url, gateway_url=discord.gateway_url
                ),
                mirai=MiraiConfig(verify_key=KEY, reverse_ws=ReverseWsConfig(destinations=(demo_destination(port),))),
                store=StoreConfig(path=str(tmp_path / "bridge.sqlite3")),
                server=ServerConfig(port=0),
            )
            running = await nursery.start(serve_bridge, config)
            # the bridge may still be dialing the demo bot: the outbox keeps the message until it is verified
            asked = await say(discord, CHANNEL, ALICE, "echo hi")
            while not (replies := [m for m in messages.values() if m["content"] == "hi"]):
                await trio.sleep(0.02)
            (reply,) = replies
            # Alice answers the bot's message with "recall": the bot recalls it through the bridge
            await say(discord, CHANNEL, ALICE, "recall", reply_to=int(reply["id"]))
            while int(reply["id"]) in messages:
                await trio.sleep(0.02)
            running.shutdown()
            nursery.cancel_scope.cancel()
    assert reply["author"]["id"] == str(BOT_ID)
    assert reply["message_reference"]["message_id"] == asked["id"]
    assert [m["content"] for m in messages.values()] == ["echo hi", "recall"]
