"""Changes to the emulated Discord as users, moderators and the bot make them, each with the gateway events
real Discord sends for it (docs/discord.md §6.1) and, for moderation, its audit log entry.

:class:`Actions` is what the REST handlers call for the bot, and what the chat page and tests call for
members: post, delete, pin and unpin messages (with the "pinned a message" system message), open DMs, rename a
channel and edit its overwrites, members joining (with the "joined" system message), leaving, nicknames,
timeouts, roles, kicks, bans and the bot leaving a guild. Events go out in the order Discord sends them: an
audit log entry before the removal it explains (the bridge tells kicks from quits by it).

Values are already validated (Discord's input rules live in :mod:`.endpoints`); unknown objects raise
:class:`~.errors.ApiError`. ``actor_id`` defaults to the bot.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from relay.sandbox.emulator import payloads
from relay.sandbox.emulator import snowflakes as sf
from relay.sandbox.emulator.errors import ApiError, unknown
from relay.sandbox.emulator.world import (
    ATTACHMENTS_PREFIX,
    AUDIT_CHANNEL_UPDATE,
    AUDIT_MEMBER_BAN_ADD,
    AUDIT_MEMBER_BAN_REMOVE,
    AUDIT_MEMBER_KICK,
    AUDIT_MEMBER_ROLE_UPDATE,
    AUDIT_MEMBER_UPDATE,
    AUDIT_MESSAGE_DELETE,
    AUDIT_MESSAGE_PIN,
    AUDIT_MESSAGE_UNPIN,
    AUDIT_OVERWRITE_CREATE,
    AUDIT_OVERWRITE_DELETE,
    AUDIT_OVERWRITE_UPDATE,
    JSON,
    MAX_PINS,
    MESSAGE_PINNED,
    MESSAGE_USER_JOIN,
    MISSING,
    Upload,
    World,
    _Missing,
)


class Actions:
    """See the module docstring."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._nonces: dict[tuple[int, str], int] = {}

    # ------------------------------------------------------------------ messages

    def post_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int | None = None,
        reply_to: int | None = None,
        uploads: Iterable[Upload] = (),
        embeds: Iterable[JSON] = (),
        allowed_mentions: Any = None,
        nonce: str | int | None = None,
        enforce_nonce: bool = False,
    ) -> JSON:
        """Someone (default: the bot) sends a message: stored, MESSAGE_CREATE sent. With ``enforce_nonce``, a
        nonce already used in the channel returns the first message instead (docs/discord.md §7.3)."""
        existing = self.message_for_nonce(channel_id, nonce) if enforce_nonce and nonce is not None else None
        if existing is not None:
            return existing
        with self.world.state.transaction():
            attachments = [self._store_upload(channel_id, upload) for upload in uploads]
            message = self.world.add_message(
                channel_id, content, author_id=author_id, reply_to=reply_to, attachments=attachments
            )
            message["embeds"] = list(embeds)
            self._resolve_mentions(message, allowed_mentions)
            if nonce is not None:
                message["nonce"] = nonce
                if enforce_nonce:
                    self._nonces[(channel_id, str(nonce))] = int(message["id"])
            self.world.save_message(message)
        self._emit_message("MESSAGE_CREATE", message)
        return message

    def message_for_nonce(self, channel_id: int, nonce: str | int) -> JSON | None:
        """The message an ``enforce_nonce`` send with ``nonce`` already made in the channel, if any."""
        existing_id = self._nonces.get((channel_id, str(nonce)))
        return None if existing_id is None else self.world.messages.get(channel_id, {}).get(existing_id)

    def _emit_message(self, name: str, message: JSON) -> None:
        guild_id = message.get("guild_id")
        data = payloads.message_create(message, self.world.members)
        self.world.emit(name, data, None if guild_id is None else int(guild_id))

    def _resolve_mentions(self, message: JSON, allowed: Any) -> None:
        """Like Discord: ``mentions`` lists users named as ``<@id>`` in the content; ``mention_everyone`` is set
        only when ``allowed_mentions`` (default: parse everything) permits it (docs/discord.md §7.2)."""
        parse = ["users", "roles", "everyone"]
        explicit_users: list[str] = []
        if isinstance(allowed, dict):
            parse = list(allowed.get("parse") or [])
            explicit_users = [str(u) for u in allowed.get("users") or []]
        content = message["content"]
        mentioned = []
        for user_id in dict.fromkeys(re.findall(r"<@!?([0-9]+)>", content)):
            if int(user_id) in self.world.users and ("users" in parse or user_id in explicit_users):
                mentioned.append(self.world.users[int(user_id)])
        message["mentions"] = mentioned
        message["mention_roles"] = [r for r in dict.fromkeys(re.findall(r"<@&([0-9]+)>", content)) if "roles" in parse]
        message["mention_everyone"] = "everyone" in parse and ("@everyone" in content or "@here" in content)

    def _store_upload(self, channel_id: int, upload: Upload) -> JSON:
        attachment_id = self.world.new_id()
        url = self.world.add_file(
            f"{ATTACHMENTS_PREFIX}{channel_id}/{attachment_id}/{urllib.parse.quote(upload.filename)}",
            upload.data,
            upload.content_type,
        )
        attachment: JSON = {
            "id": str(attachment_id),
            "filename": upload.filename,
            "size": len(upload.data),
            "url": url,
            "proxy_url": url,
            "content_type": upload.content_type,
        }
        if upload.description:
            attachment["description"] = upload.description
        return attachment

    def delete_message(
        self, channel_id: int, message_id: int, *, actor_id: int | None = None, reason: str | None = None
    ) -> None:
        """MESSAGE_DELETE; a moderator deleting someone else's guild message also makes an audit log entry."""
        message = self.world.message(channel_id, message_id)
        actor = self.world.bot_user_id if actor_id is None else actor_id
        author_id = int(message["author"]["id"])
        guild_id = int(message["guild_id"]) if "guild_id" in message else None
        with self.world.state.transaction():
            del self.world.messages[channel_id][message_id]
            self.world.state.delete("message", f"{channel_id}/{message_id}")
            for reply in self.world.messages[channel_id].values():  # docs/discord.md §6.2: null = deleted
                if (reply.get("referenced_message") or {}).get("id") == str(message_id):
                    reply["referenced_message"] = None
                    self.world.save_message(reply)
            if any(m == message_id for _at, m in self.world.pins[channel_id]):
                self.world.pins[channel_id] = [x for x in self.world.pins[channel_id] if x[1] != message_id]
                self.world.state.delete("pin", f"{channel_id}/{message_id}")
            if guild_id is not None and actor != author_id:
                self.world.audit(
                    guild_id,
                    AUDIT_MESSAGE_DELETE,
                    actor_id=actor,
                    target_id=author_id,
                    reason=reason,
                    options={"channel_id": str(channel_id), "count": "1"},
                )
        data: JSON = {"id": str(message_id), "channel_id": str(channel_id)}
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        self.world.emit("MESSAGE_DELETE", data, guild_id)

    def pin_message(
        self, channel_id: int, message_id: int, *, actor_id: int | None = None, reason: str | None = None
    ) -> None:
        """Pin: MESSAGE_UPDATE (pinned), CHANNEL_PINS_UPDATE, the "pinned a message" system message, audit 74."""
        message = self.world.message(channel_id, message_id)
        if message["pinned"]:
            return
        pins = self.world.pins[channel_id]
        if len(pins) >= MAX_PINS:
            raise ApiError(400, 30003, f"Maximum number of pins reached ({MAX_PINS})")
        actor = self.world.bot_user_id if actor_id is None else actor_id
        pinned_at = self.world.now_iso()
        with self.world.state.transaction():
            pins.append((pinned_at, message_id))
            message["pinned"] = True
            self.world.save_message(message)
            self.world.state.put(
                "pin",
                f"{channel_id}/{message_id}",
                {"channel_id": channel_id, "message_id": message_id, "pinned_at": pinned_at},
            )
            self._pins_changed(channel_id, message, actor, AUDIT_MESSAGE_PIN, reason)
            notice = self.world.add_message(channel_id, "", author_id=actor, reply_to=message_id, type=MESSAGE_PINNED)
            notice.pop("referenced_message", None)
            self.world.save_message(notice)
        self._emit_message("MESSAGE_CREATE", notice)

    def unpin_message(
        self, channel_id: int, message_id: int, *, actor_id: int | None = None, reason: str | None = None
    ) -> None:
        """Unpin: MESSAGE_UPDATE, CHANNEL_PINS_UPDATE, audit 75."""
        message = self.world.message(channel_id, message_id)
        actor = self.world.bot_user_id if actor_id is None else actor_id
        was_pinned = message["pinned"]
        with self.world.state.transaction():
            self.world.pins[channel_id] = [x for x in self.world.pins[channel_id] if x[1] != message_id]
            self.world.state.delete("pin", f"{channel_id}/{message_id}")
            message["pinned"] = False
            self.world.save_message(message)
            if was_pinned:
                self._pins_changed(channel_id, message, actor, AUDIT_MESSAGE_UNPIN, reason)

    def _pins_changed(self, channel_id: int, message: JSON, actor: int, action: int, reason: str | None) -> None:
        channel = self.world.channels[channel_id]
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        self._emit_message("MESSAGE_UPDATE", message)
        pins = self.world.pins[channel_id]
        update: JSON = {"channel_id": str(channel_id), "last_pin_timestamp": pins[-1][0] if pins else None}
        if guild_id is not None:
            update["guild_id"] = str(guild_id)
            self.world.audit(
                guild_id,
                action,
                actor_id=actor,
                target_id=int(message["author"]["id"]),
                reason=reason,
                options={"channel_id": str(channel_id), "message_id": message["id"]},
            )
        self.world.emit("CHANNEL_PINS_UPDATE", update, guild_id)

    def open_dm(self, user_id: int) -> JSON:
        """The DM channel with ``user_id`` (made on first use)."""
        self.world.user(user_id)
        existing = self.world.dm_channels.get(user_id)
        if existing is not None:
            return self.world.channels[existing]
        return self.world.add_dm_channel(user_id)

    # ------------------------------------------------------------------ channels

    def modify_channel(
        self,
        channel_id: int,
        *,
        name: str | _Missing = MISSING,
        topic: str | _Missing | None = MISSING,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> JSON:
        """CHANNEL_UPDATE and audit 11 with the changes (none when nothing changed)."""
        channel = self.world.channel(channel_id)
        changes = []
        for key, value in (("name", name), ("topic", topic)):
            if not isinstance(value, _Missing) and channel.get(key) != value:
                changes.append({"key": key, "old_value": channel.get(key), "new_value": value})
                channel[key] = value
        if changes:
            self._channel_changed(
                channel_id,
                AUDIT_CHANNEL_UPDATE,
                actor_id=actor_id,
                reason=reason,
                changes=changes,
                target_id=channel_id,
                options=None,
            )
        return channel

    def put_overwrite(
        self,
        channel_id: int,
        overwrite_id: int,
        *,
        type: int,
        allow: int,
        deny: int,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Create or replace a permission overwrite: CHANNEL_UPDATE, audit 13 (create) or 14 (update)."""
        channel = self.world.channel(channel_id)
        overwrite = {"id": str(overwrite_id), "type": type, "allow": str(allow), "deny": str(deny)}
        old = next((o for o in channel["permission_overwrites"] if o["id"] == str(overwrite_id)), None)
        others = [o for o in channel["permission_overwrites"] if o["id"] != str(overwrite_id)]
        channel["permission_overwrites"] = [*others, overwrite]
        changes = [
            {"key": key, "old_value": None if old is None else old.get(key), "new_value": overwrite[key]}
            for key in ("allow", "deny")
            if old is None or old.get(key) != overwrite[key]
        ]
        action = AUDIT_OVERWRITE_CREATE if old is None else AUDIT_OVERWRITE_UPDATE
        options = {"id": str(overwrite_id), "type": str(type)}
        self._channel_changed(
            channel_id, action, actor_id=actor_id, reason=reason, changes=changes, target_id=channel_id, options=options
        )

    def delete_overwrite(
        self, channel_id: int, overwrite_id: int, *, actor_id: int | None = None, reason: str | None = None
    ) -> None:
        channel = self.world.channel(channel_id)
        old = next((o for o in channel["permission_overwrites"] if o["id"] == str(overwrite_id)), None)
        if old is None:
            return
        channel["permission_overwrites"] = [o for o in channel["permission_overwrites"] if o is not old]
        options = {"id": str(overwrite_id), "type": str(old["type"])}
        self._channel_changed(
            channel_id,
            AUDIT_OVERWRITE_DELETE,
            actor_id=actor_id,
            reason=reason,
            changes=[],
            target_id=channel_id,
            options=options,
        )

    def _channel_changed(
        self,
        channel_id: int,
        action: int,
        *,
        actor_id: int | None,
        reason: str | None,
        changes: list[JSON],
        target_id: int,
        options: JSON | None,
    ) -> None:
        channel = self.world.channels[channel_id]
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        with self.world.state.transaction():
            self.world.save_channel(channel_id)
            if guild_id is not None:
                actor = self.world.bot_user_id if actor_id is None else actor_id
                self.world.audit(
                    guild_id,
                    action,
                    actor_id=actor,
                    target_id=target_id,
                    reason=reason,
                    changes=changes,
                    options=options,
                )
        self.world.emit("CHANNEL_UPDATE", dict(channel), guild_id)

    # ------------------------------------------------------------------ members

    def member_join(self, guild_id: int, user_id: int, *, username: str | None = None) -> JSON:
        """A user joins: GUILD_MEMBER_ADD, then the "joined" system message in the system channel."""
        self.world.guild(guild_id)
        if user_id in self.world.bans.get(guild_id, set()):
            raise ApiError(403, 40007, "The user is banned from this guild.")
        if (guild_id, user_id) in self.world.members:
            return self.world.members[(guild_id, user_id)]
        with self.world.state.transaction():
            member = self.world.add_member(guild_id, user_id, username=username)
        self.world.emit("GUILD_MEMBER_ADD", payloads.member_event(guild_id, member), guild_id)
        system = self.world.guilds[guild_id].get("system_channel_id")
        if system is not None and int(system) in self.world.channels:
            notice = self.world.add_message(int(system), "", author_id=user_id, type=MESSAGE_USER_JOIN)
            self._emit_message("MESSAGE_CREATE", notice)
        return member

    def member_leave(self, guild_id: int, user_id: int) -> None:
        """A member leaves by themselves: GUILD_MEMBER_REMOVE only (no audit entry)."""
        self.world.member(guild_id, user_id)
        self._remove_member(guild_id, user_id)

    def _remove_member(self, guild_id: int, user_id: int) -> None:
        member = self.world.members.pop((guild_id, user_id))
        self.world.state.delete("member", f"{guild_id}/{user_id}")
        self.world.emit("GUILD_MEMBER_REMOVE", payloads.member_remove(guild_id, member["user"]), guild_id)

    def update_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | _Missing | None = MISSING,
        communication_disabled_until: str | _Missing | None = MISSING,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> JSON:
        """Nickname and/or timeout: GUILD_MEMBER_UPDATE with the full member, audit 24 (when something changed)."""
        member = self.world.member(guild_id, user_id)
        changes = []
        for key, value in (("nick", nick), ("communication_disabled_until", communication_disabled_until)):
            if not isinstance(value, _Missing) and member.get(key) != value:
                changes.append({"key": key, "old_value": member.get(key), "new_value": value})
                member[key] = value
        if changes:
            self._member_changed(
                guild_id, user_id, AUDIT_MEMBER_UPDATE, actor_id=actor_id, reason=reason, changes=changes
            )
        return member

    def set_member_role(
        self,
        guild_id: int,
        user_id: int,
        role_id: int,
        present: bool,
        *,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Give or take a role: GUILD_MEMBER_UPDATE, audit 25 with ``$add``/``$remove`` (when it changed)."""
        member = self.world.member(guild_id, user_id)
        role = self.world.role(guild_id, role_id)
        has = str(role_id) in member["roles"]
        if has == present:
            return
        if present:
            member["roles"] = [*member["roles"], str(role_id)]
        else:
            member["roles"] = [r for r in member["roles"] if r != str(role_id)]
        change = {"key": "$add" if present else "$remove", "new_value": [{"id": role["id"], "name": role["name"]}]}
        self._member_changed(
            guild_id, user_id, AUDIT_MEMBER_ROLE_UPDATE, actor_id=actor_id, reason=reason, changes=[change]
        )

    def _member_changed(
        self, guild_id: int, user_id: int, action: int, *, actor_id: int | None, reason: str | None, changes: list[JSON]
    ) -> None:
        actor = self.world.bot_user_id if actor_id is None else actor_id
        with self.world.state.transaction():
            self.world.save_member(guild_id, user_id)
            self.world.audit(guild_id, action, actor_id=actor, target_id=user_id, reason=reason, changes=changes)
        member = self.world.members[(guild_id, user_id)]
        self.world.emit("GUILD_MEMBER_UPDATE", payloads.member_event(guild_id, member), guild_id)

    def kick(self, guild_id: int, user_id: int, *, actor_id: int | None = None, reason: str | None = None) -> None:
        """Audit 20, then GUILD_MEMBER_REMOVE."""
        self.world.member(guild_id, user_id)
        actor = self.world.bot_user_id if actor_id is None else actor_id
        with self.world.state.transaction():
            self.world.audit(guild_id, AUDIT_MEMBER_KICK, actor_id=actor, target_id=user_id, reason=reason)
            self._remove_member(guild_id, user_id)

    def ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        delete_message_seconds: int = 0,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Audit 22, GUILD_BAN_ADD, GUILD_MEMBER_REMOVE (if a member), then deletes of the user's recent
        messages (MESSAGE_DELETE_BULK per channel) when ``delete_message_seconds`` asks for it."""
        self.world.guild(guild_id)
        user = self.world.user(user_id)
        actor = self.world.bot_user_id if actor_id is None else actor_id
        with self.world.state.transaction():
            self.world.bans.setdefault(guild_id, set()).add(user_id)
            self.world.state.put("ban", f"{guild_id}/{user_id}", {"guild_id": guild_id, "user_id": user_id})
            self.world.audit(
                guild_id,
                AUDIT_MEMBER_BAN_ADD,
                actor_id=actor,
                target_id=user_id,
                reason=reason,
                options={"delete_message_seconds": str(delete_message_seconds)},
            )
            self.world.emit("GUILD_BAN_ADD", payloads.member_remove(guild_id, user), guild_id)
            if (guild_id, user_id) in self.world.members:
                self._remove_member(guild_id, user_id)
            if delete_message_seconds:
                self._delete_recent(guild_id, user_id, self.world.wall_time() - delete_message_seconds)

    def _delete_recent(self, guild_id: int, user_id: int, since: float) -> None:
        for channel in self.world.guild_channels(guild_id):
            channel_id = int(channel["id"])
            ids = [
                message_id
                for message_id, message in self.world.messages[channel_id].items()
                if int(message["author"]["id"]) == user_id and sf.snowflake_time(message_id) >= since
            ]
            for message_id in ids:
                del self.world.messages[channel_id][message_id]
                self.world.state.delete("message", f"{channel_id}/{message_id}")
            if len(ids) == 1:
                one: JSON = {"id": str(ids[0]), "channel_id": str(channel_id), "guild_id": str(guild_id)}
                self.world.emit("MESSAGE_DELETE", one, guild_id)
            elif ids:
                bulk: JSON = {"ids": [str(i) for i in ids], "channel_id": str(channel_id), "guild_id": str(guild_id)}
                self.world.emit("MESSAGE_DELETE_BULK", bulk, guild_id)

    def unban(self, guild_id: int, user_id: int, *, actor_id: int | None = None, reason: str | None = None) -> None:
        """Audit 23, GUILD_BAN_REMOVE."""
        self.world.guild(guild_id)
        if user_id not in self.world.bans.get(guild_id, set()):
            raise unknown("Ban")
        actor = self.world.bot_user_id if actor_id is None else actor_id
        with self.world.state.transaction():
            self.world.bans[guild_id].discard(user_id)
            self.world.state.delete("ban", f"{guild_id}/{user_id}")
            self.world.audit(guild_id, AUDIT_MEMBER_BAN_REMOVE, actor_id=actor, target_id=user_id, reason=reason)
        self.world.emit("GUILD_BAN_REMOVE", payloads.member_remove(guild_id, self.world.users[user_id]), guild_id)

    def leave_guild(self, guild_id: int) -> None:
        """The bot leaves: the guild disappears from its world (GUILD_DELETE without ``unavailable``)."""
        self.world.guild(guild_id)
        with self.world.state.transaction():
            del self.world.guilds[guild_id]
            self.world.state.delete("guild", guild_id)
            for key in [k for k in self.world.members if k[0] == guild_id]:
                del self.world.members[key]
                self.world.state.delete("member", f"{key[0]}/{key[1]}")
            for channel_id in [c for c, ch in self.world.channels.items() if ch.get("guild_id") == str(guild_id)]:
                del self.world.channels[channel_id]
                self.world.state.delete("channel", channel_id)
        self.world.emit("GUILD_DELETE", {"id": str(guild_id)}, guild_id)
