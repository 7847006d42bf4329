"""``discord-mirai-relay sandbox`` as a real process: it starts, serves the page, and stops on SIGINT and on
SIGTERM; a second sandbox on the same port says so clearly. Timeouts are failure guards, never measurements."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUARD = 60  # seconds
URL_LINE = re.compile(r"open (http://127\.0\.0\.1:(\d+)/sandbox/)")


def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "relay", "sandbox", *args]


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "MIRAI_VERIFY_KEY"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    # a proxy that does not exist: the sandbox must not send its loopback traffic there ("no proxy")
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = env["ALL_PROXY"] = "http://127.0.0.1:9"
    return env


def read_until(process: subprocess.Popen[str], pattern: re.Pattern[str]) -> tuple[re.Match[str], str]:
    """Read the process's stdout until a line matches (or it exits, or the guard passes)."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + GUARD
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(deadline - time.monotonic(), 0)):
                break
            line = process.stdout.readline()
            if not line:
                break
            seen += line
            found = pattern.search(line)
            if found:
                return found, seen
    raise AssertionError(f"no line matching {pattern.pattern!r}; stdout so far:\n{seen}")


@contextmanager
def sandbox_process(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        sandbox_command(*args),
        cwd=tmp_path,
        env=environment(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=GUARD)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_sandbox_starts_serves_and_stops(tmp_path: Path, stop: signal.Signals) -> None:
    with sandbox_process(tmp_path, "--demo-bot", "--port", "0") as process:
        found, _ = read_until(process, URL_LINE)
        with urllib.request.urlopen(found.group(1), timeout=GUARD) as response:
            page = response.read()
        process.send_signal(stop)
        _out, err = process.communicate(timeout=GUARD)
    assert b"<title>discord-mirai-relay sandbox</title>" in page
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "bridge stopped" in err  # the graceful path: the bridge shut down before the emulator
    assert (tmp_path / "data" / "discord-mirai-relay" / "sandbox" / "discord.sqlite3").exists()


def test_a_second_sandbox_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with sandbox_process(tmp_path, "--port", "0") as first:
        found, _ = read_until(first, URL_LINE)
        port = found.group(2)
        second = subprocess.run(
            sandbox_command("--port", port, "--data-dir", str(tmp_path / "other")),
            cwd=tmp_path,
            env=environment(tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GUARD,
            check=False,
        )
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=GUARD)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in second.stderr
    assert "another sandbox" in second.stderr and "--port" in second.stderr
    assert "Traceback" not in second.stderr
    assert "The sandbox is running" not in second.stdout
