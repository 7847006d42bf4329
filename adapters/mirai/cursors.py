"""The outbox cursors of frameworks that connect to the bridge (ws, http): names, lifetimes, http polling.

mirai-api-http drops every event while no framework is connected (docs/mirai-api-http.md §3.6). The bridge keeps
them in its outbox (docs/architecture.md §5), and a framework that connects to the ``ws`` or ``http`` adapter has an
**identity** that keeps its outbox cursor across reconnects:

* the identity is the ``client`` header or query parameter when the framework sends one (1–64 characters
  ``[A-Za-z0-9._-]``), else the bot's qq. Every framework authenticates with the bridge's one verify key for its
  one bot, so without ``client`` all frameworks on one adapter (and channel) are the same identity;
* cursor names: ``ws:<identity>:<channel>`` (channel ``all``, ``message`` or ``event``: each channel sees its own
  events) and ``http:<identity>`` (polling);
* a cursor is made the first time its identity connects (ws) or polls (http), at the outbox's end: a framework
  connecting for the first time gets new events only, as with mirai-api-http;
* a cursor whose framework is gone (no connection, no poll) for longer than the outbox's ``max_age_seconds`` is
  forgotten (:meth:`DynamicCursors.sweep`): by then its events are past the outbox's age bound anyway, and a
  forgotten cursor no longer holds frames back. After a restart every saved cursor counts as seen at start-up.

:class:`PollQueue` is the http adapter's unread queue (§11.5) over one ``http:`` cursor: the *window* is the
oldest ``unread_queue_max_size`` events after the cursor. ``fetchMessage`` takes the oldest and moves the
cursor; ``fetchLatestMessage`` takes the newest of the window and remembers them as taken until the cursor
passes them; ``peek…`` take nothing. mirai-api-http keeps at most ``unreadQueueMaxSize + 1`` events and then
drops **new** ones; the bridge drops nothing: events beyond the window wait in the outbox and enter it as earlier
ones are fetched. Taken-out-of-order events are remembered in memory only: after a restart they may come again.

Plain synchronous code over :class:`~relay.storage.outbox.Outbox` (no trio); the callers pass ``now``.
"""

from __future__ import annotations

import logging
import re
from typing import Final

import attrs

from relay.storage.outbox import Outbox

log = logging.getLogger(__name__)

__all__ = [
    "CHANNELS",
    "CURSOR_PREFIXES",
    "DynamicCursors",
    "PollQueue",
    "http_cursor",
    "valid_client_name",
    "ws_cursor",
]

#: the ws adapter's channels (docs/mirai-api-http.md §4.2)
CHANNELS: Final = ("all", "message", "event")
#: every cursor this module makes starts with one of these
CURSOR_PREFIXES: Final = ("ws:", "http:")
_CLIENT_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def valid_client_name(name: str) -> bool:
    """Whether ``name`` can be a framework identity (it becomes part of an outbox cursor name)."""
    return _CLIENT_NAME.fullmatch(name) is not None


def ws_cursor(identity: str, channel: str) -> str:
    return f"ws:{identity}:{channel}"


def http_cursor(identity: str) -> str:
    return f"http:{identity}"


@attrs.define
class _Use:
    users: int = 0
    seen: float = 0.0


class DynamicCursors:
    """The ws/http cursors of one bridge and when each was last used (``now``: any monotonic clock)."""

    def __init__(self, outbox: Outbox, *, max_idle: float) -> None:
        self.outbox = outbox
        self.max_idle = max_idle
        self._uses: dict[str, _Use] = {}

    def adopt_saved(self, now: float) -> list[str]:
        """At start-up: register every saved ws/http cursor (they hold their frames from now on) as seen ``now``."""
        names: list[str] = []
        for prefix in CURSOR_PREFIXES:
            for name in self.outbox.saved_cursors(prefix):
                self.outbox.register(name)
                self._uses.setdefault(name, _Use(seen=now))
                names.append(name)
        return sorted(names)

    def acquire(self, name: str, now: float) -> int:
        """A connection starts delivering from ``name`` (registered if new); returns its cursor."""
        use = self._uses.setdefault(name, _Use())
        use.users += 1
        use.seen = now
        return self.outbox.register(name)

    def release(self, name: str, now: float) -> None:
        """A connection that :meth:`acquire`\\ d ``name`` ended."""
        use = self._uses.get(name)
        if use is not None:
            use.users = max(0, use.users - 1)
            use.seen = now

    def touch(self, name: str, now: float) -> int:
        """A poll from ``name``'s identity (registered if new); returns its cursor."""
        self._uses.setdefault(name, _Use()).seen = now
        return self.outbox.register(name)

    def users(self, name: str) -> int:
        use = self._uses.get(name)
        return use.users if use is not None else 0

    def sweep(self, now: float) -> list[str]:
        """Forget the cursors nobody used for longer than ``max_idle``; returns their names."""
        stale = [name for name, use in self._uses.items() if use.users == 0 and now - use.seen > self.max_idle]
        for name in stale:
            del self._uses[name]
            self.outbox.forget(name)
            log.info("outbox cursor %s forgotten: its framework has been gone for over %.0f s", name, self.max_idle)
        return stale

    def names(self) -> list[str]:
        return sorted(self._uses)


class PollQueue:
    """The unread queue of one polling identity (docs/mirai-api-http.md §11.5), read from its outbox cursor."""

    def __init__(self, outbox: Outbox, name: str, *, window: int) -> None:
        self.outbox = outbox
        self.name = name
        self.window = window
        #: events after the cursor taken by fetchLatestMessage (the cursor moves only over a contiguous prefix)
        self._taken: set[int] = set()

    def _unread(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` (at most the window) untaken events after the cursor."""
        limit = max(0, min(limit, self.window))
        cursor = self.outbox.cursor(self.name)
        if not self._taken:
            return self.outbox.read_after(cursor, limit)
        found: list[tuple[int, str]] = []
        after = cursor
        while len(found) < limit:
            batch = self.outbox.read_after(after, limit - len(found) + len(self._taken))
            if not batch:
                break
            found.extend(item for item in batch if item[0] not in self._taken)
            after = batch[-1][0]
        return found[:limit]

    def count(self) -> int:
        """``countMessage``: the unread events in the window."""
        return len(self._unread(self.window))

    def peek(self, count: int) -> list[str]:
        """``peekMessage``: the oldest ``count`` unread events, left unread."""
        return [frame for _, frame in self._unread(count)]

    def peek_latest(self, count: int) -> list[str]:
        """``peekLatestMessage``: the newest ``count`` of the window, newest first, left unread."""
        window = self._unread(self.window)
        return [frame for _, frame in reversed(window[max(0, len(window) - count) :])] if count > 0 else []

    def fetch(self, count: int) -> list[str]:
        """``fetchMessage``: the oldest ``count`` unread events; the cursor moves past them (acknowledged)."""
        taken = self._unread(count)
        if taken:
            self._advance_to(taken[-1][0])
        return [frame for _, frame in taken]

    def fetch_latest(self, count: int) -> list[str]:
        """``fetchLatestMessage``: the newest ``count`` of the window, newest first, taken."""
        if count <= 0:
            return []
        window = self._unread(self.window)
        newest = window[max(0, len(window) - count) :]
        if len(newest) == len(window):  # the whole window: nothing older stays unread before them
            if newest:
                self._advance_to(newest[-1][0])
        else:
            self._taken.update(seq for seq, _ in newest)
        return [frame for _, frame in reversed(newest)]

    def _advance_to(self, seq: int) -> None:
        self.outbox.ack(self.name, seq)
        if self._taken:
            self._taken = {s for s in self._taken if s > seq}
            cursor = self.outbox.cursor(self.name)
            while cursor + 1 in self._taken:  # taken out of order and now next in line
                cursor += 1
                self._taken.discard(cursor)
            self.outbox.ack(self.name, cursor)
