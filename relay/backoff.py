"""Reconnect backoff: exponential growth with full jitter and a cap (pure; the caller supplies the rng).

Used by every reconnecting loop of the bridge (Discord shards, framework connections), so the one formula and
its overflow guard live here. Full jitter spreads the reconnects of many clients that lost the same server at
the same moment across the whole window instead of letting them return in waves.
"""

from __future__ import annotations

import random

from relay.config import BackoffConfig

#: the exponent stops growing here: ``factor ** attempt`` would overflow a float after a few thousand attempts,
#: and the cap is reached long before
MAX_EXPONENT = 64


def backoff_delay(config: BackoffConfig, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1``: ``uniform(0, min(cap, initial * factor**attempt))``."""
    ceiling = min(config.cap, config.initial * config.factor ** min(attempt, MAX_EXPONENT))
    return rng.uniform(0.0, ceiling)
