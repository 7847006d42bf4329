"""The systemd notification protocol (sd_notify): telling the service manager we are ready, how we are, that we
are alive, and that we are stopping.

The protocol (sd_notify(3)): newline-separated ``NAME=value`` assignments in one datagram, sent to the
``AF_UNIX``/``SOCK_DGRAM`` socket named by ``$NOTIFY_SOCKET``: a filesystem path (``/run/systemd/notify``) or,
when it starts with ``@``, an abstract socket (the ``@`` stands for a leading NUL byte). With ``Type=notify``
systemd considers the service started at ``READY=1``; ``STATUS=`` is the line ``systemctl status`` shows;
``WATCHDOG=1`` must arrive at least every ``WatchdogSec=`` (given to us as ``$WATCHDOG_USEC``, for the process
in ``$WATCHDOG_PID`` when that is set), or systemd kills and restarts the service; ``STOPPING=1`` says the
shutdown is ours. Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op.

Why no library: the ``sdnotify`` package (PyPI, last release 2017) is unmaintained and is these same few
lines; systemd's protocol is small, stable and documented, and the standard library's ``socket`` speaks it.
Sending never blocks (a full socket drops the message with a warning) and a failed send never raises, so it is
safe in ``finally`` blocks and while cancelled; :func:`serve_watchdog` is the trio task that keeps the watchdog fed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import attrs
import trio

from relay.errors import LocalProtocolError

__all__ = ["Notifier", "serve_watchdog", "watchdog_interval"]

log = logging.getLogger(__name__)

#: the watchdog is pinged at this fraction of its interval, as sd_watchdog_enabled(3) recommends
WATCHDOG_PING_FRACTION = 0.5


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which systemd wants ``WATCHDOG=1`` from process ``pid``, or None when it does not
    (``WATCHDOG_USEC`` unset, not a positive integer, or ``WATCHDOG_PID`` naming another process)."""
    usec = env.get("WATCHDOG_USEC", "").strip()
    if not usec.isdigit() or int(usec) <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner and owner != str(pid):
        return None
    return int(usec) / 1_000_000


def _address(value: str) -> str | bytes | None:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


@attrs.frozen
class Notifier:
    """Sends sd_notify messages to ``address`` (None: not under systemd, every call does nothing).
    Build it with :meth:`from_environment`. Each method returns whether the message was sent."""

    #: a filesystem path (str) or an abstract socket name (bytes starting with NUL); None: disabled
    address: str | bytes | None = None
    #: seconds within which systemd wants ``WATCHDOG=1``; None: no watchdog
    watchdog_seconds: float | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        """From ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (default: this process's environment
        and pid). An address we cannot use (systemd's ``vsock:`` form, a relative path) is logged and ignored."""
        env = os.environ if env is None else env
        pid = os.getpid() if pid is None else pid
        value = env.get("NOTIFY_SOCKET", "")
        if not value:
            return cls()
        address = _address(value)
        if address is None:
            log.warning("NOTIFY_SOCKET=%r is not a path or an abstract socket; not notifying systemd", value)
            return cls()
        return cls(address, watchdog_interval(env, pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup is finished (with ``Type=notify``, systemd starts dependent units now)."""
        return self.notify("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: one line for ``systemctl status`` (newlines become spaces)."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: we are alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the shutdown has begun and is ours."""
        return self.notify("STOPPING=1", *self._status(status))

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        return ("STATUS=" + " ".join(text.split()),)  # a newline would start a new assignment

    def notify(self, *assignments: str) -> bool:
        """Send ``NAME=value`` assignments in one datagram. False (and a warning) when it could not be sent."""
        if self.address is None or not assignments:
            return False
        if any("\n" in item or "=" not in item for item in assignments):
            raise LocalProtocolError(f"sd_notify assignments must be single NAME=value lines: {assignments!r}")
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self.address)
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", assignments[0], exc.strerror or exc)
            return False
        return True


async def serve_watchdog(notifier: Notifier, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Send ``WATCHDOG=1`` now and then every half watchdog interval, until cancelled. Returns at once when
    systemd wants no watchdog. The pings prove that the trio loop runs; the composition decides what else
    must be true (start this task once the bridge is ready, cancel it to let systemd notice a hang)."""
    interval = notifier.watchdog_seconds
    task_status.started()
    if not notifier.enabled or interval is None:
        return
    log.debug("feeding the systemd watchdog every %.1f s", interval * WATCHDOG_PING_FRACTION)
    while True:
        notifier.watchdog()
        await trio.sleep(interval * WATCHDOG_PING_FRACTION)
