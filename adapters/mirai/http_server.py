"""mirai-api-http's ``http`` adapter (trio shell): every command an HTTP request, events polled from the outbox.

What a framework sees is mirai-api-http 2.10's http adapter (docs/mirai-api-http.md §11):

* **auth** (§11.2): ``POST /verify {"verifyKey"}`` → ``{"code":0,"session":"<key>"}`` (an unbound session,
  180 s to bind), ``POST /bind {"sessionKey","qq"}``, ``POST /release {"sessionKey","qq"}``. Sessions live in the
  registry every transport shares (:mod:`adapters.mirai.sessions`), so a key made here works on ws and reverse-ws.
  A request names its session with the header ``sessionKey: K``, ``Authorization: session K`` (or
  ``sessionKey K``), or a ``sessionKey`` query parameter (GET), JSON field (POST) or form field (uploads); none
  means ``"SINGLE_SESSION"``, which outside single mode is code 3.
* **commands** (§6.1): ``/`` + the command with ``_`` → ``/`` (``file_list`` → ``/file/list``); reads are GET with
  the parameters in the query (a list repeats its key: ``memberIds=1&memberIds=2``, ``memberIds[]`` too), writes
  POST with a JSON object body; ``groupConfig`` and ``memberInfo`` are *get* on GET and *update* on POST. The
  command goes through the same :class:`~adapters.mirai.handlers.MiraiCommandHandler` as on websockets (no
  second translation). ``about`` and ``botList`` need no session.
* **answers** (§11.3): always HTTP 200 with the mirai object as the body — state codes 1, 2, 3, 4, 5, 6, 10, 20,
  30, 400, 500 included; a missing field is ``{"code":400,"msg":"参数错误，缺少字段: <field>"}``; a body that is
  not a JSON object is code 400. Unknown paths get relay/web's 404, a wrong method its 405.
* **polling** (§11.5): ``countMessage``, ``fetchMessage``, ``fetchLatestMessage``, ``peekMessage``,
  ``peekLatestMessage`` and the legacy ``peakMessage``/``peakLatestMessage``, with ``count`` (default 10), read the
  bare event objects from the framework's outbox cursor ``http:<identity>`` (:mod:`adapters.mirai.cursors`:
  the identity is the ``client`` header or query parameter, else the bot's qq), bounded by
  ``unread_queue_max_size``. ``fetchMessage`` acknowledges: the cursor moves past what it returned, durably,
  so a framework that polls again after a restart of either side gets what came meanwhile, in order, once.
* **uploads** are :mod:`adapters.mirai.upload_routes`'s (shared with the ws adapter's port).

Every route is listed in :data:`COMMAND_ROUTES` / :data:`POLLING_ROUTES`; :meth:`HttpAdapter.mount` gives them
to the composition root (relay/listeners.py), with CORS as ``[mirai.http] cors`` says.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode
from adapters.mirai.cursors import PollQueue, http_cursor, valid_client_name
from adapters.mirai.dialed import DialedAdapter
from adapters.mirai.handlers import HTTP_MISSING_FIELD
from adapters.mirai.sessions import Refused, Session
from relay import fastjson
from relay.errors import RemoteProtocolError
from relay.listeners import Mount
from relay.web.models import Request, Response
from relay.web.routing import Route

log = logging.getLogger(__name__)

__all__ = ["COMMAND_ROUTES", "POLLING_ROUTES", "HttpAdapter", "mirai_answer", "session_key_of"]

#: route → (method, command, subCommand) for every mirai command (docs/mirai-api-http.md §6.1)
COMMAND_ROUTES: Final[dict[str, tuple[tuple[str, str, str | None], ...]]] = {
    "/about": (("GET", "about", None),),
    "/botList": (("GET", "botList", None),),
    "/sessionInfo": (("GET", "sessionInfo", None),),
    "/messageFromId": (("GET", "messageFromId", None),),
    "/friendList": (("GET", "friendList", None),),
    "/groupList": (("GET", "groupList", None),),
    "/memberList": (("GET", "memberList", None),),
    "/latestMemberList": (("GET", "latestMemberList", None),),
    "/botProfile": (("GET", "botProfile", None),),
    "/friendProfile": (("GET", "friendProfile", None),),
    "/memberProfile": (("GET", "memberProfile", None),),
    "/userProfile": (("GET", "userProfile", None),),
    "/sendFriendMessage": (("POST", "sendFriendMessage", None),),
    "/sendGroupMessage": (("POST", "sendGroupMessage", None),),
    "/sendTempMessage": (("POST", "sendTempMessage", None),),
    "/sendOtherClientMessage": (("POST", "sendOtherClientMessage", None),),
    "/sendImageMessage": (("POST", "sendImageMessage", None),),
    "/sendNudge": (("POST", "sendNudge", None),),
    "/recall": (("POST", "recall", None),),
    "/roamingMessages": (("POST", "roamingMessages", None),),
    "/file/list": (("GET", "file_list", None),),
    "/file/info": (("GET", "file_info", None),),
    "/file/mkdir": (("POST", "file_mkdir", None),),
    "/file/delete": (("POST", "file_delete", None),),
    "/file/move": (("POST", "file_move", None),),
    "/file/rename": (("POST", "file_rename", None),),
    "/deleteFriend": (("POST", "deleteFriend", None),),
    "/mute": (("POST", "mute", None),),
    "/unmute": (("POST", "unmute", None),),
    "/kick": (("POST", "kick", None),),
    "/quit": (("POST", "quit", None),),
    "/muteAll": (("POST", "muteAll", None),),
    "/unmuteAll": (("POST", "unmuteAll", None),),
    "/setEssence": (("POST", "setEssence", None),),
    "/groupConfig": (("GET", "groupConfig", "get"), ("POST", "groupConfig", "update")),
    "/memberInfo": (("GET", "memberInfo", "get"), ("POST", "memberInfo", "update")),
    "/memberAdmin": (("POST", "memberAdmin", None),),
    "/anno/list": (("GET", "anno_list", None),),
    "/anno/publish": (("POST", "anno_publish", None),),
    "/anno/delete": (("POST", "anno_delete", None),),
    "/resp/newFriendRequestEvent": (("POST", "resp_newFriendRequestEvent", None),),
    "/resp/memberJoinRequestEvent": (("POST", "resp_memberJoinRequestEvent", None),),
    "/resp/botInvitedJoinGroupRequestEvent": (("POST", "resp_botInvitedJoinGroupRequestEvent", None),),
    "/cmd/execute": (("POST", "cmd_execute", None),),
    "/cmd/register": (("POST", "cmd_register", None),),
}
#: commands answered without a session (docs/mirai-api-http.md §11.2)
NO_SESSION_COMMANDS: Final = frozenset({"about", "botList"})
#: route → the polling operation (docs/mirai-api-http.md §11.5)
POLLING_ROUTES: Final = {
    "/countMessage": "count",
    "/fetchMessage": "fetch",
    "/fetchLatestMessage": "fetch_latest",
    "/peekMessage": "peek",
    "/peekLatestMessage": "peek_latest",
    "/peakMessage": "peek",  # legacy spellings
    "/peakLatestMessage": "peek_latest",
}
#: ``count`` when a poll does not say (docs/mirai-api-http.md §11.5)
DEFAULT_POLL_COUNT: Final = 10
#: query parameters that are lists even when given once (the only list parameter of a GET command)
LIST_PARAMETERS: Final = frozenset({"memberIds"})


# --------------------------------------------------------------------------- helpers shared with the uploads


def mirai_answer(data: object) -> Response:
    """The http adapter's answer: always 200, the mirai object as the JSON body (docs/mirai-api-http.md §11.3)."""
    return Response.json(data)


def _mirai_error(code: StatusCode, msg: str | None = None) -> Response:
    return mirai_answer(codec.status_data(code, msg))


def session_key_of(request: Request, fallback: str | None = None) -> str | None:
    """The session key a request names (docs/mirai-api-http.md §11.2): header ``sessionKey``, ``Authorization:
    session K`` / ``sessionKey K``, then ``fallback`` (the query, JSON or form field the caller read)."""
    header = request.header("sessionkey")
    if header:
        return header.strip()
    authorization = request.header("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() in ("session", "sessionkey") and value.strip():
            return value.strip()
    return fallback


def client_of(request: Request) -> str | None:
    """The framework identity a request names (header or query ``client``), None when none; "" when invalid."""
    name = request.header("client") or request.query_value("client")
    if name is None:
        return None
    return name if valid_client_name(name) else ""


def query_content(request: Request) -> dict[str, object]:
    """A GET's parameters as a command's content: a repeated key (or ``key[]``, or a list parameter) is a list."""
    content: dict[str, object] = {}
    for raw_key, value in request.query:
        key = raw_key[:-2] if raw_key.endswith("[]") else raw_key
        if key == "sessionKey":
            continue
        as_list = raw_key.endswith("[]") or key in LIST_PARAMETERS
        if key in content:
            previous = content[key]
            content[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            content[key] = [value] if as_list else value
    return content


def json_content(request: Request) -> dict[str, Any] | Response:
    """A POST's JSON object body ({} when empty), or the code-400 answer for anything else."""
    if not request.body.strip():
        return {}
    try:
        value = fastjson.loads(request.body)
    except ValueError:
        return _mirai_error(
            StatusCode.INVALID_PARAMETER, f"{StatusCode.INVALID_PARAMETER.message}: the body is not JSON"
        )
    if not isinstance(value, dict):
        return _mirai_error(
            StatusCode.INVALID_PARAMETER,
            f"{StatusCode.INVALID_PARAMETER.message}: the body must be a JSON object, not {type(value).__name__}",
        )
    return value


def _qq_of(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


# --------------------------------------------------------------------------- the adapter


class HttpAdapter(DialedAdapter):
    """The http adapter of one bridge; :meth:`mount` gives its routes to the listeners."""

    def __init__(self, **shared: Any) -> None:
        """``shared``: :class:`~adapters.mirai.dialed.DialedAdapter`'s."""
        super().__init__(**shared)
        self._queues: dict[str, PollQueue] = {}
        self.requests = 0  #: requests answered (a counter for metrics)
        self.polled_events = 0  #: events returned by fetch/peek

    def mount(self) -> Mount:
        routes: list[Route] = [
            Route(("POST",), "/verify", self._verify),
            Route(("POST",), "/bind", self._bind),
            Route(("POST",), "/release", self._release),
        ]
        for path, variants in COMMAND_ROUTES.items():
            by_method = {method: (command, sub) for method, command, sub in variants}
            routes.append(Route(tuple(by_method), path, self._command_handler(by_method)))
        for path, operation in POLLING_ROUTES.items():
            routes.append(Route(("GET",), path, self._poll_handler(operation)))
        routes.extend(self.extra_routes)
        http = self.config.http
        return Mount("mirai.http", http.host, http.port, tuple(routes), cors=http.cors)

    def _now(self) -> float:
        return trio.current_time()

    # ----------------------------------------------------------------- auth

    async def _verify(self, request: Request) -> Response:
        self.requests += 1
        body = json_content(request)
        if isinstance(body, Response):
            return body
        verify_key = body.get("verifyKey")
        if verify_key is None and self.sessions.enable_verify:
            return _mirai_error(StatusCode.INVALID_PARAMETER, HTTP_MISSING_FIELD + "verifyKey")
        outcome = self.sessions.verify(
            verify_key if isinstance(verify_key, str) else str(verify_key), bot_id=self.bot_id(), now=self._now()
        )
        if isinstance(outcome, Refused):
            log.warning("http /verify refused: %s", outcome.reason)
            return mirai_answer(outcome.data())
        return mirai_answer(codec.verify_success_data(outcome.key))

    async def _bind(self, request: Request) -> Response:
        return self._session_call(request, "bind")

    async def _release(self, request: Request) -> Response:
        return self._session_call(request, "release")

    def _session_call(self, request: Request, what: str) -> Response:
        """``/bind`` or ``/release``: both take ``{sessionKey, qq}``, answer a state (docs/mirai-api-http.md §5.1)."""
        self.requests += 1
        body = json_content(request)
        if isinstance(body, Response):
            return body
        missing = [name for name in ("sessionKey", "qq") if body.get(name) is None]
        if missing and not self.sessions.single_mode:
            return _mirai_error(StatusCode.INVALID_PARAMETER, HTTP_MISSING_FIELD + ", ".join(missing))
        key = body.get("sessionKey")
        session_key, qq = key if isinstance(key, str) else None, _qq_of(body.get("qq"))
        if what == "bind":
            outcome = self.sessions.bind(session_key, qq, bot_id=self.bot_id(), now=self._now())
        else:
            outcome = self.sessions.release(session_key, qq, now=self._now())
        if isinstance(outcome, Refused):
            log.info("http /%s refused: %s", what, outcome.reason)
            return mirai_answer(outcome.data())
        return mirai_answer(codec.status_data(StatusCode.SUCCESS))

    def session_of(self, request: Request, fallback: object) -> Session | Response:
        """The bound session a request names, or the answer refusing it (3, 4)."""
        key = session_key_of(request, fallback if isinstance(fallback, str) else None)
        outcome = self.sessions.lookup(key, bot_id=self.bot_id(), now=self._now())
        if isinstance(outcome, Refused):
            return mirai_answer(outcome.data())
        return outcome

    # ----------------------------------------------------------------- commands

    def _command_handler(
        self, by_method: dict[str, tuple[str, str | None]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            command, sub = by_method["GET" if request.method == "HEAD" else request.method]
            return await self._command(request, command, sub)

        return handle

    async def _command(self, request: Request, command: str, sub: str | None) -> Response:
        self.requests += 1
        content: dict[str, Any]
        if request.method in ("GET", "HEAD"):
            content = query_content(request)
            fallback = request.query_value("sessionKey")
        else:
            body = json_content(request)
            if isinstance(body, Response):
                return body
            content = body
            fallback = body.pop("sessionKey", None) or request.query_value("sessionKey")
        if command in NO_SESSION_COMMANDS:
            return mirai_answer(await self.handler.for_session("", http=True).dispatch(command, sub, content))
        session = self.session_of(request, fallback)
        if isinstance(session, Response):
            return session
        handler = self.handler.for_session(session.key, http=True)
        return mirai_answer(await handler.dispatch(command, sub, content))

    # ----------------------------------------------------------------- polling

    def _poll_handler(self, operation: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return self._poll(request, operation)

        return handle

    def queue_for(self, identity: str) -> PollQueue:
        """The unread queue of ``identity`` (its cursor registered, and counted as seen now)."""
        name = http_cursor(identity)
        self.cursors.touch(name, self._now())
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = PollQueue(self.outbox, name, window=self.config.http.unread_queue_max_size)
        return queue

    def forget_queues(self, names: list[str]) -> None:
        """The cursors ``names`` were forgotten (their pollers are gone): drop their queues too."""
        for name in names:
            self._queues.pop(name, None)

    def _poll(self, request: Request, operation: str) -> Response:
        self.requests += 1
        session = self.session_of(request, request.query_value("sessionKey"))
        if isinstance(session, Response):
            return session
        client = client_of(request)
        if client == "":
            return _mirai_error(
                StatusCode.INVALID_PARAMETER,
                f"{StatusCode.INVALID_PARAMETER.message}: client must be 1–64 characters of A-Z a-z 0-9 . _ -",
            )
        queue = self.queue_for(client or str(session.bot_id))
        if operation == "count":
            return mirai_answer(codec.restful_data(queue.count()))
        raw_count = request.query_value("count")
        count = DEFAULT_POLL_COUNT
        if raw_count is not None:
            try:
                count = int(raw_count.strip())
            except ValueError:
                return _mirai_error(
                    StatusCode.INVALID_PARAMETER,
                    f"{StatusCode.INVALID_PARAMETER.message}: count must be an integer (got {raw_count[:20]!r})",
                )
        if operation == "fetch":
            frames = queue.fetch(count)
        elif operation == "fetch_latest":
            frames = queue.fetch_latest(count)
        elif operation == "peek":
            frames = queue.peek(count)
        else:
            frames = queue.peek_latest(count)
        self.polled_events += len(frames)
        return _events_answer(frames)


def _events_answer(frames: list[str]) -> Response:
    """``{"code":0,"msg":"","data":[<event>, ...]}`` built from the frames' text (no parse, no re-encode)."""
    parts: list[str] = []
    for frame in frames:
        try:
            parts.append(codec.event_data_text(frame))
        except RemoteProtocolError:
            log.warning("an outbox frame that is no event was skipped by http polling")
    body = '{"code":0,"msg":"","data":[' + ",".join(parts) + "]}"
    return Response(200, (("content-type", "application/json; charset=utf-8"),), body.encode())
