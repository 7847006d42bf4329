"""The robots' pure parts: payload shapes, signatures (made here with the reference library and with hmac as the
DingTalk and Feishu docs show), rendering and packing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import urllib.parse

import pytest
from standardwebhooks import Webhook

from adapters.robots import render
from adapters.robots.auth import verify_request
from adapters.robots.payloads import read_post
from relay.config import RobotConfig, RobotSignature
from relay.signatures import SignatureRejected
from relay.web.models import Headers, Request, RequestRejected

NOW = 1_800_000_000.0
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DING_SECRET = "SEC0123456789abcdef"


def request(
    body: bytes | str,
    content_type: str | None = "application/json",
    *,
    query: str = "",
    headers: Headers = (),
) -> Request:
    data = body.encode() if isinstance(body, str) else body
    all_headers = (("content-type", content_type),) if content_type else ()
    return Request(
        method="POST",
        target="/robots/ci" + (f"?{query}" if query else ""),
        path="/robots/ci",
        query=tuple(urllib.parse.parse_qsl(query, keep_blank_values=True)),
        headers=all_headers + headers,
        body=data,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "text", "username"),
    [
        ('{"content": "build passed", "username": "Jenkins"}', "application/json", "build passed", "Jenkins"),
        (
            json.dumps(
                {
                    "embeds": [
                        {
                            "title": "Deploy",
                            "url": "https://ci.example/1",
                            "description": "ok",
                            "fields": [{"name": "env", "value": "prod"}],
                            "footer": {"text": "v2"},
                        }
                    ]
                }
            ),
            "application/json",
            "**Deploy** (https://ci.example/1)\nok\nenv: prod\nv2",
            "",
        ),
        ('{"text": "disk 91% on db1"}', "application/json", "disk 91% on db1", ""),
        ('{"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*alert*"}}]}', None, "*alert*", ""),
        (
            '{"msgtype": "text", "text": {"content": "告警: CPU 95%"}}',
            "application/json; charset=utf-8",
            "告警: CPU 95%",
            "",
        ),
        (
            '{"msgtype": "markdown", "markdown": {"title": "Release", "text": "- v1.2 shipped"}}',
            "application/json",
            "**Release**\n- v1.2 shipped",
            "",
        ),
        ('{"msg_type": "text", "content": {"text": "飞书 hello"}}', "application/json", "飞书 hello", ""),
        ("plain words\n", "text/plain; charset=utf-8", "plain words", ""),
        ("not json at all", None, "not json at all", ""),
    ],
)
def test_every_accepted_shape(body: str, content_type: str | None, text: str, username: str) -> None:
    post = read_post(request(body, content_type))
    assert (post.text, post.username) == (text, username)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("\x89PNG", "image/png", 415),
        ("{}", "application/json", 422),
        ('{"msgtype": "image", "image": {}}', "application/json", 422),
        ("[1, 2]", "application/json", 422),
        ("{nope", "application/json", 400),
        ("   ", "text/plain", 422),
        (b"\xff\xfe", "text/plain", 400),
    ],
)
def test_shapes_it_cannot_read(body: str | bytes, content_type: str, status: int) -> None:
    with pytest.raises(RequestRejected) as caught:
        read_post(request(body, content_type))
    assert caught.value.status == status


def robot(signature: RobotSignature = RobotSignature.ANY, secret: str = SECRET) -> RobotConfig:
    return RobotConfig(name="ci", group=5001, secret=secret, signature=signature)


def standard_signed(body: bytes, *, msg_id: str = "msg_abc", at: float = NOW, secret: str = SECRET) -> Headers:
    signature = Webhook(secret).sign(msg_id, dt.datetime.fromtimestamp(at, tz=dt.UTC), body)
    return (("webhook-id", msg_id), ("webhook-timestamp", str(int(at))), ("webhook-signature", signature))


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """As DingTalk's documentation computes it (HMAC keyed with the secret over "timestamp\\nsecret")."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def feishu_sign(timestamp_s: int, secret: str) -> str:
    """As Feishu's documentation computes it (HMAC keyed with "timestamp\\nsecret" over nothing)."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_standard_webhooks_signature_made_by_the_reference_library_is_accepted() -> None:
    body = b'{"text": "hi"}'
    assert verify_request(robot(), request(body, headers=standard_signed(body)), {}, now=NOW + 10) == "msg_abc"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (standard_signed(b"another body"), 403),  # signed a different body
        (standard_signed(b'{"text": "hi"}', secret="whsec_" + base64.b64encode(b"other key").decode()), 403),
        (standard_signed(b'{"text": "hi"}', at=NOW - 301), 403),  # stale: outside the 5-minute window
        (standard_signed(b'{"text": "hi"}', at=NOW + 301), 403),  # from the future
        ((), 401),  # nothing at all
        ((("webhook-signature", "v1,AAAA"),), 401),  # an incomplete set of headers
    ],
)
def test_bad_standard_signatures(headers: Headers, status: int) -> None:
    with pytest.raises(SignatureRejected) as caught:
        verify_request(robot(), request(b'{"text": "hi"}', headers=headers), {}, now=NOW)
    assert caught.value.status == status


def test_dingtalk_query_signature_and_feishu_body_signature() -> None:
    dingtalk = robot(RobotSignature.TIMESTAMP, DING_SECRET)
    stamp_ms = int(NOW * 1000) - 2_000
    query = f"timestamp={stamp_ms}&sign={dingtalk_sign(stamp_ms, DING_SECRET)}"
    assert verify_request(dingtalk, request('{"msgtype":"text"}', query=query), {}, now=NOW) is None
    stamp = int(NOW) - 5
    fields = {"timestamp": str(stamp), "sign": feishu_sign(stamp, DING_SECRET), "msg_type": "text"}
    assert verify_request(dingtalk, request(json.dumps(fields)), fields, now=NOW) is None
    headers = (("timestamp", str(stamp)), ("sign", feishu_sign(stamp, DING_SECRET)))
    assert verify_request(robot(secret=DING_SECRET), request("x", headers=headers), {}, now=NOW) is None


def test_timestamp_signatures_refused() -> None:
    dingtalk = robot(RobotSignature.TIMESTAMP, DING_SECRET)
    stale = int(NOW * 1000) - 301_000
    for query, status in [
        (f"timestamp={stale}&sign={dingtalk_sign(stale, DING_SECRET)}", 403),
        (f"timestamp={int(NOW * 1000)}&sign={dingtalk_sign(int(NOW * 1000), 'SECwrong')}", 403),
        (f"timestamp={int(NOW * 1000)}", 401),
        ("", 401),
    ]:
        with pytest.raises(SignatureRejected) as caught:
            verify_request(dingtalk, request("{}", query=query), {}, now=NOW)
        assert caught.value.status == status, query
    # a Standard-only robot does not take timestamp + sign
    with pytest.raises(SignatureRejected):
        verify_request(robot(RobotSignature.STANDARD), request("{}", query="timestamp=1&sign=x"), {}, now=NOW)


def test_a_robot_without_signature_takes_anything() -> None:
    assert verify_request(robot(RobotSignature.NONE, ""), request("{}"), {}, now=NOW) is None


def test_render_escapes_the_name_and_keeps_the_text() -> None:
    assert render.render("CI *bot*", "**bold** stays") == "**CI \\*bot\\***: **bold** stays"
    assert render.render("CI", "x", "Jenkins") == "**CI · Jenkins**: x"
    assert render.render("CI", "x", "CI") == "**CI**: x"


def test_split_and_pack_keep_order_and_the_limit() -> None:
    long_text = "\n".join(f"line {i:04d}" for i in range(500))  # 4,999 characters
    pieces = render.split(long_text)
    assert all(len(piece) <= render.MAX_MESSAGE for piece in pieces)
    assert "\n".join(pieces) == long_text  # cut at line breaks: nothing lost
    assert render.split("x" * 4001) == ["x" * 2000, "x" * 2000, "x"]
    posts = [f"post {i}" for i in range(600)]
    messages = []
    while posts:
        message, taken = render.pack(posts)
        assert len(message) <= render.MAX_MESSAGE
        messages.append(message)
        posts = posts[taken:]
    assert "\n".join(messages).split("\n") == [f"post {i}" for i in range(600)]
    assert len(messages) == 3
