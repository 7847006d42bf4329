"""relay.wire.client.connect_websocket (the client role of relay.wire) against a raw websocket server on 127.0.0.1.

The server writes hand-built RFC 6455 frames (unmasked, as a server must), so the tests control exactly how
frames fall into socket reads; it parses the client's (masked) frames with wsproto.
"""

from __future__ import annotations

import shutil
import ssl
import struct
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import wsproto
import wsproto.events as ws_events

from relay.errors import FrameTooLarge, LocalProtocolError, WebSocketClosed, WebSocketHandshakeFailed
from relay.wire.client import connect_websocket

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One unmasked server frame (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


class ServerConnection:
    """The accepted side: raw writes out, client frames parsed by wsproto."""

    def __init__(self, stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.received: list[ws_events.Event] = []

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next_event(self) -> ws_events.Event:
        while True:
            for event in self.ws.events():
                if not isinstance(event, ws_events.Request):
                    self.received.append(event)
                    return event
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("client hung up")
            self.ws.receive_data(data)


Handler = Callable[[ServerConnection], Awaitable[None]]


async def start_server(
    nursery: trio.Nursery, handler: Handler, *, reject: int | None = None, with_accept: bytes = b""
) -> str:
    """A websocket server on 127.0.0.1 running ``handler`` per connection; returns its ws:// URL."""

    async def serve(stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while True:
            ws.receive_data(await stream.receive_some(65536))
            requests = [e for e in ws.events() if isinstance(e, ws_events.Request)]
            if requests:
                break
        if reject is not None:
            await stream.send_all(ws.send(ws_events.RejectConnection(status_code=reject)))
            await stream.aclose()
            return
        await stream.send_all(ws.send(ws_events.AcceptConnection()) + with_accept)  # one write: one read
        async with stream:
            await handler(ServerConnection(stream, ws))

    listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"ws://127.0.0.1:{port}/?v=10&encoding=json"


async def test_many_frames_in_one_write_come_out_in_order(nursery: trio.Nursery) -> None:
    payloads = [f'{{"op":0,"s":{i}}}'.encode() * (1 + i % 40) for i in range(600)]
    done = trio.Event()

    async def handler(conn: ServerConnection) -> None:
        await conn.send_raw(b"".join(frame(BINARY, p) for p in payloads) + frame(TEXT, "héllo".encode()))
        await done.wait()

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        got = [await ws.get_message() for _ in payloads]
        assert got == payloads
        assert await ws.get_message() == "héllo"
        done.set()
        await ws.aclose(4000)


async def test_get_messages_returns_each_read_whole_then_the_close(nursery: trio.Nursery) -> None:
    payloads = [f'{{"op":0,"s":{i}}}'.encode() for i in range(300)]
    sent = trio.Event()

    async def handler(conn: ServerConnection) -> None:
        await conn.send_raw(b"".join(frame(BINARY, p) for p in payloads))
        await sent.wait()
        await conn.send_raw(frame(TEXT, b"last") + close_frame(4009, "gone"))

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        got: list[str | bytes] = []
        while len(got) < len(payloads):
            batch = await ws.get_messages()
            assert batch  # never empty
            got += batch
        assert got == payloads  # in order, nothing twice
        sent.set()
        assert await ws.get_messages() == ["last"]  # what came before the close is returned first
        with pytest.raises(WebSocketClosed) as closed:
            await ws.get_messages()
        assert closed.value.code == 4009


async def test_frames_split_across_reads_and_fragmented_messages(nursery: trio.Nursery) -> None:
    text = "a ✓ split message " * 50
    encoded = text.encode()
    cut = encoded.index("✓".encode()) + 1  # the fragment boundary falls inside a multi-byte character
    wire = (
        frame(TEXT, encoded[:cut], fin=False)
        + frame(PING, b"mid-message ping")  # control frames may interleave fragments (RFC 6455 §5.4)
        + frame(CONTINUATION, encoded[cut:])
        + frame(BINARY, b"\x01" * 70_000)  # 64-bit length form
        + frame(BINARY, b"\x02\x03", fin=False)
        + frame(CONTINUATION, b"\x04")
    )
    done = trio.Event()

    async def handler(conn: ServerConnection) -> None:
        for i in range(0, len(wire), 7):  # 7-byte writes: headers and payloads straddle reads
            await conn.send_raw(wire[i : i + 7])
            await trio.sleep(0)
        event = await conn.next_event()
        assert isinstance(event, ws_events.Pong) and event.payload == b"mid-message ping"
        done.set()
        await conn.next_event()  # the close

    with trio.fail_after(20):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        assert await ws.get_message() == text
        assert await ws.get_message() == b"\x01" * 70_000
        assert await ws.get_message() == b"\x02\x03\x04"
        await done.wait()
        await ws.aclose(4000)


async def test_ping_is_answered_with_pong(nursery: trio.Nursery) -> None:
    pongs: list[bytes] = []

    async def handler(conn: ServerConnection) -> None:
        await conn.send_raw(frame(PING, b"are you there") + frame(BINARY, b"after"))
        event = await conn.next_event()
        assert isinstance(event, ws_events.Pong)
        pongs.append(bytes(event.payload))
        await conn.send_raw(frame(BINARY, b"done"))
        await conn.next_event()

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        assert await ws.get_message() == b"after"
        assert await ws.get_message() == b"done"
        assert pongs == [b"are you there"]
        await ws.aclose(4000)


async def test_server_close_code_is_reported_and_echoed(nursery: trio.Nursery) -> None:
    echoed: list[int] = []

    async def handler(conn: ServerConnection) -> None:
        await conn.send_raw(frame(BINARY, b"last") + close_frame(4004, "Authentication failed."))
        event = await conn.next_event()
        assert isinstance(event, ws_events.CloseConnection)
        echoed.append(event.code)

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        assert await ws.get_message() == b"last"  # messages before the close are still delivered
        with pytest.raises(WebSocketClosed) as info:
            await ws.get_message()
        assert info.value.code == 4004
        assert info.value.reason == "Authentication failed."
        with pytest.raises(WebSocketClosed):
            await ws.send_message("too late")
        await ws.aclose(4000)  # idempotent after the handshake: only closes the stream
        while not echoed:
            await trio.sleep(0.01)
    assert echoed == [4004]


async def test_aclose_while_another_task_reads_sends_the_code_and_sees_the_reply(nursery: trio.Nursery) -> None:
    codes: list[int] = []

    async def handler(conn: ServerConnection) -> None:
        event = await conn.next_event()
        assert isinstance(event, ws_events.CloseConnection)
        codes.append(event.code)
        await conn.send_raw(close_frame(event.code))  # Discord echoes the client's code

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        reader_saw: list[int | None] = []

        async def reader() -> None:
            try:
                await ws.get_message()
            except WebSocketClosed as exc:
                reader_saw.append(exc.code)

        async with trio.open_nursery() as inner:
            inner.start_soon(reader)
            await trio.sleep(0.05)
            with trio.fail_after(2):  # returns once the reader saw the reply, not after a grace period
                await ws.aclose(4000)
    assert codes == [4000]  # never rewritten to 1000 (docs/discord.md §2.12)
    assert reader_saw == [4000]


async def test_aclose_without_a_reader_reads_the_reply_itself(nursery: trio.Nursery) -> None:
    codes: list[int] = []

    async def handler(conn: ServerConnection) -> None:
        await conn.send_raw(frame(BINARY, b"unread"))
        event = await conn.next_event()
        assert isinstance(event, ws_events.CloseConnection)
        codes.append(event.code)
        await conn.send_raw(close_frame(event.code))

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        with trio.fail_after(2):
            await ws.aclose(4000)
    assert codes == [4000]
    assert ws.closed is not None and ws.closed.code == 4000


async def test_dropped_connection_has_no_code(nursery: trio.Nursery) -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.send_raw(frame(BINARY, b"x"))
        # leaving the handler closes the TCP stream without a close frame

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=1 << 20)
        assert await ws.get_message() == b"x"
        with pytest.raises(WebSocketClosed) as info:
            await ws.get_message()
        assert info.value.code is None  # 1006 is never invented
        await ws.aclose(4000)


@pytest.mark.parametrize("fragmented", [False, True])
async def test_oversize_message_closes_with_1009(nursery: trio.Nursery, fragmented: bool) -> None:
    codes: list[int] = []
    big = b"z" * 5000

    async def handler(conn: ServerConnection) -> None:
        if fragmented:
            # refused as the parts arrive: the third part takes the total (5000) past the 4096 limit
            await conn.send_raw(frame(BINARY, big[:2000], fin=False))
            await conn.send_raw(frame(CONTINUATION, big[2000:4000], fin=False))
            await conn.send_raw(frame(CONTINUATION, big[4000:]))
        else:
            await conn.send_raw(frame(BINARY, big))
        event = await conn.next_event()
        assert isinstance(event, ws_events.CloseConnection)
        codes.append(event.code)
        await conn.send_raw(close_frame(event.code))

    with trio.fail_after(10):
        url = await start_server(nursery, handler)
        ws = await connect_websocket(url, max_message_size=4096)
        with pytest.raises(FrameTooLarge) as info:
            await ws.get_message()
        assert info.value.limit == 4096
        with pytest.raises(WebSocketClosed) as closed:
            await ws.get_message()
        assert closed.value.code == 1009
        with trio.fail_after(2):
            await ws.aclose(4000)  # the 1009 close is already out; this waits for the reply
    assert codes == [1009]


async def test_frames_sent_with_the_upgrade_response_are_not_lost(nursery: trio.Nursery) -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.next_event()

    with trio.fail_after(10):
        hello = frame(TEXT, b'{"op":10}')
        url = await start_server(nursery, handler, with_accept=hello + frame(BINARY, b"z" * 5000))
        ws = await connect_websocket(url, max_message_size=4096)  # errors surface on reading, not here
        assert await ws.get_message() == '{"op":10}'
        with pytest.raises(FrameTooLarge):
            await ws.get_message()
        await ws.aclose(4000)


async def test_rejected_upgrade_names_the_status(nursery: trio.Nursery) -> None:
    async def handler(conn: ServerConnection) -> None:
        raise AssertionError("not reached")

    with trio.fail_after(10):
        url = await start_server(nursery, handler, reject=503)
        with pytest.raises(WebSocketHandshakeFailed) as info:
            await connect_websocket(url, max_message_size=1 << 20)
    assert info.value.status == 503


async def test_refused_tcp_connect_is_a_handshake_failure() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(10), pytest.raises(WebSocketHandshakeFailed) as info:
        await connect_websocket(f"ws://127.0.0.1:{port}/", max_message_size=1 << 20)
    assert info.value.status is None


def test_bad_urls_and_unverified_tls_are_refused_before_connecting() -> None:
    with pytest.raises(LocalProtocolError):
        trio.run(lambda: connect_websocket("http://127.0.0.1/", max_message_size=10))
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with pytest.raises(LocalProtocolError, match="verify"):
        trio.run(lambda: connect_websocket("wss://127.0.0.1:1/", max_message_size=10, ssl_context=unverified))


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_wss_refuses_an_untrusted_certificate_and_accepts_a_trusted_one(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def serve(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, server_context, server_side=True)
        try:
            ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
            while not any(isinstance(e, ws_events.Request) for e in ws.events()):
                ws.receive_data(await tls.receive_some(65536))
            await tls.send_all(ws.send(ws_events.AcceptConnection()) + frame(BINARY, b"secure"))
            await tls.receive_some(65536)
        except trio.BrokenResourceError:
            pass  # the client refused our certificate
        finally:
            await trio.aclose_forcefully(tls)

    with trio.fail_after(10):
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        url = f"wss://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
        with pytest.raises(WebSocketHandshakeFailed, match=r"certificate verify failed for 127\.0\.0\.1"):
            await connect_websocket(url, max_message_size=1 << 20)  # system trust store: not trusted
        trusting = ssl.create_default_context(cafile=str(cert))
        ws = await connect_websocket(url, max_message_size=1 << 20, ssl_context=trusting)
        assert await ws.get_message() == b"secure"
        await ws.aclose(4000)
