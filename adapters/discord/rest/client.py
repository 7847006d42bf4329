"""Discord REST client: httpx on trio, driven by the pure rate limiter (docs/discord.md §8, §9).

``open_rest_client(config, token)`` owns one ``httpx.AsyncClient`` (connection reuse) and yields a
:class:`RestClient` with one typed method per endpoint the bridge uses. Every request:

- waits its turn in a FIFO queue per (route, major parameter) and asks :class:`RateLimiter` for a slot, so no
  request is sent that the last headers say would be rate limited; different buckets proceed in parallel;
- is bounded by ``config.request_timeout`` (the whole exchange, not per socket read);
- on 429 waits what Discord says and is sent again; on a non-JSON 429 every request stops (Cloudflare ban);
- on 5xx / network errors / timeouts is retried with capped exponential backoff up to ``config.max_retries``
  times (every endpoint here is safe to repeat: message creation carries ``nonce`` + ``enforce_nonce``);
- maps failures to :class:`relay.errors.HTTPError` with Discord's code, message and flattened field errors.

Messages to one channel are additionally sent one at a time, so they appear in the order they were asked for.
The token lives only in the per-request Authorization header: never in a repr, log line or exception.
The one answer parsed into a model rather than handed on as JSON, ``GET /gateway/bot``, is
:class:`GatewayBotInfo` (the shard sizes itself and paces identifies with it).
"""

from __future__ import annotations

import enum
import json
import logging
import random
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import httpx
import trio

from adapters.discord import USER_AGENT
from adapters.discord.media import MAX_FILES_PER_MESSAGE
from adapters.discord.rest.ratelimit import RateLimiter, Reservation
from adapters.discord.snowflakes import new_nonce, parse_snowflake, snowflake_time
from relay.config import DiscordConfig
from relay.errors import DiscordUnreachable, HTTPError, MediaUnreachable, PayloadTooLarge, RemoteProtocolError
from relay.logs import TRACE, shorten_payload
from relay.proxy import httpx_proxy_options
from relay.proxyurl import ProxySettings
from relay.wire.client import tls_failure_text

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]

#: docs/discord.md §8.1: X-Audit-Log-Reason is 1–512 characters.
MAX_AUDIT_LOG_REASON = 512
#: docs/discord.md §9: member list pages are at most 1000.
MEMBER_PAGE_LIMIT = 1000
#: GET /users/@me/guilds returns at most 200 guilds a page for bots (docs/discord.md §9)
GUILD_PAGE_LIMIT: Final = 200
#: docs/discord.md §9: history pages are 1–100 messages.
MESSAGE_PAGE_LIMIT = 100
#: docs/discord.md §8.4: retries back off exponentially from this base up to this cap (hikari uses 2 s / 16 s).
RETRY_BACKOFF_BASE = 0.5
RETRY_BACKOFF_CAP = 16.0
#: A request answered 429 this many times in a row (each wait obeyed) fails instead of looping forever.
MAX_RATE_LIMITED_RETRIES = 10
#: 5xx statuses worth another attempt (docs/discord.md §8.2: 502 gateway unavailable, §8.5: 500/502/504/524).
RETRYABLE_STATUSES: Final = frozenset({500, 502, 503, 504, 520, 522, 524})
#: Downloads are read in chunks of this size so an oversized body is refused before it is all in memory.
DOWNLOAD_CHUNK = 64 * 1024


@attrs.frozen(kw_only=True)
class SessionStartLimit:
    """``session_start_limit`` of ``GET /gateway/bot`` (docs/discord.md §2.1). ``reset_after`` is in seconds."""

    total: int
    remaining: int
    reset_after: float
    max_concurrency: int


def _require_int(obj: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RemoteProtocolError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class GatewayBotInfo:
    """What ``GET /gateway/bot`` says (docs/discord.md §2.1)."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit

    @classmethod
    def from_json(cls, obj: object) -> GatewayBotInfo:
        """Parse the JSON body; RemoteProtocolError names the first bad field."""
        if not isinstance(obj, Mapping):
            raise RemoteProtocolError(f"/gateway/bot: expected a JSON object, got {type(obj).__name__}")
        url = obj.get("url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise RemoteProtocolError(f"/gateway/bot: url must be a ws:// or wss:// URL, got {url!r}")
        shards = _require_int(obj, "shards", "/gateway/bot", minimum=1)
        limit = obj.get("session_start_limit")
        if not isinstance(limit, Mapping):
            raise RemoteProtocolError("/gateway/bot: session_start_limit must be an object")
        where = "/gateway/bot: session_start_limit"
        return cls(
            url=url,
            shards=shards,
            session_start_limit=SessionStartLimit(
                total=_require_int(limit, "total", where),
                remaining=_require_int(limit, "remaining", where),
                reset_after=_require_int(limit, "reset_after", where) / 1000.0,  # milliseconds on the wire
                max_concurrency=_require_int(limit, "max_concurrency", where, minimum=1),
            ),
        )


class MissingType(enum.Enum):
    """Type of :data:`MISSING`: "leave this field out of the request" (None means JSON null)."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = MissingType.MISSING


@attrs.frozen
class UploadFile:
    """A file to attach to a message (sent as ``files[n]`` of a multipart request, docs/discord.md §7.4)."""

    filename: str
    data: bytes = attrs.field(repr=False)
    content_type: str = "application/octet-stream"
    description: str = ""


@attrs.frozen(kw_only=True)
class RestStatistics:
    requests: int  #: HTTP requests sent (each attempt counts)
    retries: int  #: attempts after a 5xx, network error or timeout
    rate_limited_waits: int  #: times a request had to wait for a bucket or the global limit
    rate_limited_responses: int  #: 429s received
    invalid_requests_window: int  #: 401/403/429 in the last 10 minutes (Discord bans at 10,000)
    buckets: int  #: rate-limit buckets currently tracked
    cloudflare_banned: bool  #: REST is paused because of a non-JSON 429
    rate_limited_wait_seconds: float = 0.0  #: time requests spent waiting for a bucket or the global limit
    #: attempts by (route, outcome): the route as "METHOD /template" (never ids), the outcome an HTTP status
    #: ("200", "429", ...) or "error" (timed out, network error: no answer)
    by_route: Mapping[tuple[str, str], int] = attrs.field(factory=dict)


@attrs.frozen
class Route:
    """One endpoint call: method, path template (the rate-limit route) and the values of its placeholders."""

    method: str
    template: str
    params: Mapping[str, int | str] = attrs.field(factory=dict)
    #: splits a route into Discord's hidden sub-buckets (docs/discord.md §8.3: message deletes by message age)
    bucket_hint: str = ""

    @property
    def key(self) -> str:
        """The rate-limit route: method, template and any sub-bucket hint."""
        base = f"{self.method} {self.template}"
        return f"{base} [{self.bucket_hint}]" if self.bucket_hint else base

    @property
    def major(self) -> str:
        """docs/discord.md §8.3: top-level ids that split one route into independent buckets."""
        parts = [
            f"{name}={self.params[name]}" for name in ("channel_id", "guild_id", "webhook_id") if name in self.params
        ]
        if "webhook_token" in self.params:
            parts.append(f"webhook_token={self.params['webhook_token']}")
        return "+".join(parts) or "-"

    @property
    def path(self) -> str:
        return self.template.format_map({k: urllib.parse.quote(str(v), safe="") for k, v in self.params.items()})


@asynccontextmanager
async def open_rest_client(
    config: DiscordConfig,
    token: str,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    proxy: ProxySettings | None = None,
) -> AsyncIterator[RestClient]:
    """Open a REST client for ``token``; the HTTP connection pool closes when the block ends.

    ``proxy`` (chosen by :class:`relay.egress.DiscordEgress` for ``api_base_url``) carries every request and media
    download; None connects directly, whatever the environment says (the egress decision already read it).
    """
    if not token:
        raise HTTPError(401, 0, "no Discord bot token given; set DISCORD_TOKEN (or discord.token_env)")
    timeout = httpx.Timeout(config.request_timeout)
    # a test's in-memory transport replaces the network, proxy included
    routing: dict[str, Any] = dict(httpx_proxy_options(proxy)) if http_transport is None else {}
    async with httpx.AsyncClient(
        base_url=config.api_base_url.rstrip("/") + "/",
        headers={"User-Agent": USER_AGENT},
        timeout=timeout,
        transport=http_transport,
        follow_redirects=False,
        **routing,
    ) as http:
        log.info("Discord REST client ready for %s", config.api_base_url)
        try:
            yield RestClient(config, token, http)
        finally:
            log.info("Discord REST client closed")


class RestClient:
    """Typed Discord REST endpoints. Create with :func:`open_rest_client`."""

    def __init__(self, config: DiscordConfig, token: str, http: httpx.AsyncClient) -> None:
        self._config = config
        self.__auth = f"Bot {token}"  # name-mangled; never part of repr, logs or errors
        self._http = http
        self._trace = log.isEnabledFor(TRACE)  # request and response bodies at TRACE; read once
        self._limiter = RateLimiter(
            global_limit=config.global_rate_limit,
            max_wait=config.max_rate_limit_wait,
            invalid_warn=config.invalid_request_warn,
            invalid_refuse=config.invalid_request_refuse,
        )
        self._random = random.Random()
        # Woken (and replaced) whenever the limiter's state changes, so waiters re-check their bucket.
        self._limiter_changed = trio.Event()
        self._queues: dict[tuple[str, str], trio.Lock] = {}
        self._channel_send_locks: dict[int, trio.Lock] = {}
        self._dm_channels: dict[int, int] = {}
        self._requests = 0
        self._retries = 0
        self._rate_limited_waits = 0
        self._rate_limited_wait_seconds = 0.0
        self._by_route: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"<RestClient base_url={self._config.api_base_url!r}>"

    def statistics(self) -> RestStatistics:
        stats = self._limiter.statistics(trio.current_time())
        banned_until = stats.cloudflare_banned_until
        return RestStatistics(
            requests=self._requests,
            retries=self._retries,
            rate_limited_waits=self._rate_limited_waits,
            rate_limited_responses=stats.rate_limited_responses,
            invalid_requests_window=stats.invalid_requests_window,
            buckets=stats.buckets,
            cloudflare_banned=banned_until is not None and banned_until > trio.current_time(),
            rate_limited_wait_seconds=self._rate_limited_wait_seconds,
            by_route=dict(self._by_route),
        )

    def _count(self, route: Route, outcome: str) -> None:
        key = (f"{route.method} {route.template}", outcome)
        self._by_route[key] = self._by_route.get(key, 0) + 1

    # ------------------------------------------------------------------ the request engine

    async def request(
        self,
        route: Route,
        *,
        json_body: Any = None,
        query: Mapping[str, str | int] | None = None,
        files: Sequence[UploadFile] = (),
        reason: str | None = None,
    ) -> Any:
        """Send one logical request (with rate limiting and retries); returns decoded JSON or None (204)."""
        headers = {"Authorization": self.__auth}
        if reason:
            headers["X-Audit-Log-Reason"] = _audit_log_reason(reason)
        content: bytes | None = None
        multipart: list[tuple[str, tuple[str | None, bytes, str]]] | None = None
        if files:
            multipart = _multipart_parts(json_body, files, self._config.max_upload_bytes)
        elif json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        if self._trace:  # -vv: the bodies both ways, redacted by the log handler like every line
            if files:
                sent = f"<multipart: {len(files)} file(s)> {shorten_payload(json.dumps(json_body, ensure_ascii=False))}"
            else:
                sent = shorten_payload(content.decode()) if content is not None else ""
            log.log(TRACE, "Discord REST → %s %s %s", route.method, route.path, sent)
        attempt = 0
        rate_limited = 0
        outcome_unknown = False  # a previous attempt may have reached Discord without us seeing the answer
        while True:
            reservation = await self._acquire(route)
            try:
                self._requests += 1
                with trio.fail_after(self._config.request_timeout):
                    response = await self._http.request(
                        route.method,
                        route.path.lstrip("/"),
                        params=dict(query) if query else None,
                        headers=headers,
                        content=content,
                        files=multipart,
                    )
            except (httpx.TransportError, trio.TooSlowError) as exc:
                self._count(route, "error")
                self._limiter.abandon(reservation, trio.current_time())
                self._wake_waiters()
                tls = tls_failure(exc, self._http.base_url.host)
                if tls is not None:
                    # a certificate will not verify on the next attempt either: say so at once
                    raise DiscordUnreachable(route.method, route.template, tls, attempts=attempt + 1) from None
                reason_text = (
                    "timed out"
                    if isinstance(exc, (trio.TooSlowError, httpx.TimeoutException))
                    else (f"network error ({type(exc).__name__})")
                )
                if attempt >= self._config.max_retries:
                    raise DiscordUnreachable(route.method, route.template, reason_text, attempts=attempt + 1) from None
                outcome_unknown = True
                attempt += 1
                await self._backoff(route, attempt, reason_text)
                continue
            except BaseException:
                self._limiter.abandon(reservation, trio.current_time())
                self._wake_waiters()
                raise
            self._count(route, str(response.status_code))
            try:
                retry = self._limiter.update(
                    reservation,
                    response.status_code,
                    response.headers,
                    response.content,
                    trio.current_time(),
                )
            finally:
                self._wake_waiters()
            status = response.status_code
            if self._trace:
                log.log(
                    TRACE,
                    "Discord REST ← %d %s %s %s",
                    status,
                    route.method,
                    route.path,
                    shorten_payload(response.text),
                )
            if retry:
                rate_limited += 1
                if rate_limited > MAX_RATE_LIMITED_RETRIES:
                    raise HTTPError(
                        429,
                        0,
                        f"still rate limited after {MAX_RATE_LIMITED_RETRIES} waits; another client may be using "
                        "this token, or Discord applies a limit its headers do not show — retry later",
                        method=route.method,
                        route=route.template,
                    )
                continue
            if status in RETRYABLE_STATUSES:
                if attempt >= self._config.max_retries:
                    raise _http_error(response, route)
                attempt += 1
                outcome_unknown = True
                await self._backoff(route, attempt, f"HTTP {status}")
                continue
            if status == 404 and route.method == "DELETE" and outcome_unknown:
                # An earlier attempt whose answer we lost already deleted it: the goal is reached.
                return None
            if status >= 400:
                raise _http_error(response, route)
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise RemoteProtocolError(
                    f"{route.method} {route.template}: Discord answered HTTP {status} with a body that is not JSON",
                ) from None

    async def _acquire(self, route: Route) -> Reservation:
        """Wait, first in first out per (route, major), until the limiter grants a slot."""
        queue_key = (route.key, route.major)
        lock = self._queues.get(queue_key)
        if lock is None:
            lock = self._queues[queue_key] = trio.Lock()
        try:
            async with lock:
                waited_since: float | None = None
                while True:
                    now = trio.current_time()
                    reservation = self._limiter.reserve(route.key, route.major, now)
                    if reservation.granted:
                        if waited_since is not None:
                            self._rate_limited_waits += 1
                            self._rate_limited_wait_seconds += now - waited_since
                        return reservation
                    if waited_since is None:
                        waited_since = now
                    changed = self._limiter_changed
                    with trio.move_on_after(reservation.delay):
                        await changed.wait()
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._queues.pop(queue_key, None)

    def _wake_waiters(self) -> None:
        self._limiter_changed.set()
        self._limiter_changed = trio.Event()

    async def _backoff(self, route: Route, attempt: int, why: str) -> None:
        self._retries += 1
        ceiling = min(RETRY_BACKOFF_CAP, RETRY_BACKOFF_BASE * 2 ** (attempt - 1))
        delay = ceiling / 2 + self._random.uniform(0, ceiling / 2)
        log.warning(
            "%s %s: %s; retry %d of %d in %.2f s",
            route.method,
            route.template,
            why,
            attempt,
            self._config.max_retries,
            delay,
        )
        await trio.sleep(delay)

    # ------------------------------------------------------------------ gateway, users

    async def get_gateway_bot(self) -> GatewayBotInfo:
        data = await self.request(Route("GET", "/gateway/bot"))
        return GatewayBotInfo.from_json(_expect_object(data, "GET /gateway/bot"))

    async def get_current_user(self) -> JSONObject:
        return _expect_object(await self.request(Route("GET", "/users/@me")), "GET /users/@me")

    async def get_user(self, user_id: int) -> JSONObject:
        route = Route("GET", "/users/{user_id}", {"user_id": user_id})
        return _expect_object(await self.request(route), route.key)

    # ------------------------------------------------------------------ messages

    async def create_message(
        self,
        channel_id: int,
        payload: JSONObject,
        files: Sequence[UploadFile] = (),
    ) -> JSONObject:
        """POST a message. A nonce with ``enforce_nonce`` makes retries return the first message, not a copy."""
        route = Route("POST", "/channels/{channel_id}/messages", {"channel_id": channel_id})
        body = dict(payload)
        if "nonce" not in body:
            body["nonce"] = new_nonce()
        body.setdefault("enforce_nonce", True)  # without it a retried send could post twice
        if len(files) > MAX_FILES_PER_MESSAGE:
            raise PayloadTooLarge("the message's attachment count", len(files), MAX_FILES_PER_MESSAGE, unit="files")
        lock = self._channel_send_locks.get(channel_id)
        if lock is None:
            lock = self._channel_send_locks[channel_id] = trio.Lock()
        try:
            async with lock:  # one at a time per channel: messages keep the order they were asked for
                data = await self.request(route, json_body=body, files=files)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._channel_send_locks.pop(channel_id, None)
        return _expect_object(data, route.key)

    async def get_message(self, channel_id: int, message_id: int) -> JSONObject:
        route = Route(
            "GET",
            "/channels/{channel_id}/messages/{message_id}",
            {"channel_id": channel_id, "message_id": message_id},
        )
        return _expect_object(await self.request(route), route.key)

    async def delete_message(self, channel_id: int, message_id: int, *, reason: str | None = None) -> None:
        route = Route(
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}",
            {"channel_id": channel_id, "message_id": message_id},
            bucket_hint=_delete_age_class(message_id, time.time()),
        )
        await self.request(route, reason=reason)

    async def get_channel_messages(
        self,
        channel_id: int,
        *,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
    ) -> list[JSONObject]:
        """One page (newest first) of a channel's history; at most one of before/after/around."""
        anchors = {k: v for k, v in (("before", before), ("after", after), ("around", around)) if v is not None}
        if len(anchors) > 1:
            raise HTTPError(400, 0, "give at most one of before/after/around", method="GET", route="history")
        query: dict[str, str | int] = {"limit": max(1, min(MESSAGE_PAGE_LIMIT, limit))}
        query.update(anchors)
        route = Route("GET", "/channels/{channel_id}/messages", {"channel_id": channel_id})
        return _expect_list(await self.request(route, query=query), route.key)

    async def pin_message(self, channel_id: int, message_id: int, *, reason: str | None = None) -> None:
        route = Route(
            "PUT",
            "/channels/{channel_id}/messages/pins/{message_id}",
            {"channel_id": channel_id, "message_id": message_id},
        )
        await self.request(route, reason=reason)

    async def unpin_message(self, channel_id: int, message_id: int, *, reason: str | None = None) -> None:
        route = Route(
            "DELETE",
            "/channels/{channel_id}/messages/pins/{message_id}",
            {"channel_id": channel_id, "message_id": message_id},
        )
        await self.request(route, reason=reason)

    async def get_pins(self, channel_id: int, *, before: str | None = None, limit: int = 50) -> JSONObject:
        """``{"items": [{"pinned_at", "message"}], "has_more"}``; page with ``before`` = the last pinned_at."""
        query: dict[str, str | int] = {"limit": max(1, min(50, limit))}
        if before is not None:
            query["before"] = before
        route = Route("GET", "/channels/{channel_id}/messages/pins", {"channel_id": channel_id})
        return _expect_object(await self.request(route, query=query), route.key)

    # ------------------------------------------------------------------ DMs

    async def create_dm(self, user_id: int) -> JSONObject:
        """Open (or get the existing) DM channel with a user; the channel id is cached."""
        route = Route("POST", "/users/@me/channels")
        data = _expect_object(await self.request(route, json_body={"recipient_id": str(user_id)}), route.key)
        try:
            self._dm_channels[user_id] = int(data["id"])
        except (KeyError, TypeError, ValueError):
            raise RemoteProtocolError(f"{route.key}: Discord's DM channel has no usable id") from None
        return data

    async def dm_channel_id(self, user_id: int) -> int:
        cached = self._dm_channels.get(user_id)
        if cached is not None:
            return cached
        await self.create_dm(user_id)
        return self._dm_channels[user_id]

    def cached_dm_users(self) -> dict[int, int]:
        """User id → DM channel id for every DM channel opened (or learned) so far."""
        return dict(self._dm_channels)

    def remember_dm_channel(self, user_id: int, channel_id: int) -> None:
        """Record a DM channel learned elsewhere (e.g. a gateway MESSAGE_CREATE without guild_id)."""
        self._dm_channels[user_id] = channel_id

    # ------------------------------------------------------------------ channels

    async def get_channel(self, channel_id: int) -> JSONObject:
        route = Route("GET", "/channels/{channel_id}", {"channel_id": channel_id})
        return _expect_object(await self.request(route), route.key)

    async def modify_channel(
        self,
        channel_id: int,
        *,
        name: str | MissingType = MISSING,
        topic: str | MissingType | None = MISSING,
        reason: str | None = None,
    ) -> JSONObject:
        """PATCH a channel. Discord allows only 2 name/topic edits per 10 minutes per channel (docs/discord.md §9)."""
        body: JSONObject = {}
        if name is not MISSING:
            body["name"] = name
        if topic is not MISSING:
            body["topic"] = topic
        route = Route("PATCH", "/channels/{channel_id}", {"channel_id": channel_id})
        return _expect_object(await self.request(route, json_body=body, reason=reason), route.key)

    async def edit_channel_permissions(
        self,
        channel_id: int,
        overwrite_id: int,
        *,
        allow: int,
        deny: int,
        type: int,
        reason: str | None = None,
    ) -> None:
        """PUT replaces the whole overwrite: read the channel first and merge bits (docs/discord.md §9 mute all)."""
        route = Route(
            "PUT",
            "/channels/{channel_id}/permissions/{overwrite_id}",
            {"channel_id": channel_id, "overwrite_id": overwrite_id},
        )
        body = {"allow": str(allow), "deny": str(deny), "type": type}
        await self.request(route, json_body=body, reason=reason)

    async def delete_channel_permission(self, channel_id: int, overwrite_id: int, *, reason: str | None = None) -> None:
        route = Route(
            "DELETE",
            "/channels/{channel_id}/permissions/{overwrite_id}",
            {"channel_id": channel_id, "overwrite_id": overwrite_id},
        )
        await self.request(route, reason=reason)

    # ------------------------------------------------------------------ guilds

    async def get_guild(self, guild_id: int) -> JSONObject:
        route = Route("GET", "/guilds/{guild_id}", {"guild_id": guild_id})
        return _expect_object(await self.request(route), route.key)

    async def get_guild_channels(self, guild_id: int) -> list[JSONObject]:
        route = Route("GET", "/guilds/{guild_id}/channels", {"guild_id": guild_id})
        return _expect_list(await self.request(route), route.key)

    async def get_guild_roles(self, guild_id: int) -> list[JSONObject]:
        route = Route("GET", "/guilds/{guild_id}/roles", {"guild_id": guild_id})
        return _expect_list(await self.request(route), route.key)

    async def list_guild_members(self, guild_id: int, *, limit: int = 1000, after: int = 0) -> list[JSONObject]:
        """One page of members ordered by user id (Discord's default limit is 1: we always pass it)."""
        route = Route("GET", "/guilds/{guild_id}/members", {"guild_id": guild_id})
        query: dict[str, str | int] = {"limit": max(1, min(MEMBER_PAGE_LIMIT, limit)), "after": after}
        return _expect_list(await self.request(route, query=query), route.key)

    async def iter_all_guild_members(self, guild_id: int) -> list[JSONObject]:
        """Every member of a guild, paging with ``after`` = the highest user id seen (docs/discord.md §6.4).

        Entries are returned as Discord sent them, also those without a ``user`` (the caller reports them); a full
        page none of whose entries has a user id cannot be paged past, so the listing ends there."""
        members: list[JSONObject] = []
        after = 0
        while True:
            page = await self.list_guild_members(guild_id, limit=MEMBER_PAGE_LIMIT, after=after)
            members.extend(page)
            if len(page) < MEMBER_PAGE_LIMIT:
                return members
            ids = [parse_snowflake(m["user"].get("id")) for m in page if isinstance(m.get("user"), dict)]
            highest = max((i for i in ids if i is not None), default=None)
            if highest is None or highest <= after:
                log.warning(
                    "GET /guilds/%d/members: a full page without user ids; the member list ends after %d entries",
                    guild_id,
                    len(members),
                )
                return members
            after = highest

    async def iter_current_user_guilds(self) -> list[JSONObject]:
        """Every guild the bot is in (partial guild objects), paging with ``after`` (docs/discord.md §9: 200 a page)."""
        route = Route("GET", "/users/@me/guilds")
        guilds: list[JSONObject] = []
        after = 0
        while True:
            page = _expect_list(await self.request(route, query={"limit": GUILD_PAGE_LIMIT, "after": after}), route.key)
            guilds.extend(page)
            if len(page) < GUILD_PAGE_LIMIT:
                return guilds
            try:
                after = max(int(g["id"]) for g in page)
            except (KeyError, TypeError, ValueError):
                raise RemoteProtocolError("GET /users/@me/guilds: a guild without an id") from None

    async def get_guild_member(self, guild_id: int, user_id: int) -> JSONObject:
        route = Route("GET", "/guilds/{guild_id}/members/{user_id}", {"guild_id": guild_id, "user_id": user_id})
        return _expect_object(await self.request(route), route.key)

    async def modify_guild_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | MissingType | None = MISSING,
        communication_disabled_until: str | MissingType | None = MISSING,
        reason: str | None = None,
    ) -> JSONObject:
        """PATCH a member: nick (None clears) and/or timeout (ISO8601 ≤ 28 days ahead; None lifts it)."""
        body: JSONObject = {}
        if nick is not MISSING:
            body["nick"] = nick
        if communication_disabled_until is not MISSING:
            body["communication_disabled_until"] = communication_disabled_until
        route = Route("PATCH", "/guilds/{guild_id}/members/{user_id}", {"guild_id": guild_id, "user_id": user_id})
        data = await self.request(route, json_body=body, reason=reason)
        # Discord answers 200 with the member, or 204 when nothing changed.
        return _expect_object(data, route.key) if data is not None else {}

    async def add_guild_member_role(
        self,
        guild_id: int,
        user_id: int,
        role_id: int,
        *,
        reason: str | None = None,
    ) -> None:
        await self._member_role("PUT", guild_id, user_id, role_id, reason)

    async def remove_guild_member_role(
        self,
        guild_id: int,
        user_id: int,
        role_id: int,
        *,
        reason: str | None = None,
    ) -> None:
        await self._member_role("DELETE", guild_id, user_id, role_id, reason)

    async def _member_role(self, method: str, guild_id: int, user_id: int, role_id: int, reason: str | None) -> None:
        route = Route(
            method,
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            {"guild_id": guild_id, "user_id": user_id, "role_id": role_id},
        )
        await self.request(route, reason=reason)

    async def remove_guild_member(self, guild_id: int, user_id: int, *, reason: str | None = None) -> None:
        """Kick."""
        route = Route("DELETE", "/guilds/{guild_id}/members/{user_id}", {"guild_id": guild_id, "user_id": user_id})
        await self.request(route, reason=reason)

    async def create_guild_ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        delete_message_seconds: int = 0,
        reason: str | None = None,
    ) -> None:
        route = Route("PUT", "/guilds/{guild_id}/bans/{user_id}", {"guild_id": guild_id, "user_id": user_id})
        seconds = max(0, min(604_800, delete_message_seconds))  # docs/discord.md §9: 0–604800
        await self.request(route, json_body={"delete_message_seconds": seconds}, reason=reason)

    async def leave_guild(self, guild_id: int) -> None:
        await self.request(Route("DELETE", "/users/@me/guilds/{guild_id}", {"guild_id": guild_id}))

    # ------------------------------------------------------------------ media

    async def download(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """Fetch media by absolute URL: (bytes, content type). Never sends the bot token along.

        Refuses (PayloadTooLarge) as soon as the declared or received size exceeds ``max_bytes``; an error status
        is an HTTPError, no answer at all (network error, ``config.request_timeout``) a MediaUnreachable.
        """
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise HTTPError(400, 0, f"cannot download {url!r}: only absolute http(s) URLs are supported")
        try:
            return await self._download(url, parsed, max_bytes)
        except (httpx.RequestError, trio.TooSlowError) as exc:
            # translated like request() does, so a caller sees only the RelayError family
            timed_out = isinstance(exc, (trio.TooSlowError, httpx.TimeoutException))
            reason = "timed out" if timed_out else f"network error ({type(exc).__name__})"
            raise MediaUnreachable(f"{parsed.netloc}{parsed.path}", reason) from None

    async def _download(self, url: str, parsed: urllib.parse.SplitResult, max_bytes: int) -> tuple[bytes, str]:
        with trio.fail_after(self._config.request_timeout):
            async with self._http.stream("GET", url, headers={"Accept": "*/*"}, follow_redirects=True) as response:
                self._requests += 1
                if response.status_code >= 400:
                    raise HTTPError(
                        response.status_code,
                        0,
                        f"download of {parsed.netloc}{parsed.path} failed",
                        method="GET",
                    )
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise PayloadTooLarge(f"download {parsed.path or url}", int(declared), max_bytes)
                chunks: list[bytes] = []
                received = 0
                async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise PayloadTooLarge(f"download {parsed.path or url}", received, max_bytes)
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "application/octet-stream")
        return b"".join(chunks), content_type.split(";", 1)[0].strip()


# ---------------------------------------------------------------------- helpers


def tls_failure(exc: BaseException, host: str) -> str | None:
    """ "certificate verify failed for HOST: reason" (or "TLS handshake failed with HOST: ...") when a TLS error
    is behind an httpx error (httpx wraps it in ConnectError); None for any other failure. Also used by
    ``check --online``, so both say it the same way as the websocket client does."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):
            return tls_failure_text(cause, host)
        cause = cause.__cause__ or cause.__context__
    return None


#: docs/discord.md §8.3: deletes of messages younger than 10 s / older than 14 days have their own hidden buckets.
_YOUNG_MESSAGE_SECONDS = 10.0
_OLD_MESSAGE_SECONDS = 14 * 24 * 3600.0


def _delete_age_class(message_id: int, now_epoch: float) -> str:
    age = now_epoch - snowflake_time(message_id)
    if age < _YOUNG_MESSAGE_SECONDS:
        return "sub-10-seconds"
    if age > _OLD_MESSAGE_SECONDS:
        return "older-than-two-weeks"
    return ""


def _audit_log_reason(reason: str) -> str:
    """docs/discord.md §8.1: URL-encoded UTF-8, at most 512 characters (cut on the decoded text)."""
    return urllib.parse.quote(reason[:MAX_AUDIT_LOG_REASON], safe=" /")


def _multipart_parts(
    payload: Any,
    files: Sequence[UploadFile],
    max_upload_bytes: int,
) -> list[tuple[str, tuple[str | None, bytes, str]]]:
    """``payload_json`` + ``files[n]`` (docs/discord.md §7.4); httpx leaves the brackets unescaped."""
    if len(files) > MAX_FILES_PER_MESSAGE:
        raise PayloadTooLarge("the message's attachment count", len(files), MAX_FILES_PER_MESSAGE, unit="files")
    for upload in files:
        if len(upload.data) > max_upload_bytes:
            raise PayloadTooLarge(f"attachment {upload.filename!r}", len(upload.data), max_upload_bytes)
    total = sum(len(f.data) for f in files)
    if total > max_upload_bytes:
        raise PayloadTooLarge("the message's attachments together", total, max_upload_bytes)
    body = dict(payload) if isinstance(payload, Mapping) else {}
    attachments = list(body.get("attachments") or [])
    listed = {int(a["id"]) for a in attachments if isinstance(a, Mapping) and "id" in a}
    for index, upload in enumerate(files):
        if index not in listed:
            entry: JSONObject = {"id": index, "filename": upload.filename}
            if upload.description:
                entry["description"] = upload.description
            attachments.append(entry)
    body["attachments"] = attachments
    payload_json = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    parts: list[tuple[str, tuple[str | None, bytes, str]]] = [
        ("payload_json", (None, payload_json, "application/json")),
    ]
    for index, upload in enumerate(files):
        parts.append((f"files[{index}]", (upload.filename, upload.data, upload.content_type)))
    return parts


def flatten_field_errors(tree: Any, prefix: str = "") -> tuple[str, ...]:
    """Discord's 50035 ``errors`` tree → ``("content: Must be 2000 or fewer in length.", ...)`` (§8.2)."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            if key == "_errors" and isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping):
                        message = str(item.get("message") or item.get("code") or "invalid")
                        found.append(f"{path or '(body)'}: {message}")
            else:
                walk(value, f"{path}.{key}" if path else str(key))

    walk(tree, prefix)
    return tuple(found)


def _http_error(response: httpx.Response, route: Route) -> HTTPError:
    code = 0
    message = response.reason_phrase or "error"
    field_errors: tuple[str, ...] = ()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        raw_code = body.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
        if isinstance(body.get("message"), str):
            message = body["message"]
        field_errors = flatten_field_errors(body.get("errors"))
    return HTTPError(
        response.status_code,
        code,
        message,
        method=route.method,
        route=route.template,
        field_errors=field_errors,
    )


def _expect_object(data: Any, where: str) -> JSONObject:
    if not isinstance(data, dict):
        raise RemoteProtocolError(f"{where}: expected a JSON object from Discord, got {type(data).__name__}")
    return data


def _expect_list(data: Any, where: str) -> list[JSONObject]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise RemoteProtocolError(f"{where}: expected a JSON array of objects from Discord")
    return data
