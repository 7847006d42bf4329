"""A Discord-compatible server that deviates from Discord (issue 15): each shape against the emulated Discord with
that deviation switched on (its gateway's refuse/close knobs, ``world.deviations``), or as a raw dispatch.

Self-hosted servers exist, and Discord itself sends surprising shapes. None of these may crash the bridge, lose
what can be kept, or be logged as something it is not.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from adapters.discord import USER_AGENT
from adapters.discord.gateway.close_codes import CloseAction
from adapters.discord.gateway.events import DispatchReceived, ShardDisconnected
from relay.config import MappingConfig
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import message_create, say
from tests.integration.test_discord_shard import Collector, message, start_discord, start_gateway, wait_for_seq_count
from tests.integration.test_end_to_end import ALICE, CHANNEL, GUILD, OWNER, running_bridge


async def test_the_gateway_handshake_sends_the_rest_user_agent(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    # some servers refuse a handshake without a User-Agent (close 4002); REST has always sent one
    with trio.fail_after(30):
        discord = await start_discord(nursery)
        await start_gateway(nursery, discord, Collector(), compress=False)
    assert discord.gateway.connections[0].headers.get("user-agent") == USER_AGENT


async def test_the_server_close_reason_is_logged(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector, compress=False)
        await discord.close_with(4000, reason="node draining for maintenance")
        await discord.wait_until(lambda: len(discord.gateway.resumes) == 1)
    (disconnected,) = collector.of(ShardDisconnected)
    assert "node draining for maintenance" in disconnected.reason
    assert "close code 4000" in disconnected.reason
    assert "node draining for maintenance" in caplog.text


async def test_a_fatal_close_names_the_server_reason_in_the_error(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    from relay.errors import GatewayClosed

    with trio.fail_after(60):
        discord = await start_discord(nursery, close_on_identify=4014, close_on_identify_reason="intents not enabled")
        with pytest.raises(GatewayClosed) as info:
            await start_gateway(nursery, discord, Collector(), compress=False)
    assert "intents not enabled" in str(info.value)


async def test_a_close_before_ready_does_not_promise_a_resume(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        discord = await start_discord(nursery, close_on_identify=4000)
        collector = Collector()

        async def start() -> None:
            await start_gateway(nursery, discord, collector, compress=False)

        nursery.start_soon(start)
        await discord.wait_until(lambda: len(discord.gateway.identifies) == 2)
        discord.gateway.close_on_identify = None
        await discord.wait_until(lambda: len(discord.gateway.identifies) == 3 and bool(discord.live_shards()))
    first = collector.of(ShardDisconnected)[0]
    assert first.action is CloseAction.REIDENTIFY  # no session existed: nothing to resume
    assert not discord.gateway.resumes
    assert "to resume" not in caplog.text


async def test_an_unknown_dispatch_whose_d_is_a_list_passes_quietly(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(30):
        discord = await start_discord(nursery)
        collector = Collector()
        await start_gateway(nursery, discord, collector, compress=False)
        await discord.dispatch("SESSIONS_REPLACE", [{"session_id": "x", "status": "online"}])  # type: ignore[arg-type]
        await discord.dispatch("MESSAGE_CREATE", message(1))
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 1)
    (replace,) = collector.dispatches("SESSIONS_REPLACE")
    assert isinstance(replace, DispatchReceived) and replace.data == [{"session_id": "x", "status": "online"}]
    assert "malformed" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_member_list_entries_without_user_are_reported_never_an_empty_complete_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bob, carol = 6102, 6103

    def seed(discord: Emulator) -> None:
        for user_id in (bob, carol):
            discord.world.add_user(user_id, f"user{user_id}")
            discord.world.add_member(GUILD, user_id)
        discord.world.deviations.members_without_user.update({(GUILD, bob), (GUILD, carol)})

    with trio.fail_after(60):
        async with running_bridge(tmp_path, mapping=MappingConfig(), before_start=seed) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            first = await conn.request("memberList", {"target": CHANNEL})
            listings = len(env.discord.requests_to("GET /guilds/{guild_id}/members"))
            second = await conn.request("memberList", {"target": CHANNEL})
            listings_after = len(env.discord.requests_to("GET /guilds/{guild_id}/members"))
    assert first["code"] == 0, first
    ids = {m["id"] for m in first["data"]}  # type: ignore[union-attr]
    assert ALICE in ids and OWNER in ids  # readable entries are kept, none silently dropped with them
    assert second["code"] == 0 and {m["id"] for m in second["data"]} == ids  # type: ignore[union-attr]
    assert listings_after == listings + 1  # the list was not complete: asked again, not answered from the cache
    warning = next(r.getMessage() for r in caplog.records if "without their user object" in r.getMessage())
    assert f"guild {GUILD}: 2 of the" in warning


async def test_out_of_range_ids_are_refused_and_the_bridge_keeps_relaying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 15: an id >= 2**63 (or 10**400) used to end the bridge with OverflowError in the store writer
    from tests.integration.test_end_to_end import plain_text, wait_group_messages

    caplog.set_level(logging.WARNING)
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            discord = env.discord
            for bad in (str(2**63), str(10**400), 2**64):  # hand-built: Discord never sends such ids
                bad_id = message_create(discord, discord.world.add_message(CHANNEL, "bad id", author_id=ALICE))
                bad_id["id"] = bad
                await discord.dispatch("MESSAGE_CREATE", bad_id)
                bad_author = message_create(discord, discord.world.add_message(CHANNEL, "bad author", author_id=ALICE))
                bad_author["author"] = {**bad_author["author"], "id": bad}
                await discord.dispatch("MESSAGE_CREATE", bad_author)
            await say(discord, CHANNEL, ALICE, "marker")
            (event,) = await wait_group_messages(env.framework, 1)
            await trio.sleep(0.2)  # two store flushes: the refused rows would have reached the writer by now
    assert plain_text(event) == "marker"
    assert caplog.text.count("refused a MESSAGE_CREATE dispatch") == 6
    assert "OverflowError" not in caplog.text


async def test_a_consumer_error_skips_one_dispatch_and_the_reader_carries_on(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(Collector):
        def __call__(self, event: object) -> None:
            if isinstance(event, DispatchReceived) and event.data == message(1):
                raise RuntimeError("a bug in the consumer")
            super().__call__(event)  # type: ignore[arg-type]

    with trio.fail_after(30):
        discord = await start_discord(nursery)
        collector = Failing()
        await start_gateway(nursery, discord, collector, compress=False)
        for i in range(3):
            await discord.dispatch("MESSAGE_CREATE", message(i))
        await wait_for_seq_count(discord, collector, "MESSAGE_CREATE", 2)
    assert [e.data["content"] for e in collector.dispatches("MESSAGE_CREATE")] == ["message 0", "message 2"]
    failure = next(r for r in caplog.records if "handling MESSAGE_CREATE failed" in r.getMessage())
    assert failure.exc_info is not None
    assert not discord.gateway.resumes  # the connection was not even dropped
