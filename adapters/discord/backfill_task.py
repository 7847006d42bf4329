"""The back-fill's trio shell: read each gap's channel history through REST and let the pure core deliver it.

:class:`~adapters.discord.backfill.Backfill` opens the gaps (from the gateway reader, synchronously) and decides
what is delivered; :func:`serve_backfill` reads them: the newest message the store knows of the channel (in a worker
thread), then ``GET /channels/{id}/messages?after=`` page by page (100 each, oldest first once sorted) through the
REST client and its rate limiter, until a short page, ``max_messages`` or the gap's time limit. A few gaps are read
at once; each channel's pages one after another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final, NoReturn

import trio

from adapters.discord.backfill import Backfill, Gap, GapHistory
from adapters.discord.gateway.events import DispatchReceived
from adapters.discord.rest.client import MESSAGE_PAGE_LIMIT, RestClient
from adapters.discord.snowflakes import parse_snowflake, snowflake_at, snowflake_time
from relay.errors import RelayError

log = logging.getLogger(__name__)

#: gaps read at the same time (the REST limiter spaces their requests; more would only queue there)
CONCURRENT_GAPS: Final = 4
#: seconds one gap may take; the rest of it is then given up (and reported)
GAP_TIMEOUT: Final = 120.0
#: a channel whose store knows no message is read back from this long before the lost session's last delivery
LOST_AT_SLACK: Final = 5.0

#: (conversation id, channel id) → the newest message id the store knows there, or None (a blocking call)
NewestKnown = Callable[[int, int], int | None]


async def serve_backfill(
    backfill: Backfill,
    *,
    rest: RestClient,
    newest_known: NewestKnown,
    deliver: Callable[[DispatchReceived], None],
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Read every gap ``backfill`` opens, forever. ``deliver`` is the gateway listener's path (translate and
    publish, not held); ``newest_known`` runs in a worker thread."""
    wake = trio.Event()

    def wake_up() -> None:
        wake.set()

    backfill.wake = wake_up
    limiter = trio.CapacityLimiter(CONCURRENT_GAPS)

    async def fill(gap: Gap) -> None:
        async with limiter:
            history = await read_gap(backfill, gap, rest, newest_known, clock)
        # no checkpoint from here on: the history and what was held go out before any newer live dispatch
        try:
            done = backfill.finish(gap, history, deliver)
        except Exception:  # a bug: this gap is lost (said here), the bridge and the other gaps carry on
            log.exception("shard %d: back-filling channel %d failed", gap.shard_id, gap.channel_id)
            return
        if done is not None:
            line, warning = done
            log.log(logging.WARNING if warning else logging.INFO, "%s", line)

    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            gaps = backfill.take_gaps()
            if not gaps:
                await wake.wait()
                wake = trio.Event()
                continue
            for gap in gaps:
                nursery.start_soon(fill, gap)


async def read_gap(
    backfill: Backfill, gap: Gap, rest: RestClient, newest_known: NewestKnown, clock: Callable[[], float]
) -> GapHistory:
    """The channel's messages after the newest one the store knows, within the window (see the module docstring)."""
    window_start = backfill.window_start(clock())
    limit = backfill.config.max_messages
    messages: list[dict[str, Any]] = []
    beyond = truncated = False
    try:
        with trio.fail_after(GAP_TIMEOUT):
            newest = await trio.to_thread.run_sync(newest_known, gap.conversation_id, gap.channel_id)
            if newest is None:
                if gap.lost_at is None:
                    return GapHistory(nothing_known=True)
                after = snowflake_at(gap.lost_at - LOST_AT_SLACK)  # a channel silent until the gap
            else:
                after = newest
            if snowflake_time(after) < window_start:
                beyond = True
                after = snowflake_at(window_start)
            while True:
                page = await rest.get_channel_messages(gap.channel_id, limit=MESSAGE_PAGE_LIMIT, after=after)
                ids = [i for i in (parse_snowflake(m.get("id")) for m in page) if i is not None]
                messages.extend(page)
                if len(messages) >= limit:
                    truncated = len(page) == MESSAGE_PAGE_LIMIT or len(messages) > limit
                    messages = sorted(messages, key=_id_of)[:limit]
                    break
                if len(page) < MESSAGE_PAGE_LIMIT or not ids or max(ids) <= after:
                    break
                after = max(ids)
    except trio.TooSlowError:
        return GapHistory(messages=messages, beyond_window=beyond, failure=f"not read within {GAP_TIMEOUT:.0f} s")
    except RelayError as exc:
        return GapHistory(messages=messages, beyond_window=beyond, failure=str(exc))
    return GapHistory(messages=messages, beyond_window=beyond, truncated=truncated)


def _id_of(message: dict[str, Any]) -> int:
    return parse_snowflake(message.get("id")) or 0
