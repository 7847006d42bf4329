"""The process entry point of ``run``: the bridge (:func:`relay.app.serve_bridge`) under ``trio.run`` until
SIGINT/SIGTERM, its exit code, and the one line a fatal error ends with.

* The first signal begins the graceful shutdown (:meth:`relay.app.RunningBridge.shutdown`); one before startup
  finished stops the start-up instead (the store and the outbox are still flushed and closed); a second signal
  exits at once (exit code 130).
* A fatal error (:class:`~relay.errors.RelayError`: a bad token, disallowed intents, a lost store) ends the run with
  exit code 1 and one line that says what to do, once even when several tasks failed with it together.
* Process tuning around the run: the store's files private (umask), glibc's malloc arenas limited, and the objects
  alive once the guilds are loaded frozen out of the garbage collector (:mod:`relay.process`).
"""

from __future__ import annotations

import logging
import signal
from typing import Any, Final

import trio

from relay import process
from relay.app import RunningBridge, serve_bridge
from relay.config import BridgeConfig
from relay.egress import DiscordEgress
from relay.errors import HTTPError, RelayError, leaves
from relay.storage import guard as store_guard

log = logging.getLogger(__name__)

#: seconds after start-up (guilds loaded) before the objects alive are frozen out of the collector
FREEZE_AFTER: Final = 0.1


async def _main(config: BridgeConfig, egress: DiscordEgress | None) -> int:
    interrupted = False
    async with trio.open_nursery() as nursery:
        running: RunningBridge | None = None
        #: cancelled by a first signal that arrives before startup finished (Discord not READY yet)
        startup = trio.CancelScope()

        async def bridge_task(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve_bridge(config, egress=egress, task_status=task_status)
            nursery.cancel_scope.cancel(reason="bridge stopped")

        async def watch_signals() -> None:
            nonlocal interrupted
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if startup.cancel_called or (running is not None and running.shutdown_requested.is_set()):
                        log.warning("received %s again: exiting now", name)
                        interrupted = True
                        nursery.cancel_scope.cancel(reason="second signal")
                        return
                    if running is None:
                        # nothing to drain yet: stop starting (the store and outbox are still flushed and closed)
                        log.info("received %s before startup finished: stopping (again to exit at once)", name)
                        startup.cancel(reason=f"{name} during startup")
                        continue
                    log.info("received %s: shutting down gracefully (again to exit at once)", name)
                    running.shutdown()

        nursery.start_soon(watch_signals)
        with startup:
            # while the bridge starts it runs inside this scope (trio's nursery.start), so cancelling the scope
            # stops the start-up cleanly; a bridge that did start lives in the nursery, outside it
            running = await nursery.start(bridge_task)
        if running is None:
            nursery.cancel_scope.cancel(reason="stopped before startup finished")
        else:
            # the first events after the guilds loaded go out before the collection the freeze runs
            await trio.sleep(FREEZE_AFTER)
            process.freeze_startup_objects()
    return 130 if interrupted else 0


def fatal_message(exc: RelayError, config: BridgeConfig) -> str:
    """One line that says what went wrong and what to do about it."""
    if isinstance(exc, HTTPError) and exc.status == 401:
        source = f"the {config.discord.token_env} environment variable" if config.discord.token_env else "[discord]"
        where = f"HTTP 401 on {exc.method} {exc.route}" if exc.method else "HTTP 401"
        return (
            f"Discord rejected the bot token ({where}): copy the token from the "
            f"Developer Portal (Bot → Reset Token) into {source}"
        )
    return str(exc)


def run(config: BridgeConfig, egress: DiscordEgress | None = None) -> int:
    """Run the bridge until SIGINT/SIGTERM. Exit code: 0 clean stop, 1 fatal error, 130 forced stop.

    ``egress``: the proxy decision ``check`` printed (the CLI builds it once); default: from the environment."""
    code = 0
    store_guard.private_umask()  # the store, session data and uploads hold message text
    if process.limit_malloc_arenas():
        log.debug("malloc arenas limited to %d", process.MALLOC_ARENA_LIMIT)
    if process.collect_young_less_often():
        log.debug("young garbage collections every %d new objects", process.YOUNG_COLLECTION_THRESHOLD)
    if process.hand_over_the_gil_sooner():
        log.debug("threads waiting for the GIL ask for it after %.1f ms", process.GIL_SWITCH_INTERVAL * 1000)
    # once now (the modules, the configuration), once the guilds are loaded (see _main): without this first
    # freeze, the young generations still held start-up's objects when the first GUILD_CREATE arrived, and a
    # collection there took 1.2 ms of the 1-guild READY → first-message time (bench scale grid, issue 18)
    process.freeze_startup_objects()
    try:
        code = trio.run(_main, config, egress)
    except* RelayError as group:
        # several tasks may fail together (the shards of one bot with a bad token): say it once
        seen: set[str] = set()
        for exc in leaves(group):
            line = fatal_message(exc, config)
            if line not in seen:
                seen.add(line)
                log.error("%s", line)
        code = 1
    return code
