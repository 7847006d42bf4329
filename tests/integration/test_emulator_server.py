"""The emulator on one real loopback port: the bridge's own REST client and websocket client against it,
uploads served back, history kept across a restart, a busy port and a non-loopback host refused."""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from adapters.discord.rest.client import UploadFile, open_rest_client
from relay.config import DiscordConfig
from relay.sandbox.emulator import defaults
from relay.sandbox.emulator.emulator import DEFAULT_TOKEN, Emulator
from relay.sandbox.emulator.errors import EmulatorError
from relay.sandbox.emulator.rest import Drop
from relay.sandbox.emulator.server import serve_emulator
from relay.wire.client import connect_websocket
from relay.wire.connection import WebSocketConnection


@asynccontextmanager
async def serving(emulator: Emulator, port: int = 0) -> AsyncIterator[Emulator]:
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_emulator, emulator, port=port))
        yield emulator
        nursery.cancel_scope.cancel()


async def payloads(ws: WebSocketConnection, inflater: Any, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    buffer = b""
    while len(out) < count:
        buffer += await ws.get_message()  # type: ignore[operator]
        if buffer.endswith(b"\x00\x00\xff\xff"):
            out.append(json.loads(inflater.decompress(buffer)))
            buffer = b""
    return out


async def test_rest_gateway_and_files_on_one_port(tmp_path: Path) -> None:
    emulator = Emulator(state_path=str(tmp_path / "discord.sqlite3"), seed_default=True)
    config = attrs.evolve(DiscordConfig(), api_base_url="")
    with trio.fail_after(30):
        async with serving(emulator) as em:
            assert em.base_url == f"http://127.0.0.1:{em.port}/api/v10"
            async with open_rest_client(attrs.evolve(config, api_base_url=em.base_url), DEFAULT_TOKEN) as rest:
                info = await rest.get_gateway_bot()
                assert info.url == em.gateway_url == f"ws://127.0.0.1:{em.port}"
                ws = await connect_websocket(
                    f"{info.url}/?v=10&encoding=json&compress=zlib-stream", max_message_size=1 << 24
                )
                inflater = zlib.decompressobj()
                (hello,) = await payloads(ws, inflater, 1)
                assert hello["op"] == 10
                await ws.send_message(json.dumps({"op": 2, "d": {"token": DEFAULT_TOKEN, "intents": 46599}}))
                ready, guild = await payloads(ws, inflater, 2)
                assert ready["t"] == "READY" and guild["d"]["name"] == "Sandbox"
                sent = await rest.create_message(
                    defaults.GENERAL,
                    {"content": "a picture"},
                    files=[UploadFile(filename="dot.png", data=b"\x89PNG dot", content_type="image/png")],
                )
                (created,) = await payloads(ws, inflater, 1)
                assert created["t"] == "MESSAGE_CREATE" and created["d"]["id"] == sent["id"]
                url = sent["attachments"][0]["url"]
                assert url.startswith(em.origin + "/attachments/")
                async with httpx.AsyncClient() as http:
                    image = await http.get(url)
                    assert (image.status_code, image.content) == (200, b"\x89PNG dot")
                    assert image.headers["content-type"] == "image/png"
                    missing = await http.get(f"{em.base_url}/users/@me")
                    assert missing.status_code == 401 and missing.json() == {"message": "401: Unauthorized", "code": 0}
                with trio.move_on_after(5):
                    await ws.aclose(4000)
            await em.wait_until(lambda: bool(em.gateway.client_closes))
            assert em.gateway.client_closes[-1][1] == 4000
            # who connected: each request's and the gateway connection's peer, and the upgrade's headers
            (connection,) = em.gateway.connections
            assert connection.peer is not None and connection.peer.startswith("127.0.0.1:")
            assert connection.headers["upgrade"].lower() == "websocket"
            peers = {r.client for r in em.requests}
            assert all(p is not None and p[0] == "127.0.0.1" for p in peers)
            assert f"127.0.0.1:{em.requests[0].client[1]}" != connection.peer  # type: ignore[index]
    emulator.close()

    again = Emulator(state_path=str(tmp_path / "discord.sqlite3"), seed_default=True)
    with trio.fail_after(30):
        async with serving(again) as em:
            contents = [m["content"] for m in em.world.messages[defaults.GENERAL].values()]
            assert contents[-1] == "a picture" and len(contents) == 2  # welcome + ours; not seeded twice
            attachment = em.world.messages[defaults.GENERAL][int(sent["id"])]["attachments"][0]
            async with httpx.AsyncClient() as http:
                image = await http.get(attachment["url"])  # the new port's URL
            assert image.content == b"\x89PNG dot"
    again.close()


async def test_a_busy_port_and_a_public_host_are_clear_errors() -> None:
    first = Emulator()
    with trio.fail_after(30):
        async with serving(first) as em:
            with pytest.raises(EmulatorError, match=f"port {em.port}.*another sandbox"):
                await serve_emulator(Emulator(), port=em.port)  # fails before it would serve
    with pytest.raises(EmulatorError, match="loopback only"):
        await serve_emulator(Emulator(), host="0.0.0.0")


async def test_an_injected_drop_closes_the_connection_unanswered() -> None:
    """relay.web's DropConnection: the client sees the connection end with no response (not a 500)."""
    emulator = Emulator(seed_default=True)
    with trio.fail_after(30):
        async with serving(emulator) as em:
            em.inject("GET /users/@me", Drop())
            headers = {"authorization": f"Bot {DEFAULT_TOKEN}"}
            async with httpx.AsyncClient() as http:
                with pytest.raises(httpx.RemoteProtocolError):
                    await http.get(f"{em.base_url}/users/@me", headers=headers)
                after = await http.get(f"{em.base_url}/users/@me", headers=headers)
            assert after.status_code == 200
            assert [r.status for r in em.requests_to("GET /users/@me")] == [0, 200]
