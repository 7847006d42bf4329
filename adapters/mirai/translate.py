"""Envelope ⇄ mirai-api-http 2.10 JSON shapes (pure: no I/O, no clock, no trio).

Three directions, all table-tested:

* **events out** — :func:`encode_event` builds the ``data`` object of a pushed event exactly as
  mirai-api-http serializes it (``type`` first, every DTO field present, nulls included; mirai-api-http.md
  §2, §8, §9) and :func:`encode_event_frame` the whole compact frame text that goes into the outbox;
* **commands in** — :func:`decode_command` turns ``command``/``subCommand``/``content`` (mirai-api-http.md
  §6) into an envelope :data:`relay.envelope.Command`, a :class:`BridgeQuery` the handler answers from
  the bot identity, or a ready :class:`LocalAnswer` (errors, unsupported commands);
* **results out** — :func:`encode_result` / :func:`encode_failure` build the response ``data`` object.

Representation choices (documented here because frameworks see them):

* **Discord custom emoji → ``Face``.** mirai's ``faceId`` is an Int32 and Discord emoji ids are
  snowflakes, so a custom emoji is ``{"type":"Face","faceId":-1,"name":"<:name:id>","isSuperFace":false}``
  (``<a:name:id>`` when animated). ``-1`` is mirai's own "no id" default and ``name`` carries Discord's
  literal emoji syntax, so Ariadne parses it (``Face(id=-1, name=...)``) and a framework that sends the
  same element back gets the same emoji (:func:`decode_command` recognises the syntax in ``name``).
* **Discord stickers → ``MarketFace``** with ``id`` -1 and ``name`` ``<sticker:NAME:ID>`` for the same
  reason (Int32 ``id``); sending it back posts the sticker.
* **Quotes whose target id is unknown** carry ``id`` 0 (the store never allocates 0), so a later
  ``recall``/``quote`` with it is answered "not found" rather than hitting the wrong message.
* **Ambiguous ``target``** (``recall``, ``messageFromId``, ``setEssence``, ``roamingMessages``: "friend id
  or group id"): the decoded :class:`~relay.envelope.MessageRef` uses ``ConversationKind.GROUP`` as a
  placeholder. Discord snowflakes never collide between channels and users, and the store keys messages by
  conversation id alone, so resolving the ref through the store yields the real conversation
  (``MessageStore.lookup_local``; ``MessageStore.conversation(id)`` for ``roamingMessages``).
* **One stand-alone element per chain.** Ariadne rejects a whole event whose chain has more than one
  element outside Plain/Image/Face/At/AtAll/Source/Quote; a Discord message with several audio/file
  attachments or stickers keeps the first as Voice/File/MarketFace and the rest become readable Plain.
* **Send-side elements** with no Discord form: Face with a QQ face id → ``[表情:name]`` text; Dice → "🎲 N";
  MusicShare → title and link; ShortVideo with ``videoUrl`` → the link; Forward → quoted ``> name: text``
  lines; MiraiCode → at/atall/image parsed, the rest literal; FlashImage → an ordinary image. Refused with
  code 6 and a reason: Xml/Json/App cards, Poke, File, ShortVideo without url, Forward nodes by reference,
  and any ``path`` (the bridge does not share the framework's file system).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Mapping, Sequence

import attrs

from adapters.mirai import codec
from relay.envelope import (
    INT32_MAX,
    Announcement,
    AnnouncementList,
    AnnouncementPublished,
    Audio,
    BotJoinedGroup,
    BotLeftGroup,
    BotRoleChanged,
    BotStatus,
    BotStatusChanged,
    Command,
    ConversationKind,
    ConversationRef,
    DeleteAnnouncement,
    DeleteFriend,
    Done,
    Emoji,
    Event,
    File,
    FriendList,
    GetBotProfile,
    GetGroupConfig,
    GetHistory,
    GetMember,
    GetMessage,
    GetUserProfile,
    Group,
    GroupConfig,
    GroupList,
    GroupMuteAllChanged,
    GroupRenamed,
    Image,
    KickMember,
    LeaveGroup,
    ListAnnouncements,
    ListFriends,
    ListGroups,
    ListMembers,
    Member,
    MemberFound,
    MemberJoined,
    MemberLeft,
    MemberList,
    MemberMuted,
    MemberNicknameChanged,
    MemberRoleChanged,
    MemberUnmuted,
    Mention,
    MentionAll,
    Message,
    MessageFound,
    MessageList,
    MessageRecalled,
    MessageReceived,
    MessageRef,
    MessageSent,
    MuteMember,
    PinMessage,
    Profile,
    ProfileFound,
    PublishAnnouncement,
    RecallMessage,
    Result,
    RichContent,
    Role,
    Segment,
    SendMessage,
    SetMemberAdmin,
    SetMuteAll,
    Sticker,
    Text,
    UnmuteMember,
    Unsupported,
    UpdateGroupConfig,
    UpdateMember,
    User,
)
from relay.errors import CommandFailed, FailureKind, LocalProtocolError

__all__ = [
    "ABOUT_VERSION",
    "CODE_INTERNAL",
    "UNSUPPORTED_COMMANDS",
    "BridgeQuery",
    "LocalAnswer",
    "answer_query",
    "decode_command",
    "encode_chain",
    "encode_event",
    "encode_event_frame",
    "encode_failure",
    "encode_message_event",
    "encode_result",
]

#: what ``about`` reports; Ariadne parses it as dotted ints and needs ≥ 2.6.0 (mirai-api-http.md §3.7)
ABOUT_VERSION = "2.10.0"

INT32_MIN = -(2**31)
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# mirai-api-http.md §5.2 — status codes and their exact standard messages
CODE_SUCCESS = 0
CODE_NOT_FOUND = 5
CODE_UNSUPPORTED = 6
CODE_NO_PERMISSION = 10
CODE_BOT_MUTED = 20
CODE_TOO_LONG = 30
CODE_BAD_INPUT = 400
CODE_INTERNAL = 500
MSG_UNSUPPORTED = "指定操作不支持"
MSG_BAD_INPUT = "无效参数"

_FAILURE_CODES: dict[FailureKind, tuple[int, str]] = {
    FailureKind.NOT_FOUND: (CODE_NOT_FOUND, "指定对象不存在"),
    FailureKind.NO_PERMISSION: (CODE_NO_PERMISSION, "无操作权限"),
    FailureKind.BOT_MUTED: (CODE_BOT_MUTED, "Bot被禁言"),
    FailureKind.TOO_LONG: (CODE_TOO_LONG, "消息过长"),
    FailureKind.BAD_INPUT: (CODE_BAD_INPUT, MSG_BAD_INPUT),
    FailureKind.UNSUPPORTED: (CODE_UNSUPPORTED, MSG_UNSUPPORTED),
    FailureKind.TIMEOUT: (CODE_INTERNAL, "timed out"),
    FailureKind.INTERNAL: (CODE_INTERNAL, "internal error"),
}

#: the literal syntax Discord uses for custom emoji; carried in ``Face.name``
_EMOJI_RE = re.compile(r"<(a?):([A-Za-z0-9_~]+):([0-9]{1,20})>")
#: our own syntax for stickers, carried in ``MarketFace.name`` (Discord has no text form for stickers)
_STICKER_RE = re.compile(r"<sticker:(.*):([0-9]{1,20})>", re.DOTALL)
#: mirai code (mirai-api-http.md §7 ``MiraiCode``): ``[mirai:kind:args]`` with ``\`` escapes
_MIRAI_CODE_RE = re.compile(r"\[mirai:([A-Za-z]+)(?::((?:\\.|[^\]\\])*))?\]")
_MIRAI_CODE_UNESCAPE_RE = re.compile(r"\\(.)")


# =========================================================================== events out


def _group(group: Group) -> dict[str, object]:
    # _value_, not .value, here and in _member: the enum property is a Python-level descriptor call (~0.3 µs),
    # and these two run for every relayed message
    return {"id": group.id, "name": group.name, "permission": group.bot_role._value_}


def _member(member: Member) -> dict[str, object]:
    # mirai-api-http.md §8: every field, ``active`` null outside ``memberInfo get``
    return {
        "id": member.user_id,
        "memberName": member.display_name,
        "specialTitle": member.special_title,
        "permission": member.role._value_,
        "joinTimestamp": _clamp32(member.joined_at),
        "lastSpeakTimestamp": _clamp32(member.last_spoke_at),
        "muteTimeRemaining": _clamp32(member.mute_remaining),
        "group": _group(member.group),
        "active": None,
    }


def _optional_member(member: Member | None) -> dict[str, object] | None:
    return None if member is None else _member(member)


def _friend(user: User) -> dict[str, object]:
    return {"id": user.id, "nickname": user.name, "remark": ""}


def _clamp32(value: int) -> int:
    """mirai Int fields (timestamps, durations) cannot exceed Int32; saturate instead of overflowing."""
    if value > INT32_MAX:
        return INT32_MAX
    if value < INT32_MIN:
        return INT32_MIN
    return value


def _image_type(image: Image) -> str:
    # mirai-api-http.md §7 Image.imageType ∈ PNG/BMP/JPG/GIF/APNG/UNKNOWN
    ctype = image.content_type.lower()
    name = image.filename.lower()
    if ctype == "image/png" or name.endswith(".png"):
        return "PNG"
    if ctype in ("image/jpeg", "image/jpg") or name.endswith((".jpg", ".jpeg")):
        return "JPG"
    if ctype == "image/gif" or name.endswith(".gif"):
        return "GIF"
    if ctype == "image/apng" or name.endswith(".apng"):
        return "APNG"
    if ctype in ("image/bmp", "image/x-ms-bmp") or name.endswith(".bmp"):
        return "BMP"
    return "UNKNOWN"


def _encode_segment(segment: Segment) -> dict[str, object]:
    # Order of tests = rough frequency on Discord (text first).
    if type(segment) is Text:
        return {"type": "Plain", "text": segment.text}
    if isinstance(segment, Mention):
        # real mirai-api-http always emits display "" (mirai-api-http.md §7)
        return {"type": "At", "target": segment.user_id, "display": ""}
    if isinstance(segment, Image):
        return {
            "type": "Image",
            "imageId": segment.id,
            "url": segment.url,
            "path": None,
            "base64": None,
            "width": _clamp32(segment.width),
            "height": _clamp32(segment.height),
            "size": segment.size,
            "imageType": _image_type(segment),
            "isEmoji": segment.is_emoji,
        }
    if isinstance(segment, Emoji):
        prefix = "a" if segment.animated else ""
        return {"type": "Face", "faceId": -1, "name": f"<{prefix}:{segment.name}:{segment.id}>", "isSuperFace": False}
    if isinstance(segment, MentionAll):
        return {"type": "AtAll", "target": 0}
    if isinstance(segment, Audio):
        return {
            "type": "Voice",
            "voiceId": segment.id,
            "url": segment.url,
            "path": None,
            "base64": None,
            "length": int(segment.duration),
        }
    if isinstance(segment, File):
        return {"type": "File", "id": segment.id, "name": segment.name, "size": segment.size}
    if isinstance(segment, Sticker):
        return {"type": "MarketFace", "id": -1, "name": f"<sticker:{segment.name}:{segment.id}>"}
    if isinstance(segment, RichContent):
        return {"type": "Plain", "text": segment.text}
    if isinstance(segment, Unsupported):
        return {"type": "Plain", "text": segment.fallback}
    if isinstance(segment, Text):  # subclasses, if anyone ever makes one
        return {"type": "Plain", "text": segment.text}
    # Unknown segment kinds (a newer envelope): readable, never dropped.
    return {"type": "Plain", "text": str(segment)}


#: segments that become mirai elements which must stand alone in a chain. Ariadne refuses a whole event
#: whose chain holds more than one element outside {Plain, Image, Face, At, AtAll, Source, Quote}
#: ("An MessageChain can only contain *one* special element"), while one Discord message may carry
#: several attachments and stickers. The first keeps its element; the rest become readable Plain text.
_SPECIAL_SEGMENTS = (Audio, File, Sticker)


def _special_as_text(segment: Segment) -> dict[str, object]:
    if isinstance(segment, Audio):
        text = f"[Voice] {segment.url}" if segment.url else "[Voice]"
    elif isinstance(segment, File):
        text = f"[File: {segment.name}] {segment.url}" if segment.url else f"[File: {segment.name}]"
    elif isinstance(segment, Sticker):
        text = f"[Sticker: {segment.name}]"
    else:
        text = str(segment)
    return {"type": "Plain", "text": text}


def encode_chain(segments: Sequence[Segment]) -> list[dict[str, object]]:
    """Segments → mirai elements, in order (no Source/Quote); at most one stand-alone element."""
    elements: list[dict[str, object]] = []
    special_seen = False
    for segment in segments:
        if isinstance(segment, _SPECIAL_SEGMENTS):
            if special_seen:
                elements.append(_special_as_text(segment))
                continue
            special_seen = True
        elements.append(_encode_segment(segment))
    return elements


def _quote_element(message: Message, *, bot_id: int) -> dict[str, object]:
    quote = message.quote
    assert quote is not None  # the caller checked
    conversation = message.conversation
    if conversation.kind is ConversationKind.GROUP:
        group_id = conversation.id
        target_id = conversation.id
    else:
        # targetId = who received the quoted message (mirai-api-http.md §7 Quote)
        group_id = 0
        target_id = conversation.id if quote.author_id == bot_id else bot_id
    local_id = quote.ref.local_id
    return {
        "type": "Quote",
        "id": local_id if local_id is not None else 0,
        "groupId": group_id,
        "senderId": quote.author_id,
        "targetId": target_id,
        "origin": encode_chain(quote.origin),
    }


def _message_chain(message: Message, *, bot_id: int) -> list[dict[str, object]]:
    # Source first, Quote second: Ariadne looks for both in the first two elements (mirai-api-http.md §3.7)
    chain: list[dict[str, object]] = [{"type": "Source", "id": message.local_id, "time": _clamp32(message.time)}]
    if message.quote is not None:
        chain.append(_quote_element(message, bot_id=bot_id))
    chain.extend(encode_chain(message.segments))
    return chain


def _message_group(message: Message) -> Group:
    if message.group is not None:
        return message.group
    if isinstance(message.sender, Member):
        return message.sender.group
    return Group(id=message.conversation.id, name="", bot_role=Role.MEMBER)


def _sender_as_member(message: Message) -> Member:
    sender = message.sender
    if isinstance(sender, Member):
        return sender
    # a webhook or an uncached author: a plain member of the group
    return Member(user_id=sender.id, display_name=sender.name, role=Role.MEMBER, group=_message_group(message))


def _sender_as_friend(sender: Member | User) -> dict[str, object]:
    if isinstance(sender, User):
        return _friend(sender)
    return {"id": sender.user_id, "nickname": sender.display_name, "remark": ""}


def encode_message_event(message: Message, *, bot_id: int, as_sync: bool = False) -> dict[str, object]:
    """A message as a mirai message event (``GroupMessage``/``FriendMessage`` or their ``*SyncMessage``).

    ``as_sync`` is for pushed events of messages the bot account sent outside the bridge; the
    ``messageFromId``/``roamingMessages`` results always use the plain form with the bot as sender.
    """
    chain = _message_chain(message, bot_id=bot_id)
    if message.conversation.kind is ConversationKind.GROUP:
        if as_sync:
            return {"type": "GroupSyncMessage", "messageChain": chain, "subject": _group(_message_group(message))}
        return {"type": "GroupMessage", "messageChain": chain, "sender": _member(_sender_as_member(message))}
    if as_sync:
        # subject = the friend the bot wrote to; only the id is known here
        return {
            "type": "FriendSyncMessage",
            "messageChain": chain,
            "subject": {"id": message.conversation.id, "nickname": "", "remark": ""},
        }
    return {"type": "FriendMessage", "messageChain": chain, "sender": _sender_as_friend(message.sender)}


def _encode_recall(event: MessageRecalled) -> dict[str, object] | None:
    message_id = event.ref.local_id
    if message_id is None:
        # The message never got a mirai id (unknown to the store): no framework can have seen it.
        return None
    if event.group is not None:
        return {
            "type": "GroupRecallEvent",
            "authorId": event.author_id,
            "messageId": message_id,
            "time": event.time,
            "group": _group(event.group),
            "operator": _optional_member(event.operator),
        }
    operator = event.operator.user_id if event.operator is not None else event.author_id
    return {
        "type": "FriendRecallEvent",
        "authorId": event.author_id,
        "messageId": message_id,
        "time": event.time,
        "operator": operator,
    }


_BOT_STATUS_TYPES = {
    BotStatus.ONLINE: "BotOnlineEvent",
    BotStatus.OFFLINE_DROPPED: "BotOfflineEventDropped",
    BotStatus.RELOGIN: "BotReloginEvent",
}


def encode_event(event: Event, *, bot_id: int) -> dict[str, object] | None:
    """The ``data`` object of the pushed frame for ``event``; ``None`` when mirai has nothing to say.

    ``bot_id`` is the qq presented to frameworks (``BotOnlineEvent.qq``, the receiver in private quotes).
    ``None`` only for a recall of a message that never received a mirai id (resolve refs through the
    store first).
    """
    if isinstance(event, MessageReceived):
        message = event.message
        return encode_message_event(message, bot_id=bot_id, as_sync=message.from_self)
    if isinstance(event, MessageRecalled):
        return _encode_recall(event)
    if isinstance(event, MemberJoined):
        return {"type": "MemberJoinEvent", "member": _member(event.member), "invitor": _optional_member(event.invitor)}
    if isinstance(event, MemberLeft):
        if event.kicked:
            return {
                "type": "MemberLeaveEventKick",
                "member": _member(event.member),
                "operator": _optional_member(event.operator),
            }
        return {"type": "MemberLeaveEventQuit", "member": _member(event.member)}
    if isinstance(event, MemberMuted):
        return {
            "type": "MemberMuteEvent",
            "durationSeconds": _clamp32(event.duration),
            "member": _member(event.member),
            "operator": _optional_member(event.operator),
        }
    if isinstance(event, MemberUnmuted):
        return {
            "type": "MemberUnmuteEvent",
            "member": _member(event.member),
            "operator": _optional_member(event.operator),
        }
    if isinstance(event, MemberNicknameChanged):
        return {
            "type": "MemberCardChangeEvent",
            "origin": event.old,
            "current": event.new,
            "member": _member(event.member),
        }
    if isinstance(event, MemberRoleChanged):
        return {
            "type": "MemberPermissionChangeEvent",
            "origin": event.old.value,
            "current": event.new.value,
            "member": _member(event.member),
        }
    if isinstance(event, GroupRenamed):
        return {
            "type": "GroupNameChangeEvent",
            "origin": event.old,
            "current": event.new,
            "group": _group(event.group),
            "operator": _optional_member(event.operator),
        }
    if isinstance(event, GroupMuteAllChanged):
        return {
            "type": "GroupMuteAllEvent",
            "origin": event.old,
            "current": event.new,
            "group": _group(event.group),
            "operator": _optional_member(event.operator),
        }
    if isinstance(event, BotRoleChanged):
        return {
            "type": "BotGroupPermissionChangeEvent",
            "origin": event.old.value,
            "current": event.new.value,
            "group": _group(event.group),
        }
    if isinstance(event, BotJoinedGroup):
        return {"type": "BotJoinGroupEvent", "group": _group(event.group), "invitor": None}
    if isinstance(event, BotLeftGroup):
        if event.kicked:
            # mirai always names the operator; Discord's GUILD_DELETE does not, so it may be null (Ariadne: Optional)
            return {
                "type": "BotLeaveEventKick",
                "group": _group(event.group),
                "operator": _optional_member(event.operator),
            }
        return {"type": "BotLeaveEventActive", "group": _group(event.group)}
    if isinstance(event, BotStatusChanged):
        # the qq frameworks bound to (config mirai.bot_id may differ from the Discord user id)
        return {"type": _BOT_STATUS_TYPES[event.status], "qq": bot_id or event.bot_id}
    raise LocalProtocolError(
        f"encode_event: no mirai event for {type(event).__name__}; extend adapters/mirai/translate"
    )


def encode_event_frame(event: Event, *, bot_id: int, reserved_sync_id: str) -> str | None:
    """The whole pushed frame ``{"syncId":"-1","data":{...}}`` as compact text; ``None`` = nothing to push."""
    data = encode_event(event, bot_id=bot_id)
    if data is None:
        return None
    return codec.encode_event(reserved_sync_id, data)


# =========================================================================== commands in


@attrs.frozen
class LocalAnswer:
    """The response ``data`` is known without asking Discord (errors, unsupported commands, ``about``)."""

    data: Mapping[str, object]

    @classmethod
    def error(cls, code: int, msg: str) -> LocalAnswer:
        return cls({"code": code, "msg": msg})


class BridgeQuery(enum.Enum):
    """Commands the mirai handler answers from the bot identity, not from Discord."""

    BOT_LIST = "botList"
    SESSION_INFO = "sessionInfo"


def answer_query(query: BridgeQuery, *, bot_id: int, bot_name: str, session_key: str) -> dict[str, object]:
    """``botList`` / ``sessionInfo`` in mirai-api-http's shapes (§6.2)."""
    if query is BridgeQuery.BOT_LIST:
        return {"code": 0, "msg": "", "data": [bot_id]}
    return {
        "code": 0,
        "msg": "",
        "data": {"sessionKey": session_key, "qq": {"id": bot_id, "nickname": bot_name, "remark": ""}},
    }


class _BadContent(Exception):
    """Internal: a command's content is unusable. Never leaves this module (turned into a LocalAnswer)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _bad(field: str, why: str) -> _BadContent:
    return _BadContent(CODE_BAD_INPUT, f"{MSG_BAD_INPUT}: {field} {why}")


def _unsupported(msg: str) -> _BadContent:
    return _BadContent(CODE_UNSUPPORTED, msg)


def _as_int(value: object, field: str, low: int, high: int, kind: str) -> int:
    """Lenient integer (mirai-api-http.md §2: quoted numbers accepted), range-checked."""
    if isinstance(value, bool):
        raise _bad(field, f"must be an {kind}, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            raise _bad(field, f"must be an {kind} (got {value!r})") from None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise _bad(field, f"must be an {kind} (got {type(value).__name__})")
    if not low <= number <= high:
        raise _bad(field, f"is out of the {kind} range ({number})")
    return number


def _get(content: Mapping[str, object], *names: str) -> object:
    """First present, non-null key of ``names`` (synonyms, e.g. ``target``/``group``)."""
    for name in names:
        value = content.get(name)
        if value is not None:
            return value
    return None


def _long(content: Mapping[str, object], *names: str) -> int:
    value = _get(content, *names)
    if value is None:
        raise _bad(names[0], "is missing")
    return _as_int(value, names[0], INT64_MIN, INT64_MAX, "integer id")


def _optional_long(content: Mapping[str, object], *names: str) -> int | None:
    value = _get(content, *names)
    return None if value is None else _as_int(value, names[0], INT64_MIN, INT64_MAX, "integer id")


def _message_id(content: Mapping[str, object], name: str = "messageId") -> int:
    value = content.get(name)
    if value is None:
        raise _bad(name, "is missing")
    # mirai-api-http.md §2: message ids are Int32; out of range → 400
    return _as_int(value, name, INT32_MIN, INT32_MAX, "Int32 message id")


def _int32(content: Mapping[str, object], name: str, default: int) -> int:
    value = content.get(name)
    return default if value is None else _as_int(value, name, INT32_MIN, INT32_MAX, "Int32")


def _epoch(content: Mapping[str, object], names: tuple[str, ...], default: int) -> int:
    value = _get(content, *names)
    if value is None:
        return default
    if isinstance(value, float) and not value.is_integer():
        value = int(value)  # Ariadne sends datetime.timestamp() floats (mirai-api-http.md §3.7)
    return _as_int(value, names[0], INT64_MIN, INT64_MAX, "epoch seconds")


def _bool(content: Mapping[str, object], name: str, default: bool | None) -> bool:
    value = content.get(name)
    if value is None:
        if default is None:
            raise _bad(name, "is missing")
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad(name, f"must be true or false (got {value!r})")


def _str(content: Mapping[str, object], name: str, default: str | None) -> str:
    value = content.get(name)
    if value is None:
        if default is None:
            raise _bad(name, "is missing")
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # lenient like kotlinx isLenient
    raise _bad(name, f"must be a string (got {type(value).__name__})")


def _object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        if value is None:
            raise _bad(field, "is missing (send a JSON object)")
        raise _bad(field, f"must be a JSON object (got {type(value).__name__})")
    return value


# ---------------------------------------------------------------- message chain elements


def _decode_image(
    element: Mapping[str, object], where: str, id_key: str
) -> tuple[str | None, str | None, bytes | None]:
    """``(id, url, data)`` honouring mirai's send priority id > url > path > base64 (§7)."""
    media_id = element.get(id_key)
    if media_id is not None and media_id != "":
        return _str(element, id_key, None), None, None
    url = element.get("url")
    if url is not None and url != "":
        return None, _str(element, "url", None), None
    path = element.get("path")
    if path is not None and path != "":
        # mirai answers a missing local file with code 6 `文件不存在：<path>` (mirai-api-http.md §5.2)
        raise _unsupported(
            f"文件不存在：{path} ({where}.path: the bridge does not share a file system with the framework; "
            "send url or base64 instead)"
        )
    data = element.get("base64")
    if data is not None and data != "":
        if not isinstance(data, str):
            raise _bad(f"{where}.base64", "must be a base64 string")
        try:
            return None, None, base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"{where}.base64", "is not valid base64") from None
    raise _bad(where, f"needs one of {id_key}, url or base64")


def _plain_text_of(chain: object, where: str) -> str:
    """Readable text of a nested chain (Forward nodes): Plain as is, everything else in brackets/urls."""
    parts: list[str] = []
    for segment in _decode_chain(chain, where):
        if isinstance(segment, Text):
            parts.append(segment.text)
        elif isinstance(segment, Mention):
            parts.append(f"<@{segment.user_id}>")
        elif isinstance(segment, MentionAll):
            parts.append("@everyone")
        elif isinstance(segment, Image | Audio):
            parts.append(segment.url or "[media]")
        elif isinstance(segment, Emoji):
            parts.append(f"<{'a' if segment.animated else ''}:{segment.name}:{segment.id}>")
        elif isinstance(segment, Sticker):
            parts.append(f"[{segment.name}]")
    return "".join(parts)


def _decode_mirai_code(code: str) -> list[Segment]:
    """Best-effort mirai code: ``at``/``atall``/``image`` become elements; anything else stays readable text."""
    segments: list[Segment] = []
    position = 0

    def add_text(raw: str) -> None:
        text = _MIRAI_CODE_UNESCAPE_RE.sub(r"\1", raw)
        if text:
            segments.append(Text(text))

    for match in _MIRAI_CODE_RE.finditer(code):
        add_text(code[position : match.start()])
        position = match.end()
        kind = match.group(1).lower()
        args = _MIRAI_CODE_UNESCAPE_RE.sub(r"\1", match.group(2) or "")
        if kind == "at" and args.strip().lstrip("-").isdigit():
            segments.append(Mention(user_id=int(args.strip())))
        elif kind == "atall":
            segments.append(MentionAll())
        elif kind == "image" and args:
            segments.append(Image(id=args))
        else:
            segments.append(Text(match.group(0)))
    add_text(code[position:])
    return segments


def _decode_element(element: object, where: str) -> list[Segment]:
    if not isinstance(element, Mapping):
        raise _bad(where, "must be a message element object")
    kind = element.get("type")
    if not isinstance(kind, str):
        raise _bad(f"{where}.type", "is missing")
    if kind == "Plain":
        return [Text(_str(element, "text", None))] if element.get("text") != "" else []
    if kind == "At":
        return [Mention(user_id=_long(element, "target"))]
    if kind == "AtAll":
        return [MentionAll()]
    if kind in ("Source", "Quote"):
        return []  # ignored on send (mirai-api-http.md §7); the `quote` parameter makes replies
    if kind in ("Image", "FlashImage"):
        # FlashImage: Discord has no self-destructing images; it is sent as an ordinary image.
        image_id, url, data = _decode_image(element, where, "imageId")
        return [Image(id=image_id, url=url, data=data)]
    if kind == "Voice":
        voice_id, url, data = _decode_image(element, where, "voiceId")
        return [Audio(id=voice_id, url=url, data=data)]
    if kind == "Face":
        name = element.get("name")
        if isinstance(name, str):
            match = _EMOJI_RE.fullmatch(name)
            if match:
                return [Emoji(id=int(match.group(3)), name=match.group(2), animated=match.group(1) == "a")]
        # a QQ face has no Discord counterpart: readable text
        label = name if isinstance(name, str) and name else str(element.get("faceId", "?"))
        return [Text(f"[表情:{label}]")]
    if kind == "MarketFace":
        name = _str(element, "name", "")
        match = _STICKER_RE.fullmatch(name)
        if match:
            return [Sticker(id=int(match.group(2)), name=match.group(1))]
        return [Text(f"[{name or '商城表情'}]")]
    if kind == "MiraiCode":
        return _decode_mirai_code(_str(element, "code", None))
    if kind == "Dice":
        value = _int32(element, "value", 0)
        return [Text(f"🎲 {value}")]
    if kind == "MusicShare":
        title = _str(element, "title", "")
        summary = _str(element, "summary", "")
        url = _str(element, "jumpUrl", "") or _str(element, "musicUrl", "")
        text = " - ".join(part for part in (title, summary) if part)
        return [Text(f"🎵 {text}\n{url}".strip() if url else f"🎵 {text}")]
    if kind == "ShortVideo":
        video_url = element.get("videoUrl")
        if isinstance(video_url, str) and video_url:
            return [Text(video_url)]  # Discord embeds the link
        raise _unsupported(f"{where}: ShortVideo without videoUrl cannot be sent to Discord (no QQ video store)")
    if kind == "Forward":
        return _decode_forward(element, where)
    if kind in ("Xml", "Json", "App"):
        raise _unsupported(
            f"{where}: {kind} service cards cannot be rendered on Discord; send Plain text or an Image instead"
        )
    if kind == "Poke":
        raise _unsupported(f"{where}: Discord has no poke (戳一戳)")
    if kind == "File":
        raise _unsupported(f"{where}: File elements cannot be sent (mirai drops them too); send a link instead")
    raise _bad(f"{where}.type", f"is not a mirai message element ({kind!r})")


def _decode_forward(element: Mapping[str, object], where: str) -> list[Segment]:
    """Forward → readable quoted lines ``> name: text`` (Discord has no merged-forward cards)."""
    nodes = element.get("nodeList")
    if not isinstance(nodes, list):
        raise _bad(f"{where}.nodeList", "must be a list of nodes")
    lines: list[str] = []
    for index, node in enumerate(nodes):
        node_where = f"{where}.nodeList[{index}]"
        node_map = _object(node, node_where)
        chain = node_map.get("messageChain")
        if chain is None:
            raise _unsupported(
                f"{node_where}: forward nodes by messageId/messageRef are not supported; "
                "give senderName and messageChain"
            )
        name = _str(node_map, "senderName", "") or str(node_map.get("senderId") or "")
        text = _plain_text_of(chain, f"{node_where}.messageChain")
        lines.append(f"> {name}: {text}" if name else f"> {text}")
    display = element.get("display")
    title = ""
    if isinstance(display, Mapping):
        raw_title = display.get("title")
        title = raw_title if isinstance(raw_title, str) else ""
    header = [f"**{title}**"] if title else []
    return [Text("\n".join(header + lines))] if lines or header else []


def _decode_chain(chain: object, where: str = "messageChain") -> list[Segment]:
    """A mirai ``messageChain`` → envelope segments (raises the module-internal error on bad content)."""
    if not isinstance(chain, list):
        raise _bad(where, "must be a list of message elements")
    segments: list[Segment] = []
    for index, element in enumerate(chain):
        element_where = f"{where}[{index}]"
        try:
            segments.extend(_decode_element(element, element_where))
        except _BadContent as problem:
            if element_where in problem.msg:
                raise
            # a field of the element (``text``, ``target``...): name it with its path in the chain
            prefix = f"{MSG_BAD_INPUT}: "
            msg = problem.msg.replace(prefix, f"{prefix}{element_where}.", 1)
            raise _BadContent(problem.code, msg) from None
    return segments


# ---------------------------------------------------------------- commands


def _send(content: Mapping[str, object], conversation: ConversationRef, via_group: int | None) -> SendMessage:
    segments = _decode_chain(content.get("messageChain"))
    if not segments:
        raise _bad("messageChain", "has nothing Discord can send (it is empty or only Source/Quote)")
    quote_id = content.get("quote")
    quote = None
    if quote_id is not None:
        quote = MessageRef(
            conversation=conversation, local_id=_as_int(quote_id, "quote", INT32_MIN, INT32_MAX, "Int32 message id")
        )
    return SendMessage(conversation=conversation, segments=tuple(segments), quote=quote, via_group=via_group)


def _ambiguous_ref(content: Mapping[str, object]) -> MessageRef:
    # see the module docstring: kind GROUP is a placeholder the store resolves
    target = _long(content, "target", "group", "qq")
    return MessageRef(conversation=ConversationRef.group(target), local_id=_message_id(content))


def _cmd_send_group(content: Mapping[str, object]) -> Command:
    return _send(content, ConversationRef.group(_long(content, "target", "group")), None)


def _cmd_send_friend(content: Mapping[str, object]) -> Command:
    return _send(content, ConversationRef.private(_long(content, "target", "qq")), None)


def _cmd_send_temp(content: Mapping[str, object]) -> Command:
    user = _long(content, "qq", "target")
    group = _long(content, "group")
    return _send(content, ConversationRef.private(user), group)


def _cmd_roaming(content: Mapping[str, object]) -> Command:
    start = _epoch(content, ("timeStart", "start"), 0)
    end = _epoch(content, ("timeEnd", "end"), INT64_MAX)
    if end < start:
        raise _bad("timeEnd", f"({end}) is before timeStart ({start})")
    target = _optional_long(content, "target")
    if target is not None:
        conversation = ConversationRef.group(target)  # ambiguous placeholder, see module docstring
    elif (qq := _optional_long(content, "qq")) is not None:
        conversation = ConversationRef.private(qq)
    elif (group := _optional_long(content, "group")) is not None:
        conversation = ConversationRef.group(group)
    else:
        raise _bad("target", "is missing (give target, qq or group)")
    return GetHistory(conversation=conversation, time_start=start, time_end=end)


def _cmd_latest_members(content: Mapping[str, object]) -> Command:
    raw_ids = content.get("memberIds")
    ids: tuple[int, ...] = ()
    if raw_ids is not None:
        if not isinstance(raw_ids, list):
            raise _bad("memberIds", "must be a list of ids or null")
        ids = tuple(
            _as_int(value, f"memberIds[{i}]", INT64_MIN, INT64_MAX, "integer id") for i, value in enumerate(raw_ids)
        )
    return ListMembers(group_id=_long(content, "target", "group"), fresh=True, user_ids=ids)


def _cmd_mute(content: Mapping[str, object]) -> Command:
    seconds = _int32(content, "time", 0)
    if seconds < 0:
        raise _bad("time", f"must not be negative ({seconds})")
    # the upper clamp (Discord: 28 days) is the Discord adapter's business
    return MuteMember(group_id=_long(content, "target", "group"), user_id=_long(content, "memberId"), seconds=seconds)


def _cmd_kick(content: Mapping[str, object]) -> Command:
    return KickMember(
        group_id=_long(content, "target", "group"),
        user_id=_long(content, "memberId"),
        ban=_bool(content, "block", False),
        reason=_str(content, "msg", ""),
    )


def _cmd_group_config(sub: str, content: Mapping[str, object]) -> Command:
    group_id = _long(content, "target", "group")
    if sub == "get":
        return GetGroupConfig(group_id=group_id)
    config = _object(content.get("config"), "config")
    name = config.get("name")
    mute_all = config.get("muteAll")
    return UpdateGroupConfig(
        group_id=group_id,
        name=None if name is None else _str(config, "name", None),
        mute_all=None if mute_all is None else _bool(config, "muteAll", None),
    )


def _cmd_member_info(sub: str, content: Mapping[str, object]) -> Command:
    group_id = _long(content, "target", "group")
    user_id = _long(content, "memberId")
    if sub == "get":
        return GetMember(group_id=group_id, user_id=user_id)
    info = _object(content.get("info"), "info")
    name = info.get("name")
    title = info.get("specialTitle")
    return UpdateMember(
        group_id=group_id,
        user_id=user_id,
        nickname=None if name is None else _str(info, "name", None),
        special_title=None if title is None else _str(info, "specialTitle", None),
    )


def _cmd_anno_publish(content: Mapping[str, object]) -> Command:
    for key in ("imageUrl", "imagePath", "imageBase64"):
        if content.get(key) not in (None, ""):
            raise _unsupported(
                f"anno_publish: announcements are Discord pins and cannot carry {key}; "
                "send the image as a message and pin it with setEssence"
            )
    return PublishAnnouncement(
        group_id=_long(content, "target", "group", "id"),
        content=_str(content, "content", None),
        pinned=_bool(content, "pinned", False),
    )


_Decoder = Callable[[Mapping[str, object]], Command]

#: commands that read ``content`` (mirai-api-http.md §6.1)
_CONTENT_COMMANDS: dict[str, _Decoder] = {
    "sendGroupMessage": _cmd_send_group,
    "sendFriendMessage": _cmd_send_friend,
    "sendTempMessage": _cmd_send_temp,
    "recall": lambda c: RecallMessage(ref=_ambiguous_ref(c)),
    "messageFromId": lambda c: GetMessage(ref=_ambiguous_ref(c)),
    "setEssence": lambda c: PinMessage(ref=_ambiguous_ref(c)),
    "roamingMessages": _cmd_roaming,
    "memberList": lambda c: ListMembers(group_id=_long(c, "target", "group")),
    "latestMemberList": _cmd_latest_members,
    "friendProfile": lambda c: GetUserProfile(user_id=_long(c, "target", "qq")),
    "userProfile": lambda c: GetUserProfile(user_id=_long(c, "target", "qq")),
    "memberProfile": lambda c: GetUserProfile(user_id=_long(c, "memberId"), group_id=_long(c, "target", "group")),
    "mute": _cmd_mute,
    "unmute": lambda c: UnmuteMember(group_id=_long(c, "target", "group"), user_id=_long(c, "memberId")),
    "kick": _cmd_kick,
    "quit": lambda c: LeaveGroup(group_id=_long(c, "target", "group")),
    "muteAll": lambda c: SetMuteAll(group_id=_long(c, "target", "group"), muted=True),
    "unmuteAll": lambda c: SetMuteAll(group_id=_long(c, "target", "group"), muted=False),
    "memberAdmin": lambda c: SetMemberAdmin(
        group_id=_long(c, "target", "group"), user_id=_long(c, "memberId"), admin=_bool(c, "assign", None)
    ),
    "anno_list": lambda c: ListAnnouncements(
        group_id=_long(c, "id", "target", "group"),
        offset=max(0, _int32(c, "offset", 0)),
        size=max(0, _int32(c, "size", INT32_MAX)),
    ),
    "anno_publish": _cmd_anno_publish,
    "anno_delete": lambda c: DeleteAnnouncement(
        group_id=_long(c, "id", "target", "group"), announcement_id=_str(c, "fid", None)
    ),
    "deleteFriend": lambda c: DeleteFriend(user_id=_long(c, "target", "qq")),
}

#: commands that ignore ``content``
_NO_CONTENT_COMMANDS: dict[str, Command] = {
    "friendList": ListFriends(),
    "groupList": ListGroups(),
    "botProfile": GetBotProfile(),
}

_SUBCOMMANDS: dict[str, Callable[[str, Mapping[str, object]], Command]] = {
    "groupConfig": _cmd_group_config,
    "memberInfo": _cmd_member_info,
}

_NO_FILES = "Discord channels have no group file system"
_UPLOAD = "uploads are not available over websocket (mirai-api-http answers 6 too); put url or base64 into the chain"

#: mirai commands with no Discord meaning → code 6 and why (never a fake success)
UNSUPPORTED_COMMANDS: dict[str, str] = {
    "sendNudge": "Discord has no nudge (戳一戳)",
    "sendOtherClientMessage": "a Discord bot has no other clients to message",
    "sendImageMessage": (
        "the bridge cannot return mirai image ids for it; send Image elements with url via "
        "sendGroupMessage/sendFriendMessage instead"
    ),
    "resp_newFriendRequestEvent": "Discord has no friend requests for bots (the bridge never pushes them)",
    "resp_memberJoinRequestEvent": "Discord has no join requests to answer (the bridge never pushes them)",
    "resp_botInvitedJoinGroupRequestEvent": "Discord bots are added by OAuth, not invited (the bridge never pushes it)",
    "file_list": _NO_FILES,
    "file_info": _NO_FILES,
    "file_mkdir": _NO_FILES,
    "file_delete": _NO_FILES,
    "file_move": _NO_FILES,
    "file_rename": _NO_FILES,
    "file_upload": _UPLOAD,
    "uploadImage": _UPLOAD,
    "uploadVoice": _UPLOAD,
    "uploadShortVideo": _UPLOAD,
    "cmd_execute": "there is no mirai console behind the bridge",
    "cmd_register": "there is no mirai console behind the bridge",
}

_ABOUT = LocalAnswer({"code": 0, "msg": "", "data": {"version": ABOUT_VERSION}})


def decode_command(command: str, sub_command: str | None, content: object) -> Command | LocalAnswer | BridgeQuery:
    """A mirai command → envelope command, a :class:`BridgeQuery`, or a ready :class:`LocalAnswer`.

    Never raises for bad input: every problem becomes a ``LocalAnswer`` with a mirai code and a message
    naming the command and the field.
    """
    if command == "about":
        return _ABOUT
    if command == "botList":
        return BridgeQuery.BOT_LIST
    if command == "sessionInfo":
        return BridgeQuery.SESSION_INFO
    try:
        if command in _NO_CONTENT_COMMANDS:
            return _NO_CONTENT_COMMANDS[command]
        decoder = _CONTENT_COMMANDS.get(command)
        if decoder is not None:
            return decoder(_object(content, "content"))
        sub_decoder = _SUBCOMMANDS.get(command)
        if sub_decoder is not None:
            sub = sub_command.lower() if isinstance(sub_command, str) else ""
            if sub not in ("get", "update"):
                return LocalAnswer.error(
                    CODE_UNSUPPORTED, f"{MSG_UNSUPPORTED}: {command} needs subCommand 'get' or 'update'"
                )
            return sub_decoder(sub, _object(content, "content"))
        why = UNSUPPORTED_COMMANDS.get(command)
        if why is not None:
            return LocalAnswer.error(CODE_UNSUPPORTED, f"{command}: {why}")
        return LocalAnswer.error(CODE_UNSUPPORTED, MSG_UNSUPPORTED)
    except _BadContent as problem:
        return LocalAnswer.error(problem.code, f"{command}: {problem.msg}")


# =========================================================================== results out


def _state() -> dict[str, object]:
    return {"code": 0, "msg": "success"}


def _restful(data: object) -> dict[str, object]:
    return {"code": 0, "msg": "", "data": data}


def _profile(profile: Profile) -> dict[str, object]:
    return {
        "nickname": profile.nickname,
        "email": profile.email,
        "age": profile.age,
        "level": profile.level,
        "sign": profile.sign,
        "sex": profile.sex.value,
    }


def _announcement(announcement: Announcement) -> dict[str, object]:
    return {
        "group": _group(announcement.group),
        "content": announcement.content,
        "senderId": announcement.sender_id,
        "fid": announcement.id,
        "allConfirmed": False,
        "confirmedMembersCount": 0,
        "publicationTime": announcement.published_at,
    }


def encode_result(command: str, result: Result, *, bot_id: int) -> dict[str, object]:
    """The response ``data`` for a successful ``command`` (mirai-api-http.md §6 shapes)."""
    if isinstance(result, Done):
        return _state()
    if isinstance(result, MessageSent):
        # messageId top-level; -1 when no id exists (mirai's own convention, §6.2 Send)
        local_id = result.ref.local_id
        return {"code": 0, "msg": "success", "messageId": local_id if local_id is not None else -1}
    if isinstance(result, MessageFound):
        return _restful(encode_message_event(result.message, bot_id=bot_id))
    if isinstance(result, MessageList):
        return _restful([encode_message_event(m, bot_id=bot_id) for m in result.messages])
    if isinstance(result, FriendList):
        return _restful([_friend(u) for u in result.friends])
    if isinstance(result, GroupList):
        return _restful([_group(g) for g in result.groups])
    if isinstance(result, MemberList):
        return _restful([_member(m) for m in result.members])
    if isinstance(result, MemberFound):
        # bare Member (memberInfo get); Discord has no QQ activity ranks, so `active` stays null
        return _member(result.member)
    if isinstance(result, ProfileFound):
        return _profile(result.profile)
    if isinstance(result, GroupConfig):
        return {
            "name": result.name,
            "confessTalk": False,
            "allowMemberInvite": result.allow_member_invite,
            "autoApprove": False,
            "anonymousChat": False,
            "muteAll": result.mute_all,
        }
    if isinstance(result, AnnouncementList):
        return _restful([_announcement(a) for a in result.announcements])
    if isinstance(result, AnnouncementPublished):
        return _restful(_announcement(result.announcement))
    raise LocalProtocolError(f"{command}: no mirai shape for result {type(result).__name__}")


def encode_failure(failure: CommandFailed) -> dict[str, object]:
    """``CommandFailed`` → ``{"code": N, "msg": "<mirai standard>: <why>"}`` (mirai-api-http.md §5.2)."""
    code, standard = _FAILURE_CODES.get(failure.kind, (CODE_INTERNAL, "internal error"))
    return {"code": code, "msg": f"{standard}: {failure.message}" if failure.message else standard}
