"""The house rules of docs/architecture.md §1, checked by walking every import with ``ast``.

1. Sans-I/O modules never import trio, trio_websocket or httpx (they take ``now`` and payloads); the SQLite
   modules (relay/storage but its flushers) never import trio. The Discord adapter's pure modules do not reach
   an I/O library through the project's own modules either.
2. An adapter never imports another adapter; adapters meet only in ``relay`` types.
3. Only the composition root imports ``adapters`` from outside ``adapters/``.
4. Product code speaks websocket only through ``relay/wire`` (no wsproto or trio-websocket elsewhere).
5. The sandbox's demo bot speaks mirai through its own code only (no ``adapters``, no ``relay.app``).
6. Within the Discord adapter, one direction does not call into the other: commands_out (envelope commands →
   REST) imports neither trio nor events_in; events_in (dispatches → events) does not import REST.

The module lists are data: extend them as modules appear. Listed modules that do not exist yet are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: I/O libraries a sans-I/O module must not import.
IO_LIBRARIES = ("trio", "trio_websocket", "httpx")

#: The Discord adapter's sans-I/O modules (everything but the trio shells: gateway/shard.py, gateway/resume.py,
#: rest/client.py and commands_out.py).
DISCORD_PURE_MODULES = (
    "adapters/discord/gateway/events.py",
    "adapters/discord/gateway/close_codes.py",
    "adapters/discord/gateway/payloads.py",
    "adapters/discord/gateway/pacing.py",
    "adapters/discord/gateway/session.py",
    "adapters/discord/rest/ratelimit.py",
    "adapters/discord/snowflakes.py",
    "adapters/discord/media.py",
    "adapters/discord/cache.py",
    "adapters/discord/members.py",
    "adapters/discord/member_requests.py",
    "adapters/discord/entities.py",
    "adapters/discord/markup.py",
    "adapters/discord/own_actions.py",
    "adapters/discord/events_in.py",
    "adapters/discord/backfill.py",
    "adapters/discord/recalls.py",
    "adapters/discord/listener.py",
)

#: Modules that must stay sans-I/O.
SANS_IO_MODULES = (
    "relay/errors.py",
    "relay/envelope.py",
    "relay/config.py",
    "relay/configload.py",
    "relay/ports.py",
    "relay/template.py",
    "relay/check.py",
    "relay/wizard.py",
    "relay/fastjson.py",
    "relay/backoff.py",
    "relay/proxyurl.py",
    "relay/storage/rows.py",
    *DISCORD_PURE_MODULES,
    "relay/egress.py",
    "relay/frameworks.py",
    "adapters/discord/gateway/presence.py",
    "relay/ids.py",
    "adapters/mirai/codec.py",
    "adapters/mirai/correlator.py",
    "relay/wire/frames.py",
    "adapters/mirai/session.py",
    "adapters/mirai/sessions.py",
    "adapters/mirai/fields.py",
    "adapters/mirai/chain.py",
    "adapters/mirai/events_out.py",
    "adapters/mirai/commands_in.py",
    "adapters/mirai/results_out.py",
    "relay/web/models.py",
    "relay/web/routing.py",
    "relay/web/cors.py",
    "relay/web/bodies.py",
    "relay/web/multipart.py",
    "relay/sandbox/demobot_logic.py",
    "relay/sandbox/emulator/snowflakes.py",
    "relay/sandbox/emulator/errors.py",
    "relay/sandbox/emulator/forms.py",
    "relay/sandbox/emulator/payloads.py",
    "relay/sandbox/emulator/intents.py",
    "relay/sandbox/emulator/ratelimits.py",
    "relay/sandbox/emulator/gateway.py",
    "relay/sandbox/emulator/member_chunks.py",
    "relay/signatures.py",
    "adapters/mirai/webhook_requests.py",
    "adapters/robots/payloads.py",
    "adapters/robots/auth.py",
    "adapters/robots/render.py",
    "relay/health.py",
    "relay/sandbox/pageviews.py",
    "relay/sandbox/settings.py",
    "relay/sandbox/command.py",  # imported by the CLI at start: trio comes with relay/sandbox/run.py
)

#: The mirai side every transport reuses (reverse-ws today; ws server, http, webhook later): no transport in
#: them, so they import neither the websocket implementation, nor sockets, nor a transport's own module.
MIRAI_TRANSPORT_INDEPENDENT = (
    "adapters/mirai/codec.py",
    "adapters/mirai/fields.py",
    "adapters/mirai/chain.py",
    "adapters/mirai/events_out.py",
    "adapters/mirai/commands_in.py",
    "adapters/mirai/results_out.py",
    "adapters/mirai/session.py",
    "adapters/mirai/sessions.py",
    "adapters/mirai/correlator.py",
    "adapters/mirai/handlers.py",
    "adapters/mirai/cursors.py",
    "adapters/mirai/uploads.py",
)
TRANSPORT_MODULES = (
    "relay.wire",
    "relay.web",
    "socket",
    "ssl",
    "adapters.mirai.reverse_ws",
    "adapters.mirai.connection",
    "adapters.mirai.webhook",
    "adapters.mirai.ws_server",
    "adapters.mirai.http_server",
    "adapters.mirai.upload_routes",
    "relay.listeners",
)

#: Modules that moved away (issue 12): the correlator is mirai-only, translate.py became five modules; the
#: Discord side's six big modules went into gateway/, rest/ and its one-job modules.
RETIRED_MODULES = (
    "relay/correlator.py",
    "adapters/mirai/translate.py",
    "adapters/discord/gateway.py",
    "adapters/discord/shard.py",
    "adapters/discord/rest.py",
    "adapters/discord/ratelimit.py",
    "adapters/discord/translate.py",
    "adapters/discord/commands.py",
)

#: Modules that do blocking I/O of their own (SQLite) but must not depend on trio: the trio side drives them.
NO_TRIO_MODULES = (
    "relay/storage/__init__.py",
    "relay/storage/sqlite.py",
    "relay/storage/store.py",
    "relay/storage/outbox.py",
    "relay/storage/idmap.py",
    "relay/storage/flush.py",
    "relay/storage/sessions.py",
    "relay/storage/salvage.py",
    "relay/storage/guard.py",
    "relay/storage/repair.py",
    "relay/storage/contacts.py",
    "relay/web/metrics.py",  # reads /proc through prometheus-client's process collector
    "relay/sandbox/emulator/db.py",
    "relay/sandbox/emulator/world.py",
    "relay/sandbox/emulator/actions.py",
    "relay/sandbox/emulator/defaults.py",
    "relay/sandbox/emulator/endpoints.py",
    "relay/sandbox/emulator/rest.py",
    "adapters/mirai/deadletters.py",
    "adapters/robots/queue.py",
    "adapters/mirai/cursors.py",  # drives the outbox (SQLite); the adapters' trio shells call it
    "adapters/mirai/uploads.py",  # plain file I/O, called in worker threads by the trio shells
)

#: Libraries wrapped by one module each: only that module (in relay/ and adapters/) may import them.
WRAPPED_LIBRARIES: dict[str, tuple[str, ...]] = {
    # the HTTP server, and the HTTP CONNECT client of the proxy tunnel
    "h11": ("relay/web/server.py", "relay/proxy.py"),
    "python_multipart": ("relay/web/multipart.py",),
    "prometheus_client": ("relay/web/metrics.py",),
    "standardwebhooks": ("relay/signatures.py",),
    # optional accelerators: the zipapp has neither, so one module decides and falls back (relay/fastjson.py to the
    # stdlib json, relay/wire/frames.py to the Python masking)
    "orjson": ("relay/fastjson.py",),
    "websockets": ("relay/wire/frames.py",),
}

#: The one module of relay/storage that drives the others from trio (the flushers); every other module there is
#: in NO_TRIO_MODULES or SANS_IO_MODULES.
STORAGE_TRIO_SHELL = "relay/storage/flushers.py"

#: module → what it must not import (the two directions of the Discord adapter stay apart)
FORBIDDEN_IMPORTS: dict[str, tuple[str, ...]] = {
    "adapters/discord/commands_out.py": ("trio", "trio_websocket", "adapters.discord.events_in"),
    "adapters/discord/events_in.py": ("adapters.discord.rest", "adapters.discord.commands_out"),
}

#: Where `adapters` may be imported from, besides adapters/ itself (one adapter's own package).
COMPOSITION_ROOT = (
    "relay/app.py",
    "relay/cli.py",
    "relay/online.py",  # check --online: the probes dial as run dials (relay/cli.py's half that uses trio)
    "relay/transports.py",  # the mirai transports and the HTTP listeners, composed
    "relay/observe.py",  # readiness and metrics: reads every component's statistics (nothing on the event path)
    "relay/__main__.py",
    "relay/sandbox/run.py",  # the sandbox's: the emulator, the page, the demo bot and the bridge together
)
COMPOSITION_ROOT_FOLDERS = ("scripts", "tests")

ADAPTERS = ("discord", "mirai", "robots")

#: The demo bot is an independent client of the mirai protocol (our own mirai code must not test itself): of the
#: project it may use only these.
DEMO_BOT_MODULES = ("relay/sandbox/demobot.py", "relay/sandbox/demobot_logic.py")
DEMO_BOT_MAY_IMPORT = (
    "relay.web",
    "relay.wire",
    "relay.fastjson",
    "relay.errors",
    "relay.config",
    "relay.sandbox.demobot_logic",
)


def imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """Every absolute module name ``path`` imports (``import a.b`` → a.b; ``from a.b import c`` → a.b.c),
    with its line, including imports inside functions and ``if TYPE_CHECKING`` blocks. Relative imports
    are resolved against ``package`` (default: the file's package in the repository)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def python_files() -> list[Path]:
    files: list[Path] = []
    for folder in ("relay", "adapters", "scripts", "tests"):
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    return files


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def existing(paths: tuple[str, ...]) -> list[str]:
    return [p for p in paths if (ROOT / p).exists()]


def imports_within(module: str, packages: tuple[str, ...]) -> list[str]:
    """Every import of ``module`` (a repository path) that names one of ``packages`` or a module inside it."""
    return [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(ROOT / module)
        if any(is_within(name, package) for package in packages)
    ]


@pytest.mark.parametrize("module", existing(SANS_IO_MODULES))
def test_sans_io_modules_import_no_io_library(module: str) -> None:
    assert imports_within(module, IO_LIBRARIES) == []


@pytest.mark.parametrize("module", existing(NO_TRIO_MODULES))
def test_sqlite_modules_do_not_import_trio(module: str) -> None:
    assert imports_within(module, ("trio", "trio_websocket")) == []


def test_storage_imports_trio_only_in_its_flushers() -> None:
    checked = set(NO_TRIO_MODULES) | set(SANS_IO_MODULES) | {STORAGE_TRIO_SHELL}
    unlisted = [rel(path) for path in sorted((ROOT / "relay" / "storage").glob("*.py")) if rel(path) not in checked]
    assert unlisted == []  # a new storage module must say which rule it follows


@pytest.mark.parametrize("module", existing(MIRAI_TRANSPORT_INDEPENDENT))
def test_mirai_core_imports_no_transport(module: str) -> None:
    assert imports_within(module, TRANSPORT_MODULES) == []


def test_retired_modules_stay_gone() -> None:
    assert existing(RETIRED_MODULES) == []


def source_of(module: str) -> Path | None:
    """The file of a project module (``adapters.discord.cache`` → its .py or package ``__init__.py``), else None."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, directly or through the project's own modules (relay, adapters)."""
    seen: set[str] = set()
    todo = [path]
    visited: set[Path] = set()
    while todo:
        current = todo.pop()
        if current in visited:
            continue
        visited.add(current)
        for _line, name in imported_modules(current):
            seen.add(name)
            if is_within(name, "relay") or is_within(name, "adapters"):
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                    found = source_of(".".join(parts[:depth]))
                    if found is not None:
                        todo.append(found)
    return seen


@pytest.mark.parametrize("module", existing(DISCORD_PURE_MODULES))
def test_discord_pure_modules_reach_no_io_library(module: str) -> None:
    bad = sorted(name for name in reachable_modules(ROOT / module) if any(is_within(name, lib) for lib in IO_LIBRARIES))
    assert bad == []


@pytest.mark.parametrize("module", sorted(FORBIDDEN_IMPORTS))
def test_directions_of_the_discord_adapter_stay_apart(module: str) -> None:
    assert (ROOT / module).exists()
    assert imports_within(module, FORBIDDEN_IMPORTS[module]) == []


def test_adapters_do_not_import_each_other() -> None:
    bad: list[str] = []
    for adapter in ADAPTERS:
        others = [f"adapters.{other}" for other in ADAPTERS if other != adapter]
        for path in sorted((ROOT / "adapters" / adapter).rglob("*.py")):
            bad.extend(
                f"{rel(path)}:{line} imports {name}"
                for line, name in imported_modules(path)
                if any(is_within(name, other) for other in others)
            )
    assert bad == []


def test_only_the_composition_root_imports_adapters() -> None:
    bad: list[str] = []
    for path in python_files():
        name = rel(path)
        if name in COMPOSITION_ROOT or name.split("/")[0] in COMPOSITION_ROOT_FOLDERS:
            continue
        if name.startswith("adapters/"):
            continue  # inside an adapter; cross-adapter imports are the test above
        bad.extend(
            f"{name}:{line} imports {module}"
            for line, module in imported_modules(path)
            if is_within(module, "adapters")
        )
    assert bad == []


def test_one_websocket_implementation() -> None:
    """Product code speaks websocket only through relay/wire (one client, one server side, one error family)."""
    bad: list[str] = []
    for folder in ("relay", "adapters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if rel(path).startswith("relay/wire/"):
                continue
            bad.extend(
                f"{rel(path)}:{line} imports {name}"
                for line, name in imported_modules(path)
                if any(is_within(name, lib) for lib in ("wsproto", "trio_websocket"))
            )
    assert bad == []


@pytest.mark.parametrize("library", sorted(WRAPPED_LIBRARIES))
def test_wrapped_libraries_are_imported_by_their_wrapper_only(library: str) -> None:
    bad: list[str] = []
    for path in python_files():
        name = rel(path)
        if name.split("/")[0] not in ("relay", "adapters") or name in WRAPPED_LIBRARIES[library]:
            continue
        bad.extend(
            f"{name}:{line} imports {module}" for line, module in imported_modules(path) if is_within(module, library)
        )
    assert bad == []


@pytest.mark.parametrize("module", existing(DEMO_BOT_MODULES))
def test_the_demo_bot_uses_no_mirai_code_of_ours(module: str) -> None:
    bad = [
        f"{module}:{line} imports {name}"
        for line, name in imported_modules(ROOT / module)
        if name.split(".")[0] in ("relay", "adapters")
        # a parent package of an allowed module is fine: `from relay import fastjson` walks as relay, relay.fastjson
        and not any(is_within(name, allowed) or is_within(allowed, name) for allowed in DEMO_BOT_MAY_IMPORT)
    ]
    assert bad == []


def test_the_walker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks above are only as good as imported_modules(): prove it on a sample."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import trio\n"
        "import os.path as p\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from httpx import Client\n"
        "def f():\n"
        "    from adapters.discord import rest\n"
        "from . import envelope\n"
        "from .errors import RelayError\n",
        encoding="utf-8",
    )
    names = {name for _, name in imported_modules(sample, package="relay")}
    assert {"trio", "os.path", "httpx.Client", "adapters.discord.rest", "relay.envelope", "relay.errors"} <= names


def test_the_reachability_walk_follows_the_projects_own_modules() -> None:
    """commands_out imports no trio itself, but the REST client it drives does: the walk must see that."""
    assert not any(name == "trio" for _, name in imported_modules(ROOT / "adapters/discord/commands_out.py"))
    assert "trio" in reachable_modules(ROOT / "adapters/discord/commands_out.py")
