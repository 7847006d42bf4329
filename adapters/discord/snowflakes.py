"""Discord's ids and times, the only copy (docs/discord.md §10): the snowflake epoch, a snowflake's creation time
and the smallest snowflake of a moment, lenient id parsing, ISO8601 timestamps, and message nonces.

**The edge's id check.** Every id and bitfield the Discord side reads goes through :func:`to_int` (or
:func:`parse_snowflake`). A number outside ``0 <= n < 2**63`` — the largest integer SQLite and mirai's ``Long``
hold — or a float where an integer goes is refused there with :class:`~relay.errors.InvalidSnowflake`: the
dispatch or REST answer carrying it is skipped (the translator logs it with the dispatch's name) instead of
reaching the store writer, whose OverflowError used to end the bridge.

Pure: no clock (times are parameters), no I/O.
"""

from __future__ import annotations

import datetime
import functools
import secrets
from typing import Final

from relay.errors import InvalidSnowflake

#: docs/discord.md §10: snowflakes count milliseconds from 2015-01-01T00:00:00Z in their top 42 bits.
DISCORD_EPOCH_MS: Final = 1_420_070_400_000
#: ids and bitfields must stay below this: every real one does (a snowflake's top bit would be the year 2154),
#: and beyond it SQLite's INTEGER and mirai's Long overflow
SNOWFLAKE_LIMIT: Final = 1 << 63
#: decimal digits of SNOWFLAKE_LIMIT - 1: a longer string of digits is out of range without parsing it
_MAX_DIGITS: Final = 19


def snowflake_time(snowflake: int) -> float:
    """Creation time of a snowflake, epoch seconds (docs/discord.md §10)."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000.0


def snowflake_at(epoch_seconds: float) -> int:
    """The smallest snowflake created at ``epoch_seconds`` (for ``before``/``after`` pagination; §10)."""
    ms = int(epoch_seconds * 1000) - DISCORD_EPOCH_MS
    return max(ms, 0) << 22


def to_int(value: object, default: int = 0) -> int:
    """Snowflakes and permission bitfields arrive as decimal strings (docs/discord.md §6.3, §10); integers are taken
    as they are. ``default`` for what is absent or not a number at all (Discord leaves fields out or sends
    ``null``); :class:`~relay.errors.InvalidSnowflake` for a number outside ``0 <= n < 2**63`` or a float (see
    the module docstring)."""
    if type(value) is str:
        if len(value) > _MAX_DIGITS:
            if value.strip().lstrip("+-").isdigit():
                raise InvalidSnowflake(value)
            return default
        try:
            number = int(value)
        except ValueError:
            return default
    elif type(value) is int:
        number = value
    elif isinstance(value, float):
        raise InvalidSnowflake(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
    else:
        return default
    if 0 <= number < SNOWFLAKE_LIMIT:
        return number
    raise InvalidSnowflake(value)


def parse_snowflake(value: object) -> int | None:
    """A snowflake given as digits or an integer, ``0 < id < 2**63``; None for anything else (a payload to
    refuse, not a 0)."""
    if isinstance(value, str) and value.isdigit() and len(value) <= _MAX_DIGITS:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        return None
    return number if 0 < number < SNOWFLAKE_LIMIT else None


_fromisoformat = datetime.datetime.fromisoformat


def parse_iso_time(value: object) -> float:
    """ISO8601 timestamp → epoch seconds; 0.0 when absent or unreadable (Discord sends ``null`` often).

    Every MESSAGE_CREATE's member has one (its ``joined_at``): a text seen lately is answered from memory."""
    if value.__class__ is not str or not value:
        return 0.0
    return _parse_iso_text(value)


#: distinct timestamp texts remembered by :func:`_parse_iso_text` (~150 KB at most)
ISO_TIMES_REMEMBERED: Final = 1024


@functools.lru_cache(maxsize=ISO_TIMES_REMEMBERED)
def _parse_iso_text(value: str) -> float:
    # Remembered: a message's member carries its joined_at, the same text on every message of that member, and
    # parsing it (fromisoformat, then timestamp on an aware datetime) was ~4,000 of the ~266,000 instructions the
    # bridge spent per relayed event; a remembered one costs ~400 (callgrind). A pure function of its text.
    try:
        parsed = _fromisoformat(value)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def new_nonce() -> str:
    """A fresh message nonce: at most 25 characters (docs/discord.md §7.3); one per logical send, reused by retries."""
    return secrets.token_hex(12)  # 24 hex characters
