"""PayloadDecoder's JSON fast path gives exactly json.loads' results and refusals."""

from __future__ import annotations

import json

import pytest

from adapters.discord.gateway import PayloadDecoder
from relay.errors import RemoteProtocolError

DOCUMENT = {"op": 0, "s": 7, "t": "MESSAGE_CREATE", "d": {"content": "héllo ✓", "n": [1, 2.5, None, True]}}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(DOCUMENT).encode(),
        json.dumps(DOCUMENT, ensure_ascii=False).encode(),
        json.dumps(DOCUMENT),  # text frame on an uncompressed connection
        b"  " + json.dumps(DOCUMENT).encode() + b"\n",  # whitespace around the document
        json.dumps(DOCUMENT).encode("utf-16"),  # json.loads detects other encodings; so must we
    ],
)
def test_valid_payloads_decode_like_json_loads(raw: bytes | str) -> None:
    assert PayloadDecoder(compressed=False, max_size=1 << 20).feed(raw) == json.loads(raw) == DOCUMENT


@pytest.mark.parametrize(
    "raw",
    [b'{"op": 1} {"op": 2}', b'{"op": 1', b"", b"\xff\xfe\xfa", b'{"op": 1}x', b"[1, 2]", b'{"op": "1"}'],
)
def test_invalid_payloads_are_refused(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        PayloadDecoder(compressed=False, max_size=1 << 20).feed(raw)
