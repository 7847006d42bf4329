"""syncId correlation for commands arriving from a framework (pure: no trio, no clock, no I/O).

Guarantee: every command that is :meth:`~CommandCorrelator.begin`-ed gets **exactly one** response — its
result (:meth:`complete`), a failure (:meth:`fail`), or a timeout error response produced by
:meth:`expire` once its deadline (``now + timeout`` at begin) has passed. A completion that arrives after the
timeout response was produced is logged and dropped.

Commands are tracked by an internal ticket, not by syncId, so two in-flight commands that (wrongly) share a
syncId are each answered once with that syncId; the duplicate is logged. mirai frameworks match responses by
syncId (docs/mirai-api-http.md §3.4), so this is the most useful thing to do with a reused id.
"""

from __future__ import annotations

import enum
import heapq
import logging

import attrs

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@attrs.frozen
class Ticket:
    """Handle for one in-flight command."""

    number: int
    sync_id: str | None


@attrs.frozen
class Response:
    """The one response a command gets: ``data`` goes into ``{"syncId": sync_id, "data": data}``."""

    sync_id: str | None
    data: dict[str, object]
    outcome: Outcome


@attrs.frozen
class CorrelatorStatistics:
    in_flight: int
    completed: int
    failed: int
    timed_out: int
    late_dropped: int
    duplicate_sync_ids: int


@attrs.frozen
class _Pending:
    ticket: Ticket
    command: str
    deadline: float


@attrs.define
class CommandCorrelator:
    """Tracks in-flight commands of one connection and their deadlines."""

    timeout: float
    _pending: dict[int, _Pending] = attrs.field(factory=dict)
    _deadlines: list[tuple[float, int]] = attrs.field(factory=list)  # heap of (deadline, ticket number)
    _by_sync_id: dict[str | None, int] = attrs.field(factory=dict)  # in-flight count per syncId
    _next_number: int = 0
    _completed: int = 0
    _failed: int = 0
    _timed_out: int = 0
    _late_dropped: int = 0
    _duplicates: int = 0

    def begin(self, sync_id: str | None, command: str, *, now: float) -> Ticket:
        """Start tracking a command; it must be answered by ``now + timeout``."""
        self._next_number += 1
        ticket = Ticket(self._next_number, sync_id)
        if self._by_sync_id.get(sync_id, 0):
            self._duplicates += 1
            log.warning(
                "syncId %r reused while a command with that id is still running; both are answered with it",
                sync_id,
            )
        self._by_sync_id[sync_id] = self._by_sync_id.get(sync_id, 0) + 1
        deadline = now + self.timeout
        self._pending[ticket.number] = _Pending(ticket, command, deadline)
        heapq.heappush(self._deadlines, (deadline, ticket.number))
        return ticket

    def complete(self, ticket: Ticket, data: dict[str, object]) -> Response | None:
        """The command finished; returns its response, or ``None`` if it was already answered (timed out)."""
        if self._finish(ticket) is None:
            return None
        self._completed += 1
        return Response(ticket.sync_id, data, Outcome.COMPLETED)

    def fail(self, ticket: Ticket, message: str) -> Response | None:
        """The command raised unexpectedly; answer it with code 500 and ``message``."""
        if self._finish(ticket) is None:
            return None
        self._failed += 1
        return Response(ticket.sync_id, codec.status_data(StatusCode.INTERNAL_ERROR, message), Outcome.FAILED)

    def expire(self, *, now: float) -> list[Response]:
        """Timeout responses for every command whose deadline is ``<= now``."""
        expired: list[Response] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, number = heapq.heappop(self._deadlines)
            pending = self._pending.get(number)
            if pending is None:
                continue  # already answered
            self._finish(pending.ticket)
            self._timed_out += 1
            msg = (
                f"command {pending.command!r} did not finish within {self.timeout:g} s "
                "(the bridge gave up waiting; the action may still happen on Discord)"
            )
            log.warning("syncId %r: %s", pending.ticket.sync_id, msg)
            # docs/mirai-api-http.md §5.2: "anything else → 500"
            data = codec.status_data(StatusCode.INTERNAL_ERROR, msg)
            expired.append(Response(pending.ticket.sync_id, data, Outcome.TIMED_OUT))
        return expired

    def next_deadline(self) -> float | None:
        """The earliest deadline among in-flight commands (``None`` when nothing is in flight)."""
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)  # answered before its deadline
        return self._deadlines[0][0] if self._deadlines else None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def statistics(self) -> CorrelatorStatistics:
        return CorrelatorStatistics(
            in_flight=len(self._pending),
            completed=self._completed,
            failed=self._failed,
            timed_out=self._timed_out,
            late_dropped=self._late_dropped,
            duplicate_sync_ids=self._duplicates,
        )

    def _finish(self, ticket: Ticket) -> _Pending | None:
        pending = self._pending.pop(ticket.number, None)
        if pending is None:
            self._late_dropped += 1
            log.info("syncId %r finished after its timeout response was sent; result dropped", ticket.sync_id)
            return None
        remaining = self._by_sync_id[ticket.sync_id] - 1
        if remaining:
            self._by_sync_id[ticket.sync_id] = remaining
        else:
            del self._by_sync_id[ticket.sync_id]
        return pending
