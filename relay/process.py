"""Process-wide tuning of the bridge's memory: glibc's malloc arenas and trimming, and the garbage collector.

* :func:`limit_malloc_arenas` caps glibc's malloc arenas (call it before any thread starts);
* :func:`serve_memory_trim` (trio) hands freed heap pages back to the OS after a burst (``malloc_trim``);
* :func:`freeze_startup_objects` moves what is alive once the bridge runs out of the collector's reach.

Each is a no-op where it does not apply (another C library, an operator's own setting). The composition root
(:mod:`relay.app`) calls them; nothing here knows the bridge.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
from collections.abc import Callable, Mapping
from typing import Final

import trio

#: malloc arenas glibc may create for the whole process (see :func:`limit_malloc_arenas`)
MALLOC_ARENA_LIMIT: Final = 2
#: seconds between checks whether freed heap memory should be handed back to the OS
MEMORY_TRIM_INTERVAL: Final = 1.0
#: events published plus frames delivered since the last trim that make a trim worth its cost (a trim takes
#: 0.1-18 ms of a worker thread, measured during a 100,000-event backlog, and returned 5-10 MB each time)
MEMORY_TRIM_ACTIVITY: Final = 5_000
#: glibc's mallopt() parameter number for the arena limit (<malloc.h>: ``#define M_ARENA_MAX -8``)
_M_ARENA_MAX: Final = -8


def _glibc() -> ctypes.CDLL | None:
    """The running C library if it is glibc (``mallopt`` and ``malloc_trim`` are glibc extensions), else None."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; unknown name or error elsewhere
    except (AttributeError, ValueError, OSError):
        return None
    if not version or not version.startswith("glibc "):
        return None
    try:
        return ctypes.CDLL(None)  # the symbols already loaded into this process, libc among them
    except OSError:
        return None


def limit_malloc_arenas(limit: int = MALLOC_ARENA_LIMIT, *, env: Mapping[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas for this process at ``limit``; True if the cap was set.

    Why: glibc attaches each thread to an arena at its first allocation and creates a new arena for it while
    fewer than 8 per core exist. The SQLite writes of the outbox and the message store run in trio worker
    threads, so each worker that ever ran a flush keeps an arena of its own, and memory freed in one arena is
    neither reused by the others nor returned to the OS. Measured in the bench's 100,000-event backlog: two
    worker arenas held 24-30 MB, 10-17 MB of it free. With two arenas the trio thread keeps one and the
    workers share the other; the workers allocate little, mostly while the trio thread runs Python, so the
    shared arena's lock is rarely contended.

    A no-op (False) on other C libraries, and when the operator chose already (``MALLOC_ARENA_MAX`` or a
    ``glibc.malloc.arena_max`` tunable in the environment): their setting wins. Call it before threads start.
    """
    environment = os.environ if env is None else env
    if "MALLOC_ARENA_MAX" in environment or "arena_max" in environment.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    if libc is None:
        return False
    try:
        mallopt = libc.mallopt
    except AttributeError:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, limit))  # 1 on success


def malloc_trimmer() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` (None elsewhere): hand the freed pages of every arena back to the OS.

    glibc only returns memory at the top of a heap by itself, so after a burst (a backlog built up or
    replayed) the process keeps the peak's pages although most of them are free; allocators with time-based
    decay (jemalloc, mimalloc) do this on their own. ctypes releases the GIL during the call.
    """
    libc = _glibc()
    if libc is None:
        return None
    try:
        trim = libc.malloc_trim
    except AttributeError:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return functools.partial(trim, 0)


async def serve_memory_trim(
    activity: Callable[[], int], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Every :data:`MEMORY_TRIM_INTERVAL`, trim the heap in a worker thread if :data:`MEMORY_TRIM_ACTIVITY`
    events went through since the last trim (a quiet bridge has nothing new to give back). ``activity()`` is a
    counter that grows with the allocation churn (the bridge counts events published plus frames delivered).
    Returns at once where there is no ``malloc_trim``."""
    trim = malloc_trimmer()
    task_status.started()
    if trim is None:
        return
    last = activity()
    while True:
        await trio.sleep(MEMORY_TRIM_INTERVAL)
        current = activity()
        if current - last >= MEMORY_TRIM_ACTIVITY:
            last = current
            await trio.to_thread.run_sync(trim)


def freeze_startup_objects() -> None:
    """Move everything alive once the bridge runs (modules, classes, config, caches) out of the collector's reach.

    A full collection walks every tracked object: ~45,000 after startup, 20-30 ms per pass (bench, measured
    with gc callbacks), a stall every few seconds under load and the largest single delay in the paced-latency
    runs. Frozen objects are never scanned again (they are long-lived anyway); objects made later are collected
    as usual. The bridge runs once its guilds are loaded, so the Discord cache is frozen too (2,500 guilds of 100
    members: 137,000 objects). Only the young generations are collected first: a full pass then took 69 ms
    (young: 14 ms), in the way of the first events; what start-up left in the old generation stays. Called twice
    (relay/main.py): before the event loop starts, and once the guilds are loaded.
    """
    gc.collect(1)
    gc.freeze()
