"""A real proxy server for the tests: pproxy (PyPI, the ``test`` extra) run as a subprocess on loopback.

pproxy speaks HTTP CONNECT and SOCKS5 on one port (it tells them apart by the first bytes), checks a user name
and password (``#user:password`` in its listen URI: HTTP Basic or SOCKS5 RFC 1929), and with ``--ssl`` serves
its HTTP side over TLS (an ``https://`` proxy). ``-v`` makes it log one line per tunnel,
``socks5 127.0.0.1:40112 -> localhost:5000``: the target exactly as the client sent it, which is how the
tests see whether a name or an address went to the proxy. ``--auth 0`` turns off its habit of trusting a
client address for 30 days after one successful login (which would make a wrong password pass).

Its port is chosen here (pproxy cannot report an ephemeral one) and readiness is a successful TCP connect.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

USER = "alice"
PASSWORD = "s3cret:/@pw"  # needs percent-encoding in a URL: proves the decoding end to end
ENCODED_PASSWORD = "s3cret%3A%2F%40pw"

#: how long a starting pproxy may take to listen (a hang guard, not a measurement)
START_GUARD = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define
class ProxyServer:
    """One running pproxy. ``url(scheme)`` gives a proxy URL with the right credentials."""

    process: trio.Process
    host: str
    port: int
    log_path: Path
    authenticated: bool

    def url(self, scheme: str, *, user: str = USER, password: str = ENCODED_PASSWORD) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        credentials = f"{user}:{password}@" if self.authenticated and user else ""
        return f"{scheme}://{credentials}{host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_for_log(self, text: str) -> None:
        """Until ``text`` is in the log (pproxy writes each tunnel's line as it opens it)."""
        with trio.fail_after(START_GUARD):  # a hang guard
            while text not in self.log():
                await trio.sleep(0.02)

    async def kill(self) -> None:
        """SIGKILL: the proxy vanishes at once, as after a crash, its connections closed by the kernel."""
        with trio.CancelScope(shield=True):
            if self.process.poll() is None:
                self.process.kill()
            await self.process.wait()


async def start_pproxy(
    folder: Path,
    *,
    protocols: str = "http+socks5",
    authenticated: bool = True,
    host: str = "127.0.0.1",
    port: int | None = None,
    certificate: Path | None = None,
) -> ProxyServer:
    """Start pproxy listening on ``host:port`` (a free one by default) and wait until it accepts connections."""
    port = port or free_port(host)
    bind = f"[{host}]" if ":" in host else host
    users = f"#{USER}:{PASSWORD}" if authenticated else ""
    command = [sys.executable, "-u", "-m", "pproxy", "-l", f"{protocols}://{bind}:{port}/{users}", "--auth", "0", "-v"]
    if certificate is not None:
        command += ["--ssl", str(certificate)]
    log_path = folder / f"pproxy-{port}.log"
    with log_path.open("ab") as log_file:
        process = await trio.lowlevel.open_process(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = ProxyServer(process, host, port, log_path, authenticated)
    try:
        with trio.fail_after(START_GUARD):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"pproxy exited with {process.returncode}:\n{server.log()}")
                try:
                    probe = await trio.open_tcp_stream(host, port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await probe.aclose()
                return server
    except BaseException:
        await server.kill()
        raise


@asynccontextmanager
async def open_pproxy(
    folder: Path,
    *,
    protocols: str = "http+socks5",
    authenticated: bool = True,
    host: str = "127.0.0.1",
    certificate: Path | None = None,
) -> AsyncIterator[ProxyServer]:
    """:func:`start_pproxy` for an ``async with`` block; the process is killed when it ends."""
    server = await start_pproxy(
        folder, protocols=protocols, authenticated=authenticated, host=host, certificate=certificate
    )
    try:
        yield server
    finally:
        await server.kill()
