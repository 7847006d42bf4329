"""What ``sandbox`` runs (relay/sandbox/settings.py and the command's configuration): its folder, the built-in
configuration, the Discord side replaced by the emulator's (no proxy)."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
import pytest

from relay.cli import build_parser
from relay.config import DestinationConfig
from relay.errors import ConfigError
from relay.sandbox import command, settings


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sandbox", *argv])


def test_the_folder_sits_beside_the_default_store() -> None:
    assert settings.sandbox_dir({"XDG_DATA_HOME": "/data"}) == "/data/discord-mirai-relay/sandbox"
    assert settings.sandbox_dir({"HOME": "/home/u"}) == "/home/u/.local/share/discord-mirai-relay/sandbox"


def test_the_command_line() -> None:
    args = parse()
    assert (args.config, args.demo_bot, args.port, args.data_dir) == (None, False, settings.DEFAULT_PORT, None)
    args = parse("my.toml", "--demo-bot", "--port", "0", "--data-dir", "/tmp/x", "-v")
    assert (args.config, args.demo_bot, args.port, args.data_dir, args.verbose) == ("my.toml", True, 0, "/tmp/x", 1)
    with pytest.raises(SystemExit):
        parse("--port", "70000")


def test_a_configuration_file_only_when_one_is_named() -> None:
    assert command.config_source(parse()) is None  # not ./bridge.toml, not $DISCORD_MIRAI_RELAY_CONFIG
    assert command.config_source(parse("mine.toml")) == "mine.toml"
    assert command.config_source(parse("-c", "flag.toml", "mine.toml")) == "flag.toml"
    assert command.config_source(build_parser().parse_args(["-c", "before.toml", "sandbox"])) == "before.toml"


def test_the_built_in_configuration_needs_no_file_and_no_variable() -> None:
    config = command.load(None, parse(), env={})
    assert config.mirai.verify_key == settings.VERIFY_KEY
    (destination,) = config.mirai.reverse_ws.destinations
    assert (destination.host, destination.port, destination.path) == ("127.0.0.1", 8080, "/ws")
    assert config.discord.token == ""  # the emulator's is put in when it runs
    # the environment and the logging flags apply as to a file
    tuned = command.load(None, parse("--log-level", "DEBUG"), env={"MIRAI_VERIFY_KEY": "mine"})
    assert (tuned.logging.level, tuned.mirai.verify_key) == ("DEBUG", "mine")


def test_a_users_file_needs_no_token_but_its_verify_key(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[discord]\nintents = ["GUILDS", "GUILD_MESSAGES"]\n'
        '[[mirai.reverse_ws.destinations]]\nname = "ariadne"\nhost = "127.0.0.1"\nport = 8000\npath = "/ws"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"MIRAI_VERIFY_KEY.*--demo-bot"):
        command.load(str(path), parse(str(path)), env={})
    config = command.load(str(path), parse(str(path)), env={"MIRAI_VERIFY_KEY": "ariadne-key"})
    assert config.mirai.reverse_ws.destinations[0].label == "ariadne"
    assert config.discord.intents == ("GUILDS", "GUILD_MESSAGES")
    with_demo = command.load(str(path), parse(str(path), "--demo-bot"), env={})
    assert settings.needs_verify_key(with_demo)  # the sandbox gives the demo bot and the bridge a key


def test_the_discord_side_becomes_the_emulators() -> None:
    base = command.load(None, parse(), env={})
    base = attrs.evolve(
        base,
        discord=attrs.evolve(
            base.discord, shard_count=4, shard_ids=(0, 1), api_base_url="https://discord.com/x", proxy="socks5://p:1"
        ),
    )
    demo = DestinationConfig(name="demo-bot", host="127.0.0.1", port=1234, path="/demo-bot")
    config = settings.sandbox_config(
        base,
        api_base_url="http://127.0.0.1:1/api/v10",
        gateway_url="ws://127.0.0.1:1",
        token="sandbox-token",
        store_path="/x/bridge.sqlite3",
        destinations=(demo,),
        verify_key="k",
    )
    discord = config.discord
    assert (discord.api_base_url, discord.gateway_url, discord.token) == (
        "http://127.0.0.1:1/api/v10",
        "ws://127.0.0.1:1",
        "sandbox-token",
    )
    assert (discord.shard_count, discord.shard_ids) == (None, ())
    assert discord.proxy == "none"  # the emulator is on loopback: no proxy, whatever the file or environment say
    assert discord.intents == base.discord.intents  # what the bot may see is the user's choice
    assert config.mirai.reverse_ws.destinations == (demo,)
    assert config.mirai.verify_key == "k"
    assert config.store.path == "/x/bridge.sqlite3"
    kept = settings.sandbox_config(
        base, api_base_url="a", gateway_url="b", token="t", store_path="/s", destinations=None, verify_key=None
    )
    assert kept.mirai == base.mirai


def test_the_sandbox_bridge_serves_health_on_any_free_port_beside_a_real_bridge() -> None:
    from relay.config import BridgeConfig, ServerConfig
    from relay.sandbox.settings import sandbox_config

    base = BridgeConfig(server=ServerConfig(port=8780))
    config = sandbox_config(
        base,
        api_base_url="http://127.0.0.1:1/api/v10",
        gateway_url="ws://127.0.0.1:1",
        token="t",
        store_path="/tmp/x.sqlite3",
    )
    assert config.server.port == 0 and config.server.host == base.server.host
