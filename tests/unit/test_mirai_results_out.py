"""Envelope results / failures → the exact mirai response ``data`` shapes (docs/mirai-api-http.md §5.2, §6.2)."""

from __future__ import annotations

import pytest

from adapters.mirai.commands_in import BridgeQuery, answer_query
from adapters.mirai.results_out import encode_failure, encode_result
from relay.envelope import (
    Announcement,
    AnnouncementList,
    AnnouncementPublished,
    ConversationRef,
    Done,
    FriendList,
    Group,
    GroupConfig,
    GroupList,
    Member,
    MemberFound,
    MemberList,
    Message,
    MessageFound,
    MessageList,
    MessageRef,
    MessageSent,
    Profile,
    ProfileFound,
    Role,
    Sex,
    Text,
    User,
)
from relay.errors import CommandFailed, FailureKind, LocalProtocolError

BOT = 900
GROUP = Group(id=222, name="Dev", bot_role=Role.OWNER)
GROUP_JSON = {"id": 222, "name": "Dev", "permission": "OWNER"}
BOB = Member(user_id=111, display_name="Bob", role=Role.ADMINISTRATOR, group=GROUP, joined_at=5, mute_remaining=60)
BOB_JSON = {
    "id": 111,
    "memberName": "Bob",
    "specialTitle": "",
    "permission": "ADMINISTRATOR",
    "joinTimestamp": 5,
    "lastSpeakTimestamp": 0,
    "muteTimeRemaining": 60,
    "group": GROUP_JSON,
    "active": None,
}
ANNO = Announcement(group=GROUP, content="rules", sender_id=111, id="998877", published_at=1645085843)
ANNO_JSON = {
    "group": GROUP_JSON,
    "content": "rules",
    "senderId": 111,
    "fid": "998877",
    "allConfirmed": False,
    "confirmedMembersCount": 0,
    "publicationTime": 1645085843,
}


def message(local_id: int, text: str, *, sender: Member | User = BOB, from_self: bool = False) -> Message:
    return Message(
        conversation=ConversationRef.group(222),
        channel_id=222,
        platform_id=10**17 + local_id,
        local_id=local_id,
        time=1700000000 + local_id,
        sender=sender,
        segments=(Text(text),),
        group=GROUP,
        from_self=from_self,
    )


def group_message_json(local_id: int, text: str, sender: dict[str, object] = BOB_JSON) -> dict[str, object]:
    return {
        "type": "GroupMessage",
        "messageChain": [
            {"type": "Source", "id": local_id, "time": 1700000000 + local_id},
            {"type": "Plain", "text": text},
        ],
        "sender": sender,
    }


SENT = MessageSent(ref=MessageRef(conversation=ConversationRef.group(222), local_id=41), time=1)

RESULT_CASES: list[tuple[str, object, dict[str, object]]] = [
    ("sendGroupMessage", SENT, {"code": 0, "msg": "success", "messageId": 41}),
    ("sendFriendMessage", SENT, {"code": 0, "msg": "success", "messageId": 41}),
    (
        "sendTempMessage",
        MessageSent(ref=MessageRef(conversation=ConversationRef.private(1), platform_id=5), time=1),
        {"code": 0, "msg": "success", "messageId": -1},
    ),
    ("recall", Done(), {"code": 0, "msg": "success"}),
    ("mute", Done(), {"code": 0, "msg": "success"}),
    (
        "messageFromId",
        MessageFound(message=message(3, "x")),
        {"code": 0, "msg": "", "data": group_message_json(3, "x")},
    ),
    (
        # the bot's own message comes back as a GroupMessage with the bot as sender, never a sync message
        "messageFromId",
        MessageFound(
            message=message(
                4, "mine", sender=Member(user_id=BOT, display_name="bot", role=Role.OWNER, group=GROUP), from_self=True
            )
        ),
        {
            "code": 0,
            "msg": "",
            "data": group_message_json(
                4,
                "mine",
                {
                    "id": BOT,
                    "memberName": "bot",
                    "specialTitle": "",
                    "permission": "OWNER",
                    "joinTimestamp": 0,
                    "lastSpeakTimestamp": 0,
                    "muteTimeRemaining": 0,
                    "group": GROUP_JSON,
                    "active": None,
                },
            ),
        },
    ),
    (
        "roamingMessages",
        MessageList(messages=(message(1, "a"), message(2, "b"))),
        {"code": 0, "msg": "", "data": [group_message_json(1, "a"), group_message_json(2, "b")]},
    ),
    ("roamingMessages", MessageList(messages=()), {"code": 0, "msg": "", "data": []}),
    (
        "friendList",
        FriendList(friends=(User(id=444, name="Al"),)),
        {"code": 0, "msg": "", "data": [{"id": 444, "nickname": "Al", "remark": ""}]},
    ),
    ("groupList", GroupList(groups=(GROUP,)), {"code": 0, "msg": "", "data": [GROUP_JSON]}),
    ("memberList", MemberList(members=(BOB,)), {"code": 0, "msg": "", "data": [BOB_JSON]}),
    ("latestMemberList", MemberList(members=()), {"code": 0, "msg": "", "data": []}),
    ("memberInfo", MemberFound(member=BOB), BOB_JSON),
    (
        "botProfile",
        ProfileFound(profile=Profile(nickname="bot", sex=Sex.UNKNOWN)),
        {"nickname": "bot", "email": "", "age": 0, "level": 0, "sign": "", "sex": "UNKNOWN"},
    ),
    (
        "memberProfile",
        ProfileFound(profile=Profile(nickname="Bob", age=18, level=1, sign="hi", sex=Sex.MALE)),
        {"nickname": "Bob", "email": "", "age": 18, "level": 1, "sign": "hi", "sex": "MALE"},
    ),
    (
        "groupConfig",
        GroupConfig(name="Dev", mute_all=True),
        {
            "name": "Dev",
            "confessTalk": False,
            "allowMemberInvite": False,
            "autoApprove": False,
            "anonymousChat": False,
            "muteAll": True,
        },
    ),
    ("anno_list", AnnouncementList(announcements=(ANNO,)), {"code": 0, "msg": "", "data": [ANNO_JSON]}),
    ("anno_publish", AnnouncementPublished(announcement=ANNO), {"code": 0, "msg": "", "data": ANNO_JSON}),
]


@pytest.mark.parametrize(("command", "result", "expected"), RESULT_CASES, ids=lambda v: str(v)[:30])
def test_result_shape(command: str, result: object, expected: dict[str, object]) -> None:
    data = encode_result(command, result, bot_id=BOT)  # type: ignore[arg-type]
    assert data == expected
    assert list(data) == list(expected)


def test_unknown_result_is_a_typed_error() -> None:
    with pytest.raises(LocalProtocolError, match="friendList: no mirai shape for result str"):
        encode_result("friendList", "nope", bot_id=BOT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "code", "standard"),
    [
        (FailureKind.NOT_FOUND, 5, "指定对象不存在"),
        (FailureKind.NO_PERMISSION, 10, "无操作权限"),
        (FailureKind.BOT_MUTED, 20, "Bot被禁言"),
        (FailureKind.TOO_LONG, 30, "消息过长"),
        (FailureKind.BAD_INPUT, 400, "无效参数"),
        (FailureKind.UNSUPPORTED, 6, "指定操作不支持"),
        (FailureKind.TIMEOUT, 500, "timed out"),
        (FailureKind.INTERNAL, 500, "internal error"),
    ],
)
def test_failure_codes(kind: FailureKind, code: int, standard: str) -> None:
    assert encode_failure(CommandFailed(kind, "message 7 is not in group 222")) == {
        "code": code,
        "msg": f"{standard}: message 7 is not in group 222",
    }
    assert encode_failure(CommandFailed(kind, "")) == {"code": code, "msg": standard}


def test_bot_list_and_session_info() -> None:
    assert answer_query(BridgeQuery.BOT_LIST, bot_id=BOT, bot_name="b", session_key="k") == {
        "code": 0,
        "msg": "",
        "data": [BOT],
    }
    assert answer_query(BridgeQuery.SESSION_INFO, bot_id=BOT, bot_name="Relay", session_key="Ab3dE6gH") == {
        "code": 0,
        "msg": "",
        "data": {"sessionKey": "Ab3dE6gH", "qq": {"id": BOT, "nickname": "Relay", "remark": ""}},
    }
