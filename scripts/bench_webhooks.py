#!/usr/bin/env python3
"""Webhook figures for scripts/bench.py (its ``webhooks`` phase runs this in a process of its own; it prints one
JSON object). Everything on 127.0.0.1:

* **outbound**: the durable outbox (with its flusher) and ``serve_webhooks`` in this process; the receiver
  (tests/fakes/webhook_receiver.py, answering 200 at once) in a child process, so the two do not share a loop.
  N events are appended at once; deliveries/s = N / the time until the destination's backlog is empty. Batching
  off (one event per POST, mirai-api-http's way) and on (up to 100 events or 20 ms per POST), signed with
  Standard Webhooks in both.
* **inbound**: the whole bridge against the emulated Discord (tests/integration/test_end_to_end.py's harness) with
  the robots' routes on relay/web; all in this process. Accepted/s: 8 clients POST pre-signed posts as fast as
  they are answered 202. Latency: posts paced at 20/s (under the channel's rate limit, so no coalescing wait),
  from the POST to the emulated Discord receiving the message that holds it (p50/p99).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import trio  # noqa: E402
from standardwebhooks import Webhook  # noqa: E402

if TYPE_CHECKING:  # for _Nothing's type only: the receiver's own process imports it (serve_receiver)
    from tests.fakes.webhook_receiver import Received

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT = {
    "type": "GroupMessage",
    "messageChain": [{"type": "Source", "id": 1, "time": 1_700_000_000}, {"type": "Plain", "text": "x" * 700}],
    "sender": {"id": 42, "memberName": "alice", "permission": "MEMBER", "group": {"id": 5001, "name": "g"}},
}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]


async def outbound(events: int, batch: int) -> float:
    from adapters.mirai import codec
    from adapters.mirai.deadletters import DeadLetters
    from adapters.mirai.webhook import serve_webhooks
    from relay.config import OutboxConfig, WebhookConfig, WebhookDestinationConfig, WebhookSigning
    from relay.storage.flushers import serve_outbox_flusher
    from relay.storage.outbox import Outbox
    from relay.web.metrics import Metrics

    class Identity:
        bot_id = 1
        bot_name = "bench"

    class NoCommands:
        async def dispatch(self, command: str, sub_command: str | None, content: object) -> dict[str, object]:
            return {"code": 0}

    receiver = subprocess.Popen([sys.executable, __file__, "_receiver"], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 - started once, before timing
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        destination = WebhookDestinationConfig(
            url=f"http://127.0.0.1:{port}/",
            signing=WebhookSigning.STANDARD,
            secret=SECRET,
            batch_max_events=batch,
            batch_max_ms=20,
        )
        with tempfile.TemporaryDirectory() as folder:
            store = str(Path(folder) / "bench.sqlite3")
            with Outbox(store, OutboxConfig()) as outbox, DeadLetters(store) as dead:
                async with trio.open_nursery() as nursery:
                    await nursery.start(serve_outbox_flusher, outbox)
                    hooks = await nursery.start(
                        partial(
                            serve_webhooks,
                            config=WebhookConfig(destinations=(destination,)),
                            outbox=outbox,
                            dead_letters=dead,
                            dispatcher=NoCommands(),
                            identity=Identity(),
                            metrics=Metrics(),
                        )
                    )
                    frame = codec.encode_event("-1", EVENT)
                    started = time.perf_counter()
                    for _ in range(events):
                        outbox.append(frame)
                    (served,) = hooks.destinations
                    while served.statistics().backlog:
                        await trio.sleep(0.005)
                    elapsed = time.perf_counter() - started
                    nursery.cancel_scope.cancel()
        return events / elapsed
    finally:
        receiver.terminate()
        receiver.wait()


async def inbound(posts: int, paced: int) -> dict[str, float]:
    from relay.web.metrics import Metrics
    from tests.integration.test_end_to_end import CHANNEL, running_bridge
    from tests.integration.test_webhooks_end_to_end import MESSAGES, robots_on

    def signed(index: int) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"text": f"bench post {index}"}).encode()
        when = dt.datetime.now(tz=dt.UTC)
        msg_id = f"msg_{index}"
        return body, {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(SECRET).sign(msg_id, when, body),
            "content-type": "application/json",
        }

    with tempfile.TemporaryDirectory() as folder:
        async with running_bridge(Path(folder)) as env, robots_on(env, Metrics()) as client:
            prepared = [signed(i) for i in range(posts)]
            started = time.perf_counter()

            async def worker(items: list[tuple[bytes, dict[str, str]]]) -> None:
                async with httpx.AsyncClient(base_url=client.base_url) as own:
                    for body, headers in items:
                        answer = await own.post("/robots/ci", content=body, headers=headers)
                        assert answer.status_code == 202, answer.text

            async with trio.open_nursery() as nursery:
                for k in range(8):
                    nursery.start_soon(worker, prepared[k::8])
            accepted_per_s = posts / (time.perf_counter() - started)
            rest = env.discord
            while sum(r.json["content"].count("\n") + 1 for r in rest.requests_to(MESSAGES)) < posts:
                await trio.sleep(0.05)  # the storm drains before the latency run

            sent_at: dict[int, float] = {}
            first = posts
            for i in range(first, first + paced):
                body, headers = signed(i)
                sent_at[i] = trio.current_time()
                answer = await client.post("/robots/ci", content=body, headers=headers)
                assert answer.status_code == 202
                await trio.sleep(0.05)
            arrived: dict[int, float] = {}
            while len(arrived) < paced:
                for request in rest.requests_to(MESSAGES):
                    if request.path != f"/channels/{CHANNEL}/messages":
                        continue
                    for line in request.json["content"].split("\n"):
                        index = int(line.rsplit(" ", 1)[1])
                        if index >= first:
                            arrived.setdefault(index, request.time)
                await trio.sleep(0.05)
    latencies = [(arrived[i] - sent_at[i]) * 1000 for i in sent_at]
    return {
        "robot_posts_accepted_per_s": accepted_per_s,
        "robot_latency_p50_ms": percentile(latencies, 50),
        "robot_latency_p99_ms": percentile(latencies, 99),
    }


async def main() -> dict[str, Any]:
    return {
        "webhook_deliveries_per_s_batching_off": await outbound(3_000, 0),
        "webhook_deliveries_per_s_batching_on": await outbound(20_000, 100),
        **await inbound(1_000, 100),
    }


async def serve_receiver() -> None:
    from tests.fakes.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver()
    receiver.received = _Nothing()  # count nothing, keep nothing
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        print(port, flush=True)


class _Nothing(list["Received"]):
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    if sys.argv[1:] == ["_receiver"]:
        trio.run(serve_receiver)
    else:
        print(json.dumps(trio.run(main)))
