"""The gateway listener (adapters/discord/listener.py): dispatches to the sink, and who is told a session started."""

from __future__ import annotations

from adapters.discord.cache import DiscordCache
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.gateway.close_codes import CloseAction
from adapters.discord.gateway.events import DispatchReceived, ResumeState, ShardDisconnected, ShardReady, ShardResumed
from adapters.discord.listener import gateway_listener
from adapters.discord.own_actions import OwnActions
from relay import envelope as env
from relay.config import MappingConfig

BOT = 9000
SESSION = ResumeState(session_id="s1", seq=1, resume_url="wss://gateway.example")
BOT_USER = {"id": str(BOT), "username": "bot", "bot": True}
READY = {"v": 10, "user": BOT_USER, "guilds": [], "session_id": "s1"}


class Sink:
    def __init__(self) -> None:
        self.events: list[env.Event] = []

    def publish_nowait(self, event: env.Event) -> None:
        self.events.append(event)


def test_a_session_start_or_resume_is_told_after_ready_was_translated() -> None:
    """What waits for the bot id (relay.ports.IdentityChanged) is woken when a session starts or resumes, and by
    then the cache knows the bot: the shard hands READY's dispatch over before its ShardReady."""
    cache = DiscordCache()
    sink = Sink()
    bot_ids_seen: list[int] = []
    listener = gateway_listener(
        DispatchTranslator(EntityFactory(cache, MappingConfig()), OwnActions()),
        sink,
        lambda: 1_700_000_000.0,
        on_session=lambda: bot_ids_seen.append(cache.bot_id),
    )
    listener(DispatchReceived(shard_id=0, name="READY", seq=1, data=READY))
    assert bot_ids_seen == []  # a dispatch, even READY's, is not the session's start
    listener(ShardReady(shard_id=0, session=SESSION, user=BOT_USER, guild_ids=()))
    assert bot_ids_seen == [BOT]
    listener(ShardDisconnected(shard_id=0, code=1006, action=CloseAction.RESUME, will_retry_in=1.0, reason="lost"))
    assert bot_ids_seen == [BOT]
    listener(ShardResumed(shard_id=0, session=SESSION, replayed=0))
    assert bot_ids_seen == [BOT, BOT]
    assert any(isinstance(event, env.BotStatusChanged) for event in sink.events)


def test_without_on_session_a_session_start_is_only_translated() -> None:
    cache = DiscordCache()
    listener = gateway_listener(
        DispatchTranslator(EntityFactory(cache, MappingConfig()), OwnActions()), Sink(), lambda: 0.0
    )
    listener(DispatchReceived(shard_id=0, name="READY", seq=1, data=READY))
    listener(ShardReady(shard_id=0, session=SESSION, user=BOT_USER, guild_ids=()))
    assert cache.bot_id == BOT
