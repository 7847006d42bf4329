"""The stored-message row codec: one ``messages_map`` row ⇄ a :class:`StoredMessage` (pure; no SQLite, no trio).

A row is eight columns (:data:`COLUMNS`): the ids and time the store looks rows up by, and a JSON ``payload``
with what else is known about the message (segments, sender, group, quote, from_self). The payload format is
cattrs' unstructured form of the envelope classes, tagged with ``kind`` (:data:`segment_converter`), and never
changes shape: old files keep loading, and a file written now stays readable by earlier versions. The encoding
is the message store flush's Python work (it runs on the event loop, see
:meth:`relay.storage.store.MessageStore.take_batch`), so the common types are written by hand-built dict
builders that tests hold equal to the converter's output.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
import cattrs
from cattrs.strategies import configure_tagged_union

from relay import fastjson
from relay.envelope import (
    Audio,
    ConversationKind,
    ConversationRef,
    Emoji,
    File,
    Group,
    Image,
    Member,
    Mention,
    MentionAll,
    Message,
    MessageRef,
    Quote,
    RichContent,
    Segment,
    Sticker,
    Text,
    Unsupported,
    User,
)
from relay.errors import LocalProtocolError

log = logging.getLogger(__name__)

#: the columns of a ``messages_map`` row, in the order :func:`from_row` reads and :func:`encode_batch` binds them
COLUMNS = "conversation_id, local_id, conversation_kind, channel_id, platform_id, author_id, time, payload"
#: values bound per row
COLUMN_COUNT = 8
#: one messages_map row: (conversation_id, local_id, kind, channel_id, platform_id, author_id, time, payload)
Row = tuple[int, int, str, int, int, int, int, str]


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    # Outbound media bytes are never persisted (could be megabytes); a stored image keeps its id/url.
    converter.register_unstructure_hook(bytes, lambda _value: None)
    converter.register_structure_hook(bytes, lambda _value, _type: None)
    segment_types = (Text, Mention, MentionAll, Emoji, Image, Audio, File, Sticker, RichContent, Unsupported)
    configure_tagged_union(Segment, converter, tag_name="kind", tag_generator=lambda cls: cls.__name__)
    configure_tagged_union(Member | User, converter, tag_name="kind", tag_generator=lambda cls: cls.__name__)
    if set(Segment.__args__) != set(segment_types):
        raise LocalProtocolError("relay/storage/rows.py: list every envelope Segment type in _make_converter")
    return converter


#: the row codec's cattrs converter for envelope segments / senders (relay/ may not import adapter codecs)
segment_converter = _make_converter()


@attrs.frozen(kw_only=True)
class StoredMessage:
    """One mapping: the mirai id of a Discord message and what is known about the message."""

    conversation: ConversationRef
    local_id: int
    channel_id: int
    platform_id: int
    author_id: int
    time: int
    segments: tuple[Segment, ...] = ()
    sender: Member | User | None = None
    group: Group | None = None
    quote: Quote | None = None
    from_self: bool = False

    @property
    def ref(self) -> MessageRef:
        return MessageRef(
            conversation=self.conversation,
            local_id=self.local_id,
            platform_id=self.platform_id,
            channel_id=self.channel_id,
        )

    def to_message(self) -> Message:
        """Rebuild the envelope message (sender falls back to a bare user when it was never known)."""
        sender = self.sender if self.sender is not None else User(id=self.author_id, name="")
        return Message(
            conversation=self.conversation,
            channel_id=self.channel_id,
            platform_id=self.platform_id,
            local_id=self.local_id,
            time=self.time,
            sender=sender,
            segments=self.segments,
            quote=self.quote,
            from_self=self.from_self,
            group=self.group,
        )


def _check_fields(cls: type, expected: tuple[str, ...]) -> tuple[str, ...]:
    # The hand-written fast paths below name every field; a field added to the envelope must be added there
    # too, or it would silently vanish from recorded messages / stored rows. Fail at import instead.
    names = tuple(f.name for f in attrs.fields(cls))
    if set(names) != set(expected):
        raise LocalProtocolError(f"relay/storage: update the {cls.__name__} fast paths to its fields {names}")
    return names


#: every Message field, named in relay.storage.store.MessageStore.record (attrs.evolve re-reads the class per call)
MESSAGE_FIELDS = _check_fields(
    Message,
    (
        "conversation",
        "channel_id",
        "platform_id",
        "local_id",
        "time",
        "sender",
        "segments",
        "quote",
        "from_self",
        "group",
    ),
)
_check_fields(
    Member,
    (
        "user_id",
        "display_name",
        "role",
        "group",
        "joined_at",
        "last_spoke_at",
        "mute_remaining",
        "special_title",
        "is_bot",
    ),
)
_check_fields(User, ("id", "name", "username", "is_bot", "avatar_url"))
_check_fields(Group, ("id", "name", "bot_role", "guild_id"))
_check_fields(Text, ("text",))

SEGMENTS_TYPE = tuple[Segment, ...]
SENDER_TYPE = Member | User
#: stdlib encoder for what orjson refuses (integers beyond 64 bits, lone surrogates): ASCII output, so a lone
#: surrogate becomes an escape that SQLite's UTF-8 text and json.loads both accept
_JSON_FALLBACK = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


# The dict builders below produce exactly what segment_converter.unstructure produces for these types
# (tests/unit/test_store*.py check), at a fraction of the cost: the converter plus json.dumps took ~15 µs a row,
# all of it holding the GIL in the flusher thread while the trio thread waits to parse the next event.


#: id(group) → its unstructured form, for one batch: a message's group is usually its sender's group too, and
#: consecutive messages share it. Keyed by identity (hashing a frozen Group costs more than unstructuring it);
#: valid only while the batch keeps every group alive, so each flush starts a new one.
_GroupMemo = dict[int, dict[str, Any]]


def _group_dict(group: Group, memo: _GroupMemo | None = None) -> dict[str, Any]:
    if memo is not None:
        found = memo.get(id(group))
        if found is not None:
            return found
    # _value_, not .value: the enum property is a Python-level descriptor call (~0.3 µs)
    unstructured = {"id": group.id, "name": group.name, "bot_role": group.bot_role._value_, "guild_id": group.guild_id}
    if memo is not None:
        memo[id(group)] = unstructured
    return unstructured


def _sender_dict(sender: Member | User, memo: _GroupMemo | None = None) -> dict[str, Any]:
    if type(sender) is Member:
        return {
            "user_id": sender.user_id,
            "display_name": sender.display_name,
            "role": sender.role._value_,
            "group": _group_dict(sender.group, memo),
            "joined_at": sender.joined_at,
            "last_spoke_at": sender.last_spoke_at,
            "mute_remaining": sender.mute_remaining,
            "special_title": sender.special_title,
            "is_bot": sender.is_bot,
            "kind": "Member",
        }
    if type(sender) is User:
        return {
            "id": sender.id,
            "name": sender.name,
            "username": sender.username,
            "is_bot": sender.is_bot,
            "avatar_url": sender.avatar_url,
            "kind": "User",
        }
    return segment_converter.unstructure(sender, SENDER_TYPE)  # type: ignore[no-any-return]  # a subclass


def _sender_json(sender: Member | User) -> str:
    """A sender as its payload JSON (tests compare the fast path with the converter through it)."""
    return fastjson.dumps(_sender_dict(sender)).decode()


def _unstructure_segments(segments: tuple[Segment, ...]) -> Any:
    # Plain text is most of the traffic
    if len(segments) == 1:
        only = segments[0]
        if type(only) is Text:
            return [{"text": only.text, "kind": "Text"}]
    elif all(type(segment) is Text for segment in segments):
        return [{"text": s.text, "kind": "Text"} for s in segments]  # type: ignore[union-attr]
    return segment_converter.unstructure(segments, SEGMENTS_TYPE)


#: what a row's payload is built from: a recorded message (pending) or a reference-only / sent-message row
Content = Message | StoredMessage


def _payload_object(content: Content, memo: _GroupMemo | None = None) -> dict[str, Any]:
    """The row's payload: ``{"segments", "sender", "group", "quote", "from_self"}`` (read by from_row)."""
    sender = content.sender
    group = content.group
    quote = content.quote
    return {
        "segments": _unstructure_segments(content.segments),
        "sender": None if sender is None else _sender_dict(sender, memo),
        "group": None if group is None else _group_dict(group, memo),
        "quote": None if quote is None else segment_converter.unstructure(quote, Quote),
        "from_self": content.from_self,
    }


def _has_float(segments: tuple[Segment, ...]) -> bool:
    # orjson writes a NaN or infinite float as null, which would not load back (the stdlib writes NaN, which
    # it reads); Audio.duration is the envelope's only float
    if len(segments) == 1:  # most messages: skip the generator
        return type(segments[0]) is Audio
    return any(type(segment) is Audio for segment in segments)


def payload(content: Content, memo: _GroupMemo | None = None) -> str:
    """The row's JSON payload text (the format every earlier version wrote too; see _payload_object)."""
    data = _payload_object(content, memo)
    quote = content.quote
    if _has_float(content.segments) or (quote is not None and _has_float(quote.origin)):
        return _JSON_FALLBACK.encode(data)
    try:
        return fastjson.dumps(data).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate
        return _JSON_FALLBACK.encode(data)


def _safe_payload(content: Content, memo: _GroupMemo | None = None) -> str:
    """The row payload; a segment the converter cannot handle must not wedge every later flush."""
    try:
        return payload(content, memo)
    except (TypeError, ValueError, cattrs.BaseValidationError):
        log.exception("message %d: content not storable; keeping the id mapping only", content.platform_id)
        return payload(StoredMessage(**{**_stored_fields(content), "segments": (), "quote": None}))


def _author_id(content: Content) -> int:
    if type(content) is StoredMessage:
        return content.author_id
    sender = content.sender
    return sender.user_id if isinstance(sender, Member) else sender.id  # type: ignore[union-attr]


def _stored_fields(content: Content) -> dict[str, Any]:
    return {
        "conversation": content.conversation,
        "local_id": content.local_id,
        "channel_id": content.channel_id,
        "platform_id": content.platform_id,
        "author_id": _author_id(content),
        "time": content.time,
        "segments": content.segments,
        "sender": content.sender,
        "group": content.group,
        "quote": content.quote,
        "from_self": content.from_self,
    }


def stored(content: Content) -> StoredMessage:
    """``content`` as a :class:`StoredMessage` (a recorded message is converted; a stored one is returned)."""
    return content if type(content) is StoredMessage else StoredMessage(**_stored_fields(content))


def _loads(payload: str | bytes) -> Any:
    try:
        return fastjson.loads(payload)
    except ValueError:  # stricter than the stdlib (lone surrogate escapes, NaN): let it decide
        return json.loads(payload)


def from_row(row: Row) -> StoredMessage:
    """Decode one ``messages_map`` row (:data:`COLUMNS` order)."""
    conversation_id, local_id, kind, channel_id, platform_id, author_id, time, text = row
    data = _loads(text)
    segments = data.get("segments") or ()
    sender = data.get("sender")
    group = data.get("group")
    quote = data.get("quote")
    return StoredMessage(
        conversation=ConversationRef(ConversationKind(kind), conversation_id),
        local_id=local_id,
        channel_id=channel_id,
        platform_id=platform_id,
        author_id=author_id,
        time=time,
        segments=segment_converter.structure(segments, SEGMENTS_TYPE),
        sender=None if sender is None else segment_converter.structure(sender, SENDER_TYPE),  # type: ignore[arg-type]
        group=None if group is None else segment_converter.structure(group, Group),
        quote=None if quote is None else segment_converter.structure(quote, Quote),
        from_self=bool(data.get("from_self", False)),
    )


#: a flushed cache entry: (conversation_id, local_id, channel_id, platform_id, time) — what the event path,
#: eviction and prune need. Only ints, so the garbage collector stops tracking it (a full collection over
#: 10,000 cached object graphs took ~17 ms, a paced-latency p99 spike), and no payload (~700 bytes of RSS).
Flushed = tuple[int, int, int, int, int]


def flushed_entry(row: Row) -> Flushed:
    """The cache entry of a row read back from the file."""
    return (row[0], row[1], row[3], row[4], row[6])


#: SQLite's INTEGER range (a larger Python int raises OverflowError when bound)
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def fits_int64(*values: int) -> bool:
    """Whether SQLite can store every one of ``values`` as an INTEGER."""
    return all(INT64_MIN <= value <= INT64_MAX for value in values)


def encode_batch(batch: list[Content]) -> tuple[list[object], list[Flushed], list[Content]]:
    """The bound parameters of ``batch``'s rows (eight a row, in :data:`COLUMNS` order), their cache entries, and
    the rows left out because an id or the time does not fit SQLite's 64-bit integers (logged at WARNING: one such
    value must not fail the whole batch's transaction; the Discord edge refuses such snowflakes anyway).

    Flat rather than a tuple per row: this loop is the flusher's GIL-holding work (one turn per relayed message),
    so it builds nothing the statement does not need.
    """
    params: list[object] = []
    flushed: list[Flushed] = []
    skipped: list[Content] = []
    memo: _GroupMemo = {}  # the batch keeps every group alive until this returns
    for content in batch:
        conversation = content.conversation
        conversation_id = conversation.id
        local_id = content.local_id
        channel_id = content.channel_id
        platform_id = content.platform_id
        time = content.time
        author_id = _author_id(content)
        # one shift for the six values: non-zero only for a negative value or one of 2**63 or more (rare)
        if (conversation_id | local_id | channel_id | platform_id | author_id | time) >> 63 and not fits_int64(
            conversation_id, local_id, channel_id, platform_id, author_id, time
        ):
            log.warning(
                "message store: not storing message %s of conversation %s: an id or its time is beyond SQLite's "
                "64-bit integers (it keeps its id %d until the bridge restarts)",
                platform_id,
                conversation_id,
                local_id,
            )
            skipped.append(content)
            continue
        params += (
            conversation_id,
            local_id,
            conversation.kind._value_,
            channel_id,
            platform_id,
            author_id,
            time,
            _safe_payload(content, memo),
        )
        # a group's channel id equals its conversation id: share the int object (32 bytes a cached entry)
        shared_channel = conversation_id if channel_id == conversation_id else channel_id
        flushed.append((conversation_id, local_id, shared_channel, platform_id, time))
    return params, flushed, skipped
