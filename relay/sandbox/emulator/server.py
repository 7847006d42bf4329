"""The emulator on one loopback port: REST under ``/api/v10``, uploaded files, and the gateway websocket.

:func:`serve_emulator` runs ``relay.web``'s HTTP server with a :class:`~relay.web.routing.Router` whose catch-all
prefix goes to :meth:`~.emulator.Emulator.handle_http` (so longer prefixes, such as the chat page's, can be
added beside it) and whose websocket upgrades go to :func:`~.gateway_shell.serve_gateway_upgrade`, except those
at a path given in ``upgrades`` (the chat page's live updates). The emulator's addresses (``base_url``,
``gateway_url``, attachment URLs) follow the bound port.

It listens on loopback only: the emulated Discord has no accounts and one well-known token, so anything that
can reach the port can act as the bot.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Mapping
from typing import Final, NoReturn

import trio

from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.errors import EmulatorError
from relay.sandbox.emulator.gateway_shell import serve_gateway_upgrade
from relay.web.models import ServerLimits
from relay.web.routing import Router
from relay.web.server import UpgradeHandler, WebSocketUpgrade, serve_http

log = logging.getLogger(__name__)

#: methods the REST API answers (others are 405, as on Discord)
REST_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Discord's request body limit for bots is 25 MiB (docs/discord.md §7.3); relay.web's default (32 MiB) covers it
LIMITS: Final = ServerLimits()


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address (see the module docstring)."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise EmulatorError(
            f"the Discord emulator listens on loopback only (127.0.0.1, ::1 or localhost), not {host!r}: "
            "anyone who can reach it can act as the bot"
        )


def make_router(emulator: Emulator) -> Router:
    """The emulator's routes: everything to its REST/files handler (the chat page adds its own prefix)."""
    router = Router()
    router.add_prefix(REST_METHODS, "/", emulator.handle_http)
    return router


async def serve_emulator(
    emulator: Emulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    router: Router | None = None,
    upgrades: Mapping[str, UpgradeHandler] | None = None,
    limits: ServerLimits = LIMITS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``emulator`` on ``host``:``port`` (0: a free port) until cancelled; ``task_status.started(port)``.

    ``router`` defaults to :func:`make_router`; ``upgrades`` maps a path to the handler of websocket upgrades
    there (every other path is the gateway's). A port in use is an :class:`~.errors.EmulatorError` saying so.
    """
    check_loopback(host)
    elsewhere = dict(upgrades or {})

    async def upgrade(handoff: WebSocketUpgrade) -> None:
        other = elsewhere.get(handoff.request.path)
        if other is not None:
            await other(handoff)
            return
        client = handoff.request.client
        await serve_gateway_upgrade(
            emulator.gateway,
            stream=handoff.stream,
            target=handoff.request.target,
            headers=handoff.request.headers,
            trailing=handoff.trailing,
            peer=f"{client[0]}:{client[1]}" if client else "a gateway client",
        )

    failure: OSError | None = None
    async with trio.open_nursery() as nursery:
        try:
            bound: int = await nursery.start(
                functools.partial(
                    serve_http,
                    router or make_router(emulator),
                    host=host,
                    port=port,
                    limits=limits,
                    upgrade_handler=upgrade,
                )
            )
        except OSError as exc:  # raised below, outside the nursery, so it is not wrapped in a group
            failure = exc
        else:
            emulator.bound(bound, host=host)
            log.info("Discord emulator: REST %s, gateway %s", emulator.base_url, emulator.gateway_url)
            task_status.started(bound)
    if failure is not None:
        raise EmulatorError(
            f"the Discord emulator cannot listen on {host} port {port}: {failure.strerror or failure}"
            + (" (is another sandbox running?)" if port else "")
        ) from failure
    raise AssertionError("unreachable: serve_http never returns")  # pragma: no cover
