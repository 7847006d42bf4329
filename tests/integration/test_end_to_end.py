"""The whole bridge in one process: the emulated Discord (gateway + REST) ⇄ relay ⇄ fake mirai framework.

Everything talks over real loopback sockets; nothing of ours is mocked. The subprocess variant (the real CLI
with a config file) is in test_end_to_end_process.py.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from relay.app import RunningBridge, serve_bridge
from relay.config import (
    BackfillConfig,
    BridgeConfig,
    DestinationConfig,
    DiscordConfig,
    LoggingConfig,
    MappingConfig,
    MiraiConfig,
    ReverseWsConfig,
    ServerConfig,
    StoreConfig,
)
from relay.main import run
from relay.sandbox.emulator.emulator import Emulator
from relay.storage.sessions import load_gateway_sessions
from tests.emulated import BOT_ID, TOKEN, add_guild, say, sent_dispatches, start_emulator
from tests.fakes.fake_framework import FakeFramework, open_fake_framework

GUILD = 5000
CHANNEL = 5001
OTHER_CHANNEL = 5002
OWNER = 6000
ALICE = 6001
BOB = 6002
VERIFY_KEY = "e2e-verify-key"


def bridge_config(
    discord: Emulator,
    framework: FakeFramework,
    tmp_path: Path,
    mapping: MappingConfig | None = None,
    status_interval: float = 3600,
    *,
    backfill: BackfillConfig | None = None,
) -> BridgeConfig:
    return BridgeConfig(
        mapping=mapping or MappingConfig(),
        discord=DiscordConfig(
            token=discord.token,
            api_base_url=discord.base_url,
            gateway_url=discord.gateway_url,
            backfill=backfill or BackfillConfig(),
        ),
        mirai=MiraiConfig(
            verify_key=VERIFY_KEY,
            reverse_ws=ReverseWsConfig(
                destinations=(DestinationConfig(name="fw", host="127.0.0.1", port=framework.port, path="/"),)
            ),
        ),
        store=StoreConfig(path=str(tmp_path / "bridge.sqlite3")),
        logging=LoggingConfig(status_interval=status_interval),
        server=ServerConfig(port=0),  # any free port: suites may run side by side on one machine
    )


@attrs.frozen
class Env:
    discord: Emulator
    framework: FakeFramework
    running: RunningBridge
    config: BridgeConfig


@asynccontextmanager
async def running_bridge(
    tmp_path: Path,
    *,
    qq: object = None,
    mapping: MappingConfig | None = None,
    before_start: Callable[[Emulator], None] | None = None,
    status_interval: float = 3600,
    backfill: BackfillConfig | None = None,
) -> AsyncIterator[Env]:
    discord = Emulator(token=TOKEN)
    add_guild(
        discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general", OTHER_CHANNEL: "random"}, members=[ALICE]
    )
    if before_start is not None:
        before_start(discord)
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID if qq is None else qq) as framework:
            config = bridge_config(discord, framework, tmp_path, mapping, status_interval, backfill=backfill)
            stopped = trio.Event()

            async def run_bridge(task_status: trio.TaskStatus[RunningBridge] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await serve_bridge(config, task_status=task_status)
                finally:
                    stopped.set()

            running: RunningBridge = await nursery.start(run_bridge)
            yield Env(discord=discord, framework=framework, running=running, config=config)
            running.shutdown()
            await stopped.wait()  # the graceful shutdown finishes while the framework is still there
        nursery.cancel_scope.cancel()


async def wait_group_messages(framework: FakeFramework, count: int) -> list[dict[str, object]]:
    with trio.fail_after(20):
        while len(group_messages(framework)) < count:
            await trio.sleep(0.02)
    return group_messages(framework)


async def wait_event_type(
    framework: FakeFramework, kind: str, where: Callable[[dict[str, Any]], bool] = lambda data: True
) -> dict[str, Any]:
    """The first event of type ``kind`` (for which ``where`` holds) the framework got."""
    with trio.fail_after(20):
        while True:
            for event in framework.events:
                if event.data.get("type") == kind and where(event.data):
                    return event.data
            await trio.sleep(0.02)


async def wait_delivered(env: Env, count: int) -> None:
    """Until the framework has ``count`` group messages and the bridge counts every frame delivered (its TCP
    acknowledged them: nothing left in flight)."""
    await wait_group_messages(env.framework, count)
    with trio.fail_after(20):
        while any(d.backlog for d in env.running.reverse_ws.statistics()):
            await trio.sleep(0.01)


def group_messages(framework: FakeFramework) -> list[dict[str, object]]:
    return [e.data for e in framework.events if e.data.get("type") == "GroupMessage"]


def plain_text(event: dict[str, object]) -> str:
    chain = event["messageChain"]
    assert isinstance(chain, list)
    return "".join(str(e["text"]) for e in chain if e["type"] == "Plain")


async def test_message_becomes_group_message_and_reply_with_quote_reaches_rest(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            await say(env.discord, CHANNEL, ALICE, "hello bridge")
            (event,) = await wait_group_messages(env.framework, 1)
            chain = event["messageChain"]
            assert isinstance(chain, list)
            assert chain[0]["type"] == "Source"
            assert plain_text(event) == "hello bridge"
            sender = event["sender"]
            assert isinstance(sender, dict)
            assert sender["id"] == ALICE
            assert sender["group"] == {"id": CHANNEL, "name": "general", "permission": "MEMBER"}
            source_id = chain[0]["id"]

            data = await conn.request(
                "sendGroupMessage",
                {"target": CHANNEL, "quote": source_id, "messageChain": [{"type": "Plain", "text": "hi Alice"}]},
            )
            assert data["code"] == 0
            assert isinstance(data["messageId"], int) and data["messageId"] > 0
            (post,) = [r for r in env.discord.requests if r.method == "POST" and r.path.endswith("/messages")]
            assert post.json is not None
            assert post.json["content"] == "hi Alice"
            messages = env.discord.world.messages[CHANNEL]
            original_id = int(next(m for m in messages.values() if m["content"] == "hello bridge")["id"])
            assert post.json["message_reference"]["message_id"] == str(original_id)
            assert post.json["allowed_mentions"]["parse"] == []

            # the bot's own message arrives through the gateway too (Discord sends it): it must not be echoed back
            sent = messages[max(messages)]
            assert sent["content"] == "hi Alice"
            assert any(d["id"] == sent["id"] for d in sent_dispatches(env.discord, "MESSAGE_CREATE"))
            await say(env.discord, CHANNEL, ALICE, "second")  # after the echo: the framework has both by then
            texts = [plain_text(e) for e in await wait_group_messages(env.framework, 2)]
            assert texts == ["hello bridge", "second"]


async def test_recall_round_trips_both_ways(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            # framework → Discord: recall what the bot sent
            sent = await conn.request(
                "sendGroupMessage", {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "oops"}]}
            )
            before = len(env.discord.world.messages[CHANNEL])
            answer = await conn.request("recall", {"target": CHANNEL, "messageId": sent["messageId"]})
            assert answer == {"code": 0, "msg": "success"}
            assert len(env.discord.world.messages[CHANNEL]) == before - 1
            missing = await conn.request("recall", {"target": CHANNEL, "messageId": 999_999})
            assert missing["code"] == 5

            # Discord → framework: a user deletes their message
            message = await say(env.discord, CHANNEL, ALICE, "delete me")
            (received,) = await wait_group_messages(env.framework, 1)
            local_id = received["messageChain"][0]["id"]  # type: ignore[index]
            env.discord.actions.delete_message(CHANNEL, int(message["id"]), actor_id=ALICE)
            # (the bot's own recall above came back as a MESSAGE_DELETE too, as on Discord: its event is another one)
            recall = await wait_event_type(env.framework, "GroupRecallEvent", lambda e: e["messageId"] == local_id)
            assert recall["authorId"] == ALICE


async def test_member_join_arrives_in_the_system_channel(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            env.discord.actions.member_join(GUILD, BOB, username="bob")
            join = await wait_event_type(env.framework, "MemberJoinEvent")
            member = join["member"]
            assert isinstance(member, dict)
            assert member["id"] == BOB
            assert member["group"]["id"] == CHANNEL


async def test_drops_on_both_sides_deliver_every_event_exactly_once_in_order(tmp_path: Path) -> None:
    total = 300
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            discord, gateway = env.discord, env.discord.gateway
            for i in range(total):
                await say(discord, CHANNEL, ALICE, f"m{i}")
                if i in (60, 240):
                    await discord.wait_until(lambda: 0 in discord.live_shards())
                    await discord.drop_connection()  # Discord drops: the shard resumes, Discord replays
                if i == 120:
                    # once it has what was sent so far (the emulator posts faster than the old fake dispatched: a
                    # framework stopped with frames in flight may get those again, test_delivery_acknowledged)
                    await wait_delivered(env, i + 1)
                    await env.framework.stop()  # the framework goes away: events wait in the outbox
                if i == 180:
                    await env.framework.start()
            texts = [plain_text(e) for e in await wait_group_messages(env.framework, total)]
            assert texts == [f"m{i}" for i in range(total)]
            assert len(gateway.resumes) >= 2
            assert len(gateway.identifies) == 1


async def test_an_event_the_framework_lacks_is_on_disk_while_the_bridge_runs(tmp_path: Path) -> None:
    # the composition root runs the outbox's flusher beside the store's (relay.storage.flushers): a frame no
    # framework has is written within a flush interval, not only at shutdown
    with trio.fail_after(30):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            await env.framework.stop()
            await say(env.discord, CHANNEL, ALICE, "kept")
            peek = sqlite3.connect(env.config.store.path)
            try:
                while not peek.execute("SELECT COUNT(*) FROM outbox_events WHERE frame LIKE '%kept%'").fetchone()[0]:
                    await trio.sleep(0.02)
            finally:
                peek.close()
            await env.framework.start()
            assert [plain_text(e) for e in await wait_group_messages(env.framework, 1)] == ["kept"]


async def test_commands_without_discord_meaning_get_a_clear_error(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            nudge = await conn.request("sendNudge", {"target": ALICE, "subject": CHANNEL, "kind": "Group"})
            assert nudge["code"] == 6 and "nudge" in str(nudge["msg"]).lower()
            unknown = await conn.request("noSuchCommand", {})
            assert unknown["code"] == 6
            groups = await conn.request("groupList", {})
            assert groups["code"] == 0
            listed = groups["data"]
            assert isinstance(listed, list)
            assert {g["id"] for g in listed} == {CHANNEL, OTHER_CHANNEL}
            about = await conn.request("about", {})
            assert about["data"] == {"version": "2.10.0"}


async def test_shutdown_saves_a_resumable_session_and_closes_discord_resumably(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            gateway = env.discord.gateway
        # saved in the store with the last flush (relay.storage.sessions)
        saved = load_gateway_sessions(env.config.store.path).sessions
        assert json.loads(saved[0])["session_id"]
        # closed from inside the live connection with 4000 (never 1000/1001, which end the session)
        assert [code for _t, code in gateway.client_closes] == [4000]


async def test_restart_resumes_the_saved_session_instead_of_identifying(tmp_path: Path) -> None:
    with trio.fail_after(60):
        discord = Emulator(token=TOKEN)
        add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
        async with trio.open_nursery() as nursery:
            await start_emulator(nursery, discord)
            async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID) as framework:
                config = bridge_config(discord, framework, tmp_path)
                stopped = trio.Event()

                async def first_run(task_status: trio.TaskStatus[RunningBridge] = trio.TASK_STATUS_IGNORED) -> None:
                    try:
                        await serve_bridge(config, task_status=task_status)
                    finally:
                        stopped.set()

                running = await nursery.start(first_run)
                await (await framework.wait_connection()).wait_verified()
                running.shutdown()
                with trio.fail_after(15):
                    await stopped.wait()  # stopped cleanly: the session is in the store
                await trio.sleep(0.2)
                await say(discord, CHANNEL, ALICE, "while down")
                running = await nursery.start(serve_bridge, config)
                assert len(discord.gateway.identifies) == 1
                assert len(discord.gateway.resumes) == 1
                with trio.fail_after(15):
                    while "while down" not in [plain_text(e) for e in group_messages(framework)]:
                        await trio.sleep(0.05)
                running.shutdown()
            nursery.cancel_scope.cancel()


async def test_status_line_reports_shards_destinations_and_throughput(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.app")
    with trio.fail_after(30):
        async with running_bridge(tmp_path, status_interval=0.2) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            await say(env.discord, CHANNEL, ALICE, "counted")
            await wait_group_messages(env.framework, 1)
            while not any("destinations 1/1 verified" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.05)
    status = [r.getMessage() for r in caplog.records if r.getMessage().startswith("status:")]
    assert any("shards 1/1 up, guilds 1, destinations 1/1 verified" in line for line in status), status


def test_an_unusable_store_path_ends_with_one_clear_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    config = BridgeConfig(
        discord=DiscordConfig(token="unused-token", api_base_url="http://127.0.0.1:9/api/v10"),
        store=StoreConfig(path=str(blocker / "sub" / "bridge.sqlite3")),
    )
    assert run(config) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot create the folder of the store" in errors[0], errors
