"""Golden tests: envelope events/messages → the exact mirai-api-http JSON (docs/mirai-api-http.md §7–§9)."""

from __future__ import annotations

import json

import pytest

from adapters.mirai.chain import encode_chain
from adapters.mirai.events_out import encode_event_data, encode_event_frame, encode_message_event
from relay.envelope import (
    Audio,
    BotJoinedGroup,
    BotLeftGroup,
    BotRoleChanged,
    BotStatus,
    BotStatusChanged,
    ConversationRef,
    Emoji,
    File,
    Group,
    GroupMuteAllChanged,
    GroupRenamed,
    Image,
    Member,
    MemberJoined,
    MemberLeft,
    MemberMuted,
    MemberNicknameChanged,
    MemberRoleChanged,
    MemberUnmuted,
    Mention,
    MentionAll,
    Message,
    MessageRecalled,
    MessageReceived,
    MessageRef,
    Quote,
    RichContent,
    Role,
    Sticker,
    Text,
    Unsupported,
    User,
)
from relay.errors import LocalProtocolError

BOT = 900
GROUP = Group(id=222, name="Dev", bot_role=Role.ADMINISTRATOR, guild_id=1)
ALICE = Member(
    user_id=111,
    display_name="Alice",
    role=Role.MEMBER,
    group=GROUP,
    joined_at=1600000000,
    last_spoke_at=1700000000,
)
MOD = Member(user_id=333, display_name="Mod", role=Role.OWNER, group=GROUP)

GROUP_JSON = {"id": 222, "name": "Dev", "permission": "ADMINISTRATOR"}
ALICE_JSON = {
    "id": 111,
    "memberName": "Alice",
    "specialTitle": "",
    "permission": "MEMBER",
    "joinTimestamp": 1600000000,
    "lastSpeakTimestamp": 1700000000,
    "muteTimeRemaining": 0,
    "group": GROUP_JSON,
    "active": None,
}
MOD_JSON = {
    "id": 333,
    "memberName": "Mod",
    "specialTitle": "",
    "permission": "OWNER",
    "joinTimestamp": 0,
    "lastSpeakTimestamp": 0,
    "muteTimeRemaining": 0,
    "group": GROUP_JSON,
    "active": None,
}


def group_message(**overrides: object) -> Message:
    fields: dict[str, object] = {
        "conversation": ConversationRef.group(222),
        "channel_id": 222,
        "platform_id": 10**18,
        "local_id": 12345,
        "time": 1700000000,
        "sender": ALICE,
        "segments": (Text("hi"),),
        "group": GROUP,
    }
    fields.update(overrides)
    return Message(**fields)  # type: ignore[arg-type]


def keys(obj: dict[str, object]) -> list[str]:
    return list(obj)


# --------------------------------------------------------------------------- message events


def test_group_message_exact_shape_and_key_order() -> None:
    data = encode_event_data(MessageReceived(message=group_message()), bot_id=BOT)
    assert data == {
        "type": "GroupMessage",
        "messageChain": [{"type": "Source", "id": 12345, "time": 1700000000}, {"type": "Plain", "text": "hi"}],
        "sender": ALICE_JSON,
    }
    assert data is not None
    assert keys(data) == ["type", "messageChain", "sender"]
    assert keys(data["sender"]) == list(ALICE_JSON)  # type: ignore[arg-type]


def test_every_segment_in_order_with_source_first_and_quote_second() -> None:
    quote = Quote(
        ref=MessageRef(conversation=ConversationRef.group(222), local_id=12340, platform_id=5),
        author_id=111,
        origin=(Text("earlier"), Image(url="https://cdn/x.png", filename="x.png")),
    )
    segments = (
        Mention(user_id=111, display="Alice"),
        Text(" hello"),
        MentionAll(),
        MentionAll(here=True),
        Emoji(id=1234567890123456789, name="blob"),
        Emoji(id=42, name="party", animated=True),
        Image(
            id="a1.png",
            url="https://cdn/a1.png",
            filename="a1.png",
            content_type="image/png",
            size=34567,
            width=640,
            height=480,
        ),
        Audio(id="v.ogg", url="https://cdn/v.ogg", duration=3.7),
        File(id="f1", name="notes.txt", size=12, url="https://cdn/notes.txt"),
        Sticker(id=987654321987654321, name="Wave"),
        RichContent(text="Embed title\nbody", title="Embed title"),
        Unsupported(fallback="[poll: best pet?]", what="poll"),
    )
    data = encode_event_data(MessageReceived(message=group_message(segments=segments, quote=quote)), bot_id=BOT)
    assert data is not None
    assert data["messageChain"] == [
        {"type": "Source", "id": 12345, "time": 1700000000},
        {
            "type": "Quote",
            "id": 12340,
            "groupId": 222,
            "senderId": 111,
            "targetId": 222,
            "origin": [
                {"type": "Plain", "text": "earlier"},
                {
                    "type": "Image",
                    "imageId": None,
                    "url": "https://cdn/x.png",
                    "path": None,
                    "base64": None,
                    "width": 0,
                    "height": 0,
                    "size": 0,
                    "imageType": "PNG",
                    "isEmoji": False,
                },
            ],
        },
        {"type": "At", "target": 111, "display": ""},
        {"type": "Plain", "text": " hello"},
        {"type": "AtAll", "target": 0},
        {"type": "AtAll", "target": 0},
        {"type": "Face", "faceId": -1, "name": "<:blob:1234567890123456789>", "isSuperFace": False},
        {"type": "Face", "faceId": -1, "name": "<a:party:42>", "isSuperFace": False},
        {
            "type": "Image",
            "imageId": "a1.png",
            "url": "https://cdn/a1.png",
            "path": None,
            "base64": None,
            "width": 640,
            "height": 480,
            "size": 34567,
            "imageType": "PNG",
            "isEmoji": False,
        },
        {"type": "Voice", "voiceId": "v.ogg", "url": "https://cdn/v.ogg", "path": None, "base64": None, "length": 3},
        # only one stand-alone element per chain (Ariadne rejects more): later ones become readable text
        {"type": "Plain", "text": "[File: notes.txt] https://cdn/notes.txt"},
        {"type": "Plain", "text": "[Sticker: Wave]"},
        {"type": "Plain", "text": "Embed title\nbody"},
        {"type": "Plain", "text": "[poll: best pet?]"},
    ]
    # every element starts with its type
    assert all(next(iter(element)) == "type" for element in data["messageChain"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ((File(id="f1", name="a.txt", size=3),), [{"type": "File", "id": "f1", "name": "a.txt", "size": 3}]),
        (
            (Text("look"), Sticker(id=987654321987654321, name="Wave")),
            [
                {"type": "Plain", "text": "look"},
                {"type": "MarketFace", "id": -1, "name": "<sticker:Wave:987654321987654321>"},
            ],
        ),
        (
            (File(id="1", name="a.txt"), File(id="2", name="b.txt", url="https://cdn/b.txt"), Audio(id="v")),
            [
                {"type": "File", "id": "1", "name": "a.txt", "size": 0},
                {"type": "Plain", "text": "[File: b.txt] https://cdn/b.txt"},
                {"type": "Plain", "text": "[Voice]"},
            ],
        ),
        (
            (Sticker(id=1, name="s"), Sticker(id=2, name="t")),
            [{"type": "MarketFace", "id": -1, "name": "<sticker:s:1>"}, {"type": "Plain", "text": "[Sticker: t]"}],
        ),
    ],
)
def test_at_most_one_stand_alone_element(segments: tuple[object, ...], expected: list[dict[str, object]]) -> None:
    assert encode_chain(segments) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("image/jpeg", "", "JPG"),
        ("", "photo.JPEG", "JPG"),
        ("image/gif", "", "GIF"),
        ("", "a.apng", "APNG"),
        ("image/bmp", "", "BMP"),
        ("image/webp", "a.webp", "UNKNOWN"),
    ],
)
def test_image_type(content_type: str, filename: str, expected: str) -> None:
    (element,) = encode_chain([Image(url="u", content_type=content_type, filename=filename)])
    assert element["imageType"] == expected


def test_quote_with_unknown_local_id_uses_zero() -> None:
    quote = Quote(ref=MessageRef(conversation=ConversationRef.group(222), platform_id=5), author_id=7)
    data = encode_message_event(group_message(quote=quote), bot_id=BOT)
    assert data["messageChain"][1] == {  # type: ignore[index]
        "type": "Quote",
        "id": 0,
        "groupId": 222,
        "senderId": 7,
        "targetId": 222,
        "origin": [],
    }


def test_friend_message_and_quote_target_in_private() -> None:
    friend = User(id=444, name="Bob")
    quote = Quote(
        ref=MessageRef(conversation=ConversationRef.private(444), local_id=3), author_id=BOT, origin=(Text("q"),)
    )
    message = Message(
        conversation=ConversationRef.private(444),
        channel_id=777,
        platform_id=10**18 + 1,
        local_id=4,
        time=1700000001,
        sender=friend,
        segments=(Text("yo"),),
        quote=quote,
    )
    data = encode_event_data(MessageReceived(message=message), bot_id=BOT)
    assert data == {
        "type": "FriendMessage",
        "messageChain": [
            {"type": "Source", "id": 4, "time": 1700000001},
            # the quoted message was the bot's, so it was received by the friend
            {
                "type": "Quote",
                "id": 3,
                "groupId": 0,
                "senderId": BOT,
                "targetId": 444,
                "origin": [{"type": "Plain", "text": "q"}],
            },
            {"type": "Plain", "text": "yo"},
        ],
        "sender": {"id": 444, "nickname": "Bob", "remark": ""},
    }
    other_quote = Quote(ref=MessageRef(conversation=ConversationRef.private(444), local_id=2), author_id=444)
    data = encode_message_event(message.__class__(**{**_fields(message), "quote": other_quote}), bot_id=BOT)
    assert data["messageChain"][1]["targetId"] == BOT  # type: ignore[index]


def _fields(message: Message) -> dict[str, object]:
    import attrs

    return attrs.asdict(message, recurse=False)


def test_sync_messages() -> None:
    bot_member = Member(user_id=BOT, display_name="bot", role=Role.ADMINISTRATOR, group=GROUP)
    group_sync = encode_event_data(
        MessageReceived(message=group_message(sender=bot_member, from_self=True)), bot_id=BOT
    )
    assert group_sync == {
        "type": "GroupSyncMessage",
        "messageChain": [{"type": "Source", "id": 12345, "time": 1700000000}, {"type": "Plain", "text": "hi"}],
        "subject": GROUP_JSON,
    }
    dm = Message(
        conversation=ConversationRef.private(444),
        channel_id=777,
        platform_id=1,
        local_id=9,
        time=5,
        sender=User(id=BOT, name="bot"),
        segments=(Text("x"),),
        from_self=True,
    )
    assert encode_event_data(MessageReceived(message=dm), bot_id=BOT) == {
        "type": "FriendSyncMessage",
        "messageChain": [{"type": "Source", "id": 9, "time": 5}, {"type": "Plain", "text": "x"}],
        "subject": {"id": 444, "nickname": "", "remark": ""},
    }


def test_group_message_from_a_webhook_user_becomes_a_member() -> None:
    data = encode_event_data(MessageReceived(message=group_message(sender=User(id=55, name="Hook"))), bot_id=BOT)
    assert data is not None
    assert data["sender"] == {
        "id": 55,
        "memberName": "Hook",
        "specialTitle": "",
        "permission": "MEMBER",
        "joinTimestamp": 0,
        "lastSpeakTimestamp": 0,
        "muteTimeRemaining": 0,
        "group": GROUP_JSON,
        "active": None,
    }


# --------------------------------------------------------------------------- other events

EVENT_CASES = [
    (
        MessageRecalled(
            ref=MessageRef(conversation=ConversationRef.group(222), local_id=7),
            author_id=111,
            time=1700000100,
            group=GROUP,
            operator=MOD,
        ),
        {
            "type": "GroupRecallEvent",
            "authorId": 111,
            "messageId": 7,
            "time": 1700000100,
            "group": GROUP_JSON,
            "operator": MOD_JSON,
        },
    ),
    (
        MessageRecalled(
            ref=MessageRef(conversation=ConversationRef.group(222), local_id=7), author_id=111, time=1, group=GROUP
        ),
        {"type": "GroupRecallEvent", "authorId": 111, "messageId": 7, "time": 1, "group": GROUP_JSON, "operator": None},
    ),
    (
        MessageRecalled(ref=MessageRef(conversation=ConversationRef.private(444), local_id=8), author_id=444, time=2),
        {"type": "FriendRecallEvent", "authorId": 444, "messageId": 8, "time": 2, "operator": 444},
    ),
    (
        MemberJoined(member=ALICE),
        {"type": "MemberJoinEvent", "member": ALICE_JSON, "invitor": None},
    ),
    (
        MemberJoined(member=ALICE, invitor=MOD),
        {"type": "MemberJoinEvent", "member": ALICE_JSON, "invitor": MOD_JSON},
    ),
    (MemberLeft(member=ALICE), {"type": "MemberLeaveEventQuit", "member": ALICE_JSON}),
    (
        MemberLeft(member=ALICE, kicked=True, operator=MOD),
        {"type": "MemberLeaveEventKick", "member": ALICE_JSON, "operator": MOD_JSON},
    ),
    (
        MemberLeft(member=ALICE, kicked=True),
        {"type": "MemberLeaveEventKick", "member": ALICE_JSON, "operator": None},
    ),
    (
        MemberMuted(member=ALICE, duration=600, operator=MOD),
        {"type": "MemberMuteEvent", "durationSeconds": 600, "member": ALICE_JSON, "operator": MOD_JSON},
    ),
    (
        MemberMuted(member=ALICE, duration=2**40),
        {"type": "MemberMuteEvent", "durationSeconds": 2**31 - 1, "member": ALICE_JSON, "operator": None},
    ),
    (
        MemberUnmuted(member=ALICE, operator=MOD),
        {"type": "MemberUnmuteEvent", "member": ALICE_JSON, "operator": MOD_JSON},
    ),
    (
        MemberNicknameChanged(member=ALICE, old="Al", new="Alice"),
        {"type": "MemberCardChangeEvent", "origin": "Al", "current": "Alice", "member": ALICE_JSON},
    ),
    (
        MemberRoleChanged(member=ALICE, old=Role.MEMBER, new=Role.ADMINISTRATOR),
        {"type": "MemberPermissionChangeEvent", "origin": "MEMBER", "current": "ADMINISTRATOR", "member": ALICE_JSON},
    ),
    (
        GroupRenamed(group=GROUP, old="dev", new="Dev", operator=MOD),
        {"type": "GroupNameChangeEvent", "origin": "dev", "current": "Dev", "group": GROUP_JSON, "operator": MOD_JSON},
    ),
    (
        GroupMuteAllChanged(group=GROUP, old=False, new=True),
        {"type": "GroupMuteAllEvent", "origin": False, "current": True, "group": GROUP_JSON, "operator": None},
    ),
    (
        BotRoleChanged(group=GROUP, old=Role.MEMBER, new=Role.ADMINISTRATOR),
        {"type": "BotGroupPermissionChangeEvent", "origin": "MEMBER", "current": "ADMINISTRATOR", "group": GROUP_JSON},
    ),
    (BotJoinedGroup(group=GROUP), {"type": "BotJoinGroupEvent", "group": GROUP_JSON, "invitor": None}),
    (BotLeftGroup(group=GROUP), {"type": "BotLeaveEventActive", "group": GROUP_JSON}),
    (
        BotLeftGroup(group=GROUP, kicked=True, operator=MOD),
        {"type": "BotLeaveEventKick", "group": GROUP_JSON, "operator": MOD_JSON},
    ),
    (
        BotLeftGroup(group=GROUP, kicked=True),
        {"type": "BotLeaveEventKick", "group": GROUP_JSON, "operator": None},
    ),
    (BotStatusChanged(bot_id=BOT, status=BotStatus.ONLINE), {"type": "BotOnlineEvent", "qq": BOT}),
    (BotStatusChanged(bot_id=BOT, status=BotStatus.OFFLINE_DROPPED), {"type": "BotOfflineEventDropped", "qq": BOT}),
    (BotStatusChanged(bot_id=BOT, status=BotStatus.RELOGIN), {"type": "BotReloginEvent", "qq": BOT}),
]


@pytest.mark.parametrize(("event", "expected"), EVENT_CASES, ids=lambda v: type(v).__name__)
def test_event_exact_shape(event: object, expected: dict[str, object]) -> None:
    data = encode_event_data(event, bot_id=BOT)  # type: ignore[arg-type]
    assert data == expected
    assert data is not None
    assert keys(data) == keys(expected)  # key order as mirai-api-http serializes it


def test_recall_of_a_message_without_mirai_id_is_not_pushed() -> None:
    event = MessageRecalled(ref=MessageRef(conversation=ConversationRef.group(222), platform_id=9), author_id=1, time=1)
    assert encode_event_data(event, bot_id=BOT) is None
    assert encode_event_frame(event, bot_id=BOT, reserved_sync_id="-1") is None


def test_unknown_event_type_is_a_typed_error() -> None:
    with pytest.raises(LocalProtocolError, match="no mirai event for str"):
        encode_event_data("not an event", bot_id=BOT)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- frames


def test_frame_is_compact_with_string_sync_id_and_unescaped_unicode() -> None:
    message = group_message(segments=(Text("你好 🎉"),))
    frame = encode_event_frame(MessageReceived(message=message), bot_id=BOT, reserved_sync_id="-1")
    assert frame is not None
    assert frame.startswith('{"syncId":"-1","data":{"type":"GroupMessage","messageChain":[{"type":"Source"')
    assert "你好 🎉" in frame
    assert ": " not in frame and ", " not in frame.replace("你好 🎉", "")
    parsed = json.loads(frame)
    assert parsed == {"syncId": "-1", "data": encode_event_data(MessageReceived(message=message), bot_id=BOT)}


def test_bot_events_carry_the_presented_qq() -> None:
    event = BotStatusChanged(bot_id=BOT, status=BotStatus.RELOGIN)
    assert encode_event_data(event, bot_id=12345) == {"type": "BotReloginEvent", "qq": 12345}
    assert encode_event_data(event, bot_id=0) == {"type": "BotReloginEvent", "qq": BOT}


def test_frame_with_custom_reserved_sync_id() -> None:
    frame = encode_event_frame(BotStatusChanged(bot_id=BOT, status=BotStatus.ONLINE), bot_id=BOT, reserved_sync_id="ev")
    assert frame == '{"syncId":"ev","data":{"type":"BotOnlineEvent","qq":900}}'


# --------------------------------------------------------------------------- frames are the stdlib's compact JSON

TRICKY = 'quote " backslash \\ newline \n tab \t nul \x00 bell \x07 del \x7f 你好 🎉 \u2028 </script>'


def _frame_messages() -> list[Message]:
    every_segment = (
        Text(TRICKY),
        Mention(user_id=111),
        MentionAll(here=True),
        Emoji(id=10**18, name="blob", animated=True),
        Image(id=TRICKY, url="https://cdn/a.png", content_type="image/png", width=2**40),
        Audio(id="v", url="https://cdn/v.ogg", duration=1.5),
        File(id="f", name=TRICKY, size=3, url="https://cdn/f"),
        Sticker(id=5, name=TRICKY),
        Audio(id="w"),
        RichContent(text=TRICKY),
        Unsupported(fallback=TRICKY),
    )
    tricky_group = Group(id=5, name=TRICKY, bot_role=Role.OWNER)
    tricky_member = Member(
        user_id=7,
        display_name=TRICKY,
        role=Role.ADMINISTRATOR,
        group=tricky_group,
        joined_at=2**40,
        last_spoke_at=-(2**40),
        mute_remaining=3,
        special_title=TRICKY,
    )
    quote = Quote(
        ref=MessageRef(conversation=ConversationRef.group(222), local_id=2), author_id=3, origin=every_segment
    )
    dm = Message(
        conversation=ConversationRef.private(444),
        channel_id=777,
        platform_id=1,
        local_id=9,
        time=5,
        sender=User(id=444, name=TRICKY),
        segments=every_segment,
    )
    return [
        group_message(),
        group_message(segments=every_segment, quote=quote, time=2**40),
        group_message(segments=(), sender=tricky_member, group=tricky_group),
        group_message(sender=User(id=55, name=TRICKY), group=None),
        group_message(from_self=True, group=tricky_group),
        dm,
        Message(**{**_fields(dm), "from_self": True}),  # type: ignore[arg-type]
        Message(**{**_fields(dm), "sender": tricky_member}),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("message", _frame_messages(), ids=lambda m: f"{m.conversation.kind.value}-{m.local_id}")
@pytest.mark.parametrize("sync_id", ["-1", 'we"ird'])
def test_message_frames_equal_the_stdlib_compact_json(message: Message, sync_id: str) -> None:
    frame = encode_event_frame(MessageReceived(message=message), bot_id=BOT, reserved_sync_id=sync_id)
    data = encode_event_data(MessageReceived(message=message), bot_id=BOT)
    expected = (
        '{"syncId":'
        + json.dumps(sync_id, ensure_ascii=False)
        + ',"data":'
        + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        + "}"
    )
    assert frame == expected  # orjson writes byte-identical text, key order included


def test_a_lone_surrogate_from_discord_still_makes_a_valid_utf8_frame() -> None:
    # Discord JSON may escape half a surrogate pair ("\\ud83d"); json.loads keeps it, UTF-8 cannot encode it
    message = group_message(segments=(Text("half \ud83d pair, 你好"),))
    frame = encode_event_frame(MessageReceived(message=message), bot_id=BOT, reserved_sync_id="-1")
    assert frame is not None
    frame.encode()  # sendable as a websocket text frame
    assert json.loads(frame)["data"]["messageChain"][1] == {"type": "Plain", "text": "half \ud83d pair, 你好"}
