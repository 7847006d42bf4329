"""A real webhook receiver: Graia Ariadne's webhook mode (``HttpServerConfig``) takes the bridge's POSTs unchanged.

Ariadne runs from its own venv ($ARIADNE_PYTHON, created by .ci/run; skipped when unset) as a subprocess
(tests/integration/ariadne_webhook_bot.py). The bridge's webhook adapter starts before Ariadne listens, so the
destination is first *down* (its events wait), then Ariadne takes both GroupMessages, in order, checking the ``qq``
header against its account and its configured header (``X-Auth``). A second destination with the wrong header is
answered 401 by Ariadne: its events go to the dead letters. Ariadne answers ``{"command": "", "data": {}}``,
which is nothing to run.
"""

from __future__ import annotations

import json
import signal
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio

from adapters.mirai.deadletters import DeadLetters
from adapters.mirai.webhook import serve_webhooks
from relay.config import BackoffConfig, OutboxConfig, WebhookConfig, WebhookDestinationConfig
from relay.storage.flushers import serve_outbox_flusher
from relay.storage.outbox import Outbox
from relay.web.metrics import Metrics
from tests.integration.test_ariadne import (
    ARIADNE_PYTHON,
    BOT,
    GROUP,
    GUARD,
    FixedIdentity,
    RecordingDispatcher,
    free_loopback_port,
    group_message_frame,
    stderr_tail,
)

pytestmark = pytest.mark.ariadne

BOT_SCRIPT = Path(__file__).with_name("ariadne_webhook_bot.py")
QUICK = BackoffConfig(initial=0.1, factor=1.5, cap=0.5)


async def read_reports(process: trio.Process, stderr_path: Path, count: int) -> list[dict[str, object]]:
    assert process.stdout is not None
    reports: list[dict[str, object]] = []
    buffer = b""
    while len(reports) < count:
        chunk = await process.stdout.receive_some(65536)
        if not chunk:
            raise AssertionError(f"Ariadne exited (code {process.returncode}):\n" + stderr_tail(stderr_path))
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"ARIADNE_BOT "):
                fields = json.loads(line[len(b"ARIADNE_BOT ") :])
                if "text" in fields:
                    reports.append(dict(fields))
    return reports


@pytest.mark.skipif(not ARIADNE_PYTHON, reason="ARIADNE_PYTHON is unset (.ci/run creates Ariadne's venv and sets it)")
async def test_ariadne_webhook_mode_receives_the_bridges_events(tmp_path: Path) -> None:
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/hook"
    destinations = (
        WebhookDestinationConfig(name="ariadne", url=url, extra_headers={"X-Auth": "hdr"}, backoff=QUICK),
        WebhookDestinationConfig(name="wrong", url=url, extra_headers={"X-Auth": "nope"}, retries=0, backoff=QUICK),
    )
    store = str(tmp_path / "bridge.sqlite3")
    stderr_path = tmp_path / "ariadne.stderr"
    dispatcher = RecordingDispatcher()
    with Outbox(store, OutboxConfig()) as outbox, DeadLetters(store) as dead_letters, trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_outbox_flusher, outbox)
            webhooks = await nursery.start(
                partial(
                    serve_webhooks,
                    config=WebhookConfig(destinations=destinations),
                    outbox=outbox,
                    dead_letters=dead_letters,
                    dispatcher=dispatcher,
                    identity=FixedIdentity(),
                    metrics=Metrics(),
                )
            )
            outbox.append(group_message_frame())
            outbox.append(group_message_frame().replace('"text":"ping"', '"text":"second"'))
            with stderr_path.open("wb") as stderr:
                process = await trio.lowlevel.open_process(
                    [ARIADNE_PYTHON, str(BOT_SCRIPT), str(port), str(BOT), "/hook", "hdr"],
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                )
                try:
                    reports = await read_reports(process, stderr_path, 2)
                    ariadne, wrong = webhooks.destinations
                    while ariadne.statistics().backlog or wrong.statistics().backlog:
                        await trio.sleep(0.05)
                finally:
                    process.send_signal(signal.SIGINT)
                    with trio.move_on_after(10):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
            nursery.cancel_scope.cancel()
        letters = dead_letters.list()
    assert [(r["group"], r["text"], r["source"]) for r in reports] == [(GROUP, "ping", 7), (GROUP, "second", 7)]
    assert dispatcher.calls == []  # Ariadne's answer carries no command
    assert [(letter.destination, letter.error) for letter in letters] == [
        ("wrong", "answered HTTP 401"),
        ("wrong", "answered HTTP 401"),
    ]
