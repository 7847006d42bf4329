"""relay/web's HTTP server over real loopback sockets: keep-alive, bad input, limits and timeouts.

Timeouts are exercised with small configured limits in real time; every test has a generous ``fail_after``
guard, and nothing asserts how long anything took.
"""

from __future__ import annotations

import socket

import pytest
import trio

from relay.web import bodies
from relay.web.models import DropConnection, Request, RequestRejected, Response
from relay.web.routing import Router
from tests.integration.webclient import RawClient, serving

GUARD = 20  # seconds; a hang fails the test instead of blocking the suite


async def echo(request: Request) -> Response:
    return Response.json(
        {
            "method": request.method,
            "path": request.path,
            "query": [list(pair) for pair in request.query],
            "body": request.body.decode("latin-1"),
        }
    )


async def crash(request: Request) -> Response:
    raise RuntimeError("a bug in a handler")


async def drop(request: Request) -> Response:
    raise DropConnection("playing a flaky server")


async def refuse(request: Request) -> Response:
    raise RequestRejected(409, "already bound")


async def invalid(request: Request) -> Response:
    return Response(200, (("x-bad", "line\r\nbreak"),))


async def needs_json(request: Request) -> Response:
    return Response.json({"got": bodies.json_object(request)})


async def fixed(request: Request) -> Response:
    return Response.text("the same for GET and HEAD")


async def big(request: Request) -> Response:
    return Response(200, body=b"x" * (32 * 1024 * 1024))


def app() -> Router:
    router = Router()
    router.add(("GET", "POST"), "/echo", echo)
    router.add("GET", "/crash", crash)
    router.add("GET", "/refuse", refuse)
    router.add("GET", "/drop", drop)
    router.add("GET", "/invalid", invalid)
    router.add("POST", "/json", needs_json)
    router.add("GET", "/big", big)
    router.add("GET", "/fixed", fixed)
    return router


# --------------------------------------------------------------------------------------------- basics


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            first = await client.request("GET", "/echo?a=1&b=%E4%BD%A0&a=2")
            second = await client.request("POST", "/echo", body=b"hello")
    assert first.status == 200
    assert first.json() == {
        "method": "GET",
        "path": "/echo",
        "query": [["a", "1"], ["b", "你"], ["a", "2"]],
        "body": "",
    }
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    assert second.json()["body"] == "hello"


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            await client.send(
                b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"HEAD /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            )
            first = await client.reply("GET")
            second = await client.reply("HEAD")
            third = await client.reply("POST")
    assert first.json()["query"] == [["n", "1"]]
    assert (second.status, second.body) == (200, b"")
    assert third.json()["body"] == "abc"


async def test_head_answers_the_get_headers_without_a_body() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            head = await client.request("HEAD", "/fixed")
            get = await client.request("GET", "/fixed")  # the same connection: no stray body bytes came
    assert head.status == 200
    assert head.body == b""
    assert int(head.headers["content-length"]) == len(get.body) > 0
    assert get.body == b"the same for GET and HEAD"


async def test_connection_close_is_honoured() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            reply = await client.request("GET", "/echo", headers="Connection: close\r\n")
            assert await client.closed_by_server()
    assert reply.status == 200
    assert reply.headers["connection"] == "close"


async def test_http_1_0_gets_its_answer_then_the_connection_closes() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            await client.send(b"GET /echo HTTP/1.0\r\n\r\n")
            reply = await client.reply("GET")
            assert await client.closed_by_server()
    assert reply.status == 200


async def test_expect_100_continue_within_the_limit() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            interim = await read_head(client)  # the server asks for the body before the client sends it
            await client.send(b"hello")
            reply = await client.reply("POST")
    assert interim.startswith(b"HTTP/1.1 100 ")
    assert reply.json()["body"] == "hello"


async def read_head(client: RawClient) -> bytes:
    """Raw bytes up to the end of one response head (for a 1xx response, which has no body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await client.stream.receive_some(1)
        assert chunk, data
        data += chunk
    return data


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 is not available")
    with trio.fail_after(GUARD):
        async with serving(app(), host="::1") as port, RawClient.connect(port, host="::1") as client:
            reply = await client.request("GET", "/echo")
    assert reply.status == 200


async def test_the_default_host_is_ipv4_loopback() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            from relay.web.server import serve_http

            port = await nursery.start(lambda task_status: serve_http(app(), port=0, task_status=task_status))
            async with RawClient.connect(port, host="127.0.0.1") as client:
                reply = await client.request("GET", "/echo")
            nursery.cancel_scope.cancel()
    assert reply.status == 200
