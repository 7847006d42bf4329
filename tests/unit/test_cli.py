"""The command line, run in-process through ``main(argv, env=...)``."""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import __version__
from relay.cli import main
from relay.config import DiscordCacheConfig
from relay.logs import TRACE
from relay.storage.idmap import open_small_ids
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


def test_check_prints_the_memory_the_cache_bounds_imply(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path.write_text(BRIDGE_TOML.replace("max_members = 100000", "max_members = 200000"), encoding="utf-8")
    assert main(["check", str(config_path)], env=ENV) == 0
    out = capsys.readouterr().out
    assert "discord cache:  200,000 members (25,000 a guild)" in out
    assert f"up to ~{DiscordCacheConfig(max_members=200_000).estimated_bytes() / 2**20:.0f} MiB when full" in out


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


# --------------------------------------------------------------------------- issue 16: -c, proxy, presence


def test_config_path_precedence_flag_positional_environment_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("flag.toml", "positional.toml", "env.toml", "bridge.toml"):
        assert main(["init", name, "--no-input"], env={}) == 0
    capsys.readouterr()

    def checked(argv: list[str], env: dict[str, str]) -> str:
        assert main(argv, env={**ENV, **env}) == 0
        return capsys.readouterr().out.splitlines()[0]

    from_env = {"DISCORD_MIRAI_RELAY_CONFIG": "env.toml"}
    assert checked(["check", "-c", "flag.toml", "positional.toml"], from_env) == "flag.toml: configuration is valid"
    assert checked(["--config", "flag.toml", "check", "positional.toml"], from_env).startswith("flag.toml")
    assert checked(["check", "positional.toml"], from_env).startswith("positional.toml")
    assert checked(["check"], from_env).startswith("env.toml")
    assert checked(["check"], {}).startswith("bridge.toml")
    assert checked(["check"], {"DISCORD_MIRAI_RELAY_CONFIG": ""}).startswith("bridge.toml")


def test_help_names_the_config_precedence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--help"], env={}) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "-c FILE, --config FILE" in out
    assert "-c FILE, else the CONFIG argument, else $DISCORD_MIRAI_RELAY_CONFIG, else ./bridge.toml" in out


def test_check_prints_the_proxy_and_the_presence(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = config_path.read_text(encoding="utf-8")
    text = text.replace('proxy = ""', 'proxy = "socks5h://alice:pr0xy-pw@127.0.0.1:1080"')
    text = text.replace('activity = ""', 'activity = "playing"').replace('text = ""', 'text = "with mirai"')
    config_path.write_text(text, encoding="utf-8")
    assert main(["check", str(config_path)], env=ENV) == 0
    out = capsys.readouterr().out
    assert "  proxy:          socks5h://alice:***@127.0.0.1:1080 (from [discord] proxy)\n" in out
    assert '  presence:       online, Playing "with mirai"\n' in out
    assert "pr0xy-pw" not in out


@pytest.mark.parametrize(
    ("value", "env", "shown"),
    [
        ("", {"HTTPS_PROXY": "http://10.0.0.1:3128"}, "http://10.0.0.1:3128 (from environment variable HTTPS_PROXY)"),
        ("none", {"HTTPS_PROXY": "http://10.0.0.1:3128"}, 'none ([discord] proxy = "none")'),
        (
            "",
            {"ALL_PROXY": "socks5h://[::1]:1080", "NO_PROXY": "discord.com"},
            "",  # the API and the gateway differ: two lines
        ),
        ("", {}, "none"),
    ],
)
def test_check_says_which_proxy_from_where(
    config_path: Path, capsys: pytest.CaptureFixture[str], value: str, env: dict[str, str], shown: str
) -> None:
    text = config_path.read_text(encoding="utf-8").replace('proxy = ""', f'proxy = "{value}"')
    config_path.write_text(text, encoding="utf-8")
    assert main(["check", str(config_path)], env={**ENV, **env}) == 0
    out = capsys.readouterr().out
    if shown:
        assert f"  proxy:          {shown}\n" in out
    else:
        assert "  proxy (API):    none (NO_PROXY excludes discord.com from ALL_PROXY)\n" in out
        assert "  proxy (gateway): socks5h://[::1]:1080 (from environment variable ALL_PROXY)\n" in out


def test_an_unusable_environment_proxy_is_a_configuration_error(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(config_path)], env={**ENV, "HTTPS_PROXY": "socks4://u:env-pw@h:1"}) == 2
    err = capsys.readouterr().err
    assert "environment variable HTTPS_PROXY: unsupported scheme socks4://" in err
    assert "env-pw" not in err


# --------------------------------------------------------------------------- issue 16: init


@pytest.mark.parametrize("name", ["ariadne", "other"])
def test_init_framework_writes_its_default_server(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.configload import load_config
    from relay.frameworks import FRAMEWORKS

    path = tmp_path / "bridge.toml"
    assert main(["init", str(path), "--framework", name], env={}) == 0
    framework = FRAMEWORKS[name]
    (destination,) = load_config(path, env=ENV).mirai.reverse_ws.destinations
    assert (destination.host, destination.port, destination.path) == (framework.host, framework.port, framework.path)
    assert load_config(path, env=ENV).mirai.single_mode is framework.single_mode
    assert f"start your bot with its websocket server ({framework.framework_side})" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["ariadne-ws", "ariadne-http", "ariadne-webhook", "nonebot"])
def test_init_framework_for_a_framework_that_dials_the_bridge(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every framework the README's table lists has its preset: the adapters it speaks, no reverse-ws
    destination, mirai-api-http's default port its client dials, and its webhook receiver when it has one."""
    from relay.configload import load_config
    from relay.frameworks import FRAMEWORKS

    path = tmp_path / "bridge.toml"
    assert main(["init", str(path), "--framework", name], env={}) == 0
    framework = FRAMEWORKS[name]
    config = load_config(path, env=ENV)
    assert config.mirai.adapters == framework.adapters
    assert config.mirai.reverse_ws.destinations == ()
    assert (config.mirai.ws.port, config.mirai.http.port) == (8080, 8080)  # the clients' default, one port
    webhooks = [d.url for d in config.mirai.webhook.destinations]
    assert webhooks == ([framework.webhook_url] if framework.webhook_url else [])
    assert f"point your bot at the bridge ({framework.framework_side})" in capsys.readouterr().out
    assert main(["check", str(path)], env=ENV) == 0


def test_plain_init_matches_the_readme_example(tmp_path: Path) -> None:
    """The README's Ariadne example (WebsocketServerConfig() on 127.0.0.1:8000) is what a plain init dials."""
    from relay.configload import load_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "WebsocketServerConfig()))" in readme  # the default path, "/"
    path = tmp_path / "bridge.toml"
    assert main(["init", str(path)], env={}, stdin=io.StringIO("")) == 0  # not a terminal: no questions
    (destination,) = load_config(path, env=ENV).mirai.reverse_ws.destinations
    assert f"**{destination.host}:{destination.port}**" in readme
    assert destination.path == "/"


def test_init_in_a_terminal_asks_framework_proxy_and_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from relay.configload import load_config

    master, slave = os.openpty()
    try:
        answers = "70\nother\nsocks4://nope\nsocks5h://alice:pw-in-file@127.0.0.1:1080\ndata/store.db\n"
        os.write(master, answers.encode())
        with os.fdopen(slave, "r", encoding="utf-8", closefd=False) as terminal:
            assert terminal.isatty()
            path = tmp_path / "bridge.toml"
            assert main(["init", str(path)], env={"HOME": "/home/u"}, stdin=terminal) == 0
    finally:
        os.close(master)
        os.close(slave)
    out = capsys.readouterr().out
    from relay.frameworks import FRAMEWORKS

    assert "Which bot framework will use the bridge?" in out
    assert f"Please answer a number from 1 to {len(FRAMEWORKS)}" in out  # "7" was asked again
    assert "that proxy URL: unsupported scheme socks4://" in out  # and so was the bad proxy
    assert "the password will be written into the configuration file" in out
    assert "Framework [1]: " in out
    assert "Store path [/home/u/.local/share/discord-mirai-relay/bridge.sqlite3]: " in out
    config = load_config(path, env=ENV)
    (destination,) = config.mirai.reverse_ws.destinations
    assert (destination.host, destination.port) == ("localhost", 8080)
    assert config.discord.proxy == "socks5h://alice:pw-in-file@127.0.0.1:1080"
    assert config.store.path == str(tmp_path / "data" / "store.db")


def test_init_in_a_terminal_with_defaults_and_end_of_input(tmp_path: Path) -> None:
    from relay.template import BRIDGE_TOML

    master, slave = os.openpty()
    try:
        os.write(master, b"\n\n\n")
        with os.fdopen(slave, "r", encoding="utf-8", closefd=False) as terminal:
            assert main(["init", str(tmp_path / "a.toml")], env={}, stdin=terminal) == 0
            os.write(master, b"\x04")  # Ctrl-D at the first question: nothing written
            assert main(["init", str(tmp_path / "b.toml")], env={}, stdin=terminal) == 1
    finally:
        os.close(master)
        os.close(slave)
    assert (tmp_path / "a.toml").read_text(encoding="utf-8") == BRIDGE_TOML
    assert not (tmp_path / "b.toml").exists()


def test_init_refuses_before_asking_when_the_file_exists(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "r", encoding="utf-8", closefd=False) as terminal:
            assert main(["init", str(config_path)], env={}, stdin=terminal) == 2
    finally:
        os.close(master)
        os.close(slave)
    captured = capsys.readouterr()
    assert "already exists" in captured.err
    assert "Which bot framework" not in captured.out


# --------------------------------------------------------------------------- ids ([mirai] ids = "small")

CHANNEL = 1_234_567_890_123_456_789
USER = 1_100_000_000_000_000_001


def small_config(config_path: Path, tmp_path: Path) -> Path:
    text = config_path.read_text(encoding="utf-8").replace('ids = "snowflake"', 'ids = "small"')
    config_path.write_text(text.replace('path = ""', f'path = "{tmp_path / "bridge.sqlite3"}"', 1), encoding="utf-8")
    return config_path


def test_check_prints_the_id_mode_and_how_to_find_a_channels_id(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(config_path)], env=ENV) == 0
    assert "  ids:            snowflake (frameworks see Discord ids as they are, 64-bit)" in capsys.readouterr().out
    assert main(["check", str(small_config(config_path, tmp_path))], env=ENV) == 0
    out = capsys.readouterr().out
    assert "  ids:            small (every Discord id shown as a 16-digit id below 2^53" in out
    assert f"discord-mirai-relay ids {config_path} --id CHANNEL_ID" in out
    assert "bot id (qq):    the small id of the Discord bot user id" in out


def test_ids_shows_presented_ids_both_ways_without_writing(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_config(config_path, tmp_path)
    with open_small_ids(str(tmp_path / "bridge.sqlite3"), write_lock=threading.Lock()) as ids:
        channel = ids.present(CHANNEL)
        user_will_be = ids.preview(USER)
    assert main(["ids", str(path), "--id", str(CHANNEL), "--id", str(channel), "--id", str(USER)], env={}) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f'{path}: [mirai] ids = "small"; 1 presented ids in {tmp_path / "bridge.sqlite3"}'
    assert out[1:] == [
        f"  {channel}  Discord id {CHANNEL}",
        f"  {channel}  Discord id {CHANNEL}",
        f"  {user_will_be}  Discord id {USER}  (not seen by the bridge yet: it gets this id when it is)",
    ]
    assert main(["ids", str(path)], env={}) == 0  # no --id: every pair
    assert capsys.readouterr().out.splitlines()[1:] == [f"  {channel}  Discord id {CHANNEL}"]
    with open_small_ids(str(tmp_path / "bridge.sqlite3"), write_lock=threading.Lock()) as ids:
        assert len(ids) == 1  # the look-ups wrote nothing


def test_ids_of_an_unknown_presented_id_exits_1(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_config(config_path, tmp_path)
    assert main(["ids", str(path), "--id", "1000000000000042"], env={}) == 1
    assert "  1000000000000042: not an id this bridge presented" in capsys.readouterr().out


def test_ids_in_snowflake_mode_says_so(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ids", str(config_path), "--store-path", str(config_path.parent / "s.sqlite3")], env={}) == 0
    assert "frameworks see Discord ids as they are" in capsys.readouterr().out
