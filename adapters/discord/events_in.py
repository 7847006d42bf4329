"""Discord dispatches → envelope events (docs/architecture.md §3; docs/discord.md §6, §7.1, §9.1). No REST.

Pure and synchronous: no trio, no clock (``now`` is a parameter), no I/O. One :class:`DispatchTranslator` per
bridge, shared by every shard: ``on_dispatch(name, data, now)`` first updates the
:class:`~adapters.discord.cache.DiscordCache`, then returns the envelope events the dispatch means, built by
the :class:`~adapters.discord.entities.EntityFactory` (which also says which group a channel is, and where a
guild's events go).

Rules worth knowing (documented for the mirai side and for operators):

* **Guild-level events** (member join/leave/mute/nick/role) go to ONE group per guild
  (``EntityFactory.guild_event_group``), never fanned out.
* **Bot-level events** (bot joined/left a guild, the bot's role changed) concern every group of the guild,
  so they are emitted once per bridged channel.
* **The bot's own messages**: those the bridge sent (recorded in :class:`~adapters.discord.own_actions.OwnActions`
  by the outbound side: the nonce before the send, the id after it) are dropped — no echo loops; every other
  message of the bot account is emitted with ``from_self=True`` (mirai ``*SyncMessage``).
* Recalls: Discord says neither who wrote nor who deleted a message. The author comes from the store (``author_of``);
  the operator is the bot for the bridge's own recalls, the moderator an audit-log entry names, else the author
  (a self-deletion) — see :mod:`~adapters.discord.recalls`, whose waiting recalls :meth:`DispatchTranslator.tick`
  releases.
* Kick vs quit: a member removal is a kick when the bridge kicked/banned (``OwnActions.note_kicked``), or a
  GUILD_BAN_ADD or audit-log entry (MEMBER_KICK 20 / MEMBER_BAN_ADD 22) for that member arrived *before*
  the removal (Discord does not order them; an audit entry arriving later cannot change an emitted event).
* Bot left a guild: ``kicked=False`` when the bridge itself left (``OwnActions.note_left_guild``), else ``True``
  (removed by someone else; Discord does not say who, so ``operator`` is None).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

from adapters.discord.cache import VIEW_AUDIT_LOG, is_obfuscated
from adapters.discord.entities import EntityFactory
from adapters.discord.member_requests import MemberRequests
from adapters.discord.members import CachedMember
from adapters.discord.own_actions import OwnActions
from adapters.discord.recalls import AUDIT_WAIT, PendingRecall, RecallOperators
from adapters.discord.snowflakes import to_int
from relay import envelope as env
from relay.errors import InvalidSnowflake
from relay.ports import MessageFactory

log = logging.getLogger(__name__)

# docs/discord.md §6.1 audit-log action types
AUDIT_MEMBER_KICK: Final = 20
AUDIT_MEMBER_BAN_ADD: Final = 22

_Handler = Callable[["DispatchTranslator", dict[str, Any], float], list[env.Event]]
#: a recall's operator id meaning "the bot" (mirai: operator null)
BOT_OPERATOR: Final = 0


class DispatchTranslator:
    """Discord → envelope. Feed it every dispatch; read back events. Holds only bounded state."""

    def __init__(
        self,
        entities: EntityFactory,
        own: OwnActions,
        *,
        new_message: MessageFactory = env.Message,
        member_requests: MemberRequests | None = None,
        author_of: Callable[[int], int | None] = lambda message_id: None,
    ) -> None:
        """``new_message`` builds each live MESSAGE_CREATE's message; the bridge passes its store's ``record_new``
        so the message is built once, with its id (REST results are built plainly and recorded by the bridge).
        ``member_requests`` learns which whole-guild member requests (op 8) the chunks complete. ``author_of`` gives
        the author of a recorded message (the store's), for recalls."""
        self.member_requests = member_requests
        self.entities = entities
        self._author_of = author_of
        self.recalls = RecallOperators()
        self.cache = entities.cache
        self.own = own
        self._new_message = new_message
        self._status: env.BotStatus | None = None
        self.dropped_echoes = 0
        #: dispatches skipped for their shape (logged at WARNING); failed: skipped because handling raised (ERROR)
        self.malformed_dispatches = 0
        self.failed_dispatches = 0

    # ================================================================= connection state

    @property
    def online(self) -> bool:
        """The bot's Discord connection is up (READY or RESUMED seen, no drop since): what a framework's verify
        announces."""
        return self._status in (env.BotStatus.ONLINE, env.BotStatus.RELOGIN)

    def connection_lost(self) -> list[env.Event]:
        """The gateway connection dropped (called by the shard driver). One OFFLINE_DROPPED per outage."""
        if self._status in (env.BotStatus.ONLINE, env.BotStatus.RELOGIN):
            self._status = env.BotStatus.OFFLINE_DROPPED
            return [env.BotStatusChanged(bot_id=self.cache.bot_id, status=env.BotStatus.OFFLINE_DROPPED)]
        return []

    # ================================================================= dispatch

    def on_dispatch(self, name: str, data: Any, now: float) -> list[env.Event]:
        """Translate one gateway dispatch (``data`` is its raw ``d``). Never raises: a dispatch it cannot handle is
        logged with its name and skipped, so one bad payload never ends the gateway reader.

        Dispatches the bridge does not use pass by quietly whatever their ``d`` (SESSIONS_REPLACE's is a list);
        one it uses whose ``d`` is not an object, or whose ids are out of range (:func:`to_int`), is refused."""
        try:
            if name == "MESSAGE_CREATE" and type(data) is dict:  # the hot path: no table lookup
                return self._on_message_create(data, now)
            handler = self._handlers.get(name)
            if handler is None:
                return []
            if not isinstance(data, dict):
                if data is not None:  # RESUMED's d is null
                    self.malformed_dispatches += 1
                    log.warning("skipping malformed %s dispatch: 'd' is %s, not an object", name, type(data).__name__)
                    return []
                data = {}
            if name not in _MESSAGE_ONLY:
                self.entities.forget_groups()
            return handler(self, data, now)
        except InvalidSnowflake as exc:
            self.malformed_dispatches += 1
            log.warning("refused a %s dispatch: %s", name, exc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.malformed_dispatches += 1
            log.warning("skipping malformed %s dispatch: %r", name, exc)
        except Exception:
            # a bug, or a payload shape nobody foresaw (e.g. nesting deep enough for RecursionError): contained
            self.failed_dispatches += 1
            log.exception("skipping a %s dispatch: handling it failed", name)
        return []

    # ----------------------------------------------------------------- lifecycle

    def _on_ready(self, data: dict[str, Any], now: float) -> list[env.Event]:
        self.cache.on_ready(data)
        if self._status is None:
            status = env.BotStatus.ONLINE
        elif self._status == env.BotStatus.OFFLINE_DROPPED:
            status = env.BotStatus.RELOGIN  # re-identified after a drop (docs/architecture.md §3)
        else:
            return []  # another shard's READY: the bot is already online
        self._status = status
        return [env.BotStatusChanged(bot_id=self.cache.bot_id, status=status)]

    def _on_resumed(self, data: dict[str, Any], now: float) -> list[env.Event]:
        self._status = env.BotStatus.RELOGIN
        return [env.BotStatusChanged(bot_id=self.cache.bot_id, status=env.BotStatus.RELOGIN)]

    def _on_user_update(self, data: dict[str, Any], now: float) -> list[env.Event]:
        if self.cache.bot_user is None or to_int(data.get("id")) == self.cache.bot_id:
            self.cache.set_bot_user(data)
        return []

    # ----------------------------------------------------------------- guilds

    def _on_guild_create(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("id"))
        if data.get("unavailable"):
            self.cache.mark_unavailable(guild_id)
            return []
        is_new = not self.cache.knows_guild(guild_id)
        self.cache.upsert_guild(data)
        self.own.forget_left_guild(guild_id)
        if not is_new:
            return []
        self.cache.mark_guild_known(guild_id)
        return [env.BotJoinedGroup(group=g) for g in self.entities.bridged_groups(guild_id)]

    def _on_guild_update(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("id"))
        guild = self.cache.guilds.get(guild_id)
        old_role = self.entities.bot_role(guild) if guild is not None else None
        self.cache.upsert_guild(data)
        return self._bot_role_events(guild_id, old_role)

    def _on_guild_delete(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("id"))
        if data.get("unavailable"):
            self.cache.mark_unavailable(guild_id)  # an outage, not a removal (docs/discord.md §6.1)
            return []
        groups = self.entities.bridged_groups(guild_id)
        kicked = not self.own.take_left_guild(guild_id)
        self.cache.remove_guild(guild_id)
        return [env.BotLeftGroup(group=g, kicked=kicked) for g in groups]

    def _on_role_upsert(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("guild_id"))
        guild = self.cache.guilds.get(guild_id)
        old_role = self.entities.bot_role(guild) if guild is not None else None
        role = data.get("role")
        if isinstance(role, dict):
            self.cache.upsert_role(guild_id, role)
        return self._bot_role_events(guild_id, old_role)

    def _on_role_delete(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("guild_id"))
        guild = self.cache.guilds.get(guild_id)
        old_role = self.entities.bot_role(guild) if guild is not None else None
        self.cache.remove_role(guild_id, to_int(data.get("role_id")))
        return self._bot_role_events(guild_id, old_role)

    def _bot_role_events(self, guild_id: int, old_role: env.Role | None) -> list[env.Event]:
        self.entities.forget_groups()
        guild = self.cache.guilds.get(guild_id)
        if guild is None or old_role is None:
            return []
        new_role = self.entities.bot_role(guild)
        if new_role == old_role:
            return []
        return [env.BotRoleChanged(group=g, old=old_role, new=new_role) for g in self.entities.bridged_groups(guild_id)]

    # ----------------------------------------------------------------- channels

    def _on_channel_create(self, data: dict[str, Any], now: float) -> list[env.Event]:
        channel_id = to_int(data.get("id"))
        existed = channel_id in self.cache.channels
        channel = self.cache.upsert_channel(data)
        if channel is None or existed or not channel.guild_id:
            return []
        group = self.entities.group_for_channel(channel_id)
        if group is None or group.id != channel_id:
            return []
        return [env.BotJoinedGroup(group=group)]

    def _on_channel_update(self, data: dict[str, Any], now: float) -> list[env.Event]:
        channel_id = to_int(data.get("id"))
        old = self.cache.channels.get(channel_id)
        old_group = self.entities.group_for_channel(channel_id) if old is not None else None
        if is_obfuscated(data):
            # the bot lost sight of the channel (docs/discord.md §2.5): for the framework the group is gone
            self.cache.remove_channel(channel_id)
            self.entities.forget_groups()
            if old_group is not None and old_group.id == channel_id:
                return [env.BotLeftGroup(group=old_group, kicked=False)]
            return []
        new = self.cache.upsert_channel(data)
        self.entities.forget_groups()
        if new is None:
            return []
        group = self.entities.group_for_channel(channel_id)
        if group is None or group.id != channel_id:
            return []
        if old is None or old_group is None:
            return [env.BotJoinedGroup(group=group)] if old is not None else []
        events: list[env.Event] = []
        if old.name != new.name:
            events.append(env.GroupRenamed(group=group, old=old.name, new=new.name))
        old_muted = old.muted_all
        new_muted = new.muted_all
        if old_muted != new_muted:
            events.append(env.GroupMuteAllChanged(group=group, old=old_muted, new=new_muted))
        return events

    def _on_channel_delete(self, data: dict[str, Any], now: float) -> list[env.Event]:
        channel_id = to_int(data.get("id"))
        group = self.entities.group_for_channel(channel_id) if channel_id in self.cache.channels else None
        self.cache.remove_channel(channel_id)
        self.entities.forget_groups()
        if group is None or group.id != channel_id:
            return []
        return [env.BotLeftGroup(group=group, kicked=False)]

    def _on_thread_list_sync(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("guild_id"))
        for thread in data.get("threads") or ():
            if isinstance(thread, dict):
                self.cache.upsert_channel(thread, guild_id)
        return []

    # ----------------------------------------------------------------- members

    def _on_members_chunk(self, data: dict[str, Any], now: float) -> list[env.Event]:
        """GUILD_MEMBERS_CHUNK (answers to op 8, docs/discord.md §6.4): cache only, never events."""
        members = data.get("members")
        unreadable = 0
        if isinstance(members, list):
            unreadable = self.cache.load_members(to_int(data.get("guild_id")), members)
        if self.member_requests is not None:
            self.member_requests.on_chunk(data, now, unreadable=unreadable)
        return []

    def _on_rate_limited(self, data: dict[str, Any], now: float) -> list[env.Event]:
        """RATE_LIMITED (docs/discord.md §3): Discord refused a gateway request; an op 8 of ours ends incomplete."""
        if self.member_requests is not None:
            self.member_requests.on_rate_limited(data)
        return []

    def _on_member_add(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("guild_id"))
        result = self.cache.upsert_member(guild_id, data)
        if result is None:
            return []
        previous, member = result
        if member.user.id == self.cache.bot_id:
            return []
        if previous is not None and previous.joined_at == member.joined_at:
            return []  # a re-sent add for a member we know (docs/discord.md §6.1: dedupe)
        target = self.entities.guild_event_group(guild_id)
        if target is None:
            return []
        return [env.MemberJoined(member=self.entities.member_of(guild_id, member, target, now))]

    def _on_member_remove(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("guild_id"))
        user = data.get("user")
        if not isinstance(user, dict):
            return []
        user_id = to_int(user.get("id"))
        if user_id == self.cache.bot_id:
            return []  # the bot's own removal is reported by GUILD_DELETE
        cached = self.cache.remove_member(guild_id, user_id)
        if cached is None:
            cached = CachedMember.of_user(user)
        operator_id = self.own.take_kick(guild_id, user_id)
        target = self.entities.guild_event_group(guild_id)
        if target is None:
            return []
        member = self.entities.member_of(guild_id, cached, target, now)
        operator = self._operator(guild_id, operator_id or 0, target, now)
        return [env.MemberLeft(member=member, kicked=operator_id is not None, operator=operator)]

    def _on_member_update(self, data: dict[str, Any], now: float) -> list[env.Event]:
        guild_id = to_int(data.get("guild_id"))
        guild = self.cache.guilds.get(guild_id)
        if guild is None:
            return []
        old_bot_role = self.entities.bot_role(guild)
        result = self.cache.upsert_member(guild_id, data)
        if result is None:
            return []
        previous, member = result
        if member.user.id == self.cache.bot_id:
            return self._bot_role_events(guild_id, old_bot_role)
        if previous is None:
            return []  # nothing to diff against (docs/discord.md §6.1: full state, not a diff)
        target = self.entities.guild_event_group(guild_id)
        if target is None:
            return []
        current = self.entities.member_of(guild_id, member, target, now)
        events: list[env.Event] = []
        if previous.nick != member.nick:
            events.append(env.MemberNicknameChanged(member=current, old=previous.display_name, new=member.display_name))
        was_muted = previous.timeout_until > now
        is_muted = member.timeout_until > now
        if is_muted and member.timeout_until != previous.timeout_until:
            events.append(env.MemberMuted(member=current, duration=current.mute_remaining))
        elif was_muted and not is_muted:
            events.append(env.MemberUnmuted(member=current))
        old_role = self.entities.member_role(guild, previous)
        if old_role != current.role:
            events.append(env.MemberRoleChanged(member=current, old=old_role, new=current.role))
        return events

    def _on_ban_add(self, data: dict[str, Any], now: float) -> list[env.Event]:
        user = data.get("user")
        if isinstance(user, dict):
            guild_id, user_id = to_int(data.get("guild_id")), to_int(user.get("id"))
            if not self.own.kick_noted(guild_id, user_id):
                self.own.note_kicked(guild_id, user_id)
        return []

    def _on_audit_entry(self, data: dict[str, Any], now: float) -> list[env.Event]:
        action = to_int(data.get("action_type"))
        operator = to_int(data.get("user_id"))
        if action in (AUDIT_MEMBER_KICK, AUDIT_MEMBER_BAN_ADD):
            self.own.note_kicked(
                to_int(data.get("guild_id")),
                to_int(data.get("target_id")),
                0 if operator == self.cache.bot_id else operator,
            )
            return []
        options = data.get("options")
        options = options if isinstance(options, dict) else {}
        matched = self.recalls.entry(
            action,
            operator_id=operator,
            target_id=to_int(data.get("target_id")),
            channel_id=to_int(options.get("channel_id")),
            count=to_int(options.get("count"), 1),
            now=now,
        )
        return [self._recall_event(recall, operator_id, now) for recall, operator_id in matched]

    def _operator(self, guild_id: int, user_id: int, group: env.Group, now: float) -> env.Member | None:
        if not user_id:
            return None
        cached = self.cache.member(guild_id, user_id)
        if cached is None:
            cached = CachedMember(user_id)
        return self.entities.member_of(guild_id, cached, group, now)

    # ----------------------------------------------------------------- messages

    def _on_message_create(self, data: dict[str, Any], now: float) -> list[env.Event]:
        if self._is_own_echo(data):
            self.dropped_echoes += 1
            return []
        message = self.entities.message(data, live=True, new_message=self._new_message)
        if message is None:
            return []
        return [env.MessageReceived(message=message)]

    def _is_own_echo(self, data: dict[str, Any]) -> bool:
        """A MESSAGE_CREATE of a message the bridge sent itself (see own_actions): dropped, no echo loops."""
        bot_id = self.cache.bot_id
        if not bot_id or to_int(data["author"]["id"]) != bot_id:
            return False
        return self.own.is_echo(to_int(data["id"]), data.get("nonce"))

    # ----------------------------------------------------------------- recalls

    def _on_message_delete(self, data: dict[str, Any], now: float) -> list[env.Event]:
        return self._recalls(data, [to_int(data.get("id"))], now, bulk=False)

    def _on_message_delete_bulk(self, data: dict[str, Any], now: float) -> list[env.Event]:
        return self._recalls(data, [to_int(i) for i in data.get("ids") or ()], now, bulk=True)

    def _recalls(self, data: Mapping[str, Any], ids: list[int], now: float, *, bulk: bool) -> list[env.Event]:
        channel_id = to_int(data.get("channel_id"))
        guild_id = to_int(data.get("guild_id"))
        if guild_id:
            if self.entities.group_for_channel(channel_id, guild_id) is None:
                return []
        elif not self.cache.dm_partner(channel_id):
            log.debug("recall in unknown DM channel %s skipped: its user is unknown", channel_id)
            return []
        audit_visible = guild_id and self._sees_audit_log(guild_id)
        events: list[env.Event] = []
        for message_id in ids:
            if not message_id:
                continue
            author_id = self._author_of(message_id) or 0
            recall = PendingRecall(
                guild_id=guild_id,
                channel_id=channel_id,
                message_id=message_id,
                author_id=author_id,
                bulk=bulk,
                deadline=now + AUDIT_WAIT,
            )
            if self.own.take_recalled(message_id):
                events.append(self._recall_event(recall, BOT_OPERATOR, now))
                continue
            if not guild_id or not author_id:
                # a DM (only its author or the bot deletes there), or a message no framework got an id for
                events.append(self._recall_event(recall, author_id, now))
                continue
            operator_id = self.recalls.operator_from_entry(channel_id, author_id, bulk=bulk, now=now)
            if operator_id is not None:
                events.append(self._recall_event(recall, operator_id, now))
            elif audit_visible:
                for overflow in self.recalls.wait(recall):  # its audit-log entry may still come
                    events.append(self._recall_event(overflow, overflow.author_id, now))
            else:
                events.append(self._recall_event(recall, author_id, now))  # a self-deletion
        return events

    def tick(self, now: float) -> list[env.Event]:
        """Recalls whose audit-log entry did not come within ``recalls.AUDIT_WAIT``: self-deletions (call it a few
        times a second while ``recalls.waiting``)."""
        return [self._recall_event(recall, recall.author_id, now) for recall in self.recalls.due(now)]

    def _sees_audit_log(self, guild_id: int) -> bool:
        """The bot may view this guild's audit log, so GUILD_AUDIT_LOG_ENTRY_CREATE reaches it
        (docs/discord.md §6.1)."""
        guild = self.cache.guilds.get(guild_id)
        if guild is None:
            return False
        bot = guild.bot_member or CachedMember(self.cache.bot_id)
        return bool(guild.base_permissions(bot) & VIEW_AUDIT_LOG)

    def _recall_event(self, recall: PendingRecall, operator_id: int, now: float) -> env.MessageRecalled:
        """The envelope recall; ``operator_id`` the bot (:data:`BOT_OPERATOR`, or the bot's own id) → no operator."""
        group: env.Group | None = None
        operator: env.Member | None = None
        if recall.guild_id:
            group = self.entities.group_for_channel(recall.channel_id, recall.guild_id)
            if group is not None and operator_id not in (BOT_OPERATOR, self.cache.bot_id):
                operator = self._operator(recall.guild_id, operator_id, group, now)
        if group is not None:
            conversation = env.ConversationRef.group(group.id)
        else:
            conversation = env.ConversationRef.private(self.cache.dm_partner(recall.channel_id))
        return env.MessageRecalled(
            ref=env.MessageRef(conversation=conversation, platform_id=recall.message_id, channel_id=recall.channel_id),
            author_id=recall.author_id,
            time=int(now),
            group=group,
            operator=operator,
        )

    _handlers: ClassVar[dict[str, _Handler]] = {}


# dispatch name → handler; events that do not touch guild state keep the group memo
_MESSAGE_ONLY = frozenset(
    {
        "MESSAGE_DELETE",
        "MESSAGE_DELETE_BULK",
        "GUILD_BAN_ADD",
        "GUILD_AUDIT_LOG_ENTRY_CREATE",
        "GUILD_MEMBERS_CHUNK",
        "RATE_LIMITED",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_REMOVE",
        "RESUMED",
    },
)
DispatchTranslator._handlers = {
    "MESSAGE_CREATE": DispatchTranslator._on_message_create,
    "READY": DispatchTranslator._on_ready,
    "RESUMED": DispatchTranslator._on_resumed,
    "USER_UPDATE": DispatchTranslator._on_user_update,
    "GUILD_CREATE": DispatchTranslator._on_guild_create,
    "GUILD_UPDATE": DispatchTranslator._on_guild_update,
    "GUILD_DELETE": DispatchTranslator._on_guild_delete,
    "GUILD_ROLE_CREATE": DispatchTranslator._on_role_upsert,
    "GUILD_ROLE_UPDATE": DispatchTranslator._on_role_upsert,
    "GUILD_ROLE_DELETE": DispatchTranslator._on_role_delete,
    "CHANNEL_CREATE": DispatchTranslator._on_channel_create,
    "CHANNEL_UPDATE": DispatchTranslator._on_channel_update,
    "CHANNEL_DELETE": DispatchTranslator._on_channel_delete,
    "THREAD_CREATE": DispatchTranslator._on_channel_create,
    "THREAD_UPDATE": DispatchTranslator._on_channel_update,
    "THREAD_DELETE": DispatchTranslator._on_channel_delete,
    "THREAD_LIST_SYNC": DispatchTranslator._on_thread_list_sync,
    "GUILD_MEMBERS_CHUNK": DispatchTranslator._on_members_chunk,
    "RATE_LIMITED": DispatchTranslator._on_rate_limited,
    "GUILD_MEMBER_ADD": DispatchTranslator._on_member_add,
    "GUILD_MEMBER_REMOVE": DispatchTranslator._on_member_remove,
    "GUILD_MEMBER_UPDATE": DispatchTranslator._on_member_update,
    "GUILD_BAN_ADD": DispatchTranslator._on_ban_add,
    "GUILD_AUDIT_LOG_ENTRY_CREATE": DispatchTranslator._on_audit_entry,
    "MESSAGE_DELETE": DispatchTranslator._on_message_delete,
    "MESSAGE_DELETE_BULK": DispatchTranslator._on_message_delete_bulk,
}
