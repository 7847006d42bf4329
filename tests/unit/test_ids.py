"""The small-id mapping core (relay/ids.py): which number an id gets, stability, and when pairs are persisted."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from relay.errors import StoreError
from relay.ids import (
    PRESENTED_MAX,
    PRESENTED_MIN,
    SNOWFLAKE_IDS,
    IdMap,
    allocate,
    candidates,
    is_presented,
)

#: real Discord snowflakes of 2024 (~2**60): a double keeps only 53 of their bits
CHANNEL = 1_234_567_890_123_456_789
USER = 1_100_000_000_000_000_001


def first_candidates(real: int, count: int) -> list[int]:
    it = candidates(real)
    return [next(it) for _ in range(count)]


class Recorder:
    """A ``persist`` that records each call (a transaction) and can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int]]] = []
        self.fail = False

    def __call__(self, pairs: Sequence[tuple[int, int]]) -> None:
        if self.fail:
            raise StoreError("disk full")
        self.calls.append(list(pairs))


def test_presented_ids_are_16_digit_numbers_a_double_keeps_exactly() -> None:
    for real in (CHANNEL, USER, 2**63 - 1, 1, 10**17):
        for presented in first_candidates(real, 5):
            assert PRESENTED_MIN <= presented <= PRESENTED_MAX
            assert len(str(presented)) == 16
            assert int(float(presented)) == presented  # survives a JSON parser that reads doubles
    assert int(float(CHANNEL)) != CHANNEL  # ... which the snowflake itself does not


def test_candidates_are_a_deterministic_function_of_the_snowflake() -> None:
    assert first_candidates(CHANNEL, 3) == first_candidates(CHANNEL, 3)
    assert len(set(first_candidates(CHANNEL, 50))) == 50
    assert first_candidates(CHANNEL, 1) != first_candidates(CHANNEL + 1, 1)


def test_allocate_takes_the_first_free_candidate() -> None:
    first, second, third = first_candidates(CHANNEL, 3)
    assert allocate(CHANNEL, set()) == first
    assert allocate(CHANNEL, {first}) == second
    assert allocate(CHANNEL, {first, second}) == third


def test_is_presented_is_the_allocation_range() -> None:
    assert is_presented(PRESENTED_MIN) and is_presented(PRESENTED_MAX)
    assert not is_presented(PRESENTED_MIN - 1) and not is_presented(PRESENTED_MAX + 1)
    assert not is_presented(CHANNEL) and not is_presented(2**31 - 1)


def test_the_snowflake_presenter_is_the_identity() -> None:
    assert SNOWFLAKE_IDS.present(CHANNEL) == CHANNEL
    assert SNOWFLAKE_IDS.resolve(CHANNEL) == CHANNEL
    with SNOWFLAKE_IDS.deferred():
        pass


def test_present_is_stable_and_resolve_maps_back() -> None:
    ids = IdMap()
    channel, user = ids.present(CHANNEL), ids.present(USER)
    assert channel != user
    assert ids.present(CHANNEL) == channel and ids.present(USER) == user
    assert ids.resolve(channel) == CHANNEL and ids.resolve(user) == USER
    assert len(ids) == 2
    assert sorted(ids.items()) == sorted([(CHANNEL, channel), (USER, user)])


def test_ids_never_presented_do_not_resolve() -> None:
    ids = IdMap()
    ids.present(CHANNEL)
    assert ids.resolve(first_candidates(USER, 1)[0]) is None  # in the range, but not given out
    assert ids.resolve(CHANNEL) is None  # a Discord id is not a presented id
    assert ids.resolve(0) is None


def test_zero_and_negative_numbers_are_not_ids() -> None:
    recorder = Recorder()
    ids = IdMap(persist=recorder)
    assert ids.present(0) == 0  # e.g. Quote.groupId of a private message
    assert ids.present(-1) == -1
    assert len(ids) == 0 and recorder.calls == []


def test_the_same_snowflake_gets_the_same_id_in_a_fresh_map() -> None:
    # a pair lost with the file comes back equal on the next sight
    assert IdMap().present(CHANNEL) == IdMap().present(CHANNEL)
    assert IdMap([(USER, 1_234_567_890_123_456)]).present(CHANNEL) == IdMap().present(CHANNEL)


def test_a_taken_candidate_is_skipped() -> None:
    first, second = first_candidates(CHANNEL, 2)
    ids = IdMap([(USER, first)])  # USER holds CHANNEL's first candidate (a hash collision)
    assert ids.present(CHANNEL) == second
    assert ids.resolve(first) == USER and ids.resolve(second) == CHANNEL


def test_loaded_pairs_are_presented_without_persisting() -> None:
    recorder = Recorder()
    ids = IdMap([(CHANNEL, 1_000_000_000_000_007)], persist=recorder)
    assert ids.present(CHANNEL) == 1_000_000_000_000_007
    assert ids.resolve(1_000_000_000_000_007) == CHANNEL
    assert recorder.calls == []


def test_a_first_sight_is_persisted_before_present_returns() -> None:
    recorder = Recorder()
    ids = IdMap(persist=recorder)
    presented = ids.present(CHANNEL)
    assert recorder.calls == [[(CHANNEL, presented)]]
    ids.present(CHANNEL)
    assert len(recorder.calls) == 1  # seen before: a dict lookup, no write
    assert ids.pending == 0


def test_deferred_persists_the_ids_of_a_block_in_one_write_when_it_ends() -> None:
    recorder = Recorder()
    ids = IdMap(persist=recorder)
    with ids.deferred():
        members = [ids.present(USER + n) for n in range(1000)]
        with ids.deferred():  # nested: still one write, at the outer end
            ids.present(CHANNEL)
        assert recorder.calls == [] and ids.pending == 1001
    assert len(recorder.calls) == 1
    assert recorder.calls[0][:2] == [(USER, members[0]), (USER + 1, members[1])]
    assert ids.pending == 0


def test_deferred_persists_even_when_the_block_raises() -> None:
    recorder = Recorder()
    ids = IdMap(persist=recorder)
    with pytest.raises(ValueError), ids.deferred():
        ids.present(CHANNEL)
        raise ValueError("encoding failed")
    assert recorder.calls == [[(CHANNEL, ids.present(CHANNEL))]]


def test_a_failed_write_keeps_the_pairs_pending_and_hands_the_id_out(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    ids = IdMap(persist=recorder)
    recorder.fail = True
    channel = ids.present(CHANNEL)
    assert channel == IdMap().present(CHANNEL)  # the id the snowflake always gets
    assert ids.pending == 1
    assert "could not store 1 new small id" in caplog.text
    recorder.fail = False
    user = ids.present(USER)  # the next write carries the earlier pair too
    assert recorder.calls == [[(CHANNEL, channel), (USER, user)]]
    assert ids.pending == 0
    assert ids.flush()


def test_preview_and_lookup_allocate_nothing() -> None:
    recorder = Recorder()
    ids = IdMap(persist=recorder)
    assert ids.lookup(CHANNEL) is None
    preview = ids.preview(CHANNEL)
    assert len(ids) == 0 and recorder.calls == []
    assert ids.present(CHANNEL) == preview
    assert ids.lookup(CHANNEL) == preview == ids.preview(CHANNEL)
