"""The command line, run in-process through ``main(argv, env=...)``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import __version__
from relay.cli import main
from relay.logs import TRACE
from relay.template import BRIDGE_TOML

ENV = {"DISCORD_TOKEN": "cli-test-token-value", "MIRAI_VERIFY_KEY": "cli-test-verify-key", "HOME": "/home/u"}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`check` and `run` install a root handler; put the root logger back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.toml"
    assert main(["init", str(path)], env=ENV) == 0
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"], env={}) == 0
    assert capsys.readouterr().out.startswith(f"discord-mirai-relay {__version__} ")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={}) == 2
    err = capsys.readouterr().err
    assert "usage: discord-mirai-relay" in err
    assert "run" in err
    assert "check" in err
    assert "init" in err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--nope"], env={}) == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["commands:", "exit codes:", "precedence:", "DISCORD_TOKEN"]),
        (["run"], ["Run the bridge", "--store-path", "--log-format", "exit codes:"]),
        (["check"], ["--online", "GET /users/@me", "expected an integer 1–65535"]),
        (["init"], ["--force", "no\nsecrets"]),
    ],
)
def test_help_of_every_command(argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"], env={}) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def test_init_writes_the_template_then_check_accepts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"], env={}) == 0
    assert (tmp_path / "bridge.toml").read_text(encoding="utf-8") == BRIDGE_TOML
    assert "next steps" in capsys.readouterr().out

    assert main(["check"], env=ENV) == 0
    out = capsys.readouterr().out
    assert "bridge.toml: configuration is valid" in out
    assert "127.0.0.1:8000/: ws://127.0.0.1:8000/" in out
    assert "from environment variable DISCORD_TOKEN" in out
    assert "MESSAGE_CONTENT" in out
    assert "/home/u/.local/share/discord-mirai-relay/bridge.sqlite3" in out
    assert ENV["DISCORD_TOKEN"] not in out
    assert ENV["MIRAI_VERIFY_KEY"] not in out


def test_init_refuses_to_overwrite(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path.write_text("# mine\n", encoding="utf-8")
    assert main(["init", str(config_path)], env={}) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert config_path.read_text(encoding="utf-8") == "# mine\n"
    assert main(["init", "--force", str(config_path)], env={}) == 0
    assert config_path.read_text(encoding="utf-8") == BRIDGE_TOML


def test_init_into_missing_folder_is_a_runtime_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "no" / "such" / "bridge.toml")], env={}) == 1
    assert "cannot write" in capsys.readouterr().err


def test_check_broken_file_exits_2_and_names_the_key(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BRIDGE_TOML.replace("port = 8000", 'port = "80a"').replace("large_threshold = 250", "large_treshold = 250")
    config_path.write_text(text, encoding="utf-8")
    assert main(["check", str(config_path)], env=ENV) == 2
    err = capsys.readouterr().err
    assert "2 configuration problems" in err
    assert 'discord.large_treshold: unknown key (did you mean "large_threshold"?)' in err
    assert 'mirai.reverse_ws.destinations[0].port: expected an integer 1–65535, got "80a"' in err


def test_check_bad_toml_exits_2_with_line(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path.write_text("[discord\n", encoding="utf-8")
    assert main(["check", str(config_path)], env=ENV) == 2
    assert "line 1, column" in capsys.readouterr().err


def test_check_missing_token_names_the_variable(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(config_path)], env={"MIRAI_VERIFY_KEY": "k" * 16}) == 2
    err = capsys.readouterr().err
    assert "discord.token: missing; set the environment variable DISCORD_TOKEN" in err


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "absent.toml")], env=ENV) == 2
    assert "file not found" in capsys.readouterr().err


def test_run_with_a_config_error_exits_2_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "absent.toml")], env=ENV) == 2
    assert "file not found" in capsys.readouterr().err


def test_run_without_token_exits_2(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(config_path)], env={}) == 2
    assert "DISCORD_TOKEN" in capsys.readouterr().err


def test_cli_flags_override_environment(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {**ENV, "RELAY_LOG_LEVEL": "ERROR", "RELAY_STORE_PATH": "/from/env.sqlite3"}
    assert main(["check", str(config_path)], env=env) == 0
    out = capsys.readouterr().out
    assert "logging:        ERROR, text" in out
    assert "store:          /from/env.sqlite3" in out
    assert "from the environment: RELAY_LOG_LEVEL, RELAY_STORE_PATH" in out

    argv = ["check", str(config_path), "--log-level", "warning", "--log-format", "json", "--store-path", "/cli.db"]
    assert main(argv, env=env) == 0
    out = capsys.readouterr().out
    assert "logging:        WARNING, json" in out
    assert "store:          /cli.db" in out


def test_bad_cli_override_is_a_config_error(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(config_path), "--log-level", "chatty"], env=ENV) == 2
    assert "logging.level (from --log-level): expected one of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ([], logging.INFO),
        (["-v"], logging.DEBUG),
        (["-vv"], TRACE),
        (["-vvvv"], TRACE),
        (["-q"], logging.WARNING),
        (["-qq"], logging.ERROR),
        (["-v", "-q"], logging.INFO),
        (["--log-level", "ERROR", "-v"], logging.WARNING),
    ],
)
def test_verbosity_flags(config_path: Path, flags: list[str], level: int) -> None:
    assert main(["check", str(config_path), *flags], env=ENV) == 0
    assert logging.getLogger().level == level


def test_verbosity_before_the_command(config_path: Path) -> None:
    assert main(["-q", "check", str(config_path)], env=ENV) == 0
    assert logging.getLogger().level == logging.WARNING


def test_verbosity_before_and_after_the_command_adds_up(config_path: Path) -> None:
    assert main(["-v", "check", str(config_path), "-v"], env=ENV) == 0
    assert logging.getLogger().level == TRACE


def test_weak_verify_key_warning(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(config_path)], env={**ENV, "MIRAI_VERIFY_KEY": "1234"}) == 0
    assert "warning: the verify key has fewer than 8 characters" in capsys.readouterr().out
