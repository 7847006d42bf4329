"""scripts/systemd/discord-mirai-relay.service: what the bridge relies on is in it, and systemd accepts it
(``systemd-analyze verify``, where the machine has it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "scripts" / "systemd" / "discord-mirai-relay.service"


def service_settings() -> dict[str, list[str]]:
    """The [Service] section: each key with all its values in order (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    service = service_settings()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0


def test_exec_start_runs_the_console_script_with_the_system_config() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    (command,) = service_settings()["ExecStart"]
    program, *arguments = command.split()
    assert Path(program).name in scripts
    assert arguments == ["run", "-c", "/etc/discord-mirai-relay/bridge.toml"]


def test_secrets_come_from_an_environment_file_and_the_store_from_the_state_directory() -> None:
    service = service_settings()
    assert service["EnvironmentFile"] == ["/etc/discord-mirai-relay/secrets.env"]
    (state,) = service["StateDirectory"]
    assert f"RELAY_STORE_PATH=%S/{state}/bridge.sqlite3" in service["Environment"]
    assert service["ProtectSystem"] == ["strict"]  # so the state directory must be the only writable place
    assert service["RestartPreventExitStatus"] == ["2"]  # the CLI's exit code for a configuration error


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point it at this Python for the check
    text = UNIT.read_text(encoding="utf-8").replace(
        "/opt/discord-mirai-relay/bin/discord-mirai-relay", sys.executable, 1
    )
    copy = tmp_path / UNIT.name
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # no warning about our unit either
