"""Files frameworks upload (``uploadImage``, ``uploadVoice``, ``uploadShortVideo``, ``file/upload``), kept on disk
until a message uses them (no trio; plain file I/O, callers run it in a worker thread).

mirai-api-http uploads to QQ's servers and answers an id (docs/mirai-api-http.md §11.4); a later message chain names
that id (``Image.imageId``, ``Voice.voiceId``, ``ShortVideo.videoId``) and QQ shows the file. Discord has no
upload-now-send-later, so the bridge keeps each upload itself and sends its bytes as an attachment when a chain
names it (:func:`adapters.mirai.handlers.MiraiCommandHandler` resolves the ids before the command reaches
Discord). An upload by ``url`` (mirai-api-http 2.10) keeps only the URL: Discord's side downloads it when it is
sent, with its own size limit and proxy.

* **ids** look like mirai's: ``{8-4-4-4-12 hex}.ext`` (``{6F9619FF-8B86-D011-B42D-00C04FC964FF}.png``), from
  122 random bits of the injected rng (the bridge passes ``random.SystemRandom``): an id is the only key to its
  file. They never collide with the ids of Discord attachments (``{channel}-{message}-{attachment}.ext``).
* **on disk** in one folder beside the store (``<store path>.uploads``), created ``0700``; each upload is one
  ``0600`` file named after its id (``<uuid>.<ext>``; an upload by url is ``<uuid>.url`` holding the URL). The
  folder is the index: after a restart every file still there is an upload, aged by its modification time.
* **bounds**: one upload is at most ``max_bytes`` (the bridge uses ``[discord] max_upload_bytes``: Discord would
  refuse anything larger); all of them at most ``total_bytes``, beyond which the oldest are deleted first; each
  is deleted ``retention_seconds`` after it arrived (:meth:`UploadStore.expire`).
* **kinds**: an image must be PNG, JPEG, GIF, WebP or BMP; a voice AMR, SILK, MP3, Ogg, WAV, FLAC or M4A; a video
  MP4, MOV or WebM (checked from the bytes, :func:`sniff`); a file anything. Anything else is refused with a
  clear :class:`UploadRefused`.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import re
import threading
import uuid
from pathlib import Path
from typing import Final

import attrs

from adapters.mirai import codec
from relay.errors import RelayError

log = logging.getLogger(__name__)

__all__ = ["Kind", "StoredUpload", "UploadRefused", "UploadStore", "sniff"]

_FILE_NAME: Final = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([a-z0-9]{1,5})")
URL_EXTENSION: Final = "url"


class Kind(enum.Enum):
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    FILE = "file"


class UploadRefused(RelayError):
    """An upload the bridge will not keep (too large, not of its kind); the message says which and why."""


_CONTENT_TYPES: Final = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "amr": "audio/amr",
    "silk": "audio/silk",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
}
_ALLOWED: Final = {
    Kind.IMAGE: ("png", "jpg", "gif", "webp", "bmp"),
    Kind.VOICE: ("amr", "silk", "mp3", "ogg", "wav", "flac", "m4a"),
    Kind.VIDEO: ("mp4", "mov", "webm"),
}
_DESCRIBED: Final = {
    Kind.IMAGE: "PNG, JPEG, GIF, WebP or BMP",
    Kind.VOICE: "AMR, SILK, MP3, Ogg, WAV, FLAC or M4A",
    Kind.VIDEO: "MP4, MOV or WebM",
}


def sniff(data: bytes) -> str:
    """The file type of ``data`` from its first bytes, as an extension (``"png"``); ``""`` when unknown."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith((b"#!SILK", b"\x02#!SILK")):
        return "silk"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 6):
        return "mp3"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"M4A"):
            return "m4a"
        if brand == b"qt  ":
            return "mov"
        return "mp4"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm"
    return ""


@attrs.frozen
class StoredUpload:
    """What an upload id resolves to: its bytes, or the URL it was uploaded by."""

    id: str
    filename: str  #: ``<uuid>.<ext>``, the attachment's name on Discord
    content_type: str
    data: bytes | None = attrs.field(default=None, repr=False)
    url: str | None = None


@attrs.define
class _Entry:
    path: Path
    size: int
    created: float


class UploadStore:
    """The uploads folder. ``clock`` is wall-clock seconds (file modification times are compared with it)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        max_bytes: int,
        total_bytes: int,
        retention_seconds: float,
        rng: random.Random,
        now: float,
    ) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.total_bytes = total_bytes
        self.retention_seconds = retention_seconds
        self._rng = rng
        self._entries: dict[str, _Entry] = {}  # by file name
        #: held by every public method: the trio side calls them from worker threads (large files)
        self._lock = threading.Lock()
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)  # also when it existed with a wider mode
            for path in self.folder.iterdir():
                match = _FILE_NAME.fullmatch(path.name)
                if match is None or not path.is_file():
                    continue
                stat = path.stat()
                self._entries[path.name] = _Entry(path, stat.st_size, stat.st_mtime)
                os.chmod(path, 0o600)
        except OSError as exc:
            raise RelayError(
                f"cannot use the uploads folder {str(self.folder)!r}: {exc.strerror or exc}; it lives beside the "
                "store: set [store] path to a writable location"
            ) from None
        self._expire(now)

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used_bytes()

    def _used_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    # ----------------------------------------------------------------- writing

    def put(self, kind: Kind, data: bytes, *, now: float, filename: str = "") -> str:
        """Keep ``data`` as an upload of ``kind``; returns its id. Raises :class:`UploadRefused`."""
        with self._lock:
            return self._put(kind, data, now=now, filename=filename)

    def _put(self, kind: Kind, data: bytes, *, now: float, filename: str) -> str:
        if not data:
            raise UploadRefused(f"the {kind.value} is empty")
        if len(data) > self.max_bytes:
            raise UploadRefused(
                f"the {kind.value} is {len(data)} bytes; Discord takes at most {self.max_bytes} "
                "([discord] max_upload_bytes)"
            )
        found = sniff(data)
        if kind is Kind.FILE:
            ext = found or _extension_of(filename) or "bin"
        elif found in _ALLOWED[kind]:
            ext = found
        else:
            raise UploadRefused(
                f"the {kind.value} is not {_DESCRIBED[kind]} ({'an unknown type' if not found else found.upper()})"
            )
        return self._write(data, ext, now)

    def put_url(self, url: str, *, now: float) -> str:
        """Keep an upload by URL (mirai-api-http 2.10's ``url`` form field); returns its id."""
        if not url.startswith(("http://", "https://")):
            raise UploadRefused(f"url must be an http:// or https:// URL, got {url[:60]!r}")
        with self._lock:
            return self._write(url.encode(), URL_EXTENSION, now)

    def _write(self, data: bytes, ext: str, now: float) -> str:
        self._expire(now)
        self._make_room(len(data))
        name = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        path = self.folder / f"{name}.{ext}"
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.utime(path, (now, now))
        except OSError as exc:
            raise RelayError(f"cannot keep the upload in {str(self.folder)!r}: {exc.strerror or exc}") from None
        self._entries[path.name] = _Entry(path, len(data), now)
        return f"{{{name.upper()}}}.{ext}"

    def _make_room(self, size: int) -> None:
        used = self._used_bytes()
        for name in sorted(self._entries, key=lambda n: self._entries[n].created):
            if used + size <= self.total_bytes:
                break
            used -= self._entries[name].size
            log.info("uploads: %s deleted to stay within [mirai.uploads] total_bytes", name)
            self._delete(name)

    # ----------------------------------------------------------------- reading

    def resolve(self, media_id: str) -> StoredUpload | None:
        """The upload behind ``media_id``, or None when it is not (or no longer) kept."""
        with self._lock:
            return self._resolve(media_id)

    def _resolve(self, media_id: str) -> StoredUpload | None:
        match = codec.UPLOAD_ID.fullmatch(media_id)
        if match is None:
            return None
        name = f"{match.group(1).lower()}.{match.group(2).lower()}"
        entry = self._entries.get(name)
        if entry is None:
            return None
        try:
            data = entry.path.read_bytes()
        except OSError:
            self._entries.pop(name, None)
            return None
        ext = match.group(2).lower()
        if ext == URL_EXTENSION:
            return StoredUpload(id=media_id, filename="", content_type="", url=data.decode(errors="replace"))
        return StoredUpload(
            id=media_id, filename=name, content_type=_CONTENT_TYPES.get(ext, "application/octet-stream"), data=data
        )

    # ----------------------------------------------------------------- expiry

    def expire(self, now: float) -> int:
        """Delete the uploads older than ``retention_seconds``; returns how many."""
        with self._lock:
            return self._expire(now)

    def _expire(self, now: float) -> int:
        stale = [name for name, entry in self._entries.items() if now - entry.created > self.retention_seconds]
        for name in stale:
            self._delete(name)
        return len(stale)

    def _delete(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            try:
                entry.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("uploads: cannot delete %s: %s", entry.path, exc)


def _extension_of(filename: str) -> str:
    dot = filename.rfind(".")
    ext = filename[dot + 1 :].lower() if dot >= 0 else ""
    return ext if re.fullmatch(r"[a-z0-9]{1,5}", ext) else ""
