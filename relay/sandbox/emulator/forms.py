"""Request bodies as Discord reads them (discord.md §7.4): JSON, or multipart/form-data whose ``payload_json``
part holds the JSON and whose ``files[n]`` parts are the uploads.

Field names are kept exactly as sent: Discord refuses ``files%5B0%5D``, and the tests check the bridge sends
brackets unescaped. This small reader stands in until ``relay.web`` offers multipart parsing (on
python-multipart); it is strict enough for well-formed bodies and never raises on bad ones (it returns what it
could read, and the handler answers Discord's error for a body without a usable payload).
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from relay import fastjson


@attrs.frozen
class MultipartPart:
    name: str  #: the raw field name as sent (``files[0]``)
    filename: str | None
    content_type: str | None
    data: bytes = attrs.field(repr=False)


def decode_body(content_type: str, body: bytes) -> tuple[Any, tuple[MultipartPart, ...]]:
    """(decoded JSON or None, multipart parts in order)."""
    if content_type.startswith("multipart/form-data"):
        boundary = re.search(r'boundary="?([^";]+)"?', content_type)
        if boundary is None:
            return None, ()
        parts = parse_multipart(body, boundary.group(1).encode())
        payload = next((p for p in parts if p.name == "payload_json"), None)
        decoded = None
        if payload is not None:
            try:
                decoded = fastjson.loads(payload.data)
            except ValueError:
                decoded = None
        return decoded, parts
    if body and content_type.startswith("application/json"):
        try:
            return fastjson.loads(body), ()
        except ValueError:
            return None, ()
    return None, ()


def parse_multipart(body: bytes, boundary: bytes) -> tuple[MultipartPart, ...]:
    """The parts of a multipart/form-data body (RFC 7578), names exactly as sent."""
    parts = []
    for section in body.split(b"--" + boundary)[1:]:
        if section.startswith(b"--"):
            break
        trimmed = section.removeprefix(b"\r\n").removesuffix(b"\r\n")
        raw_headers, _, data = trimmed.partition(b"\r\n\r\n")
        headers = {}
        for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', disposition))
        parts.append(
            MultipartPart(
                name=params.get("name", ""),
                filename=params.get("filename"),
                content_type=headers.get("content-type"),
                data=data,
            )
        )
    return tuple(parts)
