"""The relay's event path (Bridge.publish_nowait): ids from the store, frames into the outbox, failures counted.

Real parts: a SQLite store and outbox in tmp_path, the Discord translator and the mirai encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.cache import DiscordCache
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.own_actions import OwnActions
from adapters.mirai.events_out import encode_event_frame
from relay.bridge import Bridge
from relay.config import MappingConfig, OutboxConfig
from relay.envelope import Command, MessageReceived, Result, Text
from relay.errors import CommandFailed, FailureKind
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore
from tests.unit.test_store import DM, G, msg

GUILD = 910
CHANNEL = 920
AUTHOR = 930
BOT = 999


class Identity:
    bot_id = BOT
    bot_name = "bot"


class NoCommands:
    async def execute(self, command: Command) -> Result:
        raise CommandFailed(FailureKind.UNSUPPORTED, "not part of these tests")


@pytest.fixture
def parts(tmp_path: Path) -> Any:
    path = str(tmp_path / "bridge.sqlite3")
    store = MessageStore.open(path, batch_size=10**9)
    outbox = Outbox(path, OutboxConfig())
    outbox.register("framework")
    bridge = Bridge(
        store=store,
        outbox=outbox,
        encode_frame=lambda event: encode_event_frame(event, bot_id=BOT, reserved_sync_id="-1"),
        executor=NoCommands(),
        identity=Identity(),
    )
    yield store, outbox, bridge
    outbox.close()
    store.close()


def source_ids(outbox: Outbox) -> list[int]:
    frames = [json.loads(frame) for _, frame in outbox.read_after(0, 100)]
    return [frame["data"]["messageChain"][0]["id"] for frame in frames]


def test_a_message_without_an_id_is_recorded_before_it_is_encoded(parts: Any) -> None:
    store, outbox, bridge = parts
    bridge.publish_nowait(MessageReceived(message=msg(5001)))
    bridge.publish_nowait(MessageReceived(message=msg(5002)))
    bridge.publish_nowait(MessageReceived(message=msg(6001, conversation=DM)))
    assert source_ids(outbox) == [1, 2, 1]
    stored = store.lookup_platform(5002)
    assert stored is not None and stored.local_id == 2


def test_a_message_the_store_built_keeps_its_id_and_is_recorded_once(parts: Any) -> None:
    store, outbox, bridge = parts
    message = store.record_new(
        conversation=G,
        channel_id=G.id,
        platform_id=7001,
        time=1_700_000_000,
        sender=msg(1).sender,
        segments=(Text("hi"),),
        group=msg(1).group,
    )
    assert message.local_id == 1 and store.pending == 1
    bridge.publish_nowait(MessageReceived(message=message))
    assert source_ids(outbox) == [1]
    assert store.pending == 1  # not recorded a second time
    assert bridge.statistics().events_published == 1


def test_live_messages_from_the_translator_arrive_with_their_ids(parts: Any) -> None:
    store, outbox, bridge = parts
    cache = DiscordCache()
    translator = DispatchTranslator(EntityFactory(cache, MappingConfig()), OwnActions(), new_message=store.record_new)
    translator.on_dispatch("READY", {"user": {"id": str(BOT), "username": "bot", "bot": True}, "guilds": []}, 0.0)
    channel = {"id": str(CHANNEL), "type": 0, "name": "general", "guild_id": str(GUILD)}
    translator.on_dispatch(
        "GUILD_CREATE",
        {"id": str(GUILD), "name": "g", "owner_id": str(AUTHOR), "roles": [], "channels": [channel], "members": []},
        0.0,
    )
    payload = {
        "id": "1400000000000000001",
        "channel_id": str(CHANNEL),
        "guild_id": str(GUILD),
        "author": {"id": str(AUTHOR), "username": "alice"},
        "member": {"roles": [], "joined_at": "2025-01-01T00:00:00+00:00"},
        "content": "hello",
        "type": 0,
    }
    (event,) = translator.on_dispatch("MESSAGE_CREATE", payload, 1.0)
    assert isinstance(event, MessageReceived) and event.message.local_id == 1
    bridge.publish_nowait(event)
    (again,) = translator.on_dispatch("MESSAGE_CREATE", payload, 2.0)  # a replay after a resume
    assert isinstance(again, MessageReceived) and again.message.local_id == 1  # keeps its id
    assert source_ids(outbox) == [1]
    assert store.pending == 1


def test_a_closed_store_is_a_counted_failure_not_a_message_without_an_id(parts: Any) -> None:
    store, outbox, bridge = parts
    store.close()
    message = store.record_new(
        conversation=G, channel_id=G.id, platform_id=8001, time=1, sender=msg(1).sender, segments=(Text("x"),)
    )
    assert message.local_id == 0  # built as the plain class would: the bridge reports the store's failure
    bridge.publish_nowait(MessageReceived(message=message))
    assert bridge.statistics().events_failed == 1
    assert outbox.read_after(0, 10) == []
