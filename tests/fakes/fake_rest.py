"""A fake Discord REST API (v10) on 127.0.0.1 that behaves like the real one where the bridge can tell.

It speaks real HTTP/1.1 (h11 over trio TCP, keep-alive), sends real rate-limit headers and 429s, and holds a
small in-memory Discord (users, guilds, roles, channels, members, messages, pins, bans, DM channels) so every
endpoint of :class:`adapters.discord.rest.client.RestClient` answers with Discord's shapes and error codes.

Use::

    fake = FakeDiscordRest(token="test-token")
    fake.add_guild(GUILD, "Guild", owner_id=OWNER)
    fake.add_channel(CHANNEL, "general", guild_id=GUILD)
    port = await nursery.start(fake.serve)
    config = DiscordConfig(api_base_url=fake.base_url, ...)

``application_flags`` (the privileged intents enabled for the application, read by ``GET /applications/@me``)
and ``guild_permissions_field`` shape what ``check --online`` sees.
Knobs (all documented on the methods): ``set_bucket`` (per-route limits, shared bucket hashes),
``global_limit``, ``inject`` (500s, 429s of any scope, Cloudflare HTML 429s, slow answers, dropped
connections, Discord JSON errors), ``forbid`` (50013 on a route), ``close_dms`` (50007).
Everything received is in ``requests`` (``RecordedRequest``: method, path, route, headers, JSON or multipart
body, ``trio.current_time()`` of arrival, status answered). ``limit_violations`` counts 429s the server had to
produce from its own limits (a correct client keeps it at 0).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import h11
import trio

JSON = dict[str, Any]

#: docs/discord.md §10: snowflake timestamps count from 2015-01-01T00:00:00Z.
DISCORD_EPOCH_MS = 1_420_070_400_000
#: trio time 0 of the fake maps to this wall-clock time (2026-09-21), so ids and timestamps look real.
FAKE_EPOCH = 1_790_000_000.0
#: Bot user id of the fake (a plausible snowflake).
DEFAULT_BOT_ID = 1_100_000_000_000_000_001
#: Largest request body the fake accepts (the real limit for bots is 25 MiB per request, docs/discord.md §7.3).
MAX_BODY = 32 * 1024 * 1024
#: docs/discord.md §7.3 limits the fake enforces.
MAX_CONTENT = 2000
MAX_NONCE = 25
MAX_FILES = 10
MAX_PINS = 250
MAX_TIMEOUT_DAYS = 28
#: A typical @everyone permission set (docs/discord.md §9.2): add reactions, view channel, send messages, embed
#: links, attach files, read history, external emojis, change nickname, send in threads.
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 18) | (1 << 26) | (1 << 38)
)
#: application flags (Discord's application object): a privileged intent is enabled when either of its two bits
#: is set (``_LIMITED``: the Developer Portal toggle of an unverified app)
GATEWAY_PRESENCE_LIMITED = 1 << 13
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
ALL_PRIVILEGED_INTENT_FLAGS = GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED | GATEWAY_MESSAGE_CONTENT_LIMITED
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 64) - 1


# ---------------------------------------------------------------------- public records and knobs


@attrs.frozen
class MultipartPart:
    name: str  #: the raw field name as sent (``files[0]``: brackets must not be percent-escaped)
    filename: str | None
    content_type: str | None
    data: bytes = attrs.field(repr=False)


@attrs.define
class RecordedRequest:
    method: str
    path: str  #: without the /api/v10 prefix and query
    query: dict[str, str]
    headers: dict[str, str]  #: lower-cased names; the last value wins
    body: bytes = attrs.field(repr=False)
    json: Any  #: decoded JSON body, or the decoded ``payload_json`` of a multipart body
    parts: tuple[MultipartPart, ...]  #: multipart parts in order (empty otherwise)
    time: float  #: trio.current_time() when the request was complete
    route: str = ""  #: "METHOD /template" matched, "" when none
    status: int = 0  #: status answered (0: none, e.g. a dropped connection)


@attrs.frozen
class Fail:
    """Answer with a Discord JSON error (default: 500) instead of handling the request."""

    status: int = 500
    code: int = 0
    message: str = "500: Internal Server Error"


@attrs.frozen
class RateLimit:
    """Answer 429 with ``retry_after`` (scope ``user``/``shared``/``global``); the bucket/global then blocks."""

    retry_after: float
    scope: str = "user"


@attrs.frozen
class CloudflareBan:
    """Answer like Cloudflare's edge: an HTML page, no Discord headers (docs/discord.md §8.3)."""

    status: int = 429
    retry_after: int | None = None


@attrs.frozen
class Slow:
    """Handle the request (state changes happen) but answer only after ``delay`` seconds."""

    delay: float


@attrs.frozen
class Drop:
    """Close the connection without answering; ``after_handling`` decides whether the request took effect."""

    after_handling: bool = False


Failure = Fail | RateLimit | CloudflareBan | Slow | Drop


@attrs.define
class _BucketSpec:
    limit: int
    per: float
    bucket_hash: str


@attrs.define
class _BucketState:
    used: int = 0
    reset_at: float = 0.0


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = list(headers)


def _error(status: int, code: int, message: str, errors: JSON | None = None) -> _Reply:
    body: JSON = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return _Reply(status, body)


def _field_error(path: str, code: str, message: str) -> _Reply:
    """50035 with Discord's nested ``errors`` tree (docs/discord.md §8.2); ``path`` like ``embeds.0.title``."""
    tree: JSON = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        tree = {key: tree}
    return _error(400, 50035, "Invalid Form Body", tree)


# ---------------------------------------------------------------------- the fake


class FakeDiscordRest:
    """See the module docstring. All seeding helpers return the stored JSON object (mutable, live)."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        bot_user_id: int = DEFAULT_BOT_ID,
        bot_username: str = "relay-bot",
        gateway_url: str = "wss://gateway.discord.gg",
        global_limit: int | None = 50,
        default_limit: int = 50,
        default_per: float = 1.0,
        epoch: float | None = FAKE_EPOCH,
        application_id: int | None = None,
        application_flags: int = ALL_PRIVILEGED_INTENT_FLAGS,
    ) -> None:
        #: wall-clock seconds at trio time 0: FAKE_EPOCH by default (virtual-time tests), or None to follow the
        #: real clock (a bridge process running on wall time compares timestamps with it, e.g. mute limits)
        self.epoch = epoch
        self.token = token
        self.bot_user_id = bot_user_id
        self.gateway_url = gateway_url
        #: GET /applications/@me: the application's id (default: the bot user's, as for apps made since 2020) and
        #: its flags (which privileged intents the Developer Portal has enabled)
        self.application_id = bot_user_id if application_id is None else application_id
        self.application_flags = application_flags
        #: GET /users/@me/guilds includes each guild's ``permissions`` (as Discord does); False leaves it out
        self.guild_permissions_field = True
        #: requests per second per bot; None disables the global limit
        self.global_limit = global_limit
        self.default_limit = default_limit
        self.default_per = default_per
        self.port = 0
        self.requests: list[RecordedRequest] = []
        #: 429s the server produced from its own limits (not injected ones)
        self.limit_violations = 0

        self.users: dict[int, JSON] = {}
        self.guilds: dict[int, JSON] = {}
        self.channels: dict[int, JSON] = {}
        self.members: dict[tuple[int, int], JSON] = {}
        self.messages: dict[int, dict[int, JSON]] = {}  #: channel id → message id → message (insertion order)
        self.pins: dict[int, list[tuple[str, int]]] = {}  #: channel id → [(pinned_at, message id)]
        self.bans: dict[int, set[int]] = {}
        self.dm_channels: dict[int, int] = {}  #: user id → DM channel id
        self.files: dict[str, tuple[bytes, str]] = {}  #: path → (bytes, content type) served by GET
        #: (guild, user) pairs whose entry member lists show without its ``user`` (a deviant server): REST listings,
        #: and through DiscordWorld the GUILD_CREATE and op 8 chunks
        self.members_listed_without_user: set[tuple[int, int]] = set()
        self._closed_dms: set[int] = set()
        self._nonces: dict[tuple[int, str], int] = {}
        self._forbidden: set[tuple[str, int | None]] = set()
        self._failures: dict[str, deque[Failure]] = {}
        self._buckets: dict[str, _BucketSpec] = {}
        self._bucket_state: dict[tuple[str, str], _BucketState] = {}
        self._global_times: deque[float] = deque()
        self._global_blocked_until = 0.0
        self._id_counter = 0
        self.add_user(bot_user_id, bot_username, bot=True)
        self._routes = _build_routes(self)

    # ------------------------------------------------------------------ serving

    @property
    def base_url(self) -> str:
        """Use as ``DiscordConfig.api_base_url`` (only valid once ``serve`` has started)."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (a free port) and serve forever; ``task_status.started(port)`` once listening."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                received = await self._receive_request(conn, stream)
                if received is None:
                    return
                request, body = received
                status, headers, payload, delay, drop = await self._handle(request, body)
                if delay:
                    await trio.sleep(delay)
                if drop:
                    return
                headers = [*headers, ("content-length", str(len(payload)))]
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                await stream.send_all((conn.send(h11.Data(data=payload)) if payload else b"") or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    @staticmethod
    async def _receive_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)  # b"" signals EOF
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, b"".join(chunks)

    # ------------------------------------------------------------------ knobs

    def set_bucket(self, route: str, *, limit: int, per: float, bucket_hash: str | None = None) -> None:
        """Give ``route`` ("POST /channels/{channel_id}/messages") ``limit`` requests per ``per`` seconds per
        major parameter. Routes given the same ``bucket_hash`` share one limit (per major), like Discord."""
        self._check_route(route)
        self._buckets[route] = _BucketSpec(limit, per, bucket_hash or _default_hash(route))

    def inject(self, route: str, *failures: Failure) -> None:
        """Make the next requests on ``route`` (or ``"*"``: any route) fail, in order, one failure each."""
        if route != "*":
            self._check_route(route)
        self._failures.setdefault(route, deque()).extend(failures)

    def forbid(self, route: str, major: int | None = None) -> None:
        """Answer 403 50013 Missing Permissions on ``route`` (only for channel/guild ``major`` if given)."""
        self._check_route(route)
        self._forbidden.add((route, major))

    def allow(self, route: str, major: int | None = None) -> None:
        self._forbidden.discard((route, major))

    def close_dms(self, user_id: int) -> None:
        """The user blocks DMs from the bot: sends to their DM channel answer 403 50007."""
        self._closed_dms.add(user_id)

    def requests_to(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    def _check_route(self, route: str) -> None:
        if not any(r.key == route for r in self._routes):
            raise KeyError(f"the fake has no route {route!r}")

    # ------------------------------------------------------------------ seeding

    def wall_time(self) -> float:
        """The fake Discord's idea of "now" in epoch seconds."""
        if self.epoch is None:
            return time.time()
        return self.epoch + _current_time()

    def now_iso(self) -> str:
        return _iso(self.wall_time())

    def new_id(self) -> int:
        """A fresh snowflake for the current (fake) time; strictly increasing."""
        self._id_counter += 1
        ms = int(self.wall_time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (self._id_counter & 0x3FFFFF)

    def add_user(self, user_id: int, username: str, *, global_name: str | None = None, bot: bool = False) -> JSON:
        user: JSON = {
            "id": str(user_id),
            "username": username,
            "discriminator": "0",
            "global_name": global_name,
            "avatar": None,
        }
        if bot:
            user["bot"] = True
        self.users[user_id] = user
        return user

    def add_guild(
        self,
        guild_id: int,
        name: str,
        *,
        owner_id: int,
        system_channel_id: int | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
    ) -> JSON:
        """A guild with its @everyone role (id == guild id); the bot joins it as a member."""
        if owner_id not in self.users:
            self.add_user(owner_id, f"owner{owner_id % 10000}")
        guild: JSON = {
            "id": str(guild_id),
            "name": name,
            "icon": None,
            "owner_id": str(owner_id),
            "system_channel_id": None if system_channel_id is None else str(system_channel_id),
            "roles": [],
            "features": [],
            "emojis": [],
        }
        self.guilds[guild_id] = guild
        self.add_role(guild_id, guild_id, "@everyone", permissions=everyone_permissions, position=0)
        self.bans[guild_id] = set()
        self.add_member(guild_id, self.bot_user_id)
        if (guild_id, owner_id) not in self.members:
            self.add_member(guild_id, owner_id)
        return guild

    def add_role(self, guild_id: int, role_id: int, name: str, *, permissions: int = 0, position: int = 1) -> JSON:
        role: JSON = {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        self.guilds[guild_id]["roles"].append(role)
        return role

    def add_channel(
        self,
        channel_id: int,
        name: str,
        *,
        guild_id: int,
        type: int = 0,
        topic: str | None = None,
        permission_overwrites: Iterable[JSON] = (),
        parent_id: int | None = None,
    ) -> JSON:
        channel: JSON = {
            "id": str(channel_id),
            "type": type,
            "guild_id": str(guild_id),
            "name": name,
            "position": len([c for c in self.channels.values() if c.get("guild_id") == str(guild_id)]),
            "permission_overwrites": [dict(o) for o in permission_overwrites],
            "topic": topic,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None if parent_id is None else str(parent_id),
            "flags": 0,
        }
        self.channels[channel_id] = channel
        self.messages[channel_id] = {}
        self.pins[channel_id] = []
        guild = self.guilds[guild_id]
        if guild["system_channel_id"] is None and type == 0:
            guild["system_channel_id"] = str(channel_id)
        return channel

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | None = None,
        roles: Iterable[int] = (),
        joined_at: str | None = None,
        communication_disabled_until: str | None = None,
        username: str | None = None,
    ) -> JSON:
        if user_id not in self.users:
            self.add_user(user_id, username or f"user{user_id % 100000}")
        member: JSON = {
            "user": self.users[user_id],
            "nick": nick,
            "avatar": None,
            "roles": [str(r) for r in roles],
            "joined_at": joined_at or self.now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": communication_disabled_until,
        }
        self.members[(guild_id, user_id)] = member
        return member

    def add_dm_channel(self, user_id: int, channel_id: int | None = None) -> JSON:
        channel_id = channel_id or self.new_id()
        channel: JSON = {
            "id": str(channel_id),
            "type": 1,
            "last_message_id": None,
            "recipients": [self.users[user_id]],
            "flags": 0,
        }
        self.channels[channel_id] = channel
        self.messages[channel_id] = {}
        self.pins[channel_id] = []
        self.dm_channels[user_id] = channel_id
        return channel

    def add_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int | None = None,
        message_id: int | None = None,
        reply_to: int | None = None,
        attachments: Iterable[JSON] = (),
    ) -> JSON:
        """Store a message as if someone sent it (author defaults to the bot)."""
        author = self.users[author_id if author_id is not None else self.bot_user_id]
        channel = self.channels[channel_id]
        message: JSON = {
            "id": str(message_id or self.new_id()),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": self.now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": list(attachments),
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if "guild_id" in channel:
            message["guild_id"] = channel["guild_id"]
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reply_to),
                "channel_id": str(channel_id),
                **({"guild_id": channel["guild_id"]} if "guild_id" in channel else {}),
            }
            message["referenced_message"] = self.messages[channel_id].get(reply_to)
        self.messages[channel_id][int(message["id"])] = message
        channel["last_message_id"] = message["id"]
        return message

    def add_file(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at ``path`` (e.g. ``/cdn/a.png``, no auth); returns the absolute URL."""
        if not path.startswith("/"):
            path = "/" + path
        self.files[path] = (data, content_type)
        return self.origin + path

    # ------------------------------------------------------------------ request handling

    async def _handle(self, request: h11.Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes, float, bool]:
        """→ (status, headers, body, delay before answering, drop the connection)."""
        now = trio.current_time()
        target = request.target.decode("latin-1")
        raw_path, _, raw_query = target.partition("?")
        path = urllib.parse.unquote(raw_path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        query = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        decoded, parts = _decode_body(headers.get("content-type", ""), body)
        record = RecordedRequest(
            method=request.method.decode(),
            path=path.removeprefix("/api/v10"),
            query=query,
            headers=headers,
            body=body,
            json=decoded,
            parts=parts,
            time=now,
        )
        self.requests.append(record)

        if record.method == "GET" and path in self.files:  # CDN-like file, no auth
            data, content_type = self.files[path]
            record.status = 200
            return 200, [("content-type", content_type)], data, 0.0, False

        try:
            if not path.startswith("/api/v10/"):
                raise _error(404, 0, "404: Not Found")
            match = self._match(record.method, record.path)
            if match is None:
                raise _error(404, 0, "404: Not Found")
            route, params = match
            record.route = route.key
            major = _major(params)
            failure = self._next_failure(route.key)
            delay = 0.0
            if isinstance(failure, CloudflareBan):
                extra = [("retry-after", str(failure.retry_after))] if failure.retry_after else []
                page = b"<html><body><h1>Error 1015</h1><p>You are being rate limited.</p></body></html>"
                record.status = failure.status
                return failure.status, [("content-type", "text/html"), *extra], page, 0.0, False
            if headers.get("authorization") != f"Bot {self.token}":
                raise _error(401, 0, "401: Unauthorized")
            if isinstance(failure, RateLimit):
                raise self._rate_limit_reply(route.key, major, failure, now)
            self._check_global(now)
            limit_headers = self._take_bucket(route.key, major, now)
            if isinstance(failure, Fail):
                raise _Reply(failure.status, {"message": failure.message, "code": failure.code}, limit_headers)
            if isinstance(failure, Drop) and not failure.after_handling:
                return 0, [], b"", 0.0, True
            if (route.key, None) in self._forbidden or (route.key, _major_id(params)) in self._forbidden:
                raise _Reply(403, {"message": "Missing Permissions", "code": 50013}, limit_headers)
            try:
                status, result = route.handler(params, record)
            except _Reply as reply:
                reply.headers.extend(limit_headers)
                raise
            if isinstance(failure, Drop):
                return 0, [], b"", 0.0, True
            if isinstance(failure, Slow):
                delay = failure.delay
            record.status = status
            payload = b"" if result is None else json.dumps(result).encode()
            out_headers = [*limit_headers]
            if result is not None:
                out_headers.append(("content-type", "application/json"))
            return status, out_headers, payload, delay, False
        except _Reply as reply:
            record.status = reply.status
            payload = json.dumps(reply.body).encode()
            return reply.status, [("content-type", "application/json"), *reply.headers], payload, 0.0, False

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        for route in self._routes:
            if route.method != method:
                continue
            found = route.pattern.fullmatch(path)
            if found:
                return route, found.groupdict()
        return None

    def _next_failure(self, route_key: str) -> Failure | None:
        for key in (route_key, "*"):
            queue = self._failures.get(key)
            if queue:
                return queue.popleft()
        return None

    def _spec(self, route_key: str) -> _BucketSpec:
        spec = self._buckets.get(route_key)
        if spec is None:
            spec = self._buckets[route_key] = _BucketSpec(
                self.default_limit, self.default_per, _default_hash(route_key)
            )
        return spec

    def _check_global(self, now: float) -> None:
        if now < self._global_blocked_until:
            self.limit_violations += 1
            raise self._global_429(self._global_blocked_until - now)
        if self.global_limit is None:
            return
        times = self._global_times
        while times and times[0] <= now - 1.0:
            times.popleft()
        if len(times) >= self.global_limit:
            self.limit_violations += 1
            raise self._global_429(times[0] + 1.0 - now)
        times.append(now)

    @staticmethod
    def _global_429(retry_after: float) -> _Reply:
        return _Reply(
            429,
            {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": True},
            [
                ("x-ratelimit-global", "true"),
                ("x-ratelimit-scope", "global"),
                ("retry-after", str(math.ceil(retry_after))),
            ],
        )

    def _take_bucket(self, route_key: str, major: str, now: float) -> list[tuple[str, str]]:
        spec = self._spec(route_key)
        state = self._bucket_state.setdefault((spec.bucket_hash, major), _BucketState())
        if now >= state.reset_at:
            state.used = 0
            state.reset_at = now + spec.per
        if state.used >= spec.limit:
            self.limit_violations += 1
            retry_after = state.reset_at - now
            raise _Reply(
                429,
                {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": False},
                [
                    *self._limit_headers(spec, state, now),
                    ("x-ratelimit-scope", "user"),
                    ("retry-after", str(math.ceil(retry_after))),
                ],
            )
        state.used += 1
        return self._limit_headers(spec, state, now)

    @staticmethod
    def _limit_headers(spec: _BucketSpec, state: _BucketState, now: float) -> list[tuple[str, str]]:
        reset_after = max(0.0, state.reset_at - now)
        return [
            ("x-ratelimit-limit", str(spec.limit)),
            ("x-ratelimit-remaining", str(max(0, spec.limit - state.used))),
            ("x-ratelimit-reset", f"{FAKE_EPOCH + state.reset_at:.3f}"),
            ("x-ratelimit-reset-after", f"{reset_after:.3f}"),
            ("x-ratelimit-bucket", spec.bucket_hash),
        ]

    def _rate_limit_reply(self, route_key: str, major: str, failure: RateLimit, now: float) -> _Reply:
        body = {"message": "You are being rate limited.", "retry_after": failure.retry_after, "global": False}
        headers = [("x-ratelimit-scope", failure.scope), ("retry-after", str(math.ceil(failure.retry_after)))]
        if failure.scope == "global":
            body["global"] = True
            headers.append(("x-ratelimit-global", "true"))
            self._global_blocked_until = now + failure.retry_after
        else:
            spec = self._spec(route_key)
            state = self._bucket_state.setdefault((spec.bucket_hash, major), _BucketState())
            state.reset_at = max(state.reset_at, now + failure.retry_after)
            state.used = spec.limit
            headers.extend(self._limit_headers(spec, state, now))
        return _Reply(429, body, headers)

    # ------------------------------------------------------------------ lookups

    def _channel(self, channel_id: str) -> JSON:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise _error(404, 10003, "Unknown Channel")
        return channel

    def _guild(self, guild_id: str) -> JSON:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise _error(404, 10004, "Unknown Guild")
        return guild

    def _member(self, guild_id: str, user_id: str) -> JSON:
        self._guild(guild_id)
        member = self.members.get((int(guild_id), int(user_id)))
        if member is None:
            raise _error(404, 10007, "Unknown Member")
        return member

    def _message(self, channel_id: str, message_id: str) -> JSON:
        self._channel(channel_id)
        message = self.messages[int(channel_id)].get(int(message_id))
        if message is None:
            raise _error(404, 10008, "Unknown Message")
        return message

    def _role(self, guild: JSON, role_id: str) -> JSON:
        for role in guild["roles"]:
            if role["id"] == role_id:
                return dict(role)
        raise _error(404, 10011, "Unknown Role")

    # ------------------------------------------------------------------ endpoints

    def ep_gateway_bot(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1},
        }

    def ep_current_user(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, self.users[self.bot_user_id]

    def ep_current_application(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": self.users[self.bot_user_id]["username"],
            "bot": self.users[self.bot_user_id],
            "flags": self.application_flags,
        }

    def bot_permissions(self, guild_id: int) -> int:
        """The bot's guild-level permissions (docs/discord.md §9.2): owner → all; @everyone | its roles; admin → all."""
        guild = self.guilds[guild_id]
        if guild["owner_id"] == str(self.bot_user_id):
            return ALL_PERMISSIONS
        member_roles = set(self.members[(guild_id, self.bot_user_id)]["roles"]) | {str(guild_id)}
        perms = 0
        for role in guild["roles"]:
            if role["id"] in member_roles:
                perms |= int(role["permissions"])
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def ep_current_user_guilds(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        limit = int(r.query.get("limit", "200"))
        after = int(r.query.get("after", "0"))
        ids = sorted(g for g in self.guilds if g > after and (g, self.bot_user_id) in self.members)[:limit]
        guilds = []
        for g in ids:
            entry: JSON = {
                "id": str(g),
                "name": self.guilds[g]["name"],
                "icon": None,
                "owner": self.guilds[g]["owner_id"] == str(self.bot_user_id),
                "features": [],
            }
            if self.guild_permissions_field:
                perms = self.bot_permissions(g)
                entry["permissions"] = str(perms if perms != ALL_PERMISSIONS else (1 << 53) - 1)
            guilds.append(entry)
        return 200, guilds

    def ep_user(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        user = self.users.get(int(p["user_id"]))
        if user is None:
            raise _error(404, 10013, "Unknown User")
        return 200, user

    def ep_create_message(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        channel_id = int(p["channel_id"])
        body = r.json if isinstance(r.json, dict) else None
        if body is None:
            raise _error(
                400,
                50035,
                "Invalid Form Body",
                {"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Only dictionaries may be used"}]},
            )
        if channel["type"] in (2, 4, 13):
            raise _error(400, 50008, "Cannot send messages in a non-text channel")
        if channel["type"] in (15, 16):
            raise _error(400, 40058, "Cannot send messages in a forum channel")
        if channel["type"] == 1 and int(channel["recipients"][0]["id"]) in self._closed_dms:
            raise _error(403, 50007, "Cannot send messages to this user")
        files = [part for part in r.parts if part.name.startswith("files[")]
        if len(files) > MAX_FILES:
            raise _error(400, 30015, "Maximum number of attachments in a message reached (10)")
        nonce = body.get("nonce")
        if nonce is not None:
            if len(str(nonce)) > MAX_NONCE:
                raise _field_error("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            if body.get("enforce_nonce") and (channel_id, str(nonce)) in self._nonces:
                existing = self.messages[channel_id].get(self._nonces[(channel_id, str(nonce))])
                if existing is not None:
                    return 200, existing
        content = body.get("content") or ""
        if not isinstance(content, str):
            raise _field_error("content", "BASE_TYPE_STRING", "Could not interpret content as string.")
        if len(content) > MAX_CONTENT:
            raise _field_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if not content and not embeds and not files and not body.get("sticker_ids"):
            raise _error(400, 50006, "Cannot send an empty message")
        reply_to: int | None = None
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            target = int(reference["message_id"])
            if target in self.messages[channel_id]:
                reply_to = target
            elif reference.get("fail_if_not_exists", True):
                raise _field_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        attachments = self._store_attachments(channel_id, body.get("attachments") or [], files)
        message = self.add_message(channel_id, content, reply_to=reply_to, attachments=attachments)
        message["embeds"] = embeds
        self._resolve_mentions(message, body.get("allowed_mentions"))
        if nonce is not None:
            message["nonce"] = nonce
            if body.get("enforce_nonce"):
                self._nonces[(channel_id, str(nonce))] = int(message["id"])
        return 200, message

    def _resolve_mentions(self, message: JSON, allowed: Any) -> None:
        """Like Discord: ``mentions`` lists users named as ``<@id>`` in the content; ``mention_everyone`` is set
        only when ``allowed_mentions`` (default: parse everything) permits it (docs/discord.md §7.2)."""
        parse = ["users", "roles", "everyone"]
        explicit_users: list[str] = []
        if isinstance(allowed, dict):
            parse = list(allowed.get("parse") or [])
            explicit_users = [str(u) for u in allowed.get("users") or []]
        content = message["content"]
        mentioned = []
        for user_id in dict.fromkeys(re.findall(r"<@!?([0-9]+)>", content)):
            if int(user_id) in self.users and ("users" in parse or user_id in explicit_users):
                mentioned.append(self.users[int(user_id)])
        message["mentions"] = mentioned
        message["mention_roles"] = [r for r in dict.fromkeys(re.findall(r"<@&([0-9]+)>", content)) if "roles" in parse]
        message["mention_everyone"] = "everyone" in parse and ("@everyone" in content or "@here" in content)

    def _store_attachments(self, channel_id: int, listed: list[Any], files: list[MultipartPart]) -> list[JSON]:
        by_id = {str(a.get("id")): a for a in listed if isinstance(a, dict)}
        stored = []
        for part in files:
            index = part.name[len("files[") : -1]
            meta = by_id.get(index, {})
            attachment_id = self.new_id()
            filename = str(meta.get("filename") or part.filename or f"file{index}")
            url = self.add_file(
                f"/attachments/{channel_id}/{attachment_id}/{urllib.parse.quote(filename)}",
                part.data,
                part.content_type or "application/octet-stream",
            )
            attachment: JSON = {
                "id": str(attachment_id),
                "filename": filename,
                "size": len(part.data),
                "url": url,
                "proxy_url": url,
                "content_type": part.content_type or "application/octet-stream",
            }
            if meta.get("description"):
                attachment["description"] = meta["description"]
            stored.append(attachment)
        return stored

    def ep_get_message(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, self._message(p["channel_id"], p["message_id"])

    def ep_delete_message(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        message = self._message(p["channel_id"], p["message_id"])
        del self.messages[int(p["channel_id"])][int(message["id"])]
        self.pins[int(p["channel_id"])] = [x for x in self.pins[int(p["channel_id"])] if x[1] != int(message["id"])]
        return 204, None

    def ep_channel_messages(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        self._channel(p["channel_id"])
        try:
            limit = int(r.query.get("limit", "50"))
        except ValueError:
            raise _field_error("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        if not 1 <= limit <= 100:
            raise _field_error("limit", "NUMBER_TYPE_MAX", "int value should be <= 100 and >= 1.")
        ids = sorted(self.messages[int(p["channel_id"])])
        if "before" in r.query:
            ids = [i for i in ids if i < int(r.query["before"])][-limit:]
        elif "after" in r.query:
            ids = [i for i in ids if i > int(r.query["after"])][:limit]
        elif "around" in r.query:
            center = int(r.query["around"])
            older = [i for i in ids if i <= center][-(limit - limit // 2) :]
            newer = [i for i in ids if i > center][: limit // 2]
            ids = older + newer
        else:
            ids = ids[-limit:]
        return 200, [self.messages[int(p["channel_id"])][i] for i in reversed(ids)]

    def ep_create_dm(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        body = r.json if isinstance(r.json, dict) else {}
        try:
            user_id = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise _field_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required") from None
        if user_id not in self.users:
            raise _error(404, 10013, "Unknown User")
        existing = self.dm_channels.get(user_id)
        if existing is not None:
            return 200, self.channels[existing]
        return 200, self.add_dm_channel(user_id)

    def ep_get_channel(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, self._channel(p["channel_id"])

    def ep_modify_channel(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        body = r.json if isinstance(r.json, dict) else {}
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not 1 <= len(name) <= 100:
                raise _field_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            channel["name"] = name
        if "topic" in body:
            topic = body["topic"]
            if topic is not None and (not isinstance(topic, str) or len(topic) > 1024):
                raise _field_error("topic", "BASE_TYPE_MAX_LENGTH", "Must be 1024 or fewer in length.")
            channel["topic"] = topic
        return 200, channel

    def ep_put_overwrite(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        body = r.json if isinstance(r.json, dict) else {}
        if body.get("type") not in (0, 1):
            raise _field_error("type", "BASE_TYPE_CHOICES", "Value must be one of {0, 1}.")
        overwrite = {
            "id": p["overwrite_id"],
            "type": body["type"],
            "allow": str(body.get("allow", "0")),
            "deny": str(body.get("deny", "0")),
        }
        others = [o for o in channel["permission_overwrites"] if o["id"] != p["overwrite_id"]]
        channel["permission_overwrites"] = [*others, overwrite]
        return 204, None

    def ep_delete_overwrite(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        channel["permission_overwrites"] = [o for o in channel["permission_overwrites"] if o["id"] != p["overwrite_id"]]
        return 204, None

    def ep_get_guild(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, self._guild(p["guild_id"])

    def ep_guild_channels(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        self._guild(p["guild_id"])
        return 200, [
            c for c in self.channels.values() if c.get("guild_id") == p["guild_id"] and c["type"] not in (10, 11, 12)
        ]

    def ep_guild_roles(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, self._guild(p["guild_id"])["roles"]

    def ep_list_members(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        self._guild(p["guild_id"])
        limit = int(r.query.get("limit", "1"))  # docs/discord.md §6.4: the default really is 1
        if not 1 <= limit <= 1000:
            raise _field_error("limit", "NUMBER_TYPE_MAX", "int value should be <= 1000 and >= 1.")
        after = int(r.query.get("after", "0"))
        guild_id = int(p["guild_id"])
        ids = sorted(u for (g, u) in self.members if g == guild_id and u > after)[:limit]
        return 200, [self.listed_member(guild_id, u) for u in ids]

    def listed_member(self, guild_id: int, user_id: int) -> JSON:
        """A member as a list shows it (REST listing, GUILD_CREATE, op 8 chunks): without ``user`` for the pairs of
        :attr:`members_listed_without_user` (a deviant server)."""
        member = dict(self.members[(guild_id, user_id)])
        if (guild_id, user_id) in self.members_listed_without_user:
            del member["user"]
        return member

    def ep_get_member(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        return 200, self._member(p["guild_id"], p["user_id"])

    def ep_modify_member(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        member = self._member(p["guild_id"], p["user_id"])
        body = r.json if isinstance(r.json, dict) else {}
        if "nick" in body:
            nick = body["nick"]
            if nick is not None and (not isinstance(nick, str) or len(nick) > 32):
                raise _field_error("nick", "BASE_TYPE_MAX_LENGTH", "Must be 32 or fewer in length.")
            member["nick"] = nick or None
        if "communication_disabled_until" in body:
            until = body["communication_disabled_until"]
            if until is not None:
                try:
                    when = dt.datetime.fromisoformat(str(until))
                except ValueError:
                    raise _field_error(
                        "communication_disabled_until", "DATE_TIME_TYPE_PARSE", "Could not parse the date."
                    ) from None
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                limit = dt.datetime.fromtimestamp(self.wall_time(), dt.UTC) + dt.timedelta(days=MAX_TIMEOUT_DAYS)
                if when > limit:
                    raise _field_error(
                        "communication_disabled_until",
                        "COMMUNICATION_DISABLED_TIMESTAMP_TOO_FAR",
                        "Timeout cannot be more than 28 days in the future.",
                    )
            member["communication_disabled_until"] = until
        if not body:
            return 204, None
        return 200, member

    def ep_add_member_role(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        member = self._member(p["guild_id"], p["user_id"])
        self._role(self.guilds[int(p["guild_id"])], p["role_id"])
        if p["role_id"] not in member["roles"]:
            member["roles"].append(p["role_id"])
        return 204, None

    def ep_remove_member_role(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        member = self._member(p["guild_id"], p["user_id"])
        self._role(self.guilds[int(p["guild_id"])], p["role_id"])
        member["roles"] = [x for x in member["roles"] if x != p["role_id"]]
        return 204, None

    def ep_kick(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        self._member(p["guild_id"], p["user_id"])
        del self.members[(int(p["guild_id"]), int(p["user_id"]))]
        return 204, None

    def ep_ban(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        self._guild(p["guild_id"])
        user_id = int(p["user_id"])
        if user_id not in self.users:
            raise _error(404, 10013, "Unknown User")
        body = r.json if isinstance(r.json, dict) else {}
        seconds = body.get("delete_message_seconds", 0)
        if not isinstance(seconds, int) or not 0 <= seconds <= 604_800:
            raise _field_error("delete_message_seconds", "NUMBER_TYPE_MAX", "int value should be <= 604800.")
        self.bans[int(p["guild_id"])].add(user_id)
        self.members.pop((int(p["guild_id"]), user_id), None)
        return 204, None

    def ep_leave_guild(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        guild_id = int(p["guild_id"])
        self._guild(p["guild_id"])
        del self.guilds[guild_id]
        for key in [k for k in self.members if k[0] == guild_id]:
            del self.members[key]
        for channel_id in [c for c, ch in self.channels.items() if ch.get("guild_id") == str(guild_id)]:
            del self.channels[channel_id]
        return 204, None

    def ep_pin(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        message = self._message(p["channel_id"], p["message_id"])
        pins = self.pins[int(p["channel_id"])]
        if not message["pinned"]:
            if len(pins) >= MAX_PINS:
                raise _error(400, 30003, "Maximum number of pins reached (250)")
            pins.append((self.now_iso(), int(message["id"])))
            message["pinned"] = True
        return 204, None

    def ep_unpin(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        message = self._message(p["channel_id"], p["message_id"])
        channel_id = int(p["channel_id"])
        self.pins[channel_id] = [x for x in self.pins[channel_id] if x[1] != int(message["id"])]
        message["pinned"] = False
        return 204, None

    def ep_get_pins(self, p: dict[str, str], r: RecordedRequest) -> tuple[int, Any]:
        self._channel(p["channel_id"])
        limit = int(r.query.get("limit", "50"))
        if not 1 <= limit <= 50:
            raise _field_error("limit", "NUMBER_TYPE_MAX", "int value should be <= 50 and >= 1.")
        pins = list(reversed(self.pins[int(p["channel_id"])]))  # newest pin first
        before = r.query.get("before")
        if before:
            pins = [x for x in pins if x[0] < before]
        page = pins[:limit]
        items = [{"pinned_at": at, "message": self.messages[int(p["channel_id"])][mid]} for at, mid in page]
        return 200, {"items": items, "has_more": len(pins) > limit}


# ---------------------------------------------------------------------- routing table


@attrs.frozen
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Callable[[dict[str, str], RecordedRequest], tuple[int, Any]]

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _build_routes(fake: FakeDiscordRest) -> list[_Route]:
    table = [
        ("GET", "/gateway/bot", fake.ep_gateway_bot),
        ("GET", "/users/@me", fake.ep_current_user),
        ("GET", "/applications/@me", fake.ep_current_application),
        ("POST", "/users/@me/channels", fake.ep_create_dm),
        ("GET", "/users/@me/guilds", fake.ep_current_user_guilds),
        ("DELETE", "/users/@me/guilds/{guild_id}", fake.ep_leave_guild),
        ("GET", "/users/{user_id}", fake.ep_user),
        ("GET", "/channels/{channel_id}/messages/pins", fake.ep_get_pins),
        ("PUT", "/channels/{channel_id}/messages/pins/{message_id}", fake.ep_pin),
        ("DELETE", "/channels/{channel_id}/messages/pins/{message_id}", fake.ep_unpin),
        ("POST", "/channels/{channel_id}/messages", fake.ep_create_message),
        ("GET", "/channels/{channel_id}/messages", fake.ep_channel_messages),
        ("GET", "/channels/{channel_id}/messages/{message_id}", fake.ep_get_message),
        ("DELETE", "/channels/{channel_id}/messages/{message_id}", fake.ep_delete_message),
        ("GET", "/channels/{channel_id}", fake.ep_get_channel),
        ("PATCH", "/channels/{channel_id}", fake.ep_modify_channel),
        ("PUT", "/channels/{channel_id}/permissions/{overwrite_id}", fake.ep_put_overwrite),
        ("DELETE", "/channels/{channel_id}/permissions/{overwrite_id}", fake.ep_delete_overwrite),
        ("GET", "/guilds/{guild_id}", fake.ep_get_guild),
        ("GET", "/guilds/{guild_id}/channels", fake.ep_guild_channels),
        ("GET", "/guilds/{guild_id}/roles", fake.ep_guild_roles),
        ("GET", "/guilds/{guild_id}/members", fake.ep_list_members),
        ("GET", "/guilds/{guild_id}/members/{user_id}", fake.ep_get_member),
        ("PATCH", "/guilds/{guild_id}/members/{user_id}", fake.ep_modify_member),
        ("DELETE", "/guilds/{guild_id}/members/{user_id}", fake.ep_kick),
        ("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", fake.ep_add_member_role),
        ("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", fake.ep_remove_member_role),
        ("PUT", "/guilds/{guild_id}/bans/{user_id}", fake.ep_ban),
    ]
    routes = []
    for method, template, handler in table:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[0-9]+)", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        routes.append(_Route(method, template, re.compile(regex), handler))
    return routes


def _major(params: dict[str, str]) -> str:
    for name in ("channel_id", "guild_id", "webhook_id"):
        if name in params:
            return f"{name}={params[name]}"
    return "-"


def _major_id(params: dict[str, str]) -> int | None:
    for name in ("channel_id", "guild_id"):
        if name in params:
            return int(params[name])
    return None


def _default_hash(route_key: str) -> str:
    """Discord's bucket hashes are opaque hex strings; derive a stable one per route."""
    return hashlib.sha1(route_key.encode()).hexdigest()[:32]


def _iso(epoch_seconds: float) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).isoformat(timespec="microseconds")


def _current_time() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # seeding before trio runs
        return 0.0


def _decode_body(content_type: str, body: bytes) -> tuple[Any, tuple[MultipartPart, ...]]:
    if content_type.startswith("multipart/form-data"):
        boundary_match = re.search(r'boundary="?([^";]+)"?', content_type)
        if boundary_match is None:
            return None, ()
        parts = _parse_multipart(body, boundary_match.group(1).encode())
        payload = next((p for p in parts if p.name == "payload_json"), None)
        decoded = None
        if payload is not None:
            try:
                decoded = json.loads(payload.data)
            except ValueError:
                decoded = None
        return decoded, parts
    if body and content_type.startswith("application/json"):
        try:
            return json.loads(body), ()
        except ValueError:
            return None, ()
    return None, ()


def _parse_multipart(body: bytes, boundary: bytes) -> tuple[MultipartPart, ...]:
    """A strict-enough multipart/form-data reader (RFC 7578) that keeps field names exactly as sent."""
    parts = []
    for section in body.split(b"--" + boundary)[1:]:
        if section.startswith(b"--"):
            break
        trimmed = section.removeprefix(b"\r\n").removesuffix(b"\r\n")
        raw_headers, _, data = trimmed.partition(b"\r\n\r\n")
        headers = {}
        for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', disposition))
        parts.append(
            MultipartPart(
                name=params.get("name", ""),
                filename=params.get("filename"),
                content_type=headers.get("content-type"),
                data=data,
            )
        )
    return tuple(parts)
