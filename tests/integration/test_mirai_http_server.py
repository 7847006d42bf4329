"""The http adapter over real loopback sockets (docs/mirai-api-http.md §11): auth, every command route, the status
codes and error shapes, polling order and its bound, CORS, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.mirai import commands_in
from adapters.mirai.codec import SINGLE_SESSION_KEY
from adapters.mirai.http_server import COMMAND_ROUTES
from relay import envelope as env
from relay.errors import CommandFailed, FailureKind
from tests.integration.mirai_servers import BOT, GROUP, KEY, FakeService, Servers, event_frame, mirai_servers

HI = [{"type": "Plain", "text": "hi"}]


async def post(client: httpx.AsyncClient, servers: Servers, path: str, body: object = None, **kw: Any) -> Any:
    response = await client.post(f"{servers.http_base}{path}", json=body, **kw)
    assert response.status_code == 200, response.text  # mirai-api-http answers everything with 200 (§11.3)
    return response.json()


async def get(http: httpx.AsyncClient, servers: Servers, path: str, **params: Any) -> Any:
    response = await http.get(f"{servers.http_base}{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- auth


async def test_verify_bind_use_release(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        verified = await post(client, servers, "/verify", {"verifyKey": KEY})
        assert verified["code"] == 0 and len(verified["session"]) == 8
        key = verified["session"]
        assert await get(client, servers, "/friendList", sessionKey=key) == {"code": 4, "msg": "Session未认证"}
        assert await post(client, servers, "/bind", {"sessionKey": key, "qq": str(BOT)}) == {
            "code": 0,
            "msg": "success",
        }
        assert (await get(client, servers, "/groupList", sessionKey=key))["data"][0]["id"] == GROUP
        assert await post(client, servers, "/release", {"sessionKey": key, "qq": BOT}) == {"code": 0, "msg": "success"}
        assert await get(client, servers, "/groupList", sessionKey=key) == {"code": 3, "msg": "Session失效或不存在"}


@pytest.mark.parametrize(
    "how",
    ["header", "authorization", "authorization-sessionkey", "query", "body"],
)
async def test_every_way_of_naming_the_session(tmp_path: Path, how: str) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        headers: dict[str, str] = {}
        body: dict[str, object] = {"target": GROUP, "messageChain": HI}
        params: dict[str, str] = {}
        if how == "header":
            headers["sessionKey"] = key
        elif how == "authorization":
            headers["Authorization"] = f"session {key}"
        elif how == "authorization-sessionkey":
            headers["Authorization"] = f"sessionKey {key}"
        elif how == "query":
            params["sessionKey"] = key
        else:
            body["sessionKey"] = key
        answer = await post(client, servers, "/sendGroupMessage", body, headers=headers, params=params)
        assert answer == {"code": 0, "msg": "success", "messageId": 101}
        (sent,) = servers.service.sent()
        assert sent.conversation == env.ConversationRef.group(GROUP)


async def test_about_and_bot_list_need_no_session(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        assert await get(client, servers, "/about") == {"code": 0, "msg": "", "data": {"version": "2.10.0"}}
        assert await get(client, servers, "/botList") == {"code": 0, "msg": "", "data": [BOT]}
        assert await get(client, servers, "/sessionInfo") == {"code": 3, "msg": "Session失效或不存在"}


async def test_single_mode(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, single_mode=True) as servers, httpx.AsyncClient() as client:
        assert await post(client, servers, "/verify", {"verifyKey": KEY}) == {"code": 0, "session": SINGLE_SESSION_KEY}
        bind = await post(client, servers, "/bind", {"sessionKey": SINGLE_SESSION_KEY, "qq": BOT})
        assert bind == {"code": 6, "msg": "指定操作不支持"}
        info = await get(client, servers, "/sessionInfo")  # no key at all: the single session
        assert info["data"]["sessionKey"] == SINGLE_SESSION_KEY
        assert (await get(client, servers, "/groupList", sessionKey="anything"))["code"] == 0


# --------------------------------------------------------------------------- every status code


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (FailureKind.NOT_FOUND, 5),
        (FailureKind.UNSUPPORTED, 6),
        (FailureKind.NO_PERMISSION, 10),
        (FailureKind.BOT_MUTED, 20),
        (FailureKind.TOO_LONG, 30),
        (FailureKind.BAD_INPUT, 400),
        (FailureKind.INTERNAL, 500),
    ],
)
async def test_command_failures_are_mirai_codes_in_a_200(tmp_path: Path, failure: FailureKind, code: int) -> None:
    service = FakeService()
    service.fail[env.SendMessage] = CommandFailed(failure, "what Discord said")
    async with mirai_servers(tmp_path, service=service) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        answer = await post(client, servers, "/sendGroupMessage", {"sessionKey": key, "target": 1, "messageChain": HI})
        assert answer["code"] == code and "what Discord said" in answer["msg"]


async def test_auth_codes_1_2_3_4(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        assert await post(client, servers, "/verify", {"verifyKey": "wrong"}) == {"code": 1, "msg": "Auth Key错误"}
        key = (await post(client, servers, "/verify", {"verifyKey": KEY}))["session"]
        assert await post(client, servers, "/bind", {"sessionKey": key, "qq": 99}) == {
            "code": 2,
            "msg": "指定Bot不存在",
        }
        assert await post(client, servers, "/bind", {"sessionKey": "Nope1234", "qq": BOT}) == {
            "code": 3,
            "msg": "Session失效或不存在",
        }
        assert await get(client, servers, "/countMessage", sessionKey=key) == {"code": 4, "msg": "Session未认证"}
        assert await get(client, servers, "/fetchMessage", sessionKey="Nope1234") == {
            "code": 3,
            "msg": "Session失效或不存在",
        }


async def test_unsupported_commands_are_6_and_missing_fields_are_named(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        nudge = await post(
            client, servers, "/sendNudge", {"sessionKey": key, "target": 1, "subject": 1, "kind": "Group"}
        )
        assert nudge["code"] == 6 and "nudge" in nudge["msg"]
        assert await post(client, servers, "/sendGroupMessage", {"sessionKey": key, "messageChain": HI}) == {
            "code": 400,
            "msg": "参数错误，缺少字段: target",
        }
        assert await get(client, servers, "/memberList", sessionKey=key) == {
            "code": 400,
            "msg": "参数错误，缺少字段: target",
        }
        chain = await post(client, servers, "/sendGroupMessage", {"sessionKey": key, "target": 1, "messageChain": [{}]})
        assert chain == {"code": 400, "msg": "参数错误，缺少字段: messageChain[0].type"}
        assert await post(client, servers, "/verify", {}) == {"code": 400, "msg": "参数错误，缺少字段: verifyKey"}
        assert await post(client, servers, "/bind", {"qq": BOT}) == {
            "code": 400,
            "msg": "参数错误，缺少字段: sessionKey",
        }
        assert await post(client, servers, "/release", {}) == {"code": 400, "msg": "参数错误，缺少字段: sessionKey, qq"}


# --------------------------------------------------------------------------- routes


async def test_every_command_has_its_mirai_route() -> None:
    routed = {command for variants in COMMAND_ROUTES.values() for _, command, _ in variants}
    known = (
        set(commands_in._CONTENT_COMMANDS)
        | set(commands_in._NO_CONTENT_COMMANDS)
        | set(commands_in._SUBCOMMANDS)
        | set(commands_in.UNSUPPORTED_COMMANDS)
        | {"about", "botList", "sessionInfo"}
    ) - {"file_upload", "uploadImage", "uploadVoice", "uploadShortVideo"}  # multipart: upload_routes.py
    assert known == routed
    for path, variants in COMMAND_ROUTES.items():
        for _, command, _ in variants:
            assert path == "/" + command.replace("_", "/")


async def test_get_reads_query_parameters_and_lists(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        await get(client, servers, "/latestMemberList", sessionKey=key, target=GROUP, memberIds=[1, 2])
        await get(client, servers, "/latestMemberList", sessionKey=key, target=GROUP, memberIds=3)
        await get(client, servers, "/latestMemberList", sessionKey=key, target=GROUP, **{"memberIds[]": [4, 5]})
        members = [c for c in servers.service.commands if isinstance(c, env.ListMembers)]
        assert [m.user_ids for m in members] == [(1, 2), (3,), (4, 5)]
        assert all(m.group_id == GROUP and m.fresh for m in members)


async def test_group_config_and_member_info_get_on_get_update_on_post(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        await get(client, servers, "/groupConfig", sessionKey=key, target=GROUP)
        await post(client, servers, "/groupConfig", {"sessionKey": key, "target": GROUP, "config": {"name": "n"}})
        await get(client, servers, "/memberInfo", sessionKey=key, target=GROUP, memberId=42)
        await post(
            client, servers, "/memberInfo", {"sessionKey": key, "target": GROUP, "memberId": 42, "info": {"name": "x"}}
        )
        kinds = [type(c).__name__ for c in servers.service.commands]
        assert kinds == ["GetGroupConfig", "UpdateGroupConfig", "GetMember", "UpdateMember"]


async def test_file_routes_use_slashes_and_methods_are_enforced(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        listed = await get(client, servers, "/file/list", sessionKey=key, target=GROUP)
        assert listed["code"] == 6 and "file system" in listed["msg"]
        wrong = await client.post(f"{servers.http_base}/friendList", json={"sessionKey": key})
        assert wrong.status_code == 405
        assert (await client.get(f"{servers.http_base}/nope")).status_code == 404


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"[1, 2]", "must be a JSON object"), (b'"text"', "must be a JSON object"), (b"{nope", "not JSON")],
)
async def test_a_body_that_is_not_a_json_object_is_code_400(tmp_path: Path, body: bytes, fragment: str) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        response = await client.post(
            f"{servers.http_base}/sendGroupMessage",
            content=body,
            headers={"sessionKey": key, "content-type": "text/plain"},
        )
        assert response.status_code == 200
        answer = response.json()
        assert answer["code"] == 400 and fragment in answer["msg"]


async def test_wrong_types_are_code_400_with_the_field(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        answer = await post(client, servers, "/recall", {"sessionKey": key, "target": "abc", "messageId": 1})
        assert answer["code"] == 400 and "target" in answer["msg"]
        answer = await get(client, servers, "/messageFromId", sessionKey=key, target=GROUP, messageId=2**40)
        assert answer["code"] == 400 and "messageId" in answer["msg"]
        assert (await get(client, servers, "/fetchMessage", sessionKey=key, count="ten"))["code"] == 400


# --------------------------------------------------------------------------- polling


async def test_polling_order_fetch_peek_latest_and_count(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        assert await get(client, servers, "/countMessage", sessionKey=key) == {"code": 0, "msg": "", "data": 0}
        servers.publish(*(event_frame(n) for n in range(1, 8)))

        async def numbers(path: str, **params: Any) -> list[int]:
            answer = await get(client, servers, path, sessionKey=key, **params)
            assert answer["code"] == 0 and answer["msg"] == ""
            return [event["n"] for event in answer["data"]]

        assert (await get(client, servers, "/countMessage", sessionKey=key))["data"] == 7
        assert await numbers("/peekMessage", count=2) == [1, 2]
        assert await numbers("/peakMessage", count=2) == [1, 2]  # the legacy spelling
        assert await numbers("/peekLatestMessage", count=2) == [7, 6]
        assert await numbers("/fetchMessage", count=2) == [1, 2]
        assert await numbers("/fetchLatestMessage", count=2) == [7, 6]  # newest first, taken
        assert await numbers("/fetchMessage") == [3, 4, 5]  # count defaults to 10
        assert (await get(client, servers, "/countMessage", sessionKey=key))["data"] == 0
        # the bare event objects of §11.5, exactly as pushed on websockets
        servers.publish(event_frame(8))
        (event,) = (await get(client, servers, "/fetchMessage", sessionKey=key))["data"]
        assert event == {
            "type": "GroupMessage",
            "n": 8,
            "messageChain": [{"type": "Source", "id": 8, "time": 1}, {"type": "Plain", "text": "event 8"}],
        }


async def test_the_queue_bound_shows_a_window_and_loses_nothing(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, unread_queue_max_size=3) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        await get(client, servers, "/countMessage", sessionKey=key)  # the first poll: events from here on
        servers.publish(*(event_frame(n) for n in range(1, 11)))
        assert (await get(client, servers, "/countMessage", sessionKey=key))["data"] == 3
        latest = await get(client, servers, "/peekLatestMessage", sessionKey=key, count=10)
        assert [e["n"] for e in latest["data"]] == [3, 2, 1]  # the window is the oldest three
        fetched: list[int] = []
        while batch := (await get(client, servers, "/fetchMessage", sessionKey=key, count=100))["data"]:
            assert len(batch) <= 3
            fetched.extend(e["n"] for e in batch)
        assert fetched == list(range(1, 11))  # mirai-api-http would have dropped 5..10


async def test_polling_resumes_across_sessions_of_the_same_identity(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        first = await servers.session(client)
        await get(client, servers, "/fetchMessage", sessionKey=first)
        servers.publish(event_frame(1), event_frame(2))
        assert [e["n"] for e in (await get(client, servers, "/fetchMessage", sessionKey=first, count=1))["data"]] == [1]
        await post(client, servers, "/release", {"sessionKey": first, "qq": BOT})
        servers.publish(event_frame(3))
        second = await servers.session(client)  # the framework restarted: a new session, the same identity
        assert [e["n"] for e in (await get(client, servers, "/fetchMessage", sessionKey=second))["data"]] == [2, 3]
        # another identity starts at the end
        other = await get(client, servers, "/fetchMessage", sessionKey=second, client="other")
        assert other["data"] == []
        bad = await get(client, servers, "/fetchMessage", sessionKey=second, client="no spaces")
        assert bad["code"] == 400
        assert servers.outbox.statistics().cursors == {f"http:{BOT}": 3, "http:other": 3}


# --------------------------------------------------------------------------- CORS


async def test_cors_as_configured(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, cors=("app.example",)) as servers, httpx.AsyncClient() as client:
        allowed = await client.get(f"{servers.http_base}/about", headers={"Origin": "https://app.example"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        preflight = await client.options(
            f"{servers.http_base}/sendGroupMessage",
            headers={
                "Origin": "http://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, sessionkey",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-headers"] == "content-type, sessionkey"
        assert preflight.headers["access-control-max-age"] == "86400"
        refused = await client.get(f"{servers.http_base}/about", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        upload_preflight = await client.options(
            f"{servers.http_base}/uploadImage",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert upload_preflight.status_code == 204


async def test_cors_star_by_default(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        answer = await client.get(f"{servers.http_base}/about", headers={"Origin": "https://any.example"})
        assert answer.headers["access-control-allow-origin"] == "*"
