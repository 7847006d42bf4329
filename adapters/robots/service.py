"""The robots' HTTP handlers and their senders (trio): accept, queue durably, coalesce, post through the relay.

Routes (for the bridge's ``[server]`` listener; this module does not listen): ``POST /robots/<name>`` and
``GET /robots/<name>/deliveries/<id>``. A post is checked in this order, each refusal a JSON error body: unknown
robot → 404; larger than the robot's ``max_body_bytes`` → 413; signature missing → 401, wrong or stale → 403
(:mod:`adapters.robots.auth`); a body it cannot read → 400/415/422 (:mod:`adapters.robots.payloads`). A
Standard Webhooks ``webhook-id`` seen in the last five minutes answers 202 with the first post's delivery id
and posts nothing. Otherwise the post is committed to ``robot_deliveries`` (posts arriving together share one
transaction) and answered **202** with its delivery id.

The status of a delivery (``queued``, ``sent``, ``failed`` with Discord's error) is read with ``GET
/robots/<name>/deliveries/<id>``, without a signature: the id is 128 random bits that only the sender was given,
and the answer holds no message content.

Each channel has one sender task. It packs every queued post of its channel, in order, into messages of at most
2,000 characters (:mod:`adapters.robots.render`) and sends one at a time through the relay's
:class:`~relay.ports.CommandService`, i.e. the Discord REST executor and its rate limiter: while a send waits for
the channel's rate limit, the posts that arrive meanwhile gather into the next message, so a burst becomes as few
messages as the limit requires and no request is made that the limiter would refuse. A failure Discord may get
over (a timeout, a 5xx, a network error: ``FailureKind.TIMEOUT``/``INTERNAL``) is retried with backoff,
forever — the posts stay queued, in memory and on disk, across a Discord outage and a restart. Any other failure
(missing access or permission, unknown channel, ...) marks the message's posts ``failed`` with Discord's error,
counts them, logs one line, and the sender goes on with the next posts.

With ``forward_to_frameworks``, each message a robot's post started is also pushed to the frameworks as a
GroupMessage (its text as shown on Discord, its Source the Discord message's id), from a member named after the
robot whose id is :func:`robot_member_id` (the bridge does not echo its own messages otherwise).
"""

from __future__ import annotations

import collections
import logging
import random
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, Final, TypeVar

import attrs
import trio

from adapters.robots import render
from adapters.robots.auth import verify_request
from adapters.robots.payloads import read_post
from adapters.robots.queue import FAILED, KEEP_FINISHED, SENT, Delivery, DeliveryQueue
from relay import envelope as env
from relay import fastjson
from relay.backoff import backoff_delay
from relay.config import BackoffConfig, RobotConfig
from relay.errors import CommandFailed, FailureKind, StoreError
from relay.ports import CommandService, EventSink
from relay.signatures import REPLAY_WINDOW, SignatureRejected
from relay.web.metrics import Metrics
from relay.web.models import Request, RequestRejected, Response, json_error
from relay.web.routing import Route

__all__ = ["RobotService", "robot_member_id", "robot_routes", "serve_robots"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: failures Discord may get over: retried with backoff; every other kind fails the posts
TRANSIENT: Final = frozenset({FailureKind.TIMEOUT, FailureKind.INTERNAL})
#: backoff between attempts of a message Discord could not take
RETRY_BACKOFF: Final = BackoffConfig(initial=1.0, factor=2.0, cap=60.0)
#: seconds between prunes of finished deliveries older than KEEP_FINISHED
PRUNE_INTERVAL: Final = 3600.0
#: the mirai member ids of robots start here (Discord user ids are far larger; see robot_member_id)
ROBOT_MEMBER_ID_BASE: Final = 1 << 32
PATH_PREFIX: Final = "/robots"


def robot_member_id(name: str) -> int:
    """The id of a robot as a group member of the frameworks: stable, per name, never a Discord user id
    (snowflakes of accounts made since 2015 are above 2^52)."""
    return ROBOT_MEMBER_ID_BASE + zlib.crc32(name.encode())


def _holding(lock: threading.Lock, fn: Callable[..., _T], *args: object) -> _T:
    with lock:
        return fn(*args)


@attrs.define(eq=False)
class _Batch:
    """Posts committed in one transaction; the handlers that added them wait for ``done``."""

    deliveries: list[Delivery] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)
    error: str = ""


@attrs.frozen
class _Piece:
    delivery: Delivery
    text: str = attrs.field(repr=False)
    last: bool  #: the delivery's last piece: when it is sent, the delivery is


@attrs.define(eq=False)
class _Channel:
    id: int
    pieces: collections.deque[_Piece] = attrs.Factory(collections.deque)
    wake: trio.Event = attrs.Factory(trio.Event)
    queued: int = 0  #: deliveries not finished


class RobotService:
    """Every ``[[robots]]``: the handlers (:func:`robot_routes`) and the senders (:func:`serve_robots`)."""

    def __init__(
        self,
        robots: Iterable[RobotConfig],
        *,
        queue: DeliveryQueue,
        service: CommandService,
        metrics: Metrics,
        write_lock: threading.Lock,
        events: EventSink | None = None,
        backoff: BackoffConfig = RETRY_BACKOFF,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.robots = {robot.name: robot for robot in robots}
        self.queue = queue
        self.service = service
        self.metrics = metrics
        self.write_lock = write_lock
        self.events = events
        self.backoff = backoff
        self.clock = clock
        self.rng = rng or random.Random()
        self._channels: dict[int, _Channel] = {}
        self._batch = _Batch()
        self._writer_wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._groups: dict[int, env.Group] = {}
        self._failures_logged: set[tuple[int, str]] = set()

    # ------------------------------------------------------------------ HTTP

    async def handle(self, request: Request) -> Response:
        """``POST /robots/<name>`` and ``GET /robots/<name>/deliveries/<id>`` (route the ``/robots`` prefix)."""
        parts = request.path[len(PATH_PREFIX) :].strip("/").split("/")
        robot = self.robots.get(parts[0])
        label = robot.name if robot is not None else ""
        try:
            if robot is None:
                raise RequestRejected(404, f"no robot named {parts[0]!r} on this bridge")
            if request.method == "POST" and len(parts) == 1:
                response = await self._accept(robot, request)
            elif request.method in ("GET", "HEAD") and len(parts) == 3 and parts[1] == "deliveries":
                response = self._status(robot, parts[2])
            else:
                allow = "POST" if len(parts) == 1 else "GET, HEAD"
                raise RequestRejected(405, f"{request.method} is not allowed here", headers=(("allow", allow),))
        except RequestRejected as exc:
            response = exc.response()
        except SignatureRejected as exc:
            response = json_error(exc.status, exc.reason)
        if request.method == "POST":
            self.metrics.robot_posts.labels(label, str(response.status)).inc()
        return response

    async def _accept(self, robot: RobotConfig, request: Request) -> Response:
        if len(request.body) > robot.max_body_bytes:
            raise RequestRejected(413, f"the body is larger than this robot's {robot.max_body_bytes} bytes")
        now = self.clock()
        msg_id = verify_request(robot, request, _json_fields(request.body), now=now)
        if msg_id is not None:
            repeat = self._pending_repeat(robot.name, msg_id) or self.queue.repeat_of(
                robot.name, msg_id, since=now - REPLAY_WINDOW
            )
            if repeat is not None:
                first = self.queue.get(repeat)
                return _accepted(robot, repeat, duplicate=True, status=first.status if first else "queued")
        post = read_post(request)
        delivery = Delivery(
            id="rd_" + secrets.token_urlsafe(16),
            robot=robot.name,
            channel=robot.group,
            msg_id=msg_id,
            text=render.render(robot.shown_name, post.text, post.username),
            created=now,
        )
        batch = self._batch
        batch.deliveries.append(delivery)
        self._writer_wake.set()
        await batch.done.wait()
        if batch.error:
            raise RequestRejected(503, f"the post could not be queued ({batch.error}); retry it")
        self._enqueue(delivery)
        return _accepted(robot, delivery.id, duplicate=False)

    def _pending_repeat(self, robot: str, msg_id: str) -> str | None:
        """A post with ``msg_id`` accepted a moment ago and not yet committed."""
        for delivery in self._batch.deliveries:
            if delivery.robot == robot and delivery.msg_id == msg_id:
                return delivery.id
        return None

    def _status(self, robot: RobotConfig, delivery_id: str) -> Response:
        delivery = self.queue.get(delivery_id)
        if delivery is None or delivery.robot != robot.name:
            raise RequestRejected(404, f"no delivery {delivery_id!r} for the robot {robot.name!r}")
        return Response.json(
            {
                "id": delivery.id,
                "robot": delivery.robot,
                "status": delivery.status,
                "error": delivery.error,
                "created": delivery.created,
                "updated": delivery.updated,
            }
        )

    # ------------------------------------------------------------------ background

    async def serve(self, *, task_status: trio.TaskStatus[RobotService] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for delivery in self.queue.queued():  # posts accepted before a restart or during an outage
                self._enqueue(delivery)
            nursery.start_soon(self._write_batches)
            nursery.start_soon(self._prune)
            if self.robots:
                log.info("robots: %d robot(s) post at %s/<name>", len(self.robots), PATH_PREFIX)
            task_status.started(self)

    async def _write_batches(self) -> None:
        while True:
            await self._writer_wake.wait()
            self._writer_wake = trio.Event()
            batch, self._batch = self._batch, _Batch()
            try:
                await trio.to_thread.run_sync(_holding, self.write_lock, self.queue.add, batch.deliveries)
            except StoreError as exc:
                log.error("robots: %s; %d posts answered 503", exc, len(batch.deliveries))
                batch.error = "the bridge's store failed"
            finally:
                batch.done.set()

    async def _prune(self) -> None:
        while True:
            try:
                await trio.to_thread.run_sync(_holding, self.write_lock, self.queue.prune, self.clock() - KEEP_FINISHED)
            except StoreError as exc:
                log.warning("robots: %s", exc)
            await trio.sleep(PRUNE_INTERVAL)

    def _enqueue(self, delivery: Delivery) -> None:
        channel = self._channels.get(delivery.channel)
        if channel is None:
            channel = self._channels[delivery.channel] = _Channel(delivery.channel)
            assert self._nursery is not None, "serve_robots must run before posts are accepted"
            self._nursery.start_soon(self._send_loop, channel)
        pieces = render.split(delivery.text)
        channel.pieces.extend(_Piece(delivery, piece, i == len(pieces) - 1) for i, piece in enumerate(pieces))
        channel.queued += 1
        self.metrics.robot_queue_depth.labels(str(channel.id)).set(channel.queued)
        channel.wake.set()

    async def _send_loop(self, channel: _Channel) -> None:
        attempt = 0
        conversation = env.ConversationRef.group(channel.id)
        while True:
            while not channel.pieces:
                await channel.wake.wait()
                channel.wake = trio.Event()
            head = list(islice(channel.pieces, 0, render.MAX_MESSAGE))
            message, taken = render.pack([piece.text for piece in head])
            try:
                result = await self.service.execute(
                    env.SendMessage(conversation=conversation, segments=(env.Text(message),))
                )
            except CommandFailed as failure:
                if failure.kind in TRANSIENT:
                    delay = backoff_delay(self.backoff, attempt, self.rng)
                    if attempt == 0:
                        log.warning(
                            "robots: channel %d: Discord did not take a message (%s); its posts stay queued, "
                            "retrying with backoff",
                            channel.id,
                            failure,
                        )
                    attempt += 1
                    await trio.sleep(delay)
                    continue
                attempt = 0
                await self._fail(channel, head[:taken], str(failure))
                continue
            if attempt:
                log.info("robots: channel %d: Discord takes messages again", channel.id)
            attempt = 0
            for _ in range(taken):
                channel.pieces.popleft()
            done = [piece.delivery for piece in head[:taken] if piece.last]
            await self._finish(channel, done, SENT, "")
            if isinstance(result, env.MessageSent):
                await self._forward(channel, head[:taken], message, result)

    async def _fail(self, channel: _Channel, sent: list[_Piece], error: str) -> None:
        """Mark the deliveries of ``sent`` failed, and drop their remaining pieces."""
        failed = {piece.delivery.id: piece.delivery for piece in sent}
        for _ in range(len(sent)):
            channel.pieces.popleft()
        channel.pieces = collections.deque(p for p in channel.pieces if p.delivery.id not in failed)
        robots = sorted({d.robot for d in failed.values()})
        log.warning(
            "robots: channel %d refused %d post(s) of %s: %s; marked failed (GET .../deliveries/<id> shows it)",
            channel.id,
            len(failed),
            ", ".join(robots),
            error,
        )
        await self._finish(channel, list(failed.values()), FAILED, error)

    async def _finish(self, channel: _Channel, deliveries: list[Delivery], status: str, error: str) -> None:
        if not deliveries:
            return
        ids = [d.id for d in deliveries]
        try:
            await trio.to_thread.run_sync(
                _holding, self.write_lock, self.queue.finish, ids, status, error, self.clock()
            )
        except StoreError as exc:
            log.error("robots: could not record %d deliveries as %s: %s", len(ids), status, exc)
        channel.queued -= len(deliveries)
        self.metrics.robot_queue_depth.labels(str(channel.id)).set(channel.queued)
        for delivery in deliveries:
            self.metrics.robot_deliveries.labels(delivery.robot, status).inc()

    async def _forward(self, channel: _Channel, pieces: list[_Piece], message: str, sent: env.MessageSent) -> None:
        if self.events is None:
            return
        robot = self.robots.get(pieces[0].delivery.robot)
        if robot is None or not robot.forward_to_frameworks:
            return
        if channel.id not in self._groups:
            await self._learn_groups()
        group = self._groups.get(channel.id) or env.Group(id=channel.id, name=str(channel.id), bot_role=env.Role.MEMBER)
        member = env.Member(
            user_id=robot_member_id(robot.name),
            display_name=robot.shown_name,
            role=env.Role.MEMBER,
            group=group,
            is_bot=True,
        )
        self.events.publish_nowait(
            env.MessageReceived(
                message=env.Message(
                    conversation=env.ConversationRef.group(channel.id),
                    channel_id=channel.id,
                    platform_id=sent.ref.platform_id or 0,
                    local_id=sent.ref.local_id or 0,
                    time=sent.time,
                    sender=member,
                    segments=(env.Text(message),),
                    group=group,
                )
            )
        )

    async def _learn_groups(self) -> None:
        """Look up the bridged groups (names and the bot's role, for forwarded GroupMessages)."""
        try:
            result = await self.service.execute(env.ListGroups())
        except CommandFailed as exc:
            log.debug("robots: could not list the groups: %s", exc)
            return
        if isinstance(result, env.GroupList):
            self._groups.update((group.id, group) for group in result.groups)


def _accepted(robot: RobotConfig, delivery_id: str, *, duplicate: bool, status: str = "queued") -> Response:
    body: dict[str, Any] = {
        "id": delivery_id,
        "status": status,
        "status_url": f"{PATH_PREFIX}/{robot.name}/deliveries/{delivery_id}",
    }
    if duplicate:
        body["duplicate"] = True  # the webhook-id was seen: nothing new is posted
    return Response.json(body, 202)


def _json_fields(body: bytes) -> dict[str, Any]:
    """The body's JSON object, if it is one (Feishu signs with fields of the body); else empty."""
    if not body.lstrip().startswith(b"{"):
        return {}
    try:
        value = fastjson.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def robot_routes(robots: RobotService) -> tuple[Route, ...]:
    """The routes to put on the ``[server]`` listener's router (``Router.include``)."""
    return (Route(("POST", "GET"), PATH_PREFIX, robots.handle, prefix=True),)


async def serve_robots(
    robots: RobotService, *, task_status: trio.TaskStatus[RobotService] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the robots' writer, senders and pruner until cancelled (start it before the listener serves)."""
    await robots.serve(task_status=task_status)
