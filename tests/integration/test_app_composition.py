"""What serve_bridge composes besides the two data paths, through the running bridge over real loopback sockets:
the robots on the ``[server]`` listener, the webhook destinations, and ``[server]`` sharing one port with the
mirai ``http`` adapter (one socket, one router)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from adapters.mirai import webhook
from relay.config import (
    BridgeConfig,
    HttpServerConfig,
    RobotConfig,
    RobotSignature,
    ServerConfig,
    WebhookConfig,
    WebhookDestinationConfig,
)
from relay.web.models import Request, Response
from relay.web.server import serve_http
from tests.emulated import BOT_ID, say
from tests.integration.test_app_wiring import GUARD, bridge_with
from tests.integration.test_end_to_end import ALICE, CHANNEL

MESSAGES_ROUTE = "POST /channels/{channel_id}/messages"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_robot_post_on_the_server_listener_reaches_the_channel(tmp_path: Path) -> None:
    robot = RobotConfig(name="ci", group=CHANNEL, display_name="CI", signature=RobotSignature.NONE)

    def with_robot(config: BridgeConfig) -> BridgeConfig:
        return attrs.evolve(config, robots=(robot,))

    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path, with_robot) as (discord, _framework, running, _stopped):
            port = running.mirai.ports["server"] if running.mirai else 0
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answer = await client.post("/robots/ci", json={"text": "build 42 passed"})
                assert answer.status_code == 202
                delivery = answer.json()["id"]
                while True:
                    status = (await client.get(f"/robots/ci/deliveries/{delivery}")).json()
                    if status["status"] != "queued":
                        break
                    await trio.sleep(0.02)
                assert status["status"] == "sent"
                health = await client.get("/healthz")
                assert health.status_code == 200  # the same listener serves health and metrics
    (post,) = [r for r in discord.requests_to(MESSAGES_ROUTE) if "build 42 passed" in r.json["content"]]
    assert post.path == f"/channels/{CHANNEL}/messages"
    assert post.json["content"] == "**CI**: build 42 passed"


async def test_webhook_destinations_get_the_bridges_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the destination's fallback poll for the bot id made an hour long: it posts only if the app wakes it at READY
    monkeypatch.setattr(webhook, "BOT_ID_POLL_INTERVAL", 3600.0)
    received: list[Request] = []
    arrived = trio.Event()

    async def receiver(request: Request) -> Response:
        received.append(request)
        if b"GroupMessage" in request.body:
            arrived.set()
        return Response(200)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(receiver, host="127.0.0.1", port=0, task_status=task_status)
        )
        destination = WebhookDestinationConfig(name="hook", url=f"http://127.0.0.1:{port}/events")

        def with_webhook(config: BridgeConfig) -> BridgeConfig:
            mirai = attrs.evolve(config.mirai, webhook=WebhookConfig(destinations=(destination,)))
            return attrs.evolve(config, mirai=mirai)

        with trio.fail_after(GUARD):
            async with bridge_with(tmp_path, with_webhook) as (discord, _framework, _running, _stopped):
                await say(discord, CHANNEL, ALICE, "to the webhook")
                await arrived.wait()
        nursery.cancel_scope.cancel()
    event = next(r for r in received if b"GroupMessage" in r.body)
    body = json.loads(event.body)
    assert body["type"] == "GroupMessage"  # the bare event object, as mirai-api-http's webhook adapter posts it
    assert event.header("qq") == event.header("bot") == str(BOT_ID)


async def test_the_server_listener_shares_a_port_with_the_http_adapter(tmp_path: Path) -> None:
    port = free_port()

    def sharing(config: BridgeConfig) -> BridgeConfig:
        mirai = attrs.evolve(config.mirai, adapters=("reverse-ws", "http"), http=HttpServerConfig(port=port))
        return attrs.evolve(config, mirai=mirai, server=ServerConfig(port=port))

    with trio.fail_after(GUARD):
        async with bridge_with(tmp_path, sharing) as (_world, _framework, running, _stopped):
            assert running.mirai is not None
            assert running.mirai.ports == {"server": port, "mirai.http": port}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/healthz")).status_code == 200
                verified = await client.post("/verify", json={"verifyKey": running.observed.config.mirai.verify_key})
                assert verified.json()["code"] == 0
                while not (ready := (await client.get("/readyz")).json())["ready"]:
                    await trio.sleep(0.02)  # the store's first commit comes within a flush interval
    assert ready["components"]["server"]["summary"] == f"listening on 127.0.0.1:{port}"
    assert ready["components"]["mirai.http"]["summary"] == f"listening on 127.0.0.1:{port}"
