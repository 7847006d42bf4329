"""mirai-api-http's ``ws`` adapter (trio shell): frameworks open a websocket to the bridge.

What a framework sees is mirai-api-http 2.10's ws adapter (docs/mirai-api-http.md §4):

* three paths: ``/all`` (every event), ``/message`` (message events, §9.1, sync messages included), ``/event``
  (every other event); commands may be sent on any of them;
* ``verifyKey``, ``sessionKey`` and ``qq`` are read from the headers first, then from the query (``qq`` that is
  not a number counts as absent); the upgrade is always accepted, then the shared session registry decides
  (§3.3 rows b–h, :mod:`adapters.mirai.sessions`);
* success: ``{"syncId":"","data":{"code":0,"session":"<key>"}}``; failure: ``{"syncId":"","data":{"code":N,
  "msg":"…"}}`` and a close with code 1000 whose reason is the message;
* per channel one connection per session: a second connection on the same path with the same session key closes
  the older one (1000). With ``qq`` every connection gets a new key, so this happens when a ``sessionKey`` is
  reused and in single mode, where every connection is ``SINGLE_SESSION``;
* then exactly the reverse-ws conversation (§3.4–§3.5) through :class:`~adapters.mirai.connection.FrameworkConnection`
  — the same session machine, command handler and event frames, no second copy of any translation. When the
  session is released elsewhere (http ``/release``) the connection is closed.

Better than mirai-api-http, which drops every event while no framework is connected: each connection delivers
from the outbox cursor ``ws:<identity>:<channel>`` (:mod:`adapters.mirai.cursors`; the identity is the ``client``
header or query parameter, else the bot's qq). A framework connecting for the first time gets new events only;
one that reconnects with the same identity gets every event of its channel it has not received, in order, once,
as long as the outbox still holds them (``[outbox]`` bounds), then the live stream. The channel filter reads
each frame's event type without parsing it (:func:`~adapters.mirai.codec.is_message_frame`); ``/all`` does not
filter at all.

The adapter's port also serves the multipart upload routes (mirai-api-http ≥ 2.10, :mod:`.upload_routes`).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any, Final

import attrs
import trio

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode
from adapters.mirai.connection import ConnectionCounters, FrameworkConnection
from adapters.mirai.cursors import CHANNELS, valid_client_name, ws_cursor
from adapters.mirai.dialed import DialedAdapter
from adapters.mirai.session import MiraiSession, SessionState
from adapters.mirai.sessions import Refused
from relay.errors import FrameTooLarge, RelayError, WebSocketError, WebSocketHandshakeFailed
from relay.listeners import Mount, WebSocketRoute
from relay.web.models import Request
from relay.web.server import WebSocketUpgrade
from relay.wire import frames
from relay.wire.connection import WebSocketConnection
from relay.wire.server import UpgradeRequest

log = logging.getLogger(__name__)

__all__ = ["WsAdapter", "channel_filter", "credentials_of"]

#: the syncId of the handshake answers (docs/mirai-api-http.md §4.2)
HANDSHAKE_SYNC_ID: Final = ""
#: seconds granted to the closing handshake
CLOSE_GRACE: Final = 2.0


def channel_filter(channel: str) -> Callable[[str], bool] | None:
    """Which outbox frames a channel delivers: None (all of them, no per-frame work) for ``/all``."""
    if channel == "message":
        return codec.is_message_frame
    if channel == "event":
        return lambda frame: not codec.is_message_frame(frame)
    return None


@attrs.frozen
class Credentials:
    verify_key: str | None = attrs.field(default=None, repr=False)
    session_key: str | None = attrs.field(default=None, repr=False)
    qq: int | None = None
    client: str | None = None  #: "" when given but invalid


def credentials_of(request: Request) -> Credentials:
    """``verifyKey``, ``sessionKey``, ``qq`` (and the bridge's ``client``): headers first, then the query."""

    def read(name: str) -> str | None:
        value = request.header(name)
        return value if value is not None else request.query_value(name)

    raw_qq = read("qq")
    qq = int(raw_qq.strip()) if raw_qq is not None and raw_qq.strip().lstrip("-").isdigit() else None
    client = read("client")
    return Credentials(
        verify_key=read("verifyKey"),
        session_key=read("sessionKey"),
        qq=qq,
        client=None if client is None else (client if valid_client_name(client) else ""),
    )


@attrs.define(eq=False)
class _Live:
    """One open connection, so a newer one with the same session and channel can close it."""

    scope: trio.CancelScope
    replaced: bool = False


class WsAdapter(DialedAdapter):
    """The ws adapter of one bridge; :meth:`mount` gives its websocket paths (and extra routes) to the listeners."""

    def __init__(self, *, rng: random.Random, **shared: Any) -> None:
        """``shared``: :class:`~adapters.mirai.dialed.DialedAdapter`'s; ``rng`` draws the session keys."""
        super().__init__(**shared)
        self.rng = rng
        self.counters = ConnectionCounters()
        self.refused = 0  #: handshakes refused (wrong key, unknown session, ...)
        self._live: dict[tuple[str, str], _Live] = {}
        self.connections: set[FrameworkConnection] = set()

    def mount(self) -> Mount:
        return Mount(
            "mirai.ws",
            self.config.ws.host,
            self.config.ws.port,
            self.extra_routes,
            tuple(WebSocketRoute(f"/{channel}", self.serve_upgrade) for channel in CHANNELS),
        )

    async def serve_upgrade(self, upgrade: WebSocketUpgrade) -> None:
        """Serve one websocket on ``/all``, ``/message`` or ``/event`` until it ends."""
        request = upgrade.request
        channel = request.path.lstrip("/")
        peer = f"framework {request.client[0]}:{request.client[1]}" if request.client else "framework"
        upgrader = UpgradeRequest(
            upgrade.stream, target=request.target, headers=request.headers, trailing=upgrade.trailing, peer=peer
        )
        if not upgrader.valid:
            await upgrader.reject(400, f"not a websocket upgrade: {upgrader.problem}".encode())
            return
        try:
            ws = await upgrader.accept(max_message_size=self.config.max_frame_bytes)
        except WebSocketHandshakeFailed as exc:
            log.debug("%s: the websocket handshake failed: %s", peer, exc)
            return
        self.counters.connections += 1
        code, reason = frames.CLOSE_NORMAL, ""
        try:
            code, reason = await self._serve(ws, request, channel, peer)
        except* FrameTooLarge as group:
            log.warning("%s on /%s: %s (mirai.max_frame_bytes); closed with 1009", peer, channel, group.exceptions[0])
        except* (WebSocketError, trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("%s on /%s: disconnected", peer, channel)
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(CLOSE_GRACE),
                contextlib.suppress(RelayError, trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await ws.aclose(code, reason)

    async def _serve(self, ws: WebSocketConnection, request: Request, channel: str, peer: str) -> tuple[int, str]:
        credentials = credentials_of(request)
        if credentials.client == "":
            return await self._refuse(
                ws,
                Refused(StatusCode.INVALID_PARAMETER, "client must be 1–64 characters of A-Z a-z 0-9 . _ -"),
                peer,
                detail=True,
            )
        outcome = self.sessions.open(
            verify_key=credentials.verify_key,
            session_key=credentials.session_key,
            qq=credentials.qq,
            bot_id=self.bot_id(),
            now=trio.current_time(),
        )
        if isinstance(outcome, Refused):
            return await self._refuse(ws, outcome, peer)
        session = outcome
        machine = MiraiSession(
            verify_key="",
            enable_verify=self.sessions.enable_verify,
            single_mode=self.sessions.single_mode,
            reserved_sync_id=self.config.reserved_sync_id,
            max_frame_bytes=self.config.max_frame_bytes,
            rng=self.rng,
            state=SessionState.VERIFIED,
            session_key=session.key,
            bot_id=session.bot_id or self.bot_id(),
            registry=self.sessions,
            session=session,
        )
        identity = credentials.client or str(machine.bot_id)
        name = ws_cursor(identity, channel)
        label = f"ws /{channel} {peer} ({name})"
        with trio.CancelScope() as scope:
            live = _Live(scope)
            key = (channel, session.key)
            older = self._live.get(key)
            if older is not None:
                older.replaced = True
                older.scope.cancel(reason="a newer connection took over the session")
            self._live[key] = live
            connection = FrameworkConnection(
                label=label,
                transport=ws,
                session=machine,
                outbox=self.outbox,
                cursor=name,
                dispatcher=self.handler.for_session(session.key),
                config=self.config,
                bot_id=self.bot_id,
                counters=self.counters,
                keep_frame=channel_filter(channel),
            )
            try:
                await ws.send_messages(
                    [codec.encode_response(HANDSHAKE_SYNC_ID, codec.verify_success_data(session.key))]
                )
                self.counters.verifications += 1
                self.cursors.acquire(name, trio.current_time())
                self.connections.add(connection)
                try:
                    await connection.run()
                finally:
                    self.connections.discard(connection)
                    self.cursors.release(name, trio.current_time())
            finally:
                machine.leave()
                if self._live.get(key) is live:
                    del self._live[key]
        if live.replaced:
            log.info("%s: closed, a newer connection took over its session on /%s", label, channel)
            return frames.CLOSE_NORMAL, "another connection took over this session"
        if session.closed:
            return frames.CLOSE_NORMAL, "the session was released"
        return frames.CLOSE_NORMAL, ""

    async def _refuse(
        self, ws: WebSocketConnection, refused: Refused, peer: str, *, detail: bool = False
    ) -> tuple[int, str]:
        """docs/mirai-api-http.md §4.2: the code and message with syncId "", then close 1000 with the message."""
        self.refused += 1
        data = refused.data()
        if detail:
            data = codec.status_data(refused.code, f"{refused.code.message}: {refused.reason}")
        log.warning("%s: websocket handshake refused with code %d: %s", peer, refused.code, refused.reason)
        await ws.send_messages([codec.encode_response(HANDSHAKE_SYNC_ID, data)])
        return frames.CLOSE_NORMAL, str(data["msg"])
