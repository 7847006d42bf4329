"""Attachments: the ids the bridge issues for them, the content type and name of an upload, and how many one
message may carry (docs/discord.md §6.3, §7.3, §7.4).

Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from typing import Final

#: docs/discord.md §7.3: at most 10 attachments per message (error 30015).
MAX_FILES_PER_MESSAGE: Final = 10

_MIME_BY_EXT: Final = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".amr": "audio/amr",
    ".silk": "audio/silk",
    ".m4a": "audio/mp4",
}
_EXT_BY_MIME: Final = {mime: ext for ext, mime in _MIME_BY_EXT.items() if ext != ".jpeg"}
_MEDIA_ID: Final = re.compile(r"^(\d+)-(\d+)-(\d+)(\.\w{1,5})?$")


def media_id(channel_id: int, message_id: int, attachment_id: int, filename: str) -> str:
    """The id the bridge issues for an attachment (mirai ``imageId``/``voiceId``).

    It encodes where the attachment lives so it can be re-fetched (CDN URLs are signed and expire,
    docs/discord.md §6.3): ``{channel}-{message}-{attachment}{.ext}``. Parse with :func:`parse_media_id`.
    """
    dot = filename.rfind(".")
    ext = filename[dot:].lower() if dot >= 0 and len(filename) - dot <= 6 else ""
    return f"{channel_id}-{message_id}-{attachment_id}{ext}"


def parse_media_id(value: str) -> tuple[int, int, int] | None:
    """``(channel_id, message_id, attachment_id)`` of a bridge-issued media id, else None."""
    match = _MEDIA_ID.match(value.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def guess_content_type(filename: str, data: bytes = b"") -> str:
    """Content type from magic bytes, else the file extension, else octet-stream."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith(b"#!AMR"):
        return "audio/amr"
    dot = filename.rfind(".")
    if dot >= 0:
        return _MIME_BY_EXT.get(filename[dot:].lower(), "application/octet-stream")
    return "application/octet-stream"


def default_name(kind: str, content_type: str) -> str:
    """A file name for an upload that came without one: ``image.png``, ``audio.ogg``, ``file.bin``..."""
    return kind + _EXT_BY_MIME.get(content_type.split(";", maxsplit=1)[0].strip(), ".bin")


def url_filename(url: str) -> str:
    """The file name at the end of a URL's path (query dropped), or "" when it has no extension."""
    path = url.split("?", 1)[0].rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return name if name and "." in name else ""
