"""Measure what serving a websocket through an ASGI server costs on the event path (a one-off measurement).

Why relay/web hands websocket upgrades to the project's own implementation instead of serving them through an
ASGI server: the bridge pushes every event to a framework as one small text frame, and the ws adapter must
keep up with the reverse-ws client (issue 13: ≥ 0.9x its rate). This script sends N small text messages from
a server to one client over loopback, two ways:

* ``hypercorn``: an ASGI app under hypercorn's trio worker, one ``websocket.send`` per message (the only way
  ASGI offers: each send is a separate event through hypercorn's wsproto connection and stream writer);
* ``batched``: a plain trio TCP stream after a wsproto handshake, the frames built directly and written in
  batches of ``--batch`` frames per ``send_all`` (what ``relay/wire`` does).

The client is a separate process that reads raw bytes and counts frames with a minimal parser (the same cost
in both runs), so the two cores are split between the server and the client. It prints the wall time and the
server process's CPU time for each way, best of ``--repeat`` runs.

hypercorn is not a dependency of the project: run this from a throwaway virtualenv::

    python3 -m venv /tmp/hc && /tmp/hc/bin/pip install hypercorn trio wsproto
    /tmp/hc/bin/python scripts/measure_asgi_ws.py --messages 20000
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any

MESSAGE = '{"syncId":"-1","data":{"type":"GroupMessage","sender":{"id":1},"messageChain":[]}}'


# --------------------------------------------------------------------------------------------- client


def run_client(port: int, count: int) -> None:
    """Upgrade, then read until ``count`` text frames arrived; print the seconds from the 101 to the last."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"GET /all HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    start = time.perf_counter()
    seen = 0
    view = bytearray(buffer)
    while seen < count:
        offset = 0
        while True:  # whole unmasked frames in view[offset:]
            if len(view) - offset < 2:
                break
            length = view[offset + 1] & 0x7F
            header = 2
            if length == 126:
                if len(view) - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", view, offset + 2)
                header = 4
            elif length == 127:
                if len(view) - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", view, offset + 2)
                header = 10
            if len(view) - offset < header + length:
                break
            if view[offset] == 0x81:
                seen += 1
            offset += header + length
        del view[:offset]
        if seen >= count:
            break
        data = sock.recv(262144)
        if not data:
            raise SystemExit(f"server closed after {seen} messages")
        view += data
    print(time.perf_counter() - start, flush=True)
    sock.close()


# --------------------------------------------------------------------------------------------- servers


def cpu() -> float:
    return time.process_time()


async def serve_hypercorn(count: int) -> tuple[float, float]:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        for _ in range(count):
            await send({"type": "websocket.send", "text": MESSAGE})
        await receive()  # the client's disconnect

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.websocket_max_message_size = 1 << 20
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(serve, app, config, shutdown_trigger=shutdown.wait))
        port = int(binds[0].rsplit(":", 1)[1])
        result = await trio.to_thread.run_sync(measure_client, port, count, cpu)
        shutdown.set()
    return result


async def serve_batched(count: int, batch: int) -> tuple[float, float]:
    import trio
    import wsproto
    from wsproto import events

    assert len(MESSAGE) <= 125  # one-byte lengths below

    async def handle(stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while True:
            ws.receive_data(await stream.receive_some(65536))
            request = next((e for e in ws.events() if isinstance(e, events.Request)), None)
            if request is not None:
                break
        await stream.send_all(ws.send(events.AcceptConnection()))
        left = count
        while left:  # each frame built from its str, as relay/wire does; one send_all per batch
            n = min(batch, left)
            payloads = [text.encode() for text in [MESSAGE] * n]
            await stream.send_all(b"".join(bytes((0x81, len(p))) + p for p in payloads))
            left -= n
        await stream.receive_some(65536)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        result = await trio.to_thread.run_sync(measure_client, port, count, cpu)
        nursery.cancel_scope.cancel()
    return result


def measure_client(port: int, count: int, clock: Any) -> tuple[float, float]:
    """Run the client process; return (its wall seconds, this process's CPU seconds meanwhile)."""
    before = clock()
    out = subprocess.run(
        [sys.executable, __file__, "--client", str(port), "--messages", str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip()), clock() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64, help="frames per send_all in the batched server")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args.client, args.messages)
        return
    import trio

    print(f"{args.messages} messages of {len(MESSAGE)} bytes, server -> client over 127.0.0.1, pid {os.getpid()}")
    for name in ("hypercorn", "batched"):
        runs = []
        for _ in range(args.repeat):
            if name == "hypercorn":
                runs.append(trio.run(serve_hypercorn, args.messages))
            else:
                runs.append(trio.run(serve_batched, args.messages, args.batch))
        wall, server_cpu = min(runs)
        print(
            f"{name:>9}: {wall:.3f} s wall ({args.messages / wall:,.0f} msg/s), "
            f"server CPU {server_cpu:.3f} s ({server_cpu / args.messages * 1e6:.1f} µs/msg)"
        )


if __name__ == "__main__":
    main()
