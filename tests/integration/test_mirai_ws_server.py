"""The ws adapter over real loopback sockets (docs/mirai-api-http.md §4): every handshake variant, the channels, the
same session twice, single mode, oversized frames, and a framework that reconnects after 10,000 events."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
import trio_websocket

from adapters.mirai.codec import SINGLE_SESSION_KEY
from relay import envelope as env
from tests.integration.mirai_servers import (
    BOT,
    GROUP,
    GUARD,
    KEY,
    closed_with,
    command,
    event_frame,
    mirai_servers,
    receive_json,
)

open_ws = trio_websocket.open_websocket_url


async def handshake(ws: trio_websocket.WebSocketConnection) -> str:
    """The success frame of §4.2; returns the session key."""
    frame = await receive_json(ws)
    assert frame["syncId"] == "" and frame["data"]["code"] == 0, frame
    assert list(frame["data"]) == ["code", "session"]
    return str(frame["data"]["session"])


# --------------------------------------------------------------------------- handshake variants


async def test_query_credentials_then_a_command_and_events(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, open_ws(servers.ws_url(verifyKey=KEY, qq=BOT)) as ws:
        key = await handshake(ws)
        assert len(key) == 8 and key.isalnum()
        servers.publish(event_frame(1))
        pushed = await receive_json(ws)
        assert pushed["syncId"] == "-1" and pushed["data"]["n"] == 1
        data = await command(
            ws, "s1", "sendGroupMessage", {"target": GROUP, "messageChain": [{"type": "Plain", "text": "hi"}]}
        )
        assert data == {"code": 0, "msg": "success", "messageId": 101}
        info = await command(ws, "s2", "sessionInfo", {})
        assert info["data"]["sessionKey"] == key
        assert await command(ws, 7, "about") == {"code": 0, "msg": "", "data": {"version": "2.10.0"}}


async def test_header_credentials_win_over_the_query(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers:
        url = servers.ws_url(verifyKey="wrong-in-query", qq=1)
        async with open_ws(url, extra_headers=[("verifyKey", KEY), ("qq", str(BOT))]) as ws:
            await handshake(ws)


@pytest.mark.parametrize(
    ("query", "headers", "code", "msg"),
    [
        ({"verifyKey": "wrong", "qq": BOT}, [], 1, "Auth Key错误"),
        ({"qq": BOT}, [], 1, "Auth Key错误"),  # no key at all
        ({"verifyKey": KEY, "qq": 99}, [], 2, "指定Bot不存在"),  # qq not the bot
        ({"verifyKey": KEY}, [("qq", "99")], 2, "指定Bot不存在"),
        ({"verifyKey": KEY, "sessionKey": "Unknown1"}, [], 3, "Session失效或不存在"),
        ({"verifyKey": KEY, "qq": BOT, "client": "bad/name"}, [], 400, "无效参数: client must be"),
    ],
)
async def test_refusals_send_code_and_message_then_close_1000(
    tmp_path: Path, query: dict[str, object], headers: list[tuple[str, str]], code: int, msg: str
) -> None:
    async with mirai_servers(tmp_path) as servers:
        async with open_ws(servers.ws_url(**query), extra_headers=headers) as ws:
            frame = await receive_json(ws)
            assert frame["syncId"] == "" and frame["data"]["code"] == code
            assert str(frame["data"]["msg"]).startswith(msg)
            close_code, reason = await closed_with(ws)
        assert close_code == 1000 and reason == frame["data"]["msg"]
        assert servers.ws.refused == 1 and len(servers.sessions) == 0


async def test_an_unbound_http_session_is_code_4_and_a_bound_one_works(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        made = (await client.post(f"{servers.http_base}/verify", json={"verifyKey": KEY})).json()["session"]
        async with open_ws(servers.ws_url(verifyKey=KEY, sessionKey=made)) as ws:
            frame = await receive_json(ws)
            assert frame["data"] == {"code": 4, "msg": "Session未认证"}
            assert await closed_with(ws) == (1000, "Session未认证")
        await client.post(f"{servers.http_base}/bind", json={"sessionKey": made, "qq": BOT})
        async with open_ws(servers.ws_url(verifyKey=KEY, sessionKey=made)) as ws:
            assert await handshake(ws) == made
            # the http session still works for http while the websocket holds it
            profile = await client.get(f"{servers.http_base}/sessionInfo", params={"sessionKey": made})
            assert profile.json()["data"]["sessionKey"] == made
            # released over http: the websocket is closed (docs/mirai-api-http.md §4.2)
            released = await client.post(f"{servers.http_base}/release", json={"sessionKey": made, "qq": BOT})
            assert released.json() == {"code": 0, "msg": "success"}
            assert await closed_with(ws) == (1000, "the session was released")


async def test_verify_off_accepts_any_key(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, enable_verify=False) as servers:
        async with open_ws(servers.ws_url(verifyKey="anything", qq=BOT)) as ws:
            await handshake(ws)


# --------------------------------------------------------------------------- the same session twice, single mode


async def test_a_second_connection_with_the_same_session_closes_the_first_on_that_channel(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        async with open_ws(servers.ws_url(verifyKey=KEY, sessionKey=key)) as first:
            await handshake(first)
            async with open_ws(servers.ws_url("/event", verifyKey=KEY, sessionKey=key)) as other_channel:
                await handshake(other_channel)
                async with open_ws(servers.ws_url(verifyKey=KEY, sessionKey=key)) as second:
                    await handshake(second)
                    assert await closed_with(first) == (1000, "another connection took over this session")
                    servers.publish(event_frame(1), event_frame(2, "GroupRecallEvent"))
                    assert (await receive_json(second))["data"]["n"] == 1
                    assert (await receive_json(other_channel))["data"]["n"] == 2  # the other channel stayed open
                    assert await command(second, "a", "about") == {"code": 0, "msg": "", "data": {"version": "2.10.0"}}


async def test_single_mode_every_connection_is_the_single_session(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, single_mode=True) as servers:
        async with open_ws(servers.ws_url(verifyKey=KEY, qq=1, sessionKey="ignored")) as first:
            assert await handshake(first) == SINGLE_SESSION_KEY
            async with open_ws(servers.ws_url(verifyKey=KEY)) as second:
                assert await handshake(second) == SINGLE_SESSION_KEY
                assert await closed_with(first) == (1000, "another connection took over this session")
        async with open_ws(servers.ws_url(verifyKey="wrong")) as refused:
            assert (await receive_json(refused))["data"]["code"] == 1


# --------------------------------------------------------------------------- channels


async def test_channels_filter_message_events_from_the_rest(tmp_path: Path) -> None:
    kinds = [
        "GroupMessage",
        "MemberJoinEvent",
        "FriendSyncMessage",
        "GroupRecallEvent",
        "TempMessage",
        "BotOnlineEvent",
        "StrangerSyncMessage",
        "NudgeEvent",
    ]
    async with mirai_servers(tmp_path) as servers:
        creds = {"verifyKey": KEY, "qq": BOT}
        async with (
            open_ws(servers.ws_url("/all", **creds)) as everything,
            open_ws(servers.ws_url("/message", **creds)) as messages,
            open_ws(servers.ws_url("/event", **creds)) as events,
        ):
            for ws in (everything, messages, events):
                await handshake(ws)
            servers.publish(*(event_frame(i, kind) for i, kind in enumerate(kinds)))
            servers.publish(event_frame(99, "GroupMessage"))  # a marker: the last one every message reader gets
            got_all = [(await receive_json(everything))["data"]["type"] for _ in range(len(kinds) + 1)]
            got_messages = [(await receive_json(messages))["data"]["type"] for _ in range(4)]
            got_events = [(await receive_json(events))["data"]["type"] for _ in range(4)]
            # commands work on every channel
            assert (await command(events, "e", "botList"))["data"] == [BOT]
            assert (await command(messages, "m", "botList"))["data"] == [BOT]
        assert got_all == [*kinds, "GroupMessage"]
        assert got_messages == ["GroupMessage", "FriendSyncMessage", "TempMessage", "StrangerSyncMessage"]
        assert got_events == ["MemberJoinEvent", "GroupRecallEvent", "BotOnlineEvent", "NudgeEvent"]
        # each channel has its own cursor, and each moved past everything (filtered frames included)
        cursors = servers.outbox.statistics().cursors
        assert cursors[f"ws:{BOT}:all"] == cursors[f"ws:{BOT}:message"] == cursors[f"ws:{BOT}:event"] == 9


async def test_an_unknown_path_is_refused_before_the_upgrade(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers:
        with pytest.raises(trio_websocket.HandshakeError):
            async with open_ws(servers.ws_url("/nope", verifyKey=KEY, qq=BOT)):
                pass


# --------------------------------------------------------------------------- bad input


async def test_frames_over_the_limit_close_only_that_connection(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, max_frame_bytes=4096) as servers:
        creds = {"verifyKey": KEY, "qq": BOT}
        async with open_ws(servers.ws_url(**creds)) as big, open_ws(servers.ws_url(**creds)) as bystander:
            await handshake(big)
            await handshake(bystander)
            await big.send_message(json.dumps({"syncId": "x", "command": "about", "content": "y" * 10_000}))
            code, _ = await closed_with(big)
            assert code == 1009
            assert (await command(bystander, "b", "about"))["code"] == 0


async def test_junk_and_unknown_commands_get_mirai_answers(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, open_ws(servers.ws_url(verifyKey=KEY, qq=BOT)) as ws:
        await handshake(ws)
        await ws.send_message("not json")
        assert await receive_json(ws) == {"code": 400, "msg": "无效参数"}  # raw, §3.5
        assert await command(ws, "u", "noSuchCommand", {}) == {"code": 6, "msg": "指定操作不支持"}
        assert (await command(ws, "v", "verify", {"verifyKey": KEY}))["code"] == 6
        missing = await command(ws, "m", "sendGroupMessage", {"messageChain": []})
        assert missing["code"] == 400 and "target is missing" in missing["msg"]


# --------------------------------------------------------------------------- nothing lost across reconnects


async def test_a_framework_that_reconnects_gets_every_event_in_order_once(tmp_path: Path) -> None:
    total = 10_000
    async with mirai_servers(tmp_path) as servers:
        url = servers.ws_url(verifyKey=KEY, qq=BOT)
        async with open_ws(url) as first:
            await handshake(first)
            servers.publish(event_frame(0))
            assert (await receive_json(first))["data"]["n"] == 0
        # the framework is away (wait until the bridge saw it go) while 10,000 events arrive
        with trio.fail_after(GUARD):
            while servers.cursors.users(f"ws:{BOT}:all"):
                await trio.sleep(0.01)
        servers.publish(*(event_frame(n) for n in range(1, total + 1)))
        async with open_ws(url, max_message_size=1 << 20) as again:
            assert len(await handshake(again)) == 8  # a new session key, the same identity
            received = [(await receive_json(again))["data"]["n"] for _ in range(total)]
            servers.publish(event_frame(total + 1))  # then the live stream, nothing twice
            assert (await receive_json(again))["data"]["n"] == total + 1
        assert received == list(range(1, total + 1))


async def test_a_named_client_keeps_its_own_cursor(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers:
        async with open_ws(servers.ws_url(verifyKey=KEY, qq=BOT, client="bot-a")) as a:
            await handshake(a)
        async with open_ws(servers.ws_url(verifyKey=KEY, qq=BOT), extra_headers=[("client", "bot-b")]) as b:
            await handshake(b)
            with trio.fail_after(GUARD):
                while servers.cursors.users("ws:bot-a:all"):
                    await trio.sleep(0.01)
            servers.publish(event_frame(1), event_frame(2))
            assert [(await receive_json(b))["data"]["n"] for _ in range(2)] == [1, 2]
        async with open_ws(servers.ws_url(verifyKey=KEY, qq=BOT, client="bot-a")) as a_again:
            await handshake(a_again)
            assert [(await receive_json(a_again))["data"]["n"] for _ in range(2)] == [1, 2]
        assert set(servers.outbox.statistics().cursors) == {"ws:bot-a:all", "ws:bot-b:all"}


async def test_upload_then_send_over_the_ws_port(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, shared_port=False) as servers, httpx.AsyncClient() as client:
        async with open_ws(servers.ws_url(verifyKey=KEY, qq=BOT)) as ws:
            key = await handshake(ws)
            answer = await client.post(
                f"http://127.0.0.1:{servers.ws_port}/uploadImage",
                data={"sessionKey": key, "type": "group"},
                files={"img": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x01" * 100, "image/png")},
            )
            image_id = answer.json()["imageId"]
            sent = await command(
                ws, "s", "sendGroupMessage", {"target": GROUP, "messageChain": [{"type": "Image", "imageId": image_id}]}
            )
            assert sent["code"] == 0
        (message,) = servers.service.sent()
        (image,) = message.segments
        assert isinstance(image, env.Image) and image.data == b"\x89PNG\r\n\x1a\n" + b"\x01" * 100
        assert image.content_type == "image/png"
