"""relay/web's multipart/form-data parsing (python-multipart underneath): parts, limits, malformed bodies."""

from __future__ import annotations

import pytest

from relay.web import models
from relay.web.models import RequestRejected
from relay.web.multipart import Part, find_part, parse_multipart

BOUNDARY = "----relay-boundary"


def form(body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> models.Request:
    return models.build_request(b"POST", b"/upload", [(b"content-type", content_type.encode())], body)


def encode(*parts: tuple[str, str | None, str | None, bytes], end: bool = True) -> bytes:
    out = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


def test_parts_in_order_with_names_filenames_and_types() -> None:
    body = encode(
        ("sessionKey", None, None, b"abc"),
        ("img", "猫.png", "image/png", b"\x89PNG\r\n--not-a-boundary\r\n\x00"),
        ("empty", None, None, b""),
    )
    parts = parse_multipart(form(body))
    assert parts == (
        Part("sessionKey", None, None, b"abc"),
        Part("img", "猫.png", "image/png", b"\x89PNG\r\n--not-a-boundary\r\n\x00"),
        Part("empty", None, None, b""),
    )
    assert find_part(parts, "sessionKey") is parts[0]
    assert find_part(parts, "missing") is None
    assert parts[0].text() == "abc"
    assert "PNG" not in repr(parts[1])


def test_a_quoted_boundary() -> None:
    body = encode(("a", None, None, b"1"))
    assert parse_multipart(form(body, f'multipart/form-data; boundary="{BOUNDARY}"'))[0].data == b"1"


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 415), ("multipart/form-data", 400), ("multipart/mixed; boundary=x", 415)],
)
def test_wrong_content_types(content_type: str, status: int) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_multipart(form(encode(("a", None, None, b"1")), content_type))
    assert caught.value.status == status


def one_part(header: str) -> bytes:
    return f"--{BOUNDARY}\r\n{header}\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode("latin-1")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"junk", id="junk"),
        pytest.param(encode(("a", None, None, b"1"), end=False), id="no-closing-boundary"),
        pytest.param(one_part("Content-Disposition form-data"), id="bad-header"),
        pytest.param(one_part("Content-Type: text/plain"), id="no-disposition"),
        pytest.param(one_part('Content-Disposition: form-data; name="\xff"'), id="name-not-utf8"),
    ],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_multipart(form(body))
    assert caught.value.status == 400


def test_limits_on_parts_and_their_size() -> None:
    many = encode(*[(f"f{i}", None, None, b"x") for i in range(5)])
    with pytest.raises(RequestRejected) as caught:
        parse_multipart(form(many), max_parts=4)
    assert caught.value.status == 413
    assert len(parse_multipart(form(many), max_parts=5)) == 5
    big = encode(("img", "a.png", "image/png", bytes(101)))
    with pytest.raises(RequestRejected) as caught:
        parse_multipart(form(big), max_part_bytes=100)
    assert caught.value.status == 413


def test_text_of_a_part_that_is_not_utf8() -> None:
    with pytest.raises(RequestRejected) as caught:
        Part("a", None, None, b"\xff").text()
    assert caught.value.status == 400
