"""``[mirai] ids = "small"`` at the mirai edge: every contact id the encoders write is presented, every one the
decoders read is resolved, and an id the bridge never presented is code 5.

The golden cases of the snowflake-mode tests are reused: with small ids, each output must equal the golden one
with exactly its contact ids replaced by their presented ids (:func:`present_ids` says, independently of the
encoders, which JSON fields hold contact ids: docs/mirai-api-http.md §7–§9), and each command must decode to the
same envelope command when the framework sends the presented ids.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from adapters.mirai import commands_in
from adapters.mirai.chain import decode_chain
from adapters.mirai.commands_in import LocalAnswer, decode_command
from adapters.mirai.events_out import encode_event_data, encode_event_frame, encode_message_event
from adapters.mirai.handlers import MiraiCommandHandler, PresentedIdentity
from adapters.mirai.results_out import encode_result
from relay.envelope import (
    ConversationRef,
    Member,
    MemberList,
    Mention,
    Message,
    MessageReceived,
    MessageRef,
    Quote,
    Role,
    Text,
    User,
)
from relay.ids import IdMap
from relay.storage.idmap import IdTable
from tests.integration.test_mirai_handlers import CASES as HANDLER_CASES
from tests.integration.test_mirai_handlers import Identity, RecordingService
from tests.unit.test_mirai_commands_in import COMMAND_CASES
from tests.unit.test_mirai_events_out import ALICE, BOT, EVENT_CASES, GROUP, group_message
from tests.unit.test_mirai_results_out import RESULT_CASES

#: JSON keys whose integer value is a contact id wherever they appear (docs/mirai-api-http.md §7–§9)
ID_KEYS = frozenset({"authorId", "operator", "qq", "senderId", "targetId", "groupId", "fromId", "target"})
#: elements whose ``id`` is not a contact (a message id, or -1)
NOT_CONTACT_IDS = frozenset({"Source", "Quote", "MarketFace"})


def present_ids(value: object, present: Callable[[int], int]) -> object:
    """``value`` (mirai JSON) with every contact id replaced by ``present(id)``."""
    if isinstance(value, list):
        return [present_ids(item, present) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, object] = {}
    for key, item in value.items():
        is_id = key in ID_KEYS or (key == "id" and value.get("type") not in NOT_CONTACT_IDS)
        if is_id and isinstance(item, int) and not isinstance(item, bool):
            out[key] = present(item)
        else:
            out[key] = present_ids(item, present)
    return out


def present_content(content: object, present: Callable[[int], int]) -> object:
    """A command's content as a framework of the small-id bridge sends it (ids it was shown)."""
    if not isinstance(content, dict):
        return content
    out = dict(content)
    for key in ("target", "group", "qq", "memberId", "id"):
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = present(value)
        elif isinstance(value, str) and value.isdigit():  # http query parameters are strings
            out[key] = str(present(int(value)))
    if isinstance(out.get("memberIds"), list):
        out["memberIds"] = [present(int(v)) for v in out["memberIds"]]  # type: ignore[union-attr]
    return out


def through_doubles(value: object) -> object:
    """What a JavaScript framework makes of a JSON document: every number a double."""
    return json.loads(json.dumps(value), parse_int=float)


@pytest.mark.parametrize(("event", "expected"), EVENT_CASES, ids=lambda v: type(v).__name__)
def test_every_event_shows_only_presented_ids(event: object, expected: dict[str, object]) -> None:
    ids = IdMap()
    data = encode_event_data(event, bot_id=ids.present(BOT), ids=ids)  # type: ignore[arg-type]
    assert data == present_ids(expected, ids.present)
    assert through_doubles(data) == data  # a double keeps every number


def test_message_events_present_senders_groups_mentions_and_quotes() -> None:
    ids = IdMap()
    quote = Quote(ref=MessageRef(conversation=ConversationRef.group(222), local_id=9), author_id=333)
    message = group_message(segments=(Mention(user_id=444), Text(" hi")), quote=quote)
    reference = encode_message_event(message, bot_id=BOT)
    data = encode_message_event(message, bot_id=ids.present(BOT), ids=ids)
    assert data == present_ids(reference, ids.present)
    assert data["messageChain"][1]["senderId"] == ids.present(333)  # type: ignore[index]
    assert data["messageChain"][2] == {"type": "At", "target": ids.present(444), "display": ""}  # type: ignore[index]
    sync = encode_message_event(message, bot_id=ids.present(BOT), as_sync=True, ids=ids)
    assert sync["subject"] == {"id": ids.present(222), "name": "Dev", "permission": "ADMINISTRATOR"}


def test_private_quotes_name_the_receiver_by_its_presented_id() -> None:
    ids = IdMap()
    friend = User(id=444, name="Bob")
    for author, receiver in ((BOT, 444), (444, BOT)):
        quote = Quote(ref=MessageRef(conversation=ConversationRef.private(444), local_id=3), author_id=author)
        message = Message(
            conversation=ConversationRef.private(444),
            channel_id=777,
            platform_id=10**18,
            local_id=4,
            time=1,
            sender=friend,
            segments=(Text("yo"),),
            quote=quote,
        )
        data = encode_message_event(message, bot_id=ids.present(BOT), ids=ids)
        assert data["messageChain"][1]["targetId"] == ids.present(receiver)  # type: ignore[index]
        assert data["sender"] == {"id": ids.present(444), "nickname": "Bob", "remark": ""}
        synced = encode_message_event(message, bot_id=ids.present(BOT), as_sync=True, ids=ids)
        assert synced["subject"] == {"id": ids.present(444), "nickname": "", "remark": ""}


@pytest.mark.parametrize(("command", "result", "expected"), RESULT_CASES, ids=lambda v: str(v)[:30])
def test_every_result_shows_only_presented_ids(command: str, result: object, expected: dict[str, object]) -> None:
    ids = IdMap()
    data = encode_result(command, result, bot_id=ids.present(BOT), ids=ids)  # type: ignore[arg-type]
    assert data == present_ids(expected, ids.present)


@pytest.mark.parametrize(("command", "sub", "content", "expected"), COMMAND_CASES, ids=lambda v: str(v)[:40])
def test_every_command_maps_presented_ids_back(
    command: str, sub: str | None, content: object, expected: object
) -> None:
    ids = IdMap()
    sent = through_doubles(present_content(content, ids.present))
    assert decode_command(command, sub, sent, ids=ids) == expected


def test_at_and_mirai_code_mentions_map_back() -> None:
    ids = IdMap()
    alice = ids.present(ALICE.user_id)
    chain = [
        {"type": "At", "target": float(alice), "display": ""},
        {"type": "MiraiCode", "code": f"hi [mirai:at:{alice}]"},
        {"type": "Forward", "nodeList": [{"senderName": "a", "messageChain": [{"type": "At", "target": alice}]}]},
    ]
    assert decode_chain(chain, ids=ids) == [
        Mention(user_id=111),
        Text("hi "),
        Mention(user_id=111),
        Text("> a: <@111>"),
    ]


#: commands naming an unknown id in each place ids are read: (command, content, the field in the message)
UNKNOWN = 1_000_000_000_000_042  # in the presented range, never given out
UNKNOWN_CASES = [
    ("sendGroupMessage", {"target": UNKNOWN, "messageChain": [{"type": "Plain", "text": "x"}]}, "target"),
    ("sendGroupMessage", {"group": UNKNOWN, "messageChain": [{"type": "Plain", "text": "x"}]}, "group"),
    ("sendFriendMessage", {"qq": UNKNOWN, "messageChain": [{"type": "Plain", "text": "x"}]}, "qq"),
    ("sendTempMessage", {"qq": "KNOWN", "group": UNKNOWN, "messageChain": []}, "group"),
    ("sendGroupMessage", {"target": "KNOWN", "messageChain": [{"type": "At", "target": UNKNOWN}]}, "target"),
    (
        "sendGroupMessage",
        {"target": "KNOWN", "messageChain": [{"type": "MiraiCode", "code": f"[mirai:at:{UNKNOWN}]"}]},
        "at",
    ),
    ("recall", {"target": UNKNOWN, "messageId": 1}, "target"),
    ("roamingMessages", {"qq": UNKNOWN}, "qq"),
    ("memberList", {"target": UNKNOWN}, "target"),
    ("latestMemberList", {"target": "KNOWN", "memberIds": ["KNOWN", UNKNOWN]}, "memberIds[1]"),
    ("mute", {"target": "KNOWN", "memberId": UNKNOWN, "time": 60}, "memberId"),
    ("anno_list", {"id": UNKNOWN}, "id"),
    ("userProfile", {"target": 1_234_567_890_123_456_789}, "target"),  # a real snowflake is not a presented id
]


@pytest.mark.parametrize(("command", "content", "field"), UNKNOWN_CASES, ids=lambda v: str(v)[:40])
def test_an_id_the_bridge_never_presented_is_code_5(command: str, content: dict[str, object], field: str) -> None:
    ids = IdMap()
    known = ids.present(222)

    def fill(value: object) -> object:
        if value == "KNOWN":
            return known
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    answer = decode_command(command, None, fill(content), ids=ids)
    assert isinstance(answer, LocalAnswer), answer
    assert answer.data["code"] == 5
    msg = str(answer.data["msg"])
    assert (
        msg.startswith(f"{command}: 指定对象不存在: ") and field in msg and "is not an id the bridge presented" in msg
    )


def test_contact_ids_are_only_read_through_the_presenter() -> None:
    # a new command must not read a contact id with fields.long alone: it would reach Discord unmapped
    source = Path(commands_in.__file__).read_text(encoding="utf-8")
    assert "fields.long(" not in source and "fields.optional_long(" not in source


# --------------------------------------------------------------------------- the handler


def handler_with(ids: IdMap, answer: object) -> tuple[MiraiCommandHandler, RecordingService]:
    service = RecordingService(answer)  # type: ignore[arg-type]
    return MiraiCommandHandler(service, PresentedIdentity(Identity(), 0, ids)), service


@pytest.mark.parametrize("case", HANDLER_CASES, ids=lambda c: f"{c[0]}.{c[1]}")
async def test_every_command_through_the_handler_in_small_mode(case: tuple[object, ...]) -> None:
    command, sub, content, expected_command, result, expected_data = case
    ids = IdMap()
    handler, service = handler_with(ids, result)
    sent = through_doubles(present_content(content, ids.present))
    data = await handler.dispatch(command, sub, sent)  # type: ignore[arg-type]
    assert service.commands == [expected_command]
    assert data == present_ids(expected_data, ids.present)


async def test_the_handler_stores_a_results_new_ids_in_one_write_before_answering(tmp_path: Path) -> None:
    members = tuple(
        Member(user_id=1_200_000_000_000_000_000 + n, display_name=f"m{n}", role=Role.MEMBER, group=GROUP)
        for n in range(500)
    )
    table = IdTable.open(str(tmp_path / "bridge.sqlite3"), write_lock=threading.Lock())
    writes: list[list[tuple[int, int]]] = []

    def persist(pairs: Sequence[tuple[int, int]]) -> None:
        table.write(pairs)
        writes.append(list(pairs))

    try:
        ids = IdMap(persist=persist)
        handler, _ = handler_with(ids, MemberList(members=members))
        data = await handler.dispatch("memberList", None, {"target": ids.present(222)})
        # the group when the framework was shown it, then the bot (its presented qq) and the whole member list
        # in one transaction
        assert len(writes) == 2
        shown = [m["id"] for m in data["data"]]  # type: ignore[union-attr]
        assert writes[1] == [(BOT, ids.present(BOT))] + [(m.user_id, p) for m, p in zip(members, shown, strict=True)]
        assert len(table.load()) == 502
    finally:
        table.close()


async def test_bot_id_is_presented_unless_overridden() -> None:
    ids = IdMap()
    handler, _ = handler_with(ids, None)
    assert handler.bot_id == ids.present(BOT)
    assert (await handler.dispatch("botList", None, {}))["data"] == [ids.present(BOT)]
    session = await handler.dispatch("sessionInfo", None, {})
    assert session["data"]["qq"]["id"] == ids.present(BOT)  # type: ignore[index]
    pinned = MiraiCommandHandler(RecordingService(None), PresentedIdentity(Identity(), 10_000, ids))  # type: ignore[arg-type]
    assert pinned.bot_id == 10_000
    assert PresentedIdentity(Identity(), 0, ids).bot_id == ids.present(BOT)
    assert MiraiCommandHandler(RecordingService(None), Identity(), ids=ids).bot_id == ids.present(BOT)  # type: ignore[arg-type]


def test_a_pushed_frame_carries_presented_ids() -> None:
    ids = IdMap()
    frame = encode_event_frame(
        MessageReceived(message=group_message()), bot_id=ids.present(BOT), reserved_sync_id="-1", ids=ids
    )
    assert frame is not None
    data = json.loads(frame, parse_int=float)["data"]
    assert ids.resolve(int(data["sender"]["id"])) == ALICE.user_id
    assert ids.resolve(int(data["sender"]["group"]["id"])) == GROUP.id
