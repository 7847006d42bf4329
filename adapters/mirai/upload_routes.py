"""mirai-api-http's multipart upload routes (trio shell), on the http adapter's port and the ws adapter's.

docs/mirai-api-http.md §11.4 (and §4.2: since 2.10 the ws server serves them too):

* ``POST /uploadImage``: ``type``, ``img`` (a file) or ``url`` → bare ``{"imageId", "url"}``;
* ``POST /uploadVoice``: ``type``, ``voice`` or ``url`` → bare ``{"voiceId"}``;
* ``POST /uploadShortVideo``: ``type``, ``video`` (+ ``thumbnail``) → bare ``{"videoId"}``;
* ``POST /file/upload``: ``type`` = ``group``, ``target``, ``path``, ``file`` → ``{"code":0,"msg":"",
  "data":RemoteFile}``.

The session comes from the headers of §11.2 or a ``sessionKey`` form field (3 unknown, 4 not bound). The bridge
keeps each upload (:class:`~adapters.mirai.uploads.UploadStore`) and answers an id of mirai's form; a message chain
that later names it sends the file as a Discord attachment. Differences that follow from Discord:

* ``type`` (group/friend/temp: where mirai uploads through) is read but changes nothing: a Discord attachment
  belongs to no conversation until it is sent; an unknown ``type`` is code 400 as in mirai-api-http;
* ``uploadImage`` answers ``url: ""`` for a file (the bridge serves no downloads), the URL itself for an
  upload by url; ``uploadShortVideo``'s ``thumbnail`` is not kept (Discord draws its own);
* ``file/upload`` is a group file on QQ, which shows up in the group's chat: the bridge posts the file as an
  attachment to the channel ``target`` right away and answers its RemoteFile (``path`` is kept in the answer
  only: Discord channels have no folders); ``type`` other than group → code 6 as in mirai-api-http.

Refusals: a file over ``[discord] max_upload_bytes``, or an image/voice/video whose bytes are not of a kind
Discord shows (:func:`~adapters.mirai.uploads.sniff`), is code 400 with mirai's ``图片上传错误`` style message
and the reason; a body over the HTTP server's limit is relay/web's 413.
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Final

import trio

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode
from adapters.mirai.handlers import HTTP_MISSING_FIELD, MiraiCommandHandler
from adapters.mirai.http_server import mirai_answer, session_key_of
from adapters.mirai.results_out import encode_failure
from adapters.mirai.sessions import Refused, SessionRegistry
from adapters.mirai.uploads import Kind, UploadRefused, UploadStore
from relay import envelope as env
from relay.errors import CommandFailed
from relay.web.bodies import media_type
from relay.web.models import Handler, Request, RequestRejected, Response
from relay.web.multipart import DEFAULT_MAX_PARTS, Part, find_part, parse_multipart
from relay.web.routing import Route

log = logging.getLogger(__name__)

__all__ = ["UPLOAD_ROUTES", "UploadRoutes"]

#: route → (kind, file part, mirai's failure message)
UPLOAD_ROUTES: Final = {
    "/uploadImage": (Kind.IMAGE, "img", "图片上传错误"),
    "/uploadVoice": (Kind.VOICE, "voice", "语音上传错误"),
    "/uploadShortVideo": (Kind.VIDEO, "video", "视频上传错误"),
    "/file/upload": (Kind.FILE, "file", "文件上传错误"),
}
_TYPES: Final = frozenset({"group", "friend", "temp"})


class UploadRoutes:
    """The four upload routes of one bridge (the same objects on every port that serves them)."""

    def __init__(
        self,
        *,
        sessions: SessionRegistry,
        store: UploadStore,
        handler: MiraiCommandHandler,
        bot_id: Callable[[], int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.handler = handler
        self.bot_id = bot_id
        self.clock = clock
        self.uploads = 0  #: uploads kept (a counter for metrics)
        self._routes = tuple(Route(("POST",), path, self._handler_for(path)) for path in UPLOAD_ROUTES)

    def routes(self) -> tuple[Route, ...]:
        return self._routes

    def _handler_for(self, path: str) -> Handler:
        kind, part_name, failure = UPLOAD_ROUTES[path]

        async def handle(request: Request) -> Response:
            return await self._upload(request, kind, part_name, failure)

        return handle

    async def _upload(self, request: Request, kind: Kind, part_name: str, failure: str) -> Response:
        parts = _form_parts(request)
        fields = {part.name: part for part in parts if part.filename is None}
        key = session_key_of(request, fields["sessionKey"].text() if "sessionKey" in fields else None)
        outcome = self.sessions.lookup(key, bot_id=self.bot_id(), now=trio.current_time())
        if isinstance(outcome, Refused):
            return mirai_answer(outcome.data())
        upload_type = fields["type"].text().strip().lower() if "type" in fields else ""
        if kind is Kind.FILE:
            if upload_type and upload_type != "group":
                return mirai_answer(
                    codec.status_data(
                        StatusCode.NO_OPERATE_SUPPORT,
                        f"file/upload: only type=group is supported (got {upload_type!r})",
                    )
                )
        elif upload_type and upload_type not in _TYPES:
            return mirai_answer(
                codec.status_data(StatusCode.INVALID_PARAMETER, f"{failure}: type must be group, friend or temp")
            )
        file_part = find_part(parts, part_name)
        url = fields["url"].text().strip() if "url" in fields and kind in (Kind.IMAGE, Kind.VOICE) else ""
        if (file_part is None or not file_part.data) and not url:
            return mirai_answer(codec.status_data(StatusCode.INVALID_PARAMETER, HTTP_MISSING_FIELD + part_name))
        now = self.clock()
        try:
            if file_part is not None and file_part.data:
                upload_id = await trio.to_thread.run_sync(
                    lambda: self.store.put(kind, file_part.data, now=now, filename=file_part.filename or "")
                )
            else:
                upload_id = await trio.to_thread.run_sync(lambda: self.store.put_url(url, now=now))
        except UploadRefused as refused:
            log.info("upload refused: %s", refused)
            return mirai_answer(codec.status_data(StatusCode.INVALID_PARAMETER, f"{failure}: {refused}"))
        self.uploads += 1
        if kind is Kind.IMAGE:
            return mirai_answer({"imageId": upload_id, "url": url})
        if kind is Kind.VOICE:
            return mirai_answer({"voiceId": upload_id})
        if kind is Kind.VIDEO:
            return mirai_answer({"videoId": upload_id})
        assert file_part is not None
        return await self._post_file(fields, file_part, upload_id, now)

    async def _post_file(self, fields: dict[str, Part], file_part: Part, upload_id: str, now: float) -> Response:
        """``file/upload``: post the file to the channel ``target`` and answer its RemoteFile."""
        if "target" not in fields:
            return mirai_answer(codec.status_data(StatusCode.INVALID_PARAMETER, HTTP_MISSING_FIELD + "target"))
        target_text = fields["target"].text().strip()
        if not target_text.isdigit():
            return mirai_answer(
                codec.status_data(
                    StatusCode.INVALID_PARAMETER,
                    f"{StatusCode.INVALID_PARAMETER.message}: target must be a group id (got {target_text[:30]!r})",
                )
            )
        presented = int(target_text)
        target = self.handler.ids.resolve(presented)  # the id frameworks see → the Discord channel ([mirai] ids)
        if target is None:
            return mirai_answer(
                codec.status_data(StatusCode.NO_ELEMENT, f"{StatusCode.NO_ELEMENT.message}: no group {presented}")
            )
        name = file_part.filename or upload_id
        folder = fields["path"].text().strip() if "path" in fields else ""
        data = file_part.data
        segment = env.File(id=upload_id, name=name, size=len(data))
        try:
            await self.handler.run(env.SendMessage(conversation=env.ConversationRef.group(target), segments=(segment,)))
            groups = await self.handler.run(env.ListGroups())
        except CommandFailed as failure:
            log.info("file/upload to group %d failed: %s", presented, failure)
            return mirai_answer(encode_failure(failure))
        group = next((g for g in groups.groups if g.id == target), None) if isinstance(groups, env.GroupList) else None
        contact = {
            "id": presented,
            "name": group.name if group else "",
            "permission": group.bot_role.value if group else "MEMBER",
        }
        path = "/" + "/".join(p for p in (*folder.strip("/").split("/"), name) if p)
        remote_file = {
            "name": name,
            "id": upload_id,
            "path": path,
            "parent": None,
            "contact": contact,
            "isFile": True,
            "isDictionary": False,
            "isDirectory": False,
            "size": len(data),
            "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "uploaderId": self.bot_id(),
            "uploadTime": int(now),
            "lastModifyTime": int(now),
            "downloadInfo": None,
        }
        return mirai_answer(codec.restful_data(remote_file))


def _form_parts(request: Request) -> tuple[Part, ...]:
    """The form's parts: multipart/form-data, or (fields only, e.g. an upload by ``url`` from a client that sends
    no file) application/x-www-form-urlencoded. A part over ``max_upload_bytes`` is refused by the store, with a
    clearer message than a 413; the HTTP server's body limit bounds what is read."""
    if media_type(request) == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(
                request.body.decode(), keep_blank_values=True, max_num_fields=DEFAULT_MAX_PARTS
            )
        except (UnicodeDecodeError, ValueError):
            raise RequestRejected(400, "the url-encoded form is not UTF-8 or has too many fields") from None
        return tuple(Part(name, None, None, value.encode()) for name, value in pairs)
    return parse_multipart(request)
