"""relay.notify against a real AF_UNIX datagram socket the test listens on, as systemd's would be: a filesystem
path and an abstract socket; the watchdog interval from the environment; serve_watchdog's pings."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from relay.errors import LocalProtocolError
from relay.notify import Notifier, serve_watchdog, watchdog_interval

GUARD = 20.0  # a hang guard, never a measurement


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: AF_UNIX socket paths are limited to 107 bytes, pytest's tmp_path can be longer."""
    folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """systemd's side: a datagram socket bound to a path; yields it and the NOTIFY_SOCKET value for it."""
    path = short_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(GUARD)
        yield sock, str(path)


def test_watchdog_interval_from_the_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None  # not for us
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"}, pid=1)
    assert not notifier.enabled
    assert notifier.watchdog_seconds is None
    assert (notifier.ready("up"), notifier.status("x"), notifier.watchdog(), notifier.stopping()) == (False,) * 4


def test_from_environment_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_environment() == Notifier("/run/systemd/notify", 2.0)


@pytest.mark.parametrize("value", ["vsock:2:1234", "relative/path", "@"])
def test_unusable_addresses_are_ignored_with_a_warning(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.notify"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": value}, pid=1)
    assert not notifier.enabled
    assert "not notifying systemd" in caplog.text


def test_ready_status_stopping_to_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path}, pid=1)
    assert notifier.ready("Discord ready;\n2 destinations connected")
    assert sock.recv(4096) == b"READY=1\nSTATUS=Discord ready; 2 destinations connected"
    assert notifier.status("relaying: 10 events/s")
    assert sock.recv(4096) == b"STATUS=relaying: 10 events/s"
    assert notifier.stopping("stopping: flushing the outbox")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping: flushing the outbox"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_watchdog_to_an_abstract_socket() -> None:
    name = f"relay-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(GUARD)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": f"@{name}"}, pid=1)
        assert notifier.address == b"\0" + name.encode()
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_missing_socket_is_a_warning_not_an_error(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(short_dir / "gone")}, pid=1)
    with caplog.at_level(logging.WARNING, logger="relay.notify"):
        assert notifier.ready() is False
    assert "could not notify systemd (READY=1)" in caplog.text


def test_assignments_must_be_single_lines(listener: tuple[socket.socket, str]) -> None:
    notifier = Notifier(listener[1])
    with pytest.raises(LocalProtocolError):
        notifier.notify("STATUS=a\nREADY=1")
    with pytest.raises(LocalProtocolError):
        notifier.notify("READY")


async def test_serve_watchdog_pings_until_cancelled(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    receiver = trio.socket.from_stdlib_socket(sock)
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}, pid=1)
    assert notifier.watchdog_seconds == 0.02
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_watchdog, notifier)
            pings = [await receiver.recv(4096) for _ in range(3)]
            nursery.cancel_scope.cancel()
    assert pings == [b"WATCHDOG=1"] * 3


async def test_serve_watchdog_returns_when_systemd_wants_no_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    for env in ({"NOTIFY_SOCKET": path}, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "1"}):
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_watchdog, Notifier.from_environment(env, pid=2))
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)  # nothing was sent
