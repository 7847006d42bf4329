"""The back-fill's pure core: which gaps open, what is held, the order and uniqueness of what is delivered, and
the one line that says what was and was not recovered (adapters/discord/backfill.py)."""

from __future__ import annotations

from typing import Any

from adapters.discord.backfill import MAX_HELD, Backfill, GapHistory
from adapters.discord.gateway.events import DispatchReceived
from adapters.discord.snowflakes import snowflake_at
from relay.config import BackfillConfig

GUILD = 10
GENERAL = 11
RANDOM = 12
T0 = 1_800_000_000.0


def message_id(seconds: float, n: int = 0) -> int:
    return snowflake_at(T0 + seconds) + n


def message(mid: int, channel: int = GENERAL) -> dict[str, Any]:
    return {"id": str(mid), "channel_id": str(channel), "content": f"m{mid}", "author": {"id": "5"}}


def live(mid: int, channel: int = GENERAL, name: str = "MESSAGE_CREATE") -> DispatchReceived:
    return DispatchReceived(shard_id=0, name=name, seq=None, data=message(mid, channel))


class World:
    def __init__(self, config: BackfillConfig | None = None, conversations: set[int] | None = None) -> None:
        self.known: set[int] = set()
        #: the conversations the store has recorded a message of
        self.conversations = {GENERAL, RANDOM} if conversations is None else conversations
        self.delivered: list[DispatchReceived] = []
        self.wakes = 0
        self.backfill = Backfill(
            config or BackfillConfig(),
            channels_of=lambda guild: [(GENERAL, GENERAL), (RANDOM, RANDOM)] if guild == GUILD else [],
            known=self.known.__contains__,
            conversation_known=self.conversations.__contains__,
            wake=self.wake,
        )

    def wake(self) -> None:
        self.wakes += 1

    def deliver(self, event: DispatchReceived) -> None:
        self.delivered.append(event)
        if event.name == "MESSAGE_CREATE":
            self.known.add(int(event.data["id"]))  # the store records what the translator builds

    def ids(self) -> list[int]:
        return [int(e.data["id"]) for e in self.delivered]


def test_only_guilds_of_a_new_session_are_read_back_and_their_channels_held() -> None:
    world = World()
    backfill = world.backfill
    backfill.guild_available(GUILD)  # a GUILD_CREATE without READY: the bot joined; nothing was missed
    assert backfill.take_gaps() == [] and not backfill.holds(live(1))
    backfill.session_started(0, [GUILD], lost_at=None)
    backfill.guild_available(GUILD)
    gaps = backfill.take_gaps()
    assert [(g.conversation_id, g.channel_id, g.after_restart) for g in gaps] == [
        (GENERAL, GENERAL, True),
        (RANDOM, RANDOM, True),
    ]
    assert world.wakes == 1
    assert backfill.holds(live(1)) and backfill.holds(live(2, RANDOM, "MESSAGE_DELETE"))
    assert not backfill.holds(live(3, 99))  # another channel flows on
    backfill.session_resumed(0, 0)
    backfill.guild_available(GUILD)
    assert backfill.take_gaps() == []  # a resume replays: nothing to read back


def test_without_a_lost_time_only_conversations_the_store_knows_are_read_back() -> None:
    # a first start: the store knows nothing, so nothing is read back and nothing is held (no wait for the shell)
    world = World(conversations=set())
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=None)
    backfill.guild_available(GUILD)
    assert backfill.take_gaps() == [] and world.wakes == 0
    assert not backfill.holds(live(1)) and not backfill.holds(live(2, RANDOM))
    # a store that knows one of the two conversations: that channel alone is read back after its newest message
    world = World(conversations={RANDOM})
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=None)
    backfill.guild_available(GUILD)
    assert [(g.conversation_id, g.channel_id) for g in backfill.take_gaps()] == [(RANDOM, RANDOM)]
    assert not backfill.holds(live(1)) and backfill.holds(live(2, RANDOM))


def test_a_session_lost_at_a_known_time_reads_back_every_channel() -> None:
    # channels silent until the gap are read from the time the session was lost, known to the store or not
    world = World(conversations=set())
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=T0)
    backfill.guild_available(GUILD)
    assert [g.channel_id for g in backfill.take_gaps()] == [GENERAL, RANDOM]
    assert backfill.holds(live(1)) and backfill.holds(live(2, RANDOM))


def test_history_first_then_held_each_message_once_in_order() -> None:
    world = World()
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=None)
    backfill.guild_available(GUILD)
    general, other = backfill.take_gaps()
    world.known.add(message_id(1))  # delivered before the session was lost
    held = [live(message_id(4)), live(message_id(5)), live(message_id(2), name="MESSAGE_DELETE")]
    for event in held:
        assert backfill.holds(event)
    history = [message(message_id(s)) for s in (3, 1, 4, 2)]  # any order; 4 is also live
    assert backfill.finish(general, GapHistory(messages=history), world.deliver) is None  # RANDOM still open
    assert world.ids() == [message_id(2), message_id(3), message_id(4), message_id(5), message_id(2)]
    assert [e.name for e in world.delivered][-1] == "MESSAGE_DELETE"
    assert all(e.data.get("guild_id") == str(GUILD) for e in world.delivered[:3])  # REST messages get theirs
    assert not backfill.holds(live(message_id(6)))  # the channel flows again
    done = backfill.finish(other, GapHistory(nothing_known=True), world.deliver)
    assert done is not None
    line, warning = done
    assert not warning
    assert "back-filled 3 missed messages in 1 of 2 channels" in line
    assert "(2 read back were delivered already and skipped)" in line
    assert "not recovered: events other than new messages during the gap" in line


def test_after_a_restart_the_first_interval_is_counted_as_possible_duplicates() -> None:
    world = World()
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=T0)
    backfill.guild_available(GUILD)
    general, other = backfill.take_gaps()
    history = [message(message_id(s / 100, n)) for n, s in enumerate(range(0, 200, 5))]  # every 50 ms for 2 s
    backfill.finish(general, GapHistory(messages=history), world.deliver)
    done = backfill.finish(other, GapHistory(), world.deliver)
    assert done is not None
    line, _ = done
    assert "after a restart" in line
    # the first 0.25 s (flush interval 0.05 + delivery slack 0.2): 6 messages, not the 40 read back
    assert "up to 6 of them (one store flush interval) may have reached a framework before the restart" in line


def test_no_duplicate_count_when_the_session_was_lost_while_running() -> None:
    world = World()
    backfill = world.backfill
    backfill.session_started(0, [], lost_at=None)  # the process's first session
    backfill.session_started(0, [GUILD], lost_at=T0)  # a later one: the store saw everything delivered
    backfill.guild_available(GUILD)
    gaps = backfill.take_gaps()
    assert not gaps[0].after_restart and gaps[0].lost_at == T0
    backfill.finish(gaps[0], GapHistory(messages=[message(message_id(1))]), world.deliver)
    done = backfill.finish(gaps[1], GapHistory(), world.deliver)
    assert done is not None and "may have reached" not in done[0] and "session was lost" in done[0]


def test_what_could_not_be_recovered_is_a_warning_naming_the_channels_and_the_keys() -> None:
    world = World(BackfillConfig(max_age_seconds=600, max_messages=100))
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=None)
    backfill.guild_available(GUILD)
    general, other = backfill.take_gaps()
    backfill.finish(general, GapHistory(beyond_window=True, truncated=True), world.deliver)
    done = backfill.finish(other, GapHistory(failure="HTTP 403, Discord error 50001: Missing Access"), world.deliver)
    assert done is not None
    line, warning = done
    assert warning
    assert f"messages older than 600 s in 1 channels beyond the window ({GENERAL}; [discord.backfill] max_age" in line
    assert f"messages after the first 100 in 1 channels ({GENERAL}; [discord.backfill] max_messages)" in line
    assert f"could not be read: {RANDOM} (HTTP 403, Discord error 50001: Missing Access)" in line


def test_held_dispatches_are_bounded() -> None:
    world = World()
    backfill = world.backfill
    backfill.session_started(0, [GUILD], lost_at=None)
    backfill.guild_available(GUILD)
    for n in range(MAX_HELD):
        assert backfill.holds(live(message_id(1, n)))
    assert not backfill.holds(live(message_id(2)))  # flows on rather than grow memory


def test_disabled_by_either_bound() -> None:
    for config in (BackfillConfig(max_age_seconds=0), BackfillConfig(max_messages=0)):
        world = World(config)
        world.backfill.session_started(0, [GUILD], lost_at=None)
        world.backfill.guild_available(GUILD)
        assert world.backfill.take_gaps() == []


def test_a_resume_across_a_restart_says_what_was_replayed_and_what_may_be_twice() -> None:
    world = World()
    backfill = world.backfill
    backfill.resuming(0)  # the first connection of this process resumes the saved session
    for n, seconds in enumerate([0.0, 0.1, 0.2, 1.0, 2.0]):
        backfill.replayed(0, message(message_id(seconds, n)))
    line = backfill.session_resumed(0, replayed=7)
    assert line is not None
    assert "resumed the session of the previous run; 7 dispatches replayed (5 messages)" in line
    assert "up to 3 of which (one store flush interval)" in line  # those within 0.25 s of the first
    backfill.resuming(0)  # a later resume of the same process: nothing to say, no tracking
    assert not backfill.replaying
    assert backfill.session_resumed(0, replayed=3) is None
