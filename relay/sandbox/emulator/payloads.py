"""Gateway payload shapes built from the world's objects (docs/discord.md §6.1): what a dispatch's ``d`` holds.

REST answers carry the stored objects as they are; the gateway adds what only it sends: ``guild_id`` and the
author's partial ``member`` (no ``user``) on MESSAGE_CREATE, a partial ``member`` on each mention, the
GUILD_CREATE extras (channels without ``guild_id``, members, counts), ``guild_id`` on member events.
Pure functions over the world's dictionaries; they copy, never mutate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

JSON = dict[str, Any]

#: Identify's default large_threshold (docs/discord.md §2.5)
LARGE_THRESHOLD: Final = 50


def partial_member(member: Mapping[str, Any]) -> JSON:
    """A member as MESSAGE_CREATE carries it: every field but ``user``."""
    return {k: v for k, v in member.items() if k != "user"}


def message_create(message: Mapping[str, Any], members: Mapping[tuple[int, int], JSON]) -> JSON:
    """MESSAGE_CREATE/UPDATE ``d`` for a stored message: author's partial member and members on mentions."""
    data = dict(message)
    guild_id = data.get("guild_id")
    if guild_id is None:
        return data
    guild = int(guild_id)
    author = members.get((guild, int(data["author"]["id"])))
    if author is not None:
        data["member"] = partial_member(author)
    mentions = []
    for user in data.get("mentions") or []:
        member = members.get((guild, int(user["id"])))
        mentions.append(dict(user, member=partial_member(member)) if member is not None else user)
    data["mentions"] = mentions
    return data


def guild_create(
    guild: Mapping[str, Any],
    channels: list[JSON],
    members: list[JSON],
    joined_at: str,
    *,
    large_threshold: int = LARGE_THRESHOLD,
    own_member: JSON | None = None,
) -> JSON:
    """GUILD_CREATE ``d``: the guild object with its channels (no ``guild_id`` inside), members and counts. A guild
    of more than ``large_threshold`` members is ``large`` and lists only the bot's ``own_member`` (docs/discord.md §5:
    offline members are left out, and without GUILD_PRESENCES everyone but the bot and members in voice)."""
    large = len(members) > large_threshold
    listed = ([] if own_member is None else [own_member]) if large else members
    data = dict(guild)
    data["channels"] = [{k: v for k, v in c.items() if k != "guild_id"} for c in channels]
    data["members"] = [dict(m) for m in listed]
    data.update(
        joined_at=joined_at,
        large=large,
        unavailable=False,
        member_count=len(members),
        threads=[],
        presences=[],
        voice_states=[],
        stage_instances=[],
        guild_scheduled_events=[],
    )
    return data


def member_event(guild_id: int, member: Mapping[str, Any]) -> JSON:
    """GUILD_MEMBER_ADD/UPDATE ``d``: the full member with ``guild_id``."""
    return {**member, "guild_id": str(guild_id)}


def member_remove(guild_id: int, user: Mapping[str, Any]) -> JSON:
    return {"guild_id": str(guild_id), "user": dict(user)}


def with_guild(guild_id: int, obj: Mapping[str, Any]) -> JSON:
    """An object plus ``guild_id`` (audit log entries, bans)."""
    return {**obj, "guild_id": str(guild_id)}
