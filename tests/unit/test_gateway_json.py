"""PayloadDecoder's JSON fast path (orjson) gives exactly json.loads' results and refusals."""

from __future__ import annotations

import json

import pytest

from adapters.discord.gateway.payloads import PayloadDecoder
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


@pytest.mark.parametrize(
    "raw",
    [
        b'{"op": 0, "d": {"content": "\\ud83d alone"}}',  # a lone surrogate escape: orjson refuses it
        b'{"op": 0, "d": {"x": NaN, "y": -Infinity}}',  # not JSON, but json.loads takes it
        b"\xef\xbb\xbf" + b'{"op": 0}',  # a UTF-8 byte order mark
        b'{"op": 0, "op": 11}',  # duplicate keys: the last one wins in both
    ],
)
def test_what_orjson_refuses_still_decodes_like_json_loads(raw: bytes) -> None:
    decoded = PayloadDecoder(compressed=False, max_size=1 << 20).feed(raw)
    expected = json.loads(raw)
    assert json.dumps(decoded) == json.dumps(expected)  # NaN != NaN: compare the serialized forms


def test_integers_beyond_64_bits_become_floats() -> None:
    # The one documented difference from json.loads: orjson reads such integers as floats. Discord sends every
    # id and bit set as a string (docs/discord.md §10), so no real payload has one.
    decoded = PayloadDecoder(compressed=False, max_size=1 << 20).feed(b'{"op": 0, "d": {"n": 18446744073709551616}}')
    assert decoded == {"op": 0, "d": {"n": float(2**64)}}
    exact = PayloadDecoder(compressed=False, max_size=1 << 20).feed(b'{"op": 0, "d": {"n": 18446744073709551615}}')
    assert exact == {"op": 0, "d": {"n": 2**64 - 1}}
