"""Gateway close codes (docs/discord.md §2.11, §2.12): what each one means, what to do after it (resume,
identify afresh, or stop), the code we close with ourselves, and the advice an operator reads after a fatal one.

Pure: numbers in, decisions and text out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Final

from adapters.discord.gateway.payloads import GATEWAY_VERSION
from relay.config import PRIVILEGED_INTENTS

#: our close code when we mean to resume: any 4xxx keeps the session (docs/discord.md §2.12; discord.py uses 4000)
RESUMABLE_CLOSE_CODE: Final = 4000

# Close codes sent by Discord (docs/discord.md §2.11).
CLOSE_UNKNOWN_ERROR: Final = 4000
CLOSE_UNKNOWN_OPCODE: Final = 4001
CLOSE_DECODE_ERROR: Final = 4002
CLOSE_NOT_AUTHENTICATED: Final = 4003
CLOSE_AUTHENTICATION_FAILED: Final = 4004
CLOSE_ALREADY_AUTHENTICATED: Final = 4005
CLOSE_INVALID_SEQ: Final = 4007
CLOSE_RATE_LIMITED: Final = 4008
CLOSE_SESSION_TIMED_OUT: Final = 4009
CLOSE_INVALID_SHARD: Final = 4010
CLOSE_SHARDING_REQUIRED: Final = 4011
CLOSE_INVALID_API_VERSION: Final = 4012
CLOSE_INVALID_INTENTS: Final = 4013
CLOSE_DISALLOWED_INTENTS: Final = 4014

#: codes after which reconnecting cannot help (docs/discord.md §2.11, "reconnect: no")
FATAL_CLOSE_CODES: Final = frozenset(
    {
        CLOSE_AUTHENTICATION_FAILED,
        CLOSE_INVALID_SHARD,
        CLOSE_SHARDING_REQUIRED,
        CLOSE_INVALID_API_VERSION,
        CLOSE_INVALID_INTENTS,
        CLOSE_DISALLOWED_INTENTS,
    }
)
#: codes after which the session is gone: skip the pointless resume and identify (docs/discord.md §2.11 tip).
#: 4003 "not authenticated" means Discord has no session for us either.
REIDENTIFY_CLOSE_CODES: Final = frozenset({CLOSE_NOT_AUTHENTICATED, CLOSE_INVALID_SEQ, CLOSE_SESSION_TIMED_OUT})

#: what the Developer Portal calls each privileged intent (Bot → Privileged Gateway Intents)
PORTAL_INTENT_NAMES: Final[Mapping[str, str]] = {
    "GUILD_MEMBERS": "Server Members Intent",
    "GUILD_PRESENCES": "Presence Intent",
    "MESSAGE_CONTENT": "Message Content Intent",
}


class CloseAction(enum.Enum):
    """What to do after the connection ended."""

    RESUME = "resume"  #: reconnect and resume the session
    REIDENTIFY = "reidentify"  #: reconnect and start a new session
    FATAL = "fatal"  #: stop: reconnecting cannot help


def classify_close(code: int | None, *, has_session: bool = True) -> CloseAction:
    """Classify a close code from Discord (``None``: the socket died without a close frame). docs/discord.md §2.11.

    ``has_session``: whether there is a session to resume; without one the answer is never RESUME (the next
    connection identifies), so no log line promises a resume that cannot happen.
    """
    if code in FATAL_CLOSE_CODES:
        return CloseAction.FATAL
    if code in REIDENTIFY_CLOSE_CODES or not has_session:
        return CloseAction.REIDENTIFY
    # no close frame, 1000/1001 from the server, other transport codes, 4000-4002, 4005, 4008 and unknown codes:
    # try a resume; if the session is really gone Discord answers op 9 d=false and we identify.
    return CloseAction.RESUME


def fatal_close_advice(code: int, intents: Iterable[str] = ()) -> str:
    """What the operator must do after a fatal close code (never contains the token)."""
    if code == CLOSE_AUTHENTICATION_FAILED:
        return (
            "Discord rejected the bot token. Copy it again from the Developer Portal (Bot → Reset Token) into the "
            "environment variable named by discord.token_env"
        )
    if code == CLOSE_INVALID_SHARD:
        return "the shard id/count is invalid: check discord.shard_ids and discord.shard_count (or use 'auto')"
    if code == CLOSE_SHARDING_REQUIRED:
        return "the bot is in too many guilds for one shard: set discord.shard_count to 'auto' or a larger number"
    if code == CLOSE_INVALID_API_VERSION:
        return f"Discord no longer accepts gateway v{GATEWAY_VERSION}: upgrade discord-mirai-relay"
    if code == CLOSE_INVALID_INTENTS:
        return "the intents bitfield is invalid: check the names in discord.intents"
    if code == CLOSE_DISALLOWED_INTENTS:
        wanted = sorted(name for name in intents if name in PRIVILEGED_INTENTS)
        if not wanted:
            wanted = sorted(PRIVILEGED_INTENTS)
        portal = ", ".join(f"{PORTAL_INTENT_NAMES[name]} ({name})" for name in wanted)
        return (
            f"enable the privileged intents {portal} in the Discord Developer Portal (your application → Bot → "
            "Privileged Gateway Intents), or remove them from discord.intents"
        )
    return f"close code {code} is not recoverable"


def close_reason_text(code: int | None) -> str:
    """A short human name for a close code, for logs."""
    names = {
        None: "connection lost without a close frame",
        1000: "normal closure",
        1001: "going away",
        1006: "abnormal closure (socket dropped)",
        1009: "message too big",
        CLOSE_UNKNOWN_ERROR: "unknown error",
        CLOSE_UNKNOWN_OPCODE: "unknown opcode",
        CLOSE_DECODE_ERROR: "decode error",
        CLOSE_NOT_AUTHENTICATED: "not authenticated",
        CLOSE_AUTHENTICATION_FAILED: "authentication failed",
        CLOSE_ALREADY_AUTHENTICATED: "already authenticated",
        CLOSE_INVALID_SEQ: "invalid seq",
        CLOSE_RATE_LIMITED: "rate limited (more than 120 sends in 60 s)",
        CLOSE_SESSION_TIMED_OUT: "session timed out",
        CLOSE_INVALID_SHARD: "invalid shard",
        CLOSE_SHARDING_REQUIRED: "sharding required",
        CLOSE_INVALID_API_VERSION: "invalid API version",
        CLOSE_INVALID_INTENTS: "invalid intents",
        CLOSE_DISALLOWED_INTENTS: "disallowed intents",
    }
    return names.get(code, "close code")
