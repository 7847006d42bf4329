"""The emulated Discord's state: users, guilds, roles, channels, members, messages, pins, bans, DM channels,
audit log and uploaded files, persisted, with the silent seeding calls and the lookups Discord answers 404 to.

Objects are the JSON dictionaries Discord's REST API answers with (docs/discord.md §6.2–§6.3), kept in memory and
written through to the state file (:mod:`.db`) in one transaction per operation, so a restart keeps history.
The dictionaries are live: a test may read them (``world.messages[channel_id]``); a test that mutates one
directly changes only memory.

The application (``GET /applications/@me``, READY's ``application``) has the bot user's id unless told otherwise
and its flags say which privileged intents its "Developer Portal" has enabled. :class:`Deviations` are the ways a
Discord-compatible server departs from Discord, for the bridge's tests of such servers; they are all off.

``add_*`` seed the world silently (no events), like Discord state that existed before the bot connected.
Changes as users, moderators and the bot make them, with their events, are :mod:`.actions`; they hand each
gateway event (:class:`Dispatch`) to :meth:`World.emit`, which passes it to the listeners (the gateway).
Lookups of unknown objects raise :class:`~.errors.ApiError`. No trio: the clock is a callable giving
wall-clock epoch seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs

from relay.sandbox.emulator import intents as it
from relay.sandbox.emulator import payloads
from relay.sandbox.emulator import snowflakes as sf
from relay.sandbox.emulator.db import StateFile
from relay.sandbox.emulator.errors import unknown

log = logging.getLogger(__name__)

JSON = dict[str, Any]

#: Bot user id of a new world (a plausible snowflake).
DEFAULT_BOT_ID = 1_100_000_000_000_000_001
#: A typical @everyone permission set (docs/discord.md §9.2): add reactions, view channel, send messages, embed
#: links, attach files, read history, external emojis, change nickname, send in threads.
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 18) | (1 << 26) | (1 << 38)
)
#: docs/discord.md §9: at most 250 pins per channel (30003)
MAX_PINS = 250
#: docs/discord.md §9.2: ADMINISTRATOR grants every permission
ADMINISTRATOR: Final = 1 << 3
#: every permission, as GET /users/@me/guilds shows it for an owner or administrator (the bits Discord defines)
ALL_PERMISSIONS: Final = (1 << 53) - 1

# Audit log action types (Discord's audit log documentation; docs/discord.md §6.1, §9.1).
AUDIT_CHANNEL_UPDATE: Final = 11
AUDIT_OVERWRITE_CREATE: Final = 13
AUDIT_OVERWRITE_UPDATE: Final = 14
AUDIT_OVERWRITE_DELETE: Final = 15
AUDIT_MEMBER_KICK: Final = 20
AUDIT_MEMBER_BAN_ADD: Final = 22
AUDIT_MEMBER_BAN_REMOVE: Final = 23
AUDIT_MEMBER_UPDATE: Final = 24
AUDIT_MEMBER_ROLE_UPDATE: Final = 25
AUDIT_MESSAGE_DELETE: Final = 72
AUDIT_MESSAGE_PIN: Final = 74
AUDIT_MESSAGE_UNPIN: Final = 75

# Message types (docs/discord.md §6.2)
MESSAGE_DEFAULT: Final = 0
MESSAGE_PINNED: Final = 6
MESSAGE_USER_JOIN: Final = 7
MESSAGE_REPLY: Final = 19

#: the path prefix uploaded attachments are served under
ATTACHMENTS_PREFIX = "/attachments/"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: "leave this field as it is" in update actions (None means "clear it")
MISSING: Final = _Missing()


@attrs.frozen
class Dispatch:
    """One gateway event the world produced: its name, its ``d``, and the guild it belongs to (None: a DM)."""

    name: str
    data: JSON
    guild_id: int | None = None


@attrs.define
class Deviations:
    """Where a Discord-compatible server departs from Discord (issue 15), for tests of how the bridge copes. Real
    Discord does none of these; a new world has them all off. Changes apply to what is answered next."""

    #: (guild id, user id) pairs whose entry member lists show without its ``user`` object: REST member listings,
    #: GUILD_CREATE and op 8 chunks (the member itself is unchanged)
    members_without_user: set[tuple[int, int]] = attrs.field(factory=set)
    #: GET /users/@me/guilds leaves out each guild's ``permissions``
    omit_guild_permissions: bool = False


@attrs.frozen
class Upload:
    """A file attached to a new message (``files[n]`` of a multipart request, or an upload from the page)."""

    filename: str
    data: bytes = attrs.field(repr=False)
    content_type: str = "application/octet-stream"
    description: str | None = None


Listener = Callable[[Dispatch], None]


class World:
    """See the module docstring. ``clock()`` gives wall-clock epoch seconds (ids and timestamps follow it)."""

    def __init__(
        self,
        state: StateFile,
        *,
        clock: Callable[[], float],
        bot_user_id: int = DEFAULT_BOT_ID,
        bot_username: str = "relay-bot",
        origin: str = "http://127.0.0.1",
        application_id: int | None = None,
        application_flags: int = it.ALL_PRIVILEGED_INTENT_FLAGS,
    ) -> None:
        self.state = state
        self.clock = clock
        self.bot_user_id = bot_user_id
        #: the application's id (default: the bot user's, as for apps made since 2020) and flags
        self.application_id = bot_user_id if application_id is None else application_id
        self.application_flags = application_flags
        self.deviations = Deviations()
        #: scheme://host:port the attachment URLs point at (the emulator's own address)
        self.origin = origin
        self.users: dict[int, JSON] = {}
        self.guilds: dict[int, JSON] = {}
        self.channels: dict[int, JSON] = {}
        self.members: dict[tuple[int, int], JSON] = {}
        self.messages: dict[int, dict[int, JSON]] = {}  #: channel id → message id → message (id order)
        self.pins: dict[int, list[tuple[str, int]]] = {}  #: channel id → [(pinned_at, message id)], oldest first
        self.bans: dict[int, set[int]] = {}
        self.dm_channels: dict[int, int] = {}  #: user id → DM channel id
        self.audit_log: dict[int, list[JSON]] = {}  #: guild id → entries, oldest first
        self.listeners: list[Listener] = []
        self._closed_dms: set[int] = set()
        self._last_id = 0
        self._load()
        if bot_user_id not in self.users:
            with self.state.transaction():
                self.add_user(bot_user_id, bot_username, bot=True)

    # ------------------------------------------------------------------ clock and ids

    def wall_time(self) -> float:
        """The emulated Discord's idea of "now" in epoch seconds."""
        return self.clock()

    def now_iso(self) -> str:
        return sf.iso(self.wall_time())

    def new_id(self) -> int:
        """A fresh snowflake for the current time; strictly increasing, also across restarts."""
        candidate = sf.snowflake(self.wall_time(), self._last_id + 1)
        self._last_id = max(candidate, self._last_id + 1)
        return self._last_id

    def _seen_id(self, value: int) -> None:
        self._last_id = max(self._last_id, value)

    @property
    def bot_user(self) -> JSON:
        return self.users[self.bot_user_id]

    def application(self) -> JSON:
        """The application object (``GET /applications/@me``)."""
        bot = self.bot_user
        return {
            "id": str(self.application_id),
            "name": bot["username"],
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": bot,
            "flags": self.application_flags,
        }

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        state = self.state
        for _key, user in state.load("user"):
            self.users[int(user["id"])] = user
        for _key, guild in state.load("guild"):
            self.guilds[int(guild["id"])] = guild
            self.bans[int(guild["id"])] = set()
            self.audit_log[int(guild["id"])] = []
        for _key, channel in state.load("channel"):
            channel_id = int(channel["id"])
            self.channels[channel_id] = channel
            self.messages[channel_id] = {}
            self.pins[channel_id] = []
            if channel["type"] == 1:
                self.dm_channels[int(channel["recipients"][0]["id"])] = channel_id
        for _key, member in state.load("member"):
            guild_id, user_id = int(member.pop("guild_id")), int(member["user"]["id"])
            member["user"] = self.users.get(user_id, member["user"])  # shared, like Discord's one user object
            self.members[(guild_id, user_id)] = member
        loaded = [(int(m["channel_id"]), int(m["id"]), m) for _k, m in state.load("message")]
        for channel_id, message_id, message in sorted(loaded, key=lambda x: x[1]):
            channel_messages = self.messages.setdefault(channel_id, {})
            channel_messages[message_id] = message
            for attachment in message.get("attachments") or []:
                self._seen_id(int(attachment["id"]))
            if message.get("referenced_message") is not None:  # the live message, as REST resolves it
                referenced = int(message["referenced_message"]["id"])
                message["referenced_message"] = channel_messages.get(referenced)
        pins = [(int(p["channel_id"]), p["pinned_at"], int(p["message_id"])) for _k, p in state.load("pin")]
        for channel_id, pinned_at, message_id in sorted(pins):
            self.pins.setdefault(channel_id, []).append((pinned_at, message_id))
        for _key, ban in state.load("ban"):
            self.bans.setdefault(int(ban["guild_id"]), set()).add(int(ban["user_id"]))
        entries = [e for _k, e in state.load("audit")]
        for entry in sorted(entries, key=lambda e: int(e["id"])):
            self.audit_log.setdefault(int(entry.pop("guild_id")), []).append(entry)
            self._seen_id(int(entry["id"]))
        for _key, user_id in state.load("closed_dm"):
            self._closed_dms.add(int(user_id))
        for ids in (self.users, self.guilds, self.channels, *self.messages.values()):
            if ids:
                self._seen_id(max(ids))
        if self.users or self.guilds:
            log.info(
                "emulator world loaded from %s: %d guilds, %d channels, %d users, %d messages",
                state.path,
                len(self.guilds),
                len(self.channels),
                len(self.users),
                sum(len(m) for m in self.messages.values()),
            )

    def save_user(self, user_id: int) -> None:
        self.state.put("user", user_id, self.users[user_id])

    def save_guild(self, guild_id: int) -> None:
        self.state.put("guild", guild_id, self.guilds[guild_id])

    def save_channel(self, channel_id: int) -> None:
        self.state.put("channel", channel_id, self.channels[channel_id])

    def save_member(self, guild_id: int, user_id: int) -> None:
        self.state.put("member", f"{guild_id}/{user_id}", {**self.members[(guild_id, user_id)], "guild_id": guild_id})

    def save_message(self, message: JSON) -> None:
        self.state.put("message", f"{message['channel_id']}/{message['id']}", message)

    def save_all(self) -> None:
        """Write every object in memory to the state file (after a test or script edited dictionaries)."""
        with self.state.transaction():
            for user_id in self.users:
                self.save_user(user_id)
            for guild_id in self.guilds:
                self.save_guild(guild_id)
            for channel_id in self.channels:
                self.save_channel(channel_id)
            for guild_id, user_id in self.members:
                self.save_member(guild_id, user_id)
            for messages in self.messages.values():
                for message in messages.values():
                    self.save_message(message)

    def set_origin(self, origin: str) -> None:
        """The emulator now listens at ``origin``: attachment URLs stored under another origin follow it."""
        old = self.state.get_meta("origin")
        self.origin = origin
        if old is None or old == origin:
            self.state.set_meta("origin", origin)
            return
        with self.state.transaction():
            for messages in self.messages.values():
                for message in messages.values():
                    if _rebase_attachments(message, old, origin):
                        self.save_message(message)
            self.state.set_meta("origin", origin)

    # ------------------------------------------------------------------ events

    def emit(self, name: str, data: JSON, guild_id: int | None = None) -> None:
        dispatch = Dispatch(name, data, guild_id)
        for listener in list(self.listeners):
            listener(dispatch)

    def audit(
        self,
        guild_id: int,
        action_type: int,
        *,
        actor_id: int,
        target_id: int | None,
        reason: str | None,
        changes: list[JSON] | None = None,
        options: JSON | None = None,
    ) -> JSON:
        """Record an audit log entry and emit GUILD_AUDIT_LOG_ENTRY_CREATE (docs/discord.md §6.1)."""
        entry: JSON = {
            "id": str(self.new_id()),
            "user_id": str(actor_id),
            "target_id": None if target_id is None else str(target_id),
            "action_type": action_type,
        }
        if changes:
            entry["changes"] = changes
        if options:
            entry["options"] = options
        if reason:
            entry["reason"] = reason
        self.audit_log.setdefault(guild_id, []).append(entry)
        self.state.put("audit", f"{guild_id}/{entry['id']}", {**entry, "guild_id": guild_id})
        self.emit("GUILD_AUDIT_LOG_ENTRY_CREATE", payloads.with_guild(guild_id, entry), guild_id)
        return entry

    # ------------------------------------------------------------------ lookups (ApiError when unknown)

    def channel(self, channel_id: int) -> JSON:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise unknown("Channel")
        return channel

    def guild(self, guild_id: int) -> JSON:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise unknown("Guild")
        return guild

    def user(self, user_id: int) -> JSON:
        user = self.users.get(user_id)
        if user is None:
            raise unknown("User")
        return user

    def member(self, guild_id: int, user_id: int) -> JSON:
        self.guild(guild_id)
        member = self.members.get((guild_id, user_id))
        if member is None:
            raise unknown("Member")
        return member

    def message(self, channel_id: int, message_id: int) -> JSON:
        self.channel(channel_id)
        message = self.messages[channel_id].get(message_id)
        if message is None:
            raise unknown("Message")
        return message

    def role(self, guild_id: int, role_id: int) -> JSON:
        for role in self.guild(guild_id)["roles"]:
            if role["id"] == str(role_id):
                return role  # type: ignore[no-any-return]
        raise unknown("Role")

    def guild_channels(self, guild_id: int) -> list[JSON]:
        return [c for c in self.channels.values() if c.get("guild_id") == str(guild_id)]

    def guild_members(self, guild_id: int) -> list[JSON]:
        return [m for (g, _u), m in self.members.items() if g == guild_id]

    def listed_member(self, guild_id: int, user_id: int) -> JSON:
        """A member as member lists show it (REST listings, GUILD_CREATE, op 8): itself, or without ``user`` for the
        pairs of :attr:`Deviations.members_without_user`."""
        member = self.members[(guild_id, user_id)]
        if (guild_id, user_id) in self.deviations.members_without_user:
            return {k: v for k, v in member.items() if k != "user"}
        return member

    def listed_members(self, guild_id: int) -> list[JSON]:
        """Every member of a guild as member lists show them."""
        return [self.listed_member(g, u) for (g, u) in self.members if g == guild_id]

    def bot_permissions(self, guild_id: int) -> int:
        """The bot's guild-level permissions (docs/discord.md §9.2): owner → all; @everyone | its roles; admin → all."""
        guild = self.guild(guild_id)
        if guild["owner_id"] == str(self.bot_user_id):
            return ALL_PERMISSIONS
        member_roles = set(self.member(guild_id, self.bot_user_id)["roles"]) | {str(guild_id)}
        permissions = 0
        for role in guild["roles"]:
            if role["id"] in member_roles:
                permissions |= int(role["permissions"])
        return ALL_PERMISSIONS if permissions & ADMINISTRATOR else permissions

    def bot_guilds(self) -> list[int]:
        """Guilds the bot is a member of, in id order."""
        return sorted(g for g in self.guilds if (g, self.bot_user_id) in self.members)

    def file(self, path: str) -> tuple[bytes, str] | None:
        """An uploaded or seeded file served at ``path`` (bytes, content type)."""
        return self.state.get_file(path)

    def dms_closed(self, user_id: int) -> bool:
        return user_id in self._closed_dms

    def guild_create(self, guild_id: int, large_threshold: int = payloads.LARGE_THRESHOLD) -> JSON:
        """The GUILD_CREATE ``d`` for a guild as the world has it now; over ``large_threshold`` members it lists only
        the bot's own member (docs/discord.md §5: without GUILD_PRESENCES, no one else but members in voice)."""
        bot = self.members.get((guild_id, self.bot_user_id))
        return payloads.guild_create(
            self.guild(guild_id),
            self.guild_channels(guild_id),
            self.listed_members(guild_id),
            joined_at=bot["joined_at"] if bot else self.now_iso(),
            large_threshold=large_threshold,
            own_member=None if bot is None else self.listed_member(guild_id, self.bot_user_id),
        )

    # ------------------------------------------------------------------ seeding (silent)

    def add_user(self, user_id: int, username: str, *, global_name: str | None = None, bot: bool = False) -> JSON:
        user: JSON = {
            "id": str(user_id),
            "username": username,
            "discriminator": "0",
            "global_name": global_name,
            "avatar": None,
        }
        if bot:
            user["bot"] = True
        self.users[user_id] = user
        self._seen_id(user_id)
        self.save_user(user_id)
        return user

    def add_guild(
        self,
        guild_id: int,
        name: str,
        *,
        owner_id: int,
        system_channel_id: int | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
    ) -> JSON:
        """A guild with its @everyone role (id == guild id); the bot and the owner join it as members."""
        with self.state.transaction():
            if owner_id not in self.users:
                self.add_user(owner_id, f"owner{owner_id % 10000}")
            guild: JSON = {
                "id": str(guild_id),
                "name": name,
                "icon": None,
                "owner_id": str(owner_id),
                "system_channel_id": None if system_channel_id is None else str(system_channel_id),
                "roles": [],
                "features": [],
                "emojis": [],
            }
            self.guilds[guild_id] = guild
            self._seen_id(guild_id)
            self.bans[guild_id] = set()
            self.audit_log[guild_id] = []
            self.add_role(guild_id, guild_id, "@everyone", permissions=everyone_permissions, position=0)
            self.add_member(guild_id, self.bot_user_id)
            if (guild_id, owner_id) not in self.members:
                self.add_member(guild_id, owner_id)
            return guild

    def add_role(self, guild_id: int, role_id: int, name: str, *, permissions: int = 0, position: int = 1) -> JSON:
        role: JSON = {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        self.guilds[guild_id]["roles"].append(role)
        self._seen_id(role_id)
        self.save_guild(guild_id)
        return role

    def add_channel(
        self,
        channel_id: int,
        name: str,
        *,
        guild_id: int,
        type: int = 0,
        topic: str | None = None,
        permission_overwrites: Iterable[JSON] = (),
        parent_id: int | None = None,
    ) -> JSON:
        channel: JSON = {
            "id": str(channel_id),
            "type": type,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(self.guild_channels(guild_id)),
            "permission_overwrites": [dict(o) for o in permission_overwrites],
            "topic": topic,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None if parent_id is None else str(parent_id),
            "flags": 0,
        }
        with self.state.transaction():
            self.channels[channel_id] = channel
            self._seen_id(channel_id)
            self.messages[channel_id] = {}
            self.pins[channel_id] = []
            guild = self.guilds[guild_id]
            if guild["system_channel_id"] is None and type == 0:
                guild["system_channel_id"] = str(channel_id)
                self.save_guild(guild_id)
            self.save_channel(channel_id)
        return channel

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | None = None,
        roles: Iterable[int] = (),
        joined_at: str | None = None,
        communication_disabled_until: str | None = None,
        username: str | None = None,
    ) -> JSON:
        with self.state.transaction():
            if user_id not in self.users:
                self.add_user(user_id, username or f"user{user_id % 100000}")
            member: JSON = {
                "user": self.users[user_id],
                "nick": nick,
                "avatar": None,
                "roles": [str(r) for r in roles],
                "joined_at": joined_at or self.now_iso(),
                "premium_since": None,
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "communication_disabled_until": communication_disabled_until,
            }
            self.members[(guild_id, user_id)] = member
            self.save_member(guild_id, user_id)
        return member

    def add_dm_channel(self, user_id: int, channel_id: int | None = None) -> JSON:
        channel_id = channel_id or self.new_id()
        channel: JSON = {
            "id": str(channel_id),
            "type": 1,
            "last_message_id": None,
            "recipients": [self.users[user_id]],
            "flags": 0,
        }
        self.channels[channel_id] = channel
        self._seen_id(channel_id)
        self.messages[channel_id] = {}
        self.pins[channel_id] = []
        self.dm_channels[user_id] = channel_id
        self.save_channel(channel_id)
        return channel

    def add_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int | None = None,
        message_id: int | None = None,
        reply_to: int | None = None,
        attachments: Iterable[JSON] = (),
        type: int | None = None,
    ) -> JSON:
        """Store a message as if someone sent it (author defaults to the bot); no event."""
        author = self.users[author_id if author_id is not None else self.bot_user_id]
        channel = self.channels[channel_id]
        message: JSON = {
            "id": str(message_id or self.new_id()),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": self.now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": list(attachments),
            "embeds": [],
            "pinned": False,
            "type": MESSAGE_DEFAULT if type is None else type,
            "flags": 0,
        }
        if "guild_id" in channel:
            message["guild_id"] = channel["guild_id"]
        if reply_to is not None:
            message["type"] = MESSAGE_REPLY if type is None else type
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reply_to),
                "channel_id": str(channel_id),
                **({"guild_id": channel["guild_id"]} if "guild_id" in channel else {}),
            }
            message["referenced_message"] = self.messages[channel_id].get(reply_to)
        self._seen_id(int(message["id"]))
        self.messages[channel_id][int(message["id"])] = message
        channel["last_message_id"] = message["id"]
        with self.state.transaction():
            self.save_message(message)
            self.save_channel(channel_id)
        return message

    def add_file(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at ``path`` (e.g. ``/cdn/a.png``, no auth); returns the absolute URL."""
        if not path.startswith("/"):
            path = "/" + path
        self.state.put_file(path, data, content_type)
        return self.origin + path

    def close_dms(self, user_id: int) -> None:
        """The user blocks DMs from the bot: sends to their DM channel answer 403 50007."""
        self._closed_dms.add(user_id)
        self.state.put("closed_dm", user_id, user_id)


def _rebase_attachments(message: JSON, old: str, new: str) -> bool:
    changed = False
    for holder in (message, message.get("referenced_message") or {}):
        for attachment in holder.get("attachments") or []:
            for key in ("url", "proxy_url"):
                value = attachment.get(key)
                if isinstance(value, str) and value.startswith(old + ATTACHMENTS_PREFIX):
                    attachment[key] = new + value[len(old) :]
                    changed = True
    return changed
