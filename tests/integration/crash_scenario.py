"""kill -9 during a message stream, then an immediate restart (issue 15): how many messages a framework misses
and how many it gets twice. Used by test_crash_restart.py (with assertions) and scripts/crash_restart.py (figures
for the README's Reliability section).

The real bridge process (``python -m relay run bridge.toml``) runs against the emulated Discord (REST and gateway,
relay/sandbox/emulator) and a fake framework, all in this process on loopback. A stream task has a user post
messages at ``rate`` per second: each is in the channel's history and its MESSAGE_CREATE goes to the gateway
session (buffered for a resume while no connection is up), as on Discord. The bridge is killed with SIGKILL
``crashes`` times and started again at once; at the end every message's text must have reached the framework.

With ``refuse_resume`` the emulated gateway answers every RESUME with op 9 (a server that never resumes, or a
resume that came too late): the messages of the restart gap are then only in the channels' history, and the
bridge's back-fill must find them.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, TOKEN, add_guild, start_emulator
from tests.fakes.fake_framework import FakeFramework, open_fake_framework

GUILD = 7100
CHANNEL = 7101
ALICE = 8101
VERIFY_KEY = "crash-verify-key"
REPO = Path(__file__).resolve().parents[2]
#: the bridge's store flush interval (relay.storage.flushers.STORE_FLUSH_INTERVAL), for the duplicate bound
FLUSH_INTERVAL = 0.05
_TEXT = re.compile(r"crash-stream (\d+)")


@attrs.frozen(kw_only=True)
class CrashResult:
    sent: int
    received: int  #: GroupMessage events of the stream the framework got, duplicates included
    missing: int
    duplicates: int
    crashes: int
    rate: float  #: messages per second actually sent
    identifies: int
    resumes: int
    resumed: int  #: resumes that succeeded (RESUMED)
    backfill_lines: tuple[str, ...]
    resume_lines: tuple[str, ...]

    def summary(self) -> str:
        return (
            f"{self.sent} messages at {self.rate:.0f}/s, {self.crashes} x kill -9 + restart: {self.missing} missing, "
            f"{self.duplicates} duplicates; gateway: {self.identifies} identifies, {self.resumes} resumes "
            f"({self.resumed} succeeded), {len(self.backfill_lines)} back-fill lines"
        )


def _config(tmp_path: Path, discord: Emulator, framework_port: int) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f"""
[discord]
api_base_url = "{discord.base_url}"
gateway_url = "{discord.gateway_url}"

[[mirai.reverse_ws.destinations]]
name = "framework"
host = "127.0.0.1"
port = {framework_port}
path = "/"
protocol = "ws"

[discord.backfill]
# at 500 messages/s a restart gap (start-up, a refused resume's 1-5 s, an identify 5 s after the last one) is
# thousands of messages: the window is set for the stream, as an operator would for such a channel
max_messages = 20000

[mirai.reverse_ws.reconnect]
initial = 0.05
cap = 0.2

[store]
path = "{tmp_path / "bridge.sqlite3"}"

[logging]
level = "INFO"
status_interval = 3600
""",
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def _bridge(config: Path, token: str, log: bytearray) -> AsyncIterator[trio.Process]:
    env = {**os.environ, "DISCORD_TOKEN": token, "MIRAI_VERIFY_KEY": VERIFY_KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("RELAY_LOG_LEVEL", None)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "relay", "run", str(config)],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    async with trio.open_nursery() as nursery:

        async def drain() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some(65536):
                log.extend(chunk)

        nursery.start_soon(drain)
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await process.wait()


def _stream_texts(framework: FakeFramework) -> list[int]:
    found: list[int] = []
    for event in framework.events:
        if event.data.get("type") != "GroupMessage":
            continue
        chain = event.data.get("messageChain")
        if not isinstance(chain, list):
            continue
        for element in chain:
            if isinstance(element, dict) and element.get("type") == "Plain":
                match = _TEXT.fullmatch(str(element.get("text")))
                if match:
                    found.append(int(match.group(1)))
    return found


#: what a bridge logs once it has recovered from a restart: a resumed session or a finished back-fill
_RECOVERED = ("resumed session", "back-filled")


async def run_crash_scenario(
    tmp_path: Path,
    *,
    refuse_resume: bool,
    rate: float = 500.0,
    crashes: int = 2,
    run_for: float = 1.0,
    settle: float = 60.0,
) -> CrashResult:
    """See the module docstring. Each bridge runs ``run_for`` seconds after it recovered from the last crash (its
    log says it resumed or back-filled) and is then killed; the last one is stopped with SIGINT once the stream
    has ended and every message arrived (``settle``: a hang guard; the result says what arrived)."""
    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Crash", owner_id=ALICE, channels={CHANNEL: "general"}, members=[ALICE])
    log = bytearray()
    sent = 0
    sent_at_start = sent_at_end = 0.0
    stop_stream = trio.Event()
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        discord.gateway.refuse_resume = refuse_resume
        discord.gateway.identify_window = 1.0  # Discord's 5 s only makes each restart slower, not lossier
        async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID) as framework:
            config = _config(tmp_path, discord, framework.port)

            async def stream() -> None:
                nonlocal sent, sent_at_start, sent_at_end
                batch = 5  # 5 messages every 10 ms: 500/s without a task switch per message
                sent_at_start = trio.current_time()
                while not stop_stream.is_set():
                    for i in range(batch):
                        discord.actions.post_message(CHANNEL, f"crash-stream {sent + i}", author_id=ALICE)
                    sent += batch
                    await trio.sleep_until(sent_at_start + sent / rate)
                sent_at_end = trio.current_time()

            for run in range(crashes + 1):
                recovered_before = sum(log.decode("utf-8", "replace").count(m) for m in _RECOVERED)
                async with _bridge(config, discord.token, log) as process:
                    if run == 0:
                        connection = await framework.wait_connection()
                        await connection.wait_verified()
                        nursery.start_soon(stream)
                    else:
                        while sum(log.decode("utf-8", "replace").count(m) for m in _RECOVERED) <= recovered_before:
                            await trio.sleep(0.05)
                    await trio.sleep(run_for)
                    if run < crashes:
                        process.send_signal(signal.SIGKILL)
                        await process.wait()
                        log.extend(f"--- kill -9 number {run + 1}, started again at once\n".encode())
                        continue
                    stop_stream.set()
                    with trio.move_on_after(settle):
                        while len(set(_stream_texts(framework))) < sent:
                            await trio.sleep(0.1)
                    await trio.sleep(0.5)  # anything on its way twice arrives now
                    process.send_signal(signal.SIGINT)
                    with trio.move_on_after(15):
                        await process.wait()
            texts = _stream_texts(framework)
        nursery.cancel_scope.cancel()
    counts = collections.Counter(texts)
    text = log.decode("utf-8", "replace")
    return CrashResult(
        sent=sent,
        received=len(texts),
        missing=sum(1 for i in range(sent) if i not in counts),
        duplicates=sum(n - 1 for n in counts.values()),
        crashes=crashes,
        rate=sent / max(sent_at_end - sent_at_start, 1e-9),
        identifies=len(discord.gateway.identifies),
        resumes=len(discord.gateway.resumes),
        resumed=text.count("resumed session"),
        backfill_lines=tuple(line for line in text.splitlines() if "back-filled" in line),
        resume_lines=tuple(line for line in text.splitlines() if "resumed" in line and "session" in line),
    )
