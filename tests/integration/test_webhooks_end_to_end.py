"""Both webhook directions through the whole bridge against the emulated Discord (REST + gateway on 127.0.0.1).

* robots: 500 posts in 2 s into one channel arrive on Discord, in order, in a few messages, with no 429 from the
  fake (its channel bucket set to Discord's kind of limit); a robot whose channel the bot may not post in reports
  ``failed`` with Discord's error, in metrics and in one log line; a robot with ``forward_to_frameworks`` is seen
  by the framework as a GroupMessage;
* webhooks out: a Discord message becomes a POST to the receiver, whose answer carries ``sendGroupMessage``, which
  the bridge runs: the emulated Discord receives it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from adapters.mirai.deadletters import DeadLetters
from adapters.mirai.handlers import MiraiCommandHandler, PresentedIdentity
from adapters.mirai.webhook import serve_webhooks
from adapters.robots.queue import DeliveryQueue
from adapters.robots.service import RobotService, robot_member_id, robot_routes, serve_robots
from relay.config import RobotConfig, RobotSignature, WebhookConfig, WebhookDestinationConfig
from relay.sandbox.emulator.emulator import Emulator
from relay.web.metrics import Metrics
from relay.web.routing import Router
from relay.web.server import serve_http
from tests.emulated import BOT_ID, say
from tests.fakes.webhook_receiver import Answer, WebhookReceiver
from tests.integration.test_end_to_end import ALICE, CHANNEL, OTHER_CHANNEL, Env, running_bridge, wait_group_messages
from tests.integration.test_robots import signed
from tests.unit.test_robots_pure import SECRET

MESSAGES = "POST /channels/{channel_id}/messages"
#: the emulated Discord's limit on one channel's messages: 5 a second (Discord's real one is 5 per 5 s)
BUCKET = 5


def robots() -> tuple[RobotConfig, ...]:
    return (
        RobotConfig(name="ci", group=CHANNEL, display_name="CI", secret=SECRET),
        RobotConfig(name="locked", group=OTHER_CHANNEL, signature=RobotSignature.NONE),
        RobotConfig(
            name="alerts",
            group=CHANNEL,
            display_name="Alerts",
            signature=RobotSignature.NONE,
            forward_to_frameworks=True,
        ),
    )


def limit_channels(discord: Emulator) -> None:
    discord.set_bucket(MESSAGES, limit=BUCKET, per=1.0)


@asynccontextmanager
async def robots_on(env: Env, metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    queue = DeliveryQueue(env.config.store.path)
    service = RobotService(
        robots(),
        queue=queue,
        service=env.running.bridge,
        events=env.running.bridge,
        metrics=metrics,
        write_lock=env.running.outbox.write_lock,
    )
    router = Router()
    router.include(robot_routes(service))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_robots, service)
            port = await nursery.start(partial(serve_http, router, host="127.0.0.1", port=0))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield client
            nursery.cancel_scope.cancel()
    finally:
        queue.close()


async def status_of(client: httpx.AsyncClient, robot: str, delivery_id: str, wanted: str) -> dict[str, Any]:
    while True:
        answer = (await client.get(f"/robots/{robot}/deliveries/{delivery_id}")).json()
        if answer["status"] == wanted:
            return dict(answer)
        await trio.sleep(0.02)


async def test_a_500_post_storm_becomes_a_few_messages_in_order_without_a_429(tmp_path: Path) -> None:
    metrics = Metrics()
    with trio.fail_after(120):
        async with running_bridge(tmp_path, before_start=limit_channels) as env, robots_on(env, metrics) as client:
            ids = []
            for i in range(500):
                body = json.dumps({"text": f"alert {i:03d}: disk usage above 90% on db-{i % 7}"}).encode()
                answer = await client.post("/robots/ci", content=body, headers=signed(body, f"msg_{i}"))
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
                await trio.sleep(0.004)  # 500 posts in about 2 s
            for delivery_id in ids:
                await status_of(client, "ci", delivery_id, "sent")
            rest = env.discord
            sent = [r for r in rest.requests_to(MESSAGES) if r.path == f"/channels/{CHANNEL}/messages"]
            sent_metric = metrics.robot_deliveries.labels("ci", "sent")._value.get()
    lines = [line for request in sent for line in request.json["content"].split("\n")]
    assert lines == [f"**CI**: alert {i:03d}: disk usage above 90% on db-{i % 7}" for i in range(500)]
    assert all(len(request.json["content"]) <= 2000 for request in sent)
    # ~25 KB of text needs at least 13 messages; at 5 messages a second while the posts arrive (3-4 s on a busy
    # 2-core machine) it took 20-22
    assert len(sent) <= 30, len(sent)
    assert rest.limit_violations == 0
    assert all(request.status != 429 for request in rest.requests)
    assert sent_metric == 500


async def test_a_channel_the_bot_cannot_post_in_fails_visibly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    with trio.fail_after(60), caplog.at_level(logging.WARNING, "adapters.robots.service"):
        async with running_bridge(tmp_path) as env, robots_on(env, metrics) as client:
            env.discord.forbid(MESSAGES, OTHER_CHANNEL)
            answer = await client.post("/robots/locked", json={"text": "anyone there?"})
            assert answer.status_code == 202
            status = await status_of(client, "locked", answer.json()["id"], "failed")
            failed = metrics.robot_deliveries.labels("locked", "failed")._value.get()
    assert "Missing Permissions" in status["error"] or "permission" in status["error"].lower(), status
    assert failed == 1
    assert sum("refused 1 post(s) of locked" in r.message for r in caplog.records) == 1


async def test_a_forwarding_robot_reaches_the_frameworks_as_a_group_message(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env, robots_on(env, Metrics()) as client:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            answer = await client.post("/robots/alerts", json={"msgtype": "text", "text": {"content": "pager!"}})
            await status_of(client, "alerts", answer.json()["id"], "sent")
            (event,) = await wait_group_messages(env.framework, 1)
    sender = event["sender"]
    assert isinstance(sender, dict)
    assert (sender["id"], sender["memberName"]) == (robot_member_id("alerts"), "Alerts")
    assert sender["group"]["id"] == CHANNEL
    chain = event["messageChain"]
    assert isinstance(chain, list)
    assert chain[1] == {"type": "Plain", "text": "**Alerts**: pager!"}


async def test_a_webhook_answer_command_is_run_on_discord(tmp_path: Path) -> None:
    pong = {
        "command": "sendGroupMessage",
        "content": {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "pong from the webhook answer"}]},
    }
    receiver = WebhookReceiver(default=Answer(200, json.dumps(pong).encode()))
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env, trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            handler = MiraiCommandHandler(env.running.bridge, PresentedIdentity(env.running.cache))
            with DeadLetters(env.config.store.path) as dead_letters:
                await nursery.start(
                    partial(
                        serve_webhooks,
                        config=WebhookConfig(destinations=(WebhookDestinationConfig(url=f"http://127.0.0.1:{port}/"),)),
                        outbox=env.running.outbox,
                        dead_letters=dead_letters,
                        dispatcher=handler,
                        identity=PresentedIdentity(env.running.cache),
                        metrics=Metrics(),
                    )
                )
                await say(env.discord, CHANNEL, ALICE, "ping")
                (posted,) = await receiver.wait_for(1)
                rest = env.discord
                while not any(
                    (r.json or {}).get("content") == "pong from the webhook answer" for r in rest.requests_to(MESSAGES)
                ):
                    await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
    assert posted.json()["type"] == "GroupMessage"
    assert posted.header("qq") == str(BOT_ID)
