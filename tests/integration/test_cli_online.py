"""``check --online`` against a loopback HTTP server standing in for Discord and loopback listeners standing
in for framework websocket servers (127.0.0.1 only)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
import trio_websocket

from relay.cli import main

TOKEN = "online-check-token-abcdefghijklmnop"
ENV = {"DISCORD_TOKEN": TOKEN, "MIRAI_VERIFY_KEY": "online-check-verify-key", "HOME": "/home/u"}


class FakeDiscord(http.server.BaseHTTPRequestHandler):
    """Answers GET /api/v10/users/@me like Discord: 200 with the bot user for the right token, else 401."""

    seen_headers: list[dict[str, str]] = []  # noqa: RUF012 - shared with the test on purpose

    def do_GET(self) -> None:
        FakeDiscord.seen_headers.append(dict(self.headers))
        if self.path != "/api/v10/users/@me":
            self._reply(404, {"message": "404: Not Found", "code": 0})
        elif self.headers.get("Authorization") == f"Bot {TOKEN}":
            self._reply(200, {"id": "1234567890", "username": "relay-bot", "bot": True})
        else:
            self._reply(401, {"message": "401: Unauthorized", "code": 0})

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def discord_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeDiscord)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeDiscord.seen_headers.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v10"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@attrs.define
class FakeFramework:
    """A framework's reverse-ws server on 127.0.0.1, in its own thread with its own trio loop: accepts the
    upgrade on paths under /ws, refuses others with 403, and records what each request carried."""

    port: int = 0
    requests: list[tuple[str, dict[str, str]]] = attrs.Factory(list)


@pytest.fixture
def framework() -> Iterator[FakeFramework]:
    fake = FakeFramework()
    ready = threading.Event()
    loop: dict[str, object] = {}

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        fake.requests.append((request.path, headers))
        if not request.path.startswith("/ws"):
            await request.reject(403)
            return
        connection = await request.accept()
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await connection.get_message()

    async def serve() -> None:
        with trio.CancelScope() as scope:
            loop["scope"], loop["token"] = scope, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    functools.partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
                )
                fake.port = server.port
                ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(timeout=10), "the fake framework did not start"
    try:
        yield fake
    finally:
        scope = loop["scope"]
        assert isinstance(scope, trio.CancelScope)
        trio.from_thread.run_sync(scope.cancel, trio_token=loop["token"])
        thread.join(timeout=10)


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connecting is refused
    return port


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours proxy variables; a machine's proxy must not stand between the test and 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write_config(tmp_path: Path, api: str, destinations: list[str]) -> Path:
    text = f'[discord]\napi_base_url = "{api}"\n[mirai.reverse_ws]\nextra_headers = {{ X-Common = "common" }}\n'
    for destination in destinations:
        text += f"[[mirai.reverse_ws.destinations]]\n{destination}\n"
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_online_check_passes(
    tmp_path: Path, discord_url: str, framework: FakeFramework, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = (
        f'host = "127.0.0.1"\nport = {framework.port}\npath = "/ws"\n'
        'extra_parameters = { room = "a b" }\nextra_headers = { X-Common = "mine", X-Token = "dest-secret-value" }'
    )
    path = write_config(tmp_path, discord_url, [destination])
    assert main(["check", "--online", str(path)], env=ENV) == 0
    out = capsys.readouterr().out
    assert "[ok] discord: token accepted, logged in as relay-bot (id 1234567890)" in out
    assert f"[ok] destination 127.0.0.1:{framework.port}/ws: websocket handshake accepted" in out
    (discord_headers,) = FakeDiscord.seen_headers
    assert discord_headers["User-Agent"].startswith("DiscordBot (")
    ((target, headers),) = framework.requests
    assert target == "/ws?room=a+b"
    assert headers["x-common"] == "mine"  # the destination's value wins over the adapter-wide one
    assert headers["x-token"] == "dest-secret-value"
    assert headers["qq"] == "1234567890"  # the bot id: the Discord user id when [mirai] bot_id = 0
    assert TOKEN not in out
    assert "dest-secret-value" not in out


def test_online_check_reports_each_failure(
    tmp_path: Path,
    discord_url: str,
    framework: FakeFramework,
    closed_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    destinations = [
        f'host = "127.0.0.1"\nport = {framework.port}\npath = "/ws"\nname = "good"',
        f'host = "127.0.0.1"\nport = {framework.port}\npath = "/wrong"\nname = "wrong-path"',
        f'host = "127.0.0.1"\nport = {closed_port}\nname = "nobody-home"',
    ]
    path = write_config(tmp_path, discord_url, destinations)
    env = {**ENV, "DISCORD_TOKEN": "a-wrong-token-value"}
    assert main(["check", "--online", str(path)], env=env) == 1
    out = capsys.readouterr().out
    assert "[FAIL] discord: the token was rejected (HTTP 401)" in out
    assert "[ok] destination good: websocket handshake accepted" in out
    assert "[FAIL] destination wrong-path: the server refused the websocket upgrade with HTTP 403" in out
    assert f"[FAIL] destination nobody-home: cannot connect to 127.0.0.1:{closed_port}" in out
    assert "a-wrong-token-value" not in out


def test_online_check_when_discord_is_unreachable(
    tmp_path: Path, closed_port: int, framework: FakeFramework, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = f'host = "127.0.0.1"\nport = {framework.port}\npath = "/ws"'
    path = write_config(tmp_path, f"http://127.0.0.1:{closed_port}/api/v10", [destination])
    assert main(["check", "--online", str(path)], env=ENV) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] discord: cannot reach http://127.0.0.1:{closed_port}/api/v10/users/@me: ConnectError" in out


def test_online_check_on_a_non_discord_answer(
    tmp_path: Path, discord_url: str, framework: FakeFramework, capsys: pytest.CaptureFixture[str]
) -> None:
    destination = f'host = "127.0.0.1"\nport = {framework.port}\npath = "/ws"'
    path = write_config(tmp_path, discord_url.replace("/api/v10", "/elsewhere"), [destination])
    assert main(["check", "--online", str(path)], env=ENV) == 1
    assert "answered HTTP 404: 404: Not Found" in capsys.readouterr().out
