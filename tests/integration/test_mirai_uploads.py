"""Every upload route on the http port and the ws port (docs/mirai-api-http.md §11.4, §4.2), what a later chain does
with the ids, and the refusals."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay import envelope as env
from relay.errors import CommandFailed, FailureKind
from tests.integration.mirai_servers import BOT, GROUP, PNG, FakeService, Servers, mirai_servers

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 100
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100


async def upload(client: httpx.AsyncClient, servers: Servers, port: int, path: str, **kw: Any) -> Any:
    response = await client.post(f"http://127.0.0.1:{port}{path}", **kw)
    assert response.status_code == 200, response.text
    return response.json()


async def send(client: httpx.AsyncClient, servers: Servers, key: str, *chain: dict[str, object]) -> Any:
    body = {"sessionKey": key, "target": GROUP, "messageChain": list(chain)}
    return (await client.post(f"{servers.http_base}/sendGroupMessage", json=body)).json()


@pytest.mark.parametrize("port_of", ["http", "ws"])
async def test_image_voice_video_upload_then_send_as_attachments(tmp_path: Path, port_of: str) -> None:
    async with mirai_servers(tmp_path, shared_port=False) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        port = servers.http_port if port_of == "http" else servers.ws_port
        form = {"sessionKey": key, "type": "group"}
        image = await upload(client, servers, port, "/uploadImage", data=form, files={"img": ("cat.png", PNG)})
        assert set(image) == {"imageId", "url"} and image["url"] == ""
        voice = await upload(client, servers, port, "/uploadVoice", data=form, files={"voice": ("v.mp3", MP3)})
        assert set(voice) == {"voiceId"}
        video = await upload(
            client,
            servers,
            port,
            "/uploadShortVideo",
            data=form,
            files={"video": ("v.mp4", MP4), "thumbnail": ("t.png", PNG)},
        )
        assert set(video) == {"videoId"}
        for answer in (image["imageId"], voice["voiceId"], video["videoId"]):
            assert answer.startswith("{") and "}." in answer
        sent = await send(
            client,
            servers,
            key,
            {"type": "Plain", "text": "look"},
            {"type": "Image", "imageId": image["imageId"]},
        )
        assert sent["code"] == 0
        assert (await send(client, servers, key, {"type": "Voice", "voiceId": voice["voiceId"]}))["code"] == 0
        assert (
            await send(client, servers, key, {"type": "ShortVideo", "videoId": video["videoId"], "filename": "v.mp4"})
        )["code"] == 0
        first, second, third = servers.service.sent()
        assert isinstance(first.segments[1], env.Image) and first.segments[1].data == PNG
        assert first.segments[1].content_type == "image/png" and first.segments[1].filename.endswith(".png")
        assert isinstance(second.segments[0], env.Audio) and second.segments[0].data == MP3
        assert isinstance(third.segments[0], env.File) and third.segments[0].data == MP4
        assert third.segments[0].name == "v.mp4"


async def test_uploads_by_url(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        url = "https://cdn.example/cat.png"
        image = await upload(
            client, servers, servers.http_port, "/uploadImage", data={"sessionKey": key, "type": "friend", "url": url}
        )
        assert image["url"] == url
        assert (await send(client, servers, key, {"type": "Image", "imageId": image["imageId"]}))["code"] == 0
        (sent,) = servers.service.sent()
        assert sent.segments == (env.Image(url=url),)  # Discord's side downloads it, with its own limits


async def test_file_upload_posts_the_file_and_answers_a_remote_file(tmp_path: Path) -> None:
    data = b"%PDF-1.4 hello"
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        answer = await upload(
            client,
            servers,
            servers.http_port,
            "/file/upload",
            data={"sessionKey": key, "type": "group", "target": str(GROUP), "path": "/docs"},
            files={"file": ("report.pdf", data, "application/pdf")},
        )
        assert answer["code"] == 0 and answer["msg"] == ""
        remote = answer["data"]
        assert remote["name"] == "report.pdf" and remote["path"] == "/docs/report.pdf"
        assert remote["size"] == len(data) and remote["isFile"] and not remote["isDirectory"]
        assert remote["md5"] == hashlib.md5(data).hexdigest() and remote["sha1"] == hashlib.sha1(data).hexdigest()
        assert remote["contact"] == {"id": GROUP, "name": "general", "permission": "ADMINISTRATOR"}
        assert remote["uploaderId"] == BOT
        (sent,) = servers.service.sent()
        assert sent.conversation == env.ConversationRef.group(GROUP)
        (file,) = sent.segments
        assert isinstance(file, env.File) and file.data == data and file.name == "report.pdf"
        # the same file in a later chain is sent again
        assert (await send(client, servers, key, {"type": "File", "id": remote["id"], "name": "again.pdf", "size": 1}))[
            "code"
        ] == 0
        again = servers.service.sent()[-1].segments[0]
        assert isinstance(again, env.File) and again.data == data and again.name == "again.pdf"


async def test_file_upload_failures_are_mirai_codes(tmp_path: Path) -> None:
    service = FakeService()
    service.fail[env.SendMessage] = CommandFailed(FailureKind.NOT_FOUND, "unknown channel")
    async with mirai_servers(tmp_path, service=service) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        files = {"file": ("a.txt", b"x")}
        friend = await upload(
            client,
            servers,
            servers.http_port,
            "/file/upload",
            data={"sessionKey": key, "type": "friend", "target": "1"},
            files=files,
        )
        assert friend["code"] == 6
        no_target = await upload(
            client, servers, servers.http_port, "/file/upload", data={"sessionKey": key, "type": "group"}, files=files
        )
        assert no_target == {"code": 400, "msg": "参数错误，缺少字段: target"}
        missing = await upload(
            client,
            servers,
            servers.http_port,
            "/file/upload",
            data={"sessionKey": key, "type": "group", "target": "9"},
            files=files,
        )
        assert missing["code"] == 5 and "unknown channel" in missing["msg"]


@pytest.mark.parametrize(
    ("path", "part", "data", "fragment"),
    [
        ("/uploadImage", "img", b"GIF89a" + b"\x00" * 10 + b"MZ", None),  # a GIF is fine
        (
            "/uploadImage",
            "img",
            b"MZ\x90\x00 an executable",
            "图片上传错误: the image is not PNG, JPEG, GIF, WebP or BMP",
        ),
        ("/uploadVoice", "voice", PNG, "语音上传错误: the voice is not AMR, SILK, MP3, Ogg, WAV, FLAC or M4A (PNG)"),
        ("/uploadShortVideo", "video", MP3, "视频上传错误: the video is not MP4, MOV or WebM (MP3)"),
        (
            "/uploadImage",
            "img",
            PNG + b"\x00" * 5000,
            "图片上传错误: the image is 5072 bytes; Discord takes at most 4096",
        ),
    ],
)
async def test_refusals(tmp_path: Path, path: str, part: str, data: bytes, fragment: str | None) -> None:
    async with mirai_servers(tmp_path, max_upload_bytes=4096) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        answer = await upload(
            client,
            servers,
            servers.http_port,
            path,
            data={"sessionKey": key, "type": "group"},
            files={part: ("f", data)},
        )
        if fragment is None:
            assert "imageId" in answer
        else:
            assert answer["code"] == 400 and answer["msg"].startswith(fragment), answer
            assert len(servers.uploads) == 0


async def test_upload_sessions_and_missing_parts(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path) as servers, httpx.AsyncClient() as client:
        files = {"img": ("a.png", PNG)}
        no_session = await upload(
            client, servers, servers.http_port, "/uploadImage", data={"type": "group"}, files=files
        )
        assert no_session == {"code": 3, "msg": "Session失效或不存在"}
        key = await servers.session(client)
        by_header = await upload(
            client,
            servers,
            servers.http_port,
            "/uploadImage",
            data={"type": "group"},
            files=files,
            headers={"sessionKey": key},
        )
        assert "imageId" in by_header
        nothing = await upload(
            client,
            servers,
            servers.http_port,
            "/uploadImage",
            data={"sessionKey": key, "type": "group"},
            files={"other": ("a", b"1")},
        )
        assert nothing == {"code": 400, "msg": "参数错误，缺少字段: img"}
        bad_type = await upload(
            client, servers, servers.http_port, "/uploadImage", data={"sessionKey": key, "type": "channel"}, files=files
        )
        assert bad_type["code"] == 400 and "type must be group, friend or temp" in bad_type["msg"]
        not_multipart = await client.post(f"{servers.http_base}/uploadImage", json={"sessionKey": key})
        assert not_multipart.status_code == 415


async def test_a_forgotten_upload_is_code_5_and_files_are_private(tmp_path: Path) -> None:
    async with mirai_servers(tmp_path, total_upload_bytes=150) as servers, httpx.AsyncClient() as client:
        key = await servers.session(client)
        form = {"sessionKey": key, "type": "group"}
        first = await upload(
            client, servers, servers.http_port, "/uploadImage", data=form, files={"img": ("a", PNG + b"1" * 20)}
        )
        await upload(
            client, servers, servers.http_port, "/uploadImage", data=form, files={"img": ("b", PNG + b"2" * 20)}
        )
        # 2 × 92 bytes > 150: the older one was deleted to make room
        gone = await send(client, servers, key, {"type": "Image", "imageId": first["imageId"]})
        assert gone["code"] == 5 and "no longer kept" in gone["msg"]
        folder = tmp_path / "bridge.sqlite3.uploads"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        (kept,) = os.listdir(folder)
        assert stat.S_IMODE((folder / kept).stat().st_mode) == 0o600
