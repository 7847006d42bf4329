"""The emulated gateway's I/O: one upgraded websocket connection driven by the :class:`~.gateway.Gateway` machine.

An HTTP server that has read an upgrade request hands over the raw stream (with its target, headers and the
bytes read past the head); :func:`serve_gateway_upgrade` accepts it with :mod:`relay.wire.server` at ``/`` (the
URL ``GET /gateway/bot`` gives) or ``/resume`` (READY's ``resume_gateway_url``), refuses other paths with 404,
and runs the connection: a reader feeding every client message to the machine with ``trio.current_time()``, a
writer sending what the machine queued (text messages batched into one socket write, zlib-stream messages as
binary frames), the machine's close code as a real close handshake, and an abort as a TCP drop with no close
frame. A client's close code (None when it vanished) is reported to the machine, which keeps the session
resumable unless it was 1000/1001.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence
from typing import Final

import trio

from relay.errors import FrameTooLarge, WebSocketClosed, WebSocketHandshakeFailed
from relay.sandbox.emulator.gateway import Abort, Close, Connection, Gateway, SendBinary, SendText
from relay.wire.connection import WebSocketConnection
from relay.wire.server import UpgradeRequest

log = logging.getLogger(__name__)

#: paths the gateway answers at (the connect URL and the resume URL)
GATEWAY_PATHS: Final = ("/", "/resume")
#: client messages above this close 1009 in relay.wire; between 4096 bytes and this the machine closes 4002
#: (docs/discord.md §2.3), as Discord does
MAX_CLIENT_MESSAGE: Final = 64 * 1024
#: how long a close handshake may take before the stream is closed anyway
CLOSE_TIMEOUT: Final = 5.0
#: the same when the emulator is stopping (it must not hang on clients that do not answer)
SHUTDOWN_CLOSE_TIMEOUT: Final = 1.0


async def serve_gateway_upgrade(
    gateway: Gateway,
    *,
    stream: trio.abc.Stream,
    target: str,
    headers: Sequence[tuple[str, str]],
    trailing: bytes,
    peer: str,
) -> None:
    """Accept the upgrade request (already read from ``stream``) as a gateway connection and run it to its end."""
    request = UpgradeRequest(stream, target=target, headers=headers, trailing=trailing, peer=peer)
    parts = urllib.parse.urlsplit(target)
    if not request.valid:
        await request.reject(400, f"not a websocket upgrade: {request.problem}".encode())
        return
    if parts.path not in GATEWAY_PATHS:
        await request.reject(404, b"the emulated gateway listens at / and /resume")
        return
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        ws = await request.accept(max_message_size=MAX_CLIENT_MESSAGE)
    except WebSocketHandshakeFailed as exc:
        log.debug("gateway handshake with %s failed: %s", peer, exc)
        return
    names = {name.lower(): value for name, value in headers}
    await run_gateway_connection(gateway, ws, stream, path=parts.path, query=query, headers=names, peer=peer)


class _Wakeup:
    """The writer's doorbell: the machine rings it whenever it queued outputs."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def ring(self) -> None:
        self.event.set()

    def rearm(self) -> None:
        self.event = trio.Event()


async def run_gateway_connection(
    gateway: Gateway,
    ws: WebSocketConnection,
    stream: trio.abc.Stream,
    *,
    path: str,
    query: dict[str, str],
    headers: dict[str, str] | None = None,
    peer: str | None = None,
) -> None:
    """Drive one open websocket with the machine until either side ends it."""
    wakeup = _Wakeup()
    conn = gateway.connect(path, query, trio.current_time(), headers=headers, peer=peer)
    conn.wake = wakeup.ring
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, conn, ws, stream, wakeup)
            await _read(gateway, conn, ws)
            nursery.cancel_scope.cancel()
    finally:
        if ws.is_open:  # the emulator is stopping: say so, briefly (1001: going away)
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_CLOSE_TIMEOUT):
                await ws.aclose(1001)
        if conn.live:
            gateway.connection_lost(conn, None, trio.current_time())


async def _read(gateway: Gateway, conn: Connection, ws: WebSocketConnection) -> None:
    while True:
        try:
            messages = await ws.get_messages()
        except FrameTooLarge:
            continue  # relay.wire closed with 1009; the next read reports the close
        except WebSocketClosed as exc:
            gateway.connection_lost(conn, exc.code, trio.current_time())
            return
        for message in messages:
            gateway.receive(conn, message, trio.current_time())
            if not conn.live:
                break  # the machine closed it: the writer sends the close; read until it completes


async def _write(conn: Connection, ws: WebSocketConnection, stream: trio.abc.Stream, wakeup: _Wakeup) -> None:
    while True:
        wakeup.rearm()
        outputs = conn.take()
        if not outputs:
            await wakeup.event.wait()
            continue
        texts: list[str] = []
        try:
            for output in outputs:
                if isinstance(output, SendText):
                    texts.append(output.text)
                    continue
                if texts:
                    await ws.send_messages(texts)
                    texts = []
                if isinstance(output, SendBinary):
                    await ws.send_message(output.data)
                elif isinstance(output, Close):
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await ws.aclose(output.code, output.reason)
                    await trio.aclose_forcefully(stream)
                    return
                elif isinstance(output, Abort):
                    await trio.aclose_forcefully(stream)
                    return
            if texts:
                await ws.send_messages(texts)
        except WebSocketClosed:
            return  # the reader reports it
