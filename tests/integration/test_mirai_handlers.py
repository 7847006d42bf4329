"""MiraiCommandHandler: decode → CommandService.execute → encode, per command, plus failure paths.

The CommandService here is the next layer (the relay's id-resolving front of Discord); faking it is the point:
it records what it was asked and answers with canned envelope results.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from adapters.mirai.handlers import CommandAdmission, MiraiCommandHandler, PresentedIdentity
from relay.envelope import (
    Announcement,
    AnnouncementList,
    AnnouncementPublished,
    Command,
    ConversationRef,
    DeleteAnnouncement,
    DeleteFriend,
    Done,
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
    KickMember,
    LeaveGroup,
    ListAnnouncements,
    ListFriends,
    ListGroups,
    ListMembers,
    Member,
    MemberFound,
    MemberList,
    Message,
    MessageFound,
    MessageList,
    MessageRef,
    MessageSent,
    MuteMember,
    PinMessage,
    Profile,
    ProfileFound,
    PublishAnnouncement,
    RecallMessage,
    Result,
    Role,
    SendMessage,
    SetMemberAdmin,
    SetMuteAll,
    Text,
    UnmuteMember,
    UpdateGroupConfig,
    UpdateMember,
    User,
)
from relay.errors import CommandFailed, FailureKind

BOT = 900
GROUP = Group(id=222, name="Dev", bot_role=Role.ADMINISTRATOR)
GROUP_JSON = {"id": 222, "name": "Dev", "permission": "ADMINISTRATOR"}
BOB = Member(user_id=111, display_name="Bob", role=Role.MEMBER, group=GROUP)
BOB_JSON = {
    "id": 111,
    "memberName": "Bob",
    "specialTitle": "",
    "permission": "MEMBER",
    "joinTimestamp": 0,
    "lastSpeakTimestamp": 0,
    "muteTimeRemaining": 0,
    "group": GROUP_JSON,
    "active": None,
}
G = ConversationRef.group(222)
STATE = {"code": 0, "msg": "success"}
MSG = Message(
    conversation=G,
    channel_id=222,
    platform_id=10**18,
    local_id=5,
    time=1700000000,
    sender=BOB,
    segments=(Text("hi"),),
    group=GROUP,
)
MSG_JSON = {
    "type": "GroupMessage",
    "messageChain": [{"type": "Source", "id": 5, "time": 1700000000}, {"type": "Plain", "text": "hi"}],
    "sender": BOB_JSON,
}
ANNO = Announcement(group=GROUP, content="c", sender_id=1, id="f1", published_at=2)
ANNO_JSON = {
    "group": GROUP_JSON,
    "content": "c",
    "senderId": 1,
    "fid": "f1",
    "allConfirmed": False,
    "confirmedMembersCount": 0,
    "publicationTime": 2,
}


class Identity:
    bot_id = BOT
    bot_name = "Relay"


class RecordingService:
    """Records every command; answers with the canned result (or raises the canned exception)."""

    def __init__(self, answer: Result | BaseException) -> None:
        self.answer = answer
        self.commands: list[Command] = []

    async def execute(self, command: Command) -> Result:
        self.commands.append(command)
        await trio.lowlevel.checkpoint()
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


SENT = MessageSent(ref=MessageRef(conversation=G, local_id=42, platform_id=7), time=1)

# (command, subCommand, content, expected envelope command, canned result, expected response data)
Case = tuple[str, str | None, object, Command, Result, dict[str, object]]
CASES: list[Case] = [
    (
        "sendGroupMessage",
        None,
        {"target": 222, "messageChain": [{"type": "Plain", "text": "hi"}]},
        SendMessage(conversation=G, segments=(Text("hi"),)),
        SENT,
        {"code": 0, "msg": "success", "messageId": 42},
    ),
    (
        "sendFriendMessage",
        None,
        {"target": 444, "quote": 3, "messageChain": [{"type": "Plain", "text": "hi"}]},
        SendMessage(
            conversation=ConversationRef.private(444),
            segments=(Text("hi"),),
            quote=MessageRef(conversation=ConversationRef.private(444), local_id=3),
        ),
        SENT,
        {"code": 0, "msg": "success", "messageId": 42},
    ),
    (
        "sendTempMessage",
        None,
        {"qq": 444, "group": 222, "messageChain": [{"type": "Plain", "text": "hi"}]},
        SendMessage(conversation=ConversationRef.private(444), segments=(Text("hi"),), via_group=222),
        SENT,
        {"code": 0, "msg": "success", "messageId": 42},
    ),
    (
        "recall",
        None,
        {"target": 222, "messageId": 5},
        RecallMessage(ref=MessageRef(conversation=G, local_id=5)),
        Done(),
        STATE,
    ),
    (
        "messageFromId",
        None,
        {"target": 222, "messageId": 5},
        GetMessage(ref=MessageRef(conversation=G, local_id=5)),
        MessageFound(message=MSG),
        {"code": 0, "msg": "", "data": MSG_JSON},
    ),
    (
        "roamingMessages",
        None,
        {"start": 0, "end": 10, "target": 222},
        GetHistory(conversation=G, time_start=0, time_end=10),
        MessageList(messages=(MSG,)),
        {"code": 0, "msg": "", "data": [MSG_JSON]},
    ),
    (
        "friendList",
        None,
        {},
        ListFriends(),
        FriendList(friends=(User(id=4, name="F"),)),
        {"code": 0, "msg": "", "data": [{"id": 4, "nickname": "F", "remark": ""}]},
    ),
    ("groupList", None, {}, ListGroups(), GroupList(groups=(GROUP,)), {"code": 0, "msg": "", "data": [GROUP_JSON]}),
    (
        "memberList",
        None,
        {"target": 222},
        ListMembers(group_id=222),
        MemberList(members=(BOB,)),
        {"code": 0, "msg": "", "data": [BOB_JSON]},
    ),
    (
        "latestMemberList",
        None,
        {"target": 222, "memberIds": [111]},
        ListMembers(group_id=222, fresh=True, user_ids=(111,)),
        MemberList(members=(BOB,)),
        {"code": 0, "msg": "", "data": [BOB_JSON]},
    ),
    (
        "botProfile",
        None,
        None,
        GetBotProfile(),
        ProfileFound(profile=Profile(nickname="Relay")),
        {"nickname": "Relay", "email": "", "age": 0, "level": 0, "sign": "", "sex": "UNKNOWN"},
    ),
    (
        "friendProfile",
        None,
        {"target": 4},
        GetUserProfile(user_id=4),
        ProfileFound(profile=Profile(nickname="F")),
        {"nickname": "F", "email": "", "age": 0, "level": 0, "sign": "", "sex": "UNKNOWN"},
    ),
    (
        "memberProfile",
        None,
        {"target": 222, "memberId": 111},
        GetUserProfile(user_id=111, group_id=222),
        ProfileFound(profile=Profile(nickname="Bob")),
        {"nickname": "Bob", "email": "", "age": 0, "level": 0, "sign": "", "sex": "UNKNOWN"},
    ),
    (
        "userProfile",
        None,
        {"target": 5},
        GetUserProfile(user_id=5),
        ProfileFound(profile=Profile(nickname="U")),
        {"nickname": "U", "email": "", "age": 0, "level": 0, "sign": "", "sex": "UNKNOWN"},
    ),
    (
        "mute",
        None,
        {"target": 222, "memberId": 111, "time": 60},
        MuteMember(group_id=222, user_id=111, seconds=60),
        Done(),
        STATE,
    ),
    ("unmute", None, {"target": 222, "memberId": 111}, UnmuteMember(group_id=222, user_id=111), Done(), STATE),
    (
        "kick",
        None,
        {"target": 222, "memberId": 111, "block": True, "msg": "bye"},
        KickMember(group_id=222, user_id=111, ban=True, reason="bye"),
        Done(),
        STATE,
    ),
    ("quit", None, {"target": 222}, LeaveGroup(group_id=222), Done(), STATE),
    ("muteAll", None, {"target": 222}, SetMuteAll(group_id=222, muted=True), Done(), STATE),
    ("unmuteAll", None, {"target": 222}, SetMuteAll(group_id=222, muted=False), Done(), STATE),
    (
        "setEssence",
        None,
        {"target": 222, "messageId": 5},
        PinMessage(ref=MessageRef(conversation=G, local_id=5)),
        Done(),
        STATE,
    ),
    (
        "groupConfig",
        "get",
        {"target": 222},
        GetGroupConfig(group_id=222),
        GroupConfig(name="Dev", mute_all=False),
        {
            "name": "Dev",
            "confessTalk": False,
            "allowMemberInvite": False,
            "autoApprove": False,
            "anonymousChat": False,
            "muteAll": False,
        },
    ),
    (
        "groupConfig",
        "update",
        {"target": 222, "config": {"name": "New"}},
        UpdateGroupConfig(group_id=222, name="New"),
        Done(),
        STATE,
    ),
    (
        "memberInfo",
        "get",
        {"target": 222, "memberId": 111},
        GetMember(group_id=222, user_id=111),
        MemberFound(member=BOB),
        BOB_JSON,
    ),
    (
        "memberInfo",
        "update",
        {"target": 222, "memberId": 111, "info": {"name": "B"}},
        UpdateMember(group_id=222, user_id=111, nickname="B"),
        Done(),
        STATE,
    ),
    (
        "memberAdmin",
        None,
        {"target": 222, "memberId": 111, "assign": False},
        SetMemberAdmin(group_id=222, user_id=111, admin=False),
        Done(),
        STATE,
    ),
    (
        "anno_list",
        None,
        {"id": 222},
        ListAnnouncements(group_id=222),
        AnnouncementList(announcements=(ANNO,)),
        {"code": 0, "msg": "", "data": [ANNO_JSON]},
    ),
    (
        "anno_publish",
        None,
        {"target": 222, "content": "c"},
        PublishAnnouncement(group_id=222, content="c"),
        AnnouncementPublished(announcement=ANNO),
        {"code": 0, "msg": "", "data": ANNO_JSON},
    ),
    (
        "anno_delete",
        None,
        {"id": 222, "fid": "f1"},
        DeleteAnnouncement(group_id=222, announcement_id="f1"),
        Done(),
        STATE,
    ),
    ("deleteFriend", None, {"target": 4}, DeleteFriend(user_id=4), Done(), STATE),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
async def test_command_round_trip(case: Case) -> None:
    command, sub, content, envelope, result, expected = case
    service = RecordingService(result)
    handler = MiraiCommandHandler(service, Identity())
    with trio.fail_after(5):
        data = await handler.dispatch(command, sub, content)
    assert service.commands == [envelope]
    assert data == expected


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
async def test_command_failure_is_mapped(case: Case) -> None:
    command, sub, content, envelope, _result, _expected = case
    service = RecordingService(CommandFailed(FailureKind.NOT_FOUND, "nothing with that id"))
    with trio.fail_after(5):
        data = await MiraiCommandHandler(service, Identity()).dispatch(command, sub, content)
    assert data == {"code": 5, "msg": "指定对象不存在: nothing with that id"}
    assert service.commands == [envelope]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (FailureKind.NO_PERMISSION, 10),
        (FailureKind.BOT_MUTED, 20),
        (FailureKind.TOO_LONG, 30),
        (FailureKind.BAD_INPUT, 400),
        (FailureKind.UNSUPPORTED, 6),
        (FailureKind.TIMEOUT, 500),
        (FailureKind.INTERNAL, 500),
    ],
)
async def test_failure_kinds(kind: FailureKind, code: int) -> None:
    service = RecordingService(CommandFailed(kind, "why"))
    data = await MiraiCommandHandler(service, Identity()).dispatch("quit", None, {"target": 1})
    assert data["code"] == code
    assert str(data["msg"]).endswith(": why")


async def test_unexpected_exception_is_500_logged_and_the_handler_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = RecordingService(ZeroDivisionError("division by zero"))
    handler = MiraiCommandHandler(service, Identity())
    with caplog.at_level(logging.ERROR, logger="adapters.mirai.handlers"):
        data = await handler.dispatch("quit", None, {"target": 1})
    assert data == {
        "code": 500,
        "msg": "quit: internal error in the bridge (ZeroDivisionError: division by zero); see the bridge log",
    }
    (record,) = [r for r in caplog.records if r.name == "adapters.mirai.handlers"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    service.answer = Done()
    assert await handler.dispatch("quit", None, {"target": 1}) == STATE


async def test_result_that_does_not_fit_the_command_is_500() -> None:
    service = RecordingService("not a result")  # type: ignore[arg-type]
    data = await MiraiCommandHandler(service, Identity()).dispatch("friendList", None, {})
    assert data["code"] == 500
    assert "no mirai shape for result str" in str(data["msg"])


async def test_cancellation_propagates() -> None:
    class Slow:
        async def execute(self, command: Command) -> Result:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    handler = MiraiCommandHandler(Slow(), Identity())
    with trio.move_on_after(0.01) as scope:
        await handler.dispatch("quit", None, {"target": 1})
    assert scope.cancelled_caught


async def test_local_answers_never_reach_the_service() -> None:
    service = RecordingService(Done())
    handler = MiraiCommandHandler(service, Identity(), session_key="Ab3dE6gH")
    assert await handler.dispatch("about", None, None) == {"code": 0, "msg": "", "data": {"version": "2.10.0"}}
    assert await handler.dispatch("botList", None, None) == {"code": 0, "msg": "", "data": [BOT]}
    assert await handler.dispatch("sessionInfo", None, {}) == {
        "code": 0,
        "msg": "",
        "data": {"sessionKey": "Ab3dE6gH", "qq": {"id": BOT, "nickname": "Relay", "remark": ""}},
    }
    per_connection = handler.for_session("Zz9")
    info = await per_connection.dispatch("sessionInfo", None, {})
    assert info["data"]["sessionKey"] == "Zz9"  # type: ignore[index]
    assert await handler.dispatch("sendNudge", None, {"target": 1, "subject": 2, "kind": "Friend"}) == {
        "code": 6,
        "msg": "sendNudge: Discord has no nudge (戳一戳)",
    }
    assert await handler.dispatch("whatever", None, {}) == {"code": 6, "msg": "指定操作不支持"}
    bad = await handler.dispatch("recall", None, {"target": 1, "messageId": 2**31})
    assert bad["code"] == 400
    assert "messageId" in str(bad["msg"])
    assert service.commands == []


async def test_configured_bot_id_overrides_the_discord_one() -> None:
    handler = MiraiCommandHandler(RecordingService(Done()), Identity(), bot_id=12345)
    assert await handler.dispatch("botList", None, None) == {"code": 0, "msg": "", "data": [12345]}


def test_presented_identity_prefers_the_configured_bot_id() -> None:
    assert (PresentedIdentity(Identity()).bot_id, PresentedIdentity(Identity()).bot_name) == (BOT, "Relay")
    assert (PresentedIdentity(Identity(), 12345).bot_id, PresentedIdentity(Identity(), 12345).bot_name) == (
        12345,
        "Relay",
    )


class GatedService:
    """Records every command and holds it until ``release`` is set."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.release = trio.Event()

    async def execute(self, command: Command) -> Result:
        self.commands.append(command)
        await self.release.wait()
        return Done()


async def test_draining_refuses_new_commands_and_waits_for_those_in_flight(nursery: trio.Nursery) -> None:
    service = GatedService()
    admission = CommandAdmission()
    handler = MiraiCommandHandler(service, Identity(), admission=admission)
    per_connection = handler.for_session("Zz9")  # another connection: same admission
    answers: list[dict[str, object]] = []
    drained = trio.Event()

    async def run_command() -> None:
        answers.append(await handler.dispatch("quit", None, {"target": 1}))

    async def drain() -> None:
        await admission.drain()
        drained.set()

    nursery.start_soon(run_command)
    await trio.testing.wait_all_tasks_blocked()
    assert admission.in_flight == 1
    nursery.start_soon(drain)
    await trio.testing.wait_all_tasks_blocked()
    assert admission.draining and not drained.is_set()

    refused = await per_connection.dispatch("unmuteAll", None, {"target": 1})
    assert refused == {"code": 500, "msg": "unmuteAll: the bridge is shutting down; retry after it restarts"}
    assert len(service.commands) == 1 and admission.in_flight == 1

    service.release.set()
    await drained.wait()
    assert answers == [STATE] and admission.in_flight == 0


async def test_drain_with_nothing_in_flight_returns_at_once() -> None:
    admission = CommandAdmission()
    handler = MiraiCommandHandler(RecordingService(Done()), Identity(), admission=admission)
    assert await handler.dispatch("quit", None, {"target": 1}) == STATE
    await admission.drain()
    assert (admission.in_flight, admission.draining) == (0, True)
