"""Test helpers: the whole sandbox (emulator + chat page + demo bot + bridge) in this process on loopback ports,
and the demo bot's log lines (what the framework received)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from relay.configload import parse_config
from relay.sandbox import settings
from relay.sandbox.run import RunningSandbox, SandboxPlan, serve_sandbox

#: seconds: a failure guard only, never a measurement
GUARD = 60


@asynccontextmanager
async def running_sandbox(data_dir: Path, *, demo_bot: bool = True) -> AsyncIterator[RunningSandbox]:
    """The sandbox with the built-in configuration on a free port; stopped gracefully when the block ends."""
    config = parse_config(settings.BUILT_IN, source="test", env={}, require_secrets=False)
    plan = SandboxPlan(config=config, data_dir=str(data_dir), port=0, demo_bot=demo_bot)
    async with trio.open_nursery() as nursery:
        running: RunningSandbox = await nursery.start(functools.partial(serve_sandbox, plan))
        yield running
        running.shutdown()


class FrameworkLog(logging.Handler):
    """The demo bot's log lines: the events it received and the commands it sent, as a newcomer reads them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[str], bool]) -> str:
        while True:
            for line in self.lines:
                if predicate(line):
                    return line
            await self.changed.wait()

    def find(self, predicate: Callable[[str], bool]) -> str | None:
        return next((line for line in self.lines if predicate(line)), None)


@asynccontextmanager
async def framework_log() -> AsyncIterator[FrameworkLog]:
    logger = logging.getLogger("relay.sandbox.demobot")
    handler = FrameworkLog()
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
