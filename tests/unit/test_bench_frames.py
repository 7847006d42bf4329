"""The benchmark peer's reader of client websocket frames (scripts/bench.py), against wsproto's client encoder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import wsproto
import wsproto.events as wse
from wsproto.frame_protocol import FrameProtocol, Opcode


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"
    spec = importlib.util.spec_from_file_location("bench_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_under_test", module)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def client_frames(*messages: str | bytes) -> bytes:
    """What a websocket client (masked frames, RFC 6455 §5.3) writes for ``messages``."""
    protocol = FrameProtocol(client=True, extensions=[])
    return b"".join(protocol.send_data(m, fin=True) for m in messages)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 300_000])
def test_every_length_encoding_round_trips(size: int) -> None:
    text = ("é" * size)[:size] if size else ""
    reader = bench.ClientFrameReader()
    assert reader.feed(client_frames(text)) == [(1, text.encode())]


def test_messages_split_anywhere_across_reads_come_out_whole_and_in_order() -> None:
    data = client_frames("first", b"\x00\x01binary", "x" * 1000)
    for cut in range(1, len(data)):
        reader = bench.ClientFrameReader()
        out = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert out == [(1, b"first"), (2, b"\x00\x01binary"), (1, b"x" * 1000)]


def test_fragments_are_joined_and_control_frames_pass_between_them() -> None:
    protocol = FrameProtocol(client=True, extensions=[])
    data = (
        protocol.send_data("hel", fin=False)
        + protocol.ping(b"p")
        + protocol.send_data("lo", fin=True)
        + protocol.close(1000, "bye")
    )
    reader = bench.ClientFrameReader()
    out = reader.feed(data)
    assert out[0] == (9, b"p")
    assert out[1] == (1, b"hello")
    assert out[2][0] == 8 and out[2][1][:2] == (1000).to_bytes(2, "big")


def test_an_unmasked_frame_is_refused() -> None:
    server = FrameProtocol(client=False, extensions=[])
    with pytest.raises(ValueError, match="masked"):
        bench.ClientFrameReader().feed(server.send_data("x", fin=True))


def test_a_reserved_opcode_is_refused() -> None:
    frame = bytearray(client_frames("x"))
    frame[0] = 0x80 | 0x3
    with pytest.raises(ValueError, match="opcode 3"):
        bench.ClientFrameReader().feed(bytes(frame))


def test_server_frames_parse_as_wsproto_messages() -> None:
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(wse.Request(host="127.0.0.1", target="/")))
    next(server.events())
    client.receive_data(server.send(wse.AcceptConnection()))
    list(client.events())
    client.receive_data(bench.server_frame(1, b"ok") + bench.server_frame(Opcode.PONG, b"p"))
    events = list(client.events())
    assert isinstance(events[0], wse.TextMessage) and events[0].data == "ok"
    assert isinstance(events[1], wse.Pong) and events[1].payload == b"p"


def test_the_reader_of_server_frames_takes_unmasked_frames_only() -> None:
    """The sinks that dial the bridge's ws adapter read what a server sends: never masked (RFC 6455 §5.1)."""
    reader = bench.ClientFrameReader(masked=False)
    text = b'{"syncId":"","data":{"code":0,"session":"abcd1234"}}'
    assert reader.feed(bench.server_frame(1, text)[:5]) == []
    assert reader.feed(bench.server_frame(1, text)[5:] + bench.server_frame(9, b"p")) == [(1, text), (9, b"p")]
    with pytest.raises(ValueError, match="masked"):
        bench.ClientFrameReader(masked=False).feed(b"\x81\x81abcdX")
