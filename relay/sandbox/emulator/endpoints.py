"""The emulated REST API v10's endpoints: Discord's input rules, error codes and answer shapes (docs/discord.md §7–§9).

One method per endpoint, ``(params, request) → (status, JSON or None)``; :meth:`Endpoints.table` lists them
with their method and path template (the rate-limit route). They check what Discord checks (lengths, limits,
choices, 50035 field errors with the nested ``errors`` tree, 50006/50007/50008/40058/30003/30015, unknown
objects) and call :mod:`.actions` for every change, as the bot (the audit log reason is the request's
``X-Audit-Log-Reason``). Covered: everything :class:`adapters.discord.rest.RestClient` calls, plus the guild
audit log and unban.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from relay.sandbox.emulator import snowflakes as sf
from relay.sandbox.emulator.actions import Actions
from relay.sandbox.emulator.errors import ApiError, field_error, unknown
from relay.sandbox.emulator.gateway import Gateway
from relay.sandbox.emulator.world import JSON, MISSING, Upload, World
from relay.web.multipart import Part

#: docs/discord.md §7.3 limits
MAX_CONTENT = 2000
MAX_NONCE = 25
MAX_FILES = 10
MAX_TIMEOUT_DAYS = 28
#: docs/discord.md §9: the bots' page size of GET /users/@me/guilds
MAX_GUILDS_PAGE = 200


class EndpointRequest:
    """What an endpoint reads of a request: query, decoded JSON body, multipart parts, headers, arrival time."""

    def __init__(
        self, query: dict[str, str], json: Any, parts: tuple[Part, ...], headers: dict[str, str], time: float
    ) -> None:
        self.query = query
        self.json = json
        self.parts = parts
        self.headers = headers
        self.time = time

    @property
    def body(self) -> JSON:
        """The JSON body if it is an object, else {} (Discord reads absent fields as absent)."""
        return self.json if isinstance(self.json, dict) else {}

    @property
    def reason(self) -> str | None:
        """The audit log reason (``X-Audit-Log-Reason``, percent-encoded, docs/discord.md §8.1)."""
        value = self.headers.get("x-audit-log-reason")
        return urllib.parse.unquote(value) if value else None


Params = dict[str, str]
Answer = tuple[int, Any]
EndpointFn = Callable[[Params, EndpointRequest], Answer]


def _int_query(r: EndpointRequest, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(r.query.get(name, str(default)))
    except ValueError:
        raise field_error(name, "NUMBER_TYPE_COERCE", "Value is not int.") from None
    if not low <= value <= high:
        raise field_error(name, "NUMBER_TYPE_MAX", f"int value should be <= {high} and >= {low}.")
    return value


class Endpoints:
    """See the module docstring."""

    def __init__(self, world: World, actions: Actions, gateway: Gateway) -> None:
        self.world = world
        self.actions = actions
        self.gateway = gateway

    def table(self) -> list[tuple[str, str, EndpointFn]]:
        """(method, path template, endpoint): more specific templates first."""
        return [
            ("GET", "/gateway/bot", self.gateway_bot),
            ("GET", "/users/@me", self.current_user),
            ("GET", "/applications/@me", self.current_application),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/users/@me/guilds", self.current_user_guilds),
            ("DELETE", "/users/@me/guilds/{guild_id}", self.leave_guild),
            ("GET", "/users/{user_id}", self.get_user),
            ("GET", "/channels/{channel_id}/messages/pins", self.get_pins),
            ("PUT", "/channels/{channel_id}/messages/pins/{message_id}", self.pin),
            ("DELETE", "/channels/{channel_id}/messages/pins/{message_id}", self.unpin),
            ("POST", "/channels/{channel_id}/messages", self.create_message),
            ("GET", "/channels/{channel_id}/messages", self.channel_messages),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("PATCH", "/channels/{channel_id}", self.modify_channel),
            ("PUT", "/channels/{channel_id}/permissions/{overwrite_id}", self.put_overwrite),
            ("DELETE", "/channels/{channel_id}/permissions/{overwrite_id}", self.delete_overwrite),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/channels", self.guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self.guild_roles),
            ("GET", "/guilds/{guild_id}/audit-logs", self.audit_log),
            ("GET", "/guilds/{guild_id}/members", self.list_members),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            ("PATCH", "/guilds/{guild_id}/members/{user_id}", self.modify_member),
            ("DELETE", "/guilds/{guild_id}/members/{user_id}", self.kick),
            ("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.add_member_role),
            ("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.remove_member_role),
            ("PUT", "/guilds/{guild_id}/bans/{user_id}", self.ban),
            ("DELETE", "/guilds/{guild_id}/bans/{user_id}", self.unban),
        ]

    # ------------------------------------------------------------------ users and the gateway

    def gateway_bot(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.gateway.gateway_bot_json(r.time)

    def current_user(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.bot_user

    def current_application(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.application()

    def get_user(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.user(int(p["user_id"]))

    def current_user_guilds(self, p: Params, r: EndpointRequest) -> Answer:
        limit = _int_query(r, "limit", MAX_GUILDS_PAGE, 1, MAX_GUILDS_PAGE)
        after = int(r.query.get("after", "0"))
        ids = [g for g in self.world.bot_guilds() if g > after][:limit]
        guilds = self.world.guilds
        owner = str(self.world.bot_user_id)
        answer = []
        for g in ids:
            entry: JSON = {"id": str(g), "name": guilds[g]["name"], "icon": None}
            entry["owner"] = guilds[g]["owner_id"] == owner
            if not self.world.deviations.omit_guild_permissions:
                entry["permissions"] = str(self.world.bot_permissions(g))
            entry["features"] = []
            answer.append(entry)
        return 200, answer

    def create_dm(self, p: Params, r: EndpointRequest) -> Answer:
        try:
            user_id = int(r.body["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise field_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required") from None
        return 200, self.actions.open_dm(user_id)

    # ------------------------------------------------------------------ messages

    def create_message(self, p: Params, r: EndpointRequest) -> Answer:
        channel_id = int(p["channel_id"])
        channel = self.world.channel(channel_id)
        body = r.json if isinstance(r.json, dict) else None
        if body is None:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                {"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Only dictionaries may be used"}]},
            )
        if channel["type"] in (2, 4, 13):
            raise ApiError(400, 50008, "Cannot send messages in a non-text channel")
        if channel["type"] in (15, 16):
            raise ApiError(400, 40058, "Cannot send messages in a forum channel")
        if channel["type"] == 1 and self.world.dms_closed(int(channel["recipients"][0]["id"])):
            raise ApiError(403, 50007, "Cannot send messages to this user")
        files = [part for part in r.parts if part.name.startswith("files[")]
        if len(files) > MAX_FILES:
            raise ApiError(400, 30015, f"Maximum number of attachments in a message reached ({MAX_FILES})")
        nonce = body.get("nonce")
        enforce_nonce = bool(body.get("enforce_nonce"))
        if nonce is not None:
            if len(str(nonce)) > MAX_NONCE:
                raise field_error("nonce", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_NONCE} or fewer in length.")
            existing = self.actions.message_for_nonce(channel_id, nonce) if enforce_nonce else None
            if existing is not None:
                return 200, existing
        content = body.get("content") or ""
        if not isinstance(content, str):
            raise field_error("content", "BASE_TYPE_STRING", "Could not interpret content as string.")
        if len(content) > MAX_CONTENT:
            raise field_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
        embeds = body.get("embeds") or []
        if not content and not embeds and not files and not body.get("sticker_ids"):
            raise ApiError(400, 50006, "Cannot send an empty message")
        reply_to: int | None = None
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            target = int(reference["message_id"])
            if target in self.world.messages[channel_id]:
                reply_to = target
            elif reference.get("fail_if_not_exists", True):
                raise field_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        message = self.actions.post_message(
            channel_id,
            content,
            reply_to=reply_to,
            uploads=_uploads(body.get("attachments") or [], files),
            embeds=embeds,
            allowed_mentions=body.get("allowed_mentions"),
            nonce=nonce,
            enforce_nonce=enforce_nonce,
        )
        return 200, message

    def get_message(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.message(int(p["channel_id"]), int(p["message_id"]))

    def delete_message(self, p: Params, r: EndpointRequest) -> Answer:
        self.actions.delete_message(int(p["channel_id"]), int(p["message_id"]), reason=r.reason)
        return 204, None

    def channel_messages(self, p: Params, r: EndpointRequest) -> Answer:
        channel_id = int(p["channel_id"])
        self.world.channel(channel_id)
        limit = _int_query(r, "limit", 50, 1, 100)
        messages = self.world.messages[channel_id]
        ids = sorted(messages)
        if "before" in r.query:
            ids = [i for i in ids if i < int(r.query["before"])][-limit:]
        elif "after" in r.query:
            ids = [i for i in ids if i > int(r.query["after"])][:limit]
        elif "around" in r.query:
            center = int(r.query["around"])
            older = [i for i in ids if i <= center][-(limit - limit // 2) :]
            newer = [i for i in ids if i > center][: limit // 2]
            ids = older + newer
        else:
            ids = ids[-limit:]
        return 200, [messages[i] for i in reversed(ids)]

    def pin(self, p: Params, r: EndpointRequest) -> Answer:
        self.actions.pin_message(int(p["channel_id"]), int(p["message_id"]), reason=r.reason)
        return 204, None

    def unpin(self, p: Params, r: EndpointRequest) -> Answer:
        self.actions.unpin_message(int(p["channel_id"]), int(p["message_id"]), reason=r.reason)
        return 204, None

    def get_pins(self, p: Params, r: EndpointRequest) -> Answer:
        channel_id = int(p["channel_id"])
        self.world.channel(channel_id)
        limit = _int_query(r, "limit", 50, 1, 50)
        pins = list(reversed(self.world.pins[channel_id]))  # newest pin first
        before = r.query.get("before")
        if before:
            pins = [x for x in pins if x[0] < before]
        page = pins[:limit]
        messages = self.world.messages[channel_id]
        items = [{"pinned_at": at, "message": messages[mid]} for at, mid in page]
        return 200, {"items": items, "has_more": len(pins) > limit}

    # ------------------------------------------------------------------ channels

    def get_channel(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.channel(int(p["channel_id"]))

    def modify_channel(self, p: Params, r: EndpointRequest) -> Answer:
        channel_id = int(p["channel_id"])
        self.world.channel(channel_id)
        body = r.body
        name = body.get("name", MISSING)
        if name is not MISSING and (not isinstance(name, str) or not 1 <= len(name) <= 100):
            raise field_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        topic = body.get("topic", MISSING)
        if topic is not MISSING and topic is not None and (not isinstance(topic, str) or len(topic) > 1024):
            raise field_error("topic", "BASE_TYPE_MAX_LENGTH", "Must be 1024 or fewer in length.")
        return 200, self.actions.modify_channel(channel_id, name=name, topic=topic, reason=r.reason)

    def put_overwrite(self, p: Params, r: EndpointRequest) -> Answer:
        channel_id = int(p["channel_id"])
        self.world.channel(channel_id)
        body = r.body
        if body.get("type") not in (0, 1):
            raise field_error("type", "BASE_TYPE_CHOICES", "Value must be one of {0, 1}.")
        try:
            allow, deny = int(body.get("allow", "0")), int(body.get("deny", "0"))
        except (TypeError, ValueError):
            raise field_error("allow", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        self.actions.put_overwrite(
            channel_id, int(p["overwrite_id"]), type=body["type"], allow=allow, deny=deny, reason=r.reason
        )
        return 204, None

    def delete_overwrite(self, p: Params, r: EndpointRequest) -> Answer:
        self.actions.delete_overwrite(int(p["channel_id"]), int(p["overwrite_id"]), reason=r.reason)
        return 204, None

    # ------------------------------------------------------------------ guilds

    def get_guild(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.guild(int(p["guild_id"]))

    def guild_channels(self, p: Params, r: EndpointRequest) -> Answer:
        guild_id = int(p["guild_id"])
        self.world.guild(guild_id)
        return 200, [c for c in self.world.guild_channels(guild_id) if c["type"] not in (10, 11, 12)]

    def guild_roles(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.guild(int(p["guild_id"]))["roles"]

    def audit_log(self, p: Params, r: EndpointRequest) -> Answer:
        """``{audit_log_entries (newest first), users, ...}``, filtered by ``action_type``/``user_id``/``before``."""
        guild_id = int(p["guild_id"])
        self.world.guild(guild_id)
        limit = _int_query(r, "limit", 50, 1, 100)
        entries = list(reversed(self.world.audit_log.get(guild_id, [])))
        if "action_type" in r.query:
            entries = [e for e in entries if str(e["action_type"]) == r.query["action_type"]]
        if "user_id" in r.query:
            entries = [e for e in entries if e["user_id"] == r.query["user_id"]]
        if "before" in r.query:
            entries = [e for e in entries if int(e["id"]) < int(r.query["before"])]
        entries = entries[:limit]
        user_ids = {int(e["user_id"]) for e in entries} | {
            int(e["target_id"]) for e in entries if e.get("target_id") and int(e["target_id"]) in self.world.users
        }
        return 200, {
            "audit_log_entries": entries,
            "users": [self.world.users[u] for u in sorted(user_ids) if u in self.world.users],
            "integrations": [],
            "webhooks": [],
            "threads": [],
            "application_commands": [],
            "auto_moderation_rules": [],
            "guild_scheduled_events": [],
        }

    def leave_guild(self, p: Params, r: EndpointRequest) -> Answer:
        self.actions.leave_guild(int(p["guild_id"]))
        return 204, None

    # ------------------------------------------------------------------ members

    def list_members(self, p: Params, r: EndpointRequest) -> Answer:
        guild_id = int(p["guild_id"])
        self.world.guild(guild_id)
        limit = _int_query(r, "limit", 1, 1, 1000)  # docs/discord.md §6.4: the default really is 1
        after = int(r.query.get("after", "0"))
        ids = [u for u in sorted(u for (g, u) in self.world.members if g == guild_id) if u > after][:limit]
        return 200, [self.world.listed_member(guild_id, u) for u in ids]

    def get_member(self, p: Params, r: EndpointRequest) -> Answer:
        return 200, self.world.member(int(p["guild_id"]), int(p["user_id"]))

    def modify_member(self, p: Params, r: EndpointRequest) -> Answer:
        guild_id, user_id = int(p["guild_id"]), int(p["user_id"])
        self.world.member(guild_id, user_id)
        body = r.body
        nick = body.get("nick", MISSING)
        if nick is not MISSING:
            if nick is not None and (not isinstance(nick, str) or len(nick) > 32):
                raise field_error("nick", "BASE_TYPE_MAX_LENGTH", "Must be 32 or fewer in length.")
            nick = nick or None
        until = body.get("communication_disabled_until", MISSING)
        if until is not MISSING and until is not None:
            try:
                when = sf.parse_iso(str(until))
            except ValueError:
                raise field_error(
                    "communication_disabled_until", "DATE_TIME_TYPE_PARSE", "Could not parse the date."
                ) from None
            if when > self.world.wall_time() + MAX_TIMEOUT_DAYS * 86400:
                raise field_error(
                    "communication_disabled_until",
                    "COMMUNICATION_DISABLED_TIMESTAMP_TOO_FAR",
                    "Timeout cannot be more than 28 days in the future.",
                )
        member = self.actions.update_member(
            guild_id, user_id, nick=nick, communication_disabled_until=until, reason=r.reason
        )
        if not body:
            return 204, None
        return 200, member

    def add_member_role(self, p: Params, r: EndpointRequest) -> Answer:
        return self._member_role(p, r, present=True)

    def remove_member_role(self, p: Params, r: EndpointRequest) -> Answer:
        return self._member_role(p, r, present=False)

    def _member_role(self, p: Params, r: EndpointRequest, *, present: bool) -> Answer:
        guild_id, user_id, role_id = int(p["guild_id"]), int(p["user_id"]), int(p["role_id"])
        self.actions.set_member_role(guild_id, user_id, role_id, present, reason=r.reason)
        return 204, None

    def kick(self, p: Params, r: EndpointRequest) -> Answer:
        self.actions.kick(int(p["guild_id"]), int(p["user_id"]), reason=r.reason)
        return 204, None

    def ban(self, p: Params, r: EndpointRequest) -> Answer:
        guild_id, user_id = int(p["guild_id"]), int(p["user_id"])
        self.world.guild(guild_id)
        self.world.user(user_id)
        seconds = r.body.get("delete_message_seconds", 0)
        if not isinstance(seconds, int) or not 0 <= seconds <= 604_800:
            raise field_error("delete_message_seconds", "NUMBER_TYPE_MAX", "int value should be <= 604800.")
        self.actions.ban(guild_id, user_id, delete_message_seconds=seconds, reason=r.reason)
        return 204, None

    def unban(self, p: Params, r: EndpointRequest) -> Answer:
        guild_id, user_id = int(p["guild_id"]), int(p["user_id"])
        if user_id not in self.world.users:
            raise unknown("User")
        self.actions.unban(guild_id, user_id, reason=r.reason)
        return 204, None


def _uploads(listed: list[Any], files: list[Part]) -> list[Upload]:
    """The ``files[n]`` parts with their ``attachments`` metadata (``id`` = n; docs/discord.md §7.4)."""
    by_id = {str(a.get("id")): a for a in listed if isinstance(a, dict)}
    uploads = []
    for part in files:
        index = part.name[len("files[") : -1]
        meta = by_id.get(index, {})
        uploads.append(
            Upload(
                filename=str(meta.get("filename") or part.filename or f"file{index}"),
                data=part.data,
                content_type=part.content_type or "application/octet-stream",
                description=str(meta["description"]) if meta.get("description") else None,
            )
        )
    return uploads
