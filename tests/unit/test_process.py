"""The process-memory helpers (relay.process: glibc malloc arena cap and trim)."""

from __future__ import annotations

import os

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

    monkeypatch.setattr(process.os, "confstr", not_glibc, raising=False)
    assert process.limit_malloc_arenas(env={}) is False
    assert process.malloc_trimmer() is None


async def test_without_glibc_the_trim_task_ends_after_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_glibc(name: str) -> str | None:
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(process.os, "confstr", not_glibc, raising=False)
    calls: list[int] = []

    def activity() -> int:
        calls.append(1)
        return 0

    await process.serve_memory_trim(activity)  # returns instead of looping: there is nothing to trim with
    assert calls == []
