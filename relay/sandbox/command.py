"""``discord-mirai-relay sandbox [CONFIG] [--demo-bot] [--port P] [--data-dir DIR]``: its arguments, its
configuration, and the hand-over to :func:`relay.sandbox.run.run`.

``relay/cli.py`` adds the subcommand with :func:`add_parser` (and its ``-c FILE`` flag) and calls :func:`load`
and :func:`run_sandbox` (with its own logging setup between them). Unlike ``run``, the sandbox reads a
configuration file only when one is named (``CONFIG`` or ``-c``): without one it uses the built-in
configuration, not ``./bridge.toml`` nor ``$DISCORD_MIRAI_RELAY_CONFIG``, which are the real bridge's.
Importing this module is cheap: trio, the emulator and the bridge are imported when the sandbox starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Final

from relay.config import BridgeConfig
from relay.configload import Override, load_config, parse_config
from relay.errors import ConfigError
from relay.sandbox import settings

PROG: Final = "discord-mirai-relay"

DESCRIPTION: Final = (
    "Run the bridge on an embedded, emulated Discord with a chat page in the browser: no Discord account,\n"
    "no token, no network. The page shows a server with channels and members: type as any member, reply,\n"
    "upload an image, delete messages, make members join, leave, change nickname, time out or kick; the\n"
    "bridge gets the gateway events real Discord would send, and a side panel lists every REST call it made.\n"
    "\n"
    "The framework side comes from CONFIG (a bridge.toml: its [mirai] destinations and verify key, mapping,\n"
    "logging) or, without one, from a built-in configuration that dials ws://127.0.0.1:8080/ws with the verify\n"
    f"key {settings.VERIFY_KEY!r}. Its Discord settings are replaced by the emulator's, and its store by the\n"
    "sandbox's own. With --demo-bot a tiny built-in mirai bot replaces the destinations: it echoes\n"
    "(`echo hi`), counts members (`members`), recalls the message you reply `recall` to, and welcomes\n"
    "newcomers.\n"
    "\n"
    "Everything listens on 127.0.0.1 only. The emulated world (and the sandbox bridge's store) is kept in\n"
    "$XDG_DATA_HOME/discord-mirai-relay/sandbox/ (default ~/.local/share/...), so a restart keeps the history;\n"
    "delete that folder to start afresh."
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0–65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0–65535, got {value}")
    return value


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    parents: Sequence[argparse.ArgumentParser],
    formatter_class: type[argparse.HelpFormatter],
) -> argparse.ArgumentParser:
    """Add the ``sandbox`` subcommand (the caller sets its handler)."""
    parser = commands.add_parser(
        "sandbox",
        help="try the bridge on an embedded Discord, with a chat page in the browser (no account, no token)",
        description=DESCRIPTION,
        epilog=(
            "examples:\n"
            f"  {PROG} sandbox --demo-bot          the whole round trip, nothing else needed\n"
            f"  {PROG} sandbox bridge.toml         your framework (as configured) against the emulator\n"
            "\n"
            "exit codes: 0 stopped cleanly, 1 failure (e.g. the port is in use), 2 configuration or usage\n"
            "error, 130 interrupted."
        ),
        formatter_class=formatter_class,
        parents=list(parents),
    )
    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        help="a bridge.toml for the framework side (default: the built-in sandbox configuration)",
    )
    parser.add_argument(
        "--demo-bot",
        action="store_true",
        help="also run the built-in demo bot and point the bridge at it (instead of the configured destinations)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=settings.DEFAULT_PORT,
        help=f"port of the page and the emulated Discord (default {settings.DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="where the sandbox keeps its world and store (default: $XDG_DATA_HOME/discord-mirai-relay/sandbox)",
    )
    return parser


def config_source(args: argparse.Namespace) -> str | None:
    """The file named by ``-c`` (after or before the command) or ``CONFIG``; None: the built-in configuration
    (``./bridge.toml`` and ``$DISCORD_MIRAI_RELAY_CONFIG`` are the real bridge's, and the sandbox needs none)."""
    for candidate in (
        getattr(args, "config_flag", None),
        getattr(args, "config_flag_before_command", None),
        getattr(args, "config", None),
    ):
        if candidate:
            return str(candidate)
    return None


def load(source: str | None, args: argparse.Namespace, env: Mapping[str, str]) -> BridgeConfig:
    """The bridge configuration the sandbox starts from: the file ``source``, or (None) the built-in one; checked
    like ``run``'s, except that no Discord token is needed (the emulator's is used). Raises :class:`ConfigError`."""
    overrides = [
        Override(dotted, value, flag)
        for attribute, dotted, flag in (
            ("log_level", "logging.level", "--log-level"),
            ("log_format", "logging.format", "--log-format"),
        )
        if (value := getattr(args, attribute, None)) is not None
    ]
    if source is None:
        config = parse_config(
            settings.BUILT_IN, source=settings.BUILT_IN_NAME, env=env, overrides=overrides, require_secrets=False
        )
    else:
        config = load_config(source, env=env, overrides=overrides, require_secrets=False)
    if settings.needs_verify_key(config) and not args.demo_bot:
        raise ConfigError(
            source or settings.BUILT_IN_NAME,
            [
                f"mirai.verify_key: missing; set the environment variable {config.mirai.verify_key_env} to the "
                "verifyKey your framework uses (or use --demo-bot, which needs none)"
            ],
        )
    return config


def run_sandbox(args: argparse.Namespace, config: BridgeConfig, env: Mapping[str, str]) -> int:
    """Start the sandbox (logging is set up already) and return the exit code."""
    from relay.sandbox import run  # noqa: PLC0415 (trio, the emulator and the bridge: only when it starts)

    data_dir = os.path.abspath(os.path.expanduser(args.data_dir)) if args.data_dir else settings.sandbox_dir(env)
    plan = run.SandboxPlan(config=config, data_dir=data_dir, port=args.port, demo_bot=args.demo_bot)
    return run.run(plan)
