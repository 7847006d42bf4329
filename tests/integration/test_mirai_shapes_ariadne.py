"""Every pushed event adapters/mirai/events_out produces must parse in real Graia Ariadne (docs/mirai-api-http.md §3.7).

Ariadne lives in its own venv (/work/ariadne-venv, or $ARIADNE_PYTHON); the check runs there in a
subprocess fed with the encoded events, so the bridge's venv needs no Ariadne. Skipped when absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.mirai.events_out import encode_event_data
from tests.unit.test_mirai_events_out import BOT, EVENT_CASES, group_message

from relay.envelope import (  # isort: skip
    Audio,
    ConversationRef,
    Emoji,
    File,
    Image,
    Mention,
    MentionAll,
    Message,
    MessageReceived,
    MessageRef,
    Quote,
    RichContent,
    Sticker,
    Text,
    Unsupported,
    User,
)

pytestmark = pytest.mark.ariadne

ARIADNE_PYTHON = Path(os.environ.get("ARIADNE_PYTHON", "/work/ariadne-venv/bin/python"))

# Runs inside Ariadne's venv: parse each event, report class names and key facts of message chains.
CHECKER = r"""
import json, sys
from graia.ariadne.connection.util import build_event
from graia.ariadne.event.message import MessageEvent
out = []
for data in json.load(sys.stdin):
    event = build_event(data)
    fact = {"class": type(event).__name__}
    if isinstance(event, MessageEvent):
        chain = event.message_chain
        fact["source_id"] = event.source.id
        fact["quote_id"] = event.quote.id if event.quote else None
        fact["elements"] = [type(e).__name__ for e in chain.content]
        fact["display"] = str(chain)
    out.append(fact)
json.dump(out, sys.stdout, ensure_ascii=False)
"""


def run_ariadne(events: list[dict[str, object]]) -> list[dict[str, object]]:
    if not ARIADNE_PYTHON.exists():
        pytest.skip(f"Graia Ariadne venv not found at {ARIADNE_PYTHON} (set ARIADNE_PYTHON)")
    completed = subprocess.run(
        [str(ARIADNE_PYTHON), "-c", CHECKER],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def test_every_event_kind_parses_in_ariadne() -> None:
    events = [encode_event_data(event, bot_id=BOT) for event, _ in EVENT_CASES]  # type: ignore[arg-type]
    facts = run_ariadne([e for e in events if e is not None])
    assert [f["class"] for f in facts] == [e["type"] for e in events if e is not None]


def test_messages_with_every_segment_parse_in_ariadne() -> None:
    segments = (
        Mention(user_id=111),
        Text(" hi "),
        MentionAll(),
        Emoji(id=1234567890123456789, name="blob"),
        Image(id="a.png", url="https://cdn/a.png", content_type="image/png", width=1, height=1, size=3),
        Image(url="https://cdn/b.gif"),
        Audio(id="v.ogg", url="https://cdn/v.ogg", duration=2.0),
        File(id="f", name="n.txt", size=1),
        Sticker(id=10**18, name="Wave"),
        RichContent(text="embed"),
        Unsupported(fallback="[poll]"),
    )
    quote = Quote(
        ref=MessageRef(conversation=ConversationRef.group(222), local_id=4), author_id=111, origin=(Text("old"),)
    )
    group = encode_event_data(MessageReceived(message=group_message(segments=segments, quote=quote)), bot_id=BOT)
    friend = encode_event_data(
        MessageReceived(
            message=Message(
                conversation=ConversationRef.private(444),
                channel_id=7,
                platform_id=8,
                local_id=2,
                time=3,
                sender=User(id=444, name="Bob"),
                segments=(Text("dm"),),
            )
        ),
        bot_id=BOT,
    )
    sync = encode_event_data(MessageReceived(message=group_message(from_self=True)), bot_id=BOT)
    sticker = encode_event_data(
        MessageReceived(message=group_message(segments=(Text("look "), Sticker(id=10**18, name="Wave")))), bot_id=BOT
    )
    emoji = encode_event_data(
        MessageReceived(message=group_message(segments=(Emoji(id=10**18, name="blob"),))), bot_id=BOT
    )
    facts = run_ariadne([group, friend, sync, sticker, emoji])  # type: ignore[list-item]
    assert facts[0]["class"] == "GroupMessage"
    assert facts[0]["source_id"] == 12345
    assert facts[0]["quote_id"] == 4
    assert facts[0]["elements"] == [
        "At",
        "Plain",
        "AtAll",
        "Face",
        "Image",
        "Image",
        "Voice",
        "Plain",  # File: only one stand-alone element per chain
        "Plain",  # Sticker
        "Plain",
        "Plain",
    ]
    assert facts[1]["class"] == "FriendMessage"
    assert facts[1]["display"] == "dm"
    assert facts[2]["class"] == "GroupSyncMessage"
    assert facts[3]["elements"] == ["Plain", "MarketFace"]
    assert facts[4]["elements"] == ["Face"]
    assert facts[4]["display"] == "[表情: <:blob:1000000000000000000>]"


if __name__ == "__main__":  # pragma: no cover - manual run
    sys.exit(pytest.main([__file__, "-q"]))


# Ariadne lets only its own modules build some models ("internal class"), as its app.py does when it
# parses API results: run the checker under such a module name.
RUN_AS_ARIADNE_MODULE = (
    "import sys; exec(compile(sys.argv[1], 'probe', 'exec'), {'__name__': 'graia.ariadne.model.probe'})"
)
RESULT_CHECKER = r"""
import json, sys
from graia.ariadne.connection.util import build_event
from graia.ariadne.model import Announcement, Profile
from graia.ariadne.model.relationship import Friend, Group, GroupConfig, Member
from graia.ariadne.util import camel_to_snake
models = {"Friend": Friend, "Group": Group, "Member": Member, "Profile": Profile, "Announcement": Announcement}
out = []
for model, data in json.load(sys.stdin):
    if model == "event":
        out.append(type(build_event(data)).__name__)
    elif model == "GroupConfig":
        out.append(type(GroupConfig.parse_obj({camel_to_snake(k): v for k, v in data.items()})).__name__)
    else:
        out.append(type(models[model].parse_obj(data)).__name__)
json.dump(out, sys.stdout)
"""


def test_result_shapes_parse_with_ariadne_models() -> None:
    from adapters.mirai.results_out import encode_result
    from tests.unit.test_mirai_results_out import RESULT_CASES

    pairs: list[tuple[str, object]] = []
    for command, result, _ in RESULT_CASES:
        data = encode_result(command, result, bot_id=BOT)  # type: ignore[arg-type]
        inner = data.get("data", data)
        items = inner if isinstance(inner, list) else [inner]
        model = {
            "friendList": "Friend",
            "groupList": "Group",
            "memberList": "Member",
            "latestMemberList": "Member",
            "memberInfo": "Member",
            "botProfile": "Profile",
            "memberProfile": "Profile",
            "groupConfig": "GroupConfig",
            "anno_list": "Announcement",
            "anno_publish": "Announcement",
            "messageFromId": "event",
            "roamingMessages": "event",
        }.get(command)
        if model is not None:
            pairs.extend((model, item) for item in items)
    if not ARIADNE_PYTHON.exists():
        pytest.skip(f"Graia Ariadne venv not found at {ARIADNE_PYTHON} (set ARIADNE_PYTHON)")
    completed = subprocess.run(
        [str(ARIADNE_PYTHON), "-c", RUN_AS_ARIADNE_MODULE, RESULT_CHECKER],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    parsed = json.loads(completed.stdout)
    assert parsed == [("GroupMessage" if model == "event" else model) for model, _ in pairs]


SEND_CHAINS = r"""
import json, sys
from graia.ariadne.message.chain import MessageChain
from graia.ariadne.message.element import (
    At, AtAll, Dice, Face, Forward, ForwardNode, Image, MusicShare, Plain, Voice,
)
from datetime import datetime
chains = [
    MessageChain([At(111), Plain(" hi "), AtAll(), Face(name="<:blob:1000000000000000000>"),
                  Image(url="https://x/a.png"), Image(data_bytes=b"abc")]),
    MessageChain([Voice(url="https://x/v.ogg")]),
    MessageChain([Dice(3)]),
    MessageChain([Forward(nodeList=[ForwardNode(target=1, time=datetime(2024, 1, 1), message=MessageChain("hey"),
                                                name="A")])]),
]
json.dump([c.as_sendable().dict()["__root__"] for c in chains], sys.stdout, default=lambda o: int(o.timestamp()))
"""


def test_chains_ariadne_sends_decode() -> None:
    from adapters.mirai.commands_in import decode_command
    from relay.envelope import SendMessage

    if not ARIADNE_PYTHON.exists():
        pytest.skip(f"Graia Ariadne venv not found at {ARIADNE_PYTHON} (set ARIADNE_PYTHON)")
    completed = subprocess.run(
        [str(ARIADNE_PYTHON), "-c", SEND_CHAINS], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    chains = json.loads(completed.stdout)
    decoded = [decode_command("sendGroupMessage", None, {"target": 222, "messageChain": c}) for c in chains]
    assert all(isinstance(d, SendMessage) for d in decoded), decoded
    segments = [d.segments for d in decoded]  # type: ignore[union-attr]
    assert segments[0] == (
        Mention(user_id=111),
        Text(" hi "),
        MentionAll(),
        Emoji(id=10**18, name="blob"),
        Image(url="https://x/a.png"),
        Image(data=b"abc"),
    )
    assert segments[1] == (Audio(url="https://x/v.ogg"),)
    assert segments[2] == (Text("🎲 3"),)
    assert segments[3] == (Text("> A: hey"),)
