"""relay.proxy against a real proxy server (pproxy, a subprocess on 127.0.0.1) and, for the answers pproxy never
gives, against small fakes on loopback: tunnels (HTTP CONNECT, https proxy, SOCKS5, socks5h), authentication,
a proxy that dies, a proxy that is not there, and httpx through the same proxies."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path

import h11
import httpx
import pytest
import trio
import trustme

from relay.errors import (
    ProxyAuthenticationRefused,
    ProxyCannotReachTarget,
    ProxyConnectFailed,
    ProxyProtocolError,
    ProxyTimeout,
)
from relay.proxy import httpx_proxy_options, open_proxied_stream
from relay.proxyurl import parse_proxy_url
from tests.integration.pproxy_server import PASSWORD, USER, free_port, open_pproxy, start_pproxy

#: a hang guard for each wait on the network, never a measurement
GUARD = 20.0

Handler = Callable[[trio.SocketStream], Awaitable[None]]


# --------------------------------------------------------------------------- targets


async def echo(stream: trio.abc.Stream) -> None:
    try:
        async for chunk in stream:
            await stream.send_all(chunk)
    except trio.BrokenResourceError:
        pass


async def serve_on_loopback(nursery: trio.Nursery, handler: Handler) -> int:
    """``handler`` on 127.0.0.1 and, where it exists, ::1 (one port), so ``localhost`` reaches it either way."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    with contextlib.suppress(OSError):  # no IPv6 loopback here
        await nursery.start(partial(trio.serve_tcp, handler, port, host="::1"))
    return port


@pytest.fixture
async def echo_port(nursery: trio.Nursery) -> int:
    return await serve_on_loopback(nursery, echo)


async def receive_exactly(stream: trio.abc.Stream, count: int) -> bytes:
    data = b""
    with trio.fail_after(GUARD):
        while len(data) < count:
            chunk = await stream.receive_some(count - len(data))
            assert chunk, "the tunnel ended early"
            data += chunk
    return data


async def assert_echoes(stream: trio.abc.Stream, payload: bytes = b"ping through the proxy") -> None:
    await stream.send_all(payload)
    assert await receive_exactly(stream, len(payload)) == payload


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


@pytest.fixture
def proxy_certificate(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "proxy.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


# --------------------------------------------------------------------------- tunnels through pproxy


async def test_http_connect_tunnel_reaches_the_target(tmp_path: Path, echo_port: int) -> None:
    async with open_pproxy(tmp_path) as server:
        proxy = parse_proxy_url(server.url("http"))
        assert proxy.password == PASSWORD
        stream = await open_proxied_stream(proxy, "localhost", echo_port)
        async with stream:
            await assert_echoes(stream)
        await server.wait_for_log(f"-> localhost:{echo_port}")
        assert "http 127.0.0.1:" in server.log()


async def test_socks5_tunnel_reaches_the_target(tmp_path: Path, echo_port: int) -> None:
    async with open_pproxy(tmp_path) as server:
        stream = await open_proxied_stream(parse_proxy_url(server.url("socks5")), "127.0.0.1", echo_port)
        async with stream:
            await assert_echoes(stream)
            await assert_echoes(stream, b"x" * 200_000)  # more than one segment each way


async def test_socks5h_sends_the_host_name_to_the_proxy(tmp_path: Path, echo_port: int) -> None:
    async with open_pproxy(tmp_path) as server:
        stream = await open_proxied_stream(parse_proxy_url(server.url("socks5h")), "localhost", echo_port)
        async with stream:
            await assert_echoes(stream)
        await server.wait_for_log(f"-> localhost:{echo_port}")
        assert "socks5 127.0.0.1:" in server.log()


async def test_socks5_resolves_the_name_here_and_sends_an_address(tmp_path: Path, echo_port: int) -> None:
    infos = await trio.socket.getaddrinfo("localhost", echo_port, type=trio.socket.SOCK_STREAM)
    address = infos[0][4][0]
    async with open_pproxy(tmp_path) as server:
        stream = await open_proxied_stream(parse_proxy_url(server.url("socks5")), "localhost", echo_port)
        async with stream:
            await assert_echoes(stream)
        await server.wait_for_log(f"-> {address}:{echo_port}")
        assert f"-> localhost:{echo_port}" not in server.log()


async def test_socks5_without_authentication(tmp_path: Path, echo_port: int) -> None:
    async with open_pproxy(tmp_path, authenticated=False) as server:
        stream = await open_proxied_stream(parse_proxy_url(server.url("socks5h")), "localhost", echo_port)
        async with stream:
            await assert_echoes(stream)


async def test_https_proxy_then_tls_to_the_target_inside(
    tmp_path: Path,
    nursery: trio.Nursery,
    proxy_certificate: Path,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    """TLS to the proxy, CONNECT inside it, then the caller's TLS to the target inside that: TLS in TLS."""
    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, echo, 0, server_context, host="127.0.0.1", https_compatible=True)
    )
    target_port = listeners[0].transport_listener.socket.getsockname()[1]
    async with open_pproxy(tmp_path, protocols="http+ssl", certificate=proxy_certificate) as server:
        proxy = parse_proxy_url(server.url("https"))
        tunnel = await open_proxied_stream(proxy, "localhost", target_port, proxy_ssl_context=client_context)
        assert isinstance(tunnel, trio.SSLStream)
        stream = trio.SSLStream(tunnel, client_context, server_hostname="localhost", https_compatible=True)
        async with stream:
            await assert_echoes(stream)


async def test_https_proxy_with_an_untrusted_certificate_is_refused(
    tmp_path: Path, proxy_certificate: Path, echo_port: int
) -> None:
    async with open_pproxy(tmp_path, protocols="http+ssl", certificate=proxy_certificate) as server:
        with pytest.raises(ProxyConnectFailed, match="TLS handshake with the proxy failed") as caught:
            await open_proxied_stream(parse_proxy_url(server.url("https")), "localhost", echo_port)
    assert PASSWORD not in str(caught.value)


# --------------------------------------------------------------------------- refusals and failures


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "http"])
async def test_wrong_password_is_an_authentication_error(tmp_path: Path, echo_port: int, scheme: str) -> None:
    async with open_pproxy(tmp_path) as server:
        proxy = parse_proxy_url(server.url(scheme, password="not-the-pw"))
        with pytest.raises(ProxyAuthenticationRefused) as caught:
            await open_proxied_stream(proxy, "localhost", echo_port)
    message = str(caught.value)
    assert "not-the-pw" not in message
    assert f"{scheme}://{USER}:***@127.0.0.1:{server.port}" in message
    if scheme == "http":
        assert "HTTP 407" in message


@pytest.mark.parametrize("scheme", ["socks5h", "http"])
async def test_missing_credentials_say_the_proxy_wants_them(tmp_path: Path, echo_port: int, scheme: str) -> None:
    async with open_pproxy(tmp_path) as server:
        proxy = parse_proxy_url(server.url(scheme, user=""))
        assert proxy.username is None
        with pytest.raises(ProxyAuthenticationRefused, match="user:password@"):
            await open_proxied_stream(proxy, "localhost", echo_port)


async def test_a_proxy_that_is_not_listening(echo_port: int) -> None:
    proxy = parse_proxy_url(f"socks5h://{USER}:topsecret@127.0.0.1:{free_port()}")
    with pytest.raises(ProxyConnectFailed, match="Connection refused") as caught:
        await open_proxied_stream(proxy, "localhost", echo_port)
    assert "topsecret" not in str(caught.value)
    assert caught.value.target == f"localhost:{echo_port}"


async def test_http_connect_to_a_closed_port_says_the_proxy_cannot_reach_it(tmp_path: Path) -> None:
    closed = free_port()
    async with open_pproxy(tmp_path) as server:
        with pytest.raises(ProxyCannotReachTarget, match=f"could not connect to 127.0.0.1:{closed}"):
            await open_proxied_stream(parse_proxy_url(server.url("http")), "127.0.0.1", closed)


async def test_a_proxy_that_dies_ends_the_tunnel_and_the_caller_can_reconnect(tmp_path: Path, echo_port: int) -> None:
    server = await start_pproxy(tmp_path)
    try:
        proxy = parse_proxy_url(server.url("socks5h"))
        stream = await open_proxied_stream(proxy, "localhost", echo_port)
        await assert_echoes(stream)

        await server.kill()
        with trio.fail_after(GUARD):
            try:
                ended = await stream.receive_some(1024)
            except trio.BrokenResourceError:
                ended = b""
        assert ended == b""
        await stream.aclose()
        with pytest.raises(ProxyConnectFailed):
            await open_proxied_stream(proxy, "localhost", echo_port)

        server = await start_pproxy(tmp_path, port=server.port)  # the proxy is back: a new tunnel works
        async with await open_proxied_stream(proxy, "localhost", echo_port) as again:
            await assert_echoes(again)
    finally:
        await server.kill()


# --------------------------------------------------------------------------- answers pproxy never gives (fakes)


async def serve_fake(nursery: trio.Nursery, handler: Handler) -> str:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def read_head(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


def socks5_server(*answers: bytes) -> Handler:
    """A SOCKS5 "server" that answers each message it receives with the next of ``answers``, then keeps quiet."""

    async def handle(stream: trio.SocketStream) -> None:
        with trio.move_on_after(GUARD):
            for answer in answers:
                if not await stream.receive_some(4096):
                    return
                await stream.send_all(answer)
            await trio.sleep_forever()

    return handle


@pytest.mark.parametrize(
    ("answers", "error", "text"),
    [
        ((b"\x05\x00", b"\x05\x05\x00\x01\0\0\0\0\0\0"), ProxyCannotReachTarget, "connection refused"),
        ((b"\x05\x00", b"\x05\x02\x00\x01\0\0\0\0\0\0"), ProxyCannotReachTarget, "rules do not allow"),
        ((b"\x05\x00", b"\x05\x04"), ProxyCannotReachTarget, "host unreachable"),  # cut short, then silence
        ((b"\x05\xff",), ProxyAuthenticationRefused, "does not accept a user name and password"),
        ((b"\x05\x02", b"\x01\x01"), ProxyAuthenticationRefused, "wrong user name or password"),
        ((b"\x05\x01",), ProxyProtocolError, "not offered"),
        ((b"HTTP/1.1 400 Bad Request\r\n\r\n",), ProxyProtocolError, "an HTTP proxy needs http://"),
        ((b"\x05\x00", b"\x05\x00\x00\x09\0\0"), ProxyProtocolError, "address type 9"),
    ],
)
async def test_socks5_answers_map_to_typed_errors(
    nursery: trio.Nursery, answers: tuple[bytes, ...], error: type[Exception], text: str
) -> None:
    address = await serve_fake(nursery, socks5_server(*answers))
    proxy = parse_proxy_url(f"socks5h://{USER}:hunter2@{address}")
    with pytest.raises(error, match=text) as caught:
        await open_proxied_stream(proxy, "discord.com", 443)
    assert "hunter2" not in str(caught.value)


async def test_socks5_success_reply_with_a_domain_name_is_read_to_its_end(nursery: trio.Nursery) -> None:
    reply = b"\x05\x00\x00\x03\x0bexample.com\x01\xbb"

    async def handle(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)
        await stream.send_all(b"\x05\x00")
        await stream.receive_some(4096)
        await stream.send_all(reply + b"from the target")  # the first tunnelled bytes arrive with the reply
        await trio.sleep_forever()

    address = await serve_fake(nursery, handle)
    stream = await open_proxied_stream(parse_proxy_url(f"socks5h://{address}"), "discord.com", 443)
    assert await receive_exactly(stream, 15) == b"from the target"
    await stream.aclose()


async def test_a_silent_proxy_times_out_naming_the_step(nursery: trio.Nursery) -> None:
    address = await serve_fake(nursery, socks5_server())
    with pytest.raises(ProxyTimeout, match=r"did not finish the SOCKS5 greeting for discord\.com:443 within 0\.2 s"):
        await open_proxied_stream(parse_proxy_url(f"socks5h://{address}"), "discord.com", 443, timeout=0.2)


async def test_http_connect_answer_split_across_segments(nursery: trio.Nursery) -> None:
    """The answer's head arrives in pieces: the tunnel starts after the blank line, not after the first read."""

    async def handle(stream: trio.SocketStream) -> None:
        head = await read_head(stream)
        assert head.startswith(b"CONNECT discord.com:443 HTTP/1.1\r\n")
        for piece in (b"HTTP/1.1 200 Connection established\r\n", b"Via: 1.1 fake\r\n", b"\r\n"):
            await stream.send_all(piece)
            await trio.sleep(0.05)  # separate segments
        await echo(stream)

    address = await serve_fake(nursery, handle)
    stream = await open_proxied_stream(parse_proxy_url(f"http://{address}"), "discord.com", 443)
    async with stream:
        await assert_echoes(stream)


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", ProxyCannotReachTarget, "HTTP 502 Bad Gateway"),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", ProxyCannotReachTarget, "HTTP 403 Forbidden"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 407 Auth\r\n\r\n", ProxyAuthenticationRefused, "HTTP 407 Auth"),
        (b"\x05\xff", ProxyProtocolError, "socks5:// or socks5h://"),
        (b"HTTP/1.1 200 OK\r\n\r\nunasked", ProxyProtocolError, "sent 7 bytes from the target"),
        (b"", ProxyCannotReachTarget, "closed the connection without answering"),
    ],
)
async def test_http_connect_answers_map_to_typed_errors(
    nursery: trio.Nursery, answer: bytes, error: type[Exception], text: str
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        await read_head(stream)
        if answer:
            await stream.send_all(answer)
        else:
            await stream.send_eof()  # a proxy that hangs up without a word
        await trio.sleep(GUARD)

    address = await serve_fake(nursery, handle)
    proxy = parse_proxy_url(f"http://{USER}:hunter2@{address}")
    with pytest.raises(error, match=text) as caught:
        await open_proxied_stream(proxy, "discord.com", 443)
    assert "hunter2" not in str(caught.value)


async def test_connect_request_carries_basic_credentials_and_a_bracketed_ipv6_target(nursery: trio.Nursery) -> None:
    heads: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        heads.append(await read_head(stream))
        await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\n")
        await trio.sleep(GUARD)

    address = await serve_fake(nursery, handle)
    proxy = parse_proxy_url(f"http://{USER}:p%40ss@{address}")
    stream = await open_proxied_stream(proxy, "::1", 443)
    await stream.aclose()
    assert heads[0].startswith(b"CONNECT [::1]:443 HTTP/1.1\r\n")
    assert b"host: [::1]:443\r\n" in heads[0].lower()
    assert b"Proxy-Authorization: Basic YWxpY2U6cEBzcw==\r\n" in heads[0]  # alice:p@ss


# --------------------------------------------------------------------------- httpx through the same proxies


async def hello(stream: trio.abc.Stream) -> None:
    """One HTTP/1.1 request, answered ``hello <target>``, then the connection closes."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(4096))
            elif isinstance(event, h11.Request):
                body = b"hello " + event.target
            elif isinstance(event, h11.EndOfMessage):
                headers = [("content-length", str(len(body))), ("connection", "close")]
                await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
                await stream.send_all((conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b""))
                return
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


@pytest.fixture
async def hello_port(nursery: trio.Nursery) -> int:
    return await serve_on_loopback(nursery, hello)


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
async def test_httpx_on_trio_goes_through_the_proxy(tmp_path: Path, hello_port: int, scheme: str) -> None:
    async with open_pproxy(tmp_path) as server:
        options = httpx_proxy_options(parse_proxy_url(server.url(scheme)))
        async with httpx.AsyncClient(**options) as client:
            with trio.fail_after(GUARD):
                response = await client.get(f"http://localhost:{hello_port}/users/@me")
        assert response.status_code == 200
        assert response.text == "hello /users/@me"
        await server.wait_for_log(f"-> localhost:{hello_port}")  # httpx sends the name even for socks5://


async def test_httpx_https_target_through_an_https_proxy(
    tmp_path: Path,
    nursery: trio.Nursery,
    proxy_certificate: Path,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    """Discord REST's real shape: an https:// URL through CONNECT, here with TLS to the proxy as well."""
    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, hello, 0, server_context, host="127.0.0.1", https_compatible=True)
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    async with open_pproxy(tmp_path, protocols="http+ssl", certificate=proxy_certificate) as server:
        options = httpx_proxy_options(parse_proxy_url(server.url("https")), proxy_ssl_context=client_context)
        async with httpx.AsyncClient(verify=client_context, **options) as client:
            with trio.fail_after(GUARD):
                response = await client.get(f"https://localhost:{port}/api/v10/gateway/bot")
        assert response.text == "hello /api/v10/gateway/bot"
        await server.wait_for_log(f"-> localhost:{port}")


async def test_httpx_wrong_password_fails_through_the_proxy(tmp_path: Path, hello_port: int) -> None:
    async with open_pproxy(tmp_path) as server:
        options = httpx_proxy_options(parse_proxy_url(server.url("socks5h", password="wrong")))
        async with httpx.AsyncClient(**options) as client:
            with pytest.raises(httpx.ProxyError):
                await client.get(f"http://localhost:{hello_port}/")


@pytest.fixture
def environment_proxies(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every proxy variable httpx reads, pointing at a port where nothing listens."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield dead


async def test_httpx_without_a_proxy_ignores_the_environment_proxies(environment_proxies: str, hello_port: int) -> None:
    url = f"http://localhost:{hello_port}/direct"
    async with httpx.AsyncClient() as plain:  # the control: httpx alone follows the variables, into nothing
        with pytest.raises(httpx.TransportError):
            await plain.get(url)
    async with httpx.AsyncClient(**httpx_proxy_options(None)) as client:
        with trio.fail_after(GUARD):
            response = await client.get(url)
    assert response.text == "hello /direct"
