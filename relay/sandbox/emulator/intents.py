"""Which gateway events a session receives, by its intents (docs/discord.md §5), and MESSAGE_CONTENT gating; which
privileged intents an application's flags enable.

Events not in the tables (READY, RESUMED, USER_UPDATE, GUILD_MEMBERS_CHUNK, …) always arrive. A message's
``content``, ``embeds``, ``attachments`` and ``components`` reach a session without MESSAGE_CONTENT empty,
unless the bot wrote it, it is a DM, or it mentions the bot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

GUILDS: Final = 1 << 0
GUILD_MEMBERS: Final = 1 << 1
GUILD_MODERATION: Final = 1 << 2
GUILD_PRESENCES: Final = 1 << 8
GUILD_MESSAGES: Final = 1 << 9
GUILD_MESSAGE_REACTIONS: Final = 1 << 10
GUILD_MESSAGE_TYPING: Final = 1 << 11
DIRECT_MESSAGES: Final = 1 << 12
DIRECT_MESSAGE_REACTIONS: Final = 1 << 13
DIRECT_MESSAGE_TYPING: Final = 1 << 14
MESSAGE_CONTENT: Final = 1 << 15
#: must be enabled in the developer portal before a bot may ask for them (else close 4014)
PRIVILEGED: Final = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
#: every intent bit Discord defines today (bits above → close 4013)
ALL: Final = (1 << 26) - 1

#: application flags (Discord's application object): a privileged intent is enabled when either of its two bits
#: is set (``_LIMITED``: the Developer Portal toggle of an app in fewer than 100 servers)
GATEWAY_PRESENCE: Final = 1 << 12
GATEWAY_PRESENCE_LIMITED: Final = 1 << 13
GATEWAY_GUILD_MEMBERS: Final = 1 << 14
GATEWAY_GUILD_MEMBERS_LIMITED: Final = 1 << 15
GATEWAY_MESSAGE_CONTENT: Final = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED: Final = 1 << 19
#: what a new application of the emulator has: every privileged intent enabled in the "portal"
ALL_PRIVILEGED_INTENT_FLAGS: Final = (
    GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED | GATEWAY_MESSAGE_CONTENT_LIMITED
)

_MESSAGE_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK")
_REACTION_EVENTS = (
    "MESSAGE_REACTION_ADD",
    "MESSAGE_REACTION_REMOVE",
    "MESSAGE_REACTION_REMOVE_ALL",
    "MESSAGE_REACTION_REMOVE_EMOJI",
)

GUILD_EVENT_INTENTS: Final[Mapping[str, int]] = {
    **dict.fromkeys(
        (
            "GUILD_CREATE",
            "GUILD_UPDATE",
            "GUILD_DELETE",
            "GUILD_ROLE_CREATE",
            "GUILD_ROLE_UPDATE",
            "GUILD_ROLE_DELETE",
            "CHANNEL_CREATE",
            "CHANNEL_UPDATE",
            "CHANNEL_DELETE",
            "CHANNEL_PINS_UPDATE",
            "THREAD_CREATE",
            "THREAD_UPDATE",
            "THREAD_DELETE",
            "THREAD_LIST_SYNC",
        ),
        GUILDS,
    ),
    **dict.fromkeys(("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE"), GUILD_MEMBERS),
    **dict.fromkeys(
        ("GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_BAN_ADD", "GUILD_BAN_REMOVE"),
        GUILD_MODERATION,
    ),
    "PRESENCE_UPDATE": GUILD_PRESENCES,
    **dict.fromkeys(_MESSAGE_EVENTS, GUILD_MESSAGES),
    **dict.fromkeys(_REACTION_EVENTS, GUILD_MESSAGE_REACTIONS),
    "TYPING_START": GUILD_MESSAGE_TYPING,
}

DM_EVENT_INTENTS: Final[Mapping[str, int]] = {
    **dict.fromkeys((*_MESSAGE_EVENTS, "CHANNEL_PINS_UPDATE"), DIRECT_MESSAGES),
    **dict.fromkeys(_REACTION_EVENTS, DIRECT_MESSAGE_REACTIONS),
    "TYPING_START": DIRECT_MESSAGE_TYPING,
}


def enabled_by(application_flags: int) -> int:
    """The intents a bot may identify with under these application flags: every unprivileged one, and each
    privileged one whose flag (either of its two) is set; a privileged one not enabled closes 4014."""
    enabled = ALL & ~PRIVILEGED
    for intent, flags in (
        (GUILD_PRESENCES, GATEWAY_PRESENCE | GATEWAY_PRESENCE_LIMITED),
        (GUILD_MEMBERS, GATEWAY_GUILD_MEMBERS | GATEWAY_GUILD_MEMBERS_LIMITED),
        (MESSAGE_CONTENT, GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED),
    ):
        if application_flags & flags:
            enabled |= intent
    return enabled


def _emptied() -> dict[str, Any]:
    return {"content": "", "embeds": [], "attachments": [], "components": []}


def receives(intents: int, name: str, data: Mapping[str, Any], *, in_guild: bool, bot_id: int) -> bool:
    """Whether a session identified with ``intents`` gets dispatch ``name`` (``in_guild``: a guild's event)."""
    needed = (GUILD_EVENT_INTENTS if in_guild else DM_EVENT_INTENTS).get(name)
    if needed is None or intents & needed:
        return True
    # docs/discord.md §5: GUILD_MEMBER_UPDATE for the bot itself arrives even without GUILD_MEMBERS
    user = data.get("user")
    return name == "GUILD_MEMBER_UPDATE" and isinstance(user, Mapping) and user.get("id") == str(bot_id)


def needs_content_gate(intents: int, name: str, data: Mapping[str, Any], *, bot_id: int) -> bool:
    """Whether the message in ``data`` reaches this session with its content emptied (docs/discord.md §5)."""
    if intents & MESSAGE_CONTENT or name not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        return False
    return _gated(data, bot_id)


def _gated(message: Mapping[str, Any], bot_id: int) -> bool:
    if "guild_id" not in message:
        return False
    author = message.get("author")
    if isinstance(author, Mapping) and author.get("id") == str(bot_id):
        return False
    mentions = message.get("mentions") or []
    return not any(isinstance(u, Mapping) and u.get("id") == str(bot_id) for u in mentions)


def gate_content(message: Mapping[str, Any], bot_id: int) -> dict[str, Any]:
    """A copy of ``message`` (and of its ``referenced_message``) as a session without MESSAGE_CONTENT sees it."""
    data = {**message, **_emptied()} if _gated(message, bot_id) else dict(message)
    referenced = message.get("referenced_message")
    if isinstance(referenced, Mapping) and _gated(referenced, bot_id):
        data["referenced_message"] = {**referenced, **_emptied()}
    return data
