"""The emulated gateway's I/O shell over in-memory streams: the upgrade, the machine's messages and closes on
the wire (relay.wire on both ends), zlib-stream, a dropped connection and a client's close code."""

from __future__ import annotations

import base64
import functools
import json
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from relay.errors import WebSocketClosed
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.gateway_shell import run_gateway_connection, serve_gateway_upgrade
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH
from relay.wire.connection import WebSocketConnection

TOKEN = "shell-token"
GUILD = 500_000_000_000_000_001
OWNER = 500_000_000_000_000_101
CHANNEL = 500_000_000_000_000_201
IDENTIFY = {"op": 2, "d": {"token": TOKEN, "intents": 46599, "properties": {}}}


def make() -> Emulator:
    em = Emulator(token=TOKEN, epoch=FAKE_EPOCH)
    em.world.add_guild(GUILD, "Guild", owner_id=OWNER)
    em.world.add_channel(CHANNEL, "general", guild_id=GUILD)
    em.bound(7)
    return em


@asynccontextmanager
async def connected(em: Emulator, query: dict[str, str] | None = None) -> AsyncIterator[WebSocketConnection]:
    """A client websocket on one end of a memory stream, the gateway shell on the other."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server_ws = WebSocketConnection(server_stream, client=False, max_message_size=1 << 16, peer="client")
    client = WebSocketConnection(client_stream, client=True, max_message_size=1 << 24, peer="gateway")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                run_gateway_connection,
                em.gateway,
                server_ws,
                server_stream,
                path="/",
                query=query or {"v": "10", "encoding": "json"},
            )
        )
        yield client
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def next_payload(client: WebSocketConnection, inflater: Any = None) -> dict[str, Any]:
    buffer = b""
    while True:
        message = await client.get_message()
        if isinstance(message, str):
            return json.loads(message)  # type: ignore[no-any-return]
        buffer += message
        if buffer.endswith(b"\x00\x00\xff\xff"):
            return json.loads(inflater.decompress(buffer))  # type: ignore[no-any-return]


async def identify(client: WebSocketConnection) -> None:
    """HELLO, IDENTIFY, READY: a session on the wire."""
    assert (await next_payload(client))["op"] == 10
    await client.send_message(json.dumps(IDENTIFY))
    assert (await next_payload(client))["t"] == "READY"


async def test_identify_then_world_events_on_the_wire(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    with trio.fail_after(10):
        async with connected(em) as client:
            await identify(client)
            assert (await next_payload(client))["t"] == "GUILD_CREATE"
            em.actions.post_message(CHANNEL, "hello", author_id=OWNER)
            message = await next_payload(client)
            assert (message["t"], message["d"]["content"]) == ("MESSAGE_CREATE", "hello")
            await client.send_message('{"op":1,"d":3}')
            assert await next_payload(client) == {"op": 11}
            assert em.live_shards() == {0}


async def test_zlib_stream(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    em.gateway.split_frames = 2
    inflater = zlib.decompressobj()
    with trio.fail_after(10):
        async with connected(em, {"v": "10", "encoding": "json", "compress": "zlib-stream"}) as client:
            assert (await next_payload(client, inflater))["op"] == 10
            await client.send_message(json.dumps(IDENTIFY))
            assert (await next_payload(client, inflater))["t"] == "READY"


async def test_machine_close_code_reaches_the_client(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    with trio.fail_after(10):
        async with connected(em) as client:
            await next_payload(client)
            await client.send_message(json.dumps({"op": 2, "d": {"token": "wrong", "intents": 1}}))
            with pytest.raises(WebSocketClosed) as closed:
                await client.get_message()
            assert closed.value.code == 4004
    assert em.gateway.server_closes[-1][1] == 4004 and em.gateway.client_closes == []


async def test_a_close_carries_its_reason(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    with trio.fail_after(10):
        async with connected(em) as client:
            await identify(client)
            await em.close_with(4000, reason="node draining")
            with pytest.raises(WebSocketClosed) as closed:
                while True:
                    await client.get_message()  # GUILD_CREATE, then the close
    assert (closed.value.code, closed.value.reason) == (4000, "node draining")


async def test_drop_is_a_close_without_frame_and_the_client_close_code_is_recorded(
    autojump_clock: trio.abc.Clock,
) -> None:
    em = make()
    with trio.fail_after(10):
        async with connected(em) as client:
            await next_payload(client)
            await client.send_message(json.dumps(IDENTIFY))
            await next_payload(client)
            await em.drop_connection()
            with pytest.raises(WebSocketClosed) as dropped:
                while True:
                    await client.get_message()
            assert dropped.value.code is None
        async with connected(em) as client:
            await next_payload(client)
            with trio.move_on_after(5):
                await client.aclose(4000)
            await em.wait_until(lambda: bool(em.gateway.client_closes))
    assert em.gateway.client_closes[-1][1] == 4000


def upgrade_headers() -> list[tuple[str, str]]:
    return [
        ("host", "127.0.0.1:7"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", base64.b64encode(os.urandom(16)).decode()),
        ("sec-websocket-version", "13"),
    ]


async def read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def test_upgrade_accepted_at_root_and_resume_refused_elsewhere(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    with trio.fail_after(10):
        for target, status in (("/?v=10&encoding=json", b"101"), ("/resume?v=10&encoding=json", b"101")):
            client_stream, server_stream = trio.testing.memory_stream_pair()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(
                        serve_gateway_upgrade,
                        em.gateway,
                        stream=server_stream,
                        target=target,
                        headers=upgrade_headers(),
                        trailing=b"",
                        peer="test",
                    )
                )
                head, rest = await read_head(client_stream)
                assert head.split(b" ")[1] == status
                ws = WebSocketConnection(client_stream, client=True, max_message_size=1 << 20, peer="gw", early=rest)
                assert (await next_payload(ws))["op"] == 10
                nursery.cancel_scope.cancel()
        assert [c.path for c in em.gateway.connections] == ["/", "/resume"]
        client_stream, server_stream = trio.testing.memory_stream_pair()
        await serve_gateway_upgrade(
            em.gateway, stream=server_stream, target="/elsewhere", headers=upgrade_headers(), trailing=b"", peer="t"
        )
        head, _ = await read_head(client_stream)
        assert head.split(b" ")[1] == b"404"
        client_stream, server_stream = trio.testing.memory_stream_pair()
        await serve_gateway_upgrade(
            em.gateway, stream=server_stream, target="/", headers=[("host", "x")], trailing=b"", peer="t"
        )
        head, _ = await read_head(client_stream)
        assert head.split(b" ")[1] == b"400"
