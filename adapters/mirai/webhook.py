"""The mirai ``webhook`` adapter's trio shell: every event POSTed to each destination, durably, in order.

mirai-api-http POSTs each event once, to every destination, concurrently and unordered, and drops it on any
failure (docs/mirai-api-http.md §10.2). Here each ``[[mirai.webhook.destinations]]`` is a cursor of the durable outbox
(registered as ``webhook:<label>``) served by a task of its own:

* it reads the frames after its cursor, a few at a time (at most :data:`READ_AHEAD` held in memory), skips the
  event types it was not asked for, and POSTs the rest one by one (or in batches), in outbox order; the cursor
  moves only after a 2xx, so a restart resumes where the last delivery ended (events a crash caught between a
  2xx and the next outbox flush, 50 ms, may be sent twice; ``webhook-id`` tells a receiver it saw one already);
* a destination that cannot be **reached** (connection refused, no route, connecting timed out) is *down*: its
  events wait in the outbox (within ``[outbox]`` retention) and it is tried again with backoff, without spending
  any event's retries; it gets everything when it is back. Down and back are logged once each;
* an attempt that reached the receiver and failed (not 2xx, no answer within ``timeout``, a broken answer) spends
  one of the event's ``retries``, with exponential backoff and full jitter (:func:`relay.backoff.backoff_delay`;
  a ``Retry-After`` shorter than the cap is honoured). After the last retry the event goes to the dead letters
  (:mod:`adapters.mirai.deadletters`) and the queue moves on; dead letters are counted in metrics and logged at
  most once per :data:`DEAD_LETTER_LOG_INTERVAL`;
* a 2xx answer may carry one command (:func:`adapters.mirai.webhook_requests.response_command`), run through the
  same dispatcher as the websocket adapters, its result thrown away; at most :data:`COMMANDS_IN_FLIGHT` run at
  once per destination, beyond which that destination's deliveries wait for one to finish.

A slow or silent receiver holds only its own task: the Discord reader and the other destinations never wait for
it (each has its own HTTP client and its own cursor), and its memory is bounded by :data:`READ_AHEAD` frames and
one batch; what it has not taken stays in the outbox (on disk once the flusher writes it).
"""

from __future__ import annotations

import collections
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import attrs
import httpx
import trio

from adapters.mirai import codec, webhook_requests
from adapters.mirai.deadletters import DeadLetter, DeadLetters
from adapters.mirai.session import CommandDispatcher
from relay.backoff import backoff_delay
from relay.config import WebhookConfig, WebhookDestinationConfig
from relay.errors import StoreError
from relay.ports import BotIdentity, IdentityChanged
from relay.proxy import httpx_proxy_options
from relay.storage.outbox import Outbox
from relay.web.metrics import Metrics

__all__ = [
    "Delivered",
    "Failed",
    "Outcome",
    "Unreachable",
    "WebhookDestination",
    "Webhooks",
    "cursor_name",
    "open_client",
    "post_once",
    "serve_webhooks",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: outbox frames a destination reads ahead and holds in memory (whatever it has not taken stays in the outbox)
READ_AHEAD: Final = 64
#: response-body bytes read from a receiver (a command is a small JSON object; the rest is discarded unread)
MAX_RESPONSE_BYTES: Final = 64 * 1024
#: commands from webhook answers running at once, per destination
COMMANDS_IN_FLIGHT: Final = 8
#: dead letters are logged at most this often per destination (seconds); the rest are counted in the next line
DEAD_LETTER_LOG_INTERVAL: Final = 60.0
#: without an ``identity_changed`` signal (a library caller's choice): seconds between looks for the bot id before
#: the first READY (the headers carry it)
BOT_ID_POLL_INTERVAL: Final = 0.5


def cursor_name(destination: WebhookDestinationConfig) -> str:
    """The outbox cursor of ``destination`` (a namespace of its own beside the reverse-ws destinations')."""
    return f"webhook:{destination.label}"


@attrs.frozen
class _Event:
    seq: int
    kind: str  #: the mirai event type
    text: str = attrs.field(repr=False)  #: the bare event object's JSON


@attrs.frozen
class Delivered:
    status: int
    body: bytes = attrs.field(repr=False)


@attrs.frozen
class Failed:
    """The receiver was reached, and the attempt failed."""

    reason: str
    retry_after: float | None = None


@attrs.frozen
class Unreachable:
    """The receiver could not be reached: it is down."""

    reason: str


Outcome = Delivered | Failed | Unreachable


@attrs.frozen(kw_only=True)
class WebhookStatistics:
    label: str
    delivered_seq: int  #: the cursor: every event up to this one was delivered, skipped or dead-lettered
    backlog: int  #: events after the cursor
    posts: int  #: POSTs answered 2xx
    failed_attempts: int
    dead_letters: int  #: events given up in this process
    down: bool  #: the last attempt could not reach the receiver
    events_delivered: int = 0  #: events in the POSTs answered 2xx


class _Wakeup:
    """Set by the outbox's append listener; the destination task waits on it when it has nothing to send."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def set(self, _seq: int = 0) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        self.event = trio.Event()


def _holding(lock: threading.Lock, fn: Callable[..., _T], *args: object) -> _T:
    with lock:
        return fn(*args)


@attrs.define(eq=False)
class WebhookDestination:
    """One destination: its cursor, its HTTP client, its retries and dead letters."""

    config: WebhookDestinationConfig
    common_headers: dict[str, str] = attrs.field(repr=False)
    outbox: Outbox
    dead_letters: DeadLetters
    write_lock: threading.Lock
    dispatcher: CommandDispatcher
    identity: BotIdentity
    metrics: Metrics
    client: httpx.AsyncClient
    rng: random.Random = attrs.field(factory=random.Random)
    clock: Callable[[], float] = time.time
    #: returns when the bot id may have changed (see relay.ports.IdentityChanged); None: poll
    identity_changed: IdentityChanged | None = None
    wakeup: _Wakeup = attrs.field(factory=_Wakeup)
    ahead: collections.deque[tuple[int, str]] = attrs.field(factory=collections.deque)
    posts: int = 0
    events_delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    down: bool = False
    _unlogged_dead: int = 0
    _last_dead_log: float = float("-inf")

    @property
    def label(self) -> str:
        return self.config.label

    @property
    def cursor_name(self) -> str:
        return cursor_name(self.config)

    def statistics(self) -> WebhookStatistics:
        cursor = self.outbox.cursor(self.cursor_name)
        return WebhookStatistics(
            label=self.label,
            delivered_seq=cursor,
            backlog=max(0, self.outbox.last_seq - cursor),
            posts=self.posts,
            failed_attempts=self.failed_attempts,
            dead_letters=self.dead_lettered,
            down=self.down,
            events_delivered=self.events_delivered,
        )

    # ------------------------------------------------------------------ the loop

    async def serve(self, *, task_status: trio.TaskStatus[WebhookDestination] = trio.TASK_STATUS_IGNORED) -> None:
        self.outbox.register(self.cursor_name)
        self.outbox.add_append_listener(self.wakeup.set)
        self.metrics.webhook_queue_depth.labels(self.label).set_function(lambda: self.statistics().backlog)
        try:
            async with trio.open_nursery() as commands:
                slots = trio.Semaphore(COMMANDS_IN_FLIGHT)
                task_status.started(self)
                while True:
                    await self._wait_for_bot_id()
                    events, last = await self._next_batch()
                    if events:
                        await self._deliver(events, commands, slots)
                    self.outbox.ack(self.cursor_name, last)
        finally:
            self.outbox.remove_append_listener(self.wakeup.set)
            self.metrics.webhook_queue_depth.remove(self.label)

    async def _wait_for_bot_id(self) -> None:
        identity_changed = self.identity_changed or functools.partial(trio.sleep, BOT_ID_POLL_INTERVAL)
        while not self.identity.bot_id:
            await identity_changed()

    def _read(self, after: int) -> tuple[int, str] | None:
        if not self.ahead:
            self.ahead.extend(self.outbox.read_after(after, READ_AHEAD))
        return self.ahead.popleft() if self.ahead else None

    async def _next_batch(self) -> tuple[list[_Event], int]:
        """The next events to POST, and the last sequence number they consume (skipped event types included).
        Waits for events; with batching, for up to ``batch_max_events`` of them or ``batch_max_ms`` after the
        first."""
        wanted = frozenset(self.config.events)
        limit = max(1, self.config.batch_max_events)
        events: list[_Event] = []
        cursor = last = self.outbox.cursor(self.cursor_name)
        deadline = float("inf")
        while len(events) < limit:
            item = self._read(last)
            if item is None:
                if not events and last > cursor:
                    break  # only skipped event types so far: move the cursor past them
                if events:
                    if deadline == float("inf"):
                        deadline = trio.current_time() + self.config.batch_max_ms / 1000
                    elif trio.current_time() >= deadline:
                        break
                with trio.move_on_at(deadline):
                    await self.wakeup.wait()
                continue
            seq, frame = item
            if seq <= last:
                continue
            last = seq
            event = codec.event_of_frame(frame)
            if event is None:
                log.warning("%s: outbox frame %d is not an event frame; skipped", self.label, seq)
                continue
            kind = codec.event_type(event)
            if wanted and kind not in wanted:
                continue
            events.append(_Event(seq, kind, codec.encode_bare_event(event)))
        return events, last

    async def _deliver(self, events: list[_Event], commands: trio.Nursery, slots: trio.Semaphore) -> None:
        """POST ``events`` until a 2xx, a dead letter, or forever while the receiver is down."""
        msg_id = webhook_requests.message_id(events[0].seq, events[-1].seq)
        texts = [event.text for event in events]
        batch = self.config.batch_max_events > 0
        failures = 0
        down_attempts = 0
        while True:
            post = webhook_requests.build_post(
                self.config,
                texts,
                msg_id=msg_id,
                bot_id=self.identity.bot_id,
                common_headers=self.common_headers,
                now=int(self.clock()),
                batch=batch,
            )
            outcome = await self._post(post)
            if isinstance(outcome, Delivered):
                self.posts += 1
                self.events_delivered += len(events)
                self.metrics.webhook_posts.labels(self.label, "delivered").inc()
                if self.down:
                    self.down = False
                    log.info("%s: the receiver is back; delivering its %d waiting events", self.label, self._backlog())
                command = webhook_requests.response_command(outcome.body)
                if command is not None:
                    await slots.acquire()
                    commands.start_soon(self._run_command, command, slots)
                return
            if isinstance(outcome, Unreachable):
                self.metrics.webhook_posts.labels(self.label, "unreachable").inc()
                if not self.down:
                    self.down = True
                    log.warning(
                        "%s: cannot reach the receiver (%s); its events wait in the outbox and are sent when it is "
                        "back",
                        self.label,
                        outcome.reason,
                    )
                await trio.sleep(backoff_delay(self.config.backoff, down_attempts, self.rng))
                down_attempts += 1
                continue
            failures += 1
            self.failed_attempts += 1
            if failures > self.config.retries:
                self.metrics.webhook_posts.labels(self.label, "dead_letter").inc()
                await self._dead_letter(events, outcome.reason, attempts=failures)
                return
            self.metrics.webhook_posts.labels(self.label, "retried").inc()
            delay = backoff_delay(self.config.backoff, failures - 1, self.rng)
            if outcome.retry_after is not None and outcome.retry_after <= self.config.backoff.cap:
                delay = max(delay, outcome.retry_after)
            log.debug(
                "%s: %s; attempt %d of %d in %.2f s",
                self.label,
                outcome.reason,
                failures + 1,
                self.config.retries + 1,
                delay,
            )
            await trio.sleep(delay)

    def _backlog(self) -> int:
        return max(0, self.outbox.last_seq - self.outbox.cursor(self.cursor_name))

    async def _post(self, post: webhook_requests.Post) -> Outcome:
        return await post_once(self.client, self.config, post)

    async def _run_command(self, command: webhook_requests.ResponseCommand, slots: trio.Semaphore) -> None:
        try:
            data = await self.dispatcher.dispatch(command.command, command.sub_command, command.content)
            if data.get("code", 0) not in (0, None):
                log.info(
                    "%s: the command %s in a webhook answer failed: %s", self.label, command.command, data.get("msg")
                )
            else:
                log.debug("%s: ran the command %s from a webhook answer", self.label, command.command)
        finally:
            slots.release()

    async def _dead_letter(self, events: list[_Event], error: str, *, attempts: int) -> None:
        now = self.clock()
        letters = [
            DeadLetter(
                destination=self.label,
                seq=event.seq,
                event_type=event.kind,
                event=event.text,
                bot_id=self.identity.bot_id,
                error=error,
                attempts=attempts,
                created=now,
            )
            for event in events
        ]
        try:
            await trio.to_thread.run_sync(_holding, self.write_lock, self.dead_letters.add, letters)
        except StoreError as exc:
            log.error("%s: could not keep %d events as dead letters (%s); they are lost", self.label, len(letters), exc)
        self.dead_lettered += len(letters)
        self.metrics.webhook_dead_letters.labels(self.label).inc(len(letters))
        self._unlogged_dead += len(letters)
        if now - self._last_dead_log >= DEAD_LETTER_LOG_INTERVAL:
            log.warning(
                "%s: gave up on %d event(s) after %d attempts (last: %s); they are in the dead letters "
                "(`discord-mirai-relay webhooks dead-letters`, `webhooks replay`)",
                self.label,
                self._unlogged_dead,
                attempts,
                error,
            )
            self._unlogged_dead = 0
            self._last_dead_log = now


async def post_once(
    client: httpx.AsyncClient, destination: WebhookDestinationConfig, post: webhook_requests.Post
) -> Outcome:
    """One attempt, within ``timeout`` seconds in all (connecting, sending, the answer's first 64 KiB)."""
    with trio.move_on_after(destination.timeout) as scope:
        try:
            async with client.stream("POST", destination.url, content=post.body, headers=list(post.headers)) as answer:
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_RESPONSE_BYTES:
                        break
                if webhook_requests.is_success(answer.status_code):
                    return Delivered(answer.status_code, bytes(body[:MAX_RESPONSE_BYTES]))
                return Failed(f"answered HTTP {answer.status_code}", _retry_after(answer.headers))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return Unreachable(_reason(exc))
        except httpx.HTTPError as exc:
            return Failed(_reason(exc))
    assert scope.cancelled_caught
    return Failed(f"no answer within the timeout of {destination.timeout:g} s")


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def open_client(
    destination: WebhookDestinationConfig, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The HTTP client of one destination: one keep-alive connection, no redirects, no proxy from the
    environment (the bridge's proxy settings are chosen in one place, :mod:`relay.proxyurl`)."""
    if transport is not None:
        return httpx.AsyncClient(timeout=httpx.Timeout(destination.timeout), transport=transport)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(destination.timeout),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        follow_redirects=False,
        **httpx_proxy_options(None),
    )


class Webhooks:
    """Every configured webhook destination; ``statistics()`` gives one record per destination."""

    def __init__(self, destinations: Iterable[WebhookDestination]) -> None:
        self.destinations = tuple(destinations)

    def statistics(self) -> list[WebhookStatistics]:
        return [destination.statistics() for destination in self.destinations]


async def serve_webhooks(
    *,
    config: WebhookConfig,
    outbox: Outbox,
    dead_letters: DeadLetters,
    dispatcher: CommandDispatcher,
    identity: BotIdentity,
    metrics: Metrics,
    write_lock: threading.Lock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
    identity_changed: IdentityChanged | None = None,
    task_status: trio.TaskStatus[Webhooks] = trio.TASK_STATUS_IGNORED,
) -> None:
    """POST the outbox's events to every ``[[mirai.webhook.destinations]]`` until cancelled.

    ``identity.bot_id`` is the id in the ``qq``/``bot`` headers (``[mirai] bot_id`` or the Discord bot user id: pass
    the presented identity); no event is POSTed before it is known, and it is looked at again each time
    ``identity_changed`` returns (:data:`relay.ports.IdentityChanged`; every :data:`BOT_ID_POLL_INTERVAL` without
    it). ``dispatcher`` runs the commands webhook answers carry (``DrainingDispatcher`` in the
    app). ``write_lock`` is the outbox's (``outbox.write_lock`` when None): dead letters are written in the same
    SQLite file. ``transport`` replaces httpx's (tests). The outbox's flusher must run beside this (the
    composition root's job). Started once every destination's cursor is registered.
    """
    lock = write_lock or outbox.write_lock
    random_source = rng or random.Random()
    async with trio.open_nursery() as nursery:
        clients: list[httpx.AsyncClient] = []
        destinations: list[WebhookDestination] = []
        try:
            for destination in config.destinations:
                client = open_client(destination, transport)
                clients.append(client)
                served = WebhookDestination(
                    config=destination,
                    common_headers=dict(config.extra_headers),
                    outbox=outbox,
                    dead_letters=dead_letters,
                    write_lock=lock,
                    dispatcher=dispatcher,
                    identity=identity,
                    metrics=metrics,
                    client=client,
                    rng=random.Random(random_source.random()),
                    identity_changed=identity_changed,
                )
                destinations.append(await nursery.start(served.serve))
            if destinations:
                log.info("webhooks: POSTing events to %d destination(s)", len(destinations))
            task_status.started(Webhooks(destinations))
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for client in clients:
                    await client.aclose()
