"""What the sandbox's chat page reads and sends, without I/O: JSON views of the emulated world, the side panel's
entries for the bridge's REST calls, the checks on what the page asks, and the page API's loopback rules.

The page (``relay/sandbox/static/``) renders these views as they are: names are resolved here (a member's
nickname, else the user's display name, else the username), so the script only lays them out. The views are
built from the world's live dictionaries (:mod:`relay.sandbox.emulator.world`) and copy what they show.

The panel shows what the bridge did on "Discord": every REST request that carried the bot's token, and the
file downloads made with the bridge's User-Agent; what the browser itself loads (the images on the page) is
not the bridge's doing and is left out. Each entry says the route, the JSON the bridge sent (the
``payload_json`` of an upload, with the files' names), the status and a one-line result (an id made, a count,
Discord's error code and message).

The page API is for the person at this machine only (the emulated Discord has no accounts, anyone who reaches
it can act as anybody): :func:`host_problem` refuses a ``Host`` that is not a loopback name (a web page on
another site cannot reach the API through DNS rebinding), and :func:`origin_problem` refuses a request or
websocket sent by a page of another origin (cross-site form posts and websockets are not stopped by the
browser).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from relay import fastjson
from relay.sandbox.emulator import snowflakes as sf
from relay.sandbox.emulator.rest import RecordedRequest
from relay.sandbox.emulator.world import JSON, MESSAGE_PINNED, MESSAGE_USER_JOIN, World
from relay.web.models import RequestRejected, Response

#: messages of a channel the page shows (the latest)
MESSAGES_SHOWN: Final = 100
#: characters of a request body the panel shows
BODY_CHARS: Final = 2000
#: characters of a result line
RESULT_CHARS: Final = 160
#: Discord's limit on a message's content (docs/discord.md §7.2)
MAX_CONTENT: Final = 2000
#: longest nickname Discord accepts
MAX_NICK: Final = 32
#: longest timeout Discord accepts: 28 days (docs/discord.md §9)
MAX_TIMEOUT_MINUTES: Final = 28 * 24 * 60
#: the User-Agent the bridge's REST client sends starts with this (Discord requires the form)
BRIDGE_USER_AGENT: Final = "DiscordBot"

TEXT_CHANNEL: Final = 0
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


# --------------------------------------------------------------------------- names


def display_name(world: World, guild_id: int | None, user_id: int) -> str:
    """What Discord shows for a user: the member's nickname, else the user's display name, else the username."""
    member = world.members.get((guild_id, user_id)) if guild_id is not None else None
    if member is not None and member.get("nick"):
        return str(member["nick"])
    user = world.users.get(user_id)
    if user is None:
        return "unknown user"
    return str(user.get("global_name") or user["username"])


def page_guild(world: World) -> int:
    """The guild the page shows: the bot's first (the sandbox has one)."""
    guilds = world.bot_guilds()
    if not guilds:
        raise RequestRejected(404, "the emulated Discord has no guild the bot is in")
    return guilds[0]


# --------------------------------------------------------------------------- views


def state_view(world: World) -> JSON:
    """The guild, its text channels, roles, members (who can act) and the users who could join."""
    guild_id = page_guild(world)
    guild = world.guild(guild_id)
    channels = sorted(
        (c for c in world.guild_channels(guild_id) if c["type"] == TEXT_CHANNEL), key=lambda c: int(c["position"])
    )
    members = [_member_view(world, guild_id, m) for m in world.guild_members(guild_id)]
    members.sort(key=lambda m: (not m["bot"], m["name"].lower()))
    outside = [
        {"id": user["id"], "name": str(user.get("global_name") or user["username"]), "username": user["username"]}
        for user_id, user in sorted(world.users.items())
        if (guild_id, user_id) not in world.members and not user.get("bot")
    ]
    return {
        "guild": {"id": guild["id"], "name": guild["name"]},
        "bot_id": str(world.bot_user_id),
        "channels": [{"id": c["id"], "name": c["name"], "topic": c.get("topic") or ""} for c in channels],
        "roles": {r["id"]: r["name"] for r in guild["roles"]},
        "members": members,
        "outside": outside,
    }


def _member_view(world: World, guild_id: int, member: JSON) -> JSON:
    user = member["user"]
    user_id = int(user["id"])
    return {
        "id": user["id"],
        "name": display_name(world, guild_id, user_id),
        "username": user["username"],
        "nick": member.get("nick"),
        "bot": bool(user.get("bot")),
        "roles": list(member.get("roles") or []),
        "timeout_until": member.get("communication_disabled_until"),
    }


def messages_view(world: World, channel_id: int, *, limit: int = MESSAGES_SHOWN) -> list[JSON]:
    """The channel's latest ``limit`` messages, oldest first, ready to render."""
    channel = world.channel(channel_id)
    guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
    messages = world.messages[channel_id]
    return [_message_view(world, guild_id, messages[i]) for i in sorted(messages)[-limit:]]


def _message_view(world: World, guild_id: int | None, message: JSON) -> JSON:
    author_id = int(message["author"]["id"])
    view: JSON = {
        "id": message["id"],
        "author_id": message["author"]["id"],
        "author": display_name(world, guild_id, author_id),
        "bot": bool(message["author"].get("bot")),
        "content": message["content"],
        "timestamp": message["timestamp"],
        "system": _system_text(message["type"]),
        "attachments": [
            {
                "url": a["url"],
                "filename": a["filename"],
                "image": str(a.get("content_type") or "").startswith("image/"),
            }
            for a in message.get("attachments") or []
        ],
        "names": {},
        "reply": None,
    }
    mentioned = _mentioned_ids(message)
    reference = message.get("message_reference")
    if message["type"] != MESSAGE_PINNED and isinstance(reference, dict):
        quoted = message.get("referenced_message")
        if quoted is not None:
            mentioned += _mentioned_ids(quoted)
        if quoted is None:
            view["reply"] = {"id": reference.get("message_id"), "deleted": True}
        else:
            view["reply"] = {
                "id": quoted["id"],
                "deleted": False,
                "author": display_name(world, guild_id, int(quoted["author"]["id"])),
                "content": quoted["content"],
                "attachments": len(quoted.get("attachments") or []),
            }
    view["names"] = {str(u): display_name(world, guild_id, u) for u in dict.fromkeys(mentioned)}
    return view


def _system_text(message_type: int) -> str:
    """The line Discord shows instead of a system message's content ("" for an ordinary message)."""
    if message_type == MESSAGE_USER_JOIN:
        return "joined the server."
    if message_type == MESSAGE_PINNED:
        return "pinned a message to this channel."
    return ""


def _mentioned_ids(message: JSON) -> list[int]:
    found = [int(u["id"]) for u in message.get("mentions") or []]
    content = message["content"]
    start = content.find("<@")
    while start != -1:  # mentions the bot wrote without pinging still render as names
        end = content.find(">", start)
        if end == -1:
            break
        digits = content[start + 2 : end].removeprefix("!")
        if digits.isdigit():
            found.append(int(digits))
        start = content.find("<@", end)
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------- the side panel


def is_bridge_request(record: RecordedRequest) -> bool:
    """A request the bridge made: one with an Authorization header, or a download with the bridge's User-Agent."""
    return "authorization" in record.headers or record.headers.get("user-agent", "").startswith(BRIDGE_USER_AGENT)


def request_entry(seq: int, record: RecordedRequest, response: Response | None, *, wall_time: float) -> JSON:
    """One line of the side panel (see the module docstring); ``seq`` orders them."""
    files = [p.filename or p.name for p in record.parts if p.name.startswith("files[")]
    query = urllib.parse.urlencode(record.query)
    return {
        "seq": seq,
        "time": wall_time,
        "method": record.method,
        "path": record.path + (f"?{query}" if query else ""),
        "route": record.route,
        "status": response.status if response is not None else None,
        "reason": record.headers.get("x-audit-log-reason"),
        "sent": _shorten(fastjson.dumps(record.json).decode()) if record.json is not None else "",
        "files": files,
        "result": _result(response),
    }


def _result(response: Response | None) -> str:
    if response is None:
        return "connection dropped without an answer"
    if response.status == 204 or not response.body:
        return "no content"
    content_type = dict(response.headers).get("content-type", "")
    if "json" not in content_type:
        return f"{content_type or 'a body'}, {len(response.body)} bytes"
    try:
        body = fastjson.loads(response.body)
    except ValueError:
        return "unreadable JSON"
    if isinstance(body, list):
        return f"{len(body)} item{'s' if len(body) != 1 else ''}"
    if isinstance(body, dict):
        if response.status >= 400 and "message" in body:
            code = body.get("code")
            retry = f", retry after {body['retry_after']} s" if "retry_after" in body else ""
            return f"{code} {body['message']}{retry}" if code else f"{body['message']}{retry}"
        if "id" in body:
            return f"id {body['id']}"
    return _shorten(fastjson.dumps(body).decode(), RESULT_CHARS)


def _shorten(text: str, limit: int = BODY_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- what the page asks


def int_field(body: Mapping[str, Any], name: str) -> int:
    """A snowflake or number from the page (sent as a string or a number); 422 when it is missing or not one."""
    value = optional_int(body, name)
    if value is None:
        raise RequestRejected(422, f"{name} is missing")
    return value


def optional_int(body: Mapping[str, Any], name: str) -> int | None:
    """Like :func:`int_field`; None when it is missing."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise RequestRejected(422, f"{name} must be a number")
    return int(value)


def text_field(body: Mapping[str, Any], name: str, *, limit: int) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise RequestRejected(422, f"{name} must be a string")
    if len(value) > limit:
        raise RequestRejected(422, f"{name} is longer than {limit} characters")
    return value


def timed_out(member: Mapping[str, Any], now: float) -> bool:
    """Whether the member's timeout (``communication_disabled_until``) is still running at wall time ``now``."""
    until = member.get("communication_disabled_until")
    if not until:
        return False
    try:
        return sf.parse_iso(str(until)) > now
    except ValueError:
        return False


def check_can_post(world: World, guild_id: int | None, author_id: int, now: float) -> None:
    """Refuse what Discord's client would not let that member do: post while not a member, or timed out."""
    if guild_id is None:
        return
    member = world.members.get((guild_id, author_id))
    if member is None:
        raise RequestRejected(403, f"{display_name(world, None, author_id)} is not a member of this server")
    if timed_out(member, now):
        until = member["communication_disabled_until"]
        raise RequestRejected(403, f"{display_name(world, guild_id, author_id)} is timed out until {until}")


# --------------------------------------------------------------------------- loopback rules


def _host_name(authority: str) -> str:
    """``127.0.0.1:8765`` → ``127.0.0.1``; ``[::1]:8765`` → ``::1``."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


def is_loopback_name(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_problem(host_header: str | None) -> str | None:
    """Why the ``Host`` of a page request is refused (None: it names this machine's loopback)."""
    if not host_header:
        return "the request has no Host header"
    if not is_loopback_name(_host_name(host_header)):
        return f"the sandbox's page answers on a loopback address only, not for {host_header!r}"
    return None


def origin_problem(origin: str | None, host_header: str | None) -> str | None:
    """Why a request sent by a page of ``origin`` is refused (None: no Origin, as from curl, or the page's own)."""
    if origin is None:
        return None
    if host_header and origin == f"http://{host_header}":
        return None
    return f"a page of another origin ({origin}) may not use the sandbox"
