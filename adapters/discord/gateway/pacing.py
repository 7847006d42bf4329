"""Gateway pacing (docs/discord.md §2.5, §3): the per-connection send limiter (120 sends a minute, with room kept
for heartbeats) and the process-wide identify pacer (the daily budget and the ``max_concurrency`` buckets).

Pure: every method takes ``now``; the shard sleeps for the delays computed here.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, Protocol

import attrs

from relay.errors import IdentifyBudgetExhausted

#: gateway sends allowed per connection per window (docs/discord.md §3)
SEND_LIMIT: Final = 120
SEND_WINDOW_SECONDS: Final = 60.0
#: sends kept free for heartbeats/identify/resume; the normal lane gets SEND_LIMIT - this (hikari uses 3, §3)
PRIORITY_SEND_RESERVE: Final = 3
#: at most ``max_concurrency`` identifies per this many seconds, bucketed by shard id (docs/discord.md §3)
IDENTIFY_WINDOW_SECONDS: Final = 5.0
#: Discord's identify budget window when reset_after has passed and we have not re-read /gateway/bot (§2.5)
IDENTIFY_BUDGET_WINDOW_SECONDS: Final = 24 * 3600.0


class StartLimit(Protocol):
    """``session_start_limit`` of ``GET /gateway/bot`` (the REST client's ``SessionStartLimit``); seconds."""

    @property
    def total(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def max_concurrency(self) -> int: ...


@attrs.define
class SendRateLimiter:
    """Sliding-window gateway send limiter for one connection (docs/discord.md §3).

    The normal lane may use ``limit - reserve`` sends per window; priority sends (heartbeat, identify,
    resume) may use all ``limit``, so a heartbeat always fits.
    """

    limit: int = SEND_LIMIT
    reserve: int = PRIORITY_SEND_RESERVE
    window: float = SEND_WINDOW_SECONDS
    _sent: deque[float] = attrs.field(factory=deque)

    def delay(self, now: float, *, priority: bool) -> float:
        """Seconds until one more send of this lane is allowed (0.0: now)."""
        sent = self._sent
        window = self.window
        # same arithmetic as available_at(), so "available at t" really means "delay(t) == 0"
        while sent and sent[0] + window <= now:
            sent.popleft()
        allowed = self.limit if priority else self.limit - self.reserve
        if len(sent) < allowed:
            return 0.0
        return sent[len(sent) - allowed] + window - now

    def record(self, now: float) -> None:
        self._sent.append(now)

    def available_at(self, *, priority: bool) -> float:
        """Earliest time one more send of this lane may go (-inf: now); may be early, never late."""
        allowed = self.limit if priority else self.limit - self.reserve
        sent = self._sent
        if len(sent) < allowed:
            return -math.inf
        return sent[len(sent) - allowed] + self.window


@attrs.define
class IdentifyPacer:
    """Identify pacing shared by all shards of a process (docs/discord.md §2.5, §3).

    * budget: never spend the last ``reserve`` identifies of ``session_start_limit``; when only those are
      left, wait for ``reset_after`` instead (a crash loop must not burn the budget: Discord resets the token);
    * concurrency: bucket = ``shard_id % max_concurrency``; never two identifies of a bucket within 5 s.
    """

    total: int
    remaining: int
    reset_at: float
    max_concurrency: int
    reserve: int
    _last_identify: dict[int, float] = attrs.field(factory=dict)

    @classmethod
    def from_limit(cls, limit: StartLimit, *, now: float, reserve: int) -> IdentifyPacer:
        return cls(
            total=limit.total,
            remaining=limit.remaining,
            reset_at=now + limit.reset_after,
            max_concurrency=max(1, limit.max_concurrency),
            reserve=max(0, reserve),
        )

    def budget_delay(self, now: float) -> float:
        """Seconds until the budget allows an identify. Raises IdentifyBudgetExhausted if it never will."""
        if now >= self.reset_at:
            self.remaining = self.total
            self.reset_at = now + IDENTIFY_BUDGET_WINDOW_SECONDS
        if self.remaining > self.reserve:
            return 0.0
        if self.total <= self.reserve:
            raise IdentifyBudgetExhausted(self.remaining, self.reset_at - now)
        return self.reset_at - now

    def budget_error(self, now: float) -> IdentifyBudgetExhausted:
        """The error describing the current budget wait (for a log line)."""
        return IdentifyBudgetExhausted(self.remaining, max(0.0, self.reset_at - now))

    def slot_delay(self, shard_id: int, now: float) -> float:
        """Seconds until ``acquire`` would likely succeed for this shard, without taking anything."""
        wait = self.budget_delay(now)
        last = self._last_identify.get(shard_id % self.max_concurrency)
        if last is not None:
            wait = max(wait, last + IDENTIFY_WINDOW_SECONDS - now)
        return max(0.0, wait)

    def acquire(self, shard_id: int, now: float) -> float:
        """0.0: the shard may identify now (the slot is taken); else the seconds to wait before asking again."""
        wait = self.budget_delay(now)
        if wait > 0:
            return wait
        bucket = shard_id % self.max_concurrency
        last = self._last_identify.get(bucket)
        if last is not None and now - last < IDENTIFY_WINDOW_SECONDS:
            return last + IDENTIFY_WINDOW_SECONDS - now
        self._last_identify[bucket] = now
        self.remaining -= 1
        return 0.0
