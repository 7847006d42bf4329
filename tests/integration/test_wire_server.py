"""relay.wire.server (the server role of relay.wire) on 127.0.0.1, against two clients: trio-websocket (an
independent implementation, the reference) and relay.wire's own client.

The test's server reads the upgrade request head with h11, as the bridge's HTTP server does, then hands the
stream to :class:`relay.wire.server.UpgradeRequest`.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from functools import partial

import h11
import pytest
import trio
import trio_websocket

from relay.errors import FrameTooLarge, WebSocketClosed, WebSocketHandshakeFailed
from relay.wire import frames
from relay.wire.client import connect_websocket
from relay.wire.connection import WebSocketConnection
from relay.wire.server import UpgradeRequest

GUARD = 10  # seconds: a failure guard only, never a measurement

ServerHandler = Callable[[UpgradeRequest], Awaitable[None]]


async def read_upgrade(stream: trio.SocketStream) -> UpgradeRequest:
    """Read one request head with h11 and wrap it (what relay/web does before calling an upgrade handler)."""
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        assert isinstance(event, h11.Request)
        # an upgrade request pauses h11; whatever it read past the head is the websocket's first bytes
        trailing, _closed = conn.trailing_data
        return UpgradeRequest(
            stream,
            target=event.target.decode(),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
            trailing=trailing,
            peer="test client",
        )


async def start_server(nursery: trio.Nursery, handler: ServerHandler) -> int:
    async def serve(stream: trio.SocketStream) -> None:
        await handler(await read_upgrade(stream))

    listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def echo_until_closed(ws: WebSocketConnection) -> None:
    try:
        while True:
            message = await ws.get_message()
            if isinstance(message, str):
                await ws.send_messages([message, message.upper()])  # one write, two frames
            else:
                await ws.send_message(message[::-1])
    except WebSocketClosed:
        pass


async def test_trio_websocket_client_gets_batched_unmasked_frames(nursery: trio.Nursery) -> None:
    async def handler(upgrade: UpgradeRequest) -> None:
        assert upgrade.valid
        ws = await upgrade.accept(max_message_size=1 << 20, extra_headers=[("x-served-by", "wire")])
        await echo_until_closed(ws)

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD):
        async with trio_websocket.open_websocket("127.0.0.1", port, "/all?verifyKey=x", use_ssl=False) as client:
            await client.send_message("hello ✓")
            assert await client.get_message() == "hello ✓"
            assert await client.get_message() == "HELLO ✓"
            await client.send_message(b"\x00\x01\x02")
            assert await client.get_message() == b"\x02\x01\x00"
            big = "x" * 70_000  # the 64-bit length form, both ways
            await client.send_message(big)
            assert await client.get_message() == big
            assert await client.get_message() == big.upper()


async def test_our_client_and_server_close_handshake_keeps_the_code(nursery: trio.Nursery) -> None:
    seen: list[WebSocketClosed] = []

    async def handler(upgrade: UpgradeRequest) -> None:
        ws = await upgrade.accept(max_message_size=1 << 20)
        try:
            await ws.get_message()
        except WebSocketClosed as exc:
            seen.append(exc)

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD):
        client = await connect_websocket(f"ws://127.0.0.1:{port}/event", max_message_size=1 << 20)
        await client.aclose(4000, "bye")
        while not seen:
            await trio.sleep(0.01)
    assert seen[0].code == 4000 and seen[0].reason == "bye"
    assert client.closed is not None and client.closed.code == 4000


async def test_server_close_is_echoed_by_our_client(nursery: trio.Nursery) -> None:
    async def handler(upgrade: UpgradeRequest) -> None:
        ws = await upgrade.accept(max_message_size=1 << 20)
        await ws.send_messages(['{"syncId":"","data":{"code":1,"msg":"Auth Key错误"}}'])
        with trio.move_on_after(GUARD):
            await ws.aclose(frames.CLOSE_NORMAL, "Auth Key错误")
        assert ws.closed is not None and ws.closed.code == frames.CLOSE_NORMAL

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD):
        client = await connect_websocket(f"ws://127.0.0.1:{port}/all", max_message_size=1 << 20)
        assert await client.get_message() == '{"syncId":"","data":{"code":1,"msg":"Auth Key错误"}}'
        with pytest.raises(WebSocketClosed) as closed:
            await client.get_message()
    assert closed.value.code == frames.CLOSE_NORMAL
    assert closed.value.reason == "Auth Key错误"


async def test_a_too_large_client_message_closes_with_1009(nursery: trio.Nursery) -> None:
    refused: list[BaseException] = []

    async def handler(upgrade: UpgradeRequest) -> None:
        ws = await upgrade.accept(max_message_size=1000)
        try:
            while True:
                await ws.get_message()
        except (FrameTooLarge, WebSocketClosed) as exc:
            refused.append(exc)

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD):
        async with trio_websocket.open_websocket("127.0.0.1", port, "/", use_ssl=False) as client:
            await client.send_message("y" * 5000)
            with pytest.raises(trio_websocket.ConnectionClosed) as info:
                await client.get_message()
    assert info.value.reason.code == frames.CLOSE_MESSAGE_TOO_BIG
    assert isinstance(refused[0], FrameTooLarge)


async def test_an_unmasked_client_frame_is_a_protocol_error(nursery: trio.Nursery) -> None:
    ended: list[WebSocketClosed] = []

    async def handler(upgrade: UpgradeRequest) -> None:
        ws = await upgrade.accept(max_message_size=1000)
        try:
            await ws.get_message()
        except WebSocketClosed as exc:
            ended.append(exc)

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + bytes((0x81, 2))
            + b"hi"  # a text frame without the MASK bit, right after the head (arrives as trailing data)
        )
        answer = b""
        while not answer.endswith(struct.pack("!BBH", 0x88, 2 + len(b"protocol error"), 1002) + b"protocol error"):
            data = await stream.receive_some(4096)
            assert data, f"server hung up without the close frame; got {answer!r}"
            answer += data
        assert answer.startswith(b"HTTP/1.1 101 ")
        while not ended:
            await trio.sleep(0.01)
    assert ended[0].code == 1002


async def test_a_bad_upgrade_request_is_refused_with_a_status(nursery: trio.Nursery) -> None:
    async def handler(upgrade: UpgradeRequest) -> None:
        assert not upgrade.valid
        assert "Missing header" in upgrade.problem
        with pytest.raises(WebSocketHandshakeFailed):
            await upgrade.accept(max_message_size=10)
        await upgrade.reject(400, upgrade.problem.encode())

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /all HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        answer = b""
        while data := await stream.receive_some(4096):
            answer += data
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"Missing header, 'Sec-WebSocket-Version'")


async def test_reject_after_a_valid_request_answers_the_status(nursery: trio.Nursery) -> None:
    async def handler(upgrade: UpgradeRequest) -> None:
        await upgrade.reject(404, b'{"code":404}', "application/json")

    port = await start_server(nursery, handler)
    with trio.fail_after(GUARD), pytest.raises(WebSocketHandshakeFailed) as info:
        await connect_websocket(f"ws://127.0.0.1:{port}/nowhere", max_message_size=10)
    assert info.value.status == 404
