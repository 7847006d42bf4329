"""relay.wire.connection: a frame whose connection is free to send is written before other runnable tasks run.

trio's ``Lock.acquire`` is a schedule point even when the lock is free. A send that took the connection's send
lock that way let every runnable task run before its frame reached the socket; at start-up that put the first
relayed message ~0.3 ms behind the task reporting readiness (issue 18). The tests look at the peer's end of a
real loopback socket from a task made runnable before the send: the frame is already there.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio
import trio.testing

from relay.wire.connection import WebSocketConnection


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, socket.socket]]:
    """A trio stream (TCP on 127.0.0.1, so the connection tracks acknowledgements) and the raw peer socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with listener:
        sock = trio.socket.socket()
        await sock.connect(listener.getsockname())
        peer, _ = listener.accept()
        with peer:
            stream = trio.SocketStream(sock)
            try:
                yield stream, peer
            finally:
                await stream.aclose()


@asynccontextmanager
async def unix_pair() -> AsyncIterator[tuple[trio.SocketStream, socket.socket]]:
    """A trio stream over a Unix socket pair (not tracked: the plain ``send_all`` path) and the raw peer."""
    ours, peer = socket.socketpair()
    with peer:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        try:
            yield stream, peer
        finally:
            await stream.aclose()


def arrived(peer: socket.socket) -> bytes:
    """What the peer can read now, without waiting."""
    try:
        return peer.recv(1 << 16, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


Pair = Callable[[], AbstractAsyncContextManager[tuple[trio.SocketStream, socket.socket]]]
Send = Callable[[WebSocketConnection], Awaitable[None]]

SENDS: dict[str, Send] = {
    "send_messages": lambda conn: conn.send_messages(["hello"]),
    "send_messages_counted": lambda conn: conn.send_messages_counted(["hello"], lambda ends: None),
    "send_message": lambda conn: conn.send_message("hello"),
}


#: trio runs each batch of runnable tasks in order or reversed, at random: a send that yields first loses the
#: race half the time, so each test sends this many times (a yield would pass all of them once in 2 ** 20 runs)
ROUNDS = 20


@pytest.mark.parametrize("pair", [tcp_pair, unix_pair], ids=["tcp", "unix"])
@pytest.mark.parametrize("send", list(SENDS), ids=list(SENDS))
async def test_a_free_connection_writes_before_other_runnable_tasks_run(pair: Pair, send: str) -> None:
    async with pair() as (stream, peer):
        conn = WebSocketConnection(stream, client=True, max_message_size=1 << 16, peer="test")
        for _ in range(ROUNDS):
            seen_by_the_other_task: list[bytes] = []

            async def other_task(seen: list[bytes] = seen_by_the_other_task) -> None:
                seen.append(arrived(peer))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other_task)  # runnable from now on
                await SENDS[send](conn)
            assert len(seen_by_the_other_task) == 1
            data = seen_by_the_other_task[0]
            assert data[:1] == b"\x81"  # a whole text frame (FIN, opcode 1), masked as a client's
            assert len(data) == 2 + 4 + len("hello")


async def test_a_busy_send_lock_still_takes_turns_in_order() -> None:
    """A send while another waits for the peer's window: it waits its turn, and both frames arrive whole."""
    size = 1 << 21  # more than the loopback socket buffers take at once: the first send blocks until read
    async with tcp_pair() as (stream, peer):
        conn = WebSocketConnection(stream, client=False, max_message_size=1 << 16, peer="test")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.send_messages, ["a" * size])
            await trio.testing.wait_all_tasks_blocked()  # the first send is blocked, holding the lock
            nursery.start_soon(conn.send_messages, ["b"])
            await trio.testing.wait_all_tasks_blocked()
            received = bytearray()
            while len(received) < 10 + size + 3:  # the first frame: 2-byte header + 8-byte length; then 2 + 1
                await trio.lowlevel.wait_readable(peer)
                received += arrived(peer)
        assert received[:2] == b"\x81\x7f"
        assert received[10 : 10 + size] == b"a" * size
        assert received[10 + size :] == b"\x81\x01b"


async def test_a_cancelled_send_places_nothing_writes_nothing_and_leaves_the_lock_free() -> None:
    """A frame placed in the byte stream (``send_messages_counted``) must be one that is written: a later write
    would otherwise carry the byte count past a frame never sent, and it would count as acknowledged."""
    async with tcp_pair() as (stream, peer):
        conn = WebSocketConnection(stream, client=False, max_message_size=1 << 16, peer="test")
        placed: list[list[int]] = []
        with trio.CancelScope() as scope:
            scope.cancel()
            await conn.send_messages_counted(["never"], placed.append)
        assert scope.cancelled_caught
        assert placed == []
        assert conn.bytes_sent == 0
        assert arrived(peer) == b""
        await conn.send_messages_counted(["b"], placed.append)  # the lock was left free
        assert placed == [[3]]
        assert arrived(peer) == b"\x81\x01b"
