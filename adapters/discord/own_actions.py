"""What the bridge itself did on Discord, so the inbound side can tell it from what others did.

:mod:`~adapters.discord.commands_out` writes it as it acts: the nonce of a message about to be sent and the
id of a message sent (their MESSAGE_CREATE is an echo and is dropped: no loops), a member being kicked or
banned (their removal is a kick, not a quit), a guild being left (its GUILD_DELETE is not a kick), a message
being deleted (its recall's operator is the bot).
:mod:`~adapters.discord.events_in` reads it, and notes the kicks Discord announces before a removal arrives
(GUILD_BAN_ADD, audit-log entries; docs/discord.md §6.1).

Pure and bounded: every record is forgotten after a while (an echo arrives within seconds).
"""

from __future__ import annotations

import collections
from typing import Any, Final

from adapters.discord.snowflakes import new_nonce

#: Bridge-sent message ids / nonces remembered for echo suppression (a send echoes back within seconds).
MAX_SENT_IDS: Final = 4_096
#: Kicks/bans noted before their GUILD_MEMBER_REMOVE arrives (usually milliseconds apart).
MAX_PENDING_KICKS: Final = 1_024


class OwnActions:
    """The bridge's own sends, kicks and departures, remembered until their gateway echo has come by."""

    def __init__(self) -> None:
        self._sent_ids: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._nonces: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: (guild, user) → operator user id (0 = unknown / the bridge)
        self._kicks: collections.OrderedDict[tuple[int, int], int] = collections.OrderedDict()
        self._left_guilds: set[int] = set()
        self._recalled: collections.OrderedDict[int, None] = collections.OrderedDict()

    # ----------------------------------------------------------------- written by the outbound side

    def new_nonce(self) -> str:
        """A nonce for a message about to be sent (docs/discord.md §7.3), already expected as an echo."""
        nonce = new_nonce()
        self.expect_nonce(nonce)
        return nonce

    def expect_nonce(self, nonce: str) -> None:
        """A message with this ``nonce`` is about to be sent: its MESSAGE_CREATE is an echo."""
        _remember(self._nonces, nonce)

    def note_sent(self, channel_id: int, message_id: int) -> None:
        """The bridge sent ``message_id``: its MESSAGE_CREATE (if it has not arrived yet) is an echo."""
        del channel_id  # message ids are globally unique; kept in the signature for readability at call sites
        _remember(self._sent_ids, message_id)

    def note_kicked(self, guild_id: int, user_id: int, operator_id: int = 0) -> None:
        """The bridge (or a ban / audit-log entry) says this member is being kicked/banned."""
        _remember(self._kicks, (guild_id, user_id), operator_id, limit=MAX_PENDING_KICKS)

    def forget_kicked(self, guild_id: int, user_id: int) -> None:
        """The kick noted with :meth:`note_kicked` failed: a later removal is a quit again."""
        self._kicks.pop((guild_id, user_id), None)

    def note_recalled(self, message_id: int) -> None:
        """The bridge is deleting this message (RecallMessage): its MESSAGE_DELETE is the bot's recall."""
        _remember(self._recalled, message_id)

    def forget_recalled(self, message_id: int) -> None:
        """The delete noted with :meth:`note_recalled` failed."""
        self._recalled.pop(message_id, None)

    def note_left_guild(self, guild_id: int) -> None:
        """The bridge itself is leaving this guild (LeaveGroup): the GUILD_DELETE is not a kick."""
        self._left_guilds.add(guild_id)

    # ----------------------------------------------------------------- read by the inbound side

    def is_echo(self, message_id: int, nonce: object) -> bool:
        """True when the bot's message ``message_id`` (sent with ``nonce``, if any) is one the bridge sent."""
        if message_id in self._sent_ids:
            return True
        if nonce is not None and str(nonce) in self._nonces:
            _remember(self._sent_ids, message_id)
            return True
        return False

    def kick_noted(self, guild_id: int, user_id: int) -> bool:
        return (guild_id, user_id) in self._kicks

    def take_kick(self, guild_id: int, user_id: int) -> int | None:
        """The operator of the kick/ban noted for this member (0: the bridge or unknown), forgetting it; None
        when none was noted (the member left by themselves)."""
        return self._kicks.pop((guild_id, user_id), None)

    def take_recalled(self, message_id: int) -> bool:
        """True (once) when the bridge itself deleted this message."""
        return self._recalled.pop(message_id, 1) is None

    def take_left_guild(self, guild_id: int) -> bool:
        """True (once) when the bridge itself left this guild."""
        if guild_id in self._left_guilds:
            self._left_guilds.discard(guild_id)
            return True
        return False

    def forget_left_guild(self, guild_id: int) -> None:
        """The bot is in this guild again: a later GUILD_DELETE is not the bridge's doing."""
        self._left_guilds.discard(guild_id)


def _remember(store: collections.OrderedDict[Any, Any], key: Any, value: Any = None, limit: int = MAX_SENT_IDS) -> None:
    store[key] = value
    while len(store) > limit:
        store.popitem(last=False)
