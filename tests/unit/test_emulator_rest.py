"""The emulator's REST API as pure calls: a Request and ``now`` in, an Outcome out. No trio, no sockets.

Shapes, Discord error codes and bodies, rate-limit headers and 429s, the injected failures, uploads stored and
served back, and the gateway events each change produces.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from relay.sandbox.emulator import intents as it
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH
from relay.sandbox.emulator.rest import CloudflareBan, Drop, Fail, Outcome, RateLimit, Slow
from relay.sandbox.emulator.world import ALL_PERMISSIONS, Dispatch
from relay.web.models import Request

TOKEN = "rest-token"
GUILD = 800_000_000_000_000_001
OWNER = 800_000_000_000_000_101
ALICE = 800_000_000_000_000_102
BOB = 800_000_000_000_000_103
CHANNEL = 800_000_000_000_000_201
OTHER = 800_000_000_000_000_202
VOICE = 800_000_000_000_000_203
ROLE = 800_000_000_000_000_301
SEND = "POST /channels/{channel_id}/messages"


def make() -> tuple[Emulator, list[Dispatch]]:
    em = Emulator(token=TOKEN, epoch=FAKE_EPOCH)
    em.world.add_guild(GUILD, "Guild", owner_id=OWNER)
    em.world.add_channel(CHANNEL, "general", guild_id=GUILD)
    em.world.add_channel(OTHER, "random", guild_id=GUILD)
    em.world.add_channel(VOICE, "voice", guild_id=GUILD, type=2)
    em.world.add_role(GUILD, ROLE, "Mods")
    em.world.add_member(GUILD, ALICE, nick="Alice", username="alice")
    em.world.add_user(BOB, "bob")
    em.bound(4321)
    events: list[Dispatch] = []
    em.world.listeners.append(events.append)
    return em, events


def request(
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    headers: tuple[tuple[str, str], ...] = (),
    raw: bytes | None = None,
    content_type: str | None = None,
) -> Request:
    all_headers = list(headers)
    if token is not None:
        all_headers.append(("authorization", f"Bot {token}"))
    data = b""
    if raw is not None:
        data = raw
        all_headers.append(("content-type", content_type or "application/octet-stream"))
    elif body is not None:
        data = json.dumps(body).encode()
        all_headers.append(("content-type", "application/json"))
    target = path
    raw_path, _, raw_query = target.partition("?")
    return Request(
        method=method,
        target=target,
        path=urllib.parse.unquote(raw_path),
        query=tuple(urllib.parse.parse_qsl(raw_query)),
        headers=tuple(all_headers),
        body=data,
    )


def call(em: Emulator, method: str, path: str, body: Any = None, *, now: float = 0.0, **kwargs: Any) -> Outcome:
    return em.rest.answer(request(method, "/api/v10" + path, body, **kwargs), now)


def answer(outcome: Outcome) -> tuple[int, Any]:
    assert outcome.response is not None
    body = outcome.response.body
    return outcome.response.status, json.loads(body) if body else None


def headers_of(outcome: Outcome) -> dict[str, str]:
    assert outcome.response is not None
    return dict(outcome.response.headers)


# ---------------------------------------------------------------------- routing and auth


def test_unknown_path_and_method_are_404_with_discord_body() -> None:
    em, _ = make()
    assert answer(call(em, "GET", "/nope")) == (404, {"message": "404: Not Found", "code": 0})
    assert answer(call(em, "PATCH", "/users/@me")) == (404, {"message": "404: Not Found", "code": 0})
    assert answer(em.rest.answer(request("GET", "/elsewhere"), 0.0))[0] == 404


def test_wrong_or_missing_token_is_401() -> None:
    em, _ = make()
    assert answer(call(em, "GET", "/users/@me", token="other")) == (401, {"message": "401: Unauthorized", "code": 0})
    assert answer(call(em, "GET", "/users/@me", token=None))[0] == 401
    assert [r.status for r in em.requests_to("GET /users/@me")] == [401, 401]


def test_every_request_is_recorded_with_route_query_json_and_status() -> None:
    em, _ = make()
    call(em, "GET", f"/channels/{CHANNEL}/messages?limit=5", now=2.5)
    (record,) = em.requests
    assert (record.method, record.path, record.route) == (
        "GET",
        f"/channels/{CHANNEL}/messages",
        "GET /channels/{channel_id}/messages",
    )
    assert record.query == {"limit": "5"} and record.time == 2.5 and record.status == 200


def test_knobs_refuse_unknown_routes() -> None:
    em, _ = make()
    with pytest.raises(KeyError):
        em.inject("GET /nowhere", Fail())
    with pytest.raises(KeyError):
        em.forbid("POST /users/@me")
    with pytest.raises(KeyError):
        em.set_bucket("GET /nowhere", limit=1, per=1.0)


# ---------------------------------------------------------------------- rate limits


def test_bucket_headers_count_down_and_429_has_discord_body_and_headers() -> None:
    em, _ = make()
    em.set_bucket(SEND, limit=2, per=5.0)
    first = call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "a"}, now=10.0)
    headers = headers_of(first)
    assert headers["x-ratelimit-limit"] == "2" and headers["x-ratelimit-remaining"] == "1"
    assert headers["x-ratelimit-reset-after"] == "5.000"
    assert float(headers["x-ratelimit-reset"]) == pytest.approx(FAKE_EPOCH + 15.0)
    assert len(headers["x-ratelimit-bucket"]) == 32
    call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "b"}, now=11.0)
    limited = call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "c"}, now=12.0)
    status, body = answer(limited)
    assert status == 429 and body == {"message": "You are being rate limited.", "retry_after": 3.0, "global": False}
    assert headers_of(limited)["x-ratelimit-scope"] == "user" and headers_of(limited)["retry-after"] == "3"
    assert em.limit_violations == 1
    # another channel is another bucket (major parameter); the window resets
    assert answer(call(em, "POST", f"/channels/{OTHER}/messages", {"content": "d"}, now=12.0))[0] == 200
    assert answer(call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "e"}, now=15.0))[0] == 200
    assert [m["content"] for m in em.world.messages[CHANNEL].values()] == ["a", "b", "e"]


def test_shared_bucket_hash_is_one_limit() -> None:
    em, _ = make()
    em.set_bucket("GET /channels/{channel_id}", limit=2, per=3.0, bucket_hash="shared")
    em.set_bucket("GET /channels/{channel_id}/messages", limit=2, per=3.0, bucket_hash="shared")
    call(em, "GET", f"/channels/{CHANNEL}")
    call(em, "GET", f"/channels/{CHANNEL}/messages")
    assert answer(call(em, "GET", f"/channels/{CHANNEL}"))[0] == 429
    assert headers_of(call(em, "GET", f"/channels/{CHANNEL}", now=3.0))["x-ratelimit-bucket"] == "shared"


def test_global_limit_429() -> None:
    em, _ = make()
    em.global_limit = 3
    for i in range(3):
        assert answer(call(em, "GET", f"/channels/{CHANNEL}", now=0.1 * i))[0] == 200
    limited = call(em, "GET", f"/guilds/{GUILD}", now=0.5)
    status, body = answer(limited)
    assert status == 429 and body["global"] is True and body["retry_after"] == pytest.approx(0.5)
    assert headers_of(limited)["x-ratelimit-global"] == "true"
    assert headers_of(limited)["x-ratelimit-scope"] == "global"
    assert answer(call(em, "GET", f"/guilds/{GUILD}", now=1.0))[0] == 200


def test_injected_429s_block_for_real_without_counting_as_violations() -> None:
    em, _ = make()
    em.inject(SEND, RateLimit(retry_after=2.5, scope="user"))
    status, body = answer(call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "x"}))
    assert status == 429 and body["retry_after"] == 2.5 and body["global"] is False
    assert answer(call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "x"}, now=1.0))[0] == 429
    assert answer(call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "x"}, now=2.5))[0] == 200
    em.inject("GET /users/@me", RateLimit(retry_after=3.0, scope="global"))
    limited = call(em, "GET", "/users/@me", now=10.0)
    assert headers_of(limited)["x-ratelimit-scope"] == "global" and answer(limited)[1]["global"] is True
    assert answer(call(em, "GET", f"/guilds/{GUILD}", now=12.0))[0] == 429  # every route waits
    assert answer(call(em, "GET", f"/guilds/{GUILD}", now=13.0))[0] == 200
    em.inject("GET /users/@me", RateLimit(retry_after=0.5, scope="shared"))
    assert headers_of(call(em, "GET", "/users/@me", now=20.0))["x-ratelimit-scope"] == "shared"
    assert em.limit_violations == 2  # the two requests made while blocked


def test_cloudflare_ban_is_html_before_auth() -> None:
    em, _ = make()
    em.inject(SEND, CloudflareBan(retry_after=60))
    outcome = call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "x"}, token=None)
    assert outcome.response is not None and outcome.response.status == 429
    assert outcome.response.body.startswith(b"<html>")
    assert headers_of(outcome) == {"content-type": "text/html", "retry-after": "60"}


def test_fail_slow_drop_and_wildcard() -> None:
    em, _ = make()
    em.inject("GET /users/@me", Fail(502, message="Bad Gateway"))
    outcome = call(em, "GET", "/users/@me")
    assert answer(outcome) == (502, {"message": "Bad Gateway", "code": 0})
    assert "x-ratelimit-bucket" in headers_of(outcome)
    em.inject(SEND, Slow(delay=30.0))
    slow = call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "late"})
    assert slow.delay == 30.0 and answer(slow)[0] == 200 and len(em.world.messages[CHANNEL]) == 1
    em.inject(SEND, Drop())
    assert call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "lost"}).response is None
    assert len(em.world.messages[CHANNEL]) == 1
    em.inject(SEND, Drop(after_handling=True))
    assert call(em, "POST", f"/channels/{CHANNEL}/messages", {"content": "acted"}).response is None
    assert [m["content"] for m in em.world.messages[CHANNEL].values()] == ["late", "acted"]
    assert [r.status for r in em.requests_to(SEND)] == [200, 0, 0]
    em.inject("*", Fail(503))
    assert answer(call(em, "GET", f"/guilds/{GUILD}"))[0] == 503
    assert answer(call(em, "GET", f"/guilds/{GUILD}"))[0] == 200


def test_forbid_per_route_and_major() -> None:
    em, _ = make()
    em.forbid("DELETE /guilds/{guild_id}/members/{user_id}", GUILD)
    outcome = call(em, "DELETE", f"/guilds/{GUILD}/members/{ALICE}")
    assert answer(outcome) == (403, {"message": "Missing Permissions", "code": 50013})
    assert "x-ratelimit-limit" in headers_of(outcome)
    assert (GUILD, ALICE) in em.world.members
    em.allow("DELETE /guilds/{guild_id}/members/{user_id}", GUILD)
    assert answer(call(em, "DELETE", f"/guilds/{GUILD}/members/{ALICE}"))[0] == 204


# ---------------------------------------------------------------------- messages


def test_create_message_shape_mentions_and_event() -> None:
    em, events = make()
    body = {"content": f"hi <@{ALICE}> <@!{BOB}> <@&{ROLE}> @everyone", "allowed_mentions": {"parse": ["users"]}}
    status, message = answer(call(em, "POST", f"/channels/{CHANNEL}/messages", body))
    assert status == 200
    assert message["author"]["id"] == str(em.world.bot_user_id) and message["guild_id"] == str(GUILD)
    assert [u["id"] for u in message["mentions"]] == [str(ALICE), str(BOB)]
    assert message["mention_roles"] == [] and message["mention_everyone"] is False
    assert message["type"] == 0 and message["pinned"] is False
    assert em.world.channels[CHANNEL]["last_message_id"] == message["id"]
    (event,) = events
    assert (event.name, event.guild_id) == ("MESSAGE_CREATE", GUILD)
    assert event.data["member"]["roles"] == [] and "user" not in event.data["member"]
    assert event.data["mentions"][0]["member"]["nick"] == "Alice"  # gateway mentions carry partial members
    assert "member" not in event.data["mentions"][1]  # bob is not in the guild


def test_create_message_errors() -> None:
    em, _ = make()
    path = f"/channels/{CHANNEL}/messages"
    too_long = answer(call(em, "POST", path, {"content": "x" * 2001}))
    assert too_long == (
        400,
        {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {
                "content": {
                    "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]
                }
            },
        },
    )
    assert answer(call(em, "POST", path, {"content": ""}))[1]["code"] == 50006
    assert answer(call(em, "POST", path, [1, 2]))[1]["errors"]["_errors"][0]["code"] == "DICT_TYPE_CONVERT"
    assert answer(call(em, "POST", path, {"content": "x", "nonce": "n" * 26}))[1]["errors"]["nonce"]
    assert answer(call(em, "POST", f"/channels/{VOICE}/messages", {"content": "x"}))[1]["code"] == 50008
    assert answer(call(em, "POST", "/channels/999/messages", {"content": "x"})) == (
        404,
        {"message": "Unknown Channel", "code": 10003},
    )
    reply = {"content": "x", "message_reference": {"message_id": "123"}}
    assert answer(call(em, "POST", path, reply))[1]["errors"]["message_reference"]
    lenient = {"content": "x", "message_reference": {"message_id": "123", "fail_if_not_exists": False}}
    status, message = answer(call(em, "POST", path, lenient))
    assert status == 200 and "message_reference" not in message


def test_reply_and_enforced_nonce() -> None:
    em, events = make()
    original = em.world.add_message(CHANNEL, "question", author_id=ALICE)
    body = {
        "content": "answer",
        "message_reference": {"message_id": original["id"]},
        "nonce": "n1",
        "enforce_nonce": True,
    }
    _, reply = answer(call(em, "POST", f"/channels/{CHANNEL}/messages", body))
    assert reply["type"] == 19 and reply["referenced_message"]["content"] == "question"
    assert reply["message_reference"]["message_id"] == original["id"] and reply["nonce"] == "n1"
    _, again = answer(call(em, "POST", f"/channels/{CHANNEL}/messages", body))
    assert again["id"] == reply["id"] and len(em.world.messages[CHANNEL]) == 2
    assert len(events) == 1  # the retried send made no second message


def test_multipart_upload_is_stored_and_served_back() -> None:
    em, events = make()
    boundary = "b0undary"
    payload = {"content": "look", "attachments": [{"id": 0, "filename": "cat.png", "description": "a cat"}]}
    raw = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(payload)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="files[0]"; filename="upload.bin"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\x89PNG\r\n\x1a\nDATA"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    outcome = call(
        em,
        "POST",
        f"/channels/{CHANNEL}/messages",
        raw=raw,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    status, message = answer(outcome)
    assert status == 200
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "cat.png" and attachment["description"] == "a cat"
    assert attachment["size"] == 12 and attachment["content_type"] == "image/png"
    assert attachment["url"].startswith("http://127.0.0.1:4321/attachments/")
    assert [p.name for p in em.requests[0].parts] == ["payload_json", "files[0]"]
    served = em.rest.answer(request("GET", attachment["url"].removeprefix(em.origin), token=None), 1.0)
    assert served.response is not None and served.response.status == 200
    assert served.response.body == b"\x89PNG\r\n\x1a\nDATA"
    assert dict(served.response.headers)["content-type"] == "image/png"
    assert events[0].data["attachments"] == [attachment]


def test_history_paging_and_get_delete() -> None:
    em, events = make()
    ids = [int(em.world.add_message(CHANNEL, f"m{i}", author_id=ALICE)["id"]) for i in range(10)]
    _, newest = answer(call(em, "GET", f"/channels/{CHANNEL}/messages?limit=3"))
    assert [m["content"] for m in newest] == ["m9", "m8", "m7"]
    _, before = answer(call(em, "GET", f"/channels/{CHANNEL}/messages?limit=2&before={ids[5]}"))
    assert [m["content"] for m in before] == ["m4", "m3"]
    _, after = answer(call(em, "GET", f"/channels/{CHANNEL}/messages?limit=2&after={ids[5]}"))
    assert [m["content"] for m in after] == ["m7", "m6"]
    _, around = answer(call(em, "GET", f"/channels/{CHANNEL}/messages?limit=4&around={ids[5]}"))
    assert [m["content"] for m in around] == ["m7", "m6", "m5", "m4"]
    assert answer(call(em, "GET", f"/channels/{CHANNEL}/messages?limit=101"))[1]["code"] == 50035
    assert answer(call(em, "GET", f"/channels/{CHANNEL}/messages/{ids[0]}"))[1]["content"] == "m0"
    assert answer(call(em, "GET", f"/channels/{CHANNEL}/messages/1"))[1]["code"] == 10008
    reason = urllib.parse.quote("cleaning up")
    deleted = call(em, "DELETE", f"/channels/{CHANNEL}/messages/{ids[0]}", headers=(("x-audit-log-reason", reason),))
    assert answer(deleted) == (204, None)
    assert ids[0] not in em.world.messages[CHANNEL]
    assert [e.name for e in events] == ["GUILD_AUDIT_LOG_ENTRY_CREATE", "MESSAGE_DELETE"]
    assert events[0].data["action_type"] == 72 and events[0].data["reason"] == "cleaning up"
    assert events[1].data == {"id": str(ids[0]), "channel_id": str(CHANNEL), "guild_id": str(GUILD)}
    assert answer(call(em, "DELETE", f"/channels/{CHANNEL}/messages/{ids[0]}"))[1]["code"] == 10008


def test_pins_list_limit_and_events() -> None:
    em, events = make()
    ids = [em.world.add_message(CHANNEL, f"m{i}", author_id=ALICE)["id"] for i in range(3)]
    for i, message_id in enumerate(ids):
        assert answer(call(em, "PUT", f"/channels/{CHANNEL}/messages/pins/{message_id}", now=float(i)))[0] == 204
    assert [e.name for e in events[:4]] == [
        "MESSAGE_UPDATE",
        "GUILD_AUDIT_LOG_ENTRY_CREATE",
        "CHANNEL_PINS_UPDATE",
        "MESSAGE_CREATE",
    ]
    assert events[3].data["type"] == 6 and events[3].data["message_reference"]["message_id"] == ids[0]
    _, page = answer(call(em, "GET", f"/channels/{CHANNEL}/messages/pins?limit=2"))
    assert [item["message"]["content"] for item in page["items"]] == ["m2", "m1"] and page["has_more"] is True
    assert answer(call(em, "DELETE", f"/channels/{CHANNEL}/messages/pins/{ids[1]}"))[0] == 204
    assert [m for _at, m in em.world.pins[CHANNEL]] == [int(ids[0]), int(ids[2])]
    assert em.world.messages[CHANNEL][int(ids[1])]["pinned"] is False


def test_pin_limit_is_30003() -> None:
    em, _ = make()
    for _ in range(250):
        message = em.world.add_message(CHANNEL, "x", author_id=ALICE)
        em.actions.pin_message(CHANNEL, int(message["id"]))
    extra = em.world.add_message(CHANNEL, "one too many", author_id=ALICE)
    outcome = call(em, "PUT", f"/channels/{CHANNEL}/messages/pins/{extra['id']}")
    assert answer(outcome) == (400, {"message": "Maximum number of pins reached (250)", "code": 30003})


def test_dms_open_once_and_closed_dms_are_50007() -> None:
    em, _ = make()
    _, channel = answer(call(em, "POST", "/users/@me/channels", {"recipient_id": str(ALICE)}))
    assert channel["type"] == 1 and channel["recipients"][0]["id"] == str(ALICE)
    _, again = answer(call(em, "POST", "/users/@me/channels", {"recipient_id": str(ALICE)}))
    assert again["id"] == channel["id"] == str(em.world.dm_channels[ALICE])
    assert answer(call(em, "POST", "/users/@me/channels", {"recipient_id": "5"}))[1]["code"] == 10013
    assert answer(call(em, "POST", "/users/@me/channels", {}))[1]["code"] == 50035
    em.close_dms(ALICE)
    refused = answer(call(em, "POST", f"/channels/{channel['id']}/messages", {"content": "hi"}))
    assert refused == (403, {"message": "Cannot send messages to this user", "code": 50007})


# ---------------------------------------------------------------------- guilds, channels, members


def test_guild_reads() -> None:
    em, _ = make()
    assert answer(call(em, "GET", "/users/@me"))[1]["bot"] is True
    assert answer(call(em, "GET", f"/users/{ALICE}"))[1]["username"] == "alice"
    assert answer(call(em, "GET", "/users/1"))[1]["code"] == 10013
    assert answer(call(em, "GET", f"/guilds/{GUILD}"))[1]["name"] == "Guild"
    assert answer(call(em, "GET", "/guilds/1"))[1]["code"] == 10004
    channels = answer(call(em, "GET", f"/guilds/{GUILD}/channels"))[1]
    assert [c["name"] for c in channels] == ["general", "random", "voice"]
    assert [r["name"] for r in answer(call(em, "GET", f"/guilds/{GUILD}/roles"))[1]] == ["@everyone", "Mods"]
    _, guilds = answer(call(em, "GET", "/users/@me/guilds?limit=200&after=0"))
    assert [g["id"] for g in guilds] == [str(GUILD)]
    _, gateway = answer(call(em, "GET", "/gateway/bot"))
    assert gateway["url"] == "ws://127.0.0.1:4321" and gateway["session_start_limit"]["remaining"] == 1000


def test_member_list_pages_by_user_id_default_limit_one() -> None:
    em, _ = make()
    _, first = answer(call(em, "GET", f"/guilds/{GUILD}/members"))
    assert len(first) == 1
    _, everyone = answer(call(em, "GET", f"/guilds/{GUILD}/members?limit=1000"))
    ids = [int(m["user"]["id"]) for m in everyone]
    assert ids == sorted(ids) and set(ids) == {OWNER, ALICE, em.world.bot_user_id}
    _, rest = answer(call(em, "GET", f"/guilds/{GUILD}/members?limit=1000&after={ids[0]}"))
    assert [int(m["user"]["id"]) for m in rest] == ids[1:]
    assert answer(call(em, "GET", f"/guilds/{GUILD}/members?limit=1001"))[1]["code"] == 50035
    assert answer(call(em, "GET", f"/guilds/{GUILD}/members/{BOB}"))[1]["code"] == 10007


def test_the_application_and_its_flags() -> None:
    em, _ = make()
    _, app = answer(call(em, "GET", "/applications/@me"))
    assert app["id"] == str(em.world.bot_user_id) and app["bot"]["id"] == str(em.world.bot_user_id)
    assert app["flags"] == it.ALL_PRIVILEGED_INTENT_FLAGS
    other = Emulator(token=TOKEN, application_id=4242, application_flags=it.GATEWAY_MESSAGE_CONTENT_LIMITED)
    _, app = answer(call(other, "GET", "/applications/@me"))
    assert (app["id"], app["flags"]) == ("4242", it.GATEWAY_MESSAGE_CONTENT_LIMITED)


def test_the_guild_list_carries_the_bots_permissions_from_its_roles() -> None:
    em, _ = make()
    everyone = int(em.world.guilds[GUILD]["roles"][0]["permissions"])

    def listed() -> dict[str, Any]:
        _, guilds = answer(call(em, "GET", "/users/@me/guilds"))
        (guild,) = guilds
        assert isinstance(guild, dict)
        return guild

    assert listed()["permissions"] == str(everyone) and listed()["owner"] is False
    em.world.role(GUILD, ROLE)["permissions"] = str(1 << 13)
    em.world.members[(GUILD, em.world.bot_user_id)]["roles"] = [str(ROLE)]
    assert listed()["permissions"] == str(everyone | 1 << 13)
    em.world.role(GUILD, ROLE)["permissions"] = str(1 << 3)  # ADMINISTRATOR: every permission
    assert listed()["permissions"] == str(ALL_PERMISSIONS)
    em.world.deviations.omit_guild_permissions = True  # a server that leaves them out
    assert "permissions" not in listed()


def test_members_listed_without_user_by_a_deviant_server() -> None:
    em, _ = make()
    em.world.deviations.members_without_user.add((GUILD, ALICE))
    _, everyone = answer(call(em, "GET", f"/guilds/{GUILD}/members?limit=1000"))
    assert sum("user" not in m for m in everyone) == 1
    assert answer(call(em, "GET", f"/guilds/{GUILD}/members/{ALICE}"))[1]["user"]["id"] == str(ALICE)


def test_nick_and_timeout_with_events_and_audit() -> None:
    em, events = make()
    path = f"/guilds/{GUILD}/members/{ALICE}"
    _, member = answer(call(em, "PATCH", path, {"nick": "Ally"}, headers=(("x-audit-log-reason", "asked"),)))
    assert member["nick"] == "Ally"
    assert [e.name for e in events] == ["GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_MEMBER_UPDATE"]
    assert events[0].data["changes"] == [{"key": "nick", "old_value": "Alice", "new_value": "Ally"}]
    assert events[0].data["action_type"] == 24 and events[1].data["nick"] == "Ally"
    until = "2026-09-22T00:00:00+00:00"  # FAKE_EPOCH is 2026-09-21
    assert (
        answer(call(em, "PATCH", path, {"communication_disabled_until": until}))[1]["communication_disabled_until"]
        == until
    )
    too_far = answer(call(em, "PATCH", path, {"communication_disabled_until": "2026-12-01T00:00:00+00:00"}))
    assert too_far[1]["errors"]["communication_disabled_until"]["_errors"][0]["code"] == (
        "COMMUNICATION_DISABLED_TIMESTAMP_TOO_FAR"
    )
    assert answer(call(em, "PATCH", path, {"communication_disabled_until": "soon"}))[0] == 400
    assert answer(call(em, "PATCH", path, {"nick": "x" * 33}))[0] == 400
    events.clear()
    assert answer(call(em, "PATCH", path, {"nick": ""}))[1]["nick"] is None
    assert answer(call(em, "PATCH", path, {"nick": None}))[0] == 200
    assert len(events) == 2  # the second PATCH changed nothing: no event, no entry
    assert answer(call(em, "PATCH", path, {}))[0] == 204


def test_roles_kick_ban_leave() -> None:
    em, events = make()
    role_path = f"/guilds/{GUILD}/members/{ALICE}/roles/{ROLE}"
    assert answer(call(em, "PUT", role_path))[0] == 204
    assert em.world.members[(GUILD, ALICE)]["roles"] == [str(ROLE)]
    assert events[0].data["changes"] == [{"key": "$add", "new_value": [{"id": str(ROLE), "name": "Mods"}]}]
    assert answer(call(em, "DELETE", role_path))[0] == 204 and em.world.members[(GUILD, ALICE)]["roles"] == []
    assert answer(call(em, "PUT", f"/guilds/{GUILD}/members/{ALICE}/roles/9"))[1]["code"] == 10011
    events.clear()
    assert answer(call(em, "DELETE", f"/guilds/{GUILD}/members/{ALICE}"))[0] == 204
    assert [(e.name, e.data.get("action_type")) for e in events] == [
        ("GUILD_AUDIT_LOG_ENTRY_CREATE", 20),
        ("GUILD_MEMBER_REMOVE", None),
    ]
    assert answer(call(em, "DELETE", f"/guilds/{GUILD}/members/{ALICE}"))[1]["code"] == 10007
    events.clear()
    em.world.add_member(GUILD, BOB)
    spam = em.world.add_message(CHANNEL, "spam", author_id=BOB)
    ban = call(em, "PUT", f"/guilds/{GUILD}/bans/{BOB}", {"delete_message_seconds": 3600})
    assert answer(ban)[0] == 204 and BOB in em.world.bans[GUILD] and (GUILD, BOB) not in em.world.members
    assert int(spam["id"]) not in em.world.messages[CHANNEL]
    assert [e.name for e in events] == [
        "GUILD_AUDIT_LOG_ENTRY_CREATE",
        "GUILD_BAN_ADD",
        "GUILD_MEMBER_REMOVE",
        "MESSAGE_DELETE",
    ]
    assert answer(call(em, "PUT", f"/guilds/{GUILD}/bans/{BOB}", {"delete_message_seconds": 604_801}))[0] == 400
    assert answer(call(em, "PUT", f"/guilds/{GUILD}/bans/7"))[1]["code"] == 10013
    _, log = answer(call(em, "GET", f"/guilds/{GUILD}/audit-logs?action_type=22"))
    assert [e["target_id"] for e in log["audit_log_entries"]] == [str(BOB)]
    assert answer(call(em, "DELETE", f"/guilds/{GUILD}/bans/{BOB}"))[0] == 204 and BOB not in em.world.bans[GUILD]
    assert answer(call(em, "DELETE", f"/guilds/{GUILD}/bans/{BOB}"))[1]["code"] == 10026
    events.clear()
    assert answer(call(em, "DELETE", f"/users/@me/guilds/{GUILD}"))[0] == 204
    assert GUILD not in em.world.guilds and CHANNEL not in em.world.channels
    assert events[-1].name == "GUILD_DELETE" and events[-1].data == {"id": str(GUILD)}


def test_channel_rename_topic_and_overwrites() -> None:
    em, events = make()
    path = f"/channels/{CHANNEL}"
    _, channel = answer(call(em, "PATCH", path, {"name": "lounge", "topic": "chat"}))
    assert (channel["name"], channel["topic"]) == ("lounge", "chat")
    assert [e.name for e in events] == ["GUILD_AUDIT_LOG_ENTRY_CREATE", "CHANNEL_UPDATE"]
    assert answer(call(em, "PATCH", path, {"name": ""}))[1]["errors"]["name"]
    assert answer(call(em, "PATCH", path, {"topic": "t" * 1025}))[1]["errors"]["topic"]
    events.clear()
    overwrite = f"/channels/{CHANNEL}/permissions/{GUILD}"
    assert answer(call(em, "PUT", overwrite, {"type": 0, "allow": "0", "deny": "2048"}))[0] == 204
    assert answer(call(em, "PUT", overwrite, {"type": 0, "allow": "0", "deny": "0"}))[0] == 204
    assert em.world.channels[CHANNEL]["permission_overwrites"] == [
        {"id": str(GUILD), "type": 0, "allow": "0", "deny": "0"}
    ]
    assert answer(call(em, "PUT", overwrite, {"type": 3}))[1]["errors"]["type"]
    assert answer(call(em, "DELETE", overwrite))[0] == 204
    assert em.world.channels[CHANNEL]["permission_overwrites"] == []
    actions = [e.data["action_type"] for e in events if e.name == "GUILD_AUDIT_LOG_ENTRY_CREATE"]
    assert actions == [13, 14, 15]
    assert [e.name for e in events].count("CHANNEL_UPDATE") == 3


def test_a_bounded_request_log_keeps_the_latest() -> None:
    em = Emulator(token=TOKEN, epoch=FAKE_EPOCH, keep_requests=3)
    for n in range(10):
        em.rest.answer(request("GET", f"/api/v10/users/{n}"), float(n))
    assert 3 <= len(em.requests) <= 6  # trimmed in batches
    assert em.requests[-1].path == "/users/9"
    assert [r.path for r in em.requests] == [f"/users/{n}" for n in range(10 - len(em.requests), 10)]
