"""A fake mirai bot framework: a loopback websocket SERVER that the bridge's reverse-ws client dials.

It behaves like Graia Ariadne's ``WebsocketServerConfig`` side (docs/mirai-api-http.md §3.3, §3.7): it only accepts
upgrades on its path whose query parameters and headers include every configured one (else it refuses the
handshake with HTTP 403), then immediately sends
``{"syncId":"#","command":"verify","content":{"verifyKey":...,"sessionKey":null,"qq":...}}``.

Everything received is recorded per connection and sorted into

* ``events``     — frames whose ``syncId`` is the reserved one (``"-1"``), with a ``time.perf_counter()``
  timestamp (the benchmark uses it for latency);
* ``responses``  — wrapped ``{"syncId", "data"}`` frames, by syncId;
* ``raw``        — frames without a syncId (``{"code":1,...}``), and non-JSON text.

Usage::

    async with open_fake_framework(verify_key="k", qq=42) as fw:
        ... start the bridge against fw.port ...
        conn = await fw.wait_connection()
        await conn.wait_verified()
        data = await conn.request("sendGroupMessage", {"target": 1, "messageChain": [...]})
        await fw.wait_events(100)
        await fw.stop(); await fw.start()   # the framework goes down and comes back on the same port

``doubles=True`` makes it a JavaScript framework: every JSON number it reads becomes a double (53 bits of
precision), and what it sends is written from those doubles, as ``JSON.stringify`` does.

Keep it cheap per frame: the benchmark pushes many thousands of events through it. The server is a thin
wsproto shell on trio streams (one parse per socket read, one notification per read), not trio-websocket,
whose per-message task hand-off made the fake slower than the bridge it measures.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import socket
import ssl
import struct
import termios
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio
import wsproto
import wsproto.events as wse
import wsproto.utilities
from wsproto.connection import ConnectionState

RESERVED_SYNC_ID = "-1"
RECEIVE_BYTES = 65_536
#: syncId Ariadne uses for its verify command (docs/mirai-api-http.md §3.3)
VERIFY_SYNC_ID = "#"


def _as_javascript_writes_it(value: object) -> object:
    """A JSON value of doubles as ``JSON.stringify`` writes it: an integral double as an integer literal."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_as_javascript_writes_it(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_javascript_writes_it(item) for key, item in value.items()}
    return value


@attrs.frozen
class ReceivedEvent:
    at: float  #: time.perf_counter() when the frame was read
    data: dict[str, object]
    connection: int  #: index of the connection in FakeFramework.connections


class _Changes:
    """A cheap "something happened" broadcast: waiters re-check their condition after every change."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._event.wait()


@attrs.define(eq=False)
class FakeConnection:
    """One accepted connection from the bridge."""

    index: int
    stream: trio.abc.Stream
    ws: wsproto.WSConnection
    path: str
    params: dict[str, str]
    headers: dict[str, str]  #: lower-cased names
    framework: FakeFramework
    frames: list[str | bytes] = attrs.Factory(list)  #: every received message, in order (if record_frames)
    events: list[dict[str, object]] = attrs.Factory(list)
    responses: dict[str, dict[str, object]] = attrs.Factory(dict)
    response_order: list[str] = attrs.Factory(list)  #: syncIds in the order their responses arrived
    raw: list[object] = attrs.Factory(list)
    session: str | None = None
    closed: trio.Event = attrs.Factory(trio.Event)
    close_code: int | None = None
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))
    _send_lock: trio.StrictFIFOLock = attrs.Factory(trio.StrictFIFOLock)
    _pongs: dict[bytes, trio.Event] = attrs.Factory(dict)
    _text_parts: list[str] = attrs.Factory(list)  #: a text message arriving in fragments
    _byte_parts: list[bytes] = attrs.Factory(list)

    # ---------------------------------------------------------------- sending

    async def _send_event(self, event: wse.Event) -> None:
        if self.ws.state is not ConnectionState.OPEN and not isinstance(event, wse.CloseConnection):
            raise trio.ClosedResourceError("the bridge's connection is closed")
        async with self._send_lock:
            await self.stream.send_all(self.ws.send(event))

    async def send_json(self, obj: object) -> None:
        if self.framework.doubles:
            obj = _as_javascript_writes_it(obj)
        await self.send_text(json.dumps(obj, ensure_ascii=False))

    async def send_text(self, text: str | bytes) -> None:
        """A text frame for ``str``, a binary frame for ``bytes``."""
        if isinstance(text, bytes):
            await self._send_event(wse.BytesMessage(data=text))
        else:
            await self._send_event(wse.TextMessage(data=text))

    async def ping(self, payload: bytes = b"fake") -> None:
        """Send a ping and wait for the bridge's pong."""
        answered = self._pongs.setdefault(payload, trio.Event())
        await self._send_event(wse.Ping(payload=payload))
        await answered.wait()

    async def send_verify(self, verify_key: str | None, qq: object, *, sync_id: str = VERIFY_SYNC_ID) -> None:
        """What Ariadne sends right after accepting."""
        await self.send_json(
            {"syncId": sync_id, "command": "verify", "content": {"verifyKey": verify_key, "sessionKey": None, "qq": qq}}
        )

    async def send_command(
        self,
        command: str,
        content: object = None,
        *,
        sub_command: str | None = None,
        sync_id: str | None = None,
    ) -> str:
        """Send a command frame; returns its syncId (generated when not given)."""
        sid = sync_id if sync_id is not None else f"c{next(self._ids)}"
        await self.send_json({"syncId": sid, "command": command, "subCommand": sub_command, "content": content})
        return sid

    async def request(
        self, command: str, content: object = None, *, sub_command: str | None = None
    ) -> dict[str, object]:
        """Send a command and wait for the ``data`` of its response."""
        sid = await self.send_command(command, content, sub_command=sub_command)
        return await self.wait_response(sid)

    async def close(self, code: int = 1000, reason: str = "fake framework closing") -> None:
        """Close the websocket with ``code`` (the bridge answers; the TCP connection then ends)."""
        if self.ws.state is ConnectionState.OPEN:
            self.close_code = code
            await self._send_event(wse.CloseConnection(code=code, reason=reason))

    # ---------------------------------------------------------------- waiting

    async def drop_after_peek(self) -> int:
        """While reading is paused (:meth:`FakeFramework.pause_reading`): take as received what this host's TCP
        already holds — peeked, so the receive window stays closed and nothing more arrives — then drop the
        connection with a reset, unread data and all (a framework process killed while stuck). Returns the bytes
        peeked. What the bridge's TCP still had queued never reached this host."""
        sock = self.stream.socket  # type: ignore[attr-defined]
        waiting = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        data = await sock.recv(waiting, socket.MSG_PEEK) if waiting else b""
        self._feed(data)
        for event in self.ws.events():
            self._message_event(event)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # SO_LINGER 0: a reset, not a close handshake
        self.framework._changes.notify()
        return len(data)

    def _feed(self, data: bytes) -> None:
        self.ws.receive_data(data)

    def _message_event(self, event: wse.Event) -> bool:
        """Record a (fragment of a) message; False for any other event."""
        if isinstance(event, wse.TextMessage):
            self._text_parts.append(event.data)
            if event.message_finished:
                self._record("".join(self._text_parts))
                self._text_parts.clear()
            return True
        if isinstance(event, wse.BytesMessage):
            self._byte_parts.append(bytes(event.data))
            if event.message_finished:
                self._record(b"".join(self._byte_parts))
                self._byte_parts.clear()
            return True
        return False

    async def wait_response(self, sync_id: str) -> dict[str, object]:
        await self.framework._changes.wait_for(lambda: sync_id in self.responses)
        return self.responses[sync_id]

    async def wait_raw(self, count: int = 1) -> list[object]:
        await self.framework._changes.wait_for(lambda: len(self.raw) >= count)
        return self.raw

    async def wait_events(self, count: int) -> list[dict[str, object]]:
        await self.framework._changes.wait_for(lambda: len(self.events) >= count)
        return self.events

    async def wait_verified(self) -> str:
        await self.framework._changes.wait_for(lambda: self.session is not None)
        assert self.session is not None
        return self.session

    async def wait_closed(self) -> int | None:
        await self.closed.wait()
        return self.close_code

    # ---------------------------------------------------------------- recording

    def _record(self, message: str | bytes) -> None:
        framework = self.framework
        if framework.record_frames:
            self.frames.append(message)
        try:
            obj = json.loads(message, parse_int=float) if framework.doubles else json.loads(message)
        except ValueError:
            self.raw.append(message)
            return
        if isinstance(obj, dict) and "data" in obj and "syncId" in obj:
            sync_id = obj["syncId"]
            data = obj["data"]
            if sync_id == framework.reserved_sync_id and isinstance(data, dict) and "type" in data:
                self.events.append(data)
                framework.events.append(ReceivedEvent(time.perf_counter(), data, self.index))
            else:
                key = str(sync_id)
                self.responses[key] = data
                self.response_order.append(key)
                if key == VERIFY_SYNC_ID and isinstance(data, dict) and "session" in data:
                    self.session = str(data["session"])
        else:
            self.raw.append(obj)


class FakeFramework:
    """The fake framework server. Create it with :func:`open_fake_framework`."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        verify_key: str | None = "verify-key",
        qq: object = 0,
        auto_verify: bool = True,
        path: str = "/",
        expected_params: dict[str, str] | None = None,
        expected_headers: dict[str, str] | None = None,
        reserved_sync_id: str = RESERVED_SYNC_ID,
        record_frames: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        doubles: bool = False,
    ) -> None:
        self._nursery = nursery
        self.doubles = doubles  #: numbers are doubles, as in JavaScript (see the module docstring)
        self.verify_key = verify_key
        self.qq = qq
        self.auto_verify = auto_verify
        self.path = path
        self.expected_params = dict(expected_params or {})
        self.expected_headers = {k.lower(): v for k, v in (expected_headers or {}).items()}
        self.reserved_sync_id = reserved_sync_id
        self.record_frames = record_frames
        self.ssl_context = ssl_context  #: serve wss with this server context
        self.port = 0
        self.connections: list[FakeConnection] = []
        self.rejected: list[tuple[str, dict[str, str]]] = []  #: (path, headers) of refused handshakes
        self.events: list[ReceivedEvent] = []
        self._changes = _Changes()
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._reading = trio.Event()
        self._reading.set()

    @property
    def running(self) -> bool:
        return self._scope is not None

    async def start(self) -> None:
        """Listen on 127.0.0.1 (port 0 the first time, the same port after a stop)."""
        if self._scope is not None:
            raise RuntimeError("fake framework already running")
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        await self._nursery.start(self._serve, self._scope)

    def pause_reading(self) -> None:
        """Stop reading from every connection (a stuck framework): the bridge's writes back up in TCP."""
        if self._reading.is_set():
            self._reading = trio.Event()

    def resume_reading(self) -> None:
        self._reading.set()

    async def stop(self) -> None:
        """Stop listening and drop every connection abruptly (the framework process went away)."""
        if self._scope is None:
            return
        self._scope.cancel()
        await self._stopped.wait()
        self._scope = None

    async def _serve(
        self,
        scope: trio.CancelScope,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with scope:
                listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
                    await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                )
                self.port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
                if self.ssl_context is not None:
                    listeners = [trio.SSLListener(ln, self.ssl_context, https_compatible=True) for ln in listeners]
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, self._handle, listeners)
                    task_status.started()
        finally:
            for conn in self.connections:
                conn.closed.set()
            self._stopped.set()
            self._changes.notify()

    async def _handle(self, stream: trio.abc.Stream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        conn: FakeConnection | None = None
        try:
            while conn is None:  # the upgrade request
                data = await stream.receive_some(RECEIVE_BYTES)
                if not data:
                    return
                ws.receive_data(bytes(data))  # a trio.abc.Stream may read a bytearray; wsproto takes bytes
                for event in ws.events():
                    if isinstance(event, wse.Request):
                        conn = await self._accept_or_reject(stream, ws, event)
                        if conn is None:
                            return
            if self.auto_verify:
                await conn.send_verify(self.verify_key, self.qq)
            await self._receive_loop(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError, wsproto.utilities.RemoteProtocolError):
            pass  # the client went away, failed TLS or spoke no HTTP: a framework just drops such connections
        finally:
            if conn is not None:
                conn.closed.set()
            self._changes.notify()
            await trio.aclose_forcefully(stream)

    async def _accept_or_reject(
        self, stream: trio.abc.Stream, ws: wsproto.WSConnection, request: wse.Request
    ) -> FakeConnection | None:
        split = urllib.parse.urlsplit(request.target)
        params = dict(urllib.parse.parse_qsl(split.query))
        headers: dict[str, str] = {}
        for name, value in request.extra_headers:
            key = name.decode("latin-1") if isinstance(name, bytes) else name
            headers[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else value
        wanted_params = all(params.get(k) == v for k, v in self.expected_params.items())
        wanted_headers = all(headers.get(k) == v for k, v in self.expected_headers.items())
        if split.path != self.path or not wanted_params or not wanted_headers:
            self.rejected.append((request.target, headers))
            self._changes.notify()
            body = b"forbidden by fake framework"
            reply = ws.send(wse.RejectConnection(status_code=403, has_body=True))
            reply += ws.send(wse.RejectData(data=body, body_finished=True))
            await stream.send_all(reply)
            return None
        await stream.send_all(ws.send(wse.AcceptConnection()))
        conn = FakeConnection(
            index=len(self.connections),
            stream=stream,
            ws=ws,
            path=split.path,
            params=params,
            headers=headers,
            framework=self,
        )
        self.connections.append(conn)
        self._changes.notify()
        return conn

    async def _receive_loop(self, conn: FakeConnection) -> None:
        ws = conn.ws
        while True:
            if not self._reading.is_set():
                await self._reading.wait()
            data = await conn.stream.receive_some(RECEIVE_BYTES)
            if not data:
                return
            ws.receive_data(bytes(data))  # as in _handle
            for event in ws.events():
                if conn._message_event(event):
                    pass
                elif isinstance(event, wse.Ping):
                    async with conn._send_lock:
                        await conn.stream.send_all(ws.send(event.response()))
                elif isinstance(event, wse.Pong):
                    waiter = conn._pongs.pop(bytes(event.payload), None)
                    if waiter is not None:
                        waiter.set()
                elif isinstance(event, wse.CloseConnection):
                    if conn.close_code is None:
                        conn.close_code = event.code
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        async with conn._send_lock:
                            await conn.stream.send_all(ws.send(event.response()))
                    self._changes.notify()
                    return
            self._changes.notify()  # once per socket read: waiters re-check their conditions

    # ---------------------------------------------------------------- waiting

    async def wait_connection(self, index: int | None = None) -> FakeConnection:
        """Wait for connection number ``index`` (default: the next one that is not closed)."""
        if index is None:

            def has_open() -> bool:
                return any(not c.closed.is_set() for c in self.connections)

            await self._changes.wait_for(has_open)
            return next(c for c in reversed(self.connections) if not c.closed.is_set())
        await self._changes.wait_for(lambda: len(self.connections) > index)
        return self.connections[index]

    async def wait_events(self, count: int) -> list[ReceivedEvent]:
        await self._changes.wait_for(lambda: len(self.events) >= count)
        return self.events

    async def wait_rejected(self, count: int = 1) -> None:
        await self._changes.wait_for(lambda: len(self.rejected) >= count)

    def event_types(self) -> list[object]:
        return [e.data.get("type") for e in self.events]


@asynccontextmanager
async def open_fake_framework(**kwargs: object) -> AsyncIterator[FakeFramework]:
    """Start a :class:`FakeFramework` on 127.0.0.1 (keyword arguments as its constructor); stop it on exit."""
    async with trio.open_nursery() as nursery:
        framework = FakeFramework(nursery, **kwargs)  # type: ignore[arg-type]
        await framework.start()
        try:
            yield framework
        finally:
            nursery.cancel_scope.cancel()
