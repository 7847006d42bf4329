"""mirai-api-http's ``reverse-ws`` adapter (trio shell): the bridge dials each framework's websocket server.

One loop per configured destination (docs/mirai-api-http.md §3.2, §3.6), all in one nursery; a destination that is
down never affects the others. Each loop opens a websocket with :func:`relay.wire.client.connect_websocket` and
serves it as a :class:`~adapters.mirai.connection.FrameworkConnection` that delivers from the destination's
own outbox cursor (named after the destination's label). Nothing here knows about frames or mirai commands.

Incoming frames larger than ``mirai.max_frame_bytes`` close the connection with 1009 (Message Too Big) before
they are buffered whole; the destination logs it and reconnects.

Any error — refused connection, refused handshake, TLS failure, dropped socket — ends the connection and the
destination reconnects forever with exponential backoff, full jitter and a cap (``[mirai.reverse_ws.reconnect]``;
mirai-api-http itself gives up on several of these, §3.6), logging one sentence that names the destination and
the cause. The dial waits until the bot id is known (Discord READY, or ``mirai.bot_id``), because a framework
binds to that id when it verifies; it looks again whenever ``identity_changed`` returns (the app: when a Discord
session starts), so the framework is dialed as soon as READY is read.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Final

import attrs
import trio

from adapters.mirai.connection import ConnectionCounters, FrameworkConnection, new_session
from adapters.mirai.session import CommandDispatcher
from adapters.mirai.sessions import SessionRegistry
from relay.backoff import backoff_delay
from relay.config import DestinationConfig, MiraiConfig, Protocol
from relay.errors import FrameTooLarge, RelayError, WebSocketClosed, WebSocketHandshakeFailed
from relay.ports import BotIdentity, IdentityChanged
from relay.storage.outbox import Outbox
from relay.wire import frames
from relay.wire.client import Endpoint, connect_websocket, verifying_context

log = logging.getLogger(__name__)

#: without an ``identity_changed`` signal (a library caller's choice): how often to look again whether Discord
#: READY told us the bot id, before dialing
BOT_ID_POLL_INTERVAL: Final = 0.1
#: seconds granted to the closing handshake when a connection ends
CLOSE_GRACE: Final = 2.0


# --------------------------------------------------------------------------- pure helpers


def merged(adapter_wide: dict[str, str], per_destination: dict[str, str]) -> dict[str, str]:
    """Adapter-wide values, overridden by the destination's (docs/mirai-api-http.md §3.2, documented semantics).

    Keys compare case-insensitively (HTTP header names), keeping the destination's spelling.
    """
    result: dict[str, str] = {}
    lower_to_key: dict[str, str] = {}
    for source in (adapter_wide, per_destination):
        for key, value in source.items():
            previous = lower_to_key.pop(key.lower(), None)
            if previous is not None:
                del result[previous]
            result[key] = value
            lower_to_key[key.lower()] = key
    return result


def destination_resource(config: MiraiConfig, destination: DestinationConfig) -> str:
    """The request target: ``path`` plus the merged ``extra_parameters`` as the query string."""
    path = destination.path if destination.path.startswith("/") else "/" + destination.path
    params = merged(config.reverse_ws.extra_parameters, destination.extra_parameters)
    if params:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
    return path


def _host_port(destination: DestinationConfig) -> str:
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    return f"{host}:{destination.port}"


def destination_url(config: MiraiConfig, destination: DestinationConfig) -> str:
    """``{protocol}://{host}:{port}{path}`` plus the merged ``extra_parameters`` (docs/mirai-api-http.md §3.2)."""
    return f"{destination.protocol.value}://{_host_port(destination)}{destination_resource(config, destination)}"


def destination_endpoint(config: MiraiConfig, destination: DestinationConfig) -> Endpoint:
    """Where to dial: the ``Host`` header always names the port, as mirai-api-http's client does."""
    return Endpoint(
        secure=destination.protocol is Protocol.WSS,
        host=destination.host,
        port=destination.port,
        host_header=_host_port(destination),
        resource=destination_resource(config, destination),
    )


def destination_headers(config: MiraiConfig, destination: DestinationConfig, bot_id: int) -> list[tuple[str, str]]:
    """The merged ``extra_headers``, plus ``qq: <bot id>`` unless ``mirai.send_qq_header`` is false."""
    headers = merged(config.reverse_ws.extra_headers, destination.extra_headers)
    if config.send_qq_header and not any(key.lower() == "qq" for key in headers):
        headers["qq"] = str(bot_id)
    return list(headers.items())


def ssl_context_for(destination: DestinationConfig) -> ssl.SSLContext | None:
    """Certificate-verifying TLS for ``wss`` (system trust store, plus ``ca_file``); never disabled."""
    if destination.protocol is not Protocol.WSS:
        return None
    try:
        return verifying_context(destination.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise RelayError(
            f"destination {destination.label}: cannot load ca_file {destination.ca_file!r}: {exc}; "
            "fix the path or remove ca_file to use the system trust store"
        ) from None


def handshake_failure_text(exc: WebSocketHandshakeFailed) -> str:
    """The reason a dial failed, with what to check when the framework answered with an HTTP status."""
    if exc.status is not None:
        return (
            f"the framework refused the websocket upgrade with HTTP {exc.status}; check the destination's path, "
            "extra_parameters and extra_headers against the framework's reverse-ws settings"
        )
    return exc.reason


def disconnect_text(exc: WebSocketClosed) -> str:
    """How a served connection ended, in the framework's terms."""
    if exc.code is None:
        return "the framework dropped the connection" + (f" ({exc.reason})" if exc.reason else "")
    return f"the framework closed the websocket with code {exc.code}" + (f": {exc.reason}" if exc.reason else "")


# --------------------------------------------------------------------------- statistics


@attrs.frozen(kw_only=True)
class DestinationStatistics:
    label: str
    connected: bool
    verified: bool
    delivered_seq: int  #: the destination's outbox cursor
    backlog: int  #: outbox frames not yet delivered to it
    commands_in_flight: int
    responses_queued: int
    connections: int  #: successful websocket handshakes so far
    verifications: int
    timed_out_commands: int
    frames_delivered: int = 0  #: event frames written to its verified connections


# --------------------------------------------------------------------------- one destination


class DestinationClient:
    """The connection loop of one destination; run by :func:`serve_reverse_ws`."""

    def __init__(
        self,
        *,
        destination: DestinationConfig,
        config: MiraiConfig,
        outbox: Outbox,
        dispatcher: CommandDispatcher,
        identity: BotIdentity,
        rng: random.Random | None = None,
        dispatcher_for_session: Callable[[str], CommandDispatcher] | None = None,
        sessions: SessionRegistry | None = None,
        bot_online: Callable[[], bool] = lambda: True,
        identity_changed: IdentityChanged | None = None,
    ) -> None:
        self.destination = destination
        self.identity_changed = identity_changed or functools.partial(trio.sleep, BOT_ID_POLL_INTERVAL)
        self.sessions = sessions
        self.bot_online = bot_online
        self.dispatcher_for_session = dispatcher_for_session
        self.config = config
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.identity = identity
        self.rng = rng if rng is not None else random.Random()
        self.label = destination.label
        self.counters = ConnectionCounters()
        self._connection: FrameworkConnection | None = None

    def bot_id(self) -> int:
        """The qq the bridge presents: ``mirai.bot_id`` when set, else the Discord bot user id (0 before READY)."""
        return self.config.bot_id or self.identity.bot_id

    def statistics(self) -> DestinationStatistics:
        conn = self._connection
        cursor = self.outbox.cursor(self.label) if self.label in self.outbox.statistics().cursors else 0
        return DestinationStatistics(
            label=self.label,
            connected=conn is not None,
            verified=conn is not None and conn.verified,
            delivered_seq=cursor,
            backlog=max(0, self.outbox.last_seq - cursor),
            commands_in_flight=conn.correlator.in_flight if conn else 0,
            responses_queued=len(conn.responses) if conn else 0,
            connections=self.counters.connections,
            verifications=self.counters.verifications,
            timed_out_commands=self.counters.timed_out,
            frames_delivered=self.counters.frames_delivered,
        )

    async def serve(self, *, task_status: trio.TaskStatus[DestinationClient] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect — forever. Ready (``started``) once the destination's cursor exists."""
        self.outbox.register(self.label)
        if self.destination.method.upper() != "GET":
            log.warning(
                "%s: method %r ignored: a websocket upgrade is always a GET (RFC 6455 §4.1)",
                self.label,
                self.destination.method,
            )
        task_status.started(self)
        attempt = 0
        while True:
            await self._wait_for_bot_id()
            verifications_before = self.counters.verifications
            # except*: the connection's tasks run in a nursery, which wraps whatever ends them in a group
            try:
                await self._connect_and_serve()
                log.info("%s: connection ended", self.label)
            except* FrameTooLarge as group:
                log.warning(
                    "%s: %s (mirai.max_frame_bytes); connection closed with 1009 — raise the limit if such "
                    "frames are legitimate",
                    self.label,
                    _first(group),
                )
            except* WebSocketHandshakeFailed as group:
                failure = _first(group)
                assert isinstance(failure, WebSocketHandshakeFailed)
                log.warning("%s: %s", self.label, handshake_failure_text(failure))
            except* WebSocketClosed as group:
                closed = _first(group)
                assert isinstance(closed, WebSocketClosed)
                log.info("%s: disconnected: %s", self.label, disconnect_text(closed))
            except* trio.TooSlowError:
                log.warning(
                    "%s: connecting took longer than mirai.reverse_ws.connect_timeout=%g s",
                    self.label,
                    self.config.reverse_ws.connect_timeout,
                )
            except* (OSError, ssl.SSLError, trio.BrokenResourceError, RelayError) as group:
                log.warning("%s: connection failed: %s", self.label, _describe(_first(group)))
            except* Exception:  # reconnect on ANY error (docs/architecture.md §5), but show what went wrong
                log.exception("%s: unexpected error on the connection", self.label)
            finally:
                self._connection = None
            if self.counters.verifications > verifications_before:
                attempt = 0  # a verified session resets the backoff
            delay = backoff_delay(self.config.reverse_ws.reconnect, attempt, self.rng)
            attempt += 1
            log.info("%s: reconnecting in %.1f s", self.label, delay)
            await trio.sleep(delay)

    async def _wait_for_bot_id(self) -> None:
        if self.bot_id():
            return
        log.info("%s: waiting for the Discord bot id (READY) before dialing the framework", self.label)
        while not self.bot_id():
            await self.identity_changed()

    async def _connect_and_serve(self) -> None:
        config = self.config
        endpoint = destination_endpoint(config, self.destination)
        log.info("%s: connecting to %s", self.label, endpoint.display)
        with trio.fail_after(config.reverse_ws.connect_timeout):
            ws = await connect_websocket(
                endpoint,
                max_message_size=config.max_frame_bytes,
                headers=destination_headers(config, self.destination, self.bot_id()),
                ssl_context=ssl_context_for(self.destination),
                peer=f"framework {endpoint.display}",
            )
        self.counters.connections += 1
        log.info("%s: connected; waiting for the framework's verify", self.label)
        connection = FrameworkConnection(
            label=self.label,
            transport=ws,
            session=new_session(config, self.rng, self.sessions),
            outbox=self.outbox,
            cursor=self.label,
            dispatcher=self.dispatcher,
            config=config,
            bot_id=self.bot_id,
            bot_online=self.bot_online,
            counters=self.counters,
            dispatcher_for_session=self.dispatcher_for_session,
        )
        self._connection = connection
        try:
            await connection.run()
        finally:
            # RFC 6455 §7.4.1: 1001 "going away" — the bridge is leaving or reconnecting (explicit, never 1006)
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                await ws.aclose(frames.CLOSE_GOING_AWAY, "relay connection closing")


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group, for a one-line log message."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


# --------------------------------------------------------------------------- all destinations


class ReverseWsClient:
    """Every configured destination; ``statistics()`` gives one record per destination."""

    def __init__(self, destinations: tuple[DestinationClient, ...]) -> None:
        self.destinations = destinations

    def statistics(self) -> tuple[DestinationStatistics, ...]:
        return tuple(d.statistics() for d in self.destinations)


async def serve_reverse_ws(
    *,
    config: MiraiConfig,
    outbox: Outbox,
    dispatcher: CommandDispatcher,
    identity: BotIdentity,
    rng: random.Random | None = None,
    dispatcher_for_session: Callable[[str], CommandDispatcher] | None = None,
    sessions: SessionRegistry | None = None,
    bot_online: Callable[[], bool] = lambda: True,
    identity_changed: IdentityChanged | None = None,
    task_status: trio.TaskStatus[ReverseWsClient] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every destination of ``config.reverse_ws`` forever; ``started(ReverseWsClient)`` once all cursors exist.

    ``dispatcher`` answers every authenticated command. ``dispatcher_for_session``, if given, is called with the
    session key after each successful verify and its result serves that connection instead (so ``sessionInfo``
    can report the key: ``dispatcher_for_session=handler.for_session``). ``sessions`` is the bridge's session
    registry, shared with the ws and http adapters (a session key made over http verifies here too; each
    connection gets a private one when None). ``bot_online`` says whether the bot's Discord connection is up: a
    verify announces BotOnlineEvent then, else BotOfflineEventDropped. A destination waits for the bot id before
    it dials, looking again each time ``identity_changed`` returns (:data:`relay.ports.IdentityChanged`; every
    :data:`BOT_ID_POLL_INTERVAL` without it). ``rng`` (session keys, backoff jitter)
    defaults to a fresh ``random.Random()``. The caller runs ``outbox``'s flusher
    (:func:`relay.storage.flushers.serve_outbox_flusher`) and closes it after this ends.
    """
    shared_rng = rng if rng is not None else random.Random()
    async with trio.open_nursery() as nursery:
        clients: list[DestinationClient] = []
        for destination in config.reverse_ws.destinations:
            client = DestinationClient(
                destination=destination,
                config=config,
                outbox=outbox,
                dispatcher=dispatcher,
                identity=identity,
                rng=shared_rng,
                dispatcher_for_session=dispatcher_for_session,
                sessions=sessions,
                bot_online=bot_online,
                identity_changed=identity_changed,
            )
            clients.append(await nursery.start(_serve_client, client))
        task_status.started(ReverseWsClient(tuple(clients)))
        if not clients:
            log.warning("no [[mirai.reverse_ws.destinations]] configured: events are kept in the outbox only")
            await trio.sleep_forever()


async def _serve_client(
    client: DestinationClient, *, task_status: trio.TaskStatus[DestinationClient] = trio.TASK_STATUS_IGNORED
) -> None:
    await client.serve(task_status=task_status)
