"""A real framework drives the bridge: Graia Ariadne's reverse-ws server, our reverse-ws client.

Ariadne runs in its own venv (pydantic 1) as a subprocess (tests/integration/ariadne_bot.py), found through
$ARIADNE_PYTHON (.ci/run creates that venv and exports it); the test is skipped when it is unset.

Flow: the bridge dials Ariadne (path, query token and header checked by Ariadne), Ariadne verifies, the bridge
pushes BotOnlineEvent (Ariadne's API calls wait for it), a GroupMessage frame is appended to the outbox and
pushed, Ariadne's handler replies with ``sendGroupMessage`` quoting it, the bridge's dispatcher answers with a
messageId, and Ariadne reports that it saw that messageId.

Two variants: a recording dispatcher (the wire between Ariadne and this adapter only), and the real
adapters/mirai/handlers.py + commands_in/results_out with a recording stand-in for the relay's CommandService behind it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from adapters.mirai.reverse_ws import serve_reverse_ws
from adapters.mirai.session import CommandDispatcher
from relay.config import BackoffConfig, DestinationConfig, MiraiConfig, OutboxConfig, ReverseWsConfig
from relay.envelope import Command, ConversationRef, MessageRef, MessageSent, Result, SendMessage, Text
from relay.errors import CommandFailed, FailureKind
from relay.storage.flushers import serve_outbox_flusher
from relay.storage.outbox import Outbox

pytestmark = pytest.mark.ariadne

ARIADNE_PYTHON = os.environ.get("ARIADNE_PYTHON", "")
BOT_SCRIPT = Path(__file__).with_name("ariadne_bot.py")
BOT = 1234567890
GROUP = 555000111
SOURCE_ID = 7
REPLY_MESSAGE_ID = 4242
KEY = "ariadne-verify-key"
GUARD = 60  # seconds: Ariadne's start-up takes a few seconds on a busy 2-core machine


@attrs.frozen
class FixedIdentity:
    bot_id: int = BOT
    bot_name: str = "relay-test-bot"


class RecordingDispatcher:
    """Answers sendGroupMessage with a fixed messageId and records every command."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, object]] = []
        self.sent = trio.Event()

    async def dispatch(self, command: str, sub_command: str | None, content: object) -> dict[str, object]:
        self.calls.append((command, sub_command, content))
        if command == "sendGroupMessage":
            self.sent.set()
            return {"code": 0, "msg": "success", "messageId": REPLY_MESSAGE_ID}
        return {"code": 6, "msg": "指定操作不支持"}


def group_message_frame() -> str:
    group = {"id": GROUP, "name": "bridged-channel", "permission": "MEMBER"}
    sender = {
        "id": 42,
        "memberName": "alice",
        "specialTitle": "",
        "permission": "MEMBER",
        "joinTimestamp": 1_700_000_000,
        "lastSpeakTimestamp": 1_700_000_100,
        "muteTimeRemaining": 0,
        "group": group,
    }
    chain = [{"type": "Source", "id": SOURCE_ID, "time": 1_700_000_100}, {"type": "Plain", "text": "ping"}]
    data = {"type": "GroupMessage", "sender": sender, "messageChain": chain}
    return json.dumps({"syncId": "-1", "data": data}, ensure_ascii=False, separators=(",", ":"))


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


needs_ariadne = pytest.mark.skipif(
    not ARIADNE_PYTHON, reason="ARIADNE_PYTHON is unset (.ci/run creates Ariadne's venv and sets it)"
)


async def ariadne_round_trip(tmp_path: Path, dispatcher: CommandDispatcher) -> tuple[dict[str, object], Outbox]:
    """Start the Ariadne bot and the bridge, push one GroupMessage, return Ariadne's report."""
    port = free_loopback_port()
    stderr_path = tmp_path / "ariadne.stderr"
    destination = DestinationConfig(
        name="ariadne",
        host="127.0.0.1",
        port=port,
        path="/ws",
        extra_parameters={"token": "tok"},
        extra_headers={"X-Auth": "hdr"},
    )
    config = MiraiConfig(
        verify_key=KEY,
        reverse_ws=ReverseWsConfig(
            destinations=(destination,), reconnect=BackoffConfig(initial=0.1, factor=1.5, cap=0.5)
        ),
    )
    outbox = Outbox(str(tmp_path / "bridge.sqlite3"), OutboxConfig())
    with stderr_path.open("wb") as stderr, trio.fail_after(GUARD):
        process = await trio.lowlevel.open_process(
            [ARIADNE_PYTHON, str(BOT_SCRIPT), str(port), str(BOT), KEY, "/ws", "tok", "hdr"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_outbox_flusher, outbox)  # as the composition root runs it
                client = await nursery.start(
                    partial(
                        serve_reverse_ws,
                        config=config,
                        outbox=outbox,
                        dispatcher=dispatcher,
                        identity=FixedIdentity(),
                        rng=random.Random(0),
                    )
                )
                # appended now, delivered (replayed) right after Ariadne verifies and gets BotOnlineEvent
                outbox.append(group_message_frame())
                report = await read_report(process, stderr_path)
                (stats,) = client.statistics()
                assert stats.verifications >= 1
                nursery.cancel_scope.cancel()
        finally:
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    return report, outbox


@needs_ariadne
async def test_ariadne_replies_with_a_quote_and_sees_the_message_id(tmp_path: Path) -> None:
    dispatcher = RecordingDispatcher()
    report, outbox = await ariadne_round_trip(tmp_path, dispatcher)
    sends = [content for command, _, content in dispatcher.calls if command == "sendGroupMessage"]
    assert len(sends) == 1, dispatcher.calls
    content = sends[0]
    assert isinstance(content, dict)
    assert content.get("target", content.get("group")) == GROUP
    assert content.get("quote") == SOURCE_ID
    chain = content["messageChain"]
    assert [(e["type"], e.get("text")) for e in chain] == [("Plain", "pong: ping")]
    assert report["reply_message_id"] == REPLY_MESSAGE_ID
    assert report["quoted"] == SOURCE_ID and report["group"] == GROUP
    assert outbox.cursor("ariadne") == outbox.last_seq  # the GroupMessage counts as delivered


class RecordingCommandService:
    """Stands in for the relay's CommandService behind the real adapters/mirai/handlers.py."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def execute(self, command: Command) -> Result:
        self.commands.append(command)
        if isinstance(command, SendMessage):
            ref = MessageRef(conversation=command.conversation, local_id=REPLY_MESSAGE_ID, platform_id=1)
            return MessageSent(ref=ref, time=1_700_000_200)
        raise CommandFailed(FailureKind.UNSUPPORTED, f"{type(command).__name__} is not part of this test")


@needs_ariadne
async def test_ariadne_through_the_real_command_handler(tmp_path: Path) -> None:
    from adapters.mirai.handlers import MiraiCommandHandler

    service = RecordingCommandService()
    report, _ = await ariadne_round_trip(tmp_path, MiraiCommandHandler(service, FixedIdentity()))
    sends = [c for c in service.commands if isinstance(c, SendMessage)]
    assert len(sends) == 1, service.commands
    (send,) = sends
    assert send.conversation == ConversationRef.group(GROUP)
    assert send.segments == (Text("pong: ping"),)
    assert send.quote is not None and send.quote.local_id == SOURCE_ID
    assert report["reply_message_id"] == REPLY_MESSAGE_ID


def stderr_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


async def read_report(process: trio.Process, stderr_path: Path) -> dict[str, object]:
    """Read the bot's stdout until its report line (the one with reply_message_id)."""
    assert process.stdout is not None
    buffer = b""
    while True:
        chunk = await process.stdout.receive_some(65536)
        if not chunk:
            raise AssertionError(
                f"Ariadne exited (code {process.returncode}) without a report; its stderr:\n" + stderr_tail(stderr_path)
            )
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"ARIADNE_BOT "):
                fields = json.loads(line[len(b"ARIADNE_BOT ") :])
                if "reply_message_id" in fields:
                    return dict(fields)
