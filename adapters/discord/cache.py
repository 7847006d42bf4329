"""A bounded cache of the Discord state both directions need (issue 3, last bullet; docs/discord.md §6).

Pure: no trio, no clock, no I/O. Fed by the dispatches of the gateway (through
:class:`adapters.discord.events_in.DispatchTranslator`) and by REST answers (through
:class:`adapters.discord.commands_out.DiscordCommandExecutor`); read through
:class:`adapters.discord.entities.EntityFactory`. Others change it only through its methods.

What it holds:

* the bot user, and the guild ids READY announced (to tell "bot joined a guild" from a lazy GUILD_CREATE);
* guilds: name, owner, system channel, roles (name, permissions, position), the bot's own member;
* channels (guild channels, threads, DM channels): name, type, parent, overwrites, guild;
* members "as far as seen or fetched", as compact records under a per-guild and a global bound, least recently
  used evicted first (:mod:`adapters.discord.members`; docs/discord.md §6.4: caching every member of large guilds is
  what costs discord.py users gigabytes), plus a small LRU of users. A guild's list counts as complete when a
  GUILD_CREATE listed everyone, or a whole-list request (op 8) or REST listing fit, until an eviction;
* the bridge's image ids → attachment URLs (so a framework can send back an image it received).

The bounds are ``[discord.cache]`` (:class:`relay.config.DiscordCacheConfig`, :meth:`DiscordCache.from_config`).

Obfuscated channels (name ``___hidden___``, flag ``1<<17``; docs/discord.md §2.5) are never cached.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from adapters.discord.members import CachedMember, CachedUser, MemberTable
from adapters.discord.snowflakes import to_int
from relay.config import DiscordCacheConfig

# --------------------------------------------------------------------------- bounds (memory)

#: The default bounds ([discord.cache] in the configuration; adapters/discord/members.py says what each costs).
_DEFAULTS = DiscordCacheConfig()
MAX_MEMBERS_PER_GUILD = _DEFAULTS.max_members_per_guild
MAX_MEMBERS_TOTAL = _DEFAULTS.max_members
MAX_USERS = _DEFAULTS.max_users
MAX_DM_CHANNELS = _DEFAULTS.max_dm_channels
MAX_MEDIA_IDS = _DEFAULTS.max_media_ids

# --------------------------------------------------------------------------- Discord constants

# docs/discord.md §6.3 channel types
TEXT_CHANNEL_TYPES = frozenset({0, 5})  # GUILD_TEXT, GUILD_ANNOUNCEMENT
THREAD_CHANNEL_TYPES = frozenset({10, 11, 12})  # ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD
DM_CHANNEL_TYPE = 1
# docs/discord.md §2.5 (channel obfuscation, discord-api-docs PR #8454)
OBFUSCATED_CHANNEL_NAME = "___hidden___"
CHANNEL_FLAG_OBFUSCATED = 1 << 17

# docs/discord.md §9.2 permission bits
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
SEND_MESSAGES = 1 << 11
VIEW_AUDIT_LOG = 1 << 7
ALL_PERMISSIONS = (1 << 64) - 1

# --------------------------------------------------------------------------- cached objects


@attrs.define(slots=True)
class CachedRole:
    id: int
    name: str = ""
    permissions: int = 0
    position: int = 0

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> CachedRole:
        return cls(
            id=to_int(data.get("id")),
            name=str(data.get("name") or ""),
            permissions=to_int(data.get("permissions")),
            position=to_int(data.get("position")),
        )


@attrs.frozen
class Overwrite:
    """A channel permission overwrite (docs/discord.md §6.3): ``type`` 0 = role, 1 = member."""

    id: int
    type: int
    allow: int
    deny: int

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Overwrite:
        return cls(
            to_int(data.get("id")),
            to_int(data.get("type")),
            to_int(data.get("allow")),
            to_int(data.get("deny")),
        )


@attrs.define(slots=True)
class CachedChannel:
    id: int
    type: int
    guild_id: int = 0
    name: str = ""
    parent_id: int = 0
    position: int = 0
    overwrites: dict[int, Overwrite] = attrs.field(factory=dict)
    recipient_id: int = 0  #: DM channels: the other user

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_CHANNEL_TYPES

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_CHANNEL_TYPES

    @property
    def muted_all(self) -> bool:
        """True when the @everyone overwrite (id = guild id) denies SEND_MESSAGES (docs/discord.md §9, mute all)."""
        overwrite = self.overwrites.get(self.guild_id)
        return overwrite is not None and bool(overwrite.deny & SEND_MESSAGES)


def is_obfuscated(data: Mapping[str, Any]) -> bool:
    return data.get("name") == OBFUSCATED_CHANNEL_NAME or bool(to_int(data.get("flags")) & CHANNEL_FLAG_OBFUSCATED)


def channel_from_payload(data: Mapping[str, Any], guild_id: int = 0) -> CachedChannel:
    overwrites = {}
    for raw in data.get("permission_overwrites") or ():
        if isinstance(raw, dict):
            ow = Overwrite.from_payload(raw)
            overwrites[ow.id] = ow
    recipient_id = 0
    recipients = data.get("recipients")
    if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict):
        recipient_id = to_int(recipients[0].get("id"))
    return CachedChannel(
        id=to_int(data.get("id")),
        type=to_int(data.get("type")),
        guild_id=to_int(data.get("guild_id")) or guild_id,
        name=str(data.get("name") or ""),
        parent_id=to_int(data.get("parent_id")),
        position=to_int(data.get("position")),
        overwrites=overwrites,
        recipient_id=recipient_id,
    )


#: versions of guilds' roles (and owners), unique across guild objects: a member's remembered role is valid only
#: while its guild's version is the one it was derived from (see CachedMember.role_memo)
_roles_versions = itertools.count(1)


def next_roles_version() -> int:
    return next(_roles_versions)


@attrs.define(slots=True)
class CachedGuild:
    id: int
    name: str = ""
    owner_id: int = 0
    system_channel_id: int = 0
    roles: dict[int, CachedRole] = attrs.field(factory=dict)
    channel_ids: set[int] = attrs.field(factory=set)
    #: least recently used first (see adapters.discord.members.MemberTable, which alone changes it). The bot's
    #: own member lives in ``bot_member`` and is never evicted.
    members: dict[int, CachedMember] = attrs.field(factory=dict)
    bot_member: CachedMember | None = None
    unavailable: bool = False
    #: True while ``members`` holds every member (a GUILD_CREATE that listed them all, a whole-list member
    #: request or REST listing that fit), until one is evicted
    members_complete: bool = False
    #: members evicted from this guild so far
    members_evicted: int = 0
    #: GUILD_CREATE's ``member_count`` (the bot included); 0 when unknown
    member_count: int = 0
    #: changes whenever ``roles`` or ``owner_id`` may have (see next_roles_version)
    roles_version: int = attrs.field(factory=next_roles_version)

    def update(self, data: Mapping[str, Any]) -> None:
        if "name" in data:
            self.name = str(data.get("name") or "")
        if "owner_id" in data:
            self.owner_id = to_int(data.get("owner_id"))
            self.roles_version = next_roles_version()
        if "system_channel_id" in data:
            self.system_channel_id = to_int(data.get("system_channel_id"))
        roles = data.get("roles")
        if isinstance(roles, list):
            self.roles = {r.id: r for r in (CachedRole.from_payload(x) for x in roles if isinstance(x, dict))}
            self.roles_version = next_roles_version()

    def base_permissions(self, member: CachedMember) -> int:
        """Guild-level permissions (docs/discord.md §9.2): owner → all; @everyone | member roles;
        ADMINISTRATOR → all."""
        if member.id == self.owner_id and self.owner_id:
            return ALL_PERMISSIONS
        everyone = self.roles.get(self.id)
        perms = everyone.permissions if everyone else 0
        for role_id in member.roles:
            role = self.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def role_id_by_name_or_id(self, wanted: str) -> int:
        """Resolve a configured role (``MappingConfig.admin_role``): an id, else a name; 0 when not found."""
        wanted = wanted.strip()
        if not wanted:
            return 0
        if wanted.isdigit() and int(wanted) in self.roles:
            return int(wanted)
        for role in self.roles.values():
            if role.name == wanted:
                return role.id
        return 0


# --------------------------------------------------------------------------- the cache


class _BoundedMap(collections.OrderedDict[Any, Any]):
    """An LRU mapping that forgets its oldest entry past ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class DiscordCache:
    """The bounded Discord state cache. All methods are cheap, synchronous and never raise on odd payloads."""

    def __init__(
        self,
        *,
        max_members_per_guild: int = MAX_MEMBERS_PER_GUILD,
        max_members_total: int = MAX_MEMBERS_TOTAL,
        max_users: int = MAX_USERS,
        max_media_ids: int = MAX_MEDIA_IDS,
        max_dm_channels: int = MAX_DM_CHANNELS,
    ) -> None:
        self.max_members_per_guild = max_members_per_guild
        self.max_members_total = max_members_total
        self._members = MemberTable(per_guild=max_members_per_guild, total=max_members_total)
        self.bot_user: CachedUser | None = None
        self._ready_guild_ids: set[int] = set()
        self.guilds: dict[int, CachedGuild] = {}
        self.channels: dict[int, CachedChannel] = {}
        self.users: _BoundedMap = _BoundedMap(max_users)
        self.media_urls: _BoundedMap = _BoundedMap(max_media_ids)
        #: DM channel id → the other user's id (DM channels are not kept in ``channels``)
        self.dm_partners: _BoundedMap = _BoundedMap(max_dm_channels)
        #: called with (channel id, user id) when a DM channel's user is learned or changes (to persist contacts)
        self.on_new_dm_channel: Callable[[int, int], None] | None = None

    @classmethod
    def from_config(cls, config: DiscordCacheConfig) -> DiscordCache:
        """A cache with the bounds of ``[discord.cache]``."""
        return cls(
            max_members_per_guild=config.max_members_per_guild,
            max_members_total=config.max_members,
            max_users=config.max_users,
            max_media_ids=config.max_media_ids,
            max_dm_channels=config.max_dm_channels,
        )

    @property
    def members_evicted(self) -> int:
        """Members evicted so far (past a bound)."""
        return self._members.evicted

    # ---------------------------------------------------------------- identity

    @property
    def bot_id(self) -> int:
        return self.bot_user.id if self.bot_user else 0

    @property
    def bot_name(self) -> str:
        return self.bot_user.name if self.bot_user else ""

    def on_ready(self, data: Mapping[str, Any]) -> None:
        user = data.get("user")
        if isinstance(user, dict):
            self.set_bot_user(user)
        for guild in data.get("guilds") or ():
            if isinstance(guild, dict):
                guild_id = to_int(guild.get("id"))
                self._ready_guild_ids.add(guild_id)
                known = self.guilds.get(guild_id)
                if known is not None:
                    known.unavailable = True  # a GUILD_CREATE follows and refreshes it (docs/discord.md §2.6)

    @property
    def ready_guild_ids(self) -> frozenset[int]:
        """The guilds the bot is known to be in: listed by READY, joined since, or fetched to resume."""
        return frozenset(self._ready_guild_ids)

    def knows_guild(self, guild_id: int) -> bool:
        """True when a GUILD_CREATE for this guild is not a join (the bot is known to be in it, or it is cached)."""
        return guild_id in self._ready_guild_ids or guild_id in self.guilds

    def mark_guild_known(self, guild_id: int) -> None:
        """The bot is in this guild (it joined, or its state was fetched to resume a session)."""
        self._ready_guild_ids.add(guild_id)

    def set_bot_user(self, data: Mapping[str, Any]) -> None:
        if self.bot_user is not None and self.bot_user.id == to_int(data.get("id")):
            self.bot_user.update(data)
        else:
            self.bot_user = CachedUser.from_payload(data)

    # ---------------------------------------------------------------- guilds

    def upsert_guild(self, data: Mapping[str, Any]) -> CachedGuild:
        """GUILD_CREATE / GUILD_UPDATE (and REST ``get_guild``). Channels and members inside are cached too."""
        guild_id = to_int(data.get("id"))
        guild = self.guilds.get(guild_id)
        if guild is None:
            guild = self.guilds[guild_id] = CachedGuild(guild_id)
        guild.update(data)
        guild.unavailable = False
        if "member_count" in data:
            guild.member_count = to_int(data.get("member_count"))
        channels = data.get("channels")
        if isinstance(channels, list):
            self.replace_guild_channels(guild_id, channels)
        threads = data.get("threads")
        if isinstance(threads, list):
            for thread in threads:
                if isinstance(thread, dict):
                    self.upsert_channel(thread, guild_id)
        members = data.get("members")
        if isinstance(members, list):
            evicted = guild.members_evicted
            loaded = sum(1 for member in members if isinstance(member, dict) and self._load_member(guild, member))
            # under the large threshold GUILD_CREATE lists every member (with GUILD_MEMBERS; docs/discord.md §6.4); one
            # listed without its user object (a deviant server) is not cached, so the list is not complete then
            if guild.member_count and loaded >= guild.member_count and guild.members_evicted == evicted:
                guild.members_complete = True
        return guild

    def replace_guild_channels(self, guild_id: int, channels: list[Any]) -> None:
        """A full channel list (GUILD_CREATE, REST): channels missing from it are forgotten (threads kept)."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            guild = self.guilds[guild_id] = CachedGuild(guild_id)
        seen: set[int] = set()
        for raw in channels:
            if isinstance(raw, dict):
                channel = self.upsert_channel(raw, guild_id)
                if channel is not None:
                    seen.add(channel.id)
        for channel_id in list(guild.channel_ids):
            known = self.channels.get(channel_id)
            if channel_id not in seen and (known is None or not known.is_thread):
                self.remove_channel(channel_id)

    def mark_unavailable(self, guild_id: int) -> None:
        guild = self.guilds.get(guild_id)
        if guild is not None:
            guild.unavailable = True

    def remove_guild(self, guild_id: int) -> CachedGuild | None:
        guild = self.guilds.pop(guild_id, None)
        self._ready_guild_ids.discard(guild_id)
        if guild is None:
            return None
        for channel_id in guild.channel_ids:
            self.channels.pop(channel_id, None)
        self._members.drop_guild(guild)
        return guild

    def upsert_role(self, guild_id: int, data: Mapping[str, Any]) -> None:
        guild = self.guilds.get(guild_id)
        if guild is not None:
            role = CachedRole.from_payload(data)
            guild.roles[role.id] = role
            guild.roles_version = next_roles_version()

    def role_name(self, guild_id: int, role_id: int) -> str | None:
        """A role's name; None when the guild or the role is unknown."""
        guild = self.guilds.get(guild_id)
        role = guild.roles.get(role_id) if guild is not None else None
        return role.name if role is not None else None

    def remove_role(self, guild_id: int, role_id: int) -> None:
        guild = self.guilds.get(guild_id)
        if guild is not None:
            guild.roles.pop(role_id, None)
            guild.roles_version = next_roles_version()

    # ---------------------------------------------------------------- channels

    def upsert_channel(self, data: Mapping[str, Any], guild_id: int = 0) -> CachedChannel | None:
        """Cache a channel/thread/DM channel. Obfuscated channels are dropped (and forgotten if known)."""
        if is_obfuscated(data):
            self.remove_channel(to_int(data.get("id")))
            return None
        channel = channel_from_payload(data, guild_id)
        if channel.type == DM_CHANNEL_TYPE:
            if channel.recipient_id:
                self.note_dm_channel(channel.id, channel.recipient_id)
            else:
                channel.recipient_id = self.dm_partner(channel.id)
            return channel
        self.channels[channel.id] = channel
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        if guild is not None:
            guild.channel_ids.add(channel.id)
        return channel

    def remove_channel(self, channel_id: int) -> CachedChannel | None:
        channel = self.channels.pop(channel_id, None)
        if channel is not None and channel.guild_id:
            guild = self.guilds.get(channel.guild_id)
            if guild is not None:
                guild.channel_ids.discard(channel_id)
        return channel

    def note_dm_channel(self, channel_id: int, user_id: int) -> None:
        """Remember whose DM channel this is (from a DM message, a DM channel object, or opening one)."""
        if user_id:
            if self.on_new_dm_channel is not None and self.dm_partners.get(channel_id) != user_id:
                self.on_new_dm_channel(channel_id, user_id)
            self.dm_partners.put(channel_id, user_id)

    def dm_partner(self, channel_id: int) -> int:
        """The other user of a DM channel; 0 when unknown."""
        partner: int = self.dm_partners.get(channel_id, 0)
        return partner

    def dm_channel_of(self, user_id: int) -> int:
        """The DM channel with ``user_id`` if one is remembered (a scan: used on the rare send path only)."""
        for channel_id, partner in reversed(self.dm_partners.items()):
            if partner == user_id:
                return int(channel_id)
        return 0

    def channel_name(self, channel_id: int) -> str | None:
        """A channel's name; None when the channel is unknown."""
        channel = self.channels.get(channel_id)
        return channel.name if channel is not None else None

    def guild_channels(self, guild_id: int) -> list[CachedChannel]:
        """The guild's cached channels in display order (position, then id)."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            return []
        found = [self.channels[c] for c in guild.channel_ids if c in self.channels]
        found.sort(key=lambda c: (c.position, c.id))
        return found

    # ---------------------------------------------------------------- members and users

    def member(self, guild_id: int, user_id: int) -> CachedMember | None:
        guild = self.guilds.get(guild_id)
        if guild is None:
            return None
        if guild.bot_member is not None and user_id == guild.bot_member.user.id:
            return guild.bot_member
        return guild.members.get(user_id)

    def upsert_member(
        self,
        guild_id: int,
        data: Mapping[str, Any],
        user: Mapping[str, Any] | None = None,
    ) -> tuple[CachedMember | None, CachedMember] | None:
        """Apply a member payload; returns ``(previous copy or None, current)``, or None for an unknown guild.

        ``user`` supplies the user object for partial members (MESSAGE_CREATE's ``member`` has no ``user``).
        """
        guild = self.guilds.get(guild_id)
        if guild is None:
            return None
        raw_user = data.get("user")
        if not isinstance(raw_user, dict):
            raw_user = user
        if not isinstance(raw_user, dict):
            return None
        user_id = to_int(raw_user.get("id"))
        if self.bot_user is not None and user_id == self.bot_user.id:
            old_bot = guild.bot_member.copy() if guild.bot_member is not None else None
            if guild.bot_member is None:
                guild.bot_member = CachedMember(user_id)
            CachedUser.update(guild.bot_member, raw_user)
            guild.bot_member.update(data)
            return old_bot, guild.bot_member
        member = guild.members.get(user_id)
        previous = member.copy() if member is not None else None
        if member is None:
            member = CachedMember(user_id)
            CachedUser.update(member, raw_user)
            member.update(data)
            self._members.add(guild, member)
        else:
            CachedUser.update(member, raw_user)
            member.update(data)
            self._members.touch(member)
        return previous, member

    def _load_member(self, guild: CachedGuild, data: Mapping[str, Any]) -> bool:
        """:meth:`upsert_member` without the previous copy (GUILD_CREATE, member chunks, REST listings); False for
        an entry without its user object (some Discord-compatible servers send those), which cannot be cached."""
        raw_user = data.get("user")
        if not isinstance(raw_user, dict):
            return False
        user_id = to_int(raw_user.get("id"))
        if self.bot_user is not None and user_id == self.bot_user.id:
            self.upsert_member(guild.id, data)
            return True
        member = guild.members.get(user_id)
        if member is None:
            member = CachedMember(user_id)
            member.update(data)
            self._members.add(guild, member)
        else:
            member.update(data)
            self._members.touch(member)
        return True

    def load_members(self, guild_id: int, members: Sequence[Any]) -> int:
        """Members of a guild in bulk (a GUILD_MEMBERS_CHUNK): cached, no copies made. Returns how many entries
        could not be cached (not objects, or without their user object)."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            return 0
        unreadable = 0
        for data in members:
            if not (isinstance(data, dict) and self._load_member(guild, data)):
                unreadable += 1
        return unreadable

    def upsert_all_members(self, guild_id: int, members: Sequence[Mapping[str, Any]]) -> list[CachedMember]:
        """Every member of a guild (a full REST listing): each is cached, and the guild's member list counts as
        complete when all of them fit and every entry could be read (one without its ``user`` object, as some
        Discord-compatible servers send, cannot be). Returns a copy of each member read (the cache may evict them
        meanwhile); ``len(members)`` minus its length is how many could not be."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            return []
        found: list[CachedMember] = []
        evicted = guild.members_evicted
        for data in members:
            result = self.upsert_member(guild_id, data)
            if result is not None:
                found.append(result[1].copy())
        guild.members_complete = (
            len(found) == len(members) <= self.max_members_per_guild and guild.members_evicted == evicted
        )
        return found

    def touch_message_author(
        self,
        guild_id: int,
        author: Mapping[str, Any],
        member: Mapping[str, Any] | None,
        spoke_at: float,
        *,
        user_id: int | None = None,
    ) -> CachedMember | None:
        """The MESSAGE_CREATE hot path: refresh the author's member entry cheaply and return it.

        ``user_id``: the author's id when the caller has already parsed it.
        """
        guild = self.guilds.get(guild_id)
        if guild is None:
            return None
        if user_id is None:
            user_id = to_int(author.get("id"))
        cached = guild.members.get(user_id)
        if cached is not None:
            CachedUser.update(cached, author)
            if member is not None:
                cached.refresh_from_message(member)
            cached.last_spoke_at = spoke_at
            self._members.touch(cached)
            return cached
        bot = guild.bot_member
        cached = bot if bot is not None and bot.id == user_id else CachedMember(user_id)
        CachedUser.update(cached, author)
        if member is not None:
            cached.refresh_from_message(member)
        cached.last_spoke_at = spoke_at
        if cached is bot:
            return cached
        if self.bot_user is not None and user_id == self.bot_user.id:
            guild.bot_member = cached
        else:
            self._members.add(guild, cached)
        return cached

    def remove_member(self, guild_id: int, user_id: int) -> CachedMember | None:
        guild = self.guilds.get(guild_id)
        if guild is None:
            return None
        return self._members.remove(guild, user_id)

    def display_name(self, guild_id: int, user_id: int) -> str:
        """A user's name as shown in the guild: the member's nick first, else the user's name; "" when unknown."""
        member = self.member(guild_id, user_id) if guild_id else None
        if member is not None:
            return member.display_name
        user = self.user(user_id)
        return user.name if user is not None else ""

    def user(self, user_id: int) -> CachedUser | None:
        if self.bot_user is not None and user_id == self.bot_user.id:
            return self.bot_user
        found: CachedUser | None = self.users.get(user_id)
        return found

    def upsert_user(self, data: Mapping[str, Any]) -> CachedUser:
        user_id = to_int(data.get("id"))
        if self.bot_user is not None and user_id == self.bot_user.id:
            self.bot_user.update(data)
            return self.bot_user
        known: CachedUser | None = self.users.get(user_id)
        if known is None:
            known = CachedUser.from_payload(data)
        else:
            known.update(data)
        self.users.put(user_id, known)
        return known

    def find_user(self, user_id: int) -> CachedUser | None:
        """A user from the user LRU or any guild's member cache."""
        found = self.user(user_id)
        if found is not None:
            return found
        for guild in self.guilds.values():
            member = guild.members.get(user_id)
            if member is not None:
                return member.user
        return None

    # ---------------------------------------------------------------- media ids

    def remember_media(self, media_id: str, url: str) -> None:
        self.media_urls.put(media_id, url)

    def media_url(self, media_id: str) -> str | None:
        url: str | None = self.media_urls.get(media_id)
        return url

    # ---------------------------------------------------------------- introspection

    def iter_members(self, guild_id: int) -> Iterator[CachedMember]:
        guild = self.guilds.get(guild_id)
        if guild is None:
            return
        if guild.bot_member is not None:
            yield guild.bot_member
        yield from guild.members.values()

    def statistics(self) -> dict[str, int]:
        return {
            "guilds": len(self.guilds),
            "channels": len(self.channels),
            "members": self._members.count,
            "members_evicted": self.members_evicted,
            "users": len(self.users),
            "media_ids": len(self.media_urls),
            "dm_channels": len(self.dm_partners),
        }
