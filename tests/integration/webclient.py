"""Test helpers for relay/web: run a server on a loopback port, and a raw-bytes client that reads its answers.

The client writes whatever bytes a test gives it (malformed, smuggling, pipelined) and reads the responses
with an h11 client connection, told which request method each response answers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio

from relay.web.models import Handler, ServerLimits
from relay.web.server import UpgradeHandler, serve_http


@asynccontextmanager
async def serving(
    handler: Handler,
    *,
    limits: ServerLimits | None = None,
    upgrade_handler: UpgradeHandler | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[int]:
    """Serve ``handler`` on an ephemeral port of ``host``; yield the port."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            functools.partial(
                serve_http,
                handler,
                host=host,
                port=0,
                limits=limits or ServerLimits(),
                upgrade_handler=upgrade_handler,
            )
        )
        yield port
        nursery.cancel_scope.cancel()


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One connection; ``send`` writes raw bytes, ``reply(method)`` reads the next response."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int, host: str = "127.0.0.1") -> AsyncIterator[RawClient]:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            yield cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def request(self, method: str = "GET", target: str = "/", *, headers: str = "", body: bytes = b"") -> Reply:
        """Write one well-formed request and read its response."""
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        await self.send(f"{method} {target} HTTP/1.1\r\nHost: test\r\n{length}{headers}\r\n".encode() + body)
        return await self.reply(method)

    async def reply(self, method: str = "GET") -> Reply:
        """Read the response to a ``method`` request (skipping 1xx ones unless none other comes)."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        self.conn.send(h11.Request(method=method, target="/", headers=[("host", "test")]))
        self.conn.send(h11.EndOfMessage())
        return await self._read_response()

    async def _read_response(self) -> Reply:
        head = await self._next_event()
        while isinstance(head, h11.InformationalResponse):
            head = await self._next_event()
        assert isinstance(head, h11.Response), head
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        headers = {name.decode().lower(): value.decode("latin-1") for name, value in head.headers}
        return Reply(head.status_code, headers, bytes(body))

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.receive_some(65536))

    async def closed_by_server(self) -> bool:
        """Whether the server closed the connection (EOF, with nothing more to read), rather than reset it."""
        rest = self.conn.trailing_data[0]
        data = await self.stream.receive_some(65536)
        return not rest and data == b""
