"""Accepting a websocket on a connection whose HTTP upgrade request an HTTP server has already read.

The HTTP server (``relay/web``) parses the request head and hands over the raw stream, the request's target and
headers, and any bytes it read past the head. wsproto checks the request (``Upgrade``, ``Connection``,
``Sec-WebSocket-Key``/``-Version``, RFC 6455 §4.2.1) and writes the 101 answer with the accept key (§4.2.2), or
a refusal; the open connection is a :class:`~relay.wire.connection.WebSocketConnection` in the server role.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
import wsproto
import wsproto.events as ws_events
import wsproto.utilities

from relay.errors import WebSocketHandshakeFailed
from relay.wire.connection import WebSocketConnection


class UpgradeRequest:
    """The parsed upgrade request, checked by wsproto; :meth:`accept` or :meth:`reject` it exactly once."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        target: str,
        headers: Sequence[tuple[str, str]],
        trailing: bytes,
        peer: str,
    ) -> None:
        self._stream = stream
        self._trailing = trailing
        self.peer = peer
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        self._request: ws_events.Request | None = None
        try:
            self._ws.initiate_upgrade_connection(
                [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers], target
            )
            for event in self._ws.events():
                if isinstance(event, ws_events.Request):
                    self._request = event
        except (wsproto.utilities.RemoteProtocolError, UnicodeError, ValueError) as exc:
            # wsproto's h11 has read the request either way, so a refusal can still be written through it
            self._problem = str(exc) or type(exc).__name__
        else:
            self._problem = "" if self._request is not None else "not a websocket upgrade request"

    @property
    def valid(self) -> bool:
        """wsproto accepted the request as a websocket upgrade (else only :meth:`reject` is possible)."""
        return not self._problem

    @property
    def problem(self) -> str:
        """Why the request is not a valid upgrade ("" when it is)."""
        return self._problem

    @property
    def subprotocols(self) -> list[str]:
        return list(self._request.subprotocols) if self._request is not None else []

    async def accept(
        self,
        *,
        max_message_size: int,
        subprotocol: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> WebSocketConnection:
        """Answer 101 and return the open connection (the bytes read past the request head are its first)."""
        if self._request is None:
            raise WebSocketHandshakeFailed(self.peer, 400, self._problem)
        data = self._ws.send(
            ws_events.AcceptConnection(
                subprotocol=subprotocol,
                extra_headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers],
            )
        )
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WebSocketHandshakeFailed(self.peer, None, f"connection lost while accepting ({exc})") from None
        return WebSocketConnection(
            self._stream, client=False, max_message_size=max_message_size, peer=self.peer, early=self._trailing
        )

    async def reject(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> None:
        """Answer ``status`` with ``body`` instead of upgrading, then close the stream."""
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            data = self._ws.send(ws_events.RejectConnection(status_code=status, headers=headers, has_body=bool(body)))
            if body:
                data += self._ws.send(ws_events.RejectData(data=body))
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left; nothing to tell it
        finally:
            await trio.aclose_forcefully(self._stream)
