"""Webhooks out (issue 14 a): the durable outbox → serve_webhooks → a real HTTP receiver on 127.0.0.1.

Signatures are checked with the Standard Webhooks reference library and, for x-signature, against a value this
test computes itself with hmac. The receiver (tests/fakes/webhook_receiver.py) is down, slow, failing, silent,
garbage-answering or fine, as each test needs. No timed assertions: waits are bounded by fail_after guards.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from standardwebhooks import Webhook

from adapters.mirai import codec
from adapters.mirai.deadletters import DeadLetters
from adapters.mirai.webhook import READ_AHEAD, Webhooks, serve_webhooks
from relay import cli
from relay.config import (
    BackoffConfig,
    OutboxConfig,
    WebhookConfig,
    WebhookDestinationConfig,
    WebhookSigning,
)
from relay.storage.flushers import serve_outbox_flusher
from relay.storage.outbox import Outbox
from relay.web.metrics import Metrics
from tests.fakes.webhook_receiver import Answer, WebhookReceiver

BOT = 1_100_000_000_000_000_001
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = BackoffConfig(initial=0.01, factor=2.0, cap=0.05)


@attrs.frozen
class FixedIdentity:
    bot_id: int = BOT
    bot_name: str = "relay-bot"


@attrs.define
class RecordingDispatcher:
    calls: list[tuple[str, str | None, object]] = attrs.Factory(list)
    called: trio.Event = attrs.Factory(trio.Event)

    async def dispatch(self, command: str, sub_command: str | None, content: object) -> dict[str, object]:
        self.calls.append((command, sub_command, content))
        self.called.set()
        return {"code": 0, "msg": "success"}


def event(i: int, kind: str = "GroupMessage", padding: int = 0) -> dict[str, Any]:
    chain = [{"type": "Plain", "text": f"message {i} ✓"}]
    if padding:
        chain.append({"type": "Plain", "text": "x" * padding})
    return {"type": kind, "messageChain": chain, "sender": {"id": i}}


def frame(i: int, kind: str = "GroupMessage", padding: int = 0) -> str:
    return codec.encode_event("-1", event(i, kind, padding))


def destination(url: str, **changes: Any) -> WebhookDestinationConfig:
    return WebhookDestinationConfig(url=url, backoff=FAST, timeout=changes.pop("timeout", 5.0), **changes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.frozen
class Env:
    outbox: Outbox
    webhooks: Webhooks
    dead_letters: DeadLetters
    metrics: Metrics
    dispatcher: RecordingDispatcher


@asynccontextmanager
async def webhooks_running(
    path: Path,
    *destinations: WebhookDestinationConfig,
    extra_headers: dict[str, str] | None = None,
    identity: Any = None,
    identity_changed: Any = None,
) -> AsyncIterator[Env]:
    store = str(path / "bridge.sqlite3")
    metrics, dispatcher = Metrics(), RecordingDispatcher()
    with Outbox(store, OutboxConfig()) as outbox, DeadLetters(store) as dead_letters:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_outbox_flusher, outbox)
            webhooks = await nursery.start(
                partial(
                    serve_webhooks,
                    config=WebhookConfig(destinations=destinations, extra_headers=extra_headers or {}),
                    outbox=outbox,
                    dead_letters=dead_letters,
                    dispatcher=dispatcher,
                    identity=identity or FixedIdentity(),
                    metrics=metrics,
                    identity_changed=identity_changed,
                )
            )
            yield Env(outbox, webhooks, dead_letters, metrics, dispatcher)
            nursery.cancel_scope.cancel()


def texts(received: list[Any]) -> list[str]:
    return [item.json()["messageChain"][0]["text"] for item in received]


async def wait_until(predicate: Any) -> None:
    while not predicate():
        await trio.sleep(0.01)


async def test_bare_events_in_order_with_mirai_headers_and_a_standard_webhooks_signature(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            hook = destination(
                f"http://127.0.0.1:{port}/hook",
                signing=WebhookSigning.STANDARD,
                secret=SECRET,
                extra_headers={"Authorization": "Bearer dest"},
            )
            async with webhooks_running(tmp_path, hook, extra_headers={"X-Common": "c"}) as env:
                for i in range(3):
                    env.outbox.append(frame(i))
                received = await receiver.wait_for(3)
            nursery.cancel_scope.cancel()
    verifier = Webhook(SECRET)
    for i, post in enumerate(received):
        assert post.json() == event(i)  # the bare event object: no syncId/data wrapper
        assert post.body == codec.encode_bare_event(event(i)).encode()
        for name in ("qq", "X-qq", "bot", "X-bot"):
            assert post.header(name) == str(BOT)
        assert post.header("content-type") == "application/json; charset=UTF-8"
        assert post.header("authorization") == "Bearer dest"
        assert post.header("x-common") == "c"
        assert verifier.verify(post.body, post.headers) == event(i)  # the reference library's own check
        assert post.header("webhook-id") == f"msg_{i + 1}"


@attrs.define
class LateIdentity:
    """Discord READY has not arrived yet: the bot id is 0 until the test sets it."""

    bot_id: int = 0
    bot_name: str = ""


async def test_nothing_is_posted_before_the_bot_id_is_known_and_everything_once_told_it_is(tmp_path: Path) -> None:
    """The qq/bot headers need the bot id: events wait in the outbox until the app says a Discord session started
    (relay.ports.IdentityChanged), then go out in order; the destination parks on that signal, not on a timer."""
    receiver = WebhookReceiver()
    identity = LateIdentity()
    changed = trio.lowlevel.ParkingLot()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            hook = destination(f"http://127.0.0.1:{port}/hook")
            async with webhooks_running(tmp_path, hook, identity=identity, identity_changed=changed.park) as env:
                for i in range(3):
                    env.outbox.append(frame(i))
                await wait_until(lambda: changed.statistics().tasks_waiting == 1)
                assert receiver.received == []
                identity.bot_id = BOT
                changed.unpark_all()
                received = await receiver.wait_for(3)
            nursery.cancel_scope.cancel()
    assert [post.json() for post in received] == [event(0), event(1), event(2)]
    assert all(post.header("qq") == str(BOT) for post in received)


async def test_x_signature_is_the_hex_hmac_of_the_raw_body(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            hook = destination(f"http://127.0.0.1:{port}/", signing=WebhookSigning.X_SIGNATURE, secret="s3cret")
            async with webhooks_running(tmp_path, hook) as env:
                env.outbox.append(frame(1))
                (post,) = await receiver.wait_for(1)
            nursery.cancel_scope.cancel()
    expected = hmac.new(b"s3cret", post.body, hashlib.sha256).hexdigest()
    assert post.header("x-signature") == expected
    assert post.header("webhook-signature") is None


async def test_a_receiver_that_is_down_gets_every_event_in_order_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    receiver = WebhookReceiver()
    with trio.fail_after(30):
        async with webhooks_running(tmp_path, destination(f"http://127.0.0.1:{port}/", retries=1)) as env:
            for i in range(5):
                env.outbox.append(frame(i))
            (hook,) = env.webhooks.destinations
            await wait_until(lambda: hook.down)
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(receiver.serve, port))
                received = await receiver.wait_for(5)
                await wait_until(lambda: hook.statistics().backlog == 0)
                nursery.cancel_scope.cancel()
            assert not hook.down
            assert env.dead_letters.count() == 0  # being down spends no event's retries
    assert texts(received) == [f"message {i} ✓" for i in range(5)]


async def test_500s_are_retried_then_dead_lettered_and_the_queue_moves_on_in_order(tmp_path: Path) -> None:
    receiver = WebhookReceiver(script=[Answer(500)] * 4 + [Answer(503), Answer(200)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            async with webhooks_running(tmp_path, destination(f"http://127.0.0.1:{port}/")) as env:
                for i in range(4):
                    env.outbox.append(frame(i))
                received = await receiver.wait_for(4 + 2 + 2)
                (hook,) = env.webhooks.destinations
                await wait_until(lambda: hook.statistics().backlog == 0)
                (letter,) = env.dead_letters.list()
                dead_metric = env.metrics.webhook_dead_letters.labels(hook.label)._value.get()
            nursery.cancel_scope.cancel()
    # event 0: four attempts (retries = 3), all 500; event 1: a 503 then delivered; events 2 and 3 at once
    assert texts(received) == ["message 0 ✓"] * 4 + ["message 1 ✓"] * 2 + ["message 2 ✓", "message 3 ✓"]
    assert (letter.destination, letter.seq, letter.event_type, letter.attempts) == (hook.label, 1, "GroupMessage", 4)
    assert letter.error == "answered HTTP 500"
    assert json.loads(letter.event) == event(0)
    assert dead_metric == 1


async def test_a_receiver_slower_than_the_timeout_is_retried(tmp_path: Path) -> None:
    receiver = WebhookReceiver(script=[Answer(delay=30), Answer(hang=True)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            async with webhooks_running(tmp_path, destination(f"http://127.0.0.1:{port}/", timeout=0.3)) as env:
                env.outbox.append(frame(7))
                await receiver.wait_for(3)
                (hook,) = env.webhooks.destinations
                await wait_until(lambda: hook.statistics().backlog == 0)
                assert (hook.posts, hook.failed_attempts, env.dead_letters.count()) == (1, 2, 0)
            nursery.cancel_scope.cancel()


async def test_answers_garbage_ignored_and_a_command_is_run_with_mirai_webhook_semantics(tmp_path: Path) -> None:
    send = {"target": 5001, "messageChain": [{"type": "Plain", "text": "from the answer"}]}
    receiver = WebhookReceiver(
        script=[
            Answer(200, b"\xff not json {"),
            Answer(200, b'{"command":"","data":{}}'),  # what Ariadne answers: nothing to do
            Answer(200, b'{"command":"verify","content":{}}'),  # not allowed in a webhook answer
            Answer(200, b'{"command":"sendGroupMessage"}'),  # no content: ignored
            Answer(200, b'{"command":"groupConfig","subCommand":"get","content":{"target":5001,"config":{}}}'),
            Answer(202, json.dumps({"command": "sendGroupMessage", "content": send}).encode()),
        ]
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            async with webhooks_running(tmp_path, destination(f"http://127.0.0.1:{port}/")) as env:
                for i in range(6):
                    env.outbox.append(frame(i))
                await receiver.wait_for(6)
                await wait_until(lambda: len(env.dispatcher.calls) == 2)
                assert env.dead_letters.count() == 0
            nursery.cancel_scope.cancel()
    # subCommand is not read: groupConfig means update; any 2xx may carry the command
    assert env.dispatcher.calls[0] == ("groupConfig", "update", {"target": 5001, "config": {}})
    assert env.dispatcher.calls[1] == ("sendGroupMessage", None, send)


async def test_filtered_event_types_are_skipped(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            hook = destination(f"http://127.0.0.1:{port}/", events=("MemberJoinEvent",))
            async with webhooks_running(tmp_path, hook) as env:
                env.outbox.append(frame(1))
                env.outbox.append(frame(2, "MemberJoinEvent"))
                env.outbox.append(frame(3))
                env.outbox.append(frame(4, "MemberJoinEvent"))
                received = await receiver.wait_for(2)
                (served,) = env.webhooks.destinations
                await wait_until(lambda: served.statistics().backlog == 0)
            nursery.cancel_scope.cancel()
    assert [post.json()["type"] for post in received] == ["MemberJoinEvent", "MemberJoinEvent"]
    assert [post.json()["sender"]["id"] for post in received] == [2, 4]


async def test_batching_sends_signed_arrays_and_off_sends_objects(tmp_path: Path) -> None:
    batched, single = WebhookReceiver(), WebhookReceiver()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            batched_port = await nursery.start(batched.serve)
            single_port = await nursery.start(single.serve)
            hooks = (
                destination(
                    f"http://127.0.0.1:{batched_port}/",
                    name="batched",
                    batch_max_events=3,
                    batch_max_ms=50,
                    signing=WebhookSigning.STANDARD,
                    secret=SECRET,
                ),
                destination(f"http://127.0.0.1:{single_port}/", name="single"),
            )
            async with webhooks_running(tmp_path, *hooks) as env:
                for i in range(7):
                    env.outbox.append(frame(i))
                await single.wait_for(7)
                await wait_until(lambda: sum(len(post.json()) for post in batched.received) == 7)
            nursery.cancel_scope.cancel()
    bodies = [post.json() for post in batched.received]
    assert all(isinstance(body, list) and 1 <= len(body) <= 3 for body in bodies)
    assert [e for body in bodies for e in body] == [event(i) for i in range(7)]
    for post in batched.received:  # the whole array is signed once
        assert Webhook(SECRET).verify(post.body, post.headers) == post.json()
    assert [post.json() for post in single.received] == [event(i) for i in range(7)]


async def test_pending_deliveries_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    hook = destination(f"http://127.0.0.1:{port}/")
    with trio.fail_after(30):
        async with webhooks_running(tmp_path, hook) as env:
            for i in range(5):
                env.outbox.append(frame(i))
            (served,) = env.webhooks.destinations
            await wait_until(lambda: served.down)
        # everything closed (the outbox flushed); a new process with the receiver up
        receiver = WebhookReceiver()
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(receiver.serve, port))
            async with webhooks_running(tmp_path, hook) as env:
                received = await receiver.wait_for(5)
                (served,) = env.webhooks.destinations
                await wait_until(lambda: served.statistics().backlog == 0)
            nursery.cancel_scope.cancel()
    assert texts(received) == [f"message {i} ✓" for i in range(5)]


async def test_a_receiver_that_never_answers_holds_bounded_memory_and_no_other_destination(tmp_path: Path) -> None:
    silent, healthy = WebhookReceiver(default=Answer(hang=True)), WebhookReceiver()
    count = 10_000
    padding_chars = 900  # ~1 KB events, like the bench
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            silent_port = await nursery.start(silent.serve)
            healthy_port = await nursery.start(healthy.serve)
            hooks = (
                destination(f"http://127.0.0.1:{silent_port}/", name="silent", timeout=3600),
                destination(f"http://127.0.0.1:{healthy_port}/", name="healthy", batch_max_events=100),
            )
            async with webhooks_running(tmp_path, *hooks) as env:
                stuck, fine = env.webhooks.destinations
                env.outbox.append(frame(0, padding=padding_chars))
                await silent.wait_for(1)  # the silent receiver holds the first POST open from now on
                tracemalloc.start()
                try:
                    for i in range(1, count):
                        env.outbox.append(frame(i, padding=padding_chars))
                        if i % 200 == 0:
                            await trio.sleep(0)  # let the flusher and the healthy destination run
                    await wait_until(lambda: fine.statistics().backlog == 0)
                    # what the bridge holds; the fake receivers' recordings are the test's own
                    gc.collect()
                    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*/tests/fakes/*")])
                    held = sum(stat.size for stat in snapshot.statistics("filename"))
                finally:
                    tracemalloc.stop()
                assert len(stuck.ahead) <= READ_AHEAD
                assert stuck.statistics().backlog == count
                assert len(silent.received) == 1
            nursery.cancel_scope.cancel()
    delivered = [e for post in healthy.received for e in post.json()]
    assert delivered == [event(i, padding=padding_chars) for i in range(count)]
    backlog_bytes = sum(len(frame(i, padding=padding_chars)) for i in range(count))
    # the outbox's bounded in-memory tail and write buffer, not the silent destination's backlog
    assert held < backlog_bytes / 2, (held, backlog_bytes)


async def test_dead_letters_are_listed_and_replayed_by_the_command_line(tmp_path: Path, capsys: Any) -> None:
    receiver = WebhookReceiver(script=[Answer(500)] * 2)
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.serve)
            hook = destination(
                f"http://127.0.0.1:{port}/", name="main", retries=1, signing=WebhookSigning.STANDARD, secret=SECRET
            )
            async with webhooks_running(tmp_path, hook) as env:
                env.outbox.append(frame(1))
                env.outbox.append(frame(2))
                await receiver.wait_for(3)
                (served,) = env.webhooks.destinations
                await wait_until(lambda: served.statistics().backlog == 0)
                assert env.dead_letters.count() == 1
            config = tmp_path / "bridge.toml"
            config.write_text(
                f'[store]\npath = "{tmp_path / "bridge.sqlite3"}"\n'
                "[[mirai.webhook.destinations]]\n"
                f'name = "main"\nurl = "http://127.0.0.1:{port}/"\nsigning = "standard"\nsecret_env = "HOOK_SECRET"\n',
                encoding="utf-8",
            )
            env_vars = {"HOOK_SECRET": SECRET, "HOME": str(tmp_path)}
            listed = await trio.to_thread.run_sync(
                partial(cli.main, ["webhooks", "dead-letters", str(config)], env=env_vars)
            )
            listing = capsys.readouterr().out
            replayed = await trio.to_thread.run_sync(
                partial(cli.main, ["webhooks", "replay", str(config), "--all"], env=env_vars)
            )
            replay_output = capsys.readouterr().out
            nursery.cancel_scope.cancel()
    assert listed == 0
    assert "#1  main  GroupMessage (event 1)  2 attempts" in listing
    assert "answered HTTP 500" in listing
    assert replayed == 0, replay_output
    assert "#1 → main: delivered (HTTP 200)" in replay_output
    replay = receiver.received[-1]
    assert replay.json() == event(1)
    assert replay.header("webhook-id") == "msg_1"  # the original id: a receiver can tell it is a repeat
    assert Webhook(SECRET).verify(replay.body, replay.headers) == event(1)
    with DeadLetters(str(tmp_path / "bridge.sqlite3")) as store:
        assert store.count() == 0
