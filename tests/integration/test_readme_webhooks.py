"""The README's webhook snippets, run as they are written: the Python receiver (both signature styles, and a
refusal of a wrong one) and the curl that posts to a robot with a DingTalk/Feishu-style signature."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from adapters.mirai.deadletters import DeadLetters
from adapters.mirai.webhook import serve_webhooks
from relay.config import OutboxConfig, RobotConfig, RobotSignature, WebhookConfig, WebhookSigning
from relay.storage.flushers import serve_outbox_flusher
from relay.storage.outbox import Outbox
from relay.web.metrics import Metrics
from tests.integration.test_robots import CHANNEL, RecordingService, robots_running, wait_status
from tests.integration.test_webhooks import SECRET, FixedIdentity, RecordingDispatcher, destination, frame, free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet(language: str, first_line: str) -> str:
    for block in re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"README.md has no ```{language} block starting with {first_line!r}")


async def test_the_readme_receiver_checks_both_signature_styles(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "receiver.py"
    code = snippet("python", "# receiver.py")
    assert '("127.0.0.1", 9999)' in code
    script.write_text(code.replace('("127.0.0.1", 9999)', f'("127.0.0.1", {port})'), encoding="utf-8")
    url = f"http://127.0.0.1:{port}/"
    hooks = (
        destination(url, name="standard", signing=WebhookSigning.STANDARD, secret=SECRET),
        destination(url, name="x-signature", signing=WebhookSigning.X_SIGNATURE, secret=SECRET),
        destination(url, name="wrong", signing=WebhookSigning.X_SIGNATURE, secret="not the secret", retries=0),
    )
    store = str(tmp_path / "bridge.sqlite3")
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script)], env={"WEBHOOK_SECRET": SECRET}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with Outbox(store, OutboxConfig()) as outbox, DeadLetters(store) as dead, trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_outbox_flusher, outbox)
                webhooks = await nursery.start(
                    partial(
                        serve_webhooks,
                        config=WebhookConfig(destinations=hooks),
                        outbox=outbox,
                        dead_letters=dead,
                        dispatcher=RecordingDispatcher(),
                        identity=FixedIdentity(),
                        metrics=Metrics(),
                    )
                )
                outbox.append(frame(1))
                while any(d.statistics().backlog for d in webhooks.destinations):
                    await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
            letters = dead.list()
    finally:
        process.kill()
        await process.wait()
    assert process.stdout is not None
    output = (await process.stdout.receive_some(65536)).decode()
    assert output.splitlines() == ["got GroupMessage", "got GroupMessage"]
    assert [(letter.destination, letter.error) for letter in letters] == [("wrong", "answered HTTP 401")]


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl")
async def test_the_readme_curl_posts_to_a_robot(tmp_path: Path) -> None:
    command = snippet("sh", "ts=$(date +%s)")
    service = RecordingService()
    secret = "SECreadme-robot-secret"
    robot = RobotConfig(name="ci", group=CHANNEL, display_name="CI", secret=secret, signature=RobotSignature.ANY)
    with trio.fail_after(30):
        async with robots_running(tmp_path, service, robot) as robots:
            base = str(robots.client.base_url).rstrip("/")
            assert "http://127.0.0.1:8080" in command
            done = await trio.run_process(
                ["bash", "-c", command.replace("http://127.0.0.1:8080", base)],
                env={"ROBOT_CI_SECRET": secret, "PATH": "/usr/bin:/bin"},
                capture_stdout=True,
                check=False,
            )
            answer = done.stdout.decode()
            assert '"status":"queued"' in answer, answer
            delivery_id = re.search(r'"id":"(rd_[^"]+)"', answer)
            assert delivery_id is not None
            await wait_status(robots.client, delivery_id.group(1), "sent")
    assert service.sent == ["**CI**: deploy finished"]
