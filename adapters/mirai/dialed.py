"""What the transports frameworks dial — mirai-api-http's ``ws`` and ``http`` adapters — are built from.

Both serve frameworks that connect to the bridge rather than being dialed by it: they authenticate through the one
session registry, answer commands with the one handler, deliver events from the outbox through a framework's own
cursor (:mod:`adapters.mirai.cursors`), present the bot as ``bot_id()`` says, and add the upload routes
(``extra_routes``) to their listener. :class:`DialedAdapter` holds those; each adapter adds only its protocol.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.mirai.cursors import DynamicCursors
from adapters.mirai.handlers import MiraiCommandHandler
from adapters.mirai.sessions import SessionRegistry
from relay.config import MiraiConfig
from relay.storage.outbox import Outbox
from relay.web.routing import Route


class DialedAdapter:
    """The parts every adapter a framework dials shares (see the module docstring)."""

    def __init__(
        self,
        *,
        config: MiraiConfig,
        sessions: SessionRegistry,
        handler: MiraiCommandHandler,
        outbox: Outbox,
        cursors: DynamicCursors,
        bot_id: Callable[[], int],
        extra_routes: tuple[Route, ...] = (),
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.handler = handler
        self.outbox = outbox
        self.cursors = cursors
        self.bot_id = bot_id
        self.extra_routes = extra_routes
