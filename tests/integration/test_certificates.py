"""A certificate that does not verify is named as such (issue 15), in ``run`` (REST and gateway) and in ``check``:
"certificate verify failed for HOST: reason", never "network error", a timeout, or a line at INFO.

The server is a loopback TLS listener whose certificate comes from a throw-away CA (trustme) that nothing trusts.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme

from adapters.discord.gateway.events import ShardDisconnected
from adapters.discord.gateway.shard import serve_gateway
from adapters.discord.rest.client import GatewayBotInfo, open_rest_client
from relay.cli import main
from relay.config import DiscordConfig
from relay.errors import DiscordUnreachable
from tests.integration.test_discord_shard import Collector

TOKEN = "cert-test-token"


def untrusted_server_context() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def serve_tls(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A TLS listener that completes no handshake a verifying client would accept."""

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            await stream.receive_some(1024)
        except trio.BrokenResourceError:
            pass

    listeners = await trio.open_ssl_over_tcp_listeners(0, untrusted_server_context(), host="127.0.0.1")
    task_status.started(listeners[0].transport_listener.socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_rest_names_the_certificate_failure_at_once(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_tls)
    config = DiscordConfig(api_base_url=f"https://127.0.0.1:{port}/api/v10", max_retries=3)
    with trio.fail_after(30):
        async with open_rest_client(config, TOKEN) as rest:
            with pytest.raises(DiscordUnreachable) as info:
                await rest.get_gateway_bot()
    text = str(info.value)
    assert "certificate verify failed for 127.0.0.1: " in text, text
    assert info.value.attempts == 1  # a certificate does not verify on a retry either
    assert TOKEN not in text


async def test_the_gateway_names_the_certificate_failure_at_warning(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = await nursery.start(serve_tls)
    collector = Collector()
    info = GatewayBotInfo.from_json(
        {
            "url": f"wss://127.0.0.1:{port}",
            "shards": 1,
            "session_start_limit": {"total": 10, "remaining": 10, "reset_after": 0, "max_concurrency": 1},
        }
    )

    async def fetch() -> GatewayBotInfo:
        return info

    with trio.move_on_after(5):
        await serve_gateway(config=DiscordConfig(), token=TOKEN, fetch_gateway_info=fetch, on_event=collector)
    failure = collector.of(ShardDisconnected)[0]
    assert "certificate verify failed for 127.0.0.1: " in failure.reason
    warning = next(r for r in caplog.records if "certificate verify failed" in r.getMessage())
    assert warning.levelno == logging.WARNING


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` installs its own (redacting) handler on the root logger; later tests must not inherit it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def tls_port() -> Iterator[int]:
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        with trio.CancelScope() as scope:
            state["scope"], state["token"] = scope, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                state["port"] = await nursery.start(serve_tls)
                ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(timeout=10)
    try:
        port = state["port"]
        assert isinstance(port, int)
        yield port
    finally:
        scope = state["scope"]
        assert isinstance(scope, trio.CancelScope)
        trio.from_thread.run_sync(scope.cancel, trio_token=state["token"])
        thread.join(timeout=10)


def test_check_online_names_the_certificate_failure(
    tmp_path: Path, tls_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[discord]\napi_base_url = "https://127.0.0.1:{tls_port}/api/v10"\n'
        f'[[mirai.reverse_ws.destinations]]\nhost = "127.0.0.1"\nport = {tls_port}\n',
        encoding="utf-8",
    )
    env = {"DISCORD_TOKEN": TOKEN, "MIRAI_VERIFY_KEY": "cert-test-verify-key", "HOME": str(tmp_path)}
    assert main(["check", "--online", str(path)], env=env) == 1
    out = capsys.readouterr().out
    assert "[FAIL] discord: cannot reach" in out
    assert "certificate verify failed for 127.0.0.1: " in out, out
