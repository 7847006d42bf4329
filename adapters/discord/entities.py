"""The entity factory: Discord payloads and cached state → envelope Group, Member and Message.

Used by both directions (hikari's ``entity_factory`` shape): :mod:`~adapters.discord.events_in` builds the
events of a dispatch with it, :mod:`~adapters.discord.commands_out` the results of REST answers (GetMessage,
GetHistory, member lists) and the groups a command may act on. Pure and synchronous; it reads the
:class:`~adapters.discord.cache.DiscordCache` and refreshes the entries of live message authors.

Rules worth knowing (documented for the mirai side and for operators):

* **Groups** are bridged text channels (types 0 and 5), filtered by ``MappingConfig.channels`` (empty = all).
  Threads are their own group (``ThreadMode.OWN_GROUP``) or fold into their parent channel's group
  (``ThreadMode.PARENT``); a thread is bridged when its parent is.
* **Guild-level events** (member join/leave/mute/nick/role) go to ONE group per guild
  (:meth:`EntityFactory.guild_event_group`): the channel named by ``MappingConfig.guild_events`` when it is a
  channel id of that guild, else the guild's system channel when bridged, else its first bridged text
  channel (position order). Never fanned out.
* **Roles**: the guild owner is OWNER; ADMINISTRATOR or MANAGE_GUILD, or the role ``MappingConfig.admin_role``
  names, make an ADMINISTRATOR (docs/discord.md §9.2).
* **Webhook messages** (``webhook_id`` set): ``WebhookMessageMode.FORWARD`` makes them group messages from a
  bot member whose id is the webhook id and whose name is the webhook's display name; ``IGNORE`` drops them.
* Only user-visible message types are forwarded (0 DEFAULT, 19 REPLY, 20/23 command responses); system
  messages (joins, boosts, pins, thread created, …) are covered by their own events or have no mirai meaning.
* A message keeps everything: content markup (:mod:`~adapters.discord.markup`), attachments (with ids from
  :mod:`~adapters.discord.media`), stickers, the embeds of bots and webhooks, polls as text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from adapters.discord.cache import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    MANAGE_GUILD,
    CachedChannel,
    CachedGuild,
    DiscordCache,
)
from adapters.discord.markup import embed_text, merge_text, parse_content
from adapters.discord.media import media_id
from adapters.discord.members import CachedMember, CachedUser
from adapters.discord.snowflakes import snowflake_time, to_int
from relay import envelope as env
from relay.config import MappingConfig, ThreadMode, WebhookMessageMode
from relay.ports import MessageFactory

log = logging.getLogger(__name__)

#: a member's role by its code, the low two bits of CachedMember.role_memo (0 there: nothing remembered)
_MEMBER, _ADMINISTRATOR, _OWNER = 1, 2, 3
_ROLES: tuple[env.Role, ...] = (env.Role.MEMBER, env.Role.MEMBER, env.Role.ADMINISTRATOR, env.Role.OWNER)

# docs/discord.md §6.2 message types forwarded as messages: DEFAULT, REPLY, CHAT_INPUT_COMMAND, CONTEXT_MENU_COMMAND
FORWARDED_MESSAGE_TYPES: Final = frozenset({0, 19, 20, 23})
# docs/discord.md §6.2 message_reference.type
REFERENCE_FORWARD: Final = 1
#: distinct role sets a guild's role memo holds (EntityFactory._role_codes); past this it starts afresh
MAX_ROLE_SETS_A_GUILD: Final = 1024
#: Channel → group memo entries (rebuilt from the cache on demand; cleared whenever guild state changes).
MAX_MEMO_GROUPS: Final = 10_000


class EntityFactory:
    """Payloads and cached state → envelope entities. Holds only memos, which :meth:`forget_groups` clears."""

    def __init__(self, cache: DiscordCache, config: MappingConfig) -> None:
        self.cache = cache
        self.config = config
        self._channel_filter = frozenset(config.channels)
        #: channel id → its group (None when not bridged); cleared whenever guild state changes
        self._groups: dict[int, env.Group | None] = {}
        #: group id → its ConversationRef (immutable, so never stale; one per message was measurable)
        self._conversations: dict[int, env.ConversationRef] = {}
        #: guild id → (its roles_version when looked up, the configured admin role's id there or 0). Checked against
        #: the guild's roles_version, so a role added behind the dispatches' back (memberAdmin fetching the guild's
        #: roles over REST) is found at once, not after the next dispatch that calls forget_groups
        self._admin_roles: dict[int, tuple[int, int]] = {}
        #: guild id → (its roles_version, a member's role set → its role code there): a member who is not the
        #: owner has the role its roles give under the guild's roles and this factory's configuration, shared by
        #: every member with the same roles (see _role_code)
        self._role_codes: dict[int, tuple[int, dict[tuple[int, ...], int]]] = {}

    def forget_groups(self) -> None:
        """Guild state changed (channels, roles, members): groups and roles are computed afresh."""
        self._groups.clear()
        self._admin_roles.clear()
        self._role_codes.clear()

    # ----------------------------------------------------------------- roles, members, groups

    def bot_role(self, guild: CachedGuild) -> env.Role:
        """The bot's standing in the guild (mirai ``Group.permission``)."""
        bot = guild.bot_member
        if bot is None:
            bot_id = self.cache.bot_id
            if bot_id and bot_id == guild.owner_id:
                return env.Role.OWNER
            return env.Role.MEMBER
        return self.member_role(guild, bot)

    def member_role(self, guild: CachedGuild, member: CachedMember) -> env.Role:
        """Owner → OWNER; ADMINISTRATOR/MANAGE_GUILD or the configured admin role → ADMINISTRATOR (§9.2).

        Without ``admin_role`` configured, the role depends only on the cache (the guild's owner and roles, the
        member's roles), so it is remembered on the member with the version of its guild's roles (see
        CachedMember.role_memo). A message whose author spoke before then skips ~3,700 of its ~277,000 instructions
        on the event path; one from an author not seen since the guild's roles changed costs ~90 more
        (scripts/measure_event_path.py under callgrind, 5,000 events: 1 guild of 99 members, 1,000 guilds of 100).
        With ``admin_role`` it also depends on this factory's configuration, which the cache does not know: derived
        every time."""
        if self.config.admin_role:
            return _ROLES[self._role_code(guild, member)]
        memo = member.role_memo
        version = guild.roles_version
        if memo and memo >> 2 == version:
            return _ROLES[memo & 3]
        code = self._role_code(guild, member)
        member.role_memo = version << 2 | code
        return _ROLES[code]

    def _role_code(self, guild: CachedGuild, member: CachedMember) -> int:
        """The member's role as its index in _ROLES (an int: hashing an Enum is a Python-level call).

        Apart from the owner, it follows from the member's roles alone (under the guild's roles, the same for all its
        members, and this factory's configuration), so it is derived once per role set and guild version. In a
        bot that lives in many guilds most authors are new to the per-member memo (member_role), and deriving each
        one's role touched the guild's role table and role objects, cold by then: scripts/measure_event_path.py at
        1,000 guilds x 100 members, where every author is new, ran 0.5-3.9 us an event faster with no role derived at
        all (three interleaved pairs, ~21-27 us an event); with this memo, 0.04-2.1 us faster than before it."""
        owner_id = guild.owner_id
        if owner_id and member.id == owner_id:
            return _OWNER
        version = guild.roles_version
        known = self._role_codes.get(guild.id)
        if known is None or known[0] != version:
            known = self._role_codes[guild.id] = (version, {})
        codes = known[1]
        roles = member.roles
        code = codes.get(roles)
        if code is None:
            if len(codes) >= MAX_ROLE_SETS_A_GUILD:
                codes.clear()  # a guild whose members hold ever more distinct role sets cannot grow the memo
            code = codes[roles] = self._derive_role_code(guild, member)
        return code

    def _derive_role_code(self, guild: CachedGuild, member: CachedMember) -> int:
        """_role_code's derivation for a member who is not the owner (docs/discord.md §9.2)."""
        perms = guild.base_permissions(member)
        if perms == ALL_PERMISSIONS or perms & (ADMINISTRATOR | MANAGE_GUILD):
            return _ADMINISTRATOR
        admin_role = self.admin_role_id(guild)
        if admin_role and admin_role in member.roles:
            return _ADMINISTRATOR
        return _MEMBER

    def admin_role_id(self, guild: CachedGuild) -> int:
        """The role ``MappingConfig.admin_role`` names in this guild, 0 when unset or not found."""
        if not self.config.admin_role:
            return 0
        found = self._admin_roles.get(guild.id)
        version = guild.roles_version
        if found is None or found[0] != version:
            found = self._admin_roles[guild.id] = (version, guild.role_id_by_name_or_id(self.config.admin_role))
        return found[1]

    def member_of(self, guild_id: int, member: CachedMember, group: env.Group, now: float) -> env.Member:
        guild = self.cache.guilds.get(guild_id)
        role = self.member_role(guild, member) if guild is not None else env.Role.MEMBER
        remaining = member.timeout_until - now
        # ``member.id`` rather than ``member.user.id``: a cached member is its user (the property costs a call on
        # every relayed message)
        return env.Member(
            user_id=member.id,
            display_name=member.display_name,
            role=role,
            group=group,
            joined_at=int(member.joined_at),
            last_spoke_at=int(member.last_spoke_at),
            mute_remaining=math.ceil(remaining) if remaining > 0 else 0,
            is_bot=member.is_bot,
        )

    def is_bridged_text_channel(self, channel: CachedChannel) -> bool:
        return channel.is_text and (not self._channel_filter or channel.id in self._channel_filter)

    def group_for_channel(self, channel_id: int, guild_id: int = 0) -> env.Group | None:
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

    def _compute_group(self, channel_id: int, guild_id: int) -> env.Group | None:
        channel = self.cache.channels.get(channel_id)
        if channel is None:
            # not cached (yet): bridge it unless the operator restricted the channel list
            if self._channel_filter and channel_id not in self._channel_filter:
                return None
            guild = self.cache.guilds.get(guild_id)
            role = self.bot_role(guild) if guild is not None else env.Role.MEMBER
            return env.Group(id=channel_id, name="", bot_role=role, guild_id=guild_id)
        guild = self.cache.guilds.get(channel.guild_id)
        role = self.bot_role(guild) if guild is not None else env.Role.MEMBER
        if channel.is_thread:
            parent = self.cache.channels.get(channel.parent_id)
            if parent is not None and not self.is_bridged_text_channel(parent):
                if channel.id not in self._channel_filter:
                    return None
            elif parent is None and self._channel_filter and channel.parent_id not in self._channel_filter:
                return None
            if self.config.threads == ThreadMode.PARENT and parent is not None:
                return env.Group(id=parent.id, name=parent.name, bot_role=role, guild_id=parent.guild_id)
            return env.Group(id=channel.id, name=channel.name, bot_role=role, guild_id=channel.guild_id)
        if not self.is_bridged_text_channel(channel):
            return None
        return env.Group(id=channel.id, name=channel.name, bot_role=role, guild_id=channel.guild_id)

    def bridged_groups(self, guild_id: int) -> list[env.Group]:
        """Every bridged text channel of the guild as a group (threads excluded), in display order."""
        groups = []
        for channel in self.cache.guild_channels(guild_id):
            if self.is_bridged_text_channel(channel):
                group = self.group_for_channel(channel.id, guild_id)
                if group is not None:
                    groups.append(group)
        return groups

    def all_groups(self) -> list[env.Group]:
        groups: list[env.Group] = []
        for guild_id in self.cache.guilds:
            groups.extend(self.bridged_groups(guild_id))
        return groups

    def guild_event_group(self, guild_id: int) -> env.Group | None:
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

    # ----------------------------------------------------------------- messages

    def message_from_payload(self, data: Mapping[str, Any]) -> env.Message | None:
        """A message object from REST (GetMessage/GetHistory) → Message; None when it is not bridgeable."""
        try:
            return self.message(data, live=False)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("skipping malformed message from Discord's REST API: %r", exc)
            return None

    def _conversation_of(self, group_id: int) -> env.ConversationRef:
        conversation = self._conversations.get(group_id)
        if conversation is None:
            if len(self._conversations) >= MAX_MEMO_GROUPS:
                self._conversations.clear()
            conversation = self._conversations[group_id] = env.ConversationRef.group(group_id)
        return conversation

    def message(
        self, data: Mapping[str, Any], *, live: bool, new_message: MessageFactory = env.Message
    ) -> env.Message | None:
        """A message object → Message; None when it is not bridgeable (system message, channel not bridged...).

        ``live``: it came from the gateway (MESSAGE_CREATE): the author's cache entry is refreshed and the
        message is built with ``new_message``. A malformed payload raises KeyError, TypeError, ValueError or
        AttributeError: the caller decides how to report it.
        """
        if data.get("type", 0) not in FORWARDED_MESSAGE_TYPES:
            return None
        author = data["author"]
        author_id = to_int(author["id"])
        message_id = to_int(data["id"])
        channel_id = to_int(data["channel_id"])
        bot_id = self.cache.bot_id
        from_self = author_id == bot_id and bot_id != 0
        time = snowflake_time(message_id)
        guild_id = to_int(data.get("guild_id"))
        channel = self.cache.channels.get(channel_id)
        if not guild_id and channel is not None:
            guild_id = channel.guild_id  # REST messages carry no guild_id
        group: env.Group | None = None
        sender: env.Member | env.User
        if guild_id:
            group = self.group_for_channel(channel_id, guild_id)
            if group is None:
                return None
            conversation = self._conversation_of(group.id)
            webhook = data.get("webhook_id")
            if webhook is not None and not from_self:
                if self.config.webhook_messages == WebhookMessageMode.IGNORE:
                    return None
                sender = env.Member(
                    user_id=author_id,
                    display_name=str(author.get("global_name") or author.get("username") or "webhook"),
                    role=env.Role.MEMBER,
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
                    cached = CachedMember.of_user(author)
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
            conversation = env.ConversationRef.private(partner)
            sender = env.User(id=user.id, name=user.name, username=user.username, is_bot=user.is_bot)
        segments = self.segments_of(data, guild_id, channel_id, message_id)
        quote = self._quote_of(data, conversation, channel_id, guild_id)
        return (new_message if live else env.Message)(
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
        conversation: env.ConversationRef,
        channel_id: int,
        guild_id: int,
    ) -> env.Quote | None:
        reference = data.get("message_reference")
        if not isinstance(reference, dict) or reference.get("type", 0) == REFERENCE_FORWARD:
            return None
        target = to_int(reference.get("message_id"))
        if not target:
            return None
        ref = env.MessageRef(
            conversation=conversation,
            platform_id=target,
            channel_id=to_int(reference.get("channel_id")) or channel_id,
        )
        referenced = data.get("referenced_message")
        if not isinstance(referenced, dict):
            return env.Quote(ref=ref)  # absent = not fetched, null = deleted (docs/discord.md §6.2)
        author = referenced.get("author")
        author_id = to_int(author.get("id")) if isinstance(author, dict) else 0
        origin = self.segments_of(referenced, guild_id, ref.channel_id or channel_id, target)
        return env.Quote(ref=ref, author_id=author_id, origin=origin)

    # ----------------------------------------------------------------- segments

    def segments_of(
        self,
        data: Mapping[str, Any],
        guild_id: int,
        channel_id: int,
        message_id: int,
    ) -> tuple[env.Segment, ...]:
        """Content markup, attachments, stickers, embeds (from bots), poll — in that order, nothing dropped."""
        content = data.get("content") or ""
        segments: list[env.Segment] = []
        if content:
            if "<" not in content and "@" not in content:
                segments.append(env.Text(content))
            else:
                segments = parse_content(content, data, guild_id, self.cache)
        snapshots = data.get("message_snapshots")
        if isinstance(snapshots, list):
            for snapshot in snapshots:
                inner = snapshot.get("message") if isinstance(snapshot, dict) else None
                if isinstance(inner, dict):
                    segments.append(env.Text("[forwarded message]\n"))
                    segments.extend(self.segments_of(inner, guild_id, channel_id, message_id))
        for attachment in data.get("attachments") or ():
            if isinstance(attachment, dict):
                segments.append(self._attachment(attachment, channel_id, message_id))
        for sticker in data.get("sticker_items") or ():
            if isinstance(sticker, dict):
                segments.append(
                    env.Sticker(
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
                            env.RichContent(
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
            segments.append(env.Unsupported(fallback=f"[poll] {q_text} " + " / ".join(answers), what="poll"))
        if not segments:
            # e.g. content hidden without the MESSAGE_CONTENT intent (docs/discord.md §5): say so, do not drop
            segments.append(env.Unsupported(fallback="[empty message]", what="empty"))
        return merge_text(segments)

    def _attachment(self, attachment: Mapping[str, Any], channel_id: int, message_id: int) -> env.Segment:
        attachment_id = to_int(attachment.get("id"))
        filename = str(attachment.get("filename") or "")
        url = str(attachment.get("url") or "")
        content_type = str(attachment.get("content_type") or "")
        size = to_int(attachment.get("size"))
        issued = media_id(channel_id, message_id, attachment_id, filename)
        if content_type.startswith("image/"):
            self.cache.remember_media(issued, url)
            return env.Image(
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
            return env.Audio(
                id=issued,
                url=url,
                filename=filename,
                content_type=content_type,
                size=size,
                duration=float(duration) if isinstance(duration, (int, float)) else 0.0,
            )
        self.cache.remember_media(issued, url)
        return env.File(id=issued, name=filename, size=size, url=url or None)
