"""The gateway reader's ``on_event``: each dispatch through the translator to the relay, in the order Discord sent it
— except what the back-fill holds back until its turn (:mod:`adapters.discord.backfill`).

Pure and synchronous like the translator: the shard calls it for every event it reads, so it never awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from adapters.discord.backfill import Backfill
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.gateway.events import (
    DispatchReceived,
    GatewayEvent,
    ShardConnected,
    ShardDisconnected,
    ShardReady,
    ShardResumed,
)
from adapters.discord.snowflakes import parse_snowflake
from relay.ports import EventSink

log = logging.getLogger(__name__)


class GatewayListener:
    """The gateway reader's ``on_event``: translate each dispatch and hand its envelope events to ``sink``.

    The shard calls it synchronously for every event it reads, so it never awaits (heartbeat ACKs keep being
    read behind it). ``clock`` gives the wall-clock time a dispatch is stamped with (``time.time`` in the app).

    With a :class:`~adapters.discord.backfill.Backfill` it also tells that when sessions start (READY), resume
    and become available per guild (GUILD_CREATE), and keeps back the dispatches of a channel being read back;
    :meth:`deliver` is the path those take once their turn comes. ``on_session`` is called whenever a shard's
    session starts or resumes, once the READY before it was translated (so the Discord cache knows the bot): the
    app wakes what waits for the bot id with it (:data:`relay.ports.IdentityChanged`).
    """

    def __init__(
        self,
        translator: DispatchTranslator,
        sink: EventSink,
        clock: Callable[[], float],
        backfill: Backfill | None = None,
        on_session: Callable[[], object] = lambda: None,
    ) -> None:
        self.translator = translator
        self.backfill = backfill
        self._on_session = on_session
        self._on_dispatch = translator.on_dispatch
        self._publish = sink.publish_nowait
        self._clock = clock
        #: shard id → when its session stopped delivering (the first disconnect since it last was live)
        self._lost_at: dict[int, float] = {}
        #: when the previous run of the bridge last saved its state (epoch seconds): where the first session's
        #: gaps start for channels whose store knows no message; set by the composition root
        self.previous_run_saved_at: float | None = None

    def __call__(self, event: GatewayEvent) -> None:
        backfill = self.backfill
        if type(event) is DispatchReceived:
            if backfill is None:
                for item in self._on_dispatch(event.name, event.data, self._clock()):
                    self._publish(item)
                return
            if backfill.holds(event):
                return
            if backfill.replaying and event.name == "MESSAGE_CREATE":
                backfill.replayed(event.shard_id, event.data)
            for item in self._on_dispatch(event.name, event.data, self._clock()):  # deliver(), inlined: hot path
                self._publish(item)
            if event.name == "GUILD_CREATE" and isinstance(event.data, dict) and not event.data.get("unavailable"):
                guild_id = parse_snowflake(event.data.get("id"))
                if guild_id is not None:
                    backfill.guild_available(guild_id)
        elif isinstance(event, ShardDisconnected):
            self._lost_at.setdefault(event.shard_id, self._clock())
            for item in self.translator.connection_lost():
                self._publish(item)
        elif isinstance(event, ShardReady):
            lost_at = self._lost_at.pop(event.shard_id, None)
            if backfill is not None:
                if lost_at is None:
                    lost_at = self.previous_run_saved_at
                backfill.session_started(event.shard_id, event.guild_ids, lost_at=lost_at)
            self._on_session()
        elif isinstance(event, ShardResumed):
            self._lost_at.pop(event.shard_id, None)
            if backfill is not None:
                line = backfill.session_resumed(event.shard_id, event.replayed)
                if line is not None:
                    log.info("%s", line)
            self._on_session()
        elif isinstance(event, ShardConnected) and backfill is not None and event.resuming:
            backfill.resuming(event.shard_id)

    def deliver(self, event: DispatchReceived) -> None:
        """Translate and publish one dispatch, never held (what the back-fill hands back in its order)."""
        for item in self._on_dispatch(event.name, event.data, self._clock()):
            self._publish(item)

    def tick(self) -> None:
        """Publish what waited for a deadline (recalls whose audit-log entry did not come); cheap when nothing
        waits. Call it a few times a second."""
        if self.translator.recalls.waiting:
            try:
                items = self.translator.tick(self._clock())
            except Exception:  # a bug: the waiting recalls are lost (said here), nothing else is
                log.exception("releasing the recalls that waited for their audit-log entry failed")
                return
            for item in items:
                self._publish(item)


def gateway_listener(
    translator: DispatchTranslator,
    sink: EventSink,
    clock: Callable[[], float],
    backfill: Backfill | None = None,
    on_session: Callable[[], object] = lambda: None,
) -> GatewayListener:
    """The gateway reader's ``on_event`` (see :class:`GatewayListener`)."""
    return GatewayListener(translator, sink, clock, backfill, on_session)
