"""The emulated REST API's rate limits (docs/discord.md §8.3), without I/O: per-route buckets per major parameter,
shared bucket hashes, the global limit, and the 429 answers with Discord's headers and bodies.

Every answer that passed a bucket carries ``x-ratelimit-limit/-remaining/-reset/-reset-after/-bucket``; a
request over a limit gets a 429 with ``retry_after``, ``global`` and ``x-ratelimit-scope``, and counts in
:attr:`RateLimits.limit_violations` (a correct client keeps it at 0). Injected 429s (any scope) block the
bucket or the whole bot like real ones, without counting. ``now`` is a monotonic clock in seconds;
``x-ratelimit-reset`` is wall time: ``wall_offset + now``.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from typing import Any

import attrs

from relay.sandbox.emulator.errors import ApiError

#: trio time 0 maps to this wall-clock time (2026-09-21) in virtual-time tests, so resets look real
FAKE_EPOCH = 1_790_000_000.0

Headers = tuple[tuple[str, str], ...]


class RateLimited(ApiError):
    """A 429: Discord's body is ``{"message", "retry_after", "global"}`` (no code)."""

    def __init__(self, retry_after: float, *, is_global: bool, headers: Headers) -> None:
        super().__init__(429, 0, "You are being rate limited.", headers=headers)
        self.retry_after = retry_after
        self.is_global = is_global

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "retry_after": round(self.retry_after, 3), "global": self.is_global}


@attrs.define
class BucketSpec:
    limit: int
    per: float
    bucket_hash: str


@attrs.define
class _BucketState:
    used: int = 0
    reset_at: float = 0.0


def default_hash(route_key: str) -> str:
    """Discord's bucket hashes are opaque hex strings; derive a stable one per route."""
    return hashlib.sha1(route_key.encode()).hexdigest()[:32]


class RateLimits:
    """See the module docstring."""

    def __init__(
        self,
        *,
        global_limit: int | None = 50,
        default_limit: int = 50,
        default_per: float = 1.0,
        wall_offset: float = FAKE_EPOCH,
    ) -> None:
        #: requests per second per bot; None disables the global limit
        self.global_limit = global_limit
        self.default_limit = default_limit
        self.default_per = default_per
        self.wall_offset = wall_offset
        #: 429s produced from the limits (not injected ones)
        self.limit_violations = 0
        self._buckets: dict[str, BucketSpec] = {}
        self._state: dict[tuple[str, str], _BucketState] = {}
        self._global_times: deque[float] = deque()
        self._global_blocked_until = 0.0

    def set_bucket(self, route: str, *, limit: int, per: float, bucket_hash: str | None = None) -> None:
        """``limit`` requests per ``per`` seconds per major parameter on ``route``; routes given the same
        ``bucket_hash`` share one limit (per major), like Discord."""
        self._buckets[route] = BucketSpec(limit, per, bucket_hash or default_hash(route))

    def spec(self, route: str) -> BucketSpec:
        spec = self._buckets.get(route)
        if spec is None:
            spec = self._buckets[route] = BucketSpec(self.default_limit, self.default_per, default_hash(route))
        return spec

    def check_global(self, now: float) -> None:
        """Count one request against the global limit, or raise its 429."""
        if now < self._global_blocked_until:
            self.limit_violations += 1
            raise _global_429(self._global_blocked_until - now)
        if self.global_limit is None:
            return
        times = self._global_times
        while times and times[0] <= now - 1.0:
            times.popleft()
        if len(times) >= self.global_limit:
            self.limit_violations += 1
            raise _global_429(times[0] + 1.0 - now)
        times.append(now)

    def take(self, route: str, major: str, now: float) -> Headers:
        """Use one request of the bucket of (``route``, ``major``): its headers, or raise its 429."""
        spec = self.spec(route)
        state = self._state.setdefault((spec.bucket_hash, major), _BucketState())
        if now >= state.reset_at:
            state.used = 0
            state.reset_at = now + spec.per
        if state.used >= spec.limit:
            self.limit_violations += 1
            retry_after = state.reset_at - now
            headers = (
                *self._headers(spec, state, now),
                ("x-ratelimit-scope", "user"),
                ("retry-after", str(math.ceil(retry_after))),
            )
            raise RateLimited(retry_after, is_global=False, headers=headers)
        state.used += 1
        return self._headers(spec, state, now)

    def injected(self, route: str, major: str, retry_after: float, scope: str, now: float) -> RateLimited:
        """An injected 429 of ``scope`` (user/shared/global): it blocks the bucket (or the bot) for real."""
        headers: list[tuple[str, str]] = [("x-ratelimit-scope", scope), ("retry-after", str(math.ceil(retry_after)))]
        if scope == "global":
            headers.append(("x-ratelimit-global", "true"))
            self._global_blocked_until = now + retry_after
            return RateLimited(retry_after, is_global=True, headers=tuple(headers))
        spec = self.spec(route)
        state = self._state.setdefault((spec.bucket_hash, major), _BucketState())
        state.reset_at = max(state.reset_at, now + retry_after)
        state.used = spec.limit
        headers.extend(self._headers(spec, state, now))
        return RateLimited(retry_after, is_global=False, headers=tuple(headers))

    def _headers(self, spec: BucketSpec, state: _BucketState, now: float) -> Headers:
        reset_after = max(0.0, state.reset_at - now)
        return (
            ("x-ratelimit-limit", str(spec.limit)),
            ("x-ratelimit-remaining", str(max(0, spec.limit - state.used))),
            ("x-ratelimit-reset", f"{self.wall_offset + state.reset_at:.3f}"),
            ("x-ratelimit-reset-after", f"{reset_after:.3f}"),
            ("x-ratelimit-bucket", spec.bucket_hash),
        )


def _global_429(retry_after: float) -> RateLimited:
    return RateLimited(
        retry_after,
        is_global=True,
        headers=(
            ("x-ratelimit-global", "true"),
            ("x-ratelimit-scope", "global"),
            ("retry-after", str(math.ceil(retry_after))),
        ),
    )
