"""relay.wire.frames: FrameParser in both roles, close payloads, unmasked (server) frames; pure, bytes in,
messages out. The masked (client) encoder has its own file, test_wire_frames_masked.py."""

from __future__ import annotations

import collections
import struct

import pytest
import wsproto
import wsproto.events as ws_events

from relay.errors import FrameTooLarge, LocalProtocolError
from relay.wire.frames import (
    CLOSE_NO_STATUS,
    MASKING_KEY_BYTES,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameParser,
    FrameViolation,
    close_payload,
    encode_close_payload,
    encode_frame,
    encode_text_frames,
)

TEXT, BINARY, CONTINUATION = 0x1, 0x2, 0x0


def frame(opcode: int, payload: bytes, *, fin: bool = True, first_byte: int | None = None) -> bytes:
    head = bytes([first_byte if first_byte is not None else (0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def feed_all(parser: FrameParser, chunks: list[bytes]) -> tuple[list[str | bytes], list[tuple[int, bytes]]]:
    messages: collections.deque[str | bytes] = collections.deque()
    controls: list[tuple[int, bytes]] = []
    for chunk in chunks:
        controls += parser.feed(chunk, messages)
    return list(messages), controls


WIRE_MESSAGES: list[str | bytes] = [b"\x78\x9c" * 3, "plain", "ünïcødé ✓", b"x" * 300, b"y" * 70_000, b""]


def wire() -> bytes:
    out = b""
    for message in WIRE_MESSAGES:
        out += frame(TEXT, message.encode()) if isinstance(message, str) else frame(BINARY, message)
    # a fragmented text message with a control frame between its fragments, then a ping
    out += frame(TEXT, b"frag", fin=False) + frame(OP_PONG, b"p") + frame(CONTINUATION, b"mented")
    return out + frame(OP_PING, b"hi")


def test_one_read_with_every_kind_of_frame() -> None:
    messages, controls = feed_all(FrameParser(max_message_size=1 << 20), [wire()])
    assert messages == [*WIRE_MESSAGES, "fragmented"]
    assert controls == [(OP_PONG, b"p"), (OP_PING, b"hi")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 125, 126, 1000, 65_536])
def test_any_split_gives_the_same_messages(chunk: int) -> None:
    data = wire()
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    messages, controls = feed_all(FrameParser(max_message_size=1 << 20), chunks)
    assert messages == [*WIRE_MESSAGES, "fragmented"]
    assert controls == [(OP_PONG, b"p"), (OP_PING, b"hi")]


def test_parsing_stops_at_a_close_frame() -> None:
    data = frame(BINARY, b"before") + frame(OP_CLOSE, struct.pack("!H", 4000)) + frame(BINARY, b"after")
    parser = FrameParser(max_message_size=100)
    messages, controls = feed_all(parser, [data, frame(BINARY, b"later")])
    assert messages == [b"before"]
    assert controls == [(OP_CLOSE, struct.pack("!H", 4000))]


def test_a_too_large_frame_is_refused_from_its_header_and_skipped() -> None:
    parser = FrameParser(max_message_size=1000)
    big = frame(BINARY, b"z" * 5000)
    messages: collections.deque[str | bytes] = collections.deque()
    with pytest.raises(FrameTooLarge) as info:
        parser.feed(big[:20], messages)  # the header alone is enough to refuse it
    assert (info.value.size, info.value.limit) == (5000, 1000)
    # the rest of the refused frame is discarded; what follows it parses normally
    rest = big[20:] + frame(BINARY, b"next")
    assert parser.feed(rest[:3000], messages) == []
    parser.feed(rest[3000:], messages)
    assert list(messages) == [b"next"]


def test_fragments_count_towards_the_limit() -> None:
    parser = FrameParser(max_message_size=1000)
    messages: collections.deque[str | bytes] = collections.deque()
    parser.feed(frame(BINARY, b"a" * 600, fin=False), messages)
    with pytest.raises(FrameTooLarge) as info:
        parser.feed(frame(CONTINUATION, b"b" * 600), messages)
    assert info.value.size == 1200
    parser.feed(frame(TEXT, b"fresh"), messages)  # the refused message is forgotten
    assert list(messages) == ["fresh"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes([0x82, 0x80 | 4]) + b"mask" + b"data", 1002),  # masked server frame
        (frame(BINARY, b"x", first_byte=0xC2), 1002),  # RSV1 without permessage-deflate
        (frame(CONTINUATION, b"x"), 1002),  # nothing to continue
        (frame(TEXT, b"a", fin=False) + frame(BINARY, b"b"), 1002),  # new message inside a fragmented one
        (frame(OP_PING, b"p", fin=False), 1002),  # fragmented control frame
        (frame(OP_PING, b"p" * 126), 1002),  # control frame > 125 bytes
        (frame(0x3, b"x"), 1002),  # reserved data opcode
        (frame(0xB, b"x"), 1002),  # reserved control opcode
        (frame(TEXT, b"\xff\xfe"), 1007),  # invalid UTF-8
    ],
)
def test_protocol_violations_name_the_close_code(data: bytes, code: int) -> None:
    with pytest.raises(FrameViolation) as info:
        FrameParser(max_message_size=1000).feed(data, collections.deque())
    assert info.value.code == code


def test_a_huge_control_frame_is_refused_from_its_header() -> None:
    header = bytes([0x80 | OP_PING, 127]) + struct.pack("!Q", 1 << 40)
    with pytest.raises(FrameViolation) as info:
        FrameParser(max_message_size=1000).feed(header, collections.deque())
    assert info.value.code == 1002


def test_close_payloads() -> None:
    assert close_payload(b"") == (None, "")
    assert close_payload(struct.pack("!H", 4004) + b"Authentication failed.") == (4004, "Authentication failed.")
    for bad in (b"\x0f", struct.pack("!H", 1006), struct.pack("!H", 999), struct.pack("!H", 1005)):
        with pytest.raises(FrameViolation):
            close_payload(bad)
    with pytest.raises(FrameViolation) as info:
        close_payload(struct.pack("!H", 4000) + b"\xff")
    assert info.value.code == 1007


# ----------------------------------------------------------------------------- the server role (masked frames)


def test_server_role_unmasks_client_frames_in_any_split() -> None:
    texts = ["a", "ünïcødé ✓", "z" * 200, "w" * 70_000]
    keys = bytes(range(MASKING_KEY_BYTES * len(texts)))
    data = encode_text_frames(texts, keys) + encode_frame(BINARY, b"\x00\xff" * 10, b"\x01\x02\x03\x04")
    data += encode_frame(OP_PING, b"hi", b"\x09\x08\x07\x06")
    for chunk in (1, 5, 126, 65_536):
        parser = FrameParser(max_message_size=1 << 20, masked=True)
        messages, controls = feed_all(parser, [data[i : i + chunk] for i in range(0, len(data), chunk)])
        assert messages == [*texts, b"\x00\xff" * 10]
        assert controls == [(OP_PING, b"hi")]


def test_server_role_refuses_an_unmasked_frame_and_client_role_a_masked_one() -> None:
    with pytest.raises(FrameViolation, match="unmasked frame from a client"):
        feed_all(FrameParser(max_message_size=100, masked=True), [frame(TEXT, b"plain")])
    with pytest.raises(FrameViolation, match="masked frame from the server"):
        feed_all(FrameParser(max_message_size=100), [encode_text_frames(["x"], b"abcd")])


def test_unmasked_text_frames_are_what_a_strict_client_parser_reads() -> None:
    texts = ["", "short", "m" * 126, "l" * 65_536, "✓" * 10]
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(ws_events.Request(host="x", target="/")))
    request = next(iter(server.events()))
    assert isinstance(request, ws_events.Request)
    client.receive_data(server.send(ws_events.AcceptConnection()))
    list(client.events())
    client.receive_data(encode_text_frames(texts, None))
    received: list[str] = []
    parts = ""
    for event in client.events():
        assert isinstance(event, ws_events.TextMessage)
        parts += event.data
        if event.message_finished:
            received.append(parts)
            parts = ""
    assert received == texts


def test_close_payloads_round_trip_and_long_reasons_are_cut_at_a_character() -> None:
    assert close_payload(encode_close_payload(4000, "bye")) == (4000, "bye")
    assert encode_close_payload(CLOSE_NO_STATUS) == b""
    cut = encode_close_payload(1000, "é" * 100)
    assert len(cut) <= 125 and close_payload(cut)[1] == "é" * 61
    for forbidden in (1005, 1006, 1015, 999, 5000):
        if forbidden == CLOSE_NO_STATUS:
            continue
        with pytest.raises(LocalProtocolError):
            encode_close_payload(forbidden)
