"""The sandbox's chat page, served by the emulator on its own port: the page, its JSON API and its live updates.

Paths (all beside the emulated Discord's, which keeps ``/api/v10``, ``/attachments`` and the gateway at ``/``):

* ``GET /`` and ``GET /sandbox`` redirect to ``/sandbox/``, the page (``relay/sandbox/static/index.html`` with
  ``page.css`` and ``page.js`` under ``/sandbox/static/``: package data, read with :mod:`importlib.resources`
  so the zipapp serves them too). A Content-Security-Policy keeps the page to its own origin: it fetches
  nothing from the internet.
* ``GET /sandbox/api/state`` — the guild, channels, roles, members and the users who could join;
  ``GET /sandbox/api/requests`` — the side panel's latest entries;
  ``GET|POST /sandbox/api/channels/<id>/messages`` — the latest messages; post one as any member (JSON
  ``{author_id, content, reply_to}``, or multipart/form-data with those fields and image ``file`` parts);
  ``DELETE /sandbox/api/channels/<id>/messages/<id>?actor_id=<id>`` — delete a message as that member;
  ``POST /sandbox/api/members/<user id>/<join|leave|nick|timeout|kick>`` (JSON ``{actor_id, nick, minutes}``).
  Each change goes through the emulator's :class:`~relay.sandbox.emulator.actions.Actions`, so the bridge gets
  the gateway events (and audit log entries) real Discord sends for it.
* ``/sandbox/live`` — a websocket (``relay.wire``'s server side) pushing one JSON notice per change: ``dispatch``
  (the gateway event's name and channel: the page fetches what changed) and ``request`` (a side panel entry).
  A page that does not keep up (more than :data:`PAGE_BACKLOG` notices waiting) is disconnected with 4000; the
  script reconnects and reloads.

Page requests must name a loopback ``Host``, and changes and the websocket must come from the page's own origin
(:mod:`relay.sandbox.pageviews` says why).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import mimetypes
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import trio

from relay import fastjson
from relay.errors import FrameTooLarge, WebSocketClosed, WebSocketHandshakeFailed
from relay.sandbox import pageviews as views
from relay.sandbox.emulator import snowflakes as sf
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.errors import ApiError
from relay.sandbox.emulator.rest import RecordedRequest
from relay.sandbox.emulator.server import make_router
from relay.sandbox.emulator.world import JSON, Dispatch, Upload
from relay.web import bodies
from relay.web.models import Handler, Request, RequestRejected, Response
from relay.web.multipart import Part, parse_multipart
from relay.web.routing import Router
from relay.web.server import UpgradeHandler, WebSocketUpgrade
from relay.wire.server import UpgradeRequest

log = logging.getLogger(__name__)

PREFIX: Final = "/sandbox"
PAGE_PATH: Final = PREFIX + "/"
API: Final = PREFIX + "/api"
LIVE_PATH: Final = PREFIX + "/live"
STATIC: Final = PREFIX + "/static/"
#: the page's files (relay/sandbox/static/) and their types
STATIC_FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
}
#: notices waiting for one page before it is disconnected (it reconnects and reloads)
PAGE_BACKLOG: Final = 512
#: side panel entries kept for a page that opens (the latest)
PANEL_KEPT: Final = 300
#: a page sends nothing on its websocket; anything larger than this closes it
LIVE_MAX_MESSAGE: Final = 4096
#: files in one message from the page (Discord's limit is 10)
MAX_FILES: Final = 10
#: seconds a page's websocket gets to close when the sandbox stops
CLOSE_GRACE: Final = 1.0
#: close code for a page that fell behind (the script reloads)
CLOSE_BEHIND: Final = 4000
#: what the page's own JSON endpoints say after a change
OK: Final = {"ok": True}


class LiveFeed:
    """Notices for the open pages (see the module docstring) and the side panel's latest entries."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pages: set[trio.MemorySendChannel[str]] = set()
        self.entries: deque[JSON] = deque(maxlen=PANEL_KEPT)
        self._seq = 0

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[str]]:
        """A channel of notices (JSON text) for one page, until the block ends or the page falls behind."""
        send, receive = trio.open_memory_channel[str](PAGE_BACKLOG)
        self._pages.add(send)
        try:
            yield receive
        finally:
            self._pages.discard(send)
            send.close()

    @property
    def pages(self) -> int:
        return len(self._pages)

    def publish(self, notice: JSON) -> None:
        text = fastjson.dumps(notice).decode()
        for page in list(self._pages):
            try:
                page.send_nowait(text)
            except trio.WouldBlock:  # a page that does not read: it gets disconnected, and reloads
                self._pages.discard(page)
                page.close()

    def on_dispatch(self, dispatch: Dispatch) -> None:
        """A world listener: every gateway event the emulated Discord produced."""
        channel_id = dispatch.data.get("channel_id")
        self.publish({"type": "dispatch", "name": dispatch.name, "channel_id": channel_id})

    def on_request(self, record: RecordedRequest, response: Response | None) -> None:
        """An emulator request listener: the bridge's REST calls go to the side panel."""
        if not views.is_bridge_request(record):
            return
        self._seq += 1
        entry = views.request_entry(self._seq, record, response, wall_time=self._clock())
        self.entries.append(entry)
        self.publish({"type": "request", "entry": entry})


def _static_file(name: str) -> bytes:
    return (importlib.resources.files("relay.sandbox") / "static" / name).read_bytes()


class ChatPage:
    """The page over one emulator: its routes beside the emulator's, and its live websocket."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.world = emulator.world
        self.actions = emulator.actions
        self.feed = LiveFeed(clock=emulator.wall_time)
        self.world.listeners.append(self.feed.on_dispatch)
        emulator.request_listeners.append(self.feed.on_request)
        self._files = {name: _static_file(name) for name in STATIC_FILES}

    # ------------------------------------------------------------------ wiring

    def router(self) -> Router:
        """The emulator's routes plus the page's (pass to ``serve_emulator(router=...)``)."""
        router = make_router(self.emulator)
        router.add("GET", "/", self._guard(_redirect_to_page))
        router.add("GET", PREFIX, self._guard(_redirect_to_page))
        router.add("GET", PAGE_PATH, self._guard(self._page))
        for name in STATIC_FILES:
            router.add("GET", STATIC + name, self._guard(self._static))
        router.add("GET", API + "/state", self._guard(self._state))
        router.add("GET", API + "/requests", self._guard(self._requests))
        router.add_prefix(("GET", "POST", "DELETE"), API + "/channels", self._guard(self._channels, changes=True))
        router.add_prefix("POST", API + "/members", self._guard(self._members, changes=True))
        return router

    def upgrades(self) -> dict[str, UpgradeHandler]:
        """The page's websocket (pass to ``serve_emulator(upgrades=...)``)."""
        return {LIVE_PATH: self.serve_live}

    def _guard(self, handler: Handler, *, changes: bool = False) -> Handler:
        """Loopback ``Host`` always; the page's own origin for requests that change something."""

        async def guarded(request: Request) -> Response:
            host = request.header("host")
            problem = views.host_problem(host)
            if problem is None and (changes and request.method != "GET"):
                problem = views.origin_problem(request.header("origin"), host)
            if problem is not None:
                raise RequestRejected(403, problem)
            try:
                return await handler(request)
            except ApiError as error:  # an unknown channel, message or member: Discord's answer, in the page's form
                raise RequestRejected(error.status, error.message) from None

        return guarded

    # ------------------------------------------------------------------ the page

    async def _page(self, request: Request) -> Response:
        host = request.header("host") or ""
        policy = (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            f"connect-src 'self' ws://{host}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return Response(
            200,
            (
                ("content-type", STATIC_FILES["index.html"]),
                ("content-security-policy", policy),
                ("cache-control", "no-cache"),
                ("x-content-type-options", "nosniff"),
            ),
            self._files["index.html"],
        )

    async def _static(self, request: Request) -> Response:
        name = request.path.removeprefix(STATIC)
        headers = (
            ("content-type", STATIC_FILES[name]),
            ("cache-control", "no-cache"),
            ("x-content-type-options", "nosniff"),
        )
        return Response(200, headers, self._files[name])

    async def _state(self, request: Request) -> Response:
        return Response.json(views.state_view(self.world))

    async def _requests(self, request: Request) -> Response:
        return Response.json(list(self.feed.entries))

    # ------------------------------------------------------------------ messages

    async def _channels(self, request: Request) -> Response:
        parts = request.path.removeprefix(API + "/channels/").split("/")
        match request.method, parts:
            case "GET", [channel, "messages"] if channel.isdigit():
                return Response.json(views.messages_view(self.world, int(channel)))
            case "POST", [channel, "messages"] if channel.isdigit():
                return self._post_message(request, int(channel))
            case "DELETE", [channel, "messages", message] if channel.isdigit() and message.isdigit():
                actor = views.int_field({"actor_id": request.query_value("actor_id")}, "actor_id")
                self.actions.delete_message(int(channel), int(message), actor_id=actor)
                return Response.json(OK)
        raise RequestRejected(404, f"no {request.method} {request.path} in the sandbox's page API")

    def _post_message(self, request: Request, channel_id: int) -> Response:
        uploads: list[Upload] = []
        if bodies.media_type(request) == "multipart/form-data":
            form = parse_multipart(request, max_parts=MAX_FILES + 3)
            fields: dict[str, Any] = {p.name: p.text() for p in form if p.filename is None}
            uploads = [_upload(p) for p in form if p.filename is not None]
            if len(uploads) > MAX_FILES:
                raise RequestRejected(413, f"at most {MAX_FILES} files in one message")
        else:
            fields = bodies.json_object(request)
        author = views.int_field(fields, "author_id")
        content = views.text_field(fields, "content", limit=views.MAX_CONTENT)
        reply_to = views.optional_int(fields, "reply_to")
        channel = self.world.channel(channel_id)
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        views.check_can_post(self.world, guild_id, author, self.emulator.wall_time())
        if not content.strip() and not uploads:
            raise RequestRejected(422, "an empty message cannot be sent")
        if reply_to is not None and reply_to not in self.world.messages[channel_id]:
            raise RequestRejected(404, "the message replied to was deleted")
        message = self.actions.post_message(channel_id, content, author_id=author, reply_to=reply_to, uploads=uploads)
        return Response.json({"id": message["id"]}, 201)

    # ------------------------------------------------------------------ members

    async def _members(self, request: Request) -> Response:
        parts = request.path.removeprefix(API + "/members/").split("/")
        if len(parts) != 2 or not parts[0].isdigit():
            raise RequestRejected(404, f"no {request.method} {request.path} in the sandbox's page API")
        user_id, what = int(parts[0]), parts[1]
        body = bodies.json_object(request) if request.body else {}
        guild_id = views.page_guild(self.world)
        action = self._member_actions().get(what)
        if action is None:
            raise RequestRejected(404, f"members can join, leave, nick, timeout or kick; not {what!r}")
        if user_id == self.world.bot_user_id and what != "nick":
            raise RequestRejected(422, "the bridge's own bot stays in the sandbox (its nickname can change)")
        self.world.user(user_id)
        action(guild_id, user_id, body)
        return Response.json(OK)

    def _member_actions(self) -> dict[str, Callable[[int, int, dict[str, Any]], None]]:
        return {
            "join": self._join,
            "leave": self._leave,
            "nick": self._nick,
            "timeout": self._timeout,
            "kick": self._kick,
        }

    def _join(self, guild_id: int, user_id: int, body: dict[str, Any]) -> None:
        if (guild_id, user_id) in self.world.members:
            raise RequestRejected(409, f"{views.display_name(self.world, guild_id, user_id)} is a member already")
        self.actions.member_join(guild_id, user_id)

    def _leave(self, guild_id: int, user_id: int, body: dict[str, Any]) -> None:
        self.actions.member_leave(guild_id, user_id)

    def _nick(self, guild_id: int, user_id: int, body: dict[str, Any]) -> None:
        nick = views.text_field(body, "nick", limit=views.MAX_NICK).strip()
        self.actions.update_member(guild_id, user_id, nick=nick or None, actor_id=_actor(body, user_id))

    def _timeout(self, guild_id: int, user_id: int, body: dict[str, Any]) -> None:
        minutes = views.int_field(body, "minutes")
        if minutes > views.MAX_TIMEOUT_MINUTES:
            raise RequestRejected(422, f"a timeout lasts at most {views.MAX_TIMEOUT_MINUTES} minutes (28 days)")
        until = sf.iso(self.emulator.wall_time() + minutes * 60) if minutes else None
        self.actions.update_member(guild_id, user_id, communication_disabled_until=until, actor_id=_actor(body))

    def _kick(self, guild_id: int, user_id: int, body: dict[str, Any]) -> None:
        self.actions.kick(guild_id, user_id, actor_id=_actor(body))

    # ------------------------------------------------------------------ live updates

    async def serve_live(self, upgrade: WebSocketUpgrade) -> None:
        """One page's websocket: notices until the page leaves, falls behind, or the sandbox stops."""
        client = upgrade.request.client
        peer = f"page at {client[0]}:{client[1]}" if client else "a page"
        request = UpgradeRequest(
            upgrade.stream,
            target=upgrade.request.target,
            headers=upgrade.request.headers,
            trailing=upgrade.trailing,
            peer=peer,
        )
        host = upgrade.request.header("host")
        problem = views.host_problem(host) or views.origin_problem(upgrade.request.header("origin"), host)
        if problem is not None:
            log.warning("%s: refused the page's websocket: %s", peer, problem)
            await request.reject(403, problem.encode())
            return
        if not request.valid:
            await request.reject(400, request.problem.encode())
            return
        try:
            ws = await request.accept(max_message_size=LIVE_MAX_MESSAGE)
        except WebSocketHandshakeFailed as exc:
            log.debug("%s: %s", peer, exc)
            return
        code = 1001  # going away: the sandbox stops
        try:
            with self.feed.subscribe() as notices:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_closed, ws.get_message, nursery.cancel_scope)
                    if await _forward(notices, ws.send_messages):
                        code = CLOSE_BEHIND
                        log.info("%s fell behind the updates; disconnected (it reloads)", peer)
                    nursery.cancel_scope.cancel()
        finally:
            if ws.is_open:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                    await ws.aclose(code, "behind: reload" if code == CLOSE_BEHIND else "the sandbox stops")


async def _forward(notices: trio.MemoryReceiveChannel[str], send: Callable[[list[str]], Awaitable[None]]) -> bool:
    """Send the notices as they come, everything waiting in one write. True when the feed let go of the page
    (it fell behind), False when the page went away."""
    async for first in notices:
        batch = [first]
        while True:
            try:
                batch.append(notices.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        try:
            await send(batch)
        except WebSocketClosed:
            return False
    return True


async def _until_closed(receive: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    """Read (and ignore) what the page sends until it closes; then end the connection's tasks."""
    try:
        while True:
            await receive()
    except (WebSocketClosed, FrameTooLarge):
        pass
    finally:
        scope.cancel()


async def _redirect_to_page(request: Request) -> Response:
    return Response(303, (("location", PAGE_PATH),))


def _actor(body: dict[str, Any], default: int | None = None) -> int | None:
    """Who does it (the member picked on the page); None: the bot, as for a change the bridge made."""
    actor = views.optional_int(body, "actor_id")
    return default if actor is None else actor


def _upload(part: Part) -> Upload:
    filename = part.filename or "upload"
    kind = part.content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Upload(filename=filename, data=part.data, content_type=kind)
