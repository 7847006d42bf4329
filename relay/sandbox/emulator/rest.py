"""The emulated REST API v10's request pipeline, without I/O: one ``relay.web`` Request in, an
:class:`Outcome` out (a response, possibly late, or a dropped connection).

In Discord's order (docs/discord.md §8): uploaded files are served by path with no auth; anything else must be under
``/api/v10`` and match a route (404 otherwise); an injected Cloudflare ban answers before auth (an HTML page
without Discord's headers); then ``Authorization: Bot <token>`` (401), injected 429s, the global limit and the
route's bucket (:mod:`.ratelimits`), injected failures, forbidden routes (403 50013), and the endpoint
(:mod:`.endpoints`). Every answer after the bucket carries its rate-limit headers, errors included.

Knobs for tests: :meth:`RestApi.inject` (:class:`Fail`, :class:`RateLimit`,
:class:`CloudflareBan`, :class:`Slow`, :class:`Drop`, one per request, per route or ``"*"``),
:meth:`RestApi.forbid`/:meth:`RestApi.allow`; every request is recorded in :attr:`RestApi.requests`
(:class:`RecordedRequest`) with the status answered.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

import attrs

from relay import fastjson
from relay.sandbox.emulator.endpoints import EndpointFn, EndpointRequest, Endpoints
from relay.sandbox.emulator.errors import ApiError
from relay.sandbox.emulator.forms import decode_body
from relay.sandbox.emulator.ratelimits import RateLimits
from relay.sandbox.emulator.world import World
from relay.web.models import Request, Response
from relay.web.multipart import Part

API_PREFIX = "/api/v10"

# ---------------------------------------------------------------------- public records and knobs


@attrs.define
class RecordedRequest:
    method: str
    path: str  #: without the /api/v10 prefix and query
    query: dict[str, str]
    headers: dict[str, str]  #: lower-cased names; the last value wins
    body: bytes = attrs.field(repr=False)
    json: Any  #: decoded JSON body, or the decoded ``payload_json`` of a multipart body
    parts: tuple[Part, ...]  #: multipart parts in order (empty otherwise)
    time: float  #: the clock when the request was complete
    route: str = ""  #: "METHOD /template" matched, "" when none
    status: int = 0  #: status answered (0: none, e.g. a dropped connection)
    client: tuple[str, int] | None = None  #: the client's address (one per TCP connection)


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


@attrs.frozen
class Outcome:
    """What to do with a request: send ``response`` after ``delay`` seconds, or (``response is None``) drop
    the connection without an answer."""

    response: Response | None
    delay: float = 0.0


@attrs.frozen
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    endpoint: EndpointFn

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


def _compile(method: str, template: str, endpoint: EndpointFn) -> Route:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[0-9]+)", re.escape(template))
    return Route(method, template, re.compile(regex), endpoint)


def _major(params: dict[str, str]) -> str:
    """docs/discord.md §8.3: the top-level id that splits a route into independent buckets."""
    for name in ("channel_id", "guild_id", "webhook_id"):
        if name in params:
            return f"{name}={params[name]}"
    return "-"


def _major_id(params: dict[str, str]) -> int | None:
    for name in ("channel_id", "guild_id"):
        if name in params:
            return int(params[name])
    return None


_CLOUDFLARE_PAGE = b"<html><body><h1>Error 1015</h1><p>You are being rate limited.</p></body></html>"


class RestApi:
    """See the module docstring."""

    def __init__(
        self, world: World, endpoints: Endpoints, limits: RateLimits, *, token: str, keep_requests: int | None = None
    ) -> None:
        self.world = world
        self.limits = limits
        self._token = token
        #: every request in arrival order; with ``keep_requests``, only about the latest that many (a long-running
        #: sandbox must not keep every upload's body forever): the oldest are dropped in batches
        self.requests: list[RecordedRequest] = []
        self._keep_requests = keep_requests
        self._routes = [_compile(method, template, fn) for method, template, fn in endpoints.table()]
        self._failures: dict[str, deque[Failure]] = {}
        self._forbidden: set[tuple[str, int | None]] = set()

    # ------------------------------------------------------------------ knobs

    def inject(self, route: str, *failures: Failure) -> None:
        """Make the next requests on ``route`` (or ``"*"``: any route) fail, in order, one failure each."""
        if route != "*":
            self.check_route(route)
        self._failures.setdefault(route, deque()).extend(failures)

    def forbid(self, route: str, major: int | None = None) -> None:
        """Answer 403 50013 Missing Permissions on ``route`` (only for channel/guild ``major`` if given)."""
        self.check_route(route)
        self._forbidden.add((route, major))

    def allow(self, route: str, major: int | None = None) -> None:
        self._forbidden.discard((route, major))

    def requests_to(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    def routes(self) -> list[str]:
        """Every route key ("METHOD /template") the API answers."""
        return [r.key for r in self._routes]

    def check_route(self, route: str) -> None:
        if not any(r.key == route for r in self._routes):
            raise KeyError(f"the emulator has no route {route!r}")

    # ------------------------------------------------------------------ the pipeline

    def answer(self, request: Request, now: float) -> Outcome:
        """The outcome of ``request`` arriving complete at ``now`` (see the module docstring)."""
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers[name] = value
        query: dict[str, str] = {}
        for name, value in request.query:
            query[name] = value
        decoded, parts = decode_body(request)
        record = RecordedRequest(
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            query=query,
            headers=headers,
            body=request.body,
            json=decoded,
            parts=parts,
            time=now,
            client=request.client,
        )
        self.requests.append(record)
        if self._keep_requests is not None and len(self.requests) > 2 * self._keep_requests:
            del self.requests[: len(self.requests) - self._keep_requests]

        if request.method == "GET" and not request.path.startswith(API_PREFIX + "/"):
            stored = self.world.file(request.path)
            if stored is not None:  # a CDN-like file: no auth, no limits
                record.status = 200
                return Outcome(Response(200, (("content-type", stored[1]),), stored[0]))
        try:
            return self._answer_api(record, request.path)
        except ApiError as error:
            record.status = error.status
            return Outcome(Response.json(error.body(), error.status, error.headers))

    def _answer_api(self, record: RecordedRequest, path: str) -> Outcome:
        if not path.startswith(API_PREFIX + "/"):
            raise ApiError(404, 0, "404: Not Found")
        match = self._match(record.method, record.path)
        if match is None:
            raise ApiError(404, 0, "404: Not Found")
        route, params = match
        record.route = route.key
        major = _major(params)
        now = record.time
        failure = self._next_failure(route.key)
        if isinstance(failure, CloudflareBan):
            extra = (("retry-after", str(failure.retry_after)),) if failure.retry_after else ()
            record.status = failure.status
            return Outcome(Response(failure.status, (("content-type", "text/html"), *extra), _CLOUDFLARE_PAGE))
        if record.headers.get("authorization") != f"Bot {self._token}":
            raise ApiError(401, 0, "401: Unauthorized")
        if isinstance(failure, RateLimit):
            raise self.limits.injected(route.key, major, failure.retry_after, failure.scope, now)
        self.limits.check_global(now)
        limit_headers = self.limits.take(route.key, major, now)
        if isinstance(failure, Fail):
            raise ApiError(failure.status, failure.code, failure.message, headers=limit_headers)
        if isinstance(failure, Drop) and not failure.after_handling:
            return Outcome(None)
        if (route.key, None) in self._forbidden or (route.key, _major_id(params)) in self._forbidden:
            raise ApiError(403, 50013, "Missing Permissions", headers=limit_headers)
        endpoint_request = EndpointRequest(record.query, record.json, record.parts, record.headers, now)
        try:
            status, result = route.endpoint(params, endpoint_request)
        except ApiError as error:
            error.headers = (*error.headers, *limit_headers)
            raise
        if isinstance(failure, Drop):
            return Outcome(None)
        record.status = status
        delay = failure.delay if isinstance(failure, Slow) else 0.0
        if result is None:
            return Outcome(Response(status, limit_headers), delay)
        body = fastjson.dumps(result)
        return Outcome(Response(status, (*limit_headers, ("content-type", "application/json")), body), delay)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
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
