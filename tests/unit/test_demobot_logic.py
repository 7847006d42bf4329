"""The demo bot's pure half (relay/sandbox/demobot_logic.py): reading frames, and what it answers to what."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.sandbox import demobot_logic as logic

GROUP = 5001
ALICE = 6001
BOT = 4242


def message(text: str, *, source: int | None = 10, quote: int | None = None, sender: int = ALICE) -> logic.Event:
    chain: list[dict[str, Any]] = []
    if source is not None:
        chain.append({"type": "Source", "id": source, "time": 1})
    if quote is not None:
        chain.append({"type": "Quote", "id": quote, "senderId": 1, "targetId": GROUP, "groupId": GROUP, "origin": []})
    chain += [{"type": "At", "target": 1, "display": ""}, {"type": "Plain", "text": text}]
    sender_obj = {"id": sender, "memberName": "Alice", "group": {"id": GROUP, "name": "Dev", "permission": "MEMBER"}}
    return logic.Event({"type": "GroupMessage", "messageChain": chain, "sender": sender_obj})


def test_read_frame_sorts_responses_events_raw_states_and_junk() -> None:
    pending = {"demo-1", "7"}
    read = lambda frame: logic.read_frame(frame, pending=pending)  # noqa: E731
    assert read('{"syncId":"demo-1","data":{"code":0}}') == logic.Response("demo-1", {"code": 0})
    assert read('{"syncId":7,"data":{"code":0}}') == logic.Response("7", {"code": 0})  # lenient numeric syncId
    assert read(b'{"syncId":"-1","data":{"type":"BotOnlineEvent","qq":1}}') == logic.Event(
        {"type": "BotOnlineEvent", "qq": 1}
    )
    # an event pushed with another reservedSyncId is still an event
    assert isinstance(read('{"syncId":"x","data":{"type":"GroupMessage"}}'), logic.Event)
    assert read('{"code":1,"msg":"Auth Key错误"}') == logic.RawState(1, "Auth Key错误")
    assert read('{"code":400}') == logic.RawState(400, "")
    junk = [
        "",
        "nope",
        b"\xff",
        "null",
        "[]",
        '{"code":true}',
        '{"syncId":"demo-1"}',
        '{"syncId":"demo-2","data":{"code":0}}',
        '{"syncId":"-1","data":{}}',
        '{"syncId":true,"data":{"code":0}}',
    ]
    for frame in junk:
        assert isinstance(read(frame), logic.Junk), frame


def test_command_frames_carry_every_key_and_fresh_sync_ids() -> None:
    ids = logic.SyncIds()
    first, second = ids.next(), ids.next()
    assert first != second and "-1" not in (first, second)
    frame = json.loads(logic.command_frame(first, "verify", logic.verify_content("k", None)))
    assert frame == {
        "syncId": first,
        "command": "verify",
        "subCommand": None,
        "content": {"verifyKey": "k", "sessionKey": None, "qq": None},
    }
    assert "中" in logic.command_frame("1", "sendGroupMessage", {"messageChain": [logic.plain("中")]})  # not escaped


def test_echo_quotes_the_message_and_keeps_the_text_as_typed() -> None:
    assert logic.reaction_to(message("Echo  Hi  There "), bot_qq=BOT) == logic.Send(
        GROUP, (logic.plain("Hi  There"),), quote=10, why="echo"
    )
    assert logic.reaction_to(message("echo hi", source=None), bot_qq=None) == logic.Send(
        GROUP, (logic.plain("hi"),), quote=None, why="echo"
    )


@pytest.mark.parametrize("text", ["members", "member count", " MEMBERS "])
def test_members_counts(text: str) -> None:
    assert logic.reaction_to(message(text), bot_qq=BOT) == logic.CountMembers(GROUP, quote=10)


def test_recall_needs_a_quote() -> None:
    assert logic.reaction_to(message("recall", quote=9), bot_qq=BOT) == logic.Recall(GROUP, message_id=9, quote=10)
    hint = logic.reaction_to(message("recall"), bot_qq=BOT)
    assert hint == logic.Send(GROUP, (logic.plain(logic.RECALL_HINT),), quote=10, why="recall hint")


def test_help_and_welcome() -> None:
    assert logic.reaction_to(message("help"), bot_qq=BOT) == logic.Send(
        GROUP, (logic.plain(logic.HELP_TEXT),), quote=10, why="help"
    )
    joined = logic.Event(
        {"type": "MemberJoinEvent", "member": {"id": 7, "memberName": "bob", "group": {"id": GROUP, "name": ""}}}
    )
    assert logic.reaction_to(joined, bot_qq=BOT) == logic.Send(
        GROUP, (logic.at(7), logic.plain(" welcome! Say help to see what I can do.")), why="welcome"
    )


@pytest.mark.parametrize(
    "event",
    [
        message("hello"),
        message("echo"),
        message("echo   "),
        message("echoes"),
        message("recall this"),
        message("echo hi", sender=BOT),  # the bot's own message
        logic.Event({"type": "GroupMessage"}),
        logic.Event({"type": "GroupMessage", "sender": {"id": 1, "group": {"id": "x"}}}),
        logic.Event({"type": "MemberJoinEvent", "member": None}),
        logic.Event({"type": "FriendMessage", "messageChain": [{"type": "Plain", "text": "echo hi"}]}),
        logic.Event({"type": "BotOnlineEvent", "qq": BOT}),
    ],
)
def test_anything_else_is_left_alone(event: logic.Event) -> None:
    assert logic.reaction_to(event, bot_qq=BOT) is None


def test_member_summary() -> None:
    def members(*names: str) -> dict[str, Any]:
        return {"code": 0, "msg": "", "data": [{"id": i, "memberName": n} for i, n in enumerate(names, 1)]}

    assert logic.member_summary(members()) == "Nobody here but me."
    assert logic.member_summary({"code": 0}) == "Nobody here but me."
    assert logic.member_summary(members("A")) == "1 member besides me: A."
    assert logic.member_summary(members("A", "")) == "2 members besides me: A, 2."  # no name: the id
    assert logic.member_summary(members(*"ABCDEF")) == "6 members besides me: A, B, C, D, E and 1 more."


def test_results_and_failures() -> None:
    assert logic.code_of({"nickname": "bare profile"}) == 0
    assert logic.code_of({"code": 5, "msg": "指定对象不存在"}) == 5
    assert logic.code_of({"code": "5"}) == -1
    assert logic.describe_failure({"code": 5, "msg": "指定对象不存在"}) == "code 5 (指定对象不存在)"
    assert logic.describe_failure({"code": 500}) == "code 500"
    assert logic.describe_failure(logic.RawState(1, "Auth Key错误")) == "code 1 (Auth Key错误)"
    assert logic.bot_ids({"code": 0, "data": [1, True, "2", 3]}) == [1, 3]
    assert logic.bot_ids({"code": 0}) == []


def test_log_lines() -> None:
    assert logic.describe_event(message("x" * 200)).startswith("GroupMessage in group 5001 from Alice (6001): 'xxx")
    assert len(logic.shorten("x" * 200)) == logic.LOG_TEXT_CHARS + 2  # the quotes
    joined = logic.Event({"type": "MemberJoinEvent", "member": {"id": 7, "memberName": "bob", "group": {"id": 1}}})
    assert logic.describe_event(joined) == "MemberJoinEvent: bob (7) joined group 1"
    assert logic.describe_event(logic.Event({"type": "GroupMessage"})) == "GroupMessage"


def test_log_lines_name_what_else_a_message_holds_and_recalls() -> None:
    """The sandbox's browser test reads these lines: an uploaded image is an Image segment, a delete a recall."""
    chain = [
        {"type": "Source", "id": 9, "time": 1},
        {"type": "Quote", "id": 8, "senderId": 1, "targetId": 5001, "groupId": 5001, "origin": []},
        {"type": "At", "target": 1, "display": ""},
        {"type": "Plain", "text": "look"},
        {"type": "Image", "imageId": "x", "url": "http://127.0.0.1/a.png"},
    ]
    sender = {"id": 6001, "memberName": "Alice", "group": {"id": 5001}}
    line = logic.describe_event(logic.Event({"type": "GroupMessage", "messageChain": chain, "sender": sender}))
    assert line == "GroupMessage in group 5001 from Alice (6001) (quoting message 8): 'look' [At] [Image]"
    recall = {
        "type": "GroupRecallEvent",
        "authorId": 42,
        "messageId": 77,
        "time": 1,
        "group": {"id": 5001, "name": "general", "permission": "ADMINISTRATOR"},
        "operator": {"id": 6001, "memberName": "Alice"},
    }
    described = logic.describe_event(logic.Event(recall))
    assert described == "GroupRecallEvent: message 77 in group 5001 recalled by Alice (6001)"
    by_bot = logic.describe_event(logic.Event({**recall, "operator": None}))
    assert by_bot == "GroupRecallEvent: message 77 in group 5001 recalled by the bot"
