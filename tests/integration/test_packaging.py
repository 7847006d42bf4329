"""``python -m relay`` works as a real process, with real exit codes. (The wheel install and the zipapp are
exercised by .ci/run, where the slow pip steps belong.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relay import __version__

ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT = 60  # seconds; a hang fails the test instead of blocking the suite


def run_module(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "MIRAI_VERIFY_KEY"}}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        stdin=subprocess.DEVNULL,  # like CI: no terminal, so `init` asks nothing
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def test_python_dash_m_version(tmp_path: Path) -> None:
    result = run_module(["--version"], tmp_path, {})
    assert result.returncode == 0
    assert result.stdout.strip().startswith(f"discord-mirai-relay {__version__}")


def test_python_dash_m_init_and_check(tmp_path: Path) -> None:
    assert run_module(["init"], tmp_path, {}).returncode == 0
    secrets = {"DISCORD_TOKEN": "process-test-token", "MIRAI_VERIFY_KEY": "process-test-verify-key"}
    result = run_module(["check"], tmp_path, secrets)
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    assert "process-test-token" not in result.stdout + result.stderr


def test_python_dash_m_config_error_exit_code(tmp_path: Path) -> None:
    assert run_module(["init"], tmp_path, {}).returncode == 0
    result = run_module(["run"], tmp_path, {})  # no token: refused before anything starts
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
