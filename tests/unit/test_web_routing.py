"""relay/web's Router and CORS wrapper, driven without I/O (their handlers never await anything real)."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any

import pytest

from relay.errors import LocalProtocolError
from relay.web import models
from relay.web.cors import origin_allowed, with_cors
from relay.web.models import Handler, Request, RequestRejected, Response
from relay.web.routing import Router


def run(coroutine: Coroutine[Any, Any, Response]) -> Response:
    """Run a handler that completes without suspending (nothing here awaits I/O)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: Response = done.value
        return result
    raise AssertionError("the handler suspended")


def request(method: str, path: str, headers: tuple[tuple[str, str], ...] = (("host", "bridge:8080"),)) -> Request:
    return models.build_request(
        method.encode(), path.encode(), [(n.encode(), v.encode()) for n, v in headers], b"", None
    )


def answer(text: str) -> Handler:
    async def handler(request: Request) -> Response:
        return Response.text(f"{text} {request.path}")

    return handler


def routed() -> Router:
    router = Router()
    router.add("GET", "/about", answer("about"))
    router.add(("post", "PUT"), "/about", answer("write"))
    router.add_prefix("POST", "/robots/", answer("robot"))
    router.add_prefix("GET", "/robots/admin", answer("admin"))
    return router


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/about", b"about /about"),
        ("POST", "/about", b"write /about"),
        ("PUT", "/about", b"write /about"),
        ("HEAD", "/about", b"about /about"),  # HEAD uses GET's handler; the server drops the body
        ("POST", "/robots/ci", b"robot /robots/ci"),
        ("POST", "/robots", b"robot /robots"),
        ("GET", "/robots/admin/x", b"admin /robots/admin/x"),  # the longest prefix wins
    ],
)
def test_routes(method: str, path: str, body: bytes) -> None:
    reply = run(routed()(request(method, path)))
    assert (reply.status, reply.body) == (200, body)


def test_not_found_and_prefix_boundaries() -> None:
    for path in ("/nothing", "/robotsx", "/abou"):
        reply = run(routed()(request("POST", path)))
        assert reply.status == 404
        assert json.loads(reply.body)["status"] == 404


def test_method_not_allowed_lists_allow() -> None:
    reply = run(routed()(request("DELETE", "/about")))
    assert reply.status == 405
    assert dict(reply.headers)["allow"] == "GET, HEAD, OPTIONS, POST, PUT"
    assert run(routed()(request("GET", "/robots/ci"))).status == 405  # the most specific route decides


def test_options_is_answered_with_allow() -> None:
    reply = run(routed()(request("OPTIONS", "/robots/ci")))
    assert reply.status == 204
    assert dict(reply.headers)["allow"] == "OPTIONS, POST"


def test_a_route_registered_twice_is_refused() -> None:
    router = routed()
    with pytest.raises(LocalProtocolError, match="GET on path '/about'"):
        router.add("get", "/about", answer("again"))


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("https://app.example", ("*",), True),
        ("null", ("*",), True),
        ("https://app.example", ("app.example",), True),
        ("http://APP.example", ("app.example",), True),
        ("https://app.example:8443", ("app.example",), False),
        ("https://app.example:8443", ("app.example:8443",), True),
        ("https://app.example", ("https://app.example/",), True),
        ("http://app.example", ("https://app.example",), False),
        ("ftp://app.example", ("app.example",), False),
        ("https://evil.example", ("app.example",), False),
        ("https://app.example", (), False),
    ],
)
def test_origin_allowed(origin: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert origin_allowed(origin, allowed) is expected


def test_cors_passes_same_origin_and_originless_requests_untouched() -> None:
    handler = with_cors(routed(), allowed_origins=())
    plain = run(handler(request("GET", "/about")))
    same = run(handler(request("GET", "/about", (("host", "bridge:8080"), ("origin", "http://bridge:8080")))))
    other = run(handler(request("GET", "/about", (("host", "bridge:8080"), ("origin", "http://other")))))
    assert plain.status == same.status == 200
    assert "access-control-allow-origin" not in dict(plain.headers) | dict(same.headers)
    assert other.status == 403


def test_cors_preflight_of_a_method_not_allowed_is_refused() -> None:
    handler = with_cors(routed(), allowed_origins=("*",))
    headers = (("host", "b"), ("origin", "http://a"), ("access-control-request-method", "DELETE"))
    assert run(handler(request("OPTIONS", "/about", headers))).status == 403


def test_cors_headers_reach_a_refusal_too() -> None:
    async def refuse(request: Request) -> Response:
        raise RequestRejected(400, "missing field")

    reply = run(with_cors(refuse, allowed_origins=("*",))(request("GET", "/", (("host", "b"), ("origin", "http://a")))))
    assert reply.status == 400
    assert dict(reply.headers)["access-control-allow-origin"] == "*"
