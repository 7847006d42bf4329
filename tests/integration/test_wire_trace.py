"""TRACE logging of relay/wire: every websocket message in and out, shortened and redacted, and nothing at all
below TRACE. Two real connections (client and server role) over an in-memory stream pair."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from relay.errors import WebSocketClosed
from relay.logs import MASK, TRACE_PAYLOAD_LIMIT, setup_logging
from relay.wire import frames
from relay.wire.connection import WebSocketConnection

SECRET = "the-verify-key-0123456789"


def pair() -> tuple[WebSocketConnection, WebSocketConnection]:
    a, b = trio.testing.memory_stream_pair()
    client = WebSocketConnection(a, client=True, max_message_size=1 << 20, peer="framework")
    server = WebSocketConnection(b, client=False, max_message_size=1 << 20, peer="bridge")
    return client, server


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = setup_logging(request.param, "text", [SECRET], stream=buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)


@pytest.mark.parametrize("captured", ["TRACE"], indirect=True)
async def test_trace_logs_every_message_both_ways_redacted_and_shortened(captured: io.StringIO) -> None:
    client, server = pair()
    long_text = "y" * (TRACE_PAYLOAD_LIMIT + 10)
    await client.send_message(f'{{"verifyKey":"{SECRET}"}}')
    await client.send_messages(["one", long_text])
    assert await server.get_messages() == [f'{{"verifyKey":"{SECRET}"}}', "one", long_text]
    await server.send_message(b"\x00\x01\x02")
    assert await client.get_message() == b"\x00\x01\x02"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.aclose, frames.CLOSE_NORMAL)
        with pytest.raises(WebSocketClosed):
            await server.get_message()
    lines = captured.getvalue().splitlines()
    assert f'TRACE   relay.wire.connection: framework → {{"verifyKey":"{MASK}"}}' in " ".join(lines)
    assert any(line.endswith("framework → one") for line in lines)
    assert any(line.endswith(f"bridge ← {'y' * TRACE_PAYLOAD_LIMIT}… (10 more characters)") for line in lines)
    assert any(line.endswith("bridge → <binary, 3 bytes>") for line in lines)
    assert any(line.endswith("framework ← <binary, 3 bytes>") for line in lines)
    assert SECRET not in captured.getvalue()


@pytest.mark.parametrize("captured", ["DEBUG"], indirect=True)
async def test_nothing_below_trace(captured: io.StringIO) -> None:
    client, server = pair()
    await client.send_message("hello")
    assert await server.get_message() == "hello"
    assert "hello" not in captured.getvalue()
