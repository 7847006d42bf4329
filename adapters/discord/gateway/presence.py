"""``[discord.presence]`` as Discord wants it in Identify (op 2) and Presence Update (op 3) (pure).

docs/discord.md §2.5: ``presence`` is ``{"since", "activities", "status", "afk"}``; a bot may set only an activity's
``name``, ``type``, ``state`` and ``url`` (Discord's activity object notes). Activity types: 0 Playing,
1 Streaming (``url`` shown only for Twitch and YouTube), 2 Listening, 3 Watching, 4 Custom (the text is the
``state``; ``name`` is still required), 5 Competing.
"""

from __future__ import annotations

from typing import Final

from relay.config import ActivityType, PresenceConfig

__all__ = ["ACTIVITY_TYPE_CODES", "CUSTOM_STATUS_NAME", "identify_presence"]

ACTIVITY_TYPE_CODES: Final[dict[ActivityType, int]] = {
    ActivityType.PLAYING: 0,
    ActivityType.STREAMING: 1,
    ActivityType.LISTENING: 2,
    ActivityType.WATCHING: 3,
    ActivityType.CUSTOM: 4,
    ActivityType.COMPETING: 5,
}

#: the ``name`` of a custom status (Discord requires one and shows the ``state``), as Discord's clients send it
CUSTOM_STATUS_NAME: Final = "Custom Status"


def identify_presence(presence: PresenceConfig) -> dict[str, object]:
    """The ``presence`` field of Identify (and the ``d`` of op 3), from the checked configuration."""
    activities: list[dict[str, object]] = []
    if presence.activity is ActivityType.CUSTOM:
        activities.append({"name": CUSTOM_STATUS_NAME, "type": 4, "state": presence.text})
    elif presence.activity is not ActivityType.NONE:
        activity: dict[str, object] = {"name": presence.text, "type": ACTIVITY_TYPE_CODES[presence.activity]}
        if presence.activity is ActivityType.STREAMING:
            activity["url"] = presence.url
        activities.append(activity)
    return {"since": None, "activities": activities, "status": presence.status.value, "afk": False}
