"""RestClient against the emulated Discord's REST API over real loopback HTTP (relay/sandbox/emulator).

Virtual time (``autojump_clock``) drives every wait; client and server share the clock, so elapsed-time
assertions are about the rate limits, never about the machine's speed.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing

from adapters.discord.rest.client import MISSING, RestClient, UploadFile, open_rest_client
from relay.config import DiscordConfig
from relay.errors import CloudflareBanned, DiscordUnreachable, HTTPError, InvalidRequestGuard, PayloadTooLarge
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH
from relay.sandbox.emulator.rest import CloudflareBan, Drop, Fail, RateLimit, Slow
from tests.emulated import start_emulator

TOKEN = "secret-token-abc.def.ghi"
GUILD = 800_000_000_000_000_001
OWNER = 800_000_000_000_000_101
ALICE = 800_000_000_000_000_102
CHANNEL = 800_000_000_000_000_201
OTHER_CHANNEL = 800_000_000_000_000_202
SEND = "POST /channels/{channel_id}/messages"


def make_discord(**kwargs: object) -> Emulator:
    """The emulated Discord on the virtual clock (its wall time is FAKE_EPOCH + trio time)."""
    discord = Emulator(token=TOKEN, epoch=FAKE_EPOCH, **kwargs)  # type: ignore[arg-type]
    discord.world.add_guild(GUILD, "Guild", owner_id=OWNER)
    discord.world.add_channel(CHANNEL, "general", guild_id=GUILD)
    discord.world.add_channel(OTHER_CHANNEL, "random", guild_id=GUILD)
    discord.world.add_member(GUILD, ALICE, nick="Alice", username="alice")
    return discord


@asynccontextmanager
async def running(discord: Emulator, *, token: str = TOKEN, **config: object) -> AsyncIterator[RestClient]:
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        cfg = attrs.evolve(DiscordConfig(), api_base_url=discord.base_url, **config)
        async with open_rest_client(cfg, token) as client:
            yield client
        nursery.cancel_scope.cancel()


def contents(discord: Emulator, route: str = SEND) -> list[str]:
    return [r.json["content"] for r in discord.requests_to(route) if r.status == 200]


def max_in_window(times: Sequence[float], window: float) -> int:
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, sum(1 for t in ordered[i:] if t < start + window))
    return best


# ---------------------------------------------------------------------- rate limits


async def test_burst_of_50_sends_respects_a_5_per_5s_bucket_in_order(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.set_bucket(SEND, limit=5, per=5.0)
    with trio.fail_after(600):
        async with running(discord) as client, trio.open_nursery() as nursery:
            start = trio.current_time()
            for i in range(50):
                nursery.start_soon(client.create_message, CHANNEL, {"content": f"m{i}"})
                # Let task i queue up before task i+1 exists, so "in order" has a meaning.
                await trio.testing.wait_all_tasks_blocked()
        elapsed = trio.current_time() - start
    assert discord.limit_violations == 0
    assert all(r.status == 200 for r in discord.requests_to(SEND))
    assert contents(discord) == [f"m{i}" for i in range(50)]
    assert [m["content"] for m in discord.world.messages[CHANNEL].values()] == [f"m{i}" for i in range(50)]
    # 10 windows of 5: the last batch starts 45 s after the first.
    assert 45.0 <= elapsed < 50.0
    assert max_in_window([r.time for r in discord.requests_to(SEND)], 5.0) == 5
    assert client.statistics().rate_limited_waits > 0


async def test_two_channels_are_not_serialized_behind_each_other(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.set_bucket(SEND, limit=5, per=5.0)
    with trio.fail_after(600):
        async with running(discord) as client, trio.open_nursery() as nursery:
            start = trio.current_time()
            for i in range(10):
                nursery.start_soon(client.create_message, CHANNEL, {"content": f"a{i}"})
                nursery.start_soon(client.create_message, OTHER_CHANNEL, {"content": f"b{i}"})
        elapsed = trio.current_time() - start
    assert discord.limit_violations == 0
    assert len(discord.world.messages[CHANNEL]) == 10 and len(discord.world.messages[OTHER_CHANNEL]) == 10
    # Each channel needs 2 windows; serialized they would need 4.
    assert 5.0 <= elapsed < 10.0
    first_b = min(r.time for r in discord.requests_to(SEND) if r.path == f"/channels/{OTHER_CHANNEL}/messages")
    last_a = max(r.time for r in discord.requests_to(SEND) if r.path == f"/channels/{CHANNEL}/messages")
    assert first_b < last_a


async def test_global_limit_caps_the_total(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord(global_limit=5)
    channels = [CHANNEL + 1000 + i for i in range(20)]
    for channel_id in channels:
        discord.world.add_channel(channel_id, f"c{channel_id}", guild_id=GUILD)
    with trio.fail_after(600):
        async with running(discord, global_rate_limit=5) as client, trio.open_nursery() as nursery:
            start = trio.current_time()
            for channel_id in channels:  # 20 different buckets: only the global limit applies
                nursery.start_soon(client.get_channel, channel_id)
        elapsed = trio.current_time() - start
    assert discord.limit_violations == 0
    times = [r.time for r in discord.requests_to("GET /channels/{channel_id}")]
    assert len(times) == 20
    assert max_in_window(times, 1.0) <= 5
    assert elapsed >= 3.0


async def test_bucket_429_retry_after_is_obeyed_and_retried(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject(SEND, RateLimit(retry_after=2.5, scope="user"))
    with trio.fail_after(60):
        async with running(discord) as client:
            message = await client.create_message(CHANNEL, {"content": "hello"})
            stats = client.statistics()
    sends = discord.requests_to(SEND)
    assert [r.status for r in sends] == [429, 200]
    assert sends[1].time - sends[0].time >= 2.5
    assert message["content"] == "hello"
    assert stats.rate_limited_responses == 1
    assert stats.invalid_requests_window == 1


async def test_global_429_pauses_every_route(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject("GET /users/@me", RateLimit(retry_after=3.0, scope="global"))
    with trio.fail_after(60):
        async with running(discord) as client, trio.open_nursery() as nursery:
            nursery.start_soon(client.get_current_user)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(client.get_guild, GUILD)
    me = discord.requests_to("GET /users/@me")
    guild = discord.requests_to("GET /guilds/{guild_id}")
    assert [r.status for r in me] == [429, 200]
    assert me[1].time - me[0].time >= 3.0
    assert guild[0].status == 200 and guild[0].time >= me[0].time + 3.0
    assert discord.limit_violations == 0


async def test_non_json_429_stops_all_requests(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    discord = make_discord()
    discord.inject(SEND, CloudflareBan())
    with trio.fail_after(60):
        async with running(discord) as client:
            with pytest.raises(CloudflareBanned):
                await client.create_message(CHANNEL, {"content": "x"})
            sent = len(discord.requests)
            with pytest.raises(CloudflareBanned):
                await client.get_current_user()
            assert len(discord.requests) == sent  # nothing more reached Discord
            assert client.statistics().cloudflare_banned
    assert any(rec.levelno == logging.ERROR for rec in caplog.records)


async def test_shared_bucket_hash_means_one_limit(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.set_bucket("GET /channels/{channel_id}", limit=2, per=3.0, bucket_hash="shared-hash")
    discord.set_bucket("GET /channels/{channel_id}/messages", limit=2, per=3.0, bucket_hash="shared-hash")
    with trio.fail_after(120):
        async with running(discord) as client:
            # One call on each route teaches the client that both report the same hash.
            await client.get_channel(CHANNEL)
            await client.get_channel_messages(CHANNEL)
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(client.get_channel, CHANNEL)
                    nursery.start_soon(client.get_channel_messages, CHANNEL)
    assert discord.limit_violations == 0
    times = [
        r.time
        for r in discord.requests
        if r.route in ("GET /channels/{channel_id}", "GET /channels/{channel_id}/messages")
    ]
    assert len(times) == 8
    assert max_in_window(times, 3.0) <= 2


# ---------------------------------------------------------------------- retries


async def test_500_then_200_is_retried_once(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject("GET /users/@me", Fail(500))
    with trio.fail_after(60):
        async with running(discord) as client:
            me = await client.get_current_user()
            stats = client.statistics()
    assert me["id"] == str(discord.world.bot_user_id)
    assert [r.status for r in discord.requests_to("GET /users/@me")] == [500, 200]
    assert stats.retries == 1


async def test_persistent_5xx_gives_up_after_max_retries(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject("GET /users/@me", *[Fail(502, message="Bad Gateway")] * 5)
    with trio.fail_after(120):
        async with running(discord, max_retries=2) as client:
            with pytest.raises(HTTPError) as info:
                await client.get_current_user()
    assert info.value.status == 502
    assert len(discord.requests_to("GET /users/@me")) == 3


async def test_send_retried_after_timeout_does_not_duplicate(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject(SEND, Slow(delay=60.0))
    with trio.fail_after(300):
        async with running(discord, request_timeout=5.0) as client:
            message = await client.create_message(CHANNEL, {"content": "only once"})
            assert client.statistics().retries == 1
    sends = discord.requests_to(SEND)
    assert len(sends) == 2
    assert sends[0].json["nonce"] == sends[1].json["nonce"]
    assert sends[0].json["enforce_nonce"] is True
    assert len(sends[0].json["nonce"]) <= 25
    assert [m["content"] for m in discord.world.messages[CHANNEL].values()] == ["only once"]
    assert message["id"] == next(iter(discord.world.messages[CHANNEL].values()))["id"]


async def test_each_logical_send_gets_its_own_nonce(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord) as client:
            await client.create_message(CHANNEL, {"content": "same"})
            await client.create_message(CHANNEL, {"content": "same"})
    assert len(discord.world.messages[CHANNEL]) == 2
    nonces = {r.json["nonce"] for r in discord.requests_to(SEND)}
    assert len(nonces) == 2


async def test_delete_whose_answer_was_lost_counts_as_done(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    message = discord.world.add_message(CHANNEL, "bye", author_id=ALICE)
    discord.inject("DELETE /channels/{channel_id}/messages/{message_id}", Drop(after_handling=True))
    with trio.fail_after(60):
        async with running(discord) as client:
            await client.delete_message(CHANNEL, int(message["id"]))
    assert [r.status for r in discord.requests_to("DELETE /channels/{channel_id}/messages/{message_id}")] == [0, 404]
    assert int(message["id"]) not in discord.world.messages[CHANNEL]


# ---------------------------------------------------------------------- errors


async def test_400_field_errors_are_flattened(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord) as client:
            with pytest.raises(HTTPError) as info:
                await client.create_message(CHANNEL, {"content": "x" * 2001})
    error = info.value
    assert (error.status, error.code) == (400, 50035)
    assert error.field_errors == ("content: Must be 2000 or fewer in length.",)
    assert error.method == "POST" and error.route == "/channels/{channel_id}/messages"
    assert "content: Must be 2000 or fewer in length." in str(error)


async def test_403_missing_permissions(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.forbid("DELETE /guilds/{guild_id}/members/{user_id}", GUILD)
    with trio.fail_after(60):
        async with running(discord) as client:
            with pytest.raises(HTTPError) as info:
                await client.remove_guild_member(GUILD, ALICE)
    assert (info.value.status, info.value.code, info.value.message) == (403, 50013, "Missing Permissions")
    assert (GUILD, ALICE) in discord.world.members


async def test_404_unknown_message_channel_member(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord) as client:
            with pytest.raises(HTTPError) as message_error:
                await client.get_message(CHANNEL, 123)
            with pytest.raises(HTTPError) as channel_error:
                await client.get_channel(999)
            with pytest.raises(HTTPError) as member_error:
                await client.get_guild_member(GUILD, 999)
            with pytest.raises(HTTPError) as guild_error:
                await client.get_guild(999)
    assert (message_error.value.status, message_error.value.code) == (404, 10008)
    assert channel_error.value.code == 10003
    assert member_error.value.code == 10007
    assert guild_error.value.code == 10004


async def test_invalid_request_guard_refuses_before_the_limit(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    discord = make_discord()
    discord.forbid("GET /guilds/{guild_id}")
    with trio.fail_after(60):
        async with running(discord, invalid_request_warn=3, invalid_request_refuse=5) as client:
            for _ in range(5):
                with pytest.raises(HTTPError):
                    await client.get_guild(GUILD)
            with pytest.raises(InvalidRequestGuard):
                await client.get_guild(GUILD)
            assert client.statistics().invalid_requests_window == 5
    assert len(discord.requests_to("GET /guilds/{guild_id}")) == 5
    assert any("invalid" in rec.getMessage() and rec.levelno == logging.WARNING for rec in caplog.records)


async def test_token_never_appears_in_repr_errors_or_logs(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    discord = make_discord()
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(60):
        async with running(discord, token="wrong-" + TOKEN) as client:
            assert TOKEN not in repr(client)
            with pytest.raises(HTTPError) as first:
                await client.get_current_user()
            with pytest.raises(HTTPError) as second:  # refused locally: the token was rejected
                await client.get_guild(GUILD)
    assert first.value.status == 401
    assert second.value.status == 401
    assert len(discord.requests) == 1
    for text in (str(first.value), repr(first.value), str(second.value), caplog.text):
        assert TOKEN not in text
    assert discord.requests[0].headers["authorization"] == "Bot wrong-" + TOKEN
    assert "data" not in repr(UploadFile("a.png", b"\x89PNG"))


async def test_a_token_refused_earlier_names_the_request_discord_rejected(autojump_clock: trio.abc.Clock) -> None:
    # issue 15: the exit message of a poisoned REST client said "HTTP 401 on  " (no method, no route)
    from relay.config import BridgeConfig
    from relay.main import fatal_message

    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord, token="wrong-" + TOKEN) as client:
            with pytest.raises(HTTPError):
                await client.get_current_user()
            with pytest.raises(HTTPError) as refused:
                await client.get_guild(GUILD)
    assert (refused.value.method, refused.value.route) == ("GET", "/users/@me")
    line = fatal_message(refused.value, BridgeConfig())
    assert "HTTP 401 on GET /users/@me" in line and "DISCORD_TOKEN" in line


# ---------------------------------------------------------------------- request shapes


async def test_headers_and_audit_log_reason(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    reason = "spam & flooding / 刷屏 " + "x" * 600
    with trio.fail_after(60):
        async with running(discord) as client:
            await client.remove_guild_member(GUILD, ALICE, reason=reason)
            await client.get_current_user()
    kick, me = discord.requests
    assert kick.headers["user-agent"].startswith(
        "DiscordBot (https://github.com/discord-mirai-relay/discord-mirai-relay, "
    )
    assert kick.headers["authorization"] == f"Bot {TOKEN}"
    encoded = kick.headers["x-audit-log-reason"]
    assert urllib.parse.unquote(encoded) == reason[:512]
    assert encoded.isascii()
    assert "x-audit-log-reason" not in me.headers
    assert (GUILD, ALICE) not in discord.world.members


async def test_multipart_upload_arrives_intact(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    image = bytes(range(256)) * 40
    text = "héllo\r\n--boundary-looking\r\n".encode()
    with trio.fail_after(60):
        async with running(discord) as client:
            message = await client.create_message(
                CHANNEL,
                {"content": "files!"},
                files=[UploadFile("a.png", image, "image/png", "alt text"), UploadFile("note.txt", text, "text/plain")],
            )
            downloaded, content_type = await client.download(message["attachments"][0]["url"], max_bytes=1 << 20)
    request = discord.requests_to(SEND)[0]
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert [p.name for p in request.parts] == ["payload_json", "files[0]", "files[1]"]
    assert request.parts[0].content_type == "application/json"
    assert request.parts[1].data == image and request.parts[1].filename == "a.png"
    assert request.parts[1].content_type == "image/png"
    assert request.parts[2].data == text
    payload = json.loads(request.parts[0].data)
    assert payload["content"] == "files!"
    assert payload["attachments"] == [
        {"id": 0, "filename": "a.png", "description": "alt text"},
        {"id": 1, "filename": "note.txt"},
    ]
    assert [a["size"] for a in message["attachments"]] == [len(image), len(text)]
    assert downloaded == image and content_type == "image/png"
    # The media download went without the bot token.
    download_request = discord.requests[-1]
    assert "authorization" not in download_request.headers


async def test_upload_limits_are_checked_before_sending(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord, max_upload_bytes=1000) as client:
            with pytest.raises(PayloadTooLarge) as too_big:
                await client.create_message(CHANNEL, {}, files=[UploadFile("big.bin", b"x" * 1001)])
            with pytest.raises(PayloadTooLarge) as too_many:
                await client.create_message(CHANNEL, {}, files=[UploadFile(f"{i}.txt", b"x") for i in range(11)])
    assert too_big.value.size == 1001 and too_big.value.limit == 1000
    assert too_many.value.size == 11 and too_many.value.unit == "files"
    assert discord.requests == []


async def test_download_refuses_oversized_media(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord) as client:
            url = discord.world.add_file("/cdn/big.bin", b"z" * 5000, "application/octet-stream")
            with pytest.raises(PayloadTooLarge):
                await client.download(url, max_bytes=4999)
            data, _ = await client.download(url, max_bytes=5000)
            with pytest.raises(HTTPError) as missing:
                await client.download(discord.origin + "/cdn/nothing.png", max_bytes=10)
    assert len(data) == 5000
    assert missing.value.status == 404


# ---------------------------------------------------------------------- endpoints


async def test_messages_history_and_pins(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    first = discord.world.add_message(CHANNEL, "first", author_id=ALICE)
    with trio.fail_after(60):
        async with running(discord) as client:
            reply = await client.create_message(
                CHANNEL,
                {"content": "re", "message_reference": {"message_id": first["id"], "fail_if_not_exists": False}},
            )
            third = await client.create_message(CHANNEL, {"content": "third"})
            history = await client.get_channel_messages(CHANNEL, limit=2)
            older = await client.get_channel_messages(CHANNEL, before=int(reply["id"]))
            fetched = await client.get_message(CHANNEL, int(first["id"]))
            await client.pin_message(CHANNEL, int(first["id"]), reason="essence")
            await client.pin_message(CHANNEL, int(third["id"]))
            pins = await client.get_pins(CHANNEL)
            page = await client.get_pins(CHANNEL, limit=1)
            await client.unpin_message(CHANNEL, int(first["id"]))
            after_unpin = await client.get_pins(CHANNEL)
            await client.delete_message(CHANNEL, int(third["id"]), reason="recall")
            with pytest.raises(HTTPError) as gone:
                await client.get_message(CHANNEL, int(third["id"]))
    assert reply["type"] == 19 and reply["message_reference"]["message_id"] == first["id"]
    assert reply["author"]["id"] == str(discord.world.bot_user_id)
    assert [m["content"] for m in history] == ["third", "re"]
    assert [m["content"] for m in older] == ["first"]
    assert fetched["content"] == "first"
    assert [item["message"]["content"] for item in pins["items"]] == ["third", "first"]
    assert pins["has_more"] is False and page["has_more"] is True
    assert [item["message"]["content"] for item in after_unpin["items"]] == ["third"]
    assert gone.value.code == 10008


async def test_dm_channels_are_cached(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord) as client:
            channel_id = await client.dm_channel_id(ALICE)
            again = await client.dm_channel_id(ALICE)
            await client.create_message(channel_id, {"content": "hi there"})
            cached = client.cached_dm_users()
            discord.close_dms(ALICE)
            with pytest.raises(HTTPError) as closed:
                await client.create_message(channel_id, {"content": "blocked"})
    assert channel_id == again == discord.world.dm_channels[ALICE]
    assert cached == {ALICE: channel_id}
    assert len(discord.requests_to("POST /users/@me/channels")) == 1
    assert closed.value.code == 50007


async def test_guild_members_roles_and_moderation(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.world.add_role(GUILD, GUILD + 5, "admin", permissions=1 << 3, position=2)
    for i in range(2100):
        discord.world.add_member(GUILD, 900_000_000_000_000_000 + i)
    with trio.fail_after(120):
        async with running(discord) as client:
            guild = await client.get_guild(GUILD)
            channels = await client.get_guild_channels(GUILD)
            roles = await client.get_guild_roles(GUILD)
            page = await client.list_guild_members(GUILD, limit=10)
            everyone = await client.iter_all_guild_members(GUILD)
            member = await client.modify_guild_member(GUILD, ALICE, nick="Card", reason="rename")
            muted = await client.modify_guild_member(
                GUILD, ALICE, communication_disabled_until="2026-09-22T00:00:00+00:00"
            )
            with pytest.raises(HTTPError) as too_long:
                await client.modify_guild_member(GUILD, ALICE, communication_disabled_until="2027-09-22T00:00:00+00:00")
            unmuted = await client.modify_guild_member(GUILD, ALICE, communication_disabled_until=None)
            await client.add_guild_member_role(GUILD, ALICE, GUILD + 5, reason="make admin")
            with_role = await client.get_guild_member(GUILD, ALICE)
            await client.remove_guild_member_role(GUILD, ALICE, GUILD + 5)
            without_role = await client.get_guild_member(GUILD, ALICE)
            await client.create_guild_ban(GUILD, 900_000_000_000_000_001, delete_message_seconds=60, reason="block")
            user = await client.get_user(ALICE)
            await client.leave_guild(GUILD)
            with pytest.raises(HTTPError) as left:
                await client.get_guild(GUILD)
    assert guild["owner_id"] == str(OWNER)
    assert roles[0]["id"] == str(GUILD) and roles[0]["name"] == "@everyone"
    assert {c["name"] for c in channels} == {"general", "random"}
    assert len(page) == 10
    assert len(everyone) == 2100 + 3  # + bot, owner, Alice
    assert len({m["user"]["id"] for m in everyone}) == len(everyone)
    assert len(discord.requests_to("GET /guilds/{guild_id}/members")) == 1 + 3
    assert member["nick"] == "Card"
    assert muted["communication_disabled_until"] == "2026-09-22T00:00:00+00:00"
    assert too_long.value.code == 50035 and "communication_disabled_until" in too_long.value.field_errors[0]
    assert unmuted["communication_disabled_until"] is None
    assert str(GUILD + 5) in with_role["roles"] and str(GUILD + 5) not in without_role["roles"]
    assert 900_000_000_000_000_001 in discord.world.bans[GUILD]
    assert discord.requests_to("PUT /guilds/{guild_id}/bans/{user_id}")[0].json == {"delete_message_seconds": 60}
    assert user["username"] == "alice"
    assert left.value.code == 10004
    patch = discord.requests_to("PATCH /guilds/{guild_id}/members/{user_id}")
    assert patch[0].json == {"nick": "Card"}
    assert patch[-1].json == {"communication_disabled_until": None}


async def test_channel_edits_and_permission_overwrites(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    deny = 2048 | 64
    with trio.fail_after(60):
        async with running(discord) as client:
            renamed = await client.modify_channel(CHANNEL, name="renamed", reason="group name")
            topic = await client.modify_channel(CHANNEL, topic=None)
            await client.edit_channel_permissions(CHANNEL, GUILD, allow=0, deny=deny, type=0, reason="mute all")
            channel = await client.get_channel(CHANNEL)
            await client.delete_channel_permission(CHANNEL, GUILD)
            cleared = await client.get_channel(CHANNEL)
            with pytest.raises(HTTPError) as bad_name:
                await client.modify_channel(CHANNEL, name="")
            info = await client.get_gateway_bot()
    assert renamed["name"] == "renamed"
    assert topic["topic"] is None
    assert discord.requests_to("PATCH /channels/{channel_id}")[1].json == {"topic": None}
    assert channel["permission_overwrites"] == [{"id": str(GUILD), "type": 0, "allow": "0", "deny": str(deny)}]
    assert cleared["permission_overwrites"] == []
    assert bad_name.value.field_errors and bad_name.value.field_errors[0].startswith("name:")
    assert info.shards == 1 and info.url == discord.gateway_url
    assert MISSING is not None


async def test_mentions_follow_allowed_mentions(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    with trio.fail_after(60):
        async with running(discord) as client:
            loud = await client.create_message(CHANNEL, {"content": f"<@{ALICE}> @everyone"})
            quiet = await client.create_message(
                CHANNEL, {"content": f"<@{ALICE}> @everyone", "allowed_mentions": {"parse": [], "users": [str(ALICE)]}}
            )
    assert [u["id"] for u in loud["mentions"]] == [str(ALICE)] and loud["mention_everyone"] is True
    assert [u["id"] for u in quiet["mentions"]] == [str(ALICE)] and quiet["mention_everyone"] is False


async def test_repeated_429s_fail_instead_of_looping(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject("GET /users/@me", *[RateLimit(retry_after=0.5, scope="shared")] * 20)
    with trio.fail_after(120):
        async with running(discord) as client:
            with pytest.raises(HTTPError) as info:
                await client.get_current_user()
            assert client.statistics().invalid_requests_window == 0  # scope=shared is not counted
    assert info.value.status == 429
    assert len(discord.requests_to("GET /users/@me")) == 11


async def test_dropped_connections_are_retried(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject("GET /guilds/{guild_id}", Drop())
    discord.inject(SEND, Drop(after_handling=True))
    with trio.fail_after(60):
        async with running(discord) as client:
            guild = await client.get_guild(GUILD)
            message = await client.create_message(CHANNEL, {"content": "reset after create"})
            assert client.statistics().retries == 2
    assert guild["id"] == str(GUILD)
    assert [r.status for r in discord.requests_to(SEND)] == [0, 200]
    assert [m["id"] for m in discord.world.messages[CHANNEL].values()] == [message["id"]]


async def test_network_errors_give_up_with_a_typed_error(autojump_clock: trio.abc.Clock) -> None:
    discord = make_discord()
    discord.inject("GET /users/@me", Drop(), Drop(), Drop())
    with trio.fail_after(60):
        async with running(discord, max_retries=2) as client:
            with pytest.raises(DiscordUnreachable) as info:
                await client.get_current_user()
    assert info.value.attempts == 3
    assert "GET /users/@me" in str(info.value)
