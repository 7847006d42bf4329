"""Request bodies as Discord reads them (docs/discord.md §7.4): JSON, or multipart/form-data whose ``payload_json``
part holds the JSON and whose ``files[n]`` parts are the uploads.

Multipart bodies are parsed by ``relay.web.multipart`` (python-multipart); field names are kept exactly as sent
(Discord refuses ``files%5B0%5D``, and the tests check the bridge sends brackets unescaped). A body that does
not parse is read as "no usable payload", never as an error of its own: the endpoint then answers Discord's
error for it (50035), as Discord does.
"""

from __future__ import annotations

from typing import Any, Final

from relay import fastjson
from relay.web.models import Request, RequestRejected
from relay.web.multipart import Part, find_part, parse_multipart

#: parts read from one multipart body: ten files and payload_json, with room to answer 30015 for more files
MAX_PARTS: Final = 64


def decode_body(request: Request) -> tuple[Any, tuple[Part, ...]]:
    """(decoded JSON or None, multipart parts in order)."""
    content_type = (request.header("content-type") or "").lower()
    if content_type.startswith("multipart/form-data"):
        try:
            parts = parse_multipart(request, max_parts=MAX_PARTS)
        except RequestRejected:
            return None, ()
        payload = find_part(parts, "payload_json")
        if payload is None:
            return None, parts
        try:
            return fastjson.loads(payload.data), parts
        except ValueError:
            return None, parts
    if request.body and content_type.startswith("application/json"):
        try:
            return fastjson.loads(request.body), ()
        except ValueError:
            return None, ()
    return None, ()
