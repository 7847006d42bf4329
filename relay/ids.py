"""The ids frameworks see (pure): Discord snowflakes as they are, or each as a stable small integer.

JavaScript frameworks parse every JSON number as a double, which holds integers exactly only up to 2**53, while
Discord snowflakes are around 2**60: a group id, a member id or a message target would come back changed.
``[mirai] ids = "small"`` therefore presents every 64-bit id of the mirai side (the bot, groups, members,
friends, senders, operators...) as an integer below 2**53, and maps it back in every command. Message ids need
nothing of this: they are Int32 per conversation already (docs/mirai-api-http.md §2).

Two :class:`~relay.ports.IdPresenter` implementations:

* :data:`SNOWFLAKE_IDS` — the identity (``ids = "snowflake"``); it allocates and stores nothing.
* :class:`IdMap` — the small ids. The mapping core is here, free of I/O; its table lives in the store's SQLite
  file (:mod:`relay.storage.idmap` loads it and gives the map the function that makes new pairs durable).

**Which number an id gets.** The first candidate of :func:`candidates` that no other id has taken: an unkeyed
hash (BLAKE2b) of the snowflake, spread over ``[PRESENTED_MIN, PRESENTED_MAX]`` = ``[10**15, 2**53 - 1]``.
Presented ids are exactly 16 digits: never a real snowflake (those are ≥ 2**53 after the first 25 days of
2015), never a QQ number or an Int32 (≤ 11 and 10 digits), so a log line or a framework's stored id tells which
kind it is. Deriving the number from the snowflake rather than counting means that a pair lost with the file
(or never written, see below) comes back the same the next time the snowflake is seen; only two snowflakes whose
hashes collide (chance ~ n²/1.6e16 for n ids: about 6e-5 for a million) depend on which was seen first.

**Durability.** A presented id must be on disk before any frame carrying it leaves the process: a framework may
store it (a group id in its configuration), and after a crash the bridge must still resolve it to the same
snowflake. So a first sight is written at once, through ``persist``, before :meth:`IdMap.present` returns
(one small transaction; first sights are rare: each user, channel and the bot once, ever). Inside
:meth:`IdMap.deferred` the new pairs are written together when the block ends — the command handler uses it so
that a member list of thousands of new members is one transaction, written before the response is sent. If the
write fails (a full disk) the pairs stay pending, are retried with the next write, and the id is handed out
anyway: refusing it would lose the event, and the derivation above makes the same number come back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import Final

from relay.errors import StoreError

__all__ = [
    "PRESENTED_MAX",
    "PRESENTED_MIN",
    "SNOWFLAKE_IDS",
    "IdMap",
    "SnowflakeIds",
    "allocate",
    "candidates",
    "is_presented",
]

log = logging.getLogger(__name__)

#: the smallest presented id: 10**15, so every presented id has 16 digits
PRESENTED_MIN: Final = 10**15
#: the largest: 2**53 - 1, the largest integer a JSON number parsed as an IEEE double keeps exactly
PRESENTED_MAX: Final = 2**53 - 1
_SPAN: Final = PRESENTED_MAX - PRESENTED_MIN + 1
_PERSON: Final = b"dmr-small-ids"  # BLAKE2b personalisation: this hash means nothing elsewhere

#: a pair of the map: (Discord id, presented id)
Pair = tuple[int, int]


def is_presented(value: int) -> bool:
    """Is ``value`` in the range presented ids are allocated from?"""
    return PRESENTED_MIN <= value <= PRESENTED_MAX


def candidates(real: int) -> Iterator[int]:
    """The presented ids ``real`` may get, in order of preference (endless; the first is nearly always free)."""
    key = real.to_bytes(8, "big", signed=True)
    attempt = 0
    while True:
        digest = hashlib.blake2b(key + attempt.to_bytes(4, "big"), digest_size=8, person=_PERSON).digest()
        yield PRESENTED_MIN + int.from_bytes(digest, "big") % _SPAN
        attempt += 1


def allocate(real: int, taken: Container[int]) -> int:
    """The presented id ``real`` gets when ``taken`` holds the presented ids given out so far."""
    for candidate in candidates(real):
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: candidates() never ends")


class SnowflakeIds:
    """``ids = "snowflake"``: every id is presented as it is (the identity; nothing allocated or stored)."""

    __slots__ = ()

    def present(self, real: int) -> int:
        return real

    def resolve(self, presented: int) -> int | None:
        return presented

    def deferred(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


#: the identity presenter (the encoders' and decoders' default)
SNOWFLAKE_IDS: Final = SnowflakeIds()


class IdMap:
    """``ids = "small"``: Discord ids ⇄ presented ids, every pair in memory; new pairs made durable through
    ``persist`` before they are handed out (see the module docstring).

    ``pairs`` are the pairs already stored. ``persist(new_pairs)`` writes pairs in one transaction or raises
    :class:`~relay.errors.StoreError`. Use it from one thread (the trio thread): it takes no lock of its own.
    """

    __slots__ = ("_deferring", "_forward", "_pending", "_persist", "_reverse")

    def __init__(self, pairs: Iterable[Pair] = (), *, persist: Callable[[Sequence[Pair]], None] | None = None) -> None:
        self._forward: dict[int, int] = {}
        self._reverse: dict[int, int] = {}
        for real, presented in pairs:
            self._forward[real] = presented
            self._reverse[presented] = real
        self._persist = persist
        self._pending: list[Pair] = []
        self._deferring = 0

    def __len__(self) -> int:
        return len(self._forward)

    @property
    def pending(self) -> int:
        """Pairs handed out but not yet durable (nonzero only inside :meth:`deferred` or after a failed write)."""
        return len(self._pending)

    def present(self, real: int) -> int:
        """The presented id of ``real`` (the hot path: one dict lookup); allocated on first sight.

        0 and negative numbers are not ids (mirai's "none", e.g. ``Quote.groupId`` 0): they stay as they are.
        """
        presented = self._forward.get(real)
        if presented is None:
            return self._first_sight(real)
        return presented

    def resolve(self, presented: int) -> int | None:
        """The Discord id behind ``presented``; ``None`` when the bridge never gave that id out."""
        return self._reverse.get(presented)

    def lookup(self, real: int) -> int | None:
        """The presented id of ``real`` if it has one (nothing allocated)."""
        return self._forward.get(real)

    def preview(self, real: int) -> int:
        """The presented id ``real`` has, or would get if it were seen now (nothing allocated)."""
        presented = self._forward.get(real)
        return allocate(real, self._reverse) if presented is None else presented

    def items(self) -> list[Pair]:
        """Every (Discord id, presented id) pair."""
        return list(self._forward.items())

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Ids first seen inside the block are written in one transaction when it ends (before its result can
        leave the process: the caller sends nothing inside the block). Blocks may nest. Never ``await`` inside
        one: another task's ids would be deferred too, and its frame could leave before they are written."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if not self._deferring and self._pending:
                self.flush()

    def flush(self) -> bool:
        """Write the pending pairs now; ``True`` when none is left pending."""
        if not self._pending:
            return True
        if self._persist is None:
            self._pending.clear()
            return True
        pairs = self._pending
        self._pending = []
        try:
            self._persist(pairs)
        except StoreError as exc:
            self._pending[:0] = pairs
            log.error(
                "could not store %d new small id(s), retrying with the next: %s (they were handed out anyway: "
                "the same snowflake gets the same id again, see relay/ids.py)",
                len(self._pending),
                exc,
            )
            return False
        return True

    def _first_sight(self, real: int) -> int:
        if real <= 0:
            return real
        presented = allocate(real, self._reverse)
        self._forward[real] = presented
        self._reverse[presented] = real
        self._pending.append((real, presented))
        log.debug("small id %d for Discord id %d", presented, real)
        if not self._deferring:
            self.flush()
        return presented
