"""``[discord.presence]`` → the Identify ``presence`` object (docs/discord.md §2.5)."""

from __future__ import annotations

import pytest

from adapters.discord.gateway.presence import identify_presence
from relay.config import ActivityType, PresenceConfig, PresenceStatus


def test_default_presence_is_online_without_activity() -> None:
    assert identify_presence(PresenceConfig()) == {"since": None, "activities": [], "status": "online", "afk": False}


@pytest.mark.parametrize(
    ("activity", "code"),
    [
        (ActivityType.PLAYING, 0),
        (ActivityType.LISTENING, 2),
        (ActivityType.WATCHING, 3),
        (ActivityType.COMPETING, 5),
    ],
)
def test_named_activities(activity: ActivityType, code: int) -> None:
    presence = identify_presence(PresenceConfig(status=PresenceStatus.IDLE, activity=activity, text="mirai"))
    assert presence == {"since": None, "activities": [{"name": "mirai", "type": code}], "status": "idle", "afk": False}


def test_streaming_carries_its_url() -> None:
    config = PresenceConfig(activity=ActivityType.STREAMING, text="talks", url="https://twitch.tv/x")
    assert identify_presence(config)["activities"] == [{"name": "talks", "type": 1, "url": "https://twitch.tv/x"}]


def test_custom_status_text_is_the_state() -> None:
    config = PresenceConfig(status=PresenceStatus.DND, activity=ActivityType.CUSTOM, text="bridging QQ bots")
    assert identify_presence(config) == {
        "since": None,
        "activities": [{"name": "Custom Status", "type": 4, "state": "bridging QQ bots"}],
        "status": "dnd",
        "afk": False,
    }
