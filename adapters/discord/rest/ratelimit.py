"""Discord REST rate limiting as a pure state machine (docs/discord.md §8.3–§8.6).

No I/O, no clock, no trio: every method takes ``now`` (seconds on any monotonic clock) and the trio shell in
:mod:`adapters.discord.rest.client` sleeps for the delays this module computes.

How a request goes through it::

    reservation = limiter.reserve(route, major, now)     # may raise (ban, guard, too long a wait)
    if not reservation.granted:                          # wait reservation.delay (math.inf: until the next
        ...                                              # update()/abandon()) and ask again
    ... send ...
    retry = limiter.update(reservation, status, headers, body, now)   # or limiter.abandon(reservation, now)

``route`` is the method plus the path template (``"POST /channels/{channel_id}/messages"``), ``major`` the
top-level resource ids of the path (channel, guild, webhook id+token) as one string. Buckets are keyed by
the ``X-RateLimit-Bucket`` hash learned for the route plus the major parameter, so two routes that Discord
reports with the same hash share one limit. Until a route's hash is known it gets a private "unknown" bucket
that lets one request be in flight at a time, so a burst of first requests cannot all hit a 429 (§8.6.4).

Everything here errs on the side of waiting: requests in flight are counted against the remaining budget,
windows are only considered reset after the time the *response* told us, and the global limit holds a
request's slot from its send time until one second after its response (so no one-second window of
arrivals at Discord can contain more than the limit, however long the requests took).
"""

from __future__ import annotations

import collections
import json
import logging
import math
from collections.abc import Mapping
from typing import NoReturn

import attrs

from relay.errors import CloudflareBanned, ConfigError, HTTPError, InvalidRequestGuard, RateLimitedTooLong

log = logging.getLogger(__name__)

#: Discord bans an IP (Cloudflare, HTML 429/403) after this many 401/403/429 responses in 10 minutes (§8.3).
DISCORD_INVALID_REQUEST_LIMIT = 10_000
#: ... counted over this sliding window, in seconds (§8.3).
INVALID_REQUEST_WINDOW = 600.0
#: Our defaults stay far from Discord's ban threshold: warn at half of it, refuse at 90 %.
DEFAULT_INVALID_WARN = 5_000
DEFAULT_INVALID_REFUSE = 9_000
#: Cloudflare's 1015 bans usually last about an hour; without a Retry-After we pause REST for that long.
DEFAULT_CLOUDFLARE_PAUSE = 3600.0
#: The global limit counts requests per this many seconds (§8.3: "50 requests per second").
GLOBAL_WINDOW = 1.0
#: Unknown buckets (no ``X-RateLimit-Bucket`` seen yet for the route) allow this many requests in flight.
UNKNOWN_BUCKET_IN_FLIGHT = 1
#: Idle buckets are forgotten once more than this many exist (one per channel/guild touched).
MAX_IDLE_BUCKETS = 1024

_UNKNOWN_PREFIX = "unknown:"
_NO_BUCKET_PREFIX = "none:"


@attrs.frozen
class Reservation:
    """The answer of :meth:`RateLimiter.reserve`.

    ``delay == 0`` means a slot was taken: send now, then call ``update`` or ``abandon`` exactly once.
    Otherwise nothing was taken: wait ``delay`` seconds (``math.inf``: until the limiter changes, i.e. the
    next ``update``/``abandon``) and reserve again.
    """

    route: str
    major: str
    bucket_id: str
    delay: float

    @property
    def granted(self) -> bool:
        return self.delay == 0.0


@attrs.define
class Bucket:
    """One rate-limit bucket: Discord's view from headers plus our own accounting of what is in flight."""

    limit: int | None = None  #: X-RateLimit-Limit; None while unknown
    remaining: int = 1  #: requests we may still start in this window
    reset_at: float | None = None  #: when the window ends (None: no window known)
    in_flight: int = 0
    blocked_until: float = 0.0  #: set by a 429 of this bucket (may outlast the header window)
    unlimited: bool = False  #: the route answers without bucket headers: only the global limit applies

    def idle(self, now: float) -> bool:
        """Nothing in flight and no window or block pending: forgetting it loses nothing but its limit."""
        return self.in_flight == 0 and (self.reset_at is None or self.reset_at <= now) and self.blocked_until <= now

    def refresh(self, now: float) -> None:
        """Start a new window once the one the headers told us about has ended."""
        if self.reset_at is not None and now >= self.reset_at:
            self.reset_at = None
            if self.limit is not None:
                self.remaining = max(0, self.limit - self.in_flight)

    def delay(self, now: float) -> float:
        """Seconds until a request may start (0: now; inf: until an in-flight request answers)."""
        self.refresh(now)
        if now < self.blocked_until:
            return self.blocked_until - now
        if self.unlimited:
            return 0.0
        if self.limit is None:
            return 0.0 if self.in_flight < UNKNOWN_BUCKET_IN_FLIGHT else math.inf
        if self.remaining > 0:
            return 0.0
        if self.reset_at is not None:
            return self.reset_at - now
        # Budget spent and no reset time known yet: wait for a response to tell us.
        return math.inf


@attrs.frozen(kw_only=True)
class RateLimitHeaders:
    """The rate-limit headers of one response (docs/discord.md §8.3), parsed leniently."""

    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    bucket: str | None = None
    scope: str | None = None
    is_global: bool = False
    retry_after: float | None = None  #: the Retry-After header (429 only)

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(
            limit=_int_or_none(lowered.get("x-ratelimit-limit")),
            remaining=_int_or_none(lowered.get("x-ratelimit-remaining")),
            reset_after=_float_or_none(lowered.get("x-ratelimit-reset-after")),
            bucket=lowered.get("x-ratelimit-bucket") or None,
            scope=(lowered.get("x-ratelimit-scope") or None),
            is_global=lowered.get("x-ratelimit-global", "").lower() == "true",
            retry_after=_float_or_none(lowered.get("retry-after")),
        )


@attrs.frozen(kw_only=True)
class LimiterStatistics:
    buckets: int
    rate_limited_responses: int  #: 429s received (all scopes)
    invalid_requests_window: int  #: 401/403/429 (scope != shared) in the last 10 minutes
    global_blocked_until: float
    cloudflare_banned_until: float | None


@attrs.define
class RateLimiter:
    """Per-route buckets, the global limit, 429 handling and the invalid-request guard. Pure: pass ``now``."""

    global_limit: int = 50  #: requests per GLOBAL_WINDOW (config.discord.global_rate_limit)
    max_wait: float = 300.0  #: longer waits raise RateLimitedTooLong (config.discord.max_rate_limit_wait)
    invalid_warn: int = DEFAULT_INVALID_WARN
    invalid_refuse: int = DEFAULT_INVALID_REFUSE
    invalid_window: float = INVALID_REQUEST_WINDOW

    _hash_by_route: dict[str, str] = attrs.field(factory=dict, init=False)
    _buckets: dict[str, Bucket] = attrs.field(factory=dict, init=False)
    #: times at which a global slot frees up (send + response, or +inf while in flight); see module doc
    _global_in_flight: int = attrs.field(default=0, init=False)
    _global_release_times: collections.deque[float] = attrs.field(factory=collections.deque, init=False)
    _global_blocked_until: float = attrs.field(default=0.0, init=False)
    _invalid_times: collections.deque[float] = attrs.field(factory=collections.deque, init=False)
    _invalid_warned: bool = attrs.field(default=False, init=False)
    _banned_until: float | None = attrs.field(default=None, init=False)
    _banned_status: int = attrs.field(default=0, init=False)
    #: the route key ("GET /users/@me") of the request Discord answered 401; every later request is refused
    _unauthorized: str | None = attrs.field(default=None, init=False)
    _rate_limited_responses: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.global_limit < 1:
            problems.append(f"discord.global_rate_limit: must be at least 1, got {self.global_limit}")
        if not 0 < self.invalid_warn <= self.invalid_refuse < DISCORD_INVALID_REQUEST_LIMIT:
            problems.append(
                f"discord.invalid_request_warn/invalid_request_refuse: need 0 < warn <= refuse < "
                f"{DISCORD_INVALID_REQUEST_LIMIT} (Discord's ban threshold), "
                f"got {self.invalid_warn}/{self.invalid_refuse}"
            )
        if problems:
            raise ConfigError("rate limiter", problems)

    # ------------------------------------------------------------------ queries

    def bucket_id(self, route: str, major: str) -> str:
        """The key of the bucket a request on ``route`` with ``major`` currently counts against."""
        known = self._hash_by_route.get(route)
        if known is None:
            return f"{_UNKNOWN_PREFIX}{route}:{major}"
        return f"{known}:{major}"

    def bucket(self, route: str, major: str) -> Bucket | None:
        return self._buckets.get(self.bucket_id(route, major))

    def invalid_count(self, now: float) -> int:
        self._prune_invalid(now)
        return len(self._invalid_times)

    def statistics(self, now: float) -> LimiterStatistics:
        return LimiterStatistics(
            buckets=len(self._buckets),
            rate_limited_responses=self._rate_limited_responses,
            invalid_requests_window=self.invalid_count(now),
            global_blocked_until=self._global_blocked_until,
            cloudflare_banned_until=self._banned_until,
        )

    # ------------------------------------------------------------------ acquire

    def reserve(self, route: str, major: str, now: float) -> Reservation:
        """Take a slot for one request, or say how long to wait. See :class:`Reservation`.

        Raises CloudflareBanned while a ban is in force, InvalidRequestGuard when the invalid-request budget
        is nearly spent, HTTPError(401) after the token was rejected, RateLimitedTooLong when the wait would
        exceed ``max_wait``.
        """
        self._check_refusals(now)
        bucket_id = self.bucket_id(route, major)
        bucket = self._bucket_for(route, major, now)
        delay = max(bucket.delay(now), self._global_delay(now))
        if delay > 0:
            if math.isfinite(delay) and delay > self.max_wait:
                raise RateLimitedTooLong(route, delay, self.max_wait)
            return Reservation(route=route, major=major, bucket_id=bucket_id, delay=delay)
        bucket.in_flight += 1
        if bucket.limit is not None:
            bucket.remaining -= 1
        self._global_in_flight += 1
        return Reservation(route=route, major=major, bucket_id=bucket_id, delay=0.0)

    def _bucket_for(self, route: str, major: str, now: float) -> Bucket:
        bucket_id = self.bucket_id(route, major)
        bucket = self._buckets.get(bucket_id)
        if bucket is not None:
            return bucket
        if len(self._buckets) >= MAX_IDLE_BUCKETS:
            for key in [k for k, b in self._buckets.items() if b.idle(now)]:
                del self._buckets[key]
        bucket = self._buckets[bucket_id] = Bucket()
        if route in self._hash_by_route:
            # Requests sent for this major before the route's hash was learned still count.
            unknown = self._buckets.pop(f"{_UNKNOWN_PREFIX}{route}:{major}", None)
            if unknown is not None:
                bucket.in_flight = unknown.in_flight
                bucket.blocked_until = unknown.blocked_until
            if self._hash_by_route[route].startswith(_NO_BUCKET_PREFIX):
                bucket.unlimited = True
        return bucket

    def _check_refusals(self, now: float) -> None:
        if self._banned_until is not None:
            if now < self._banned_until:
                raise CloudflareBanned(self._banned_status, self._banned_until - now)
            self._banned_until = None
        if self._unauthorized is not None:
            # named after the request Discord rejected, so the line the operator reads says where it happened
            method, _, route = self._unauthorized.partition(" ")
            raise HTTPError(
                401,
                0,
                "Discord rejected the bot token earlier; no further requests are sent with it. "
                "Fix the token (DISCORD_TOKEN) and restart",
                method=method,
                route=route.split(" [", 1)[0],
            )
        count = self.invalid_count(now)
        if count >= self.invalid_refuse:
            raise InvalidRequestGuard(count, DISCORD_INVALID_REQUEST_LIMIT, self.invalid_window)

    def _global_delay(self, now: float) -> float:
        if now < self._global_blocked_until:
            return self._global_blocked_until - now
        releases = self._global_release_times
        while releases and releases[0] <= now:
            releases.popleft()
        if self._global_in_flight + len(releases) < self.global_limit:
            return 0.0
        if len(releases) == 0:
            return math.inf  # every slot is held by a request in flight
        # Release times are appended in time order, so the first one frees up soonest.
        return releases[0] - now

    # ------------------------------------------------------------------ complete

    def abandon(self, reservation: Reservation, now: float) -> None:
        """The request got no response (network error, timeout, cancellation): give back its slots.

        The request may still have reached Discord, so its global slot is held for a full window.
        """
        self._finish(reservation, now)

    def update(
        self,
        reservation: Reservation,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: float,
    ) -> bool:
        """Digest a response. Returns True when the request must be sent again (a 429 we obey).

        Raises CloudflareBanned for a non-JSON 429 (and blocks every further request), RateLimitedTooLong
        when a 429 asks for a longer wait than ``max_wait``.
        """
        self._finish(reservation, now)
        parsed = RateLimitHeaders.parse(headers)
        if status in (401, 403) or (status == 429 and parsed.scope != "shared"):
            self._count_invalid(now)
        if status == 401:
            # docs/discord.md §8.6.8: a rejected token stays rejected; hammering with it only counts toward a ban.
            self._unauthorized = reservation.route
        if status == 403 and body.strip() and not _is_json(body):
            # docs/discord.md §8.6.6: an HTML 403 from the edge is Cloudflare's ban page, not a Discord error.
            self._ban(reservation, 403, parsed.retry_after, now)
        if status != 429:
            self._learn(reservation, parsed, now)
            return False
        return self._on_429(reservation, parsed, body, now)

    def _finish(self, reservation: Reservation, now: float) -> None:
        bucket = self._buckets.get(reservation.bucket_id)
        if bucket is None:  # re-keyed while the request was in flight
            bucket = self._buckets.get(self.bucket_id(reservation.route, reservation.major))
        if bucket is not None and bucket.in_flight > 0:
            bucket.in_flight -= 1
        if self._global_in_flight > 0:
            self._global_in_flight -= 1
        self._global_release_times.append(now + GLOBAL_WINDOW)

    def _learn(self, reservation: Reservation, parsed: RateLimitHeaders, now: float) -> None:
        route, major = reservation.route, reservation.major
        if parsed.bucket is None:
            # No bucket header: the route is only under the global limit (§8.3). Remember that so the
            # one-in-flight rule of unknown buckets stops applying.
            if route not in self._hash_by_route:
                self._rekey(route, f"{_NO_BUCKET_PREFIX}{route}", reservation, major, now)
            self._bucket_for(route, major, now).unlimited = True
            return
        if self._hash_by_route.get(route) != parsed.bucket:
            old = self._hash_by_route.get(route)
            if old is not None and not old.startswith(_NO_BUCKET_PREFIX):
                log.info("rate-limit bucket of %s changed from %s to %s", route, old, parsed.bucket)
            self._rekey(route, parsed.bucket, reservation, major, now)
        bucket = self._bucket_for(route, major, now)
        bucket.unlimited = False
        self._apply_headers(bucket, parsed, now)

    def _rekey(self, route: str, new_hash: str, reservation: Reservation, major: str, now: float) -> None:
        """Point ``route`` at ``new_hash``; requests still in flight on its unknown bucket move along.

        Other majors of the route keep their unknown buckets until their next reservation or response
        (see ``_bucket_for``), so their in-flight counts are never lost.
        """
        self._hash_by_route[route] = new_hash
        target = self._bucket_for(route, major, now)
        unknown = self._buckets.pop(f"{_UNKNOWN_PREFIX}{route}:{major}", None)
        if unknown is not None:
            target.in_flight += unknown.in_flight
            target.blocked_until = max(target.blocked_until, unknown.blocked_until)

    @staticmethod
    def _apply_headers(bucket: Bucket, parsed: RateLimitHeaders, now: float) -> None:
        bucket.refresh(now)
        if parsed.limit is not None:
            bucket.limit = parsed.limit
        elif bucket.limit is None:
            bucket.limit = 1
        if parsed.remaining is not None:
            # In-flight requests may not be counted in this header yet: assume they will be.
            from_headers = max(0, parsed.remaining - bucket.in_flight)
            if bucket.reset_at is None:
                bucket.remaining = from_headers
            else:
                bucket.remaining = min(bucket.remaining, from_headers)
        elif bucket.reset_at is None:
            bucket.remaining = max(0, bucket.limit - bucket.in_flight)
        if parsed.reset_after is not None:
            candidate = now + parsed.reset_after
            if bucket.reset_at is None or candidate > bucket.reset_at:
                bucket.reset_at = candidate

    def _on_429(self, reservation: Reservation, parsed: RateLimitHeaders, body: bytes, now: float) -> bool:
        self._rate_limited_responses += 1
        retry_after, body_global = _parse_429_body(body)
        if retry_after is None:
            # docs/discord.md §8.3/§8.5: an HTML (or otherwise non-JSON) 429 comes from Cloudflare, not Discord.
            self._ban(reservation, 429, parsed.retry_after, now)
        if parsed.is_global or body_global or parsed.scope == "global":
            self._global_blocked_until = max(self._global_blocked_until, now + retry_after)
            log.warning("global rate limit hit on %s; all requests wait %.2f s", reservation.route, retry_after)
        else:
            if parsed.bucket is not None:
                self._learn(reservation, parsed, now)
            bucket = self._bucket_for(reservation.route, reservation.major, now)
            bucket.blocked_until = max(bucket.blocked_until, now + retry_after)
            bucket.remaining = 0
            log.warning(
                "rate limited on %s (scope %s); waiting %.2f s before retrying",
                reservation.route,
                parsed.scope or "unknown",
                retry_after,
            )
        if retry_after > self.max_wait:
            raise RateLimitedTooLong(reservation.route, retry_after, self.max_wait)
        return True

    def _ban(self, reservation: Reservation, status: int, retry_after: float | None, now: float) -> NoReturn:
        pause = retry_after if retry_after else DEFAULT_CLOUDFLARE_PAUSE
        self._banned_until = now + pause
        self._banned_status = status
        log.error(
            "Discord's edge answered %s with a non-JSON %d: the IP is banned; pausing all REST for %.0f s",
            reservation.route,
            status,
            pause,
        )
        raise CloudflareBanned(status, pause)

    # ------------------------------------------------------------------ invalid-request guard

    def _prune_invalid(self, now: float) -> None:
        times = self._invalid_times
        horizon = now - self.invalid_window
        while times and times[0] <= horizon:
            times.popleft()
        if self._invalid_warned and len(times) < self.invalid_warn:
            self._invalid_warned = False

    def _count_invalid(self, now: float) -> None:
        self._invalid_times.append(now)
        count = self.invalid_count(now)
        if count >= self.invalid_warn and not self._invalid_warned:
            self._invalid_warned = True
            log.warning(
                "%d invalid (401/403/429) Discord responses in the last %.0f s; Discord bans the IP at %d and "
                "the bridge refuses requests from %d — check permissions and bot configuration",
                count,
                self.invalid_window,
                DISCORD_INVALID_REQUEST_LIMIT,
                self.invalid_refuse,
            )


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _float_or_none(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) and result >= 0 else None


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _parse_429_body(body: bytes) -> tuple[float | None, bool]:
    """(retry_after, global) from a Discord 429 body; retry_after None when it is not Discord's JSON."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, False
    if not isinstance(decoded, dict):
        return None, False
    retry_after = decoded.get("retry_after")
    if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
        return None, False
    if not math.isfinite(retry_after) or retry_after < 0:
        return None, False
    return float(retry_after), bool(decoded.get("global", False))
