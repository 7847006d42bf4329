"""Discord dispatches → envelope events (DESIGN.md §3; discord.md §6, §7.1, §9.1).

Pure and synchronous: no trio, no clock (``now`` is a parameter), no I/O. One :class:`DiscordTranslator`
per bridge, shared by every shard: ``on_dispatch(name, data, now)`` first updates the
:class:`~adapters.discord.cache.DiscordCache`, then returns the envelope events the dispatch means.

Rules worth knowing (documented for the mirai side and for operators):

* **Groups** are bridged text channels (types 0 and 5), filtered by ``MappingConfig.channels`` (empty = all).
  Threads are their own group (``ThreadMode.OWN_GROUP``) or fold into their parent channel's group
  (``ThreadMode.PARENT``); a thread is bridged when its parent is.
* **Guild-level events** (member join/leave/mute/nick/role) go to ONE group per guild: the channel named by
  ``MappingConfig.guild_events`` when it is a channel id of that guild, else the guild's system channel when
  bridged, else its first bridged text channel (position order). Never fanned out.
* **Bot-level events** (bot joined/left a guild, the bot's role changed) concern every group of the guild,
  so they are emitted once per bridged channel.
* **The bot's own messages**: those the bridge sent (announced through :meth:`expect_nonce` before the
  send and :meth:`note_sent` after it) are dropped — no echo loops; every other message of the bot account
  is emitted with ``from_self=True`` (mirai ``*SyncMessage``).
* **Webhook messages** (``webhook_id`` set): ``WebhookMessageMode.FORWARD`` emits them as group messages from
  a bot member whose id is the webhook id and whose name is the webhook's display name; ``IGNORE`` drops them.
* Only user-visible message types are forwarded (0 DEFAULT, 19 REPLY, 20/23 command responses); system
  messages (joins, boosts, pins, thread created, …) are covered by their own events or have no mirai meaning.
* Recalls carry ``author_id=0``: Discord does not say who wrote a deleted message; the relay's store knows.
* Kick vs quit: a member removal is a kick when the bridge kicked/banned (:meth:`note_kicked`), or a
  GUILD_BAN_ADD or audit-log entry (MEMBER_KICK 20 / MEMBER_BAN_ADD 22) for that member arrived *before*
  the removal (Discord does not order them; an audit entry arriving later cannot change an emitted event).
* Bot left a guild: ``kicked=False`` when the bridge itself left (:meth:`note_left_guild`), else ``True``
  (removed by someone else; Discord does not say who, so ``operator`` is None).
"""

from __future__ import annotations

import collections
import datetime
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from adapters.discord.cache import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    MANAGE_GUILD,
    CachedChannel,
    CachedGuild,
    CachedMember,
    CachedUser,
    DiscordCache,
    is_obfuscated,
)
from adapters.discord.media import media_id
from adapters.discord.snowflakes import snowflake_time, to_int
from relay.config import MappingConfig, ThreadMode, WebhookMessageMode
from relay.envelope import (
    Audio,
    BotJoinedGroup,
    BotLeftGroup,
    BotRoleChanged,
    BotStatus,
    BotStatusChanged,
    ConversationRef,
    Emoji,
    Event,
    File,
    Group,
    GroupMuteAllChanged,
    GroupRenamed,
    Image,
    Member,
    MemberJoined,
    MemberLeft,
    MemberMuted,
    MemberNicknameChanged,
    MemberRoleChanged,
    MemberUnmuted,
    Mention,
    MentionAll,
    Message,
    MessageRecalled,
    MessageReceived,
    MessageRef,
    Quote,
    RichContent,
    Role,
    Segment,
    Sticker,
    Text,
    Unsupported,
    User,
)
from relay.ports import MessageFactory

log = logging.getLogger(__name__)

# discord.md §9 (mute all row): the deny bits the bridge ORs into the @everyone overwrite for "mute all":
# SEND_MESSAGES | SEND_MESSAGES_IN_THREADS | CREATE_PUBLIC_THREADS | CREATE_PRIVATE_THREADS | ADD_REACTIONS.
SEND_MESSAGES = 1 << 11
MUTE_ALL_DENY = SEND_MESSAGES | (1 << 38) | (1 << 35) | (1 << 36) | (1 << 6)
assert MUTE_ALL_DENY == 377957124160  # the value discord.md §9 gives

# discord.md §6.2 message types forwarded as messages: DEFAULT, REPLY, CHAT_INPUT_COMMAND, CONTEXT_MENU_COMMAND
FORWARDED_MESSAGE_TYPES = frozenset({0, 19, 20, 23})
# discord.md §6.2 message_reference.type
REFERENCE_FORWARD = 1
# discord.md §6.1 audit-log action types
AUDIT_MEMBER_KICK = 20
AUDIT_MEMBER_BAN_ADD = 22

#: Bridge-sent message ids / nonces remembered for echo suppression (a send echoes back within seconds).
MAX_SENT_IDS = 4_096
#: Channel → group memo entries (rebuilt from the cache on demand; cleared whenever guild state changes).
MAX_MEMO_GROUPS = 10_000
#: Kicks/bans noted before their GUILD_MEMBER_REMOVE arrives (usually milliseconds apart).
MAX_PENDING_KICKS = 1_024

# discord.md §7.1: one pass over the content for every markup token the bridge maps
_TOKEN = re.compile(
    r"<@!?(?P<user>\d+)>"
    r"|<@&(?P<role>\d+)>"
    r"|<#(?P<channel>\d+)>"
    r"|<(?P<anim>a?):(?P<ename>\w+):(?P<eid>\d+)>"
    r"|<t:(?P<ts>-?\d+)(?::(?P<style>[tTdDfFsSR]))?>"
    r"|@(?P<all>everyone|here)",
)

_TIME_STYLES = {
    "t": "%H:%M UTC",
    "T": "%H:%M:%S UTC",
    "d": "%Y-%m-%d",
    "D": "%d %B %Y",
    "f": "%Y-%m-%d %H:%M UTC",
    "F": "%A, %d %B %Y %H:%M UTC",
    "s": "%Y-%m-%d %H:%M UTC",
    "S": "%Y-%m-%d %H:%M:%S UTC",
    "R": "%Y-%m-%d %H:%M UTC",  # relative needs a "now" at read time; an absolute time stays true
}


def format_timestamp(seconds: int, style: str | None) -> str:
    """``<t:…>`` → readable UTC text (a framework has no idea of the reader's time zone)."""
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"<t:{seconds}>"
    return moment.strftime(_TIME_STYLES.get(style or "f", _TIME_STYLES["f"]))


def embed_text(embed: Mapping[str, Any]) -> str:
    """An embed as readable plain text: author, title, description, fields, footer (one per line)."""
    lines: list[str] = []
    author = embed.get("author")
    if isinstance(author, dict) and author.get("name"):
        lines.append(str(author["name"]))
    if embed.get("title"):
        lines.append(str(embed["title"]))
    if embed.get("description"):
        lines.append(str(embed["description"]))
    for field in embed.get("fields") or ():
        if isinstance(field, dict):
            lines.append(f"{field.get('name', '')}: {field.get('value', '')}")
    footer = embed.get("footer")
    if isinstance(footer, dict) and footer.get("text"):
        lines.append(str(footer["text"]))
    if not lines and embed.get("url"):
        lines.append(str(embed["url"]))
    return "\n".join(lines)


_Handler = Callable[["DiscordTranslator", dict[str, Any], float], list[Event]]


class DiscordTranslator:
    """Discord → envelope. Feed it every dispatch; read back events. Holds only bounded state."""

    def __init__(self, cache: DiscordCache, config: MappingConfig, *, new_message: MessageFactory = Message) -> None:
        """``new_message`` builds each live MESSAGE_CREATE's message; the bridge passes its store's ``record_new``
        so the message is built once, with its id (REST results are built plainly and recorded by the bridge)."""
        self.cache = cache
        self.config = config
        self._new_message = new_message
        self._channel_filter = frozenset(config.channels)
        self._status: BotStatus | None = None
        self._sent_ids: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._nonces: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: (guild, user) → operator user id (0 = unknown / the bridge)
        self._kicks: collections.OrderedDict[tuple[int, int], int] = collections.OrderedDict()
        self._left_by_bridge: set[int] = set()
        #: channel id → (group channel id or 0 when not bridged, Group); cleared whenever guild state changes
        self._groups: dict[int, Group | None] = {}
        #: group id → its ConversationRef (immutable, so never stale; one per message was measurable)
        self._conversations: dict[int, ConversationRef] = {}
        self._admin_roles: dict[int, int] = {}
        self.dropped_echoes = 0

    # ================================================================= notes from the executor

    def expect_nonce(self, nonce: str) -> None:
        """The executor is about to send a message with this ``nonce``: its MESSAGE_CREATE is an echo."""
        self._remember(self._nonces, nonce)

    def note_sent(self, channel_id: int, message_id: int) -> None:
        """The bridge sent ``message_id``: its MESSAGE_CREATE (if it has not arrived yet) is an echo."""
        del channel_id  # message ids are globally unique; kept in the signature for readability at call sites
        self._remember(self._sent_ids, message_id)

    def note_kicked(self, guild_id: int, user_id: int, operator_id: int = 0) -> None:
        """The bridge (or an audit-log entry) says this member is being kicked/banned."""
        self._remember(self._kicks, (guild_id, user_id), operator_id, limit=MAX_PENDING_KICKS)

    def forget_kicked(self, guild_id: int, user_id: int) -> None:
        """The kick noted with :meth:`note_kicked` failed: a later removal is a quit again."""
        self._kicks.pop((guild_id, user_id), None)

    def note_left_guild(self, guild_id: int) -> None:
        """The bridge itself is leaving this guild (LeaveGroup): the GUILD_DELETE is not a kick."""
        self._left_by_bridge.add(guild_id)

    @staticmethod
    def _remember(
        store: collections.OrderedDict[Any, Any],
        key: Any,
        value: Any = None,
        limit: int = MAX_SENT_IDS,
    ) -> None:
        store[key] = value
        while len(store) > limit:
            store.popitem(last=False)

    # ================================================================= connection state

    def connection_lost(self) -> list[Event]:
        """The gateway connection dropped (called by the shard driver). One OFFLINE_DROPPED per outage."""
        if self._status in (BotStatus.ONLINE, BotStatus.RELOGIN):
            self._status = BotStatus.OFFLINE_DROPPED
            return [BotStatusChanged(bot_id=self.cache.bot_id, status=BotStatus.OFFLINE_DROPPED)]
        return []

    # ================================================================= dispatch

    def on_dispatch(self, name: str, data: Any, now: float) -> list[Event]:
        """Translate one gateway dispatch. Never raises for odd payloads: they are logged and skipped."""
        if not isinstance(data, dict):
            data = {}
        if name == "MESSAGE_CREATE":
            return self._on_message_create(data, now)
        handler = self._handlers.get(name)
        if handler is None:
            return []
        if name not in _MESSAGE_ONLY:
            self._groups.clear()
            self._admin_roles.clear()
        try:
            return handler(self, data, now)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("skipping malformed %s dispatch: %r", name, exc)
            return []

    # ----------------------------------------------------------------- lifecycle

    def _on_ready(self, data: dict[str, Any], now: float) -> list[Event]:
        self.cache.on_ready(data)
        if self._status is None:
            status = BotStatus.ONLINE
        elif self._status == BotStatus.OFFLINE_DROPPED:
            status = BotStatus.RELOGIN  # re-identified after a drop (DESIGN.md §3)
        else:
            return []  # another shard's READY: the bot is already online
        self._status = status
        return [BotStatusChanged(bot_id=self.cache.bot_id, status=status)]

    def _on_resumed(self, data: dict[str, Any], now: float) -> list[Event]:
        self._status = BotStatus.RELOGIN
        return [BotStatusChanged(bot_id=self.cache.bot_id, status=BotStatus.RELOGIN)]

    def _on_user_update(self, data: dict[str, Any], now: float) -> list[Event]:
        if self.cache.bot_user is None or to_int(data.get("id")) == self.cache.bot_id:
            self.cache.set_bot_user(data)
        return []

    # ----------------------------------------------------------------- guilds

    def _on_guild_create(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("id"))
        if data.get("unavailable"):
            self.cache.mark_unavailable(guild_id)
            return []
        is_new = not self.cache.knows_guild(guild_id)
        self.cache.upsert_guild(data)
        self._left_by_bridge.discard(guild_id)
        if not is_new:
            return []
        self.cache.mark_guild_known(guild_id)
        return [BotJoinedGroup(group=g) for g in self.bridged_groups(guild_id)]

    def _on_guild_update(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("id"))
        guild = self.cache.guilds.get(guild_id)
        old_role = self.bot_role(guild) if guild is not None else None
        self.cache.upsert_guild(data)
        return self._bot_role_events(guild_id, old_role)

    def _on_guild_delete(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("id"))
        if data.get("unavailable"):
            self.cache.mark_unavailable(guild_id)  # an outage, not a removal (discord.md §6.1)
            return []
        groups = self.bridged_groups(guild_id)
        kicked = guild_id not in self._left_by_bridge
        self._left_by_bridge.discard(guild_id)
        self.cache.remove_guild(guild_id)
        return [BotLeftGroup(group=g, kicked=kicked) for g in groups]

    def _on_role_upsert(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("guild_id"))
        guild = self.cache.guilds.get(guild_id)
        old_role = self.bot_role(guild) if guild is not None else None
        role = data.get("role")
        if isinstance(role, dict):
            self.cache.upsert_role(guild_id, role)
        return self._bot_role_events(guild_id, old_role)

    def _on_role_delete(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("guild_id"))
        guild = self.cache.guilds.get(guild_id)
        old_role = self.bot_role(guild) if guild is not None else None
        self.cache.remove_role(guild_id, to_int(data.get("role_id")))
        return self._bot_role_events(guild_id, old_role)

    def _bot_role_events(self, guild_id: int, old_role: Role | None) -> list[Event]:
        self._groups.clear()
        guild = self.cache.guilds.get(guild_id)
        if guild is None or old_role is None:
            return []
        new_role = self.bot_role(guild)
        if new_role == old_role:
            return []
        return [BotRoleChanged(group=g, old=old_role, new=new_role) for g in self.bridged_groups(guild_id)]

    # ----------------------------------------------------------------- channels

    def _on_channel_create(self, data: dict[str, Any], now: float) -> list[Event]:
        channel_id = to_int(data.get("id"))
        existed = channel_id in self.cache.channels
        channel = self.cache.upsert_channel(data)
        if channel is None or existed or not channel.guild_id:
            return []
        group = self.group_for_channel(channel_id)
        if group is None or group.id != channel_id:
            return []
        return [BotJoinedGroup(group=group)]

    def _on_channel_update(self, data: dict[str, Any], now: float) -> list[Event]:
        channel_id = to_int(data.get("id"))
        old = self.cache.channels.get(channel_id)
        old_group = self.group_for_channel(channel_id) if old is not None else None
        if is_obfuscated(data):
            # the bot lost sight of the channel (discord.md §2.5): for the framework the group is gone
            self.cache.remove_channel(channel_id)
            self._groups.clear()
            if old_group is not None and old_group.id == channel_id:
                return [BotLeftGroup(group=old_group, kicked=False)]
            return []
        new = self.cache.upsert_channel(data)
        self._groups.clear()
        if new is None:
            return []
        group = self.group_for_channel(channel_id)
        if group is None or group.id != channel_id:
            return []
        if old is None or old_group is None:
            return [BotJoinedGroup(group=group)] if old is not None else []
        events: list[Event] = []
        if old.name != new.name:
            events.append(GroupRenamed(group=group, old=old.name, new=new.name))
        old_muted = self.channel_muted_all(old)
        new_muted = self.channel_muted_all(new)
        if old_muted != new_muted:
            events.append(GroupMuteAllChanged(group=group, old=old_muted, new=new_muted))
        return events

    def _on_channel_delete(self, data: dict[str, Any], now: float) -> list[Event]:
        channel_id = to_int(data.get("id"))
        group = self.group_for_channel(channel_id) if channel_id in self.cache.channels else None
        self.cache.remove_channel(channel_id)
        self._groups.clear()
        if group is None or group.id != channel_id:
            return []
        return [BotLeftGroup(group=group, kicked=False)]

    def _on_thread_list_sync(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("guild_id"))
        for thread in data.get("threads") or ():
            if isinstance(thread, dict):
                self.cache.upsert_channel(thread, guild_id)
        return []

    # ----------------------------------------------------------------- members

    def _on_members_chunk(self, data: dict[str, Any], now: float) -> list[Event]:
        """GUILD_MEMBERS_CHUNK (answers to op 8, discord.md §6.4): cache only, never events."""
        guild_id = to_int(data.get("guild_id"))
        for member in data.get("members") or ():
            if isinstance(member, dict):
                self.cache.upsert_member(guild_id, member)
        return []

    def _on_member_add(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("guild_id"))
        result = self.cache.upsert_member(guild_id, data)
        if result is None:
            return []
        previous, member = result
        if member.user.id == self.cache.bot_id:
            return []
        if previous is not None and previous.joined_at == member.joined_at:
            return []  # a re-sent add for a member we know (discord.md §6.1: dedupe)
        target = self.guild_event_group(guild_id)
        if target is None:
            return []
        return [MemberJoined(member=self.member_of(guild_id, member, target, now))]

    def _on_member_remove(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("guild_id"))
        user = data.get("user")
        if not isinstance(user, dict):
            return []
        user_id = to_int(user.get("id"))
        if user_id == self.cache.bot_id:
            return []  # the bot's own removal is reported by GUILD_DELETE
        cached = self.cache.remove_member(guild_id, user_id)
        if cached is None:
            cached = CachedMember(CachedUser.from_payload(user))
        operator_id = self._kicks.pop((guild_id, user_id), None)
        target = self.guild_event_group(guild_id)
        if target is None:
            return []
        member = self.member_of(guild_id, cached, target, now)
        operator = self._operator(guild_id, operator_id or 0, target, now)
        return [MemberLeft(member=member, kicked=operator_id is not None, operator=operator)]

    def _on_member_update(self, data: dict[str, Any], now: float) -> list[Event]:
        guild_id = to_int(data.get("guild_id"))
        guild = self.cache.guilds.get(guild_id)
        if guild is None:
            return []
        old_bot_role = self.bot_role(guild)
        result = self.cache.upsert_member(guild_id, data)
        if result is None:
            return []
        previous, member = result
        if member.user.id == self.cache.bot_id:
            return self._bot_role_events(guild_id, old_bot_role)
        if previous is None:
            return []  # nothing to diff against (discord.md §6.1: full state, not a diff)
        target = self.guild_event_group(guild_id)
        if target is None:
            return []
        current = self.member_of(guild_id, member, target, now)
        events: list[Event] = []
        if previous.nick != member.nick:
            events.append(MemberNicknameChanged(member=current, old=previous.display_name, new=member.display_name))
        was_muted = previous.timeout_until > now
        is_muted = member.timeout_until > now
        if is_muted and member.timeout_until != previous.timeout_until:
            events.append(MemberMuted(member=current, duration=current.mute_remaining))
        elif was_muted and not is_muted:
            events.append(MemberUnmuted(member=current))
        old_role = self.member_role(guild, previous)
        if old_role != current.role:
            events.append(MemberRoleChanged(member=current, old=old_role, new=current.role))
        return events

    def _on_ban_add(self, data: dict[str, Any], now: float) -> list[Event]:
        user = data.get("user")
        if isinstance(user, dict):
            key = (to_int(data.get("guild_id")), to_int(user.get("id")))
            if key not in self._kicks:
                self.note_kicked(key[0], key[1])
        return []

    def _on_audit_entry(self, data: dict[str, Any], now: float) -> list[Event]:
        if to_int(data.get("action_type")) in (AUDIT_MEMBER_KICK, AUDIT_MEMBER_BAN_ADD):
            operator = to_int(data.get("user_id"))
            self.note_kicked(
                to_int(data.get("guild_id")),
                to_int(data.get("target_id")),
                0 if operator == self.cache.bot_id else operator,
            )
        return []

    def _operator(self, guild_id: int, user_id: int, group: Group, now: float) -> Member | None:
        if not user_id:
            return None
        cached = self.cache.member(guild_id, user_id)
        if cached is None:
            cached = CachedMember(CachedUser(user_id))
        return self.member_of(guild_id, cached, group, now)

    # ----------------------------------------------------------------- messages

    def _on_message_create(self, data: dict[str, Any], now: float) -> list[Event]:
        try:
            message = self._translate_message(data, live=True)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("skipping malformed MESSAGE_CREATE: %r", exc)
            return []
        if message is None:
            return []
        return [MessageReceived(message=message)]

    def message_from_payload(self, data: Mapping[str, Any]) -> Message | None:
        """A message object from REST (GetMessage/GetHistory) → Message; None when it is not bridgeable."""
        try:
            return self._translate_message(data, live=False)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("skipping malformed message from Discord's REST API: %r", exc)
            return None

    def _translate_message(self, data: Mapping[str, Any], *, live: bool) -> Message | None:
        if data.get("type", 0) not in FORWARDED_MESSAGE_TYPES:
            return None
        author = data["author"]
        author_id = to_int(author["id"])
        message_id = to_int(data["id"])
        channel_id = to_int(data["channel_id"])
        bot_id = self.cache.bot_id
        from_self = author_id == bot_id and bot_id != 0
        if from_self and live:
            if message_id in self._sent_ids:
                self.dropped_echoes += 1
                return None
            nonce = data.get("nonce")
            if nonce is not None and str(nonce) in self._nonces:
                self._sent_ids[message_id] = None
                self.dropped_echoes += 1
                return None
        time = snowflake_time(message_id)
        guild_id = to_int(data.get("guild_id"))
        channel = self.cache.channels.get(channel_id)
        if not guild_id and channel is not None:
            guild_id = channel.guild_id  # REST messages carry no guild_id
        group: Group | None = None
        sender: Member | User
        if guild_id:
            group = self.group_for_channel(channel_id, guild_id)
            if group is None:
                return None
            conversation = self._conversations.get(group.id)
            if conversation is None:
                if len(self._conversations) >= MAX_MEMO_GROUPS:
                    self._conversations.clear()
                conversation = self._conversations[group.id] = ConversationRef.group(group.id)
            webhook = data.get("webhook_id")
            if webhook is not None and not from_self:
                if self.config.webhook_messages == WebhookMessageMode.IGNORE:
                    return None
                sender = Member(
                    user_id=author_id,
                    display_name=str(author.get("global_name") or author.get("username") or "webhook"),
                    role=Role.MEMBER,
                    group=group,
                    last_spoke_at=int(time),
                    is_bot=True,
                )
            else:
                partial = data.get("member")
                cached = (
                    self.cache.touch_message_author(
                        guild_id,
                        author,
                        partial if isinstance(partial, dict) else None,
                        time,
                        user_id=author_id,
                    )
                    if live or isinstance(partial, dict)
                    else self.cache.member(guild_id, author_id)
                )
                if cached is None:
                    cached = CachedMember(CachedUser.from_payload(author))
                    if isinstance(partial, dict):
                        cached.update(partial)
                sender = self.member_of(guild_id, cached, group, time)
        else:
            if from_self:
                partner = self.cache.dm_partner(channel_id)
                if not partner:
                    log.debug("own DM %s in unknown DM channel %s: partner unknown, skipped", message_id, channel_id)
                    return None
                user = self.cache.bot_user or CachedUser.from_payload(author)
            else:
                partner = author_id
                user = self.cache.upsert_user(author) if live else CachedUser.from_payload(author)
                if live:
                    self.cache.note_dm_channel(channel_id, author_id)
            conversation = ConversationRef.private(partner)
            sender = User(id=user.id, name=user.name, username=user.username, is_bot=user.is_bot)
        segments = self.segments_of(data, guild_id, channel_id, message_id)
        quote = self._quote_of(data, conversation, channel_id, guild_id)
        return (self._new_message if live else Message)(
            conversation=conversation,
            channel_id=channel_id,
            platform_id=message_id,
            time=int(time),
            sender=sender,
            segments=segments,
            quote=quote,
            from_self=from_self,
            group=group,
        )

    def _quote_of(
        self,
        data: Mapping[str, Any],
        conversation: ConversationRef,
        channel_id: int,
        guild_id: int,
    ) -> Quote | None:
        reference = data.get("message_reference")
        if not isinstance(reference, dict) or reference.get("type", 0) == REFERENCE_FORWARD:
            return None
        target = to_int(reference.get("message_id"))
        if not target:
            return None
        ref = MessageRef(
            conversation=conversation,
            platform_id=target,
            channel_id=to_int(reference.get("channel_id")) or channel_id,
        )
        referenced = data.get("referenced_message")
        if not isinstance(referenced, dict):
            return Quote(ref=ref)  # absent = not fetched, null = deleted (discord.md §6.2)
        author = referenced.get("author")
        author_id = to_int(author.get("id")) if isinstance(author, dict) else 0
        origin = self.segments_of(referenced, guild_id, ref.channel_id or channel_id, target)
        return Quote(ref=ref, author_id=author_id, origin=origin)

    # ----------------------------------------------------------------- segments

    def segments_of(
        self,
        data: Mapping[str, Any],
        guild_id: int,
        channel_id: int,
        message_id: int,
    ) -> tuple[Segment, ...]:
        """Content markup, attachments, stickers, embeds (from bots), poll — in that order, nothing dropped."""
        content = data.get("content") or ""
        segments: list[Segment] = []
        if content:
            if "<" not in content and "@" not in content:
                segments.append(Text(content))
            else:
                self._parse_content(content, data, guild_id, segments)
        snapshots = data.get("message_snapshots")
        if isinstance(snapshots, list):
            for snapshot in snapshots:
                inner = snapshot.get("message") if isinstance(snapshot, dict) else None
                if isinstance(inner, dict):
                    segments.append(Text("[forwarded message]\n"))
                    segments.extend(self.segments_of(inner, guild_id, channel_id, message_id))
        for attachment in data.get("attachments") or ():
            if isinstance(attachment, dict):
                segments.append(self._attachment(attachment, channel_id, message_id))
        for sticker in data.get("sticker_items") or ():
            if isinstance(sticker, dict):
                segments.append(
                    Sticker(
                        id=to_int(sticker.get("id")),
                        name=str(sticker.get("name") or ""),
                        format=to_int(sticker.get("format_type"), 1),
                    ),
                )
        author = data.get("author")
        from_bot = isinstance(author, dict) and (bool(author.get("bot")) or data.get("webhook_id") is not None)
        if from_bot:
            # embeds of human messages are link previews of URLs already in the text; bots' embeds are content
            for embed in data.get("embeds") or ():
                if isinstance(embed, dict):
                    text = embed_text(embed)
                    if text:
                        segments.append(
                            RichContent(
                                text=text, title=str(embed.get("title") or ""), url=str(embed.get("url") or "")
                            ),
                        )
        poll = data.get("poll")
        if isinstance(poll, dict):
            question = poll.get("question")
            q_text = question.get("text", "") if isinstance(question, dict) else ""
            answers = [
                str((a.get("poll_media") or {}).get("text", ""))
                for a in poll.get("answers") or ()
                if isinstance(a, dict)
            ]
            segments.append(Unsupported(fallback=f"[poll] {q_text} " + " / ".join(answers), what="poll"))
        if not segments:
            # e.g. content hidden without the MESSAGE_CONTENT intent (discord.md §5): say so, do not drop
            segments.append(Unsupported(fallback="[empty message]", what="empty"))
        return _merge_text(segments)

    def _parse_content(self, content: str, data: Mapping[str, Any], guild_id: int, out: list[Segment]) -> None:
        position = 0
        mentioned: dict[int, str] | None = None
        pending: list[str] = []  # text (incl. rendered role/channel/time tokens) not yet emitted
        for match in _TOKEN.finditer(content):
            start = match.start()
            if start > position:
                pending.append(content[position:start])
            position = match.end()
            kind = match.lastgroup
            if kind == "user":
                if mentioned is None:
                    mentioned = _mention_names(data)
                user_id = int(match.group("user"))
                display = mentioned.get(user_id) or self._name_of(guild_id, user_id)
                segment: Segment = Mention(user_id=user_id, display=display)
            elif kind == "all":
                segment = MentionAll(here=match.group("all") == "here")
            elif kind == "eid":
                segment = Emoji(
                    id=int(match.group("eid")), name=match.group("ename"), animated=match.group("anim") == "a"
                )
            elif kind == "role":
                guild = self.cache.guilds.get(guild_id)
                found = guild.roles.get(int(match.group("role"))) if guild is not None else None
                pending.append("@" + found.name if found is not None else "@deleted-role")
                continue
            elif kind == "channel":
                known = self.cache.channels.get(int(match.group("channel")))
                pending.append("#" + known.name if known is not None and known.name else "#unknown")
                continue
            else:  # "ts" or "style": a timestamp
                pending.append(format_timestamp(int(match.group("ts")), match.group("style")))
                continue
            if pending:
                out.append(Text("".join(pending)))
                pending.clear()
            out.append(segment)
        if position < len(content):
            pending.append(content[position:])
        if pending:
            out.append(Text("".join(pending)))

    def _name_of(self, guild_id: int, user_id: int) -> str:
        member = self.cache.member(guild_id, user_id) if guild_id else None
        if member is not None:
            return member.display_name
        user = self.cache.user(user_id)
        return user.name if user is not None else ""

    def _attachment(self, attachment: Mapping[str, Any], channel_id: int, message_id: int) -> Segment:
        attachment_id = to_int(attachment.get("id"))
        filename = str(attachment.get("filename") or "")
        url = str(attachment.get("url") or "")
        content_type = str(attachment.get("content_type") or "")
        size = to_int(attachment.get("size"))
        issued = media_id(channel_id, message_id, attachment_id, filename)
        if content_type.startswith("image/"):
            self.cache.remember_media(issued, url)
            return Image(
                id=issued,
                url=url,
                filename=filename,
                content_type=content_type,
                size=size,
                width=to_int(attachment.get("width")),
                height=to_int(attachment.get("height")),
            )
        if content_type.startswith("audio/"):
            self.cache.remember_media(issued, url)
            duration = attachment.get("duration_secs")
            return Audio(
                id=issued,
                url=url,
                filename=filename,
                content_type=content_type,
                size=size,
                duration=float(duration) if isinstance(duration, (int, float)) else 0.0,
            )
        self.cache.remember_media(issued, url)
        return File(id=issued, name=filename, size=size, url=url or None)

    # ----------------------------------------------------------------- recalls

    def _on_message_delete(self, data: dict[str, Any], now: float) -> list[Event]:
        return self._recalls(data, [to_int(data.get("id"))], now)

    def _on_message_delete_bulk(self, data: dict[str, Any], now: float) -> list[Event]:
        return self._recalls(data, [to_int(i) for i in data.get("ids") or ()], now)

    def _recalls(self, data: Mapping[str, Any], ids: list[int], now: float) -> list[Event]:
        channel_id = to_int(data.get("channel_id"))
        guild_id = to_int(data.get("guild_id"))
        group: Group | None = None
        if guild_id:
            group = self.group_for_channel(channel_id, guild_id)
            if group is None:
                return []
            conversation = ConversationRef.group(group.id)
        else:
            partner = self.cache.dm_partner(channel_id)
            if not partner:
                log.debug("recall in unknown DM channel %s skipped: its user is unknown", channel_id)
                return []
            conversation = ConversationRef.private(partner)
        return [
            MessageRecalled(
                ref=MessageRef(conversation=conversation, platform_id=message_id, channel_id=channel_id),
                author_id=0,
                time=int(now),
                group=group,
            )
            for message_id in ids
            if message_id
        ]

    # ================================================================= queries (also used by the executor)

    def bot_role(self, guild: CachedGuild) -> Role:
        """The bot's standing in the guild (mirai ``Group.permission``)."""
        bot = guild.bot_member
        if bot is None:
            bot_id = self.cache.bot_id
            if bot_id and bot_id == guild.owner_id:
                return Role.OWNER
            return Role.MEMBER
        return self.member_role(guild, bot)

    def member_role(self, guild: CachedGuild, member: CachedMember) -> Role:
        """Owner → OWNER; ADMINISTRATOR/MANAGE_GUILD or the configured admin role → ADMINISTRATOR (§9.2)."""
        if guild.owner_id and member.user.id == guild.owner_id:
            return Role.OWNER
        perms = guild.base_permissions(member)
        if perms == ALL_PERMISSIONS or perms & (ADMINISTRATOR | MANAGE_GUILD):
            return Role.ADMINISTRATOR
        admin_role = self.admin_role_id(guild)
        if admin_role and admin_role in member.roles:
            return Role.ADMINISTRATOR
        return Role.MEMBER

    def admin_role_id(self, guild: CachedGuild) -> int:
        """The role ``MappingConfig.admin_role`` names in this guild, 0 when unset or not found."""
        if not self.config.admin_role:
            return 0
        found = self._admin_roles.get(guild.id)
        if found is None:
            found = self._admin_roles[guild.id] = guild.role_id_by_name_or_id(self.config.admin_role)
        return found

    def member_of(self, guild_id: int, member: CachedMember, group: Group, now: float) -> Member:
        guild = self.cache.guilds.get(guild_id)
        role = self.member_role(guild, member) if guild is not None else Role.MEMBER
        remaining = member.timeout_until - now
        return Member(
            user_id=member.user.id,
            display_name=member.display_name,
            role=role,
            group=group,
            joined_at=int(member.joined_at),
            last_spoke_at=int(member.last_spoke_at),
            mute_remaining=math.ceil(remaining) if remaining > 0 else 0,
            is_bot=member.user.is_bot,
        )

    def is_bridged_text_channel(self, channel: CachedChannel) -> bool:
        return channel.is_text and (not self._channel_filter or channel.id in self._channel_filter)

    def group_for_channel(self, channel_id: int, guild_id: int = 0) -> Group | None:
        """The group messages of ``channel_id`` belong to (threads per ``MappingConfig.threads``), or None."""
        try:
            return self._groups[channel_id]
        except KeyError:
            pass
        group = self._compute_group(channel_id, guild_id)
        if len(self._groups) >= MAX_MEMO_GROUPS:
            self._groups.clear()  # stray channel ids cannot grow the memo without bound
        self._groups[channel_id] = group
        return group

    def _compute_group(self, channel_id: int, guild_id: int) -> Group | None:
        channel = self.cache.channels.get(channel_id)
        if channel is None:
            # not cached (yet): bridge it unless the operator restricted the channel list
            if self._channel_filter and channel_id not in self._channel_filter:
                return None
            guild = self.cache.guilds.get(guild_id)
            role = self.bot_role(guild) if guild is not None else Role.MEMBER
            return Group(id=channel_id, name="", bot_role=role, guild_id=guild_id)
        guild = self.cache.guilds.get(channel.guild_id)
        role = self.bot_role(guild) if guild is not None else Role.MEMBER
        if channel.is_thread:
            parent = self.cache.channels.get(channel.parent_id)
            if parent is not None and not self.is_bridged_text_channel(parent):
                if channel.id not in self._channel_filter:
                    return None
            elif parent is None and self._channel_filter and channel.parent_id not in self._channel_filter:
                return None
            if self.config.threads == ThreadMode.PARENT and parent is not None:
                return Group(id=parent.id, name=parent.name, bot_role=role, guild_id=parent.guild_id)
            return Group(id=channel.id, name=channel.name, bot_role=role, guild_id=channel.guild_id)
        if not self.is_bridged_text_channel(channel):
            return None
        return Group(id=channel.id, name=channel.name, bot_role=role, guild_id=channel.guild_id)

    def bridged_groups(self, guild_id: int) -> list[Group]:
        """Every bridged text channel of the guild as a group (threads excluded), in display order."""
        groups = []
        for channel in self.cache.guild_channels(guild_id):
            if self.is_bridged_text_channel(channel):
                group = self.group_for_channel(channel.id, guild_id)
                if group is not None:
                    groups.append(group)
        return groups

    def all_groups(self) -> list[Group]:
        groups: list[Group] = []
        for guild_id in self.cache.guilds:
            groups.extend(self.bridged_groups(guild_id))
        return groups

    def guild_event_group(self, guild_id: int) -> Group | None:
        """Where guild-level events of this guild go (see the module docstring)."""
        configured = self.config.guild_events.strip()
        if configured.isdigit():
            channel = self.cache.channels.get(int(configured))
            if channel is not None and channel.guild_id == guild_id:
                return self.group_for_channel(channel.id, guild_id)
        guild = self.cache.guilds.get(guild_id)
        if guild is None:
            return None
        system = self.cache.channels.get(guild.system_channel_id)
        if system is not None and self.is_bridged_text_channel(system):
            return self.group_for_channel(system.id, guild_id)
        groups = self.bridged_groups(guild_id)
        return groups[0] if groups else None

    def channel_muted_all(self, channel: CachedChannel) -> bool:
        """True when the @everyone overwrite (id = guild id) denies SEND_MESSAGES (discord.md §9)."""
        overwrite = channel.overwrites.get(channel.guild_id)
        return overwrite is not None and bool(overwrite.deny & SEND_MESSAGES)

    _handlers: ClassVar[dict[str, _Handler]] = {}


def _mention_names(data: Mapping[str, Any]) -> dict[int, str]:
    """Display names of the users a message mentions (``mentions[]`` carries partial members)."""
    names: dict[int, str] = {}
    for user in data.get("mentions") or ():
        if isinstance(user, dict):
            member = user.get("member")
            nick = member.get("nick") if isinstance(member, dict) else None
            names[to_int(user.get("id"))] = str(nick or user.get("global_name") or user.get("username") or "")
    return names


def _merge_text(segments: list[Segment]) -> tuple[Segment, ...]:
    """Adjacent Text segments become one (role/channel mentions are rendered as text)."""
    if len(segments) < 2:
        return tuple(segments)
    merged: list[Segment] = []
    for segment in segments:
        if merged and type(segment) is Text and type(merged[-1]) is Text:
            merged[-1] = Text(merged[-1].text + segment.text)
        else:
            merged.append(segment)
    return tuple(merged)


# dispatch name → handler; events that do not touch guild state keep the group memo
_MESSAGE_ONLY = frozenset(
    {
        "MESSAGE_DELETE",
        "MESSAGE_DELETE_BULK",
        "GUILD_BAN_ADD",
        "GUILD_AUDIT_LOG_ENTRY_CREATE",
        "GUILD_MEMBERS_CHUNK",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_REMOVE",
        "RESUMED",
    },
)
DiscordTranslator._handlers = {
    "READY": DiscordTranslator._on_ready,
    "RESUMED": DiscordTranslator._on_resumed,
    "USER_UPDATE": DiscordTranslator._on_user_update,
    "GUILD_CREATE": DiscordTranslator._on_guild_create,
    "GUILD_UPDATE": DiscordTranslator._on_guild_update,
    "GUILD_DELETE": DiscordTranslator._on_guild_delete,
    "GUILD_ROLE_CREATE": DiscordTranslator._on_role_upsert,
    "GUILD_ROLE_UPDATE": DiscordTranslator._on_role_upsert,
    "GUILD_ROLE_DELETE": DiscordTranslator._on_role_delete,
    "CHANNEL_CREATE": DiscordTranslator._on_channel_create,
    "CHANNEL_UPDATE": DiscordTranslator._on_channel_update,
    "CHANNEL_DELETE": DiscordTranslator._on_channel_delete,
    "THREAD_CREATE": DiscordTranslator._on_channel_create,
    "THREAD_UPDATE": DiscordTranslator._on_channel_update,
    "THREAD_DELETE": DiscordTranslator._on_channel_delete,
    "THREAD_LIST_SYNC": DiscordTranslator._on_thread_list_sync,
    "GUILD_MEMBERS_CHUNK": DiscordTranslator._on_members_chunk,
    "GUILD_MEMBER_ADD": DiscordTranslator._on_member_add,
    "GUILD_MEMBER_REMOVE": DiscordTranslator._on_member_remove,
    "GUILD_MEMBER_UPDATE": DiscordTranslator._on_member_update,
    "GUILD_BAN_ADD": DiscordTranslator._on_ban_add,
    "GUILD_AUDIT_LOG_ENTRY_CREATE": DiscordTranslator._on_audit_entry,
    "MESSAGE_DELETE": DiscordTranslator._on_message_delete,
    "MESSAGE_DELETE_BULK": DiscordTranslator._on_message_delete_bulk,
}
