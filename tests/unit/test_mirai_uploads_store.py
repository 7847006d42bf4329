"""The upload store (adapters/mirai/uploads.py): kinds from the bytes, bounds, expiry, ids, restart."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from adapters.mirai import codec
from adapters.mirai.uploads import Kind, UploadRefused, UploadStore, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def store(
    folder: Path, *, now: float = 1000.0, total: int = 1000, retention: float = 60.0, seed: int = 1
) -> UploadStore:
    return UploadStore(
        folder, max_bytes=200, total_bytes=total, retention_seconds=retention, rng=random.Random(seed), now=now
    )


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xe0", "jpg"),
        (b"GIF89a", "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"BM" + b"\x00" * 30, "bmp"),
        (b"#!AMR\n", "amr"),
        (b"\x02#!SILK_V3", "silk"),
        (b"ID3\x03", "mp3"),
        (b"\xff\xfb\x90\x00", "mp3"),
        (b"OggS\x00", "ogg"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"fLaC", "flac"),
        (b"\x00\x00\x00\x20ftypM4A ", "m4a"),
        (b"\x00\x00\x00\x18ftypisom", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  ", "mov"),
        (b"\x1aE\xdf\xa3", "webm"),
        (b"MZ\x90\x00", ""),
        (b"", ""),
    ],
)
def test_sniff(head: bytes, kind: str) -> None:
    assert sniff(head + b"\x00" * 16) == kind


def test_put_and_resolve(tmp_path: Path) -> None:
    uploads = store(tmp_path / "up")
    image_id = uploads.put(Kind.IMAGE, PNG, now=1000.0)
    assert codec.is_upload_id(image_id) and image_id.endswith(".png")
    stored = uploads.resolve(image_id)
    assert stored is not None and stored.data == PNG and stored.content_type == "image/png"
    assert stored.filename == image_id[1:-5].lower() + ".png"
    file_id = uploads.put(Kind.FILE, b"plain text", now=1000.0, filename="notes.TXT")
    assert file_id.endswith(".txt")
    assert uploads.put(Kind.FILE, b"\x00\x01", now=1000.0).endswith(".bin")
    url_id = uploads.put_url("https://x.example/a.png", now=1000.0)
    assert (
        (found := uploads.resolve(url_id)) is not None and found.url == "https://x.example/a.png" and found.data is None
    )
    assert uploads.resolve("{00000000-0000-4000-8000-000000000000}.png") is None
    assert uploads.resolve("123-456-789.png") is None  # a Discord attachment id, not an upload


def test_ids_are_random_and_distinct(tmp_path: Path) -> None:
    uploads = store(tmp_path / "up")
    ids = {uploads.put(Kind.IMAGE, PNG, now=1000.0) for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        (Kind.IMAGE, b"", "the image is empty"),
        (Kind.IMAGE, PNG + b"\x00" * 300, "the image is 340 bytes; Discord takes at most 200"),
        (Kind.IMAGE, b"hello", "the image is not PNG, JPEG, GIF, WebP or BMP (an unknown type)"),
        (Kind.VOICE, PNG, "the voice is not AMR, SILK, MP3, Ogg, WAV, FLAC or M4A (PNG)"),
    ],
)
def test_refusals(tmp_path: Path, kind: Kind, data: bytes, message: str) -> None:
    with pytest.raises(UploadRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        store(tmp_path / "up").put(kind, data, now=1000.0)
    with pytest.raises(UploadRefused, match="http"):
        store(tmp_path / "up").put_url("file:///etc/passwd", now=1000.0)


def test_total_bytes_deletes_the_oldest_first(tmp_path: Path) -> None:
    uploads = store(tmp_path / "up", total=100)
    first = uploads.put(Kind.IMAGE, PNG, now=1000.0)  # 40 bytes
    second = uploads.put(Kind.IMAGE, PNG, now=1001.0)
    third = uploads.put(Kind.IMAGE, PNG, now=1002.0)  # 120 > 100: the first goes
    assert uploads.resolve(first) is None
    assert uploads.resolve(second) is not None and uploads.resolve(third) is not None
    assert uploads.used_bytes == 80 and len(uploads) == 2


def test_expiry_and_restart(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    uploads = store(folder, retention=60.0)
    old = uploads.put(Kind.IMAGE, PNG, now=1000.0)
    young = uploads.put(Kind.IMAGE, PNG, now=1050.0)
    (folder / "not-an-upload.txt").write_text("left alone")
    again = store(folder, now=1070.0, retention=60.0)  # a restart: the folder is the index, aged by mtime
    assert again.resolve(old) is None and again.resolve(young) is not None
    assert (folder / "not-an-upload.txt").exists()
    assert again.expire(1111.0) == 1 and again.resolve(young) is None


def test_permissions(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    folder.mkdir(mode=0o755)
    uploads = store(folder)
    uploads.put(Kind.IMAGE, PNG, now=1000.0)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in os.listdir(folder):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
