"""The ``discord-mirai-relay`` command: ``run``, ``check`` and ``init``.

A composition root: it loads the configuration, sets up logging, and hands over to :func:`relay.app.run`.
:func:`main` is testable in-process (``main(["check", path], env={...}) -> exit code``);
:func:`console_main` is the console-script entry point.

Exit codes: 0 ok, 1 runtime failure, 2 configuration or usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs

from relay import __version__
from relay.config import PRIVILEGED_INTENTS, BridgeConfig, DestinationConfig, LogFormat
from relay.configload import ENV_OVERRIDES, LOG_LEVELS, Override, load_config, secrets_of
from relay.errors import ConfigError, RelayError
from relay.logs import TRACE, RedactionFilter, level_number, setup_logging
from relay.template import BRIDGE_TOML

# httpx, trio and the websocket client are imported by the `check --online` probes that use them: `--version`,
# `init` and an offline `check` start without them, and `run` gets what it needs from relay.app.

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "console_main", "main"]

log = logging.getLogger(__name__)

PROG: Final = "discord-mirai-relay"
DEFAULT_CONFIG: Final = "bridge.toml"

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2  # also what argparse uses for usage errors
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, the shell convention

#: Seconds for each probe of ``check --online``; short, because a person is waiting for the answer.
ONLINE_TIMEOUT: Final = 5.0

#: Verify keys shorter than this get a warning from `check` (mirai-api-http generates "INITKEY" + 8 random characters).
WEAK_SECRET_LENGTH: Final = 8

# The level ladder -v / -q move along (TRACE = 5 is relay.logs').
_LADDER: Final = (TRACE, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


# --------------------------------------------------------------------------- argument parsing


def _common_options(*, top_level: bool) -> argparse.ArgumentParser:
    """Options accepted both before and after the command name. Defaults are suppressed so that a value
    given in one place is not reset by the other parser."""
    common = argparse.ArgumentParser(add_help=False)
    # Counts before and after the command land in different attributes and are added up (a subcommand's
    # parser starts from a fresh namespace, so a shared attribute would lose the first count).
    suffix = "_before_command" if top_level else ""
    group = common.add_argument_group("logging options" if top_level else "logging options (also before the command)")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=f"verbose{suffix}",
        default=argparse.SUPPRESS,
        help="log more: each -v lowers the level one step (INFO → DEBUG → TRACE)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        dest=f"quiet{suffix}",
        default=argparse.SUPPRESS,
        help="log less: each -q raises the level one step (INFO → WARNING → ERROR)",
    )
    group.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help=f"log level ({', '.join(LOG_LEVELS)}); overrides RELAY_LOG_LEVEL and [logging] level",
    )
    group.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=argparse.SUPPRESS,
        help="text lines, or one JSON object per line for log shippers; overrides RELAY_LOG_FORMAT and "
        "[logging] format",
    )
    return common


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"the configuration file (default: ./{DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--store-path",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="SQLite file for message ids and the outbox; overrides RELAY_STORE_PATH and [store] path",
    )


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=formatter,
        parents=[_common_options(top_level=True)],
        description=(
            "Run bot frameworks written for mirai-api-http v2 (Graia Ariadne, NoneBot, ...) on Discord.\n"
            "The bridge logs into Discord as a bot and dials each framework's reverse-ws server."
        ),
        epilog=(
            "getting started:\n"
            f"  {PROG} init                 write a commented ./bridge.toml\n"
            f"  DISCORD_TOKEN=... MIRAI_VERIFY_KEY=... {PROG} check --online\n"
            f"  DISCORD_TOKEN=... MIRAI_VERIFY_KEY=... {PROG} run\n"
            "\n"
            "precedence: command-line flags > environment (RELAY_LOG_LEVEL, RELAY_LOG_FORMAT,\n"
            "RELAY_STORE_PATH) > the file > defaults. Secrets come from DISCORD_TOKEN and\n"
            "MIRAI_VERIFY_KEY (names configurable in the file).\n"
            "\n"
            "exit codes: 0 ok, 1 runtime failure, 2 configuration or usage error, 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=_version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    run = commands.add_parser(
        "run",
        help="run the bridge until Ctrl-C or SIGTERM",
        description=(
            "Run the bridge: connect to Discord and to every destination in the configuration, and relay\n"
            "events and commands until interrupted (Ctrl-C or SIGTERM stop it cleanly: the outbox is\n"
            "flushed and the Discord session is left resumable)."
        ),
        epilog="exit codes: 0 stopped cleanly, 1 runtime failure, 2 configuration error, 130 interrupted.",
        formatter_class=formatter,
        parents=[_common_options(top_level=False)],
    )
    _config_argument(run)
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser(
        "check",
        help="validate the configuration (and with --online, the token and destinations)",
        description=(
            "Validate the configuration the same way `run` does and print a summary: destinations,\n"
            "intents, store path. Every problem is listed with its key, e.g.\n"
            '  mirai.reverse_ws.destinations[0].port: expected an integer 1–65535, got "80a"\n'
            "With --online, also log in to Discord's REST API with the token (GET /users/@me) and open\n"
            "a websocket connection to each destination, closed right after the handshake\n"
            f"({ONLINE_TIMEOUT:g} s limit each)."
        ),
        epilog="exit codes: 0 valid (and reachable), 1 an online check failed, 2 configuration error.",
        formatter_class=formatter,
        parents=[_common_options(top_level=False)],
    )
    _config_argument(check)
    check.add_argument(
        "--online",
        action="store_true",
        help="also check the Discord token and that every destination accepts a websocket connection",
    )
    check.set_defaults(handler=_cmd_check)

    init = commands.add_parser(
        "init",
        help="write a fully commented bridge.toml",
        description=(
            "Write a configuration file listing every key with its default and a comment. It holds no\n"
            "secrets: set DISCORD_TOKEN (and MIRAI_VERIFY_KEY) in the environment instead."
        ),
        epilog="exit codes: 0 written, 1 could not write, 2 the file exists (use --force).",
        formatter_class=formatter,
    )
    init.add_argument(
        "path", nargs="?", default=DEFAULT_CONFIG, help=f"where to write it (default: ./{DEFAULT_CONFIG})"
    )
    init.add_argument("-f", "--force", action="store_true", help="overwrite the file if it exists")
    init.set_defaults(handler=_cmd_init)
    return parser


def _version_text() -> str:
    return f"{PROG} {__version__} (Python {platform.python_version()})"


# --------------------------------------------------------------------------- entry points


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    ``env`` replaces ``os.environ`` (tests pass their own).
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
    handler: Callable[[argparse.Namespace, Mapping[str, str]], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return handler(args, environment)
    except BaseExceptionGroup as group:  # from a nursery: Ctrl-C inside it, or several failures at once
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        log.critical("unexpected error; this is a bug, please report it with this traceback", exc_info=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except RelayError as exc:
        log.error("%s", exc)  # a known failure: its message says what to do; no traceback
        return EXIT_FAILURE
    except Exception:
        # Through the redacting log handler, not Python's default hook, so no secret reaches stderr.
        log.critical("unexpected error; this is a bug, please report it with this traceback", exc_info=True)
        return EXIT_FAILURE


def console_main() -> None:
    """Entry point of the ``discord-mirai-relay`` console script and ``python -m relay``."""
    sys.exit(main())


# --------------------------------------------------------------------------- commands


def _cmd_init(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    path = Path(args.path)
    try:
        with path.open("w" if args.force else "x", encoding="utf-8") as file:
            file.write(BRIDGE_TOML)
    except FileExistsError:
        print(f"error: {path} already exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    target = "" if args.path == DEFAULT_CONFIG else f" {args.path}"
    print(f"wrote {path}")
    print("next steps:")
    print(f"  1. edit {path}: point [[mirai.reverse_ws.destinations]] at your framework's websocket server")
    print("  2. export DISCORD_TOKEN=<bot token> MIRAI_VERIFY_KEY=<your framework's verifyKey>")
    print(f"  3. {PROG} check{target} --online")
    print(f"  4. {PROG} run{target}")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = _load(args, env)
    _setup_logging(args, config)
    for line in _summary(args.config, config, env):
        print(line)
    if not args.online:
        return EXIT_OK
    print("online checks:")
    redactor = RedactionFilter(secrets_of(config))
    discord_probe, discord_user_id = _probe_discord(config)
    bot_id = config.mirai.bot_id or discord_user_id
    results = [discord_probe]
    results.extend(_probe_destination(d, config, bot_id) for d in config.mirai.reverse_ws.destinations)
    for probe in results:
        print(f"  [{'ok' if probe.ok else 'FAIL'}] {redactor.redact(probe.text)}")
    return EXIT_OK if all(probe.ok for probe in results) else EXIT_FAILURE


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = _load(args, env)
    _setup_logging(args, config)
    log.info("%s %s starting with %s", PROG, __version__, args.config)
    # The composition root is imported late, so `check` and `init` work without loading any adapter.
    try:
        app = importlib.import_module("relay.app")
    except ModuleNotFoundError as exc:
        if exc.name != "relay.app":
            raise
        log.error("this installation has no relay.app module; reinstall %s", PROG)
        return EXIT_FAILURE
    run_bridge: Callable[[BridgeConfig], int] = app.run
    return run_bridge(config)


# --------------------------------------------------------------------------- helpers


def _load(args: argparse.Namespace, env: Mapping[str, str]) -> BridgeConfig:
    overrides: list[Override] = []
    for attribute, dotted, flag in (
        ("log_level", "logging.level", "--log-level"),
        ("log_format", "logging.format", "--log-format"),
        ("store_path", "store.path", "--store-path"),
    ):
        value = getattr(args, attribute, None)
        if value is not None:
            overrides.append(Override(dotted, value, flag))
    return load_config(args.config, env=env, overrides=overrides, require_secrets=True)


def _setup_logging(args: argparse.Namespace, config: BridgeConfig) -> None:
    level = level_number(config.logging.level)
    quiet = getattr(args, "quiet", 0) + getattr(args, "quiet_before_command", 0)
    verbose = getattr(args, "verbose", 0) + getattr(args, "verbose_before_command", 0)
    shift = quiet - verbose
    if shift:
        # Levels off the ladder (none today) start from the nearest step below them.
        step = max(i for i, rung in enumerate(_LADDER) if rung <= level) if level >= TRACE else 0
        level = _LADDER[min(max(step + shift, 0), len(_LADDER) - 1)]
    setup_logging(level, config.logging.format, secrets_of(config))


def _print_config_error(exc: ConfigError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    print(f"(run `{PROG} check --help` for how configuration is read)", file=sys.stderr)


def _summary(source: str, config: BridgeConfig, env: Mapping[str, str]) -> list[str]:
    discord, mirai = config.discord, config.mirai
    token_from = (
        f"environment variable {discord.token_env}" if env.get(discord.token_env) else "the file ([discord] token)"
    )
    privileged = sorted(PRIVILEGED_INTENTS.intersection(discord.intents))
    shards = "auto (Discord's recommendation)" if discord.shard_count is None else str(discord.shard_count)
    if discord.shard_ids:
        shards += f", running {', '.join(map(str, discord.shard_ids))}"
    if not mirai.enable_verify:
        verify = "off"
    elif env.get(mirai.verify_key_env):
        verify = f"on, key from environment variable {mirai.verify_key_env}"
    else:
        verify = "on, key from the file ([mirai] verify_key)"
    lines = [
        f"{source}: configuration is valid",
        f"  discord token:  from {token_from}",
        f"  intents:        {', '.join(discord.intents)} (= {discord.intents_value})",
    ]
    if privileged:
        lines.append(f"                  privileged, enable them in the Developer Portal: {', '.join(privileged)}")
    lines += [
        f"  shards:         {shards}",
        f"  discord API:    {discord.api_base_url}",
        f"  gateway:        {discord.gateway_url or 'from GET /gateway/bot'}",
        f"  mirai verify:   {verify}; single mode {'on' if mirai.single_mode else 'off'}",
        f"  bot id (qq):    {mirai.bot_id or 'the Discord bot user id'}",
        f"  destinations:   {len(mirai.reverse_ws.destinations)}",
    ]
    for destination in mirai.reverse_ws.destinations:
        url = f"{destination.protocol.value}://{destination.host}:{destination.port}{destination.path}"
        lines.append(f"    - {destination.label}: {url}")
    lines += [
        f"  store:          {config.store.path}",
        f"  outbox:         up to {config.outbox.max_events} events, {config.outbox.max_age_seconds} s",
        f"  mapping:        threads {config.mapping.threads.value}, "
        f"long messages {config.mapping.long_messages.value}, guild events to {config.mapping.guild_events}",
        f"  logging:        {config.logging.level}, {config.logging.format.value}",
    ]
    if mirai.enable_verify and len(mirai.verify_key) < WEAK_SECRET_LENGTH:
        lines.append(
            f"  warning: the verify key has fewer than {WEAK_SECRET_LENGTH} characters; it is easy to guess, and "
            "every log line containing it is masked"
        )
    overridden = [var for var in ENV_OVERRIDES if env.get(var)]
    if overridden:
        lines.append(f"  from the environment: {', '.join(overridden)}")
    return lines


@attrs.frozen
class _Probe:
    ok: bool
    text: str


def _probe_discord(config: BridgeConfig) -> tuple[_Probe, int]:
    """Log in to the REST API with the token: GET /users/@me (discord.md, endpoints: "get bot profile").
    Returns the result and the bot's user id (0 when unknown)."""
    import httpx  # noqa: PLC0415 (see the imports at the top)

    from adapters.discord import USER_AGENT  # noqa: PLC0415 (the REST client's, so the probe looks like `run`)

    discord = config.discord
    url = f"{discord.api_base_url}/users/@me"
    headers = {"Authorization": f"Bot {discord.token}", "User-Agent": USER_AGENT}

    try:
        with httpx.Client(timeout=ONLINE_TIMEOUT, follow_redirects=False) as client:
            response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return _Probe(False, f"discord: cannot reach {url}: {type(exc).__name__}: {exc}"), 0
    if response.status_code == 200:
        try:
            user = response.json()
            name, user_id = str(user["username"]), int(user["id"])
        except (ValueError, KeyError, TypeError):
            return _Probe(False, f"discord: {url} answered 200 but not with a user object"), 0
        return _Probe(True, f"discord: token accepted, logged in as {name} (id {user_id})"), user_id
    if response.status_code == 401:
        text = (
            "discord: the token was rejected (HTTP 401); reset it in the Developer Portal (Bot → Reset Token) "
            f"and set {discord.token_env}"
        )
        return _Probe(False, text), 0
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict) and "message" in body:
            detail = f": {body['message']}"
    except ValueError:
        pass
    return _Probe(False, f"discord: {url} answered HTTP {response.status_code}{detail}"), 0


def _probe_destination(destination: DestinationConfig, config: BridgeConfig, bot_id: int) -> _Probe:
    """Open a websocket to one destination exactly as ``run`` dials it (the same client, URL, headers and TLS
    settings), then close at once (code 1000). The framework sees a short connection that never verifies.
    ``bot_id`` is 0 when unknown (no login)."""
    import trio  # noqa: PLC0415 (see the imports at the top)

    from adapters.mirai.reverse_ws import (  # noqa: PLC0415
        destination_endpoint,
        destination_headers,
        ssl_context_for,
    )
    from relay.errors import WebSocketHandshakeFailed  # noqa: PLC0415
    from relay.wire import frames  # noqa: PLC0415
    from relay.wire.client import connect_websocket  # noqa: PLC0415

    where = f"destination {destination.label}"
    endpoint = destination_endpoint(config.mirai, destination)

    async def handshake() -> None:
        with trio.fail_after(ONLINE_TIMEOUT):
            ws = await connect_websocket(
                endpoint,
                max_message_size=config.mirai.max_frame_bytes,
                headers=destination_headers(config.mirai, destination, bot_id),
                ssl_context=ssl_context_for(destination),
                peer=endpoint.display,
            )
            await ws.aclose(frames.CLOSE_NORMAL)  # 1000: nothing to resume on the framework side

    try:
        trio.run(handshake)
    except WebSocketHandshakeFailed as exc:
        if exc.status is not None:
            return _Probe(
                False,
                f"{where}: the server refused the websocket upgrade with HTTP {exc.status}; "
                "check path, extra_parameters and extra_headers",
            )
        if exc.reason.startswith("connection to"):
            return _Probe(
                False,
                f"{where}: cannot connect to {destination.host}:{destination.port}: connection refused; "
                "is the framework's websocket server running?",
            )
        return _Probe(False, f"{where}: websocket handshake failed: {exc.reason}")
    except trio.TooSlowError:
        return _Probe(False, f"{where}: no websocket handshake within {ONLINE_TIMEOUT:g} s")
    except RelayError as exc:  # e.g. an unreadable ca_file
        return _Probe(False, f"{where}: {exc}")
    return _Probe(True, f"{where}: websocket handshake accepted at {endpoint.display}")


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]  # query parameters may carry credentials
