"""The mirai side's transports and the bridge's HTTP listeners, composed (a composition root, like relay/app.py).

:func:`serve_mirai_adapters` runs what ``[mirai] adapters`` names — reverse-ws dials the frameworks' servers; ws and
http are mounted on the listeners — the webhook destinations' deliveries, and every HTTP mount the bridge serves
(its own ``[server]`` with health, readiness, metrics and the robots included), grouped by host and port, one socket
and one router each (relay/listeners.py). Everything they share — the command handler, the sessions, the uploads,
the outbox — comes in built by :func:`relay.app.serve_bridge`.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import trio

from adapters.mirai.cursors import DynamicCursors
from adapters.mirai.deadletters import DeadLetters
from adapters.mirai.handlers import MiraiCommandHandler, PresentedIdentity
from adapters.mirai.http_server import HttpAdapter
from adapters.mirai.reverse_ws import ReverseWsClient, serve_reverse_ws
from adapters.mirai.sessions import SessionRegistry
from adapters.mirai.upload_routes import UploadRoutes
from adapters.mirai.uploads import UploadStore
from adapters.mirai.webhook import Webhooks, serve_webhooks
from adapters.mirai.ws_server import WsAdapter
from relay.config import BridgeConfig
from relay.listeners import Mount, serve_listeners
from relay.ports import IdentityChanged
from relay.storage.outbox import Outbox
from relay.web.metrics import Metrics
from relay.web.models import ServerLimits

log = logging.getLogger(__name__)

#: seconds between sweeps of unbound http sessions, forgotten framework cursors and expired uploads
SWEEP_INTERVAL: Final = 60.0
#: the listeners' request bodies: relay/web's default, or one upload plus room for its multipart framing
UPLOAD_BODY_SLACK: Final = 1024 * 1024


@attrs.define(eq=False)
class MiraiAdapters:
    """The mirai adapters that run (issue 13): reverse-ws (empty when off), ws, http, and the listening ports."""

    reverse_ws: ReverseWsClient
    ws: WsAdapter | None = None
    http: HttpAdapter | None = None
    uploads: UploadStore | None = None
    webhooks: Webhooks | None = None  #: the webhook destinations' deliveries (None without destinations)
    #: bound port by config section ("server", "mirai.ws", "mirai.http"): useful with port 0
    ports: dict[str, int] = attrs.field(factory=dict)


async def serve_mirai_adapters(
    *,
    config: BridgeConfig,
    outbox: Outbox,
    handler: MiraiCommandHandler,
    identity: PresentedIdentity,
    sessions: SessionRegistry,
    uploads: UploadStore | None,
    metrics: Metrics,
    dead_letters: DeadLetters | None = None,
    mounts: Sequence[Mount] = (),
    bot_online: Callable[[], bool] = lambda: True,
    identity_changed: IdentityChanged | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the mirai adapters ``[mirai] adapters`` names, the webhook destinations (with ``dead_letters``) and the
    HTTP listeners; ``started(MiraiAdapters)`` once each is dialing, posting or listening. reverse-ws dials; ws and
    http are mounted on the listeners beside ``mounts`` (the bridge's own ``[server]``), one socket per host and
    port. reverse-ws and the webhooks wait for the bot id, looking again each time ``identity_changed`` returns
    (:data:`relay.ports.IdentityChanged`)."""
    mirai = config.mirai
    rng = random.SystemRandom()  # session keys and upload ids are secrets

    def bot_id() -> int:
        return identity.bot_id

    cursors = DynamicCursors(outbox, max_idle=float(config.outbox.max_age_seconds))
    async with trio.open_nursery() as nursery:
        reverse_ws = ReverseWsClient(())
        if mirai.runs("reverse-ws") and mirai.reverse_ws.destinations:
            reverse_ws = await nursery.start(
                functools.partial(
                    serve_reverse_ws,
                    config=mirai,
                    outbox=outbox,
                    dispatcher=handler,
                    identity=identity,
                    dispatcher_for_session=handler.for_session,
                    sessions=sessions,
                    bot_online=bot_online,
                    identity_changed=identity_changed,
                )
            )
        elif mirai.reverse_ws.destinations:
            log.warning(
                'mirai.reverse_ws.destinations: %d destination(s) configured but "reverse-ws" is not in '
                "mirai.adapters: they are not dialed",
                len(mirai.reverse_ws.destinations),
            )
        running = MiraiAdapters(reverse_ws=reverse_ws, uploads=uploads)
        if dead_letters is not None:
            running.webhooks = await nursery.start(
                functools.partial(
                    serve_webhooks,
                    config=mirai.webhook,
                    outbox=outbox,
                    dead_letters=dead_letters,
                    dispatcher=handler,
                    identity=identity,
                    metrics=metrics,
                    identity_changed=identity_changed,
                )
            )
        mounts = list(mounts)
        upload_routes = (
            UploadRoutes(sessions=sessions, store=uploads, handler=handler, bot_id=bot_id).routes()
            if uploads is not None
            else ()
        )
        # what the adapters frameworks dial share (adapters/mirai/dialed.py)
        shared: dict[str, Any] = {
            "config": mirai,
            "sessions": sessions,
            "handler": handler,
            "outbox": outbox,
            "cursors": cursors,
            "bot_id": bot_id,
            "extra_routes": upload_routes,
        }
        if mirai.runs("ws"):
            running.ws = WsAdapter(rng=rng, **shared)
            mounts.append(running.ws.mount())
        if mirai.runs("http"):
            running.http = HttpAdapter(**shared)
            mounts.append(running.http.mount())
        if mirai.runs("ws") or mirai.runs("http"):
            adopted = cursors.adopt_saved(trio.current_time())
            if adopted:
                log.info("outbox cursors of returning frameworks kept: %s", ", ".join(adopted))
            limits = ServerLimits(
                max_body_bytes=max(ServerLimits().max_body_bytes, config.discord.max_upload_bytes + UPLOAD_BODY_SLACK)
            )
            nursery.start_soon(_sweep, sessions, cursors, running)
        else:
            limits = ServerLimits()
        if mounts:
            running.ports = await nursery.start(functools.partial(serve_listeners, mounts, limits=limits))
        task_status.started(running)


async def _sweep(sessions: SessionRegistry, cursors: DynamicCursors, running: MiraiAdapters) -> None:
    """Every SWEEP_INTERVAL: unbound http sessions past 180 s, cursors of frameworks long gone, old uploads."""
    while True:
        await trio.sleep(SWEEP_INTERVAL)
        now = trio.current_time()
        sessions.expire(now)
        forgotten = cursors.sweep(now)
        if running.http is not None and forgotten:
            running.http.forget_queues(forgotten)
        if running.uploads is not None:
            await trio.to_thread.run_sync(running.uploads.expire, time.time())
