"""The demo bot's pure half: the mirai-api-http v2 frames it writes and reads, and what it answers to what.

The demo bot plays a bot **framework** (docs/mirai-api-http.md §3: the framework runs the websocket server, the
bridge dials it and pushes events). Everything here is seen from the framework's side of the protocol and is
written from the protocol notes, not from the bridge's own mirai code (``adapters/mirai``), so that the demo bot
is an independent client of the protocol. Nothing here does I/O or reads the clock; the trio shell is
``relay/sandbox/demobot.py``.

Frames (§3.3, §3.4):

* out: ``{"syncId": <fresh id>, "command": ..., "subCommand": ..., "content": ...}`` (:func:`command_frame`);
* in: a **response** ``{"syncId": <one of ours>, "data": {...}}``; a pushed **event**
  ``{"syncId": "-1", "data": {"type": ...}}``; a **raw state** ``{"code": N, "msg": ...}`` without a syncId (the
  handshake's refusals, §3.3, and the bridge's "your frame was unreadable" 400, §3.5); anything else is junk
  (:func:`read_frame`).

Manners (:func:`reaction_to`), for group messages whose plain text (the ``Plain`` elements, §7) is:

* ``echo <text>`` → ``sendGroupMessage`` of ``[Plain <text>]`` quoting the message (``quote`` = its ``Source`` id);
* ``members`` or ``member count`` → ``memberList`` of the group, then a reply with the count and a few names;
* ``recall`` as a reply (the chain has a ``Quote``, §7) → ``recall {target: group, messageId: quoted id}``;
  without a ``Quote`` → a hint how to use it;
* ``help`` → what it understands;

and a ``MemberJoinEvent`` (§9.4) → a welcome (an ``At`` of the newcomer, then text). Anything else → nothing.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any, Final, TypeAlias

import attrs

from relay import fastjson

#: the ``syncId`` of pushed events (mirai-api-http's default ``reservedSyncId``, §3.1)
RESERVED_SYNC_ID: Final = "-1"
#: names listed in the ``members`` reply before "and N more"
MEMBER_NAMES_SHOWN: Final = 5
#: characters of a message's text shown in a log line
LOG_TEXT_CHARS: Final = 80

HELP_TEXT: Final = (
    "I am the demo bot: a tiny mirai-api-http framework built into discord-mirai-relay. I understand:\n"
    "echo <text> - I repeat <text>, replying to you (sendGroupMessage with a quote)\n"
    "members - I count the members of this channel (memberList)\n"
    "recall - sent as a reply to a message, I delete that message (recall)\n"
    "help - this text"
)
RECALL_HINT: Final = "Reply to a message with recall and I will delete it."


# --------------------------------------------------------------------------- frames in


@attrs.frozen
class Response:
    """The answer to one of our commands: ``data`` is the command's whole result object (§3.4)."""

    sync_id: str
    data: dict[str, Any]


@attrs.frozen
class RawState:
    """An unwrapped ``{"code", "msg"}`` frame: a refused handshake (§3.3) or an unreadable frame of ours (§3.5)."""

    code: int
    msg: str


@attrs.frozen
class Event:
    """A pushed event (§9): ``data["type"]`` names it."""

    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["type"])


@attrs.frozen
class Junk:
    """A frame that is none of the above; ``reason`` is for a log line."""

    reason: str


Incoming: TypeAlias = Response | RawState | Event | Junk


def read_frame(message: str | bytes, *, pending: Container[str]) -> Incoming:
    """Classify one frame from the bridge. ``pending`` holds the syncIds of our commands still unanswered.

    A frame whose syncId is one of ours is a response (whatever its ``data`` holds); otherwise a frame whose
    ``data`` has a string ``type`` is an event (whatever the bridge's ``reservedSyncId``). Binary frames are read
    as UTF-8 text, as mirai-api-http reads them (§2).
    """
    try:
        frame = fastjson.loads(message)
    except ValueError:  # includes UnicodeDecodeError
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        return Junk(f"not JSON: {shorten(text)}")
    if not isinstance(frame, dict):
        return Junk(f"a JSON {type(frame).__name__}, not an object")
    if "syncId" not in frame:
        code, msg = frame.get("code"), frame.get("msg")
        if isinstance(code, int) and not isinstance(code, bool):
            return RawState(code, msg if isinstance(msg, str) else "")
        return Junk("no syncId")
    sync_id, data = frame["syncId"], frame.get("data")
    if not isinstance(data, dict):
        return Junk("no data object")
    if isinstance(sync_id, str | int) and not isinstance(sync_id, bool) and str(sync_id) in pending:
        return Response(str(sync_id), data)
    if isinstance(data.get("type"), str):
        return Event(data)
    if sync_id == RESERVED_SYNC_ID:
        return Junk("an event without a type")
    return Junk(f"a response to no command in flight (syncId {sync_id!r})")


# --------------------------------------------------------------------------- frames out


class SyncIds:
    """Fresh ``syncId`` strings for one connection: ``demo-1``, ``demo-2``, ... (never the reserved ``-1``)."""

    def __init__(self, prefix: str = "demo") -> None:
        self._prefix = prefix
        self._last = 0

    def next(self) -> str:
        self._last += 1
        return f"{self._prefix}-{self._last}"


def command_frame(sync_id: str, command: str, content: object = None, sub_command: str | None = None) -> str:
    """A command frame as a framework writes it (§3.4); ``subCommand`` only matters for a few commands (§6.1)."""
    frame = {"syncId": sync_id, "command": command, "subCommand": sub_command, "content": content}
    return fastjson.dumps(frame).decode()


def verify_content(verify_key: str, qq: int | None) -> dict[str, object]:
    """``verify``'s content, all three keys present as mirai-api-http requires (§3.3)."""
    return {"verifyKey": verify_key, "sessionKey": None, "qq": qq}


def code_of(data: dict[str, Any]) -> int:
    """A result's state code: 0 for success, also for the bare objects that carry no ``code`` (§3.4, §5.3)."""
    code = data.get("code", 0)
    return code if isinstance(code, int) and not isinstance(code, bool) else -1


def describe_failure(data: dict[str, Any] | RawState) -> str:
    """``code 5 (指定对象不存在)``: a failed result, for a log line or a chat message."""
    if isinstance(data, RawState):
        return f"code {data.code} ({data.msg})" if data.msg else f"code {data.code}"
    msg = data.get("msg")
    return f"code {code_of(data)} ({msg})" if isinstance(msg, str) and msg else f"code {code_of(data)}"


def bot_ids(data: dict[str, Any]) -> list[int]:
    """The bot ids of a ``botList`` result (``{"code":0,"msg":"","data":[123]}``, §6.2)."""
    ids = data.get("data")
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]


# --------------------------------------------------------------------------- message chains (§7)


def plain(text: str) -> dict[str, object]:
    return {"type": "Plain", "text": text}


def at(target: int) -> dict[str, object]:
    return {"type": "At", "target": target, "display": ""}


def _elements(chain: object) -> list[dict[str, Any]]:
    return [e for e in chain if isinstance(e, dict)] if isinstance(chain, list) else []


def plain_text(chain: object) -> str:
    """The text of a chain: its ``Plain`` elements joined (mentions, images and the like left out)."""
    return "".join(str(e.get("text", "")) for e in _elements(chain) if e.get("type") == "Plain")


def _int_field(element: dict[str, Any], key: str) -> int | None:
    value = element.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def source_id(chain: object) -> int | None:
    """The message's own id: its ``Source`` element's ``id`` (the first element of a received chain)."""
    for element in _elements(chain):
        if element.get("type") == "Source":
            return _int_field(element, "id")
    return None


def quoted_id(chain: object) -> int | None:
    """The id of the message this one replies to: its ``Quote`` element's ``id``, if any."""
    for element in _elements(chain):
        if element.get("type") == "Quote":
            return _int_field(element, "id")
    return None


def shorten(text: str, limit: int = LOG_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters for a log line, shown quoted."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --------------------------------------------------------------------------- manners


@attrs.frozen
class Send:
    """``sendGroupMessage`` of ``chain`` to ``group``, replying to message ``quote`` when it is set."""

    group: int
    chain: tuple[dict[str, object], ...]
    quote: int | None = None
    why: str = ""  #: what the message is, for the log line ("echo", "help", "welcome")


@attrs.frozen
class CountMembers:
    """``memberList`` of ``group``, then a reply (quoting ``quote``) with the count and a few names."""

    group: int
    quote: int | None


@attrs.frozen
class Recall:
    """``recall`` of ``message_id`` in ``group``; a failure is answered quoting ``quote`` (the request)."""

    group: int
    message_id: int
    quote: int | None


Reaction: TypeAlias = Send | CountMembers | Recall


def reaction_to(event: Event, *, bot_qq: int | None) -> Reaction | None:
    """What the demo bot does about ``event`` (see the module docstring); None for everything else.

    Messages sent by ``bot_qq`` (the bot the session is bound to) are never answered, so two demo bots, or a
    bridge that reflected the bot's own messages, could not talk to each other forever.
    """
    if event.kind == "GroupMessage":
        return _reaction_to_message(event.data, bot_qq)
    if event.kind == "MemberJoinEvent":
        return _welcome(event.data)
    return None


def _group_and_sender(data: dict[str, Any]) -> tuple[int, int] | None:
    sender = data.get("sender")
    if not isinstance(sender, dict) or not isinstance(sender.get("group"), dict):
        return None
    group, sender_id = _int_field(sender["group"], "id"), _int_field(sender, "id")
    if group is None or sender_id is None:
        return None
    return group, sender_id


def _reaction_to_message(data: dict[str, Any], bot_qq: int | None) -> Reaction | None:
    found = _group_and_sender(data)
    if found is None:
        return None
    group, sender_id = found
    if bot_qq is not None and sender_id == bot_qq:
        return None
    chain = data.get("messageChain")
    text = plain_text(chain).strip()
    word, _, rest = text.partition(" ")
    keyword = word.lower()
    message_id = source_id(chain)
    if keyword == "echo" and rest.strip():
        return Send(group, (plain(rest.strip()),), quote=message_id, why="echo")
    if text.lower() in ("members", "member count"):
        return CountMembers(group, quote=message_id)
    if text.lower() == "recall":
        target = quoted_id(chain)
        if target is None:
            return Send(group, (plain(RECALL_HINT),), quote=message_id, why="recall hint")
        return Recall(group, message_id=target, quote=message_id)
    if text.lower() == "help":
        return Send(group, (plain(HELP_TEXT),), quote=message_id, why="help")
    return None


def _welcome(data: dict[str, Any]) -> Reaction | None:
    member = data.get("member")
    if not isinstance(member, dict) or not isinstance(member.get("group"), dict):
        return None
    group, member_id = _int_field(member["group"], "id"), _int_field(member, "id")
    if group is None or member_id is None:
        return None
    place = member["group"].get("name")
    where = f" to {place}" if isinstance(place, str) and place else ""
    text = f" welcome{where}! Say help to see what I can do."
    return Send(group, (at(member_id), plain(text)), why="welcome")


def member_summary(data: dict[str, Any]) -> str:
    """The ``members`` reply from a ``memberList`` result: how many, and the first few names (§6.2: the list
    leaves out the bot itself)."""
    members = data.get("data")
    entries: Sequence[object] = members if isinstance(members, list) else []
    names = [
        str(m.get("memberName") or m.get("id"))
        for m in entries
        if isinstance(m, dict) and (m.get("memberName") or m.get("id") is not None)
    ]
    count = len(entries)
    if count == 0:
        return "Nobody here but me."
    noun = "member" if count == 1 else "members"
    listed = ", ".join(names[:MEMBER_NAMES_SHOWN])
    more = f" and {count - MEMBER_NAMES_SHOWN} more" if count > MEMBER_NAMES_SHOWN else ""
    return f"{count} {noun} besides me: {listed}{more}."


def describe_event(event: Event) -> str:
    """One log line about a pushed event: who said what where (and what else the message holds: ``[Image]``,
    ``[At]``, ...), who joined, which message was recalled; else its type."""
    data = event.data
    if event.kind == "GroupRecallEvent":
        return _describe_recall(data)
    holder = data.get("sender") if event.kind == "GroupMessage" else data.get("member")
    if not isinstance(holder, dict) or event.kind not in ("GroupMessage", "MemberJoinEvent"):
        return event.kind
    group = holder.get("group")
    group_id = group.get("id") if isinstance(group, dict) else None
    who = f"{holder.get('memberName')} ({holder.get('id')})"
    if event.kind == "MemberJoinEvent":
        return f"MemberJoinEvent: {who} joined group {group_id}"
    chain = data.get("messageChain")
    others = "".join(
        f" [{e.get('type')}]" for e in _elements(chain) if e.get("type") not in ("Source", "Plain", "Quote")
    )
    quoting = f" (quoting message {quoted_id(chain)})" if quoted_id(chain) is not None else ""
    return f"GroupMessage in group {group_id} from {who}{quoting}: {shorten(plain_text(chain))}{others}"


def _describe_recall(data: dict[str, Any]) -> str:
    group = data.get("group")
    group_id = group.get("id") if isinstance(group, dict) else None
    operator = data.get("operator")
    by = f"{operator.get('memberName')} ({operator.get('id')})" if isinstance(operator, dict) else "the bot"
    return f"GroupRecallEvent: message {data.get('messageId')} in group {group_id} recalled by {by}"
