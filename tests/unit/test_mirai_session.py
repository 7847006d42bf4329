"""The reverse-ws session state machine, driven with frames (pure: no trio, no sockets)."""

from __future__ import annotations

import json
import random

import pytest

from adapters.mirai.session import (
    Execute,
    FrameRejected,
    Ignored,
    MiraiSession,
    SendFrame,
    SessionState,
    Verified,
)

BOT = 123456789
KEY = "verify-key"


def make(*, single_mode: bool = False, enable_verify: bool = True, reserved: str = "-1") -> MiraiSession:
    return MiraiSession(
        verify_key=KEY,
        enable_verify=enable_verify,
        single_mode=single_mode,
        reserved_sync_id=reserved,
        max_frame_bytes=4096,
        rng=random.Random(7),
    )


def frame(command: str, content: object = None, sync_id: object = "1", **extra: object) -> str:
    return json.dumps({"syncId": sync_id, "command": command, "content": content, **extra})


def verify_frame(key: object = KEY, qq: object = BOT) -> str:
    return frame("verify", {"verifyKey": key, "sessionKey": None, "qq": qq}, sync_id="#")


def sent(actions: list[object]) -> list[object]:
    return [json.loads(a.text) for a in actions if isinstance(a, SendFrame)]


@pytest.mark.parametrize("qq", [BOT, str(BOT), None])
def test_verify_with_number_string_or_missing_qq(qq: object) -> None:
    session = make()
    content: dict[str, object] = {"verifyKey": KEY, "sessionKey": None}
    if qq is not None:
        content["qq"] = qq
    actions = session.receive(frame("verify", content, sync_id="#"), bot_id=BOT)
    reply, online = sent(actions)
    assert reply["syncId"] == "#"
    assert reply["data"]["code"] == 0
    key = reply["data"]["session"]
    assert len(key) == 8 and key.isalnum()
    assert online == {"syncId": "-1", "data": {"type": "BotOnlineEvent", "qq": BOT}}
    assert isinstance(actions[-1], Verified)
    assert session.state is SessionState.VERIFIED


def test_session_keys_come_from_the_injected_rng() -> None:
    first = sent(make().receive(verify_frame(), bot_id=BOT))[0]["data"]["session"]
    second = sent(make().receive(verify_frame(), bot_id=BOT))[0]["data"]["session"]
    assert first == second  # same seed, same key: no hidden randomness


def test_reserved_sync_id_is_configurable_and_always_a_string() -> None:
    online = sent(make(reserved="-2").receive(verify_frame(), bot_id=BOT))[1]
    assert online["syncId"] == "-2"


def test_wrong_key_gets_raw_code_1_and_the_session_can_retry() -> None:
    session = make()
    assert sent(session.receive(verify_frame(key="nope"), bot_id=BOT)) == [{"code": 1, "msg": "Auth Key错误"}]
    assert session.state is SessionState.AWAITING_VERIFY
    assert sent(session.receive(verify_frame(), bot_id=BOT))[0]["data"]["code"] == 0


def test_verify_disabled_accepts_any_key() -> None:
    assert sent(make(enable_verify=False).receive(verify_frame(key=None), bot_id=BOT))[0]["data"]["code"] == 0


def test_wrong_qq_is_an_unknown_bot() -> None:
    session = make()
    assert sent(session.receive(verify_frame(qq=1), bot_id=BOT)) == [{"code": 2, "msg": "指定Bot不存在"}]
    assert session.state is SessionState.AWAITING_VERIFY


def test_single_mode_ignores_qq_and_uses_single_session() -> None:
    reply = sent(make(single_mode=True).receive(verify_frame(qq=1), bot_id=BOT))[0]
    assert reply == {"syncId": "#", "data": {"code": 0, "session": "SINGLE_SESSION"}}


def test_unusable_verify_content_is_code_1() -> None:
    assert sent(make().receive(frame("verify", [1], sync_id="#"), bot_id=BOT)) == [{"code": 1, "msg": "Auth Key错误"}]


def test_about_and_bot_list_before_verify() -> None:
    session = make()
    assert sent(session.receive(frame("about", sync_id="a"), bot_id=BOT)) == [
        {"syncId": "a", "data": {"code": 0, "msg": "", "data": {"version": "2.10.0"}}}
    ]
    assert sent(session.receive(frame("botList", sync_id=5), bot_id=BOT)) == [
        {"syncId": "5", "data": {"code": 0, "msg": "", "data": [BOT]}}
    ]
    assert session.state is SessionState.AWAITING_VERIFY


def test_other_commands_before_verify_get_raw_code_1() -> None:
    assert sent(make().receive(frame("sendGroupMessage", {"target": 1}), bot_id=BOT)) == [
        {"code": 1, "msg": "Auth Key错误"}
    ]


@pytest.mark.parametrize("junk", ["not json", "{}", '{"syncId":"1"}', "x" * 5000])
def test_junk_before_verify_is_ignored(junk: str) -> None:
    actions = make().receive(junk, bot_id=BOT)
    assert len(actions) == 1 and isinstance(actions[0], Ignored)


def verified() -> MiraiSession:
    session = make()
    session.receive(verify_frame(), bot_id=BOT)
    return session


def test_commands_after_verify_are_executed() -> None:
    actions = verified().receive(frame("sendGroupMessage", {"target": 1}, sync_id=9, subcommand="get"), bot_id=BOT)
    assert len(actions) == 1 and isinstance(actions[0], Execute)
    assert actions[0].frame.sync_id == "9"
    assert actions[0].frame.sub_command == "get"


@pytest.mark.parametrize("junk", ["{not json", '{"syncId":"1"}', "[]", "x" * 5000])
def test_malformed_frames_after_verify_get_raw_400(junk: str) -> None:
    actions = verified().receive(junk, bot_id=BOT)
    assert sent(actions) == [{"code": 400, "msg": "无效参数"}]
    assert isinstance(actions[-1], FrameRejected)


def test_verify_again_is_code_6() -> None:
    assert sent(verified().receive(verify_frame(), bot_id=BOT)) == [
        {"syncId": "#", "data": {"code": 6, "msg": "指定操作不支持"}}
    ]


def test_about_after_verify_is_answered_by_the_session() -> None:
    assert sent(verified().receive(frame("about", sync_id="z"), bot_id=BOT))[0]["syncId"] == "z"


def test_repr_hides_secrets() -> None:
    session = verified()
    assert KEY not in repr(session)
    assert str(session.session_key) not in repr(session)
