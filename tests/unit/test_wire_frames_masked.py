"""The masked (client) text-frame encoder of relay/wire/frames.py, checked against wsproto as the reference peer.

Every frame is parsed by a wsproto SERVER-side connection — the same library the fake framework (and many
real frameworks' servers) use — so "decodes" here means "a strict RFC 6455 server accepts it".
"""

from __future__ import annotations

import os
import struct

import pytest
import wsproto.events as ws_events
from wsproto.connection import Connection, ConnectionState, ConnectionType

from relay.errors import LocalProtocolError
from relay.wire.connection import fresh_masking_keys
from relay.wire.frames import MASK_BIT, MASKING_KEY_BYTES, encode_text_frames, frame_header, mask_payload


def encode_outgoing_text_frames(messages: list[str]) -> bytes:
    """What a client connection writes for a batch: fresh keys per frame (WebSocketConnection.send_messages)."""
    return encode_text_frames(messages, fresh_masking_keys(len(messages)))


def text_frame_header(length: int) -> bytes:
    return frame_header(0x81, length, masked=True)


KEY = bytes((0x37, 0xFA, 0x21, 0x3D))  # RFC 6455 §5.7's example key


def server_reads(wire: bytes) -> list[ws_events.Event]:
    """Feed ``wire`` to a wsproto server connection; its events, with text fragments merged into messages."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(wire)
    events: list[ws_events.Event] = []
    parts: list[str] = []
    for event in server.events():
        if isinstance(event, ws_events.TextMessage):
            parts.append(event.data)
            if event.message_finished:
                events.append(ws_events.TextMessage(data="".join(parts)))
                parts.clear()
        else:
            events.append(event)
    assert parts == [], "a message was left unfinished"
    return events


def server_texts(wire: bytes) -> list[str]:
    events = server_reads(wire)
    assert all(isinstance(e, ws_events.TextMessage) for e in events), events
    return [e.data for e in events if isinstance(e, ws_events.TextMessage)]


def split_frames(wire: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """(first byte, 7-bit length field, masking key, masked payload) of each frame, parsed by hand (§5.2)."""
    frames = []
    pos = 0
    while pos < len(wire):
        first, second = wire[pos], wire[pos + 1]
        assert second & MASK_BIT, "client frames must be masked (RFC 6455 §5.3)"
        length_field = second & 0x7F
        pos += 2
        if length_field == 126:
            (length,) = struct.unpack_from("!H", wire, pos)
            pos += 2
        elif length_field == 127:
            (length,) = struct.unpack_from("!Q", wire, pos)
            pos += 8
        else:
            length = length_field
        key = wire[pos : pos + 4]
        pos += 4
        frames.append((first, length_field, key, wire[pos : pos + length]))
        pos += length
    assert pos == len(wire)
    return frames


@pytest.mark.parametrize(
    ("length", "length_field"),
    [(0, 0), (1, 1), (125, 125), (126, 126), (127, 126), (65_535, 126), (65_536, 127), (70_000, 127)],
)
def test_every_length_encoding_decodes_to_the_exact_text(length: int, length_field: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    wire = encode_text_frames([text], KEY)
    assert server_texts(wire) == [text]
    [(first, field, key, masked)] = split_frames(wire)
    assert first == 0x81  # FIN=1, RSV=0, opcode 0x1 (text)
    assert field == length_field
    assert key == KEY
    assert len(masked) == length
    if length >= 4:
        assert masked != text.encode()  # really masked, not sent in clear


@pytest.mark.parametrize(
    "text",
    [
        "中文消息 🎉 émoji",
        "é" * 63,  # 63 characters but 126 UTF-8 bytes: the length is counted in bytes (16-bit field)
        "中" * 21_846,  # 65,538 UTF-8 bytes: 64-bit field although under 65,536 characters
        '{"syncId":"-1","data":{"type":"GroupMessage","messageChain":[{"type":"Plain","text":"你好\\n"}]}}',
    ],
)
def test_non_ascii_text_decodes_to_the_exact_text(text: str) -> None:
    wire = encode_text_frames([text], os.urandom(MASKING_KEY_BYTES))
    assert server_texts(wire) == [text]
    [(_, _, _, masked)] = split_frames(wire)
    assert len(masked) == len(text.encode("utf-8"))


def test_rfc_6455_section_5_7_masked_hello_example() -> None:
    # §5.7: "A single-frame masked text message containing 'Hello'"
    assert encode_text_frames(["Hello"], KEY) == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("length", [0, 10, 600, 65_536])
def test_frames_are_byte_identical_to_wsprotos_for_the_same_key(length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)
    client = Connection(ConnectionType.CLIENT)
    monkeypatch.setattr(os, "urandom", lambda n: KEY[:n])  # wsproto draws its key with os.urandom(4)
    reference = client.send(ws_events.TextMessage(data=text))
    monkeypatch.undo()
    assert encode_text_frames([text], KEY) == reference


def test_mask_payload_matches_the_per_octet_definition_and_is_its_own_inverse() -> None:
    key = os.urandom(MASKING_KEY_BYTES)
    for length in range(13):  # every remainder of length mod 4, a few times
        payload = os.urandom(length)
        masked = mask_payload(payload, key)
        assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(payload))  # RFC 6455 §5.3
        assert mask_payload(masked, key) == payload


def test_headers_use_the_shortest_length_encoding() -> None:
    assert text_frame_header(125) == bytes((0x81, 0x80 | 125))
    assert text_frame_header(126) == bytes((0x81, 0x80 | 126)) + (126).to_bytes(2, "big")
    assert text_frame_header(65_535) == bytes((0x81, 0x80 | 126)) + (65_535).to_bytes(2, "big")
    assert text_frame_header(65_536) == bytes((0x81, 0x80 | 127)) + (65_536).to_bytes(8, "big")


def test_a_batch_decodes_to_the_same_messages_in_order() -> None:
    messages = [f'{{"syncId":"-1","n":{i},"text":"{"中" * i}"}}' for i in range(40)] + ["", "x" * 70_000, "last"]
    wire = encode_outgoing_text_frames(messages)
    assert server_texts(wire) == messages


def test_each_frame_of_a_batch_gets_its_own_key() -> None:
    keys = bytes(range(12))
    frames = split_frames(encode_text_frames(["a", "b", "c"], keys))
    assert [key for _, _, key, _ in frames] == [keys[0:4], keys[4:8], keys[8:12]]


def test_fresh_keys_differ_between_the_frames_of_a_batch_and_between_batches() -> None:
    # os.urandom: a repeat among these 8 keys has a chance of about 28 in 4 billion
    first = [key for _, _, key, _ in split_frames(encode_outgoing_text_frames(["same text"] * 4))]
    second = [key for _, _, key, _ in split_frames(encode_outgoing_text_frames(["same text"] * 4))]
    assert all(len(key) == MASKING_KEY_BYTES for key in first + second)
    assert len(set(first + second)) == 8


def test_an_empty_batch_is_no_bytes() -> None:
    assert encode_text_frames([], b"") == b""
    assert encode_outgoing_text_frames([]) == b""


def test_wsprotos_client_state_stays_consistent_around_our_frames() -> None:
    # the shell mixes our data frames with wsproto's control frames on one connection
    client = Connection(ConnectionType.CLIENT)
    wire = encode_outgoing_text_frames(["one", "two"])
    wire += client.send(ws_events.Ping(payload=b"p"))
    wire += encode_outgoing_text_frames(["three"])
    wire += client.send(ws_events.CloseConnection(code=1001, reason="going away"))
    assert client.state is ConnectionState.LOCAL_CLOSING
    events = server_reads(wire)
    assert [type(e).__name__ for e in events] == [
        "TextMessage",
        "TextMessage",
        "Ping",
        "TextMessage",
        "CloseConnection",
    ]
    assert [e.data for e in events if isinstance(e, ws_events.TextMessage)] == ["one", "two", "three"]
    close = events[-1]
    assert isinstance(close, ws_events.CloseConnection)
    assert (close.code, close.reason) == (1001, "going away")


@pytest.mark.parametrize("key_bytes", [0, 3, 5, 8])
def test_masking_keys_not_matching_the_texts_are_refused(key_bytes: int) -> None:
    with pytest.raises(LocalProtocolError, match="need 4 bytes of masking keys"):
        encode_text_frames(["one"], bytes(key_bytes))


def test_text_that_is_not_valid_utf8_is_refused_with_its_position() -> None:
    with pytest.raises(LocalProtocolError, match=r"text frame 1 is not valid UTF-8 .* character 2"):
        encode_text_frames(["fine", "ab\ud800cd"], bytes(8))
