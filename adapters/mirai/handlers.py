"""The mirai command handler: decode → ``CommandService.execute`` → encode, with command admission
(docs/mirai-api-http.md §3.4–3.5, §6). Transport-independent.

Every transport calls :meth:`MiraiCommandHandler.dispatch` with what a command is — its name, ``subCommand`` and
``content`` — and sends the returned ``data`` object back its own way: the reverse-ws connection wraps it with
the request's ``syncId``; an http adapter would send it as the response body (docs/mirai-api-http.md §11.3). Whatever
happens, ``dispatch`` returns a mirai-shaped ``data`` object: a bad command must never kill the connection. Only
cancellation propagates.

One :class:`CommandAdmission` is shared by the handlers of every connection: it counts the commands in flight
and, once the bridge shuts down, refuses new ones so the in-flight ones can finish. :class:`PresentedIdentity`
is the bot as frameworks see it, and holds the :class:`~relay.ports.IdPresenter` every id goes through
(``[mirai] ids``): the handler decodes commands and encodes results with it, and the ids a result shows for the
first time are durable before ``dispatch`` returns it (``ids.deferred()``).

Uploads: an Image, Voice or File of a send command that names an id the bridge issued for an upload
(:mod:`adapters.mirai.uploads`) gets that upload's bytes (read in a worker thread) before the command goes on,
so Discord's side sends them as an attachment; an upload by url gets its url. An id whose upload is no longer
kept is answered with code 5.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

import attrs
import trio

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode
from adapters.mirai.commands_in import KNOWN_COMMANDS, BridgeQuery, LocalAnswer, answer_query, decode_command
from adapters.mirai.results_out import encode_failure, encode_result
from adapters.mirai.uploads import StoredUpload
from relay import envelope as env
from relay.errors import CommandFailed, FailureKind
from relay.ids import SNOWFLAKE_IDS
from relay.ports import BotIdentity, CommandService, IdPresenter

log = logging.getLogger(__name__)

__all__ = [
    "UNKNOWN_COMMAND",
    "CommandAdmission",
    "CommandCounts",
    "MiraiCommandHandler",
    "PresentedIdentity",
    "UploadResolver",
]

#: how mirai-api-http's http adapter words a missing field (docs/mirai-api-http.md §11.3)
HTTP_MISSING_FIELD: Final = "参数错误，缺少字段: "
#: how a command name the bridge does not know is counted (names come from frameworks: unbounded otherwise)
UNKNOWN_COMMAND = "(unknown)"


class UploadResolver(Protocol):
    """What an upload id stands for (:class:`adapters.mirai.uploads.UploadStore`); called in a worker thread."""

    def resolve(self, media_id: str) -> StoredUpload | None: ...


@attrs.frozen
class PresentedIdentity:
    """The bot as frameworks see it: ``override`` (``[mirai] bot_id``) when set, else the Discord bot user id as
    ``ids`` presents it (the id itself, or its small id with ``[mirai] ids = "small"``; 0 before READY).

    ``bot_id`` is the qq frameworks bind with: ``verify``'s qq, ``botList``, ``sessionInfo``, ``BotOnlineEvent``
    and the like, the reverse-ws ``qq`` header, the webhook ``qq``/``bot`` headers, the receiver in private
    quotes. Where the bot appears as a user (a member of a group, an ``At``, the sender of its messages), it is
    the presented Discord id, override or not. ``discord`` is whatever knows the Discord bot (the Discord cache),
    seen only through :class:`~relay.ports.BotIdentity`.
    """

    discord: BotIdentity
    override: int = 0
    ids: IdPresenter = SNOWFLAKE_IDS

    @property
    def bot_id(self) -> int:
        return self.override or self.ids.present(self.discord.bot_id)

    @property
    def bot_name(self) -> str:
        return self.discord.bot_name


@attrs.define
class CommandAdmission:
    """Counts the commands in flight across every handler sharing it; once :meth:`drain` began, new commands
    are not admitted (their handler answers them with code 500 instead of running them)."""

    in_flight: int = 0
    draining: bool = False
    _idle: trio.Event = attrs.field(factory=trio.Event, repr=False)

    def admit(self) -> bool:
        """Count one more command in flight; ``False`` (nothing counted) while draining."""
        if self.draining:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """An admitted command was answered."""
        self.in_flight -= 1
        if self.draining and self.in_flight == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Refuse new commands and wait until the in-flight ones are answered (callers bound the wait)."""
        self.draining = True
        if self.in_flight == 0:
            return
        await self._idle.wait()


@attrs.define
class CommandCounts:
    """Commands answered, by command name and the mirai status code of the answer (0 when it carries none, as
    ``botProfile``'s bare object); shared by every handler made from one. A plain dict updated once per command
    and copied by the metrics at scrape time."""

    answered: dict[tuple[str, int], int] = attrs.field(factory=dict)

    def record(self, command: str, data: dict[str, object]) -> None:
        code = data.get("code", 0)
        key = (command if command in KNOWN_COMMANDS else UNKNOWN_COMMAND, code if isinstance(code, int) else 0)
        self.answered[key] = self.answered.get(key, 0) + 1


class MiraiCommandHandler:
    """Answers mirai commands through the relay's :class:`~relay.ports.CommandService`.

    ``bot_id``, when given, is the qq presented to frameworks instead of ``identity.bot_id`` (the same as passing
    a :class:`PresentedIdentity`). ``ids`` presents every id (default: the ``PresentedIdentity``'s, else the
    identity). ``session_key`` is what ``sessionInfo`` reports; a per-connection key can be given with
    :meth:`for_session` (cheap: the handler holds no per-connection state). ``admission`` and ``counts`` (the
    answers by command and code) are shared by every handler made from this one.
    """

    def __init__(
        self,
        service: CommandService,
        identity: BotIdentity,
        *,
        bot_id: int | None = None,
        session_key: str = codec.SINGLE_SESSION_KEY,
        admission: CommandAdmission | None = None,
        ids: IdPresenter | None = None,
        uploads: UploadResolver | None = None,
        http: bool = False,
        counts: CommandCounts | None = None,
    ) -> None:
        self._service = service
        if isinstance(identity, PresentedIdentity):  # presented already: never present its id twice
            presented = attrs.evolve(identity, override=bot_id or identity.override, ids=ids or identity.ids)
        else:
            presented = PresentedIdentity(identity, bot_id or 0, ids or SNOWFLAKE_IDS)
        self._identity = presented
        self._ids = presented.ids
        self._session_key = session_key
        self.admission = admission if admission is not None else CommandAdmission()
        self.uploads = uploads
        #: answers go out on the http adapter (a missing field is worded its way, docs/mirai-api-http.md §11.3)
        self.http = http
        self.counts = counts if counts is not None else CommandCounts()

    def for_session(self, session_key: str, *, http: bool = False) -> MiraiCommandHandler:
        """The same handler (admission, uploads, counts) reporting ``session_key`` from ``sessionInfo``; ``http``
        for the http adapter's requests."""
        return MiraiCommandHandler(
            self._service,
            self._identity,
            session_key=session_key,
            admission=self.admission,
            uploads=self.uploads,
            http=http,
            counts=self.counts,
        )

    @property
    def bot_id(self) -> int:
        return self._identity.bot_id

    @property
    def ids(self) -> IdPresenter:
        """How this handler presents and resolves ids (a transport that reads an id itself resolves it here)."""
        return self._ids

    async def dispatch(self, command: str, sub_command: str | None, content: object) -> dict[str, object]:
        """Run one mirai command; returns the response's ``data`` object (never raises but for cancellation)."""
        if not self.admission.admit():
            data = codec.status_data(
                StatusCode.INTERNAL_ERROR, f"{command}: the bridge is shutting down; retry after it restarts"
            )
        else:
            try:
                data = await self._answer(command, sub_command, content)
            finally:
                self.admission.release()
        self.counts.record(command, data)
        return data

    async def _answer(self, command: str, sub_command: str | None, content: object) -> dict[str, object]:
        try:
            decoded = decode_command(command, sub_command, content, ids=self._ids)
            if isinstance(decoded, LocalAnswer):
                if decoded.data.get("code") != StatusCode.SUCCESS:
                    log.info("mirai command %s answered locally: %s", command, decoded.data.get("msg"))
                if self.http and decoded.missing:
                    return codec.status_data(StatusCode.INVALID_PARAMETER, HTTP_MISSING_FIELD + decoded.missing)
                return dict(decoded.data)
            if isinstance(decoded, BridgeQuery):
                return answer_query(
                    decoded, bot_id=self.bot_id, bot_name=self._identity.bot_name, session_key=self._session_key
                )
            if isinstance(decoded, env.SendMessage) and self.uploads is not None:
                decoded = await self._with_uploads(decoded, self.uploads)
            result = await self._service.execute(decoded)
            with self._ids.deferred():  # the ids it shows first are durable before it is sent
                return encode_result(command, result, bot_id=self.bot_id, ids=self._ids)
        except CommandFailed as failure:
            log.info("mirai command %s failed: %s", command, failure)
            return encode_failure(failure)
        except Exception as exc:  # a bug somewhere below: answer 500, keep the connection (trio.Cancelled passes)
            log.exception("mirai command %s crashed the bridge's handler", command)
            return codec.status_data(
                StatusCode.INTERNAL_ERROR,
                f"{command}: internal error in the bridge ({type(exc).__name__}: {exc}); see the bridge log",
            )

    async def run(self, command: env.Command) -> env.Result:
        """Run an envelope command a transport built itself (``file/upload`` posts its file), under the same
        admission; raises :class:`~relay.errors.CommandFailed` (code 500 while the bridge shuts down)."""
        if not self.admission.admit():
            raise CommandFailed(FailureKind.INTERNAL, "the bridge is shutting down; retry after it restarts")
        try:
            if isinstance(command, env.SendMessage) and self.uploads is not None:
                command = await self._with_uploads(command, self.uploads)
            return await self._service.execute(command)
        finally:
            self.admission.release()

    @staticmethod
    async def _with_uploads(command: env.SendMessage, uploads: UploadResolver) -> env.SendMessage:
        """``command`` with every segment naming an upload given that upload's bytes (or url)."""
        if not any(
            isinstance(s, env.Image | env.Audio | env.File) and s.id and codec.is_upload_id(s.id)
            for s in command.segments
        ):
            return command
        segments: list[env.Segment] = []
        for segment in command.segments:
            if isinstance(segment, env.Image | env.Audio | env.File) and segment.id and codec.is_upload_id(segment.id):
                stored = await trio.to_thread.run_sync(uploads.resolve, segment.id)
                if stored is None:
                    raise CommandFailed(
                        FailureKind.NOT_FOUND,
                        f"{segment.id} was uploaded to the bridge but is no longer kept (uploads are deleted "
                        "[mirai.uploads] retention_seconds after they arrive, oldest first beyond total_bytes); "
                        "upload it again",
                    )
                segments.append(_with_upload(segment, stored))
            else:
                segments.append(segment)
        return attrs.evolve(command, segments=tuple(segments))


def _with_upload(segment: env.Image | env.Audio | env.File, stored: StoredUpload) -> env.Segment:
    if stored.url is not None:
        if isinstance(segment, env.File):
            return env.Text(stored.url)  # a file by url: Discord embeds the link
        return attrs.evolve(segment, id=None, url=stored.url)
    if isinstance(segment, env.File):
        return attrs.evolve(
            segment, data=stored.data, name=segment.name or stored.filename, content_type=stored.content_type
        )
    return attrs.evolve(segment, id=None, data=stored.data, filename=stored.filename, content_type=stored.content_type)
