"""Everything a client can do wrong to relay/web's server gets a status or ends that connection only.

Raw bytes over real loopback sockets. Timeouts use small configured limits in real time; every test has a
generous ``fail_after`` guard, and nothing asserts how long anything took.
"""

from __future__ import annotations

import logging
import resource
import socket
import struct

import pytest
import trio

from relay.web.models import Request, Response, ServerLimits
from tests.integration.test_web_server import GUARD, app
from tests.integration.webclient import RawClient, serving

SMALL_TIMEOUT = 0.2  # seconds; the phase a test exercises ends by timing out, the others are generous


async def assert_still_serving(port: int) -> None:
    async with RawClient.connect(port) as client:
        assert (await client.request("GET", "/echo")).status == 200


# --------------------------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="request-line"),
        pytest.param(b"GET /echo HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400, id="header-name"),
        pytest.param(b"GET /echo HTTP/1.1\r\n\r\n", 400, id="no-host"),
        pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
        pytest.param(b"GET /\xff HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="non-ascii-target"),
        pytest.param(b"GET /%FF HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="path-not-utf8"),
        pytest.param(b"GET /echo?a=%FF HTTP/1.1\r\nHost: t\r\n\r\n", 400, id="query-not-utf8"),
        pytest.param(b"GET /echo HTTP/2.0\r\nHost: t\r\n\r\n", 505, id="version"),
        pytest.param(b"CONNECT t:443 HTTP/1.1\r\nHost: t\r\n\r\n", 501, id="connect"),
        pytest.param(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, id="head-too-big"),
        pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400, id="negative-length"),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, id="bad-chunk"
        ),
        # request smuggling: the two framings must not both be believed (RFC 9112 §6.1, §6.3)
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /crash HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            id="cl-and-te",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
            id="conflicting-lengths",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, id="te-gzip"
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
            id="two-te",
        ),
    ],
)
async def test_a_bad_request_gets_a_status_then_the_connection_closes(raw: bytes, status: int) -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port:
            async with RawClient.connect(port) as bystander:  # another client, mid-conversation
                assert (await bystander.request("GET", "/echo")).status == 200
                async with RawClient.connect(port) as client:
                    await client.send(raw)
                    reply = await client.reply("GET")
                    assert await client.closed_by_server()  # an EOF after the answer, not a reset
                assert (await bystander.request("GET", "/echo")).status == 200
    assert reply.status == status
    assert reply.headers["connection"] == "close"
    assert reply.json()["status"] == status
    assert reply.json()["message"]


async def test_a_client_that_resets_mid_request_affects_nobody() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port:
            for partial in (
                b"GET /echo HTTP/1.1\r\nHo",
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab",
            ):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(partial)
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await stream.aclose()  # SO_LINGER 0: the close is a reset
            await assert_still_serving(port)


# --------------------------------------------------------------------------------------------- body limits


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    limits = ServerLimits(max_body_bytes=1000)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port, RawClient.connect(port) as client:
            # 10 MB announced, 1 KB sent: the answer comes without the rest
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n" + b"a" * 1024)
            reply = await client.reply("POST")
            assert await client.closed_by_server()
    assert reply.status == 413
    assert reply.json()["status"] == 413


async def test_expect_100_continue_over_the_limit_gets_413_instead_of_100() -> None:
    limits = ServerLimits(max_body_bytes=1000)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port, RawClient.connect(port) as client:
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
            reply = await client.reply("POST")
    assert reply.status == 413


async def test_a_chunked_body_growing_over_the_limit_is_cut_off() -> None:
    limits = ServerLimits(max_body_bytes=1000)
    chunk = b"200\r\n" + b"a" * 0x200 + b"\r\n"
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port, RawClient.connect(port) as client:
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3)
            reply = await client.reply("POST")
            assert await client.closed_by_server()
    assert reply.status == 413


async def test_a_chunked_body_within_the_limit_is_read() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            await client.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            reply = await client.reply("POST")
    assert reply.json()["body"] == "abcde"


# --------------------------------------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b'{"a": 1}', 415),
        ("application/json", b"{not json", 400),
        ("application/json", b"[1, 2]", 422),
        ("application/json", b'"a string"', 422),
        ("application/json; charset=utf-8", b'{"a": 1}', 200),
    ],
)
async def test_json_endpoints_refuse_what_is_not_a_json_object(content_type: str, body: bytes, status: int) -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            reply = await client.request("POST", "/json", headers=f"Content-Type: {content_type}\r\n", body=body)
            after = await client.request("GET", "/echo")  # a refusal keeps the connection
    assert reply.status == status
    if status == 200:
        assert reply.json() == {"got": {"a": 1}}
    else:
        assert reply.json()["status"] == status
    assert after.status == 200


# --------------------------------------------------------------------------------------------- handlers


async def test_a_handler_that_raises_gets_500_and_the_server_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            reply = await client.request("GET", "/crash?sessionKey=SECRET")
            after = await client.request("GET", "/echo")
    assert reply.status == 500
    assert reply.json() == {"status": 500, "error": "Internal Server Error", "message": reply.json()["message"]}
    assert after.status == 200
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failures and "/crash" in failures[0].getMessage()
    assert "SECRET" not in caplog.text  # the query is never logged


async def test_a_handler_refusal_gets_its_status() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            reply = await client.request("GET", "/refuse")
    assert reply.status == 409
    assert reply.json() == {"status": 409, "error": "Conflict", "message": "already bound"}


async def test_a_handler_can_close_the_connection_without_answering(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port:
            async with RawClient.connect(port) as client:
                # a request pipelined behind the dropped one is not answered either
                await client.send(b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
                try:
                    data = await client.stream.receive_some(65536)
                except trio.BrokenResourceError:  # a reset is a close without an answer too
                    data = b""
                assert data == b""
            await assert_still_serving(port)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_invalid_response_from_a_handler_becomes_500() -> None:
    with trio.fail_after(GUARD):
        async with serving(app()) as port, RawClient.connect(port) as client:
            reply = await client.request("GET", "/invalid")
    assert reply.status == 500


# --------------------------------------------------------------------------------------------- slow clients


async def test_a_head_trickling_in_is_cut_off_with_408() -> None:
    limits = ServerLimits(header_timeout=SMALL_TIMEOUT)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port, RawClient.connect(port) as client:
            await client.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
            async with trio.open_nursery() as nursery:

                async def trickle() -> None:  # slowloris: a header byte now and then, never the end
                    try:
                        while True:
                            await client.send(b"X")
                            await trio.sleep(SMALL_TIMEOUT / 4)
                    except trio.BrokenResourceError:
                        pass

                nursery.start_soon(trickle)
                reply = await client.reply("GET")
                nursery.cancel_scope.cancel()
    assert reply.status == 408


async def test_a_body_that_stops_coming_is_cut_off_with_408() -> None:
    limits = ServerLimits(body_timeout=SMALL_TIMEOUT)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port, RawClient.connect(port) as client:
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            reply = await client.reply("POST")
            assert await client.closed_by_server()
    assert reply.status == 408


async def test_an_idle_keep_alive_connection_is_closed_silently() -> None:
    limits = ServerLimits(keep_alive_timeout=SMALL_TIMEOUT)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port, RawClient.connect(port) as client:
            assert (await client.request("GET", "/echo")).status == 200
            assert await client.stream.receive_some(1024) == b""  # closed, with nothing sent


async def test_a_client_that_does_not_read_its_response_is_dropped() -> None:
    limits = ServerLimits(send_timeout=SMALL_TIMEOUT, max_connections=1)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port:
            stalled = await trio.open_tcp_stream("127.0.0.1", port)
            await stalled.send_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")  # 32 MiB it never reads
            # its slot comes free once the server gives up on it: until then, others get 503
            while True:
                async with RawClient.connect(port) as client:
                    if (await client.request("GET", "/echo")).status == 200:
                        break
                await trio.sleep(SMALL_TIMEOUT / 4)
            await stalled.aclose()


# --------------------------------------------------------------------------------------------- connection limit


async def test_connections_over_the_limit_get_503_and_the_others_are_unaffected() -> None:
    limits = ServerLimits(max_connections=2)
    with trio.fail_after(GUARD):
        async with serving(app(), limits=limits) as port:
            async with RawClient.connect(port) as first, RawClient.connect(port) as second:
                assert (await first.request("GET", "/echo")).status == 200  # both counted
                assert (await second.request("GET", "/echo")).status == 200
                async with RawClient.connect(port) as third:
                    refused = await third.request("GET", "/echo")
                    assert await third.closed_by_server()
                assert (await first.request("GET", "/echo")).status == 200
                assert (await second.request("GET", "/echo")).status == 200
            # both closed: a slot comes free as soon as the server notices
            while True:
                async with RawClient.connect(port) as client:
                    if (await client.request("GET", "/echo")).status == 200:
                        break
                await trio.sleep(0.01)
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["status"] == 503


async def test_a_thousand_idle_connections_are_fine() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2_200:  # 1,000 connections are 2,000 descriptors here, both ends in this process
        pytest.skip(f"the file descriptor limit ({soft}) is too low for this test")
    with trio.fail_after(GUARD * 3):
        async with serving(app()) as port:
            clients: list[RawClient] = []
            try:
                for _ in range(1_000):
                    client = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
                    clients.append(client)
                    assert (await client.request("GET", "/fixed")).status == 200  # accepted and counted
                await assert_still_serving(port)  # one more, while all 1,000 idle
                for client in clients:  # and every idle one still works
                    assert (await client.request("GET", "/fixed")).status == 200
            finally:
                for client in clients:
                    await client.stream.aclose()


async def test_cancelling_the_server_ends_a_handler_in_progress() -> None:
    started = trio.Event()

    async def waits_forever(request: Request) -> Response:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.fail_after(GUARD):
        async with serving(waits_forever) as port, RawClient.connect(port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await started.wait()
        # leaving `serving` cancelled the server while the handler waited: the cancellation went through it
