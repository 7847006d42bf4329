"""The websocket-upgrade hand-off of relay/web's server, with a wsproto handshake and real websocket clients.

Two upgrade handlers echo one message: one completes the handshake with wsproto directly
(``initiate_upgrade_connection`` with the request's headers and target, then the bytes h11 read past the head),
the other through the project's own server side, ``relay.wire.server.UpgradeRequest``, as the ws adapter will.
"""

from __future__ import annotations

import trio
import wsproto
from trio_websocket import open_websocket
from wsproto import ConnectionType, events
from wsproto.frame_protocol import FrameProtocol

from relay.web.server import WebSocketUpgrade
from relay.wire.server import UpgradeRequest
from tests.integration.test_web_server import GUARD, app
from tests.integration.webclient import RawClient, serving


async def echo_one_message(upgrade: WebSocketUpgrade) -> None:
    """Accept the websocket, echo the first text message prefixed with the path, then close."""
    ws = wsproto.WSConnection(ConnectionType.SERVER)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in upgrade.request.headers]
    ws.initiate_upgrade_connection(headers, upgrade.request.target)
    stream = upgrade.stream
    async with stream:
        for event in ws.events():
            assert isinstance(event, events.Request)
            await stream.send_all(ws.send(events.AcceptConnection()))
        # only now: wsproto's server side drops what it was given before the accept
        if upgrade.trailing:
            ws.receive_data(upgrade.trailing)
        while True:
            for event in ws.events():
                if isinstance(event, events.TextMessage):
                    reply = ws.send(events.Message(data=f"{upgrade.request.path}: {event.data}"))
                    await stream.send_all(reply + ws.send(events.CloseConnection(code=1000)))
                elif isinstance(event, events.CloseConnection):
                    return
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)


async def test_a_websocket_client_is_handed_to_the_upgrade_handler() -> None:
    with trio.fail_after(GUARD):
        async with serving(app(), upgrade_handler=echo_one_message) as port:
            async with open_websocket("127.0.0.1", port, "/all?verifyKey=k", use_ssl=False) as ws:
                await ws.send_message("hello")
                reply = await ws.get_message()
            async with RawClient.connect(port) as client:  # plain HTTP still served on the same port
                assert (await client.request("GET", "/echo")).status == 200
    assert reply == "/all: hello"


async def test_bytes_sent_with_the_upgrade_request_reach_the_upgrade_handler() -> None:
    client = wsproto.WSConnection(ConnectionType.CLIENT)
    handshake = client.send(events.Request(host="127.0.0.1", target="/message"))
    # a first frame written with the handshake, before the 101 arrives (wsproto's connection would refuse to)
    frame = FrameProtocol(client=True, extensions=[]).send_data("early", fin=True)
    with trio.fail_after(GUARD):
        async with serving(app(), upgrade_handler=echo_one_message) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(handshake + frame)
                received: list[events.Event] = []
                while not any(isinstance(e, events.TextMessage) for e in received):
                    data = await stream.receive_some(65536)
                    assert data, received
                    client.receive_data(data)
                    received.extend(client.events())
    assert isinstance(received[0], events.AcceptConnection)
    assert [e.data for e in received if isinstance(e, events.TextMessage)] == ["/message: early"]


async def echo_through_relay_wire(upgrade: WebSocketUpgrade) -> None:
    """The same echo through the project's own server side (relay/wire), as the ws adapter will do it."""
    request = UpgradeRequest(
        upgrade.stream,
        target=upgrade.request.target,
        headers=upgrade.request.headers,
        trailing=upgrade.trailing,
        peer=str(upgrade.request.client),
    )
    ws = await request.accept(max_message_size=1 << 16)
    message = await ws.get_message()
    await ws.send_message(f"{upgrade.request.path}: {message!s}")
    await ws.aclose(1000)


async def test_relay_wire_accepts_a_handed_over_upgrade() -> None:
    with trio.fail_after(GUARD):
        async with serving(app(), upgrade_handler=echo_through_relay_wire) as port:
            async with open_websocket("127.0.0.1", port, "/event", use_ssl=False) as ws:
                await ws.send_message("hi")
                reply = await ws.get_message()
            # and with a first frame sent along with the handshake (relay/wire reads `trailing` first)
            client = wsproto.WSConnection(ConnectionType.CLIENT)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                early = FrameProtocol(client=True, extensions=[]).send_data("early", fin=True)
                await stream.send_all(client.send(events.Request(host="127.0.0.1", target="/all")) + early)
                texts: list[str] = []
                while not texts:
                    data = await stream.receive_some(65536)
                    assert data
                    client.receive_data(data)
                    texts.extend(e.data for e in client.events() if isinstance(e, events.TextMessage))
    assert reply == "/event: hi"
    assert texts == ["/all: early"]


async def test_without_an_upgrade_handler_the_request_is_answered_as_http() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            unknown = await client.request("GET", "/all", headers=upgrade + "Sec-WebSocket-Version: 13\r\n")
            known = await client.request("GET", "/echo", headers=upgrade + "Sec-WebSocket-Version: 13\r\n")
    assert unknown.status == 404  # the router's answer: no such path
    assert known.status == 200  # the Upgrade header is ignored (RFC 9110 §7.8)


async def test_an_upgrade_handler_that_fails_ends_its_connection_only() -> None:
    async def broken(upgrade: WebSocketUpgrade) -> None:
        raise RuntimeError("a bug in the websocket code")

    with trio.fail_after(GUARD):
        async with serving(app(), upgrade_handler=broken) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(wsproto.WSConnection(ConnectionType.CLIENT).send(events.Request("t", "/all")))
                assert await stream.receive_some(65536) == b""  # closed
            async with RawClient.connect(port) as client:
                assert (await client.request("GET", "/echo")).status == 200
