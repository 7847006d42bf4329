"""multipart/form-data request bodies (uploads) parsed into parts, on top of python-multipart (pure).

python-multipart's streaming ``MultipartParser`` does the parsing (boundaries, part headers, their size and
count limits); this module collects each part's ``Content-Disposition`` name and filename, its
``Content-Type`` and its data, and bounds what a client can make the bridge hold:

* a request whose media type is not multipart/form-data → 415; without a boundary → 400;
* a malformed body, or one that ends before its closing boundary → 400;
* more than ``max_parts`` parts, or one part's data over ``max_part_bytes`` → 413.

The body is already in memory (bounded by the server's ``max_body_bytes``); the parts' data are slices of it.
"""

from __future__ import annotations

from typing import Final

import attrs
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from relay.web.bodies import media_type
from relay.web.models import Request, RequestRejected

__all__ = ["DEFAULT_MAX_PARTS", "Part", "find_part", "parse_multipart"]

#: mirai-api-http's uploads have at most four fields (sessionKey, type, path, the file)
DEFAULT_MAX_PARTS: Final = 32


@attrs.frozen
class Part:
    """One part of a multipart/form-data body."""

    #: the ``name`` of its Content-Disposition
    name: str
    #: the ``filename`` of its Content-Disposition; None for a plain field
    filename: str | None
    #: its Content-Type, None when absent
    content_type: str | None
    data: bytes = attrs.field(repr=False)

    def text(self) -> str:
        """The data as UTF-8 text (400 if it is not)."""
        try:
            return self.data.decode()
        except UnicodeDecodeError:
            raise RequestRejected(400, f"form field {self.name!r} is not UTF-8 text") from None


def find_part(parts: tuple[Part, ...], name: str) -> Part | None:
    """The first part named ``name``, or None."""
    return next((part for part in parts if part.name == name), None)


@attrs.define
class _Collector:
    """python-multipart's callbacks, gathering parts."""

    max_parts: int
    max_part_bytes: int
    parts: list[Part] = attrs.Factory(list)
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    field: bytearray = attrs.Factory(bytearray)
    value: bytearray = attrs.Factory(bytearray)
    data: bytearray = attrs.Factory(bytearray)

    def on_part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise RequestRejected(413, f"the form has more than {self.max_parts} parts")
        self.headers.clear()
        self.data.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers.append((bytes(self.field).lower(), bytes(self.value)))
        self.field.clear()
        self.value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.data += data[start:end]
        if len(self.data) > self.max_part_bytes:
            raise RequestRejected(413, f"a form part is larger than {self.max_part_bytes} bytes")

    def on_part_end(self) -> None:
        headers = dict(self.headers)
        kind, params = parse_options_header(headers.get(b"content-disposition"))
        if kind != b"form-data" or b"name" not in params:
            raise RequestRejected(400, "a form part has no Content-Disposition: form-data with a name")
        try:
            name = params[b"name"].decode()
            filename = params[b"filename"].decode() if b"filename" in params else None
            content_type = headers[b"content-type"].decode().strip() if b"content-type" in headers else None
        except UnicodeDecodeError:
            raise RequestRejected(400, "a form part's name, filename or type is not UTF-8") from None
        self.parts.append(Part(name, filename, content_type, bytes(self.data)))


def parse_multipart(
    request: Request, *, max_parts: int = DEFAULT_MAX_PARTS, max_part_bytes: int | None = None
) -> tuple[Part, ...]:
    """The parts of a multipart/form-data request, in order. ``max_part_bytes`` defaults to the body's size."""
    if media_type(request) != "multipart/form-data":
        raise RequestRejected(415, "the body must be multipart/form-data")
    _, params = parse_options_header(request.header("content-type"))
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestRejected(400, "the multipart/form-data Content-Type has no boundary")
    collector = _Collector(max_parts=max_parts, max_part_bytes=max_part_bytes or max(len(request.body), 1))
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": collector.on_part_begin,
                "on_header_field": collector.on_header_field,
                "on_header_value": collector.on_header_value,
                "on_header_end": collector.on_header_end,
                "on_part_data": collector.on_part_data,
                "on_part_end": collector.on_part_end,
            },
        )
        parser.write(request.body)
        parser.finalize()
    except FormParserError as exc:
        raise RequestRejected(400, f"malformed multipart/form-data body: {exc}") from None
    if parser.state != MultipartState.END:
        raise RequestRejected(400, "the multipart/form-data body ends before its closing boundary")
    return tuple(collector.parts)
