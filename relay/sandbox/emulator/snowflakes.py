"""Snowflake ids and ISO timestamps as the emulated Discord makes them (docs/discord.md §10).

The emulator cannot import the Discord adapter (only the composition root imports adapters), so it has its own
copy of the epoch: it is Discord's, not the bridge's.
"""

from __future__ import annotations

import datetime as dt

#: docs/discord.md §10: snowflake timestamps count from 2015-01-01T00:00:00Z.
DISCORD_EPOCH_MS = 1_420_070_400_000
#: low bits of a snowflake below the timestamp (worker, process, increment)
INCREMENT_BITS = 22


def snowflake(epoch_seconds: float, increment: int = 0) -> int:
    """The snowflake for wall time ``epoch_seconds`` with ``increment`` in the low 22 bits."""
    ms = int(epoch_seconds * 1000) - DISCORD_EPOCH_MS
    return (ms << INCREMENT_BITS) | (increment & ((1 << INCREMENT_BITS) - 1))


def snowflake_time(snowflake_id: int) -> float:
    """Wall time (epoch seconds) a snowflake was made at."""
    return ((snowflake_id >> INCREMENT_BITS) + DISCORD_EPOCH_MS) / 1000


def iso(epoch_seconds: float) -> str:
    """Discord's timestamp format: ``2026-09-21T12:00:00.000000+00:00``."""
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (naive means UTC); ValueError when it is not one."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
