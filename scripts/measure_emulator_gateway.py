#!/usr/bin/env python3
"""How fast can the embedded Discord emulator's gateway stream events, next to scripts/bench.py's own peer?

    python scripts/measure_emulator_gateway.py                 # 20,000 events, zlib-stream, best of 3
    python scripts/measure_emulator_gateway.py --events 50000 --runs 5 --no-compress

Issue 17: if the benchmark used the emulator, the emulator must not be the bottleneck. Both servers run in a
process of their own (one core each) and stream the same ~1 KB guild MESSAGE_CREATE payloads
(``bench.message_payload``) to one consumer process, which is as light as a gateway client can be: it reads
with relay.wire, inflates the zlib stream and counts the dispatches without parsing them. Reported: events/s
from the first dispatch received to the last (the consumer's clock), per server, best of ``--runs``.

* ``emulator``: relay.sandbox.emulator served by ``serve_emulator``; once the consumer has identified, the
  emulator's own control call ``Gateway.dispatch_many`` sequences the payloads (kept for resume, as always),
  in chunks of 500 with a checkpoint between, and its gateway shell writes them;
* ``bench-peer``: ``bench.py``'s peer (pre-encoded frames, 64 per socket write), in its consume-only mode.

Loopback only. Nothing here is a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench  # noqa: E402  (scripts/bench.py: the payloads and the peer)

CHUNK = 500
MESSAGE_CREATE = b'"t":"MESSAGE_CREATE"'
INTENTS = (1 << 0) | (1 << 9) | (1 << 15)  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT


# --------------------------------------------------------------------------- the emulator's process


def run_emulator(events: int) -> None:
    import functools

    import trio

    from relay.sandbox.emulator.emulator import Emulator
    from relay.sandbox.emulator.server import serve_emulator

    async def main() -> None:
        emulator = Emulator(seed_default=True, global_limit=None)
        payloads = [bench.message_payload(i, 0) for i in range(events)]
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve_emulator, emulator, port=0))
            print(json.dumps({"gateway": f"ws://127.0.0.1:{port}", "token": emulator.token}), flush=True)
            await emulator.wait_until(lambda: bool(emulator.gateway.identifies))
            await trio.sleep(0.5)  # READY and GUILD_CREATE out of the way
            for start in range(0, events, CHUNK):
                await emulator.dispatch_many("MESSAGE_CREATE", payloads[start : start + CHUNK])
            await emulator.wait_until(lambda: not emulator.live_shards())  # the consumer closes when done
            nursery.cancel_scope.cancel()

    trio.run(main)


# --------------------------------------------------------------------------- the consumer


def consume(gateway: str, token: str, events: int, compress: bool) -> float:
    """Identify, count ``events`` MESSAGE_CREATE dispatches; events/s from the first to the last."""
    import trio

    from relay.wire.client import connect_websocket

    async def main() -> float:
        query = "v=10&encoding=json" + ("&compress=zlib-stream" if compress else "")
        ws = await connect_websocket(f"{gateway}/?{query}", max_message_size=1 << 26)
        inflater = zlib.decompressobj()
        buffer = b""
        identified = False
        seen = 0
        first = last = 0.0
        while seen < events:
            for message in await ws.get_messages():
                data = message.encode() if isinstance(message, str) else message
                if compress:
                    buffer += data
                    if not buffer.endswith(bench.ZLIB_SUFFIX):
                        continue
                    data, buffer = inflater.decompress(buffer), b""
                if not identified:
                    identify = {"op": 2, "d": {"token": token, "intents": INTENTS, "properties": {}}}
                    await ws.send_message(json.dumps(identify))
                    identified = True
                if MESSAGE_CREATE in data:
                    if not seen:
                        first = time.perf_counter()
                    seen += 1
        last = time.perf_counter()
        await ws.aclose(1000)
        return (events - 1) / (last - first)

    return trio.run(main)


# --------------------------------------------------------------------------- orchestration


def measure_emulator(events: int, compress: bool) -> float:
    server = subprocess.Popen(
        [sys.executable, __file__, "_emulator", str(events)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert server.stdout is not None
        address = json.loads(server.stdout.readline())
        return consume(address["gateway"], address["token"], events, compress)
    finally:
        server.wait(timeout=60)


def measure_bench_peer(events: int, compress: bool) -> float:
    params: dict[str, Any] = {"mode": "saturate", "events": events, "client": "discordpy", "settle": 0.5}
    peer, ports = bench.start_peer(params)
    try:
        return consume(f"ws://127.0.0.1:{ports['gateway']}", bench.TOKEN, events, compress)
    finally:
        peer.kill()
        peer.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-compress", action="store_true", help="plain JSON text frames instead of zlib-stream")
    args = parser.parse_args(argv)
    compress = not args.no_compress
    results: dict[str, list[float]] = {"emulator": [], "bench-peer": []}
    for _ in range(args.runs):
        results["emulator"].append(measure_emulator(args.events, compress))
        results["bench-peer"].append(measure_bench_peer(args.events, compress))
    transport = "zlib-stream" if compress else "plain JSON"
    print(f"{args.events} MESSAGE_CREATE (~1 KB) per run, {transport}, best of {args.runs} (events/s):")
    for name, rates in results.items():
        print(f"  {name:10} {max(rates):>10,.0f}   (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_emulator":
        run_emulator(int(sys.argv[2]))
    else:
        sys.exit(main())
