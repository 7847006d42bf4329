"""Envelope commands → Discord REST calls (docs/architecture.md §3; docs/discord.md §7, §9). No inbound code.

:class:`DiscordCommandExecutor` implements :class:`relay.ports.CommandExecutor` over the REST client. It
builds its results with the :class:`~adapters.discord.entities.EntityFactory` (the same one the inbound side
uses), renders messages with :mod:`~adapters.discord.markup`, and records what the bridge itself does in
:class:`~adapters.discord.own_actions.OwnActions` so the gateway echo of it is recognised. Beside it, the pure
pieces only commands need: the mute-all overwrite arithmetic (:func:`mute_all_overwrite`), timeout clamping
(:func:`timeout_until`) and the error mapping (:func:`command_failure`).

Decisions (documented for framework authors; message rendering has its own in :mod:`~adapters.discord.markup`):

* SendMessage over 2000 characters is split (or refused, see markup); the result's ``ref`` is the first part,
  ``extra`` the rest.
* Images/audio/files: ``data`` is uploaded; ``url`` is downloaded (bounded by ``max_upload_bytes``) and uploaded;
  an ``id`` the bridge issued (``{channel}-{message}-{attachment}.ext``, see ``media.media_id``) is resolved
  to the remembered CDN URL, or — when forgotten or expired — by re-fetching the message it came from.
* Announcements are pinned messages: publish = post + pin, list = pins, delete = unpin (the message stays).
* DeleteFriend is UNSUPPORTED: Discord bots have no friends list; a DM channel cannot be "unfriended".
* UpdateMember.special_title has no Discord meaning → UNSUPPORTED. ListMembers leaves out the bot itself
  (mirai's memberList does too). It answers from the cache when the guild's whole list is there; otherwise the
  list is fetched whole over the gateway (op 8, see ``MemberLoader``) and the command waits for it, bounded by
  its command timeout; when that way is closed (larger than the cache's per-guild bound, Discord's limit of one
  request per guild per 30 s, no gateway yet) it pages through REST.
* Mutes longer than Discord's 28-day maximum are clamped (logged at WARNING).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

from adapters.discord.cache import ADMINISTRATOR, SEND_MESSAGES, CachedChannel, CachedGuild, Overwrite
from adapters.discord.entities import EntityFactory
from adapters.discord.markup import MAX_CONTENT, allowed_mentions, build_message_bodies, render_segments
from adapters.discord.media import default_name, guess_content_type, parse_media_id, url_filename
from adapters.discord.members import CachedMember
from adapters.discord.own_actions import OwnActions
from adapters.discord.rest.client import RestClient, UploadFile
from adapters.discord.snowflakes import parse_iso_time, snowflake_at, snowflake_time, to_int
from relay import envelope as env
from relay.config import BridgeConfig
from relay.errors import (
    CommandFailed,
    DiscordError,
    DiscordUnreachable,
    FailureKind,
    HTTPError,
    MediaUnreachable,
    PayloadTooLarge,
    RateLimitedTooLong,
    RelayError,
)

log = logging.getLogger(__name__)

# docs/discord.md §9 (mute all row): the deny bits the bridge ORs into the @everyone overwrite for "mute all":
# SEND_MESSAGES | SEND_MESSAGES_IN_THREADS | CREATE_PUBLIC_THREADS | CREATE_PRIVATE_THREADS | ADD_REACTIONS.
MUTE_ALL_DENY: Final = SEND_MESSAGES | (1 << 38) | (1 << 35) | (1 << 36) | (1 << 6)
assert MUTE_ALL_DENY == 377957124160  # the value docs/discord.md §9 gives

# docs/discord.md §9.2: members may create invites (mirai's allowMemberInvite), per channel through the @everyone
# overwrite
CREATE_INSTANT_INVITE: Final = 1 << 0

# docs/discord.md §9 (mute row): Discord timeouts last at most 28 days
MAX_TIMEOUT_SECONDS = 28 * 24 * 3600
# docs/discord.md §9 (history): 1–100 per page
HISTORY_PAGE = 100
#: The most messages one GetHistory may return (each 100 costs one rate-limited request).
MAX_HISTORY = 1000
#: Users whose profile ListFriends may fetch in one call when they are not cached (each costs a request).
MAX_FRIEND_FETCHES = 50
# docs/discord.md §8.2 error codes
NOT_FOUND_CODES = frozenset({10003, 10004, 10007, 10008, 10011, 10013, 10026})
NO_PERMISSION_CODES = frozenset({50001, 50013, 50007, 50278})
EVERYONE_OVERWRITE_TYPE = 0  # role overwrite; the @everyone role id is the guild id (docs/discord.md §6.3)


def mute_all_overwrite(existing: Overwrite | None, muted: bool) -> tuple[int, int] | None:
    """The @everyone overwrite ``(allow, deny)`` after muting/unmuting, or None: delete it (it is empty).

    Muting ORs the mute-all deny bits in and takes them out of ``allow`` (an allow would win over the deny,
    docs/discord.md §9.2); every other bit is kept. Unmuting removes those deny bits only. An overwrite with no
    bits left is equivalent to none, so it is deleted rather than stored empty.
    """
    allow = existing.allow if existing is not None else 0
    deny = existing.deny if existing is not None else 0
    if muted:
        allow &= ~MUTE_ALL_DENY
        deny |= MUTE_ALL_DENY
    else:
        deny &= ~MUTE_ALL_DENY
    if allow == 0 and deny == 0:
        return None
    return allow, deny


def everyone_overwrite(existing: Overwrite | None, bits: int, *, allow: bool) -> tuple[int, int] | None:
    """The @everyone overwrite ``(allow, deny)`` with ``bits`` explicitly allowed (or denied), every other bit kept;
    None: delete it (it holds no bit any more)."""
    allowed = existing.allow if existing is not None else 0
    denied = existing.deny if existing is not None else 0
    if allow:
        allowed, denied = allowed | bits, denied & ~bits
    else:
        allowed, denied = allowed & ~bits, denied | bits
    if allowed == 0 and denied == 0:
        return None
    return allowed, denied


def members_may_invite(guild: CachedGuild | None, channel: CachedChannel) -> bool:
    """mirai's ``allowMemberInvite`` for a channel: what @everyone may do there (its role, then its overwrite)."""
    everyone = guild.roles.get(guild.id) if guild is not None else None
    allowed = bool(everyone is not None and everyone.permissions & (CREATE_INSTANT_INVITE | ADMINISTRATOR))
    overwrite = channel.overwrites.get(channel.guild_id)
    if overwrite is not None:
        if overwrite.deny & CREATE_INSTANT_INVITE:
            allowed = False
        if overwrite.allow & CREATE_INSTANT_INVITE:
            allowed = True
    return allowed


def timeout_until(now: float, seconds: int) -> tuple[str, int]:
    """ISO8601 end of a timeout starting at ``now``, clamped to 28 days; returns (iso, applied seconds)."""
    applied = min(seconds, MAX_TIMEOUT_SECONDS)
    end = datetime.datetime.fromtimestamp(now + applied, datetime.UTC)
    return end.isoformat(), applied


def command_failure(exc: DiscordError, *, bot_timed_out: bool = False) -> CommandFailed:
    """A Discord failure as a readable :class:`CommandFailed` (docs/architecture.md §3, last paragraph)."""
    if isinstance(exc, HTTPError):
        if exc.code in NOT_FOUND_CODES or (exc.status == 404 and exc.code == 0):
            return CommandFailed(FailureKind.NOT_FOUND, f"Discord does not know the target: {exc}")
        if exc.code in NO_PERMISSION_CODES or exc.status == 403:
            if bot_timed_out:
                return CommandFailed(FailureKind.BOT_MUTED, f"the bot is timed out in this guild: {exc}")
            return CommandFailed(
                FailureKind.NO_PERMISSION,
                f"the bot lacks a permission or is below the target in the role hierarchy: {exc}",
            )
        if exc.code == 50035 or exc.status == 400:
            return CommandFailed(FailureKind.BAD_INPUT, f"Discord rejected the request: {exc}")
        return CommandFailed(FailureKind.INTERNAL, f"Discord refused the request: {exc}")
    if isinstance(exc, PayloadTooLarge):
        return CommandFailed(FailureKind.BAD_INPUT, str(exc))
    if isinstance(exc, (DiscordUnreachable, MediaUnreachable, RateLimitedTooLong)):
        return CommandFailed(FailureKind.TIMEOUT, str(exc))
    return CommandFailed(FailureKind.INTERNAL, str(exc))


@contextlib.contextmanager
def _not_found_as(what: str) -> Iterator[None]:
    """Inside, an HTTPError saying the target is unknown or out of the bot's sight (a Discord "unknown ..."
    code, 403 or 404) becomes CommandFailed(NOT_FOUND, "{what}: {error}"); other errors pass unchanged."""
    try:
        yield
    except HTTPError as exc:
        if exc.code in NOT_FOUND_CODES or exc.status in (403, 404):
            raise CommandFailed(FailureKind.NOT_FOUND, f"{what}: {exc}") from exc
        raise


# =========================================================================== the executor


class MemberLoader(Protocol):
    """Fills the cache with a guild's whole member list (the gateway's op 8: adapters.discord.gateway.members)."""

    async def load_all(self, guild_id: int) -> bool:
        """True when the cache then holds the whole list; False: page through REST instead."""
        ...


class DiscordCommandExecutor:
    """Runs envelope commands against Discord's REST API (implements ``relay.ports.CommandExecutor``)."""

    def __init__(
        self,
        rest: RestClient,
        entities: EntityFactory,
        own: OwnActions,
        config: BridgeConfig,
        *,
        clock: Callable[[], float] = time.time,
        member_loader: MemberLoader | None = None,
    ) -> None:
        """``own`` is shared with the inbound side: what the executor records there keeps echoes out.
        ``member_loader``: how ``memberList`` completes a guild's list in the cache (else REST pages it)."""
        self.member_loader = member_loader
        self.rest = rest
        self.entities = entities
        self.cache = entities.cache
        self.own = own
        self.config = config
        self.mapping = config.mapping
        self._clock = clock
        self._handlers: dict[type[Any], Any] = {
            env.SendMessage: self._send_message,
            env.RecallMessage: self._recall_message,
            env.GetMessage: self._get_message,
            env.GetHistory: self._get_history,
            env.ListFriends: self._list_friends,
            env.ListGroups: self._list_groups,
            env.ListMembers: self._list_members,
            env.GetMember: self._get_member,
            env.GetBotProfile: self._get_bot_profile,
            env.GetUserProfile: self._get_user_profile,
            env.MuteMember: self._mute_member,
            env.UnmuteMember: self._unmute_member,
            env.KickMember: self._kick_member,
            env.LeaveGroup: self._leave_group,
            env.SetMuteAll: self._set_mute_all,
            env.PinMessage: self._pin_message,
            env.GetGroupConfig: self._get_group_config,
            env.UpdateGroupConfig: self._update_group_config,
            env.UpdateMember: self._update_member,
            env.SetMemberAdmin: self._set_member_admin,
            env.ListAnnouncements: self._list_announcements,
            env.PublishAnnouncement: self._publish_announcement,
            env.DeleteAnnouncement: self._delete_announcement,
            env.DeleteFriend: self._delete_friend,
        }

    async def execute(self, command: env.Command) -> env.Result:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise CommandFailed(FailureKind.UNSUPPORTED, f"{type(command).__name__} is not a Discord command")
        try:
            result: env.Result = await handler(command)
        except CommandFailed:
            raise
        except DiscordError as exc:
            guild_id = self._guild_hint(command)
            raise command_failure(exc, bot_timed_out=self._bot_timed_out(guild_id)) from exc
        except RelayError as exc:  # e.g. a malformed answer from Discord (RemoteProtocolError)
            raise CommandFailed(FailureKind.INTERNAL, f"{type(command).__name__} failed: {exc}") from exc
        return result

    # ------------------------------------------------------------------ resolution helpers

    def _guild_hint(self, command: env.Command) -> int:
        group_id = getattr(command, "group_id", None)
        if group_id is None:
            conversation = getattr(command, "conversation", None) or getattr(
                getattr(command, "ref", None), "conversation", None
            )
            if isinstance(conversation, env.ConversationRef) and conversation.kind == env.ConversationKind.GROUP:
                group_id = conversation.id
        channel = self.cache.channels.get(group_id) if isinstance(group_id, int) else None
        return channel.guild_id if channel is not None else 0

    def _bot_timed_out(self, guild_id: int) -> bool:
        guild = self.cache.guilds.get(guild_id)
        bot = guild.bot_member if guild is not None else None
        return bot is not None and bot.timeout_until > self._clock()

    async def _group_channel(self, group_id: int) -> CachedChannel:
        """The bridged guild channel of a group id (fetched and cached when unknown)."""
        channel = self.cache.channels.get(group_id)
        if channel is None:
            with _not_found_as(f"group {group_id} is not a channel the bot can see"):
                data = await self.rest.get_channel(group_id)
            channel = self.cache.upsert_channel(data)
        if channel is None or not channel.guild_id:
            raise CommandFailed(FailureKind.NOT_FOUND, f"group {group_id} is not a guild text channel")
        if self.entities.group_for_channel(channel.id, channel.guild_id) is None:
            raise CommandFailed(FailureKind.NOT_FOUND, f"group {group_id} is not bridged (see [mapping] channels)")
        return channel

    def _group_of(self, channel: CachedChannel) -> env.Group:
        group = self.entities.group_for_channel(channel.id, channel.guild_id)
        if group is None:  # _group_channel checked it; kept for the type checker
            raise CommandFailed(FailureKind.NOT_FOUND, f"group {channel.id} is not bridged")
        return group

    async def _dm_channel(self, user_id: int) -> int:
        if user_id == self.cache.bot_id:
            raise CommandFailed(FailureKind.BAD_INPUT, "the bot cannot send a direct message to itself")
        known = self.cache.dm_channel_of(user_id)
        if known:
            self.rest.remember_dm_channel(user_id, known)  # learned from a DM message: no need to open it
            return known
        try:
            channel_id = await self.rest.dm_channel_id(user_id)
        except HTTPError as exc:
            if exc.code in NOT_FOUND_CODES:
                raise CommandFailed(FailureKind.NOT_FOUND, f"user {user_id} is unknown to Discord: {exc}") from exc
            raise
        self.cache.note_dm_channel(channel_id, user_id)
        return channel_id

    async def _conversation_channel(self, conversation: env.ConversationRef) -> int:
        if conversation.kind == env.ConversationKind.GROUP:
            return (await self._group_channel(conversation.id)).id
        return await self._dm_channel(conversation.id)

    async def _ref_channel(self, ref: env.MessageRef) -> tuple[int, int]:
        if ref.platform_id is None:
            raise CommandFailed(FailureKind.NOT_FOUND, "the message is unknown (no Discord message id for it)")
        channel_id = ref.channel_id or await self._conversation_channel(ref.conversation)
        return channel_id, ref.platform_id

    async def _member_data(self, guild_id: int, user_id: int, *, fresh: bool = False) -> CachedMember:
        if not fresh:
            cached = self.cache.member(guild_id, user_id)
            if cached is not None and cached.joined_at:
                return cached
        data = await self.rest.get_guild_member(guild_id, user_id)
        result = self.cache.upsert_member(guild_id, data)
        if result is None:
            member = CachedMember(user_id)
            member.update(data)
            return member
        return result[1]

    # ------------------------------------------------------------------ messages

    async def _send_message(self, command: env.SendMessage) -> env.MessageSent:
        if command.via_group is not None and command.conversation.kind == env.ConversationKind.PRIVATE:
            # a temp message (mirai sendTempMessage): the user must be a member of that group's guild
            via = await self._group_channel(command.via_group)
            try:
                await self._member_data(via.guild_id, command.conversation.id)
            except HTTPError as exc:
                if exc.code in NOT_FOUND_CODES:
                    raise CommandFailed(
                        FailureKind.NOT_FOUND,
                        f"user {command.conversation.id} is not a member of group {command.via_group}",
                    ) from exc
                raise
        channel_id = await self._conversation_channel(command.conversation)
        rendered = render_segments(command.segments, allow_mention_all=self.mapping.allow_mention_all)
        if rendered.content.count("@everyone") + rendered.content.count("@here") and not rendered.mention_everyone:
            log.debug("AtAll sent as plain text without a ping ([mapping] allow_mention_all = false)")
        quote_id = None
        if command.quote is not None:
            if command.quote.platform_id is None:
                raise CommandFailed(FailureKind.NOT_FOUND, "the quoted message is unknown")
            quote_id = command.quote.platform_id
        # validate the text before any download, so a refused message costs nothing
        build_message_bodies(
            rendered, quote_message_id=quote_id, upload_names=["x"] * len(rendered.media), config=self.mapping
        )
        uploads = [await self._upload_of(segment) for segment in rendered.media]
        bodies = build_message_bodies(
            rendered,
            quote_message_id=quote_id,
            upload_names=[u.filename for u in uploads],
            config=self.mapping,
        )
        refs: list[env.MessageRef] = []
        first_time = 0
        for index, body in enumerate(bodies):
            nonce = self.own.new_nonce()
            body["nonce"] = nonce
            body["enforce_nonce"] = True  # a retried POST returns the first message (docs/discord.md §7.3)
            files = uploads if index == len(bodies) - 1 else ()
            sent = await self.rest.create_message(channel_id, body, files)
            message_id = to_int(sent.get("id"))
            self.own.note_sent(channel_id, message_id)
            if not refs:
                first_time = int(snowflake_time(message_id))
            refs.append(
                env.MessageRef(conversation=command.conversation, platform_id=message_id, channel_id=channel_id)
            )
        return env.MessageSent(ref=refs[0], time=first_time, extra=tuple(refs[1:]))

    async def _upload_of(self, segment: env.Image | env.Audio | env.File) -> UploadFile:
        kind = "image" if isinstance(segment, env.Image) else "audio" if isinstance(segment, env.Audio) else "file"
        name = segment.name if isinstance(segment, env.File) else segment.filename
        data = segment.data
        content_type = segment.content_type
        limit = self.config.discord.max_upload_bytes
        if data is not None:
            if len(data) > limit:
                raise CommandFailed(
                    FailureKind.BAD_INPUT, f"{kind} of {len(data)} bytes exceeds the upload limit of {limit} bytes"
                )
        elif segment.url:
            data, content_type = await self.rest.download(segment.url, max_bytes=limit)
            name = name or url_filename(segment.url)
        elif segment.id:
            data, content_type, found_name = await self._download_issued(segment.id, kind, limit)
            name = name or found_name
        else:
            raise CommandFailed(FailureKind.BAD_INPUT, f"{kind} segment has neither data, url nor id")
        content_type = content_type or guess_content_type(name, data)
        name = name or default_name(kind, content_type)
        return UploadFile(name, data, content_type)

    async def _download_issued(self, issued: str, kind: str, limit: int) -> tuple[bytes, str, str]:
        """Bytes of an attachment the bridge issued an id for (mirai imageId/voiceId echoed back)."""
        where = parse_media_id(issued)
        url = self.cache.media_url(issued)
        if url:
            try:
                data, content_type = await self.rest.download(url, max_bytes=limit)
                return data, content_type, url_filename(url)
            except HTTPError as exc:
                if where is None or exc.status not in (403, 404, 410):
                    raise
                log.info("cached URL of %s expired (HTTP %s); re-fetching its message", issued, exc.status)
        if where is None:
            raise CommandFailed(
                FailureKind.NOT_FOUND,
                f"{kind} id {issued!r} was not issued by this bridge "
                "(or is forgotten); send the image by url or base64 instead",
            )
        channel_id, message_id, attachment_id = where
        with _not_found_as(f"the message holding {kind} {issued!r} is gone"):
            message = await self.rest.get_message(channel_id, message_id)
        for attachment in message.get("attachments") or ():
            if isinstance(attachment, dict) and to_int(attachment.get("id")) == attachment_id:
                fresh_url = str(attachment.get("url") or "")
                self.cache.remember_media(issued, fresh_url)
                data, content_type = await self.rest.download(fresh_url, max_bytes=limit)
                return data, content_type, str(attachment.get("filename") or "")
        raise CommandFailed(FailureKind.NOT_FOUND, f"{kind} {issued!r} no longer exists on its message")

    async def _recall_message(self, command: env.RecallMessage) -> env.Done:
        channel_id, message_id = await self._ref_channel(command.ref)
        # noted first: the MESSAGE_DELETE may arrive before the REST answer (its recall's operator is the bot)
        self.own.note_recalled(message_id)
        try:
            await self.rest.delete_message(channel_id, message_id)
        except DiscordError:
            self.own.forget_recalled(message_id)
            raise
        return env.Done()

    async def _get_message(self, command: env.GetMessage) -> env.MessageFound:
        channel_id, message_id = await self._ref_channel(command.ref)
        if command.ref.conversation.kind == env.ConversationKind.PRIVATE:
            self.cache.note_dm_channel(channel_id, command.ref.conversation.id)
        data = await self.rest.get_message(channel_id, message_id)
        message = self.entities.message_from_payload(data)
        if message is None:
            raise CommandFailed(FailureKind.NOT_FOUND, f"message {message_id} is a system message or not bridged")
        return env.MessageFound(message=message)

    async def _get_history(self, command: env.GetHistory) -> env.MessageList:
        channel_id = await self._conversation_channel(command.conversation)
        wanted = max(0, min(command.limit, MAX_HISTORY))
        start = max(command.time_start, 0)
        before: int | None = None
        if command.time_end < 2**41 // 1000:  # beyond the snowflake range: "now"
            before = snowflake_at(command.time_end + 1)
        oldest_allowed = snowflake_at(start) if start else 0
        collected: list[dict[str, Any]] = []
        while len(collected) < wanted:
            page_size = min(HISTORY_PAGE, wanted - len(collected))
            page = await self.rest.get_channel_messages(channel_id, limit=page_size, before=before)
            if not page:
                break
            ids = [to_int(m.get("id")) for m in page]
            collected.extend(m for m, i in zip(page, ids, strict=True) if i >= oldest_allowed)
            before = min(ids)
            if before < oldest_allowed or len(page) < page_size:
                break
        collected.sort(key=lambda m: to_int(m.get("id")))
        messages: list[env.Message] = []
        for data in collected[-wanted:] if wanted else []:
            message = self.entities.message_from_payload(data)
            if message is not None:
                messages.append(message)
        return env.MessageList(messages=tuple(messages))

    async def _pin_message(self, command: env.PinMessage) -> env.Done:
        channel_id, message_id = await self._ref_channel(command.ref)
        await self.rest.pin_message(channel_id, message_id)
        return env.Done()

    # ------------------------------------------------------------------ contacts

    async def _list_friends(self, command: env.ListFriends) -> env.FriendList:
        user_ids = dict(self.rest.cached_dm_users())
        for channel_id, user_id in self.cache.dm_partners.items():
            user_ids.setdefault(user_id, channel_id)
        friends: list[env.User] = []
        fetches = 0
        for user_id in sorted(user_ids):
            user = self.cache.find_user(user_id)
            if user is None and fetches < MAX_FRIEND_FETCHES:
                fetches += 1
                user = self.cache.upsert_user(await self.rest.get_user(user_id))
            if user is None:
                friends.append(env.User(id=user_id, name=""))
            else:
                friends.append(env.User(id=user.id, name=user.name, username=user.username, is_bot=user.is_bot))
        return env.FriendList(friends=tuple(friends))

    async def _list_groups(self, command: env.ListGroups) -> env.GroupList:
        return env.GroupList(groups=tuple(self.entities.all_groups()))

    async def _list_members(self, command: env.ListMembers) -> env.MemberList:
        channel = await self._group_channel(command.group_id)
        group = self._group_of(channel)
        guild_id = channel.guild_id
        now = self._clock()
        bot_id = self.cache.bot_id
        members: list[env.Member] = []
        if command.user_ids:
            for user_id in command.user_ids:
                try:
                    cached = await self._member_data(guild_id, user_id, fresh=command.fresh)
                except HTTPError as exc:
                    if exc.code in NOT_FOUND_CODES:
                        continue  # not a member: left out, like mirai does for unknown ids
                    raise
                members.append(self.entities.member_of(guild_id, cached, group, now))
            return env.MemberList(members=tuple(members))
        guild = self.cache.guilds.get(guild_id)
        if not command.fresh and guild is not None and not guild.members_complete and self.member_loader is not None:
            # a guild whose GUILD_CREATE listed only part of its members (large, or no presences): the list is
            # fetched whole over the gateway and this command waits for it (bounded by its command_timeout)
            await self.member_loader.load_all(guild_id)
            guild = self.cache.guilds.get(guild_id)
        if not command.fresh and guild is not None and guild.members_complete:
            found = [m for m in self.cache.iter_members(guild_id) if m.user.id != bot_id]
        else:
            raw = await self.rest.iter_all_guild_members(guild_id)
            read = self.cache.upsert_all_members(guild_id, raw)
            if len(read) < len(raw):
                read = self._members_despite_unreadable(guild_id, read, len(raw))
            found = [m for m in read if m.user.id != bot_id]
        members = [self.entities.member_of(guild_id, m, group, now) for m in found]
        return env.MemberList(members=tuple(members))

    def _members_despite_unreadable(self, guild_id: int, read: list[CachedMember], listed: int) -> list[CachedMember]:
        """Discord's listing had entries without their ``user`` object (a deviant server): they cannot be named, so
        the answer is the members that could be read plus those the cache knows, and it is said in the log (the
        guild's list stays incomplete, so the next memberList asks again). With nothing at all, the command fails
        rather than answer an empty list a framework would trust."""
        seen = {m.user.id for m in read}
        known = [m.copy() for m in self.cache.iter_members(guild_id) if m.user.id not in seen]
        log.warning(
            "guild %d: %d of the %d members Discord listed came without their user object and cannot be named; "
            "answering with the %d members known",
            guild_id,
            listed - len(read),
            listed,
            len(read) + len(known),
        )
        if not read and not known:
            raise CommandFailed(
                FailureKind.INTERNAL,
                f"Discord listed {listed} members of guild {guild_id} without their user objects; "
                "no member can be named",
            )
        return read + known

    async def _get_member(self, command: env.GetMember) -> env.MemberFound:
        channel = await self._group_channel(command.group_id)
        cached = await self._member_data(channel.guild_id, command.user_id)
        return env.MemberFound(
            member=self.entities.member_of(channel.guild_id, cached, self._group_of(channel), self._clock())
        )

    async def _get_bot_profile(self, command: env.GetBotProfile) -> env.ProfileFound:
        data = await self.rest.get_current_user()
        self.cache.set_bot_user(data)
        return env.ProfileFound(profile=_profile(data))

    async def _get_user_profile(self, command: env.GetUserProfile) -> env.ProfileFound:
        data = await self.rest.get_user(command.user_id)
        self.cache.upsert_user(data)
        return env.ProfileFound(profile=_profile(data))

    async def _delete_friend(self, command: env.DeleteFriend) -> env.Result:
        raise CommandFailed(
            FailureKind.UNSUPPORTED,
            "Discord bots have no friends list: a user stays reachable by DM while they share a guild with "
            "the bot and allow DMs; there is nothing to delete",
        )

    # ------------------------------------------------------------------ moderation

    async def _mute_member(self, command: env.MuteMember) -> env.Done:
        if command.seconds <= 0:
            raise CommandFailed(
                FailureKind.BAD_INPUT,
                f"mute time must be positive (got {command.seconds} s); use unmute to lift a mute",
            )
        channel = await self._group_channel(command.group_id)
        until, applied = timeout_until(self._clock(), command.seconds)
        if applied < command.seconds:
            log.warning(
                "mute of %s s for user %s clamped to Discord's maximum of 28 days (%s s)",
                command.seconds,
                command.user_id,
                applied,
            )
        await self.rest.modify_guild_member(channel.guild_id, command.user_id, communication_disabled_until=until)
        return env.Done()

    async def _unmute_member(self, command: env.UnmuteMember) -> env.Done:
        channel = await self._group_channel(command.group_id)
        await self.rest.modify_guild_member(channel.guild_id, command.user_id, communication_disabled_until=None)
        return env.Done()

    async def _kick_member(self, command: env.KickMember) -> env.Done:
        channel = await self._group_channel(command.group_id)
        guild_id = channel.guild_id
        reason = command.reason or None
        # noted first: the GUILD_MEMBER_REMOVE may arrive before the REST answer
        self.own.note_kicked(guild_id, command.user_id)
        try:
            if command.ban:
                await self.rest.create_guild_ban(guild_id, command.user_id, reason=reason)
            else:
                await self.rest.remove_guild_member(guild_id, command.user_id, reason=reason)
        except DiscordError:
            self.own.forget_kicked(guild_id, command.user_id)
            raise
        return env.Done()

    async def _leave_group(self, command: env.LeaveGroup) -> env.Done:
        channel = await self._group_channel(command.group_id)
        guild_id = channel.guild_id
        guild = self.cache.guilds.get(guild_id)
        if guild is not None and guild.owner_id and guild.owner_id == self.cache.bot_id:
            raise CommandFailed(
                FailureKind.NO_PERMISSION,
                "the bot owns this guild and cannot leave it (transfer ownership or delete the guild first)",
            )
        self.own.note_left_guild(guild_id)
        await self.rest.leave_guild(guild_id)
        return env.Done()

    async def _set_mute_all(self, command: env.SetMuteAll) -> env.Done:
        channel = await self._group_channel(command.group_id)
        await self._apply_mute_all(channel, command.muted)
        return env.Done()

    async def _apply_mute_all(self, channel: CachedChannel, muted: bool) -> None:
        # read-modify-write: PUT replaces the whole overwrite (docs/discord.md §9, mute all row)
        fresh = self.cache.upsert_channel(await self.rest.get_channel(channel.id), channel.guild_id) or channel
        everyone = channel.guild_id
        existing = fresh.overwrites.get(everyone)
        wanted = mute_all_overwrite(existing, muted)
        if wanted is None:
            if existing is not None:
                await self.rest.delete_channel_permission(channel.id, everyone)
            return
        allow, deny = wanted
        if existing is not None and (existing.allow, existing.deny) == (allow, deny):
            return  # already as asked
        await self.rest.edit_channel_permissions(
            channel.id, everyone, allow=allow, deny=deny, type=EVERYONE_OVERWRITE_TYPE
        )

    # ------------------------------------------------------------------ group and member settings

    async def _get_group_config(self, command: env.GetGroupConfig) -> env.GroupConfig:
        channel = await self._group_channel(command.group_id)
        fresh = self.cache.upsert_channel(await self.rest.get_channel(channel.id), channel.guild_id) or channel
        guild = self.cache.guilds.get(channel.guild_id)
        return env.GroupConfig(
            name=fresh.name, mute_all=fresh.muted_all, allow_member_invite=members_may_invite(guild, fresh)
        )

    async def _update_group_config(self, command: env.UpdateGroupConfig) -> env.Done:
        channel = await self._group_channel(command.group_id)
        if command.name is not None and command.name != channel.name:
            if not 1 <= len(command.name) <= 100:
                raise CommandFailed(FailureKind.BAD_INPUT, "a channel name must be 1–100 characters")
            data = await self.rest.modify_channel(channel.id, name=command.name)
            if isinstance(data, dict) and data.get("id"):
                self.cache.upsert_channel(data, channel.guild_id)
        if command.mute_all is not None:
            await self._apply_mute_all(channel, command.mute_all)
        if command.allow_member_invite is not None:
            await self._apply_member_invite(channel, command.allow_member_invite)
        return env.Done()

    async def _apply_member_invite(self, channel: CachedChannel, allowed: bool) -> None:
        # read-modify-write of the @everyone overwrite, like mute all; nothing when it already is as asked
        fresh = self.cache.upsert_channel(await self.rest.get_channel(channel.id), channel.guild_id) or channel
        if members_may_invite(self.cache.guilds.get(channel.guild_id), fresh) == allowed:
            return
        everyone = channel.guild_id
        wanted = everyone_overwrite(fresh.overwrites.get(everyone), CREATE_INSTANT_INVITE, allow=allowed)
        if wanted is None:
            await self.rest.delete_channel_permission(channel.id, everyone)
            return
        allow, deny = wanted
        await self.rest.edit_channel_permissions(
            channel.id, everyone, allow=allow, deny=deny, type=EVERYONE_OVERWRITE_TYPE
        )

    async def _update_member(self, command: env.UpdateMember) -> env.Done:
        if command.special_title:
            raise CommandFailed(
                FailureKind.UNSUPPORTED,
                "Discord has no special titles (群头衔); set a nickname instead, or give the member a role",
            )
        channel = await self._group_channel(command.group_id)
        if command.nickname is not None:
            if len(command.nickname) > 32:
                raise CommandFailed(FailureKind.BAD_INPUT, "a Discord nickname is at most 32 characters")
            await self.rest.modify_guild_member(channel.guild_id, command.user_id, nick=command.nickname or None)
        return env.Done()

    async def _set_member_admin(self, command: env.SetMemberAdmin) -> env.Done:
        if not self.mapping.admin_role:
            raise CommandFailed(
                FailureKind.UNSUPPORTED,
                "Discord has no built-in group admin: set [mapping] admin_role to the role (name or id) "
                "that memberAdmin should grant",
            )
        channel = await self._group_channel(command.group_id)
        guild_id = channel.guild_id
        guild = self.cache.guilds.get(guild_id)
        role_id = guild.role_id_by_name_or_id(self.mapping.admin_role) if guild is not None else 0
        if not role_id:
            roles = await self.rest.get_guild_roles(guild_id)
            for raw in roles:
                self.cache.upsert_role(guild_id, raw)
            guild = self.cache.guilds.get(guild_id)
            role_id = guild.role_id_by_name_or_id(self.mapping.admin_role) if guild is not None else 0
            if not role_id:
                for raw in roles:  # guild not cached: resolve from the REST answer directly
                    if str(raw.get("id")) == self.mapping.admin_role or raw.get("name") == self.mapping.admin_role:
                        role_id = to_int(raw.get("id"))
        if not role_id:
            raise CommandFailed(
                FailureKind.NOT_FOUND,
                f"the admin role {self.mapping.admin_role!r} of [mapping] "
                "admin_role does not exist in this guild; create it or fix the setting",
            )
        if command.admin:
            await self.rest.add_guild_member_role(guild_id, command.user_id, role_id)
        else:
            await self.rest.remove_guild_member_role(guild_id, command.user_id, role_id)
        return env.Done()

    # ------------------------------------------------------------------ announcements (pins)

    async def _list_announcements(self, command: env.ListAnnouncements) -> env.AnnouncementList:
        channel = await self._group_channel(command.group_id)
        group = self._group_of(channel)
        found: list[env.Announcement] = []
        before: str | None = None
        wanted = command.offset + max(command.size, 0)
        while len(found) < wanted:
            page = await self.rest.get_pins(channel.id, before=before, limit=50)
            items = page.get("items") or []
            for item in items:
                message = item.get("message") if isinstance(item, dict) else None
                if not isinstance(message, dict):
                    continue
                author = message.get("author")
                if not isinstance(author, dict):
                    author = {}
                found.append(
                    env.Announcement(
                        group=group,
                        content=str(message.get("content") or ""),
                        sender_id=to_int(author.get("id")),
                        id=str(message.get("id") or ""),
                        published_at=int(
                            parse_iso_time(item.get("pinned_at")) or snowflake_time(to_int(message.get("id")))
                        ),
                        pinned=True,
                    )
                )
            if not page.get("has_more") or not items:
                break
            last = items[-1]
            before = str(last.get("pinned_at") or "") or None if isinstance(last, dict) else None
            if before is None:
                break
        return env.AnnouncementList(announcements=tuple(found[command.offset : wanted]))

    async def _publish_announcement(self, command: env.PublishAnnouncement) -> env.AnnouncementPublished:
        channel = await self._group_channel(command.group_id)
        if not command.content:
            raise CommandFailed(FailureKind.BAD_INPUT, "an announcement needs content")
        if len(command.content) > MAX_CONTENT:
            raise CommandFailed(
                FailureKind.TOO_LONG,
                f"an announcement is one pinned message: at most {MAX_CONTENT} characters (got {len(command.content)})",
            )
        body = {
            "content": command.content,
            "allowed_mentions": allowed_mentions((), False),
            "nonce": self.own.new_nonce(),
            "enforce_nonce": True,
        }
        sent = await self.rest.create_message(channel.id, body)
        message_id = to_int(sent.get("id"))
        self.own.note_sent(channel.id, message_id)
        await self.rest.pin_message(channel.id, message_id)
        return env.AnnouncementPublished(
            announcement=env.Announcement(
                group=self._group_of(channel),
                content=command.content,
                sender_id=self.cache.bot_id or to_int((sent.get("author") or {}).get("id")),
                id=str(message_id),
                published_at=int(snowflake_time(message_id)),
                pinned=True,
            )
        )

    async def _delete_announcement(self, command: env.DeleteAnnouncement) -> env.Done:
        channel = await self._group_channel(command.group_id)
        if not command.announcement_id.isdigit():
            raise CommandFailed(
                FailureKind.BAD_INPUT,
                f"announcement id {command.announcement_id!r} is not one "
                "this bridge issued (they are Discord message ids)",
            )
        await self.rest.unpin_message(channel.id, int(command.announcement_id))
        return env.Done()


def _profile(data: dict[str, Any]) -> env.Profile:
    return env.Profile(nickname=str(data.get("global_name") or data.get("username") or ""))
