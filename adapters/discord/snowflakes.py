"""Discord's ids and times, the only copy (discord.md §10): the snowflake epoch, a snowflake's creation time
and the smallest snowflake of a moment, lenient id parsing, ISO8601 timestamps, and message nonces.

Pure: no clock (times are parameters), no I/O.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Final

#: discord.md §10: snowflakes count milliseconds from 2015-01-01T00:00:00Z in their top 42 bits.
DISCORD_EPOCH_MS: Final = 1_420_070_400_000


def snowflake_time(snowflake: int) -> float:
    """Creation time of a snowflake, epoch seconds (discord.md §10)."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000.0


def snowflake_at(epoch_seconds: float) -> int:
    """The smallest snowflake created at ``epoch_seconds`` (for ``before``/``after`` pagination; §10)."""
    ms = int(epoch_seconds * 1000) - DISCORD_EPOCH_MS
    return max(ms, 0) << 22


def to_int(value: object, default: int = 0) -> int:
    """Snowflakes and permission bitfields arrive as decimal strings (discord.md §6.3, §10)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def parse_snowflake(value: object) -> int | None:
    """A snowflake given as digits or an integer; None for anything else (a payload to refuse, not a 0)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


_fromisoformat = datetime.datetime.fromisoformat


def parse_iso_time(value: object) -> float:
    """ISO8601 timestamp → epoch seconds; 0.0 when absent or unreadable (Discord sends ``null`` often).

    Every MESSAGE_CREATE's member has one: the usual timestamp (with its offset) takes one call."""
    if value.__class__ is not str or not value:
        return 0.0
    try:
        parsed = _fromisoformat(value)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def new_nonce() -> str:
    """A fresh message nonce: at most 25 characters (discord.md §7.3); one per logical send, reused by retries."""
    return secrets.token_hex(12)  # 24 hex characters
