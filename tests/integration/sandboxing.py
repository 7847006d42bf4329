"""Test helpers: the whole sandbox (emulator + chat page + demo bot + bridge) in this process on loopback ports,
and the demo bot's log lines (what the framework received)."""

from __future__ import annotations

import functools
import logging
import struct
import zlib
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


def make_png(width: int = 120, height: int = 72) -> bytes:
    """A small RGB PNG (blurple with a white diagonal band), written by hand: no imaging library needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            band = abs(x - y * width // height) < 10
            rows += b"\xff\xff\xff" if band else bytes((88, 101, 242))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")
    )
