"""The process-wide helpers (relay.process: glibc malloc arena cap and trim, the garbage collector's thresholds, the
GIL's switch interval)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator

import pytest

from relay import process


def glibc_version() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


on_glibc = pytest.mark.skipif(not (glibc_version() or "").startswith("glibc "), reason="glibc only")


def test_an_operator_setting_wins_over_the_arena_cap() -> None:
    assert process.limit_malloc_arenas(env={"MALLOC_ARENA_MAX": "4"}) is False
    assert process.limit_malloc_arenas(env={"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) is False


@on_glibc
def test_the_arena_cap_is_set_on_glibc() -> None:
    # the value the bridge itself uses: this test process may carry it too
    assert process.limit_malloc_arenas(process.MALLOC_ARENA_LIMIT, env={}) is True


@on_glibc
def test_the_trimmer_returns_freed_memory_on_glibc() -> None:
    trim = process.malloc_trimmer()
    assert trim is not None
    garbage = [bytes(4096) for _ in range(2_000)]
    del garbage
    assert trim() in (0, 1)  # 1: memory was released, 0: there was nothing to release


def test_without_glibc_both_helpers_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_glibc(name: str) -> str | None:
        raise ValueError(f"unrecognized configuration name {name!r}")  # what macOS and Windows builds do

    monkeypatch.setattr(os, "confstr", not_glibc, raising=False)  # the module relay.process reads it from
    assert process.limit_malloc_arenas(env={}) is False
    assert process.malloc_trimmer() is None


async def test_without_glibc_the_trim_task_ends_after_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_glibc(name: str) -> str | None:
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(os, "confstr", not_glibc, raising=False)  # the module relay.process reads it from
    calls: list[int] = []

    def activity() -> int:
        calls.append(1)
        return 0

    await process.serve_memory_trim(activity)  # returns instead of looping: there is nothing to trim with
    assert calls == []


@pytest.fixture
def collector_settings() -> Iterator[None]:
    """Whatever a test does to the collector, this test process gets its settings back."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector_settings")
def test_young_collections_come_less_often_keeping_the_older_thresholds() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    assert process.collect_young_less_often() is True
    assert gc.get_threshold() == (process.YOUNG_COLLECTION_THRESHOLD, 10, 10)
    assert process.collect_young_less_often() is False  # once is enough: already there


@pytest.mark.usefixtures("collector_settings")
def test_a_collector_switched_off_or_tuned_higher_is_left_alone() -> None:
    gc.set_threshold(50_000, 20, 5)
    assert process.collect_young_less_often() is False
    assert gc.get_threshold() == (50_000, 20, 5)
    gc.set_threshold(0, 10, 10)  # threshold 0: no automatic collection at all
    assert process.collect_young_less_often() is False
    assert gc.get_threshold() == (0, 10, 10)
    gc.set_threshold(700, 10, 10)
    gc.disable()
    assert process.collect_young_less_often() is False
    assert gc.get_threshold() == (700, 10, 10)
    assert not gc.isenabled()


@pytest.fixture
def switch_interval() -> Iterator[None]:
    """Whatever a test does to the GIL's switch interval, this test process gets its own back."""
    before = sys.getswitchinterval()
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.usefixtures("switch_interval")
def test_threads_waiting_for_the_gil_ask_for_it_sooner_than_cpythons_default() -> None:
    sys.setswitchinterval(process.CPYTHON_SWITCH_INTERVAL)
    assert process.hand_over_the_gil_sooner() is True
    assert sys.getswitchinterval() == pytest.approx(process.GIL_SWITCH_INTERVAL)
    assert process.hand_over_the_gil_sooner() is False  # once is enough: already there
    assert sys.getswitchinterval() == pytest.approx(process.GIL_SWITCH_INTERVAL)


@pytest.mark.usefixtures("switch_interval")
def test_an_interval_the_embedding_program_chose_is_left_alone() -> None:
    sys.setswitchinterval(0.002)
    assert process.hand_over_the_gil_sooner() is False
    assert sys.getswitchinterval() == pytest.approx(0.002)
