"""A fake mirai bot framework: a loopback websocket SERVER that the bridge's reverse-ws client dials.

It behaves like Graia Ariadne's ``WebsocketServerConfig`` side (mirai-api-http.md §3.3, §3.7): it only accepts
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

Keep it cheap per frame: the benchmark pushes many thousands of events through it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio
import trio_websocket

RESERVED_SYNC_ID = "-1"
#: syncId Ariadne uses for its verify command (mirai-api-http.md §3.3)
VERIFY_SYNC_ID = "#"


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
    ws: trio_websocket.WebSocketConnection
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

    # ---------------------------------------------------------------- sending

    async def send_json(self, obj: object) -> None:
        await self.ws.send_message(json.dumps(obj, ensure_ascii=False))

    async def send_text(self, text: str | bytes) -> None:
        await self.ws.send_message(text)

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
        await self.ws.aclose(code, reason)

    # ---------------------------------------------------------------- waiting

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
            obj = json.loads(message)
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
        max_message_size: int = 64 * 1024 * 1024,
        message_queue_size: int = 1,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._nursery = nursery
        self.verify_key = verify_key
        self.qq = qq
        self.auto_verify = auto_verify
        self.path = path
        self.expected_params = dict(expected_params or {})
        self.expected_headers = {k.lower(): v for k, v in (expected_headers or {}).items()}
        self.reserved_sync_id = reserved_sync_id
        self.record_frames = record_frames
        self.max_message_size = max_message_size
        self.message_queue_size = message_queue_size
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
        server = await self._nursery.start(self._serve, self._scope)
        self.port = server.port

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
        task_status: trio.TaskStatus[trio_websocket.WebSocketServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with scope:
                await trio_websocket.serve_websocket(
                    self._handle,
                    "127.0.0.1",
                    self.port,
                    ssl_context=self.ssl_context,
                    max_message_size=self.max_message_size,
                    message_queue_size=self.message_queue_size,
                    task_status=task_status,
                )
        finally:
            for conn in self.connections:
                conn.closed.set()
            self._stopped.set()
            self._changes.notify()

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        split = urllib.parse.urlsplit(request.path)
        params = dict(urllib.parse.parse_qsl(split.query))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        wanted_params = all(params.get(k) == v for k, v in self.expected_params.items())
        wanted_headers = all(headers.get(k) == v for k, v in self.expected_headers.items())
        if split.path != self.path or not wanted_params or not wanted_headers:
            self.rejected.append((request.path, headers))
            self._changes.notify()
            with contextlib.suppress(trio_websocket.ConnectionClosed):  # the client may hang up at the status line
                await request.reject(403, body=b"forbidden by fake framework")
            return
        ws = await request.accept()
        conn = FakeConnection(
            index=len(self.connections), ws=ws, path=split.path, params=params, headers=headers, framework=self
        )
        self.connections.append(conn)
        self._changes.notify()
        try:
            if self.auto_verify:
                await conn.send_verify(self.verify_key, self.qq)
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()
                message = await ws.get_message()
                conn._record(message)
                self._changes.notify()
        except trio_websocket.ConnectionClosed as exc:
            conn.close_code = exc.reason.code if exc.reason else None
        finally:
            conn.closed.set()
            self._changes.notify()

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
