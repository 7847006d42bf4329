"""A socket read's zlib-stream messages inflated in one call (PayloadDecoder.prepare) give exactly what feeding each
message alone gives: the same payloads, ``None`` for the same incomplete ones, the same errors at the same
messages, and the stream left in the same state for what follows."""

from __future__ import annotations

import contextlib
import json
import random
import zlib
from collections.abc import Sequence
from typing import Any

from adapters.discord.gateway.payloads import PREPARE_MIN_MESSAGES, PayloadDecoder
from relay.errors import RelayError

SYNC_FLUSH_MARKER = b"\x00\x00\xff\xff"
Outcome = tuple[str, Any]


class Stream:
    """A gateway's side of a zlib-stream: each document compressed and flushed into one websocket message."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj()

    def message(self, text: bytes) -> bytes:
        return self._compressor.compress(text) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def split_message(self, text: bytes) -> list[bytes]:
        """One document's compressed bytes in two messages, only the second ending with the marker."""
        whole = self.message(text)
        return [whole[:3], whole[3:]]


def dispatch(n: int, content: str = "hello") -> bytes:
    return json.dumps(
        {"op": 0, "s": n, "t": "MESSAGE_CREATE", "d": {"id": str(n), "content": content, "author": {"id": "7"}}},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def outcome(decoder: PayloadDecoder, message: bytes) -> Outcome:
    """What the decoder makes of one message: its payload (or None), or the error's type and text."""
    try:
        return ("payload", decoder.feed(message))
    except RelayError as exc:
        return (type(exc).__name__, str(exc))


def outcomes(reads: Sequence[Sequence[bytes]], *, prepared: bool, max_size: int = 1 << 20) -> list[Outcome]:
    """What the decoder makes of every message, read by read, with or without preparing each read."""
    decoder = PayloadDecoder(compressed=True, max_size=max_size)
    seen: list[Outcome] = []
    for read in reads:
        if prepared:
            decoder.prepare(read)
        seen += [outcome(decoder, message) for message in read]
    return seen


def assert_same(reads: Sequence[Sequence[bytes]], *, max_size: int = 1 << 20) -> list[Outcome]:
    one_by_one = outcomes(reads, prepared=False, max_size=max_size)
    assert outcomes(reads, prepared=True, max_size=max_size) == one_by_one
    return one_by_one


def fast_path_taken(reads: Sequence[Sequence[bytes]], *, max_size: int = 1 << 20) -> bool:
    """Whether the last read's first chunk is inflated in one call (else a comparison with feeding one by one proves
    little)."""
    decoder = PayloadDecoder(compressed=True, max_size=max_size)
    for read in reads[:-1]:
        for message in read:
            with contextlib.suppress(RelayError):  # garbage on purpose: assert_same compares what it gives
                decoder.feed(message)
    decoder.prepare(reads[-1])
    with contextlib.suppress(RelayError):
        decoder.feed(reads[-1][0])
    prepared = decoder._prepared
    return prepared is not None and prepared.payloads is not None


def fill(stream: Stream, first_n: int) -> list[bytes]:
    """Plain dispatches enough to make a read that is inflated in one call."""
    return [stream.message(dispatch(first_n + i)) for i in range(PREPARE_MIN_MESSAGES)]


def test_a_busy_read_is_inflated_in_one_call_and_handed_out_message_by_message() -> None:
    stream = Stream()
    first = [stream.message(dispatch(0))]  # holds the stream's header: always fed alone
    read = [stream.message(dispatch(n, 'κείμενο \\ " {} ][ 😀')) for n in range(1, 200)]
    decoder = PayloadDecoder(compressed=True, max_size=1 << 20)
    decoder.feed(first[0])
    decoder.prepare(read)
    payloads = [decoder.feed(read[0])]
    assert decoder._prepared is not None and decoder._prepared.payloads is not None  # a chunk: one zlib call
    payloads += [decoder.feed(message) for message in read[1:]]
    assert decoder._prepared is None  # handed out in full
    assert [p["s"] for p in payloads if p is not None] == list(range(1, 200))
    assert assert_same([first, read])[1:] == [("payload", p) for p in payloads]


def test_the_boundary_inside_a_string_or_a_payload_not_opening_with_a_key_changes_nothing() -> None:
    stream = Stream()
    texts = [
        dispatch(1),
        dispatch(2, "ends with }{"),  # the raw text has }{" inside the document
        dispatch(3),
        b' {"op":11}',  # a payload opening with a space: no boundary found before it
        b'{"op":11}',
        dispatch(4, 'a}{"b'),  # escaped: }{\" is no boundary
        dispatch(5),
        dispatch(6),
    ]
    first = [stream.message(dispatch(0))]
    read = [stream.message(text) for text in texts]
    # as many pieces as messages (the cut inside a string, the missed one), but two do not parse: one by one
    assert not fast_path_taken([first, read])
    results = assert_same([first, read])
    assert [r[1]["s"] for r in results if r[0] == "payload" and r[1].get("op") == 0] == [0, 1, 2, 3, 4, 5, 6]
    more = [stream.message(dispatch(7, "}{")), *fill(stream, 8)]  # one piece too many
    assert not fast_path_taken([first, read, more])
    assert assert_same([first, read, more])[-len(more) :] == [("payload", json.loads(dispatch(7, "}{")))] + [
        ("payload", json.loads(dispatch(n))) for n in range(8, 8 + PREPARE_MIN_MESSAGES)
    ]


def test_a_wrong_cut_and_a_missed_one_that_cancel_out_are_still_caught() -> None:
    """Same number of pieces as messages, wrong pieces: the first wrong piece never parses."""
    stream = Stream()
    first = [stream.message(dispatch(0))]
    read = [*fill(stream, 1), *(stream.message(t) for t in (dispatch(20, "x}{"), b' {"op":11}', dispatch(21)))]
    assert not fast_path_taken([first, read])
    assert [kind for kind, _ in assert_same([first, read])] == ["payload"] * (len(read) + 1)
    escaped = [stream.message(dispatch(30 + n, 'a}{"b')) for n in range(PREPARE_MIN_MESSAGES)]  # }{\" is no cut
    assert fast_path_taken([first, read, escaped])
    assert_same([first, read, escaped])


def test_garbage_mid_read_fails_at_that_message_and_the_rest_still_decodes() -> None:
    garbage = {
        b'{"op":0,"d":}': "RemoteProtocolError",  # not JSON
        b'{"op":"0"}': "RemoteProtocolError",  # an op that is not an integer
        b'{"op":11,"d":[}': "RemoteProtocolError",
        b'{"op":true}': "payload",  # a bool is an int to the payload check: accepted both ways, not garbage
        b'{"op":0,"d":NaN}': "payload",  # orjson refuses NaN, json.loads takes it
        b'{"op":0,"d":"\xff\xfe"}': "RemoteProtocolError",  # not UTF-8
    }
    for text, kind in garbage.items():
        stream = Stream()
        first = [stream.message(dispatch(0))]
        before = [stream.message(dispatch(n)) for n in range(1, 5)]
        read = [*before, stream.message(text), *(stream.message(dispatch(n)) for n in range(10, 14))]
        assert fast_path_taken([first, read]) == (kind == "payload" and b"NaN" not in text)  # else one by one
        kinds = [kind for kind, _ in assert_same([first, read])]
        assert kinds == ["payload"] * 5 + [kind] + ["payload"] * 4
    # garbage that is no object at all: the read has fewer pieces than messages
    stream = Stream()
    first = [stream.message(dispatch(0))]
    others = [stream.message(t) for t in (b'{"op":0,"d":', b"[1,2]", b"\xff\xfe not utf-8")] + fill(stream, 4)
    assert not fast_path_taken([first, others])
    kinds = [kind for kind, _ in assert_same([first, others])]
    assert kinds == ["payload"] + ["RemoteProtocolError"] * 3 + ["payload"] * PREPARE_MIN_MESSAGES


def test_a_read_with_a_split_payload_an_oversized_one_or_corrupt_data_is_fed_one_by_one() -> None:
    stream = Stream()
    first = [stream.message(dispatch(0))]
    split = [*fill(stream, 1), *stream.split_message(dispatch(20)), stream.message(dispatch(21))]
    assert not fast_path_taken([first, split])
    results = assert_same([first, split])
    assert [kind for kind, _ in results] == ["payload"] * (len(split) + 1)
    assert results[-3] == ("payload", None)  # the first half of the split payload

    stream = Stream()
    first = [stream.message(dispatch(0))]
    oversized = [*fill(stream, 1), stream.message(dispatch(20, "x" * 5000)), stream.message(dispatch(21))]
    assert not fast_path_taken([first, oversized], max_size=2000)
    results = assert_same([first, oversized], max_size=2000)
    # past an oversized payload the stream cannot go on (the shard closes with 1009 and resumes): both ways alike
    assert [kind for kind, _ in results][-3:] == ["payload", "FrameTooLarge", "RemoteProtocolError"]

    stream = Stream()
    first = [stream.message(dispatch(0))]
    corrupt = [*fill(stream, 1), b"\xff\xff\xff" + SYNC_FLUSH_MARKER, stream.message(dispatch(21))]
    assert not fast_path_taken([first, corrupt])
    results = assert_same([first, corrupt])
    assert [kind for kind, _ in results][-3:] == ["payload", "RemoteProtocolError", "RemoteProtocolError"]


def test_payloads_together_over_the_size_limit_each_under_it_are_all_decoded() -> None:
    stream = Stream()
    first = [stream.message(dispatch(0))]
    read = [stream.message(dispatch(n, "y" * 300)) for n in range(1, 30)]  # ~400 bytes each, 12 KB together
    assert not fast_path_taken([first, read], max_size=2000)  # over max_size together: one by one
    assert fast_path_taken([first, read], max_size=20_000)
    assert all(kind == "payload" for kind, _ in assert_same([first, read], max_size=2000))


def test_a_quiet_read_of_a_few_messages_is_fed_one_by_one() -> None:
    stream = Stream()
    first = [stream.message(dispatch(0))]
    read = [stream.message(dispatch(n)) for n in range(1, PREPARE_MIN_MESSAGES)]
    assert not fast_path_taken([first, read])
    assert fast_path_taken([first, [*read, stream.message(dispatch(99))]])


def test_a_read_left_half_handed_out_leaves_the_stream_where_one_by_one_feeding_would() -> None:
    """The caller stops after two messages of a prepared read and goes on with the next read: the inflater must be
    where it would be had exactly those two been fed (here the stream then lacks three messages' data)."""
    stream = Stream()
    first = stream.message(dispatch(0))
    read = fill(stream, 1)
    later = [stream.message(b'{"op":11}'), *fill(stream, 50)]
    assert fast_path_taken([[first], read])

    def run(prepared: bool) -> list[Outcome]:
        decoder = PayloadDecoder(compressed=True, max_size=1 << 20)
        seen: list[Outcome] = [("payload", decoder.feed(first))]
        for batch, fed in ((read, read[:2]), (later, later)):
            if prepared:
                decoder.prepare(batch)
            seen += [outcome(decoder, message) for message in fed]
        return seen

    assert run(prepared=True) == run(prepared=False)


def test_random_streams_decode_the_same_either_way() -> None:
    tricky = ["}{", "x}{", '}{"', "\\", '"', "{", "}", "é", "\u2028", ""]
    for seed in range(40):
        rng = random.Random(seed)
        stream = Stream()
        reads: list[list[bytes]] = [[stream.message(dispatch(0))]]
        n = 1
        for _ in range(rng.randint(1, 6)):
            read: list[bytes] = []
            for _ in range(rng.randint(1, 40)):
                roll = rng.random()
                if roll < 0.05:
                    read += stream.split_message(dispatch(n, rng.choice(tricky)))
                elif roll < 0.08:
                    read.append(stream.message(rng.choice([b' {"op":11}', b'{"op":0,', b"[]", b'{"op":1.5}'])))
                else:
                    content = "".join(rng.choice(tricky) for _ in range(rng.randint(0, 4)))
                    read.append(stream.message(dispatch(n, content)))
                n += 1
            reads.append(read)
        assert_same(reads)


def test_the_one_difference_needs_wrongly_framed_payloads_and_loses_or_repeats_nothing() -> None:
    """A document split over two messages and two documents in a third: joined, the chunk still cuts into as many
    whole payloads as it has messages. Fed one by one, those three messages fail; inflated together, every payload
    of the joined text is handed out, in order, once."""
    stream = Stream()
    first = [stream.message(dispatch(0))]
    texts = [dispatch(1), b'{"op":0,"s":2,"d":', b'{"n":2}}', dispatch(3), b'{"op":11}{"op":11}', dispatch(4)]
    texts += [dispatch(n) for n in range(5, 5 + PREPARE_MIN_MESSAGES)]
    read = [stream.message(t) for t in texts]
    assert fast_path_taken([first, read])
    one_by_one = [kind for kind, _ in outcomes([first, read], prepared=False)]
    assert one_by_one.count("RemoteProtocolError") == 3
    together = outcomes([first, read], prepared=True)
    documents = [dispatch(0), dispatch(1), b'{"op":0,"s":2,"d":{"n":2}}', dispatch(3), b'{"op":11}', b'{"op":11}']
    documents += [dispatch(n) for n in range(4, 5 + PREPARE_MIN_MESSAGES)]
    assert together == [("payload", json.loads(d)) for d in documents]


def test_a_read_given_up_midway_goes_on_from_the_first_message_not_handed_out() -> None:
    stream = Stream()
    first = stream.message(dispatch(0))
    read = [stream.message(dispatch(n)) for n in range(1, 3 * PREPARE_MIN_MESSAGES)]
    decoder = PayloadDecoder(compressed=True, max_size=1 << 20)
    payloads = [decoder.feed(first)]
    decoder.prepare(read)
    payloads += [decoder.feed(message) for message in read[:3]]
    decoder.prepare(read[3:])  # the rest as a read of its own: the inflater must be right after read[2]
    payloads += [decoder.feed(message) for message in read[3:]]
    assert payloads == [json.loads(dispatch(n)) for n in range(3 * PREPARE_MIN_MESSAGES)]


def test_a_chunk_with_more_or_fewer_payloads_than_messages_goes_one_by_one() -> None:
    for texts in (
        [*(dispatch(n) for n in range(1, PREPARE_MIN_MESSAGES)), b'{"op":11}{"op":11}'],  # two in the last one
        [dispatch(1), b'{"op":0,"s":2,"d":', b'{"n":2}}', *(dispatch(n) for n in range(3, 10))],  # one in two
    ):
        stream = Stream()
        first = [stream.message(dispatch(0))]
        read = [stream.message(t) for t in texts]
        assert not fast_path_taken([first, read])
        assert "RemoteProtocolError" in [kind for kind, _ in assert_same([first, read])]
