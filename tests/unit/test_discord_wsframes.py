"""adapters.discord.wsclient.ServerFrameParser and close_payload: pure, bytes in, messages out."""

from __future__ import annotations

import collections
import struct

import pytest

from adapters.discord.wsclient import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameViolation,
    ServerFrameParser,
    close_payload,
)
from relay.errors import FrameTooLarge

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


def feed_all(parser: ServerFrameParser, chunks: list[bytes]) -> tuple[list[str | bytes], list[tuple[int, bytes]]]:
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
    messages, controls = feed_all(ServerFrameParser(max_message_size=1 << 20), [wire()])
    assert messages == [*WIRE_MESSAGES, "fragmented"]
    assert controls == [(OP_PONG, b"p"), (OP_PING, b"hi")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 125, 126, 1000, 65_536])
def test_any_split_gives_the_same_messages(chunk: int) -> None:
    data = wire()
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    messages, controls = feed_all(ServerFrameParser(max_message_size=1 << 20), chunks)
    assert messages == [*WIRE_MESSAGES, "fragmented"]
    assert controls == [(OP_PONG, b"p"), (OP_PING, b"hi")]


def test_parsing_stops_at_a_close_frame() -> None:
    data = frame(BINARY, b"before") + frame(OP_CLOSE, struct.pack("!H", 4000)) + frame(BINARY, b"after")
    parser = ServerFrameParser(max_message_size=100)
    messages, controls = feed_all(parser, [data, frame(BINARY, b"later")])
    assert messages == [b"before"]
    assert controls == [(OP_CLOSE, struct.pack("!H", 4000))]


def test_a_too_large_frame_is_refused_from_its_header_and_skipped() -> None:
    parser = ServerFrameParser(max_message_size=1000)
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
    parser = ServerFrameParser(max_message_size=1000)
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
        ServerFrameParser(max_message_size=1000).feed(data, collections.deque())
    assert info.value.code == code


def test_a_huge_control_frame_is_refused_from_its_header() -> None:
    header = bytes([0x80 | OP_PING, 127]) + struct.pack("!Q", 1 << 40)
    with pytest.raises(FrameViolation) as info:
        ServerFrameParser(max_message_size=1000).feed(header, collections.deque())
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
