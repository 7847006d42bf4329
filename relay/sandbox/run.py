"""The sandbox put together: the emulated Discord with its chat page, the demo bot if asked, and the bridge
pointed at them, in one trio nursery; and the process entry point that prints the page's address and stops on
Ctrl-C or SIGTERM.

:func:`serve_sandbox` starts, in order, the emulator (its world in the sandbox's folder, seeded with the default
guild on first use) serving the page on its port, the demo bot (``--demo-bot``), and the bridge
(:func:`relay.app.serve_bridge`) with :func:`~relay.sandbox.settings.sandbox_config`; it hands a
:class:`RunningSandbox` to ``task_status.started()`` once the bridge is connected. :meth:`RunningSandbox.shutdown`
stops the bridge gracefully first (its commands finish, its gateway session is saved, the outbox flushed) while
the emulated Discord still answers, then the rest. The emulator closes its world file last.

:func:`run` is what the command does: a first SIGINT/SIGTERM shuts down gracefully, a second one at once.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from typing import Any, Final

import attrs
import trio

from adapters.discord.gateway.resume import session_file
from relay import process
from relay.app import RunningBridge, serve_bridge
from relay.config import BridgeConfig
from relay.errors import RelayError, leaves
from relay.main import fatal_message
from relay.sandbox import settings
from relay.sandbox.chatpage import PAGE_PATH, ChatPage
from relay.sandbox.demobot import demo_destination, serve_demo_bot
from relay.sandbox.emulator.emulator import DEFAULT_TOKEN, Emulator
from relay.sandbox.emulator.errors import EmulatorError
from relay.sandbox.emulator.server import serve_emulator

log = logging.getLogger(__name__)

#: REST requests the emulator remembers (the page's side panel shows the latest few hundred of the bridge's)
KEEP_REQUESTS: Final = 1000
#: exit codes, as the other commands'
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_INTERRUPTED: Final = 130


@attrs.frozen(kw_only=True)
class SandboxPlan:
    """What to run: the bridge's configuration (its Discord side is replaced), where to keep files, the port."""

    config: BridgeConfig
    #: where the world and the sandbox bridge's store are kept (created 0700 when missing)
    data_dir: str
    port: int = settings.DEFAULT_PORT
    host: str = "127.0.0.1"
    demo_bot: bool = False


@attrs.define(eq=False)
class RunningSandbox:
    """What :func:`serve_sandbox` hands to ``task_status.started()``."""

    #: the chat page's address
    url: str
    emulator: Emulator
    page: ChatPage
    bridge: RunningBridge
    #: the configuration the bridge runs with
    config: BridgeConfig
    #: the demo bot's port (None without --demo-bot)
    demo_bot_port: int | None
    shutdown_requested: trio.Event = attrs.field(factory=trio.Event)

    def shutdown(self) -> None:
        """Begin the graceful shutdown; :func:`serve_sandbox` returns when it is done."""
        self.shutdown_requested.set()


async def serve_sandbox(plan: SandboxPlan, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the sandbox until :meth:`RunningSandbox.shutdown` (see the module docstring)."""
    os.makedirs(plan.data_dir, mode=0o700, exist_ok=True)
    emulator = Emulator(
        state_path=os.path.join(plan.data_dir, settings.WORLD_FILE), seed_default=True, keep_requests=KEEP_REQUESTS
    )
    try:
        page = ChatPage(emulator)
        async with trio.open_nursery() as nursery:
            port: int = await nursery.start(
                functools.partial(
                    serve_emulator,
                    emulator,
                    host=plan.host,
                    port=plan.port,
                    router=page.router(),
                    upgrades=page.upgrades(),
                )
            )
            destinations = None
            verify_key = None
            demo_port: int | None = None
            if plan.demo_bot:
                if settings.needs_verify_key(plan.config):
                    verify_key = settings.VERIFY_KEY  # the demo bot takes whatever the bridge has
                key = verify_key or plan.config.mirai.verify_key
                demo_port = await nursery.start(functools.partial(serve_demo_bot, verify_key=key))
                destinations = (demo_destination(demo_port),)
            config = settings.sandbox_config(
                plan.config,
                api_base_url=emulator.base_url,
                gateway_url=emulator.gateway_url,
                token=DEFAULT_TOKEN,
                store_path=os.path.join(plan.data_dir, settings.STORE_FILE),
                destinations=destinations,
                verify_key=verify_key,
            )
            # the emulated gateway keeps its sessions in memory: one saved by the last run would be refused (op 9)
            # and cost the 1-5 s wait before identifying again (docs/discord.md §2.9)
            session_file(config.store.path).unlink(missing_ok=True)
            bridge_done = trio.Event()
            bridge: RunningBridge = await nursery.start(_serve_bridge, config, bridge_done, nursery.cancel_scope)
            running = RunningSandbox(
                url=f"{emulator.origin}{PAGE_PATH}",
                emulator=emulator,
                page=page,
                bridge=bridge,
                config=config,
                demo_bot_port=demo_port,
            )
            log.info("sandbox running on port %d: the page at %s", port, running.url)
            task_status.started(running)
            await running.shutdown_requested.wait()
            bridge.shutdown()
            await bridge_done.wait()
            nursery.cancel_scope.cancel(reason="sandbox stopped")
    finally:
        emulator.close()


async def _serve_bridge(
    config: BridgeConfig, done: trio.Event, everything: trio.CancelScope, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """The bridge; when it stops, for whatever reason, the sandbox stops."""
    try:
        await serve_bridge(config, task_status=task_status)
    finally:
        done.set()
        everything.cancel(reason="the bridge stopped")


# --------------------------------------------------------------------------- process entry point


def describe(running: RunningSandbox, plan: SandboxPlan) -> list[str]:
    """What the command prints once the sandbox runs (the first line has the page's address)."""
    emulator, config = running.emulator, running.config
    lines = [
        f"The sandbox is running: open {running.url} in a browser.",
        f"  emulated Discord: REST {emulator.base_url}, gateway {emulator.gateway_url} (token {DEFAULT_TOKEN!r})",
        f"  its world and the bridge's store: {plan.data_dir} (delete the folder to start afresh)",
    ]
    if running.demo_bot_port is not None:
        lines.append(
            f"  framework: the built-in demo bot on ws://127.0.0.1:{running.demo_bot_port}; say `help` or "
            "`echo hi` on the page"
        )
    else:
        for destination in config.mirai.reverse_ws.destinations:
            url = f"{destination.protocol.value}://{destination.host}:{destination.port}{destination.path}"
            lines.append(f"  framework: the bridge dials {url} ({destination.label}); start your bot there")
        if config.mirai.verify_key == settings.VERIFY_KEY:
            lines.append(f"  verify key: {settings.VERIFY_KEY!r} (the built-in configuration's)")
        lines.append("  (no framework yet? run `discord-mirai-relay sandbox --demo-bot` for a built-in one)")
    lines.append("Ctrl-C stops it.")
    return lines


async def _main(plan: SandboxPlan) -> int:
    interrupted = False
    async with trio.open_nursery() as nursery:
        running: RunningSandbox | None = None

        async def sandbox_task(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve_sandbox(plan, task_status=task_status)
            nursery.cancel_scope.cancel(reason="sandbox stopped")

        async def watch_signals() -> None:
            nonlocal interrupted
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if running is None or running.shutdown_requested.is_set():
                        log.warning("received %s again: exiting now", name)
                        interrupted = True
                        nursery.cancel_scope.cancel(reason="second signal")
                        return
                    log.info("received %s: stopping the sandbox (again to exit at once)", name)
                    running.shutdown()

        nursery.start_soon(watch_signals)
        running = await nursery.start(sandbox_task)
        for line in describe(running, plan):
            print(line, flush=True)
        process.freeze_startup_objects()
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def run(plan: SandboxPlan) -> int:
    """Run the sandbox until SIGINT/SIGTERM. Exit code: 0 clean stop, 1 failure (said on stderr), 130 forced."""
    code = EXIT_FAILURE
    try:
        code = trio.run(_main, plan)
    except* RelayError as group:
        seen: set[str] = set()
        for exc in leaves(group):
            line = fatal_message(exc, plan.config)
            if isinstance(exc, EmulatorError) and "cannot listen" in line:
                line += f"; choose another port with --port (e.g. --port {plan.port + 1}; 0 takes any free port)"
            if line not in seen:
                seen.add(line)
                print(f"error: {line}", file=sys.stderr, flush=True)
    return code
