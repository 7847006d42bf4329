"""Who recalled a message: the bot, a moderator named by the audit log, or its author (issue 15; docs/discord.md §6.1).

MESSAGE_DELETE says neither who wrote the message nor who deleted it; mirai's GroupRecallEvent wants the operator
(``null`` meaning the bot, docs/mirai-api-http.md §9.4). So:

* the bridge's own deletes are noted by commands_out (:meth:`OwnActions.note_recalled`): operator the bot;
* a moderator's delete of someone else's message writes an audit-log entry (MESSAGE_DELETE, type 72: ``user_id``
  the moderator, ``target_id`` the author, ``options.channel_id``, ``options.count``; MESSAGE_BULK_DELETE, type
  73, ``target_id`` the channel), which reaches the bot as GUILD_AUDIT_LOG_ENTRY_CREATE when it may view the
  audit log. Discord does not order it with the MESSAGE_DELETE, so a recall in a guild whose audit log the bot
  sees waits up to :data:`AUDIT_WAIT` seconds for its entry (an entry that came first is remembered as long);
* anything else is a self-deletion: operator the author (the message's author comes from the store).

:class:`RecallOperators` holds the waiting recalls and the unmatched entries, both bounded. Pure: ``now`` is a
parameter; the translator builds the operator members.
"""

from __future__ import annotations

import collections
from typing import Final

import attrs

#: seconds a recall waits for its audit-log entry (and an entry for its recall) before the author is taken
AUDIT_WAIT: Final = 2.0
#: recalls waiting and entries unmatched, at most each (a deletion spree must not grow memory)
MAX_WAITING: Final = 1_000
# docs/discord.md §6.1 audit-log action types
AUDIT_MESSAGE_DELETE: Final = 72
AUDIT_MESSAGE_BULK_DELETE: Final = 73


@attrs.frozen(kw_only=True)
class PendingRecall:
    """A recall waiting for its audit-log entry. ``bulk``: from MESSAGE_DELETE_BULK (matched by channel alone)."""

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int  #: 0 when the store does not know the message
    bulk: bool
    deadline: float


@attrs.define
class _Entry:
    operator_id: int
    count: int
    expires: float


class RecallOperators:
    """Matches recalls with the audit-log entries that name their operator (see the module docstring)."""

    def __init__(self) -> None:
        self._waiting: collections.deque[PendingRecall] = collections.deque()
        #: (channel, author or 0 for a bulk delete) → the moderator and how many deletes the entry covers
        self._entries: collections.OrderedDict[tuple[int, int], _Entry] = collections.OrderedDict()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def operator_from_entry(self, channel_id: int, author_id: int, *, bulk: bool, now: float) -> int | None:
        """The moderator an audit-log entry that came first names for this delete (consumed), else None."""
        key = (channel_id, 0 if bulk else author_id)
        entry = self._entries.get(key)
        if entry is None or entry.expires < now:
            self._entries.pop(key, None)
            return None
        entry.count -= 1
        if entry.count <= 0:
            del self._entries[key]
        return entry.operator_id

    def wait(self, recall: PendingRecall) -> list[PendingRecall]:
        """Keep ``recall`` until its entry arrives or its deadline passes; returns the oldest ones that had to make
        room (release them as self-deletions)."""
        self._waiting.append(recall)
        overflow: list[PendingRecall] = []
        while len(self._waiting) > MAX_WAITING:
            overflow.append(self._waiting.popleft())
        return overflow

    def entry(
        self, action: int, *, operator_id: int, target_id: int, channel_id: int, count: int, now: float
    ) -> list[tuple[PendingRecall, int]]:
        """An audit-log entry arrived: the waiting recalls it names, each with its operator; what it covers beyond
        them is remembered for deletes still to come."""
        if action == AUDIT_MESSAGE_BULK_DELETE:
            channel_id, author_id, bulk = target_id, 0, True
        elif action == AUDIT_MESSAGE_DELETE:
            author_id, bulk = target_id, False
        else:
            return []
        count = max(count, 1)
        matched: list[tuple[PendingRecall, int]] = []
        kept: collections.deque[PendingRecall] = collections.deque()
        for recall in self._waiting:
            if (
                count > 0
                and recall.channel_id == channel_id
                and recall.bulk == bulk
                and (bulk or recall.author_id == author_id)
            ):
                matched.append((recall, operator_id))
                if not bulk:
                    count -= 1  # a bulk entry's count is its messages: one entry covers the whole bulk delete
            else:
                kept.append(recall)
        self._waiting = kept
        if bulk and matched:
            count = 0
        if count > 0:
            self._entries[(channel_id, author_id)] = _Entry(operator_id, count, now + AUDIT_WAIT)
            while len(self._entries) > MAX_WAITING:
                self._entries.popitem(last=False)
        return matched

    def due(self, now: float) -> list[PendingRecall]:
        """The waiting recalls whose entry did not come in time (self-deletions)."""
        released: list[PendingRecall] = []
        while self._waiting and self._waiting[0].deadline <= now:
            released.append(self._waiting.popleft())
        return released
