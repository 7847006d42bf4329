"""Back-fill after a lost gateway session: which channels to read back, holding their live messages meanwhile, and
delivering the missed ones first, in order, each once (issue 15; docs/discord.md §2.7, §2.9, §9 "history").

A resume replays what Discord sent while the bridge was away. When there is no resume — the bridge crashed and
its saved session was refused or too old, Discord invalidated the session (op 9), or a server never resumes —
every dispatch of the gap is gone, and a new session starts with READY. The messages among them are still in
each channel's history. So after every READY, each guild's GUILD_CREATE starts one *gap* per bridged channel
(and cached thread): the trio shell (:mod:`adapters.discord.backfill_task`) reads the channel's history after the
newest message the store knows (``GET /channels/{id}/messages?after=``, 100 a page, through the REST client's rate
limiter), bounded by ``[discord.backfill]`` ``max_age_seconds`` and ``max_messages``, and hands it to
:meth:`Backfill.finish`.

**Order and duplicates.** From the GUILD_CREATE on, the channel's live MESSAGE_CREATE/DELETE dispatches are
*held* (:meth:`Backfill.holds`). :meth:`Backfill.finish` then delivers the history oldest first, then the held
dispatches in arrival order, skipping every message the store already knows (``known``: delivered before the
session was lost, or read back and live both): the framework sees the channel in Discord's order, each message
once. A channel whose store knows no message (new, or a first start) is not read back.

**What cannot be recovered** is said in one line per guild: every event other than a message during the gap
(edits, deletions, reactions, member changes), channels whose gap is older than the window or longer than
``max_messages``, and channels whose history could not be read. After a crash, the first messages read back may
have reached a framework just before it (a store flush had not recorded them yet): they lie within one flush
interval after the first message read back, and the line counts them as possible duplicates.

Pure: no trio, no clock (``now`` is a parameter), no I/O; the store and the delivery path are injected callables.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from adapters.discord.entities import EntityFactory
from adapters.discord.gateway.events import DispatchReceived
from adapters.discord.snowflakes import parse_snowflake, snowflake_time
from relay.config import BackfillConfig

#: dispatches held while their channel is back-filled (the ones that concern a channel's messages)
HELD_DISPATCHES: Final = frozenset({"MESSAGE_CREATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK"})
#: live dispatches held per channel at most; beyond it they flow on (order is then not guaranteed, and said so)
MAX_HELD: Final = 20_000
#: seconds a message may take from its creation to the bridge (counted with the flush interval for duplicates)
DELIVERY_SLACK: Final = 0.2

#: (conversation id, channel id): the group a channel's messages belong to, and the channel itself
ChannelKey = tuple[int, int]


@attrs.frozen(kw_only=True)
class Gap:
    """One channel to read back: its guild, its group (conversation) and the channel itself."""

    shard_id: int
    guild_id: int
    conversation_id: int
    channel_id: int
    after_restart: bool  #: the first session of this process (a crash may have left duplicates)
    round_id: int  #: the guild's back-fill this gap belongs to (one log line each)
    #: when the lost session was last known to deliver (epoch seconds; None: unknown): where a channel whose store
    #: knows no message is read back from
    lost_at: float | None = None


@attrs.frozen(kw_only=True)
class GapHistory:
    """What the shell read for one gap: the messages (any order), and what kept it from reading everything."""

    messages: Sequence[Mapping[str, Any]] = ()
    nothing_known: bool = False  #: the store knows no message of the channel: not read back
    beyond_window: bool = False  #: the newest known message is older than max_age_seconds: older ones not read
    truncated: bool = False  #: max_messages reached before the end of the gap
    failure: str = ""  #: why the history could not be read (the rest of the gap is lost)


@attrs.define
class _GuildRound:
    """The gaps of one guild after one READY, and what their back-fill came to (one log line at the end)."""

    shard_id: int
    guild_id: int
    after_restart: bool
    open_gaps: int = 0
    channels: int = 0
    read: int = 0  #: channels read back (the others: the store knew no message of them)
    filled: int = 0  #: channels with at least one message delivered
    delivered: int = 0
    already_known: int = 0
    possible_duplicates: int = 0
    beyond_window: list[int] = attrs.field(factory=list)
    truncated: list[int] = attrs.field(factory=list)
    failed: list[str] = attrs.field(factory=list)
    overflowed: list[int] = attrs.field(factory=list)


class Backfill:
    """The back-fill's state (see the module docstring). Fed by the gateway listener; finished by the shell.

    ``channels_of(guild_id)`` lists the bridged channels (and threads) of a guild as (conversation, channel);
    ``known(message_id)`` says whether the store has recorded a message; ``conversation_known(conversation_id)``
    whether it has recorded any message of a conversation (a cheap look in memory); ``wake()`` tells the shell
    gaps wait.
    """

    def __init__(
        self,
        config: BackfillConfig,
        *,
        channels_of: Callable[[int], list[ChannelKey]],
        known: Callable[[int], bool],
        conversation_known: Callable[[int], bool] = lambda _conversation_id: True,
        wake: Callable[[], None] = lambda: None,
        flush_interval: float = 0.05,
    ) -> None:
        self.config = config
        self._channels_of = channels_of
        self._known = known
        self._conversation_known = conversation_known
        self.wake = wake
        self._flush_interval = flush_interval
        #: guild id → shard id: listed by a READY, back-filled when its GUILD_CREATE arrives
        self._awaiting: dict[int, tuple[int, bool, float | None]] = {}
        self._sessions_seen: set[int] = set()  #: shards that had a READY in this process
        self._held: dict[int, list[DispatchReceived]] = {}  #: channel id → dispatches held, arrival order
        self._again: set[int] = set()  #: channels whose gap opened again while being read
        self._rounds: dict[int, _GuildRound] = {}
        self._round_ids = 0
        self._jobs: collections.deque[Gap] = collections.deque()
        #: shard id → the message ids of a replay across a restart, while it lasts
        self.replaying: dict[int, list[int]] = {}

    @property
    def enabled(self) -> bool:
        return self.config.max_age_seconds > 0 and self.config.max_messages > 0

    # ----------------------------------------------------------------- fed by the gateway listener

    def session_started(self, shard_id: int, guild_ids: Iterable[int], *, lost_at: float | None) -> None:
        """A READY (a new session: whatever was sent before it on this shard is gone): its guilds get read back
        when their GUILD_CREATE arrives. ``lost_at``: when the previous session last delivered (its disconnect,
        or the previous run's last saved state), None when unknown (a first start)."""
        if not self.enabled:
            return
        after_restart = shard_id not in self._sessions_seen
        self._sessions_seen.add(shard_id)
        for guild_id in guild_ids:
            self._awaiting[guild_id] = (shard_id, after_restart, lost_at)

    def resuming(self, shard_id: int) -> None:
        """A connection opened to resume: the dispatches until RESUMED are a replay. The first resume of this
        process is one across a restart, whose first replayed messages may have been delivered before it."""
        if shard_id not in self._sessions_seen:
            self.replaying[shard_id] = []

    def replayed(self, shard_id: int, data: object) -> None:
        """A MESSAGE_CREATE of a replay across a restart (only called while :attr:`replaying` holds the shard)."""
        found = self.replaying.get(shard_id)
        message_id = parse_snowflake(data.get("id")) if found is not None and isinstance(data, dict) else None
        if found is not None and message_id is not None:
            found.append(message_id)

    def session_resumed(self, shard_id: int, replayed: int) -> str | None:
        """A RESUMED: the session went on, nothing to read back. After a restart, the line that says so: how many
        dispatches were replayed and how many of their messages may have reached a framework before the restart
        (those within one flush interval of the first: the last ones the previous run delivered before saving)."""
        self._sessions_seen.add(shard_id)
        messages = self.replaying.pop(shard_id, None)
        if messages is None:
            return None
        duplicates = 0
        if messages:
            first = snowflake_time(min(messages))
            limit = first + self._flush_interval + DELIVERY_SLACK
            duplicates = sum(1 for m in messages if snowflake_time(m) <= limit)
        return (
            f"shard {shard_id}: resumed the session of the previous run; {replayed} dispatches replayed "
            f"({len(messages)} messages), up to {duplicates} of which (one store flush interval) may have reached "
            "a framework before the restart too"
        )

    def guild_available(self, guild_id: int) -> None:
        """Its GUILD_CREATE was handled (the cache knows its channels): open a gap per bridged channel, hold their
        live messages from now on, and wake the shell."""
        awaited = self._awaiting.pop(guild_id, None)
        if awaited is None:
            return  # a guild the bot just joined, or one after a resume: nothing was missed
        shard_id, after_restart, lost_at = awaited
        channels = self._channels_of(guild_id)
        if lost_at is None:
            # No time the session was lost at (a first start, or a previous run that never saved one): a channel
            # is read back only after the newest message the store knows of it, so one of a conversation the
            # store knows nothing of has nothing to read. Leaving it out here, rather than in the shell's read,
            # spares its live messages a hold behind a worker-thread look at the file: on a first start every
            # channel's first messages waited for one (issue 18: READY → the first message relayed, 1 guild)
            channels = [channel for channel in channels if self._conversation_known(channel[0])]
        if not channels:
            return
        self._round_ids += 1
        round_id = self._round_ids
        round_ = self._rounds[round_id] = _GuildRound(shard_id, guild_id, after_restart)
        for conversation_id, channel_id in channels:
            round_.channels += 1
            if channel_id in self._held:
                self._again.add(channel_id)  # being read already: read again after it (rare: a second READY)
            else:
                self._held[channel_id] = []
            round_.open_gaps += 1
            self._jobs.append(
                Gap(
                    shard_id=shard_id,
                    guild_id=guild_id,
                    conversation_id=conversation_id,
                    channel_id=channel_id,
                    after_restart=after_restart,
                    round_id=round_id,
                    lost_at=lost_at,
                )
            )
        self.wake()

    def holds(self, event: DispatchReceived) -> bool:
        """True when ``event`` concerns a channel being read back: it is kept and delivered after the history."""
        if not self._held or event.name not in HELD_DISPATCHES or not isinstance(event.data, dict):
            return False
        channel_id = parse_snowflake(event.data.get("channel_id"))
        held = self._held.get(channel_id) if channel_id is not None else None
        if held is None:
            return False
        if len(held) >= MAX_HELD:
            return False  # memory stays bounded; the round says this channel's order was not kept
        held.append(event)
        return True

    # ----------------------------------------------------------------- used by the shell

    def take_gaps(self) -> list[Gap]:
        """The gaps opened since the last call, to read."""
        gaps = list(self._jobs)
        self._jobs.clear()
        return gaps

    def window_start(self, now: float) -> float:
        """The oldest time a gap is read back to (epoch seconds)."""
        return now - self.config.max_age_seconds

    def finish(
        self, gap: Gap, history: GapHistory, deliver: Callable[[DispatchReceived], None]
    ) -> tuple[str, bool] | None:
        """Deliver the gap's missed messages oldest first, then what was held, each message the store does not
        know yet, through ``deliver`` (the gateway listener's path, so they become events like live ones), and stop
        holding the channel. Returns the guild's report line and whether it is a warning, once its last gap is
        done."""
        round_ = self._rounds.get(gap.round_id)
        held = self._held.pop(gap.channel_id, [])
        if gap.channel_id in self._again:
            self._again.discard(gap.channel_id)
            self._held[gap.channel_id] = []  # a later gap of the same channel is queued: keep holding for it
        ordered = sorted(
            (m for m in history.messages if parse_snowflake(m.get("id")) is not None),
            key=lambda m: int(m["id"]),
        )
        delivered = already = 0
        first_time: float | None = None
        duplicates = 0
        for message in ordered:
            message_id = int(message["id"])
            if self._known(message_id):
                already += 1
                continue
            data = dict(message)
            data.setdefault("guild_id", str(gap.guild_id))  # REST messages carry none (docs/discord.md §6.2)
            deliver(DispatchReceived(shard_id=gap.shard_id, name="MESSAGE_CREATE", seq=None, data=data))
            delivered += 1
            created = snowflake_time(message_id)
            if first_time is None:
                first_time = created
            if gap.after_restart and created <= first_time + self._flush_interval + DELIVERY_SLACK:
                duplicates += 1
        for event in held:
            live_id = parse_snowflake(event.data.get("id")) if event.name == "MESSAGE_CREATE" else None
            if live_id is not None and self._known(live_id):
                already += 1  # read back above, and live as well
                continue
            deliver(event)
        if round_ is None:
            return None
        round_.open_gaps -= 1
        round_.delivered += delivered
        round_.already_known += already
        round_.possible_duplicates += duplicates
        if delivered:
            round_.filled += 1
        if not history.nothing_known:
            round_.read += 1
        if history.beyond_window:
            round_.beyond_window.append(gap.channel_id)
        if history.truncated:
            round_.truncated.append(gap.channel_id)
        if history.failure:
            round_.failed.append(f"{gap.channel_id} ({history.failure})")
        if len(held) >= MAX_HELD:
            round_.overflowed.append(gap.channel_id)
        if round_.open_gaps:
            return None
        del self._rounds[gap.round_id]
        if not round_.read:
            return None  # nothing known anywhere (a first start): nothing was read, nothing to say
        return self._report(round_)

    def _report(self, round_: _GuildRound) -> tuple[str, bool]:
        cause = "after a restart" if round_.after_restart else "after the gateway session was lost"
        line = (
            f"shard {round_.shard_id}, guild {round_.guild_id}: new gateway session {cause}; back-filled "
            f"{round_.delivered} missed messages in {round_.filled} of {round_.channels} channels from their history"
        )
        if round_.already_known:
            line += f" ({round_.already_known} read back were delivered already and skipped)"
        if round_.after_restart and round_.possible_duplicates:
            line += (
                f"; up to {round_.possible_duplicates} of them (one store flush interval) may have reached a "
                "framework before the restart too"
            )
        lost = ["events other than new messages during the gap (edits, deletions, reactions, member changes)"]
        if round_.beyond_window:
            lost.append(
                f"messages older than {self.config.max_age_seconds} s in {len(round_.beyond_window)} channels "
                f"beyond the window ({_ids(round_.beyond_window)}; [discord.backfill] max_age_seconds)"
            )
        if round_.truncated:
            lost.append(
                f"messages after the first {self.config.max_messages} in {len(round_.truncated)} channels "
                f"({_ids(round_.truncated)}; [discord.backfill] max_messages)"
            )
        if round_.failed:
            lost.append(
                f"the history of {len(round_.failed)} channels that could not be read: {'; '.join(round_.failed)}"
            )
        if round_.overflowed:
            lost.append(
                f"Discord's order in {len(round_.overflowed)} channels too busy to hold ({_ids(round_.overflowed)})"
            )
        line += "; not recovered: " + ", ".join(lost)
        return line, len(lost) > 1


def channels_to_read(entities: EntityFactory, guild_id: int) -> list[ChannelKey]:
    """A guild's channels whose messages the bridge relays — its bridged text channels and the threads the cache
    knows of them — as (conversation, channel): what :class:`Backfill` reads back after a lost session."""
    found: list[ChannelKey] = [(group.id, group.id) for group in entities.bridged_groups(guild_id)]
    for channel in entities.cache.guild_channels(guild_id):
        if channel.is_thread:
            group = entities.group_for_channel(channel.id, guild_id)
            if group is not None:
                found.append((group.id, channel.id))
    return found


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
