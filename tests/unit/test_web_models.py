"""relay/web's pure models: building a Request from a parsed head, responses, errors, JSON bodies."""

from __future__ import annotations

import json

import pytest

from relay.web import bodies, models
from relay.web.models import Request, RequestRejected, Response, ServerLimits


def make(target: bytes = b"/", headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"") -> Request:
    return models.build_request(b"get", target, headers or [(b"Host", b"t")], body, ("127.0.0.1", 5))


def test_build_request_decodes_path_and_query_in_order() -> None:
    request = make(b"/a%20b/%E4%BD%A0?x=1&y=&x=2&z=%2B+plus")
    assert request.method == "GET"
    assert request.target == "/a%20b/%E4%BD%A0?x=1&y=&x=2&z=%2B+plus"
    assert request.path == "/a b/你"
    assert request.query == (("x", "1"), ("y", ""), ("x", "2"), ("z", "+ plus"))
    assert request.query_value("x") == "1"
    assert request.query_value("missing") is None
    assert request.client == ("127.0.0.1", 5)


def test_build_request_target_forms() -> None:
    assert make(b"*").path == "*"
    absolute = make(b"http://example.com/p?q=1")
    assert (absolute.path, absolute.query) == ("/p", (("q", "1"),))
    assert make(b"http://example.com").path == "/"


@pytest.mark.parametrize("target", [b"/\xff", b"/%FF", b"/?a=%FF", b"/?" + b"&".join([b"a=1"] * 1001)])
def test_build_request_refuses_undecodable_targets(target: bytes) -> None:
    with pytest.raises(RequestRejected) as caught:
        make(target)
    assert caught.value.status == 400


def test_headers_are_lower_case_latin_1_and_looked_up_in_any_case() -> None:
    request = make(headers=[(b"Host", b"t"), (b"X-Name", b"caf\xe9"), (b"x-name", b"second")])
    assert request.headers == (("host", "t"), ("x-name", "café"), ("x-name", "second"))
    assert request.header("X-NAME") == "café"
    assert request.header("absent") is None


def test_the_body_is_not_in_the_repr() -> None:
    assert "secret-body" not in repr(make(body=b"secret-body"))
    assert "secret-body" not in repr(Response(200, body=b"secret-body"))


def test_response_helpers() -> None:
    reply = Response.json({"a": [1, "你"]}, 201, (("x-extra", "1"),))
    assert reply.status == 201
    assert reply.headers == (("content-type", "application/json; charset=utf-8"), ("x-extra", "1"))
    assert json.loads(reply.body) == {"a": [1, "你"]}
    text = Response.text("héllo")
    assert (text.status, text.body) == (200, "héllo".encode())
    assert text.headers == (("content-type", "text/plain; charset=utf-8"),)


def test_json_error_and_request_rejected() -> None:
    error = models.json_error(404, "no route for /x")
    assert error.status == 404
    assert json.loads(error.body) == {"status": 404, "error": "Not Found", "message": "no route for /x"}
    rejected = RequestRejected(503, "busy", headers=(("retry-after", "1"),)).response()
    assert rejected.status == 503
    assert ("retry-after", "1") in rejected.headers
    assert models.reason_phrase(599) == ""


@pytest.mark.parametrize(
    ("method", "upgrade", "connection", "expected"),
    [
        ("GET", "websocket", "Upgrade", True),
        ("GET", "WebSocket", "keep-alive, upgrade", True),
        ("POST", "websocket", "Upgrade", False),
        ("GET", "h2c", "Upgrade", False),
        ("GET", "websocket", "keep-alive", False),
    ],
)
def test_is_websocket_upgrade(method: str, upgrade: str, connection: str, expected: bool) -> None:
    request = models.build_request(
        method.encode(), b"/all", [(b"upgrade", upgrade.encode()), (b"connection", connection.encode())], b""
    )
    assert models.is_websocket_upgrade(request) is expected


def test_server_limits_must_be_positive() -> None:
    assert ServerLimits().max_connections >= 1000  # 1,000 idle connections are fine by default
    with pytest.raises(ValueError, match="header_timeout"):
        ServerLimits(header_timeout=0)


def json_request(content_type: str | None, body: bytes) -> Request:
    headers = [(b"host", b"t")] + ([(b"content-type", content_type.encode())] if content_type else [])
    return models.build_request(b"POST", b"/", headers, body)


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (None, b"{}", 415),
        ("text/plain", b"{}", 415),
        ("application/json", b"", 400),
        ("application/json", b"{oops", 400),
        ("application/json", b"\xff", 400),
        ("application/json", b"[]", 422),
        ("application/json", b"1", 422),
        ("application/json", b"null", 422),
    ],
)
def test_json_object_refusals(content_type: str | None, body: bytes, status: int) -> None:
    with pytest.raises(RequestRejected) as caught:
        bodies.json_object(json_request(content_type, body))
    assert caught.value.status == status


def test_json_object_accepts_json_types_and_optionally_any_label() -> None:
    assert bodies.json_object(json_request("Application/JSON; charset=UTF-8", b'{"a":1}')) == {"a": 1}
    assert bodies.json_object(json_request("application/vnd.api+json", b'{"a":1}')) == {"a": 1}
    assert bodies.json_object(json_request("text/plain", b'{"a":1}'), require_content_type=False) == {"a": 1}
    assert bodies.json_body(json_request("application/json", b"[1]")) == [1]
    assert bodies.media_type(json_request("Multipart/Form-Data; boundary=x", b"")) == "multipart/form-data"
