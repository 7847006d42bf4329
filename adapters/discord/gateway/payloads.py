"""The gateway's wire format (docs/discord.md §2.2, §2.3, §4): opcodes, the connect URL's query, decoding a
websocket message (zlib-stream transport decompression, then JSON) into a payload, and encoding one.

Pure: bytes and strings in, dicts out; no I/O.
"""

from __future__ import annotations

import enum
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeGuard, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from relay import fastjson
from relay.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from zlib import _Decompress

#: gateway API version we speak (docs/discord.md §2.2)
GATEWAY_VERSION: Final = 10
#: Z_SYNC_FLUSH marker that ends every complete zlib-stream payload (docs/discord.md §4.1)
ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
#: outgoing payloads larger than this make Discord close with 4002 (docs/discord.md §2.3)
MAX_OUTGOING_PAYLOAD_BYTES: Final = 4096


class Op(enum.IntEnum):
    """Gateway opcodes (docs/discord.md §2.3)."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


def gateway_connect_url(base_url: str, *, compress: bool) -> str:
    """``base_url`` with the query Discord wants (docs/discord.md §2.2); used for the main and the resume URL alike."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise LocalProtocolError(f"gateway URL must be ws:// or wss:// with a host, got {base_url!r}")
    query: dict[str, str | int] = {"v": GATEWAY_VERSION, "encoding": "json"}
    if compress:
        query["compress"] = "zlib-stream"
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


#: zlib's header (RFC 1950 §2.2): CMF names the method, 8 = deflate, in its low nibble; FLG's bit 5, FDICT, asks
#: for a preset dictionary; CMF * 256 + FLG is a multiple of 31
_ZLIB_HEADER_BYTES: Final = 2
_DEFLATE: Final = 8
_FDICT: Final = 0x20


def _zlib_header_ok(header: bytes) -> bool:
    """Whether ``header`` opens a zlib stream of deflate data without a preset dictionary (RFC 1950 §2.2)."""
    cmf, flg = header[0], header[1]
    return cmf & 0x0F == _DEFLATE and cmf >> 4 <= 7 and not flg & _FDICT and (cmf << 8 | flg) % 31 == 0


class ZlibStreamInflater:
    """zlib-stream transport decompression: one instance per connection (docs/discord.md §4.1).

    Binary messages are buffered until the buffer ends with ``00 00 ff ff``; a message that is complete on its
    own (the usual case) is inflated without copying it into the buffer. :meth:`inflate_whole` inflates several
    such messages in one call, keeping a copy of the state from before it (:meth:`restore`) for the caller that
    finds it cannot use the result (see :class:`PayloadDecoder`).

    The stream is inflated as raw deflate after its 2-byte zlib header: a zlib inflater also keeps the Adler-32
    checksum of everything it inflated, to compare with the stream's trailer (RFC 1950 §2.2), and a zlib-stream
    never ends, so the comparison never comes. Leaving it out takes ~40 % of the inflate's time off a 1 KB dispatch
    (0.77 → 0.45 µs). A header that is not deflate without a preset dictionary is refused like corrupt data.
    """

    __slots__ = ("_buffer", "_header_seen", "_inflater", "_max_size")

    def __init__(self, *, max_size: int) -> None:
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._header_seen = False
        self._buffer = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> bytes | None:
        """Feed one websocket message; return the inflated payload once complete, else ``None``."""
        if not self._buffer and data.endswith(ZLIB_SUFFIX):
            return self._inflate(data)
        self._buffer += data
        if len(self._buffer) > self._max_size:
            size = len(self._buffer)
            self._buffer.clear()
            raise FrameTooLarge(size, self._max_size)
        if not self._buffer.endswith(ZLIB_SUFFIX):
            return None
        chunk = bytes(self._buffer)
        self._buffer.clear()
        return self._inflate(chunk)

    def inflate_whole(self, messages: Sequence[bytes | str]) -> tuple[bytes, _Decompress] | None:
        """Inflate ``messages``, each a whole payload, in one call: their payloads joined, and the state from before
        for :meth:`restore`. ``None``, the state untouched, unless every message is binary and ends with the
        marker, nothing is buffered, the stream's header is behind us, and the payloads come to at most
        ``max_size`` bytes together (so none is over it) without a zlib error: then feed them one by one, which
        says which one is at fault."""
        if self._buffer or not self._header_seen:
            return None
        for message in messages:
            if type(message) is not bytes or not message.endswith(ZLIB_SUFFIX):
                return None
        before = self._inflater.copy()
        try:
            out = self._inflater.decompress(b"".join(cast("Sequence[bytes]", messages)), self._max_size + 1)
        except zlib.error:
            out = None
        if out is None or len(out) > self._max_size or self._inflater.unconsumed_tail:
            self._inflater = before
            return None
        return out, before

    def restore(self, before: _Decompress, messages: Sequence[bytes | str]) -> None:
        """Go back to the state ``before`` (from :meth:`inflate_whole`), then inflate ``messages`` again, the ones
        of that call already handed on: the stream goes on as if exactly those had been fed."""
        self._inflater = before
        if messages:
            self._inflater.decompress(b"".join(cast("Sequence[bytes]", messages)))

    def _inflate(self, data: bytes) -> bytes:
        if not self._header_seen:
            # the first payload is at least the 4-byte marker, so it holds the whole header
            if not _zlib_header_ok(data):
                raise RemoteProtocolError("corrupt zlib-stream data from the gateway: not a zlib header for deflate")
            self._header_seen = True
            data = data[_ZLIB_HEADER_BYTES:]
        try:
            out = self._inflater.decompress(data, self._max_size + 1)
        except zlib.error as exc:
            raise RemoteProtocolError(f"corrupt zlib-stream data from the gateway: {exc}") from None
        if len(out) > self._max_size or self._inflater.unconsumed_tail:
            raise FrameTooLarge(len(out), self._max_size)
        return out


#: reads of fewer messages are inflated message by message: a busy stream's reads hold hundreds, and a quiet one's
#: single messages would only pay for the copy of the inflater's state and the search for boundaries
PREPARE_MIN_MESSAGES: Final = 8
#: messages inflated and parsed together: their payloads are all checked before the first is handed out, so they are
#: alive together (64 of the ~1 KB a message: ~0.3 MB)
PREPARED_CHUNK: Final = 64
#: where one payload ends and the next begins in the inflated payloads of several messages: every gateway payload
#: is a JSON object that opens with a key (docs/discord.md §2.3), so it begins with '{"' and ends with '}'. A
#: compiled pattern rather than ``bytes.find``: the regular expression engine looks for the rare '}' first, where
#: ``find`` stops at every '"' of the text (the needle's last byte); 0.35 against 0.70 µs a ~1 KB payload (timeit,
#: 64 bench payloads). callgrind counts more instructions for it (~1,200 an event), in a loop that runs faster
_PAYLOAD_BOUNDARY: Final = re.compile(rb'\}\{"')


class _PreparedRead:
    """One socket read's messages (:meth:`PayloadDecoder.prepare`) and the chunk of them inflated last."""

    __slots__ = ("before", "chunk_end", "chunk_start", "messages", "next", "payloads")

    def __init__(self, messages: Sequence[bytes | str]) -> None:
        self.messages = messages
        self.next = 0  #: the index of the next message to hand out
        self.chunk_start = 0
        self.chunk_end = 0  #: the chunk is messages[chunk_start:chunk_end]
        #: the chunk's payloads (each replaced by None once handed out); None: the chunk goes one by one
        self.payloads: list[dict[str, Any] | None] | None = None
        self.before: _Decompress | None = None  #: the inflater's state before the chunk (restore)


def _is_payload(value: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a parsed document is a gateway payload: an object with an integer op (docs/discord.md §2.3)."""
    return isinstance(value, dict) and isinstance(value.get("op"), int)


def _payloads(inflated: bytes, count: int) -> list[dict[str, Any] | None] | None:
    """``inflated`` cut at every '}{"' into ``count`` payloads (JSON objects with an integer op); None unless it
    cuts into exactly that many and each parses as one."""
    found: list[dict[str, Any] | None] = []
    start = 0
    for boundary in _PAYLOAD_BOUNDARY.finditer(inflated):
        if len(found) == count - 1:
            return None  # more pieces than messages
        end = boundary.start() + 1
        payload = _piece(inflated[start:end])
        if payload is None:
            return None
        found.append(payload)
        start = end
    payload = _piece(inflated[start:])
    if payload is None:
        return None
    found.append(payload)
    return found if len(found) == count else None


def _piece(data: bytes) -> dict[str, Any] | None:
    """One piece of :func:`_payloads`' cut, parsed; None unless it is a payload."""
    try:
        payload = fastjson.loads(data)
    except ValueError:
        return None
    return payload if _is_payload(payload) else None


class PayloadDecoder:
    """Websocket message → payload dict, for one connection (decompression when ``compressed``).

    With zlib-stream, :meth:`prepare` lets :meth:`feed` inflate a busy socket read's messages 64 at a time, one
    zlib call each. Each call into zlib lets go of the GIL, and while the store's writer thread waits for it every
    let-go wakes that thread: a futex wake, about a tenth of the event loop's CPU in a saturation stream (``perf
    record`` of its thread). One call per 64 messages instead of one per message took ~4 µs of CPU off each event
    there (docs/performance.md, "The optimisations").

    The 64 payloads come out joined. They are cut at each '}{"' and used only when that gives as many pieces as
    messages and every piece parses as a payload (a JSON object with an integer op), checked before the first is
    handed out; otherwise the inflater goes back to before them and they are fed one by one. For what Discord
    sends (one payload a message, each opening with '{"') this is exactly what feeding each message alone gives,
    and garbage fails at its own message as it would then. One difference is left, and it needs a server that
    frames its payloads wrongly: if the 64 messages' joined text still cuts into 64 payloads (a document split
    over two messages, and two documents in one other message), those are handed out in order, each once, where
    feeding one by one would have refused the wrongly framed messages.
    """

    __slots__ = ("_inflater", "_max_size", "_prepared")

    def __init__(self, *, compressed: bool, max_size: int) -> None:
        self._inflater = ZlibStreamInflater(max_size=max_size) if compressed else None
        self._max_size = max_size
        self._prepared: _PreparedRead | None = None

    def prepare(self, messages: Sequence[bytes | str]) -> None:
        """Get ready for :meth:`feed` to be called with each of ``messages`` in turn (one socket read's). Optional:
        :meth:`feed` gives the same results without it, and stops using it when fed another message."""
        self._give_up_prepared()
        if self._inflater is not None and len(messages) >= PREPARE_MIN_MESSAGES:
            self._prepared = _PreparedRead(messages)

    def _give_up_prepared(self) -> None:
        """Back to feeding one message at a time, the inflater as if only the messages handed out had been fed."""
        prepared = self._prepared
        self._prepared = None
        if prepared is not None and prepared.before is not None and self._inflater is not None:
            self._inflater.restore(prepared.before, prepared.messages[prepared.chunk_start : prepared.next])

    def _inflate_chunk(self, prepared: _PreparedRead, inflater: ZlibStreamInflater) -> None:
        """Inflate and check the chunk that starts at ``prepared.next`` (see the class docstring)."""
        start = prepared.next
        end = min(start + PREPARED_CHUNK, len(prepared.messages))
        prepared.chunk_start, prepared.chunk_end = start, end
        prepared.payloads = prepared.before = None
        chunk = prepared.messages[start:end]
        inflated = inflater.inflate_whole(chunk) if len(chunk) > 1 else None
        if inflated is None:
            return
        out, before = inflated
        payloads = _payloads(out, len(chunk))
        if payloads is None:
            inflater.restore(before, ())
            return
        prepared.payloads, prepared.before = payloads, before

    def _from_prepared(self, prepared: _PreparedRead, message: bytes | str) -> dict[str, Any] | None:
        """The payload of ``message`` from its chunk; None when it is to be fed alone (the chunk goes one by one, or
        the caller went elsewhere and the read is given up)."""
        index = prepared.next
        if index >= len(prepared.messages) or message is not prepared.messages[index]:
            self._give_up_prepared()
            return None
        if index == prepared.chunk_end and self._inflater is not None:
            self._inflate_chunk(prepared, self._inflater)
        prepared.next = index + 1
        if prepared.next == prepared.chunk_end:
            prepared.before = None  # the chunk is all handed out: nothing to go back on
            if prepared.next == len(prepared.messages):
                self._prepared = None
        payloads = prepared.payloads
        if payloads is None:
            return None
        payload = payloads[index - prepared.chunk_start]
        payloads[index - prepared.chunk_start] = None  # alive only as long as the caller keeps it
        return payload

    def feed(self, message: bytes | str) -> dict[str, Any] | None:
        """Return the payload, ``None`` while a split zlib payload is incomplete; RemoteProtocolError on garbage."""
        prepared = self._prepared
        if prepared is not None:
            payload = self._from_prepared(prepared, message)
            if payload is not None:
                return payload
        raw: bytes | str | None
        if self._inflater is not None:
            if isinstance(message, str):
                raise RemoteProtocolError("text frame on a zlib-stream connection (expected binary)")
            raw = self._inflater.feed(message)
            if raw is None:
                return None
        else:
            raw = message
            if len(raw) > self._max_size:
                raise FrameTooLarge(len(raw), self._max_size)
        payload = _loads(raw)
        if not _is_payload(payload):
            raise RemoteProtocolError("gateway payload is not an object with an integer 'op'")
        return payload


def _loads(raw: bytes | str) -> Any:
    """``json.loads(raw)``, through orjson for the usual document (~3x faster on a 1 KB dispatch). orjson is
    stricter than the stdlib (no NaN, no lone surrogate escapes, no byte order mark); whatever it refuses goes
    through json.loads itself, so results and errors are the stdlib's. One difference remains: an integer beyond
    64 bits becomes a float. Discord sends every id and bit set as a string (docs/discord.md §10), so no real
    payload has one."""
    try:
        return fastjson.loads(raw)
    except ValueError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"gateway sent invalid JSON: {exc}") from None
    except RecursionError:
        raise RemoteProtocolError("gateway sent JSON nested too deeply to decode") from None


def encode_payload(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
