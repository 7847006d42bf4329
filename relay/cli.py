"""The ``discord-mirai-relay`` command: ``run``, ``check``, ``init``, ``sandbox`` and the offline ``ids``,
``webhooks`` and ``store check|repair`` commands.

A composition root: it loads the configuration, sets up logging, and hands over to :func:`relay.main.run`.
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
from typing import Final, TextIO

from relay import __version__
from relay.check import summary_lines
from relay.config import BridgeConfig, DiscordConfig, IdMode, LogFormat
from relay.configload import LOG_LEVELS, Override, default_store_path, load_config, secrets_of
from relay.egress import DEFAULT_GATEWAY_URL, DiscordEgress
from relay.errors import ConfigError, InvalidProxyURL, RelayError
from relay.frameworks import DEFAULT_FRAMEWORK, FRAMEWORKS, Framework
from relay.logs import TRACE, RedactionFilter, level_number, setup_logging
from relay.sandbox import command as sandbox_command
from relay.template import render_template
from relay.wizard import InitAnswers, ask_init_questions

# relay.online (trio, httpx, the adapters) is imported by `check --online` only: `--version`, `init` and an offline
# `check` start without them, and `run` gets what it needs from relay.main.

Handler = Callable[[argparse.Namespace, Mapping[str, str], TextIO], int]

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "console_main", "main"]

log = logging.getLogger(__name__)

PROG: Final = "discord-mirai-relay"
DEFAULT_CONFIG: Final = "bridge.toml"
#: names the configuration file when neither -c nor the positional argument does (the program's own name, so it
#: cannot be mistaken for another tool's; the RELAY_* variables override values *inside* the file)
CONFIG_ENV: Final = "DISCORD_MIRAI_RELAY_CONFIG"

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2  # also what argparse uses for usage errors
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, the shell convention

#: Seconds for each probe of ``check --online`` (relay.online.ONLINE_TIMEOUT, without importing it here).
ONLINE_TIMEOUT: Final = 5.0

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


_CONFIG_PRECEDENCE: Final = f"-c FILE, else the CONFIG argument, else ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}"


def _config_flag(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        dest="config_flag" + ("_before_command" if top_level else ""),
        default=argparse.SUPPRESS,
        help=f"the configuration file ({_CONFIG_PRECEDENCE})",
    )


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        metavar="CONFIG",
        help=f"the configuration file ({_CONFIG_PRECEDENCE})",
    )
    _config_flag(parser, top_level=False)
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
            f"  {PROG} sandbox --demo-bot   try it on an embedded Discord: no account, no token\n"
            f"  {PROG} init                 write a commented ./bridge.toml\n"
            f"  DISCORD_TOKEN=... MIRAI_VERIFY_KEY=... {PROG} check --online\n"
            f"  DISCORD_TOKEN=... MIRAI_VERIFY_KEY=... {PROG} run\n"
            "\n"
            "precedence: command-line flags > environment (RELAY_LOG_LEVEL, RELAY_LOG_FORMAT,\n"
            "RELAY_STORE_PATH) > the file > defaults. Secrets come from DISCORD_TOKEN and\n"
            "MIRAI_VERIFY_KEY (names configurable in the file).\n"
            f"the configuration file: -c FILE > the CONFIG argument > ${CONFIG_ENV} > ./{DEFAULT_CONFIG}.\n"
            "\n"
            "exit codes: 0 ok, 1 runtime failure, 2 configuration or usage error, 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=_version_text())
    _config_flag(parser, top_level=True)
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
            "intents, the proxy for Discord, the presence, the store path. Every problem is listed with\n"
            "its key, e.g.\n"
            '  mirai.reverse_ws.destinations[0].port: expected an integer 1–65535, got "80a"\n'
            "With --online, also prove what `run` needs, through the same proxy: the token\n"
            "(GET /users/@me); the privileged intents enabled for the application (GET\n"
            "/applications/@me); the gateway (open it, read Hello, close); a server where the bot\n"
            "has the permissions the bridge uses (else the invite URL); and with each destination a\n"
            "complete verify round trip (its verifyKey and qq checked, answered as `run` answers,\n"
            f"closed with 1000). {ONLINE_TIMEOUT:g} s limit each; every failure is one line saying what to do."
        ),
        epilog="exit codes: 0 valid (and reachable), 1 an online check failed, 2 configuration error.",
        formatter_class=formatter,
        parents=[_common_options(top_level=False)],
    )
    _config_argument(check)
    check.add_argument(
        "--online",
        action="store_true",
        help="also check the token, intents, gateway, permissions and a verify round trip with every destination",
    )
    check.set_defaults(handler=_cmd_check)

    frameworks = "\n".join(f"  {f.name:<16} {f.title}: {f.where}" for f in FRAMEWORKS.values())
    init = commands.add_parser(
        "init",
        help="write a fully commented bridge.toml",
        description=(
            "Write a configuration file listing every key with its default and a comment. It holds no\n"
            "secrets: set DISCORD_TOKEN (and MIRAI_VERIFY_KEY) in the environment instead.\n"
            "It is set up for the framework (--framework): the adapters it speaks and where it meets the bridge:\n"
            f"{frameworks}\n"
            "In a terminal, a plain `init` asks which framework, the proxy for Discord and where the\n"
            f"store goes; otherwise (or with --framework or --no-input) it writes the {DEFAULT_FRAMEWORK} defaults."
        ),
        epilog="exit codes: 0 written, 1 could not write (or no answer), 2 the file exists (use --force).",
        formatter_class=formatter,
    )
    init.add_argument(
        "config", nargs="?", default=None, metavar="PATH", help=f"where to write it ({_CONFIG_PRECEDENCE})"
    )
    _config_flag(init, top_level=False)
    init.add_argument("-f", "--force", action="store_true", help="overwrite the file if it exists")
    init.add_argument(
        "--framework",
        choices=list(FRAMEWORKS),
        default=None,
        help=f"set the file up for this framework: its adapters, its server or receiver (default: {DEFAULT_FRAMEWORK})",
    )
    init.add_argument("--no-input", action="store_true", help="ask nothing, even in a terminal")
    init.set_defaults(handler=_cmd_init)

    ids = commands.add_parser(
        "ids",
        help='show the ids frameworks see for Discord ids ([mirai] ids = "small")',
        description=(
            'With [mirai] ids = "small" frameworks see every Discord id (channel, user, the bot) as a\n'
            "16-digit number kept in the store. This reads the store, without writing, and prints for each\n"
            "--id its counterpart: a Discord id's presented id (also for one the bridge has not seen yet:\n"
            "the number it will get), or a presented id's Discord id. Without --id it lists every pair.\n"
            "Safe while the bridge runs. Needs no secrets."
        ),
        epilog="exit codes: 0 done, 1 a presented id is unknown or the store is unreadable, 2 configuration error.",
        formatter_class=formatter,
        parents=[_common_options(top_level=False)],
    )
    _config_argument(ids)
    ids.add_argument(
        "--id",
        dest="ids",
        metavar="ID",
        action="append",
        type=int,
        default=[],
        help="a Discord id (e.g. a channel's, from Discord's Copy Channel ID) or a presented id; repeatable",
    )
    ids.set_defaults(handler=_cmd_ids)
    webhooks = commands.add_parser(
        "webhooks",
        help="list or re-send the webhook dead letters (offline: opens the store only)",
        formatter_class=formatter,
        parents=[_common_options(top_level=False)],
    )
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    dead = webhook_commands.add_parser("dead-letters", help="list the events webhook destinations gave up on")
    _config_argument(dead)
    dead.set_defaults(handler=_cmd_webhooks)
    replay = webhook_commands.add_parser("replay", help="POST dead letters again; delivered ones are removed")
    _config_argument(replay)
    chosen = replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--id", type=int, action="append", dest="ids", metavar="N", help="a dead letter (repeatable)")
    chosen.add_argument("--all", action="store_true", help="every dead letter")
    replay.set_defaults(handler=_cmd_webhooks)
    store = commands.add_parser("store", help="check or repair the SQLite store (with the bridge stopped)")
    actions = store.add_subparsers(dest="store_action", metavar="ACTION", title="actions", required=True)
    for action, text in (
        ("check", "integrity check and a per-table report; exit 1 when damaged"),
        ("repair", "salvage every readable row into a fresh file; the damaged one is kept beside it"),
    ):
        sub = actions.add_parser(action, help=text, description=text, parents=[_common_options(top_level=False)])
        _config_argument(sub)
        sub.set_defaults(handler=_cmd_store)

    sandbox = sandbox_command.add_parser(
        commands, parents=[_common_options(top_level=False)], formatter_class=formatter
    )
    _config_flag(sandbox, top_level=False)
    sandbox.set_defaults(handler=_cmd_sandbox)
    return parser


def _version_text() -> str:
    return f"{PROG} {__version__} (Python {platform.python_version()})"


# --------------------------------------------------------------------------- entry points


def main(
    argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, stdin: TextIO | None = None
) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    ``env`` replaces ``os.environ`` and ``stdin`` ``sys.stdin`` (tests pass their own; ``init`` asks its questions
    only when ``stdin`` is a terminal).
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return handler(args, environment, sys.stdin if stdin is None else stdin)
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


def config_path(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """The configuration file: ``-c`` after the command, ``-c`` before it, the positional argument, the
    environment variable :data:`CONFIG_ENV`, then ``./bridge.toml``."""
    for candidate in (
        getattr(args, "config_flag", None),
        getattr(args, "config_flag_before_command", None),
        getattr(args, "config", None),
        env.get(CONFIG_ENV),
    ):
        if candidate:
            return str(candidate)
    return DEFAULT_CONFIG


def _cmd_init(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    source = config_path(args, env)
    path = Path(source)
    if path.exists() and not args.force:
        print(f"error: {path} already exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_CONFIG
    answers = InitAnswers(framework=FRAMEWORKS[args.framework or DEFAULT_FRAMEWORK])
    if args.framework is None and not args.no_input and stdin.isatty():
        asked = ask_init_questions(
            stdin,
            sys.stdout,
            environment_proxy=_environment_proxy(env),
            default_store=default_store_path(env),
        )
        if asked is None:
            print("no answer; nothing was written", file=sys.stderr)
            return EXIT_FAILURE
        answers = asked
    text = render_template(answers.framework, proxy=answers.proxy, store_path=answers.store_path)
    try:
        with path.open("w" if args.force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        print(f"error: {path} already exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    for line in _next_steps(source, answers.framework, env):
        print(line)
    return EXIT_OK


def _environment_proxy(env: Mapping[str, str]) -> str:
    """What ``[discord] proxy = ""`` would use for Discord with this environment."""
    try:
        return DiscordEgress.from_config(DiscordConfig(), env).describe(DiscordConfig().api_base_url)
    except InvalidProxyURL as exc:
        return f"unusable: {exc}"


def _next_steps(source: str, framework: Framework, env: Mapping[str, str]) -> list[str]:
    found_by_default = source == (env.get(CONFIG_ENV) or DEFAULT_CONFIG)
    target = "" if found_by_default else f" -c {source}"
    return [
        f"wrote {source} (destination: {framework.source})",
        "next steps:",
        *(
            [
                f"  1. start your bot with its websocket server ({framework.framework_side});",
                f"     if it listens elsewhere, edit [[mirai.reverse_ws.destinations]] in {source}",
            ]
            if "reverse-ws" in framework.adapters
            else [
                f"  1. point your bot at the bridge ({framework.framework_side}): it listens on 127.0.0.1:8080"
                f" once it runs ([mirai.ws] / [mirai.http] in {source})",
            ]
        ),
        "  2. export DISCORD_TOKEN=<bot token> MIRAI_VERIFY_KEY=<your framework's verifyKey>",
        f"  3. {PROG} check{target} --online",
        f"  4. {PROG} run{target}",
    ]


def _cmd_check(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    source = config_path(args, env)
    config = _load(source, args, env)
    egress = _egress(source, config, env)
    _setup_logging(args, config, egress)
    for line in summary_lines(source, config, env, egress):
        print(line)
    if not args.online:
        return EXIT_OK
    print("online checks:")
    import trio  # noqa: PLC0415 (see the imports at the top)

    from relay import online  # noqa: PLC0415

    redactor = RedactionFilter((*secrets_of(config), *egress.secrets()))
    results = trio.run(online.run_online_checks, config, egress)
    for probe in results:
        print(f"  [{'ok' if probe.ok else 'FAIL'}] {redactor.redact(probe.text)}")
    return EXIT_OK if all(probe.ok for probe in results) else EXIT_FAILURE


def _cmd_ids(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    from relay.ids import is_presented  # noqa: PLC0415 (see the imports at the top)
    from relay.storage.idmap import read_small_ids  # noqa: PLC0415

    source = config_path(args, env)
    config = _load(source, args, env, require_secrets=False)
    _setup_logging(args, config, _egress(source, config, env))
    ids = read_small_ids(config.store.path)
    print(f'{source}: [mirai] ids = "{config.mirai.ids.value}"; {len(ids)} presented ids in {config.store.path}')
    if config.mirai.ids is not IdMode.SMALL:
        print('  frameworks see Discord ids as they are; the presented ids below apply once ids = "small"')
    if not args.ids:
        for real, presented in sorted(ids.items(), key=lambda pair: pair[1]):
            print(f"  {presented}  Discord id {real}")
        return EXIT_OK
    code = EXIT_OK
    for value in args.ids:
        if is_presented(value):
            behind = ids.resolve(value)
            if behind is None:
                print(f"  {value}: not an id this bridge presented")
                code = EXIT_FAILURE
            else:
                print(f"  {value}  Discord id {behind}")
        elif value > 0:
            seen = "" if ids.lookup(value) is not None else "  (not seen by the bridge yet: it gets this id when it is)"
            print(f"  {ids.preview(value)}  Discord id {value}{seen}")
        else:
            print(f"  {value}: not an id")
            code = EXIT_FAILURE
    return code


def _cmd_store(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    source = config_path(args, env)
    config = _load(source, args, env, require_secrets=False)
    _setup_logging(args, config, DiscordEgress.from_config(config.discord, env))
    repair = importlib.import_module("relay.storage.repair")  # only this command needs it
    run_action: Callable[[str], int] = repair.check if args.store_action == "check" else repair.repair
    return run_action(config.store.path)


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    source = config_path(args, env)
    config = _load(source, args, env)
    egress = _egress(source, config, env)
    _setup_logging(args, config, egress)
    log.info("%s %s starting with %s", PROG, __version__, source)
    # The composition root is imported late, so `check` and `init` work without loading any adapter.
    try:
        entry = importlib.import_module("relay.main")
    except ModuleNotFoundError as exc:
        if exc.name not in ("relay.main", "relay.app"):
            raise
        log.error("this installation has no %s module; reinstall %s", exc.name, PROG)
        return EXIT_FAILURE
    run_bridge: Callable[[BridgeConfig, DiscordEgress], int] = entry.run
    return run_bridge(config, egress)


def _cmd_webhooks(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    overrides = [Override("store.path", args.store_path, "--store-path")] if getattr(args, "store_path", None) else []
    config = load_config(config_path(args, env), env=env, overrides=overrides, require_secrets=False)
    _setup_logging(args, config, DiscordEgress.from_config(config.discord, env))
    webhook_cli = importlib.import_module("adapters.mirai.webhook_cli")  # offline: no other adapter is loaded
    if args.webhooks_command == "dead-letters":
        return int(webhook_cli.list_dead_letters(config, sys.stdout))
    return int(webhook_cli.replay_dead_letters(config, None if args.all else args.ids, sys.stdout))


def _cmd_sandbox(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO) -> int:
    config = sandbox_command.load(sandbox_command.config_source(args), args, env)
    _setup_logging(args, config, DiscordEgress.from_config(config.discord, env))
    return sandbox_command.run_sandbox(args, config, env)


# --------------------------------------------------------------------------- helpers


def _load(
    source: str, args: argparse.Namespace, env: Mapping[str, str], *, require_secrets: bool = True
) -> BridgeConfig:
    overrides: list[Override] = []
    for attribute, dotted, flag in (
        ("log_level", "logging.level", "--log-level"),
        ("log_format", "logging.format", "--log-format"),
        ("store_path", "store.path", "--store-path"),
    ):
        value = getattr(args, attribute, None)
        if value is not None:
            overrides.append(Override(dotted, value, flag))
    return load_config(source, env=env, overrides=overrides, require_secrets=require_secrets)


def _egress(source: str, config: BridgeConfig, env: Mapping[str, str]) -> DiscordEgress:
    """The proxy decision ``run`` and ``check`` share; an unusable proxy in the environment is a configuration
    error (``run`` could not connect), named with its variable."""
    egress = DiscordEgress.from_config(config.discord, env)
    try:
        egress.choice(config.discord.api_base_url)
        egress.choice(config.discord.gateway_url or DEFAULT_GATEWAY_URL)
    except InvalidProxyURL as exc:
        raise ConfigError(source, [f"{exc}; fix it, or set [discord] proxy"]) from None
    return egress


def _setup_logging(args: argparse.Namespace, config: BridgeConfig, egress: DiscordEgress) -> None:
    level = level_number(config.logging.level)
    quiet = getattr(args, "quiet", 0) + getattr(args, "quiet_before_command", 0)
    verbose = getattr(args, "verbose", 0) + getattr(args, "verbose_before_command", 0)
    shift = quiet - verbose
    if shift:
        # Levels off the ladder (none today) start from the nearest step below them.
        step = max(i for i, rung in enumerate(_LADDER) if rung <= level) if level >= TRACE else 0
        level = _LADDER[min(max(step + shift, 0), len(_LADDER) - 1)]
    setup_logging(level, config.logging.format, (*secrets_of(config), *egress.secrets()))


def _print_config_error(exc: ConfigError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    print(f"(run `{PROG} check --help` for how configuration is read)", file=sys.stderr)
