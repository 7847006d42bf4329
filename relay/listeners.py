"""The bridge's HTTP listeners: features hand over routes, equal (host, port) pairs share one socket (trio shell).

A feature that serves HTTP (mirai-api-http's ``ws`` and ``http`` adapters today; health, metrics and robots
later) does not listen by itself: it describes what it serves on one host and port as a :class:`Mount` — its
:class:`~relay.web.routing.Route`\\ s (methods, path or path prefix, handler), the CORS origins for them if any,
and its :class:`WebSocketRoute`\\ s (a path whose websocket upgrades it takes). :func:`serve_listeners` groups
the mounts by (host, port), as mirai-api-http lets its ws and http adapters share one port, builds one
:class:`~relay.web.routing.Router` and one upgrade dispatcher per group, and serves each group with
:func:`~relay.web.server.serve_http`:

* the same route given by two mounts of one listener (the upload routes of both mirai adapters) is routed once;
  two different handlers for one method and path are a programming error;
* a mount with ``cors`` answers browsers through :func:`~relay.web.cors.with_cors` (preflights included);
* a websocket upgrade on a path no mount takes is refused with 404.

Nothing here knows about mirai: adapters build their mounts, the composition root passes them in.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Iterable

import attrs
import trio

from relay.errors import RelayError
from relay.web.cors import with_cors
from relay.web.models import ServerLimits
from relay.web.routing import Route, Router
from relay.web.server import UpgradeHandler, WebSocketUpgrade, serve_http
from relay.wire.server import UpgradeRequest

log = logging.getLogger(__name__)

__all__ = ["Listener", "Mount", "WebSocketRoute", "plan_listeners", "serve_listeners"]


@attrs.frozen
class WebSocketRoute:
    """Websocket upgrades on ``path`` go to ``handler``, which owns the connection from then on."""

    path: str
    handler: UpgradeHandler


@attrs.frozen
class Mount:
    """What one feature (``name``, e.g. ``"mirai.ws"``: the config section, for messages) serves on host:port:
    its routes (CORS for browsers from ``cors`` when given, relay.web.cors) and its websocket paths."""

    name: str
    host: str
    port: int
    routes: tuple[Route, ...] = ()
    websockets: tuple[WebSocketRoute, ...] = ()
    #: browser origins allowed on ``routes``; None = no CORS handling
    cors: tuple[str, ...] | None = None


@attrs.define(eq=False)
class Listener:
    """One socket: the mounts sharing a (host, port), their router and their websocket paths."""

    host: str
    port: int
    names: list[str]
    router: Router
    websockets: dict[str, UpgradeHandler]

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{' + '.join(self.names)} ({host}:{self.port})"

    async def upgrade(self, upgrade: WebSocketUpgrade) -> None:
        handler = self.websockets.get(upgrade.request.path)
        if handler is not None:
            await handler(upgrade)
            return
        request = UpgradeRequest(
            upgrade.stream,
            target=upgrade.request.target,
            headers=upgrade.request.headers,
            trailing=upgrade.trailing,
            peer="websocket client",
        )
        await request.reject(404, f"no websocket on {upgrade.request.path}".encode())


def plan_listeners(mounts: Iterable[Mount]) -> list[Listener]:
    """Group ``mounts`` by (host, port) into listeners (pure; see the module docstring)."""
    listeners: dict[tuple[str, int], Listener] = {}
    chosen_by_listener: dict[tuple[str, int], dict[Route, tuple[str, ...] | None]] = {}
    for mount in mounts:
        key = (mount.host, mount.port)
        listener = listeners.get(key)
        if listener is None:
            listener = listeners[key] = Listener(mount.host, mount.port, [], Router(), {})
        listener.names.append(mount.name)
        chosen = chosen_by_listener.setdefault(key, {})
        for route in mount.routes:
            if route not in chosen or (chosen[route] is None and mount.cors is not None):
                chosen[route] = mount.cors  # offered by two mounts of this listener: once, with CORS if either has it
        for websocket in mount.websockets:
            if listener.websockets.setdefault(websocket.path, websocket.handler) != websocket.handler:
                raise RelayError(f"two websocket handlers for {websocket.path} on {listener.label}")
    for key, listener in listeners.items():
        for route, cors in chosen_by_listener.get(key, {}).items():
            served = route
            if cors is not None:
                methods = route.methods if "OPTIONS" in route.methods else (*route.methods, "OPTIONS")
                served = Route(methods, route.path, with_cors(route.handler, allowed_origins=cors), route.prefix)
            listener.router.include([served])
    return list(listeners.values())


async def serve_listeners(
    mounts: Iterable[Mount],
    *,
    limits: ServerLimits = ServerLimits(),  # noqa: B008  (frozen, so one shared default is safe)
    task_status: trio.TaskStatus[dict[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every listener until cancelled; ``started`` with each mount's bound port by name (port 0 = ephemeral).

    A port that cannot be bound raises :class:`~relay.errors.RelayError` naming the mounts and what to change.
    """
    listeners = plan_listeners(mounts)
    bound: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            try:
                port: int = await nursery.start(
                    functools.partial(
                        serve_http,
                        listener.router,
                        host=listener.host,
                        port=listener.port,
                        limits=limits,
                        upgrade_handler=listener.upgrade if listener.websockets else None,
                    )
                )
            except OSError as exc:
                raise RelayError(_bind_failure(listener, exc)) from None
            for name in listener.names:
                bound[name] = port
            log.info("%s listening on port %d", " + ".join(listener.names), port)
        task_status.started(bound)
        if not listeners:
            await trio.sleep_forever()


def _bind_failure(listener: Listener, exc: OSError) -> str:
    sections = " and ".join(f"[{name}]" for name in listener.names)
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (another program, or another bridge, listens there)"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "this machine has no such address"
    else:
        why = exc.strerror or str(exc)
    return f"{listener.label}: cannot listen: {why}; change host or port in {sections}"
