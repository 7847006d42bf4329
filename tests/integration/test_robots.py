"""Inbound webhook robots (issue 14 b) over real HTTP on 127.0.0.1: relay/web's server with the robots' routes,
the robots' senders, and behind them a recording CommandService (this file) or the whole bridge against the fake
Discord (test_robots_end_to_end.py). Signatures are made with the reference library or with hmac as the
DingTalk/Feishu docs show; no timed assertions."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from standardwebhooks import Webhook

from adapters.robots.queue import DeliveryQueue
from adapters.robots.service import RobotService, robot_routes, serve_robots
from relay import envelope as env
from relay.config import BackoffConfig, RobotConfig, RobotSignature
from relay.errors import CommandFailed, FailureKind
from relay.web.metrics import Metrics
from relay.web.routing import Router
from relay.web.server import serve_http
from tests.unit.test_robots_pure import DING_SECRET, SECRET, dingtalk_sign

FAST = BackoffConfig(initial=0.01, factor=2.0, cap=0.05)
CHANNEL = 5001


@attrs.define
class RecordingService:
    """A CommandService that records what it is asked to post; ``fail`` makes the next sends fail."""

    sent: list[str] = attrs.Factory(list)
    fail: list[CommandFailed] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)

    async def execute(self, command: env.Command) -> env.Result:
        assert isinstance(command, env.SendMessage)
        await trio.sleep(0)
        if self.fail:
            raise self.fail.pop(0)
        (segment,) = command.segments
        assert isinstance(segment, env.Text)
        self.sent.append(segment.text)
        self.changed.set()
        self.changed = trio.Event()
        ref = env.MessageRef(conversation=command.conversation, platform_id=len(self.sent), channel_id=CHANNEL)
        return env.MessageSent(ref=ref, time=0)

    def lines(self) -> list[str]:
        return [line for message in self.sent for line in message.split("\n")]


@attrs.frozen
class RobotsEnv:
    client: httpx.AsyncClient
    robots: RobotService
    metrics: Metrics


def ci_robot(**changes: Any) -> RobotConfig:
    return RobotConfig(**{"name": "ci", "group": CHANNEL, "display_name": "CI", "secret": SECRET, **changes})


@asynccontextmanager
async def robots_running(tmp_path: Path, service: Any, *robots: RobotConfig) -> AsyncIterator[RobotsEnv]:
    queue = DeliveryQueue(str(tmp_path / "bridge.sqlite3"))
    metrics = Metrics()
    robot_service = RobotService(
        robots or (ci_robot(),),
        queue=queue,
        service=service,
        metrics=metrics,
        write_lock=threading.Lock(),
        backoff=FAST,
    )
    router = Router()
    router.include(robot_routes(robot_service))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_robots, robot_service)
            port = await nursery.start(partial(serve_http, router, host="127.0.0.1", port=0))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield RobotsEnv(client, robot_service, metrics)
            nursery.cancel_scope.cancel()
    finally:
        queue.close()


def signed(body: bytes, msg_id: str = "msg_1", *, at: dt.datetime | None = None) -> dict[str, str]:
    when = at or dt.datetime.now(tz=dt.UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, when, body),
        "content-type": "application/json",
    }


async def post(client: httpx.AsyncClient, payload: object, msg_id: str = "msg_1", **kwargs: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post("/robots/ci", content=body, headers=signed(body, msg_id), **kwargs)


async def wait_status(client: httpx.AsyncClient, delivery_id: str, status: str, robot: str = "ci") -> dict[str, Any]:
    while True:
        answer = await client.get(f"/robots/{robot}/deliveries/{delivery_id}")
        assert answer.status_code == 200
        if answer.json()["status"] == status:
            return dict(answer.json())
        await trio.sleep(0.01)


async def test_every_shape_is_queued_then_sent_and_its_status_reported(tmp_path: Path) -> None:
    service = RecordingService()
    payloads = [
        {"content": "discord style", "username": "Jenkins"},
        {"text": "slack style"},
        {"msgtype": "markdown", "markdown": {"title": "Release", "text": "dingtalk style"}},
    ]
    with trio.fail_after(20):
        async with robots_running(tmp_path, service) as robots:
            ids = []
            for i, payload in enumerate(payloads):
                answer = await post(robots.client, payload, f"msg_{i}")
                assert answer.status_code == 202, answer.text
                assert answer.json()["status"] == "queued"
                ids.append(answer.json()["id"])
            plain = b"plain text style"
            headers = {**signed(plain, "msg_plain"), "content-type": "text/plain"}
            answer = await robots.client.post("/robots/ci", content=plain, headers=headers)
            ids.append(answer.json()["id"])
            for delivery_id in ids:
                status = await wait_status(robots.client, delivery_id, "sent")
                assert status["error"] == ""
            accepted = robots.metrics.robot_posts.labels("ci", "202")._value.get()
    assert service.lines() == [
        "**CI · Jenkins**: discord style",
        "**CI**: slack style",
        "**CI**: **Release**",
        "dingtalk style",
        "**CI**: plain text style",
    ]
    assert accepted == 4


async def test_refusals_have_their_status_and_a_json_error_body(tmp_path: Path) -> None:
    service = RecordingService()
    body = json.dumps({"text": "hi"}).encode()
    stale = dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=6)
    with trio.fail_after(20):
        async with robots_running(tmp_path, service) as robots:
            client = robots.client
            cases = {
                "unknown robot": (await client.post("/robots/nobody", content=body, headers=signed(body)), 404),
                "no signature": (await client.post("/robots/ci", content=body), 401),
                "wrong signature": (
                    await client.post("/robots/ci", content=b'{"text": "changed"}', headers=signed(body)),
                    403,
                ),
                "stale timestamp": (
                    await client.post("/robots/ci", content=body, headers=signed(body, at=stale)),
                    403,
                ),
                "10 MB body": (
                    await client.post("/robots/ci", content=b"x" * (10 * 1024 * 1024), headers=signed(b"")),
                    413,
                ),
                "an image": (
                    await client.post(
                        "/robots/ci", content=b"\x89PNG", headers={**signed(b"\x89PNG"), "content-type": "image/png"}
                    ),
                    415,
                ),
                "no known shape": (
                    await client.post("/robots/ci", content=b'{"x": 1}', headers=signed(b'{"x": 1}')),
                    422,
                ),
                "unknown delivery": (await client.get("/robots/ci/deliveries/rd_nope"), 404),
            }
            rejected = robots.metrics.robot_posts.labels("ci", "403")._value.get()
    for name, (answer, status) in cases.items():
        assert answer.status_code == status, name
        assert answer.headers["content-type"].startswith("application/json"), name
        error = answer.json()
        assert error["status"] == status and error["message"], name
    assert rejected == 2
    assert service.sent == []


async def test_a_replayed_webhook_id_is_posted_once(tmp_path: Path) -> None:
    service = RecordingService()
    with trio.fail_after(20):
        async with robots_running(tmp_path, service) as robots:
            first = await post(robots.client, {"text": "deploy done"}, "msg_same")
            again = await post(robots.client, {"text": "deploy done"}, "msg_same")
            await wait_status(robots.client, first.json()["id"], "sent")
            third = await post(robots.client, {"text": "deploy done"}, "msg_same")
            other = await post(robots.client, {"text": "next"}, "msg_other")
            await wait_status(robots.client, other.json()["id"], "sent")
    assert first.status_code == again.status_code == third.status_code == 202
    assert (again.json()["id"], again.json()["duplicate"]) == (first.json()["id"], True)
    assert third.json()["id"] == first.json()["id"] and third.json()["status"] == "sent"
    assert service.lines() == ["**CI**: deploy done", "**CI**: next"]


async def test_dingtalk_signed_post_is_accepted(tmp_path: Path) -> None:
    service = RecordingService()
    robot = ci_robot(secret=DING_SECRET, signature=RobotSignature.TIMESTAMP)
    stamp = int(dt.datetime.now(tz=dt.UTC).timestamp() * 1000)
    body = json.dumps({"msgtype": "text", "text": {"content": "from dingtalk"}}).encode()
    with trio.fail_after(20):
        async with robots_running(tmp_path, service, robot) as robots:
            answer = await robots.client.post(
                f"/robots/ci?timestamp={stamp}&sign={dingtalk_sign(stamp, DING_SECRET)}",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 202, answer.text
            await wait_status(robots.client, answer.json()["id"], "sent")
    assert service.sent == ["**CI**: from dingtalk"]


async def test_a_permanent_discord_error_marks_the_posts_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = RecordingService(fail=[CommandFailed(FailureKind.NO_PERMISSION, "missing permission to send")])
    with trio.fail_after(20), caplog.at_level(logging.WARNING, "adapters.robots.service"):
        async with robots_running(tmp_path, service) as robots:
            answer = await post(robots.client, {"text": "lost?"})
            status = await wait_status(robots.client, answer.json()["id"], "failed")
            later = await post(robots.client, {"text": "the next one"}, "msg_2")
            await wait_status(robots.client, later.json()["id"], "sent")
            failed = robots.metrics.robot_deliveries.labels("ci", "failed")._value.get()
    assert status["error"] == "no_permission: missing permission to send"
    assert failed == 1
    assert [r.message for r in caplog.records if "refused" in r.message] == [
        "robots: channel 5001 refused 1 post(s) of ci: no_permission: missing permission to send; marked failed "
        "(GET .../deliveries/<id> shows it)"
    ]
    assert service.sent == ["**CI**: the next one"]


async def test_posts_survive_a_discord_outage_and_a_restart_in_order(tmp_path: Path) -> None:
    outage = RecordingService(fail=[CommandFailed(FailureKind.INTERNAL, "Discord answered 503")] * 10_000)
    with trio.fail_after(30):
        async with robots_running(tmp_path, outage) as robots:
            ids = [(await post(robots.client, {"text": f"alert {i}"}, f"msg_{i}")).json()["id"] for i in range(5)]
            while len(outage.fail) > 9_990:  # the sender is retrying
                await trio.sleep(0.01)
        assert outage.sent == []
        recovered = RecordingService()
        async with robots_running(tmp_path, recovered) as robots:
            for delivery_id in ids:
                await wait_status(robots.client, delivery_id, "sent")
    assert recovered.lines() == [f"**CI**: alert {i}" for i in range(5)]
