"""A webhook receiver on 127.0.0.1 that behaves like the ones in the wild: it records every POST (headers and raw
body) and answers as told — 200 at once, a status, a command, garbage, slowly, or never.

    receiver = WebhookReceiver()
    port = await nursery.start(receiver.serve)          # or serve(port=...) to come back on a known port
    receiver.script = [Answer(500), Answer(500)]        # the next answers, in order; then `default`
    await receiver.wait_for(3)                          # three POSTs recorded

Built on h11 over trio (the same parser as the bridge's server, not its server code), so a receiver that
stops answering really holds the connection open.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import h11
import trio


@attrs.frozen
class Answer:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0  #: seconds before answering
    hang: bool = False  #: never answer (the connection stays open until the receiver stops)
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Received:
    headers: dict[str, str]  #: lower-case names; the last value wins
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define(eq=False)
class WebhookReceiver:
    default: Answer = Answer()
    script: list[Answer] = attrs.Factory(list)
    received: list[Received] = attrs.Factory(list)
    port: int = 0
    _changed: trio.Event = attrs.Factory(trio.Event)

    async def serve(self, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_connection, listeners)
            task_status.started(self.port)

    async def wait_for(self, count: int) -> list[Received]:
        while len(self.received) < count:
            await self._changed.wait()
            self._changed = trio.Event()
        return self.received

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed
                        return
                assert request is not None
                headers = {name.decode().lower(): value.decode("latin-1") for name, value in request.headers}
                self.received.append(Received(headers, bytes(body)))
                self._changed.set()
                answer = self.script.pop(0) if self.script else self.default
                if answer.hang:
                    await trio.sleep_forever()
                if answer.delay:
                    await trio.sleep(answer.delay)
                response_headers = [("content-length", str(len(answer.body))), *answer.headers]
                await stream.send_all(
                    conn.send(h11.Response(status_code=answer.status, headers=response_headers))
                    + conn.send(h11.Data(data=answer.body))
                    + conn.send(h11.EndOfMessage())
                )
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
