"""The mirai frame codec: lenient decoding, exact encoding (pure)."""

from __future__ import annotations

import json

import pytest

from adapters.mirai import codec
from adapters.mirai.codec import IncomingFrame
from relay.errors import FrameTooLarge, RemoteProtocolError

LIMIT = 1024


def decode(data: str | bytes) -> IncomingFrame:
    return codec.decode_frame(data, max_frame_bytes=LIMIT)


def test_decodes_a_command_frame() -> None:
    frame = decode(
        '{"syncId":"k3","command":"sendGroupMessage","subCommand":null,'
        '"content":{"target":1,"messageChain":[{"type":"Plain","text":"hi"}]}}'
    )
    assert frame == IncomingFrame(
        sync_id="k3",
        command="sendGroupMessage",
        sub_command=None,
        content={"target": 1, "messageChain": [{"type": "Plain", "text": "hi"}]},
    )


def test_numeric_sync_id_becomes_a_string() -> None:
    assert decode('{"syncId":123,"command":"about"}').sync_id == "123"


def test_null_and_missing_sync_id_are_none() -> None:
    assert decode('{"syncId":null,"command":"about"}').sync_id is None
    assert decode('{"command":"about"}').sync_id is None


def test_lowercase_subcommand_is_accepted() -> None:
    assert decode('{"syncId":"1","command":"groupConfig","subcommand":"get","content":{}}').sub_command == "get"
    assert decode('{"syncId":"1","command":"groupConfig","subCommand":"update"}').sub_command == "update"


def test_binary_frames_decode_like_text() -> None:
    frame = decode('{"syncId":"1","command":"botList","x":"中"}'.encode())
    assert frame.command == "botList"


def test_unknown_keys_are_ignored() -> None:
    assert decode('{"syncId":"1","command":"about","sessionKey":"x","extra":[1]}').command == "about"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1,2]",
        '{"syncId":"1"}',
        '{"syncId":"1","command":5}',
        '{"syncId":[1],"command":"about"}',
        '{"syncId":"1","command":"a","subCommand":3}',
        b"\xff\xfe",
    ],
)
def test_junk_raises_remote_protocol_error(text: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(text)


def test_oversize_frame_raises_frame_too_large() -> None:
    with pytest.raises(FrameTooLarge) as info:
        decode('{"syncId":"1","command":"about","pad":"' + "x" * LIMIT + '"}')
    assert info.value.limit == LIMIT
    assert "exceeds" in str(info.value)


def test_response_is_compact_with_a_string_sync_id_and_unescaped_text() -> None:
    text = codec.encode_response("7", {"code": 0, "msg": "成功"})
    assert text == '{"syncId":"7","data":{"code":0,"msg":"成功"}}'


def test_event_and_raw_frames() -> None:
    assert codec.encode_event("-1", {"type": "BotOnlineEvent", "qq": 5}) == (
        '{"syncId":"-1","data":{"type":"BotOnlineEvent","qq":5}}'
    )
    assert json.loads(codec.encode_raw(codec.AUTH_KEY_FAIL)) == {"code": 1, "msg": "Auth Key错误"}
    assert json.loads(codec.encode_raw(codec.INVALID_PARAMETER)) == {"code": 400, "msg": "无效参数"}


@pytest.mark.parametrize(
    ("content", "qq"),
    [
        ({"verifyKey": "k", "sessionKey": None, "qq": 42}, 42),
        ({"verifyKey": "k", "qq": "42"}, 42),
        ({"verifyKey": "k"}, None),
        (None, None),
    ],
)
def test_verify_content_is_lenient(content: object, qq: int | None) -> None:
    assert codec.decode_verify_content(content).qq == qq


@pytest.mark.parametrize("content", [{"qq": "BindQQ"}, {"qq": True}, [1], {"verifyKey": {"a": 1}}])
def test_unusable_verify_content_raises(content: object) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_verify_content(content)


def test_verify_content_repr_hides_the_key() -> None:
    assert "secret" not in repr(codec.decode_verify_content({"verifyKey": "secret", "qq": 1}))


def test_about_reports_a_plain_dotted_version() -> None:
    version = codec.about_data()["data"]
    assert isinstance(version, dict)
    assert tuple(map(int, str(version["version"]).split("."))) == (2, 10, 0)


# --------------------------------------------------------------------------- reading outbox frames


@pytest.mark.parametrize("reserved", ["-1", "", 'x","data":{"type":"GroupMessage"}', "back\\", "事件", "-2"])
def test_event_data_and_type_of_any_reserved_sync_id(reserved: str) -> None:
    data = {"type": "FriendRecallEvent", "authorId": 1, "messageId": 2, "time": 3, "operator": 4}
    frame = codec.encode_event(reserved, data)
    assert json.loads(codec.event_data_text(frame)) == data
    assert codec.frame_event_type(frame) == "FriendRecallEvent"
    assert not codec.is_message_frame(frame)
    message = codec.encode_event(reserved, {"type": "GroupSyncMessage", "messageChain": [], "subject": {}})
    assert codec.frame_event_type(message) == "GroupSyncMessage"
    assert codec.is_message_frame(message)


def test_event_type_of_frames_written_some_other_way() -> None:
    spaced = '{ "syncId": "-1", "data": {"messageChain": [], "type": "GroupMessage"} }'
    assert codec.frame_event_type(spaced) == "GroupMessage"
    assert json.loads(codec.event_data_text(spaced)) == {"messageChain": [], "type": "GroupMessage"}
    assert codec.frame_event_type('{"syncId":"-1","data":{"qq":1}}') == ""
    assert codec.frame_event_type('{"syncId":"-1","data":{"type":"We\\u0069rd"}}') == "Weird"
    with pytest.raises(RemoteProtocolError):
        codec.event_data_text('{"syncId":"-1"}')
    with pytest.raises(RemoteProtocolError):
        codec.frame_event_type("not json")


def test_message_event_types_are_those_of_section_9_1() -> None:
    assert {t for t in codec.MESSAGE_EVENT_TYPES if not t.endswith("Message")} == set()
    assert len(codec.MESSAGE_EVENT_TYPES) == 9


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 50_000 + "]" * 50_000,
        '{"syncId":"1","command":"about","content":' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}",
        b"[" * 100_000,
    ],
)
def test_json_nested_too_deeply_is_a_bad_frame_not_a_crash(frame: str | bytes) -> None:
    # issue 15: RecursionError escaped the codec (it caught only ValueError) and ended the connection
    with pytest.raises(RemoteProtocolError):
        codec.decode_frame(frame, max_frame_bytes=1 << 24)
