"""The HTTP/1.1 server: a thin trio shell around h11, with a websocket-upgrade hand-off.

:func:`serve_http` listens, and for each connection reads requests with h11, calls the handler, and writes
its responses (keep-alive and pipelining as h11 allows them). Everything a client sends is answered with a
status or ends that connection only:

* a head h11 refuses (malformed request line or header, conflicting Content-Length, a Transfer-Encoding
  other than chunked) → h11's status hint (400, 431, 501), then close; both Content-Length and
  Transfer-Encoding (a request-smuggling attempt, RFC 9112 §6.1) → 400, then close; an HTTP version other
  than 1.x → 505; CONNECT → 501;
* a declared Content-Length over ``max_body_bytes`` → 413 before any body byte is read (no ``100 Continue``);
  a chunked body that grows past it → 413 as soon as it does; then close;
* a head not complete ``header_timeout`` seconds after its first byte, or a body not complete
  ``body_timeout`` seconds after its head → 408, then close; no request within ``keep_alive_timeout`` → close;
  a response not written within ``send_timeout`` → close;
* a handler that raises :class:`~relay.web.models.RequestRejected` → its status;
  :class:`~relay.web.models.DropConnection` → the connection is closed with no answer (on purpose: a test
  peer playing a flaky server); any other exception → 500 with a JSON body, logged with the traceback; the
  server goes on;
* beyond ``max_connections`` open connections, a new one is accepted, its first request answered 503 with
  ``Retry-After``, and closed (a clear answer rather than a stalled connect); at most
  :data:`MAX_REJECTING` such answers are in progress at once, beyond which new connections are closed at once.

Every close after an error is graceful: our side is shut for writing and what the client still sends is read
and dropped for a moment, so the client reads the status instead of a reset.

A GET with ``Upgrade: websocket`` and ``Connection: Upgrade`` goes to the ``upgrade_handler`` as a
:class:`WebSocketUpgrade` (the raw stream plus any bytes h11 read past the head), which owns the stream from
then on: the websocket protocol is ``relay/wire``'s. Without an upgrade handler the Upgrade header is ignored
(RFC 9110 §7.8 allows it) and the request goes to the ordinary handler, which answers what it has for that
path (a :class:`~relay.web.routing.Router` without the path answers 404).

Logging: DEBUG for what a client did wrong, WARNING when the server is degraded (connection limit reached),
ERROR for a handler's crash. A request is logged by method and path only: never its query (mirai clients put
their session key there), headers or body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn, TypeAlias

import attrs
import h11
import trio

from relay.web import models
from relay.web.models import Handler, Request, Response, ServerLimits

__all__ = ["MAX_REJECTING", "UpgradeHandler", "WebSocketUpgrade", "serve_http"]

log = logging.getLogger(__name__)

#: bytes asked of the socket per read
READ_BYTES: Final = 64 * 1024
#: connections being answered 503 at once (each holds a file descriptor for up to one header timeout)
MAX_REJECTING: Final = 16
#: a graceful close reads and drops at most this much of what the client still sends ...
LINGER_BYTES: Final = 1024 * 1024
#: ... for at most this many seconds
LINGER_SECONDS: Final = 2.0
#: seconds between two warnings that the connection limit is reached
LIMIT_WARNING_INTERVAL: Final = 60.0

_SUPPORTED_VERSIONS: Final = (b"1.1", b"1.0")
#: RFC 9110 §15.3.5, §15.4.5: never a body, nor (204) a Content-Length
_BODILESS_STATUSES: Final = frozenset({204, 304})


@attrs.frozen
class WebSocketUpgrade:
    """An HTTP request that asked for a websocket upgrade, and the connection it came on."""

    request: Request
    #: the raw connection, positioned after the request (head and, if any, body)
    stream: trio.abc.Stream
    #: bytes h11 had already read past the request
    trailing: bytes = attrs.field(repr=False)


#: owns the stream from then on (answers the handshake or refuses it, then closes the stream)
UpgradeHandler: TypeAlias = Callable[[WebSocketUpgrade], Awaitable[None]]


async def serve_http(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int,
    limits: ServerLimits = ServerLimits(),  # noqa: B008  (frozen, so one shared default is safe)
    upgrade_handler: UpgradeHandler | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve HTTP/1.1 on ``host`` (an IPv4 or IPv6 literal, or a name) and ``port`` until cancelled.

    The bound port is given to ``task_status.started`` (useful with ``port=0``, an ephemeral port). A name that
    resolves to several addresses is served on all of them; with ``port=0`` only on the first one, so that
    there is one port to report.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound_port: int = listeners[0].socket.getsockname()[1]
    server = _Server(handler=handler, upgrade_handler=upgrade_handler, limits=limits)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.serve_connection, listeners)
        log.info("HTTP server listening on %s port %d", host, bound_port)
        task_status.started(bound_port)
    raise AssertionError("unreachable: trio.serve_listeners never returns")  # pragma: no cover


@attrs.define(eq=False)
class _Server:
    """Counts the connections and gives each one its _Connection."""

    handler: Handler
    upgrade_handler: UpgradeHandler | None
    limits: ServerLimits
    active: int = 0
    rejecting: int = 0
    last_limit_warning: float | None = None

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        # trio.serve_listeners closes the stream when this returns, and would stop the whole server if it
        # raised: so everything but cancellation is caught here, per connection.
        busy = self.active >= self.limits.max_connections
        if busy:
            self._warn_limit()
            if self.rejecting >= MAX_REJECTING:
                return
            self.rejecting += 1
        else:
            self.active += 1
        try:
            connection = _Connection(stream, self.limits, _peer(stream))
            await connection.serve(self.handler, self.upgrade_handler, busy=busy)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("connection lost: %r", exc)
        except Exception:
            log.exception("HTTP connection failed; closing it")
        finally:
            if busy:
                self.rejecting -= 1
            else:
                self.active -= 1

    def _warn_limit(self) -> None:
        now = trio.current_time()
        if self.last_limit_warning is None or now - self.last_limit_warning >= LIMIT_WARNING_INTERVAL:
            self.last_limit_warning = now
            log.warning(
                "HTTP server: %d connections open, the limit (max_connections); answering new ones 503",
                self.active,
            )


def _peer(stream: trio.SocketStream) -> tuple[str, int] | None:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return None
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) else None


class _TimedOut(Exception):
    """A phase's deadline passed (internal to this module)."""


class _Refused(Exception):
    """The request must be answered with ``response`` and the connection closed (internal)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _refuse(status: int, message: str) -> _Refused:
    return _Refused(models.json_error(status, message))


@attrs.define(eq=False)
class _Connection:
    """One client connection: h11 plus the stream, one request at a time."""

    stream: trio.SocketStream
    limits: ServerLimits
    client: tuple[str, int] | None
    conn: h11.Connection = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)

    async def serve(self, handler: Handler, upgrade_handler: UpgradeHandler | None, *, busy: bool) -> None:
        # a connection only answered 503 does not get to idle for long
        idle_timeout = self.limits.header_timeout if busy else self.limits.keep_alive_timeout
        while True:
            buffered, closed = self.conn.trailing_data
            if not buffered and not closed:  # no pipelined request waiting: wait for the next one
                with trio.move_on_after(idle_timeout) as idle:
                    await self._receive()
                if idle.cancelled_caught:
                    log.debug("%s: idle for %g s; closing", self.client, idle_timeout)
                    return
            try:
                request = await self._read_request(busy=busy)
            except _Refused as refused:
                log.debug("%s: answered %d and closed", self.client, refused.response.status)
                if await self._send(refused.response, close=True):
                    await self._close_gracefully()
                return
            if request is None:  # the client closed the connection between requests
                return
            if upgrade_handler is not None and models.is_websocket_upgrade(request):
                await self._hand_over(upgrade_handler, request)
                return
            try:
                response = await _respond(handler, request)
            except models.DropConnection as exc:
                log.debug("%s %s: closing the connection unanswered (%s)", request.method, request.path, exc)
                await trio.aclose_forcefully(self.stream)
                return
            if not await self._send(response, head_only=request.method == "HEAD"):
                return  # not taken: a client that does not read gets no lingering either
            if self.conn.our_state is h11.MUST_CLOSE:
                await self._close_gracefully()
                return
            self.conn.start_next_cycle()

    # ------------------------------------------------------------------------------------------ reading

    async def _receive(self) -> None:
        """One read from the socket into h11 (b"" tells it the client closed)."""
        self.conn.receive_data(await self.stream.receive_some(READ_BYTES))

    async def _next_event(self, deadline: float) -> object:
        """h11's next event (never NEED_DATA): reads until there is one, or the deadline passes (_TimedOut)."""
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _refuse(exc.error_status_hint, f"malformed request: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_at(deadline) as scope:
                await self._receive()
            if scope.cancelled_caught:
                raise _TimedOut

    async def _read_request(self, *, busy: bool) -> Request | None:
        """The next request, body included; None if the client closed first. Raises _Refused."""
        try:
            event = await self._next_event(trio.current_time() + self.limits.header_timeout)
        except _TimedOut:
            raise _refuse(408, f"the request head took longer than {self.limits.header_timeout:g} s") from None
        if not isinstance(event, h11.Request):  # ConnectionClosed (or nothing a request can start with)
            return None
        self._check_head(event)
        if busy:
            raise _Refused(
                models.json_error(
                    503, "the server has too many connections open; retry later", headers=(("retry-after", "1"),)
                )
            )
        try:
            body = await self._read_body(event, trio.current_time() + self.limits.body_timeout)
        except _TimedOut:
            raise _refuse(408, f"the request body took longer than {self.limits.body_timeout:g} s") from None
        try:
            return models.build_request(event.method, event.target, event.headers, body, self.client)
        except models.RequestRejected as exc:
            raise _Refused(exc.response()) from None

    def _check_head(self, head: h11.Request) -> None:
        # h11 bounds only a head still incomplete; one that arrived whole in a single read is measured here
        size = len(head.method) + len(head.target) + sum(len(name) + len(value) + 4 for name, value in head.headers)
        if size > self.limits.max_header_bytes:
            raise _refuse(431, f"the request head is larger than {self.limits.max_header_bytes} bytes")
        if head.http_version not in _SUPPORTED_VERSIONS:
            raise _refuse(505, "only HTTP/1.0 and HTTP/1.1 are served")
        names = {name for name, _ in head.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            raise _refuse(400, "a request may not have both Content-Length and Transfer-Encoding")
        if head.method == b"CONNECT":
            raise _refuse(501, "CONNECT is not served")
        length = next((value for name, value in head.headers if name == b"content-length"), None)
        if length is not None and int(length) > self.limits.max_body_bytes:  # h11 checked it is digits
            raise _refuse(413, f"the body is larger than {self.limits.max_body_bytes} bytes")

    async def _read_body(self, head: h11.Request, deadline: float) -> bytes:
        if self.conn.they_are_waiting_for_100_continue:
            await self._send_bytes(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while True:
            event = await self._next_event(deadline)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body_bytes:
                    raise _refuse(413, f"the body is larger than {self.limits.max_body_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:  # h11 raises for a body cut short; anything else is a request without its end
                raise _refuse(400, f"unexpected {type(event).__name__} in the request body of {head.method!r}")

    # ------------------------------------------------------------------------------------------ writing

    async def _send(self, response: Response, *, head_only: bool = False, close: bool = False) -> bool:
        """Write ``response`` (no body for HEAD); False if it could not be (the connection must close)."""
        if self.conn.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
            return False  # e.g. h11 already sent a response on this cycle: nothing more can be said
        headers = [
            (name, value)
            for name, value in response.headers
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}
        ]
        bodiless = response.status in _BODILESS_STATUSES
        if not bodiless:
            headers.append(("content-length", str(len(response.body))))
        if close:
            headers.append(("connection", "close"))
        try:
            head = h11.Response(
                status_code=response.status, headers=headers, reason=models.reason_phrase(response.status)
            )
        except h11.LocalProtocolError as exc:  # a handler's bad status or header: our bug, answered 500
            log.error("a handler answered an invalid response (%s); answering 500 instead", exc)
            fallback = models.json_error(500, "the handler answered an invalid response")
            return await self._send(fallback, head_only=head_only, close=close)
        data = self.conn.send(head)
        if response.body and not head_only and not bodiless:
            data += self.conn.send(h11.Data(data=response.body))
        data += self.conn.send(h11.EndOfMessage())
        return await self._send_bytes(data)

    async def _send_bytes(self, data: bytes) -> bool:
        with trio.move_on_after(self.limits.send_timeout) as scope:
            try:
                await self.stream.send_all(data)
            except BaseException:
                self.conn.send_failed()
                raise
        if scope.cancelled_caught:
            self.conn.send_failed()
            log.debug("%s: response not taken within %g s; closing", self.client, self.limits.send_timeout)
            return False
        return True

    async def _close_gracefully(self) -> None:
        """Shut our side, then read and drop what the client still sends, briefly (see the module docstring)."""
        with trio.move_on_after(LINGER_SECONDS):
            try:
                await self.stream.send_eof()
                drained = 0
                while drained < LINGER_BYTES:
                    data = await self.stream.receive_some(READ_BYTES)
                    if not data:
                        break
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    # ------------------------------------------------------------------------------------------ upgrade

    async def _hand_over(self, upgrade_handler: UpgradeHandler, request: Request) -> None:
        trailing, _closed = self.conn.trailing_data
        try:
            await upgrade_handler(WebSocketUpgrade(request, self.stream, bytes(trailing)))
        except Exception:
            log.exception("%s %s: the upgrade handler failed; closing the connection", request.method, request.path)


async def _respond(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except models.RequestRejected as exc:
        return exc.response()
    except models.DropConnection:
        raise
    except Exception:
        log.exception("%s %s: the handler failed; answering 500", request.method, request.path)
        return models.json_error(500, "the server failed to handle the request")
