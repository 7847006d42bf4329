"""Process-wide tuning of the bridge's memory (glibc's malloc arenas and trimming, the garbage collector) and of its
threads' turns at the GIL.

* :func:`limit_malloc_arenas` caps glibc's malloc arenas (call it before any thread starts);
* :func:`serve_memory_trim` (trio) hands freed heap pages back to the OS after a burst (``malloc_trim``);
* :func:`collect_young_less_often` lets the garbage collector's young generation grow past the objects of the
  events in flight;
* :func:`freeze_startup_objects` moves what is alive once the bridge runs out of the collector's reach;
* :func:`hand_over_the_gil_sooner` shortens how long the store's writer thread waits for the GIL between its
  SQLite statements.

Each is a no-op where it does not apply (another C library, an operator's own setting). The process's entry
(:func:`relay.main.run`) calls them before the event loop starts, and the composition root (:mod:`relay.app`) starts
:func:`serve_memory_trim`; nothing here knows the bridge.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import sys
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
#: net new container objects (allocations minus deallocations) between two young-generation collections; CPython's
#: default is 700 (see :func:`collect_young_less_often`)
YOUNG_COLLECTION_THRESHOLD: Final = 10_000
#: seconds a thread waiting for the GIL waits before it asks the running thread to let go of it (see
#: :func:`hand_over_the_gil_sooner`)
GIL_SWITCH_INTERVAL: Final = 0.0005
#: CPython's default for ``sys.setswitchinterval`` (the documentation of :func:`sys.setswitchinterval`)
CPYTHON_SWITCH_INTERVAL: Final = 0.005
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


def collect_young_less_often(threshold: int = YOUNG_COLLECTION_THRESHOLD) -> bool:
    """Collect the young generation once per ``threshold`` net new container objects instead of CPython's 700; True
    if the threshold was raised.

    Why: an event's objects (its parsed payload, the store's and the outbox's pending rows, the envelope) stay
    alive until the next flush has written them, tens of milliseconds at saturation. With 700, a young collection
    came every ~120 events of a stream and walked those objects of the events in flight, which then moved to the
    middle generation and were walked again there, and enough of them outlived that too to set off full
    collections. Past 10,000 most of them are gone before a collection comes. Measured in the bench's scale runs
    with gc callbacks (100,000 events; docs/performance.md has the figures and the command): the
    collector's time fell from 104-200 to 36-62 ms at 1 guild × 100 members and from 336-345 to
    110-209 ms at 1,000 × 100; at 2,500 × 100 (20,000 events, the load included) from 868-893 to 435-464 ms,
    the longest pause from 68-70 ms (a full collection) to 28-32 ms, and no full collection ran. Peak RSS did
    not change: the objects the young generation holds longer are the ones that die anyway.

    A no-op (False) when the collector is switched off, or its first threshold is 0 or higher already: the
    embedding program's (or the operator's) choice wins. Call it once, before the event loop starts.
    """
    first, second, third = gc.get_threshold()
    if not gc.isenabled() or first == 0 or first >= threshold:
        return False
    gc.set_threshold(threshold, second, third)
    return True


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


def hand_over_the_gil_sooner(interval: float = GIL_SWITCH_INTERVAL) -> bool:
    """Let a thread that waits for the GIL make the running thread let go of it after ``interval`` seconds of
    holding it, instead of CPython's 5 ms; True if the interval was changed.

    Why: the store's writer thread (:mod:`relay.storage.flush`) lets go of the GIL inside each SQLite call and
    needs it back after each, 13-16 times a flush. A waiting thread forces a switch only when the running thread
    held the GIL for a whole interval without letting go (``take_gil`` in ``Python/ceval_gil.h`` of CPython 3.11). The
    event loop's thread lets go at each system call and zlib call, about every millisecond in a saturation stream,
    and takes the GIL straight back, so with 5 ms the writer waited for a race it mostly lost. Its flushes took
    longer, and while one is in flight the frames and rows behind it wait, and the gateway reader is held at their
    marks (:func:`relay.storage.flushers.make_room`). Measured at one guild with zlib-stream (150,000-event
    streams; docs/performance.md has the commands): a flush's wall time 22.9-24.9 ms (median) with 5 ms,
    16.7-17.2 ms with 0.5; events/s +3.7 % (median of 16 interleaved pairs, 13 faster) for ~0.4 µs more CPU an
    event; at 1,000 guilds +2 % (six pairs). The event loop's thread alone never switches: only a waiting thread
    asks.

    A no-op (False) when the interval is not CPython's default any more: the embedding program's choice wins. Call
    it once, before the event loop starts.
    """
    current = sys.getswitchinterval()
    if abs(current - CPYTHON_SWITCH_INTERVAL) > 1e-9 or abs(current - interval) <= 1e-9:
        return False
    sys.setswitchinterval(interval)
    return True
