"""The mirai command dispatcher: decode → ``CommandService.execute`` → encode (mirai-api-http.md §3.4–3.5, §6).

The reverse-ws client calls :meth:`MiraiCommandHandler.dispatch` once per authenticated command frame and
wraps the returned ``data`` object with the request's ``syncId``. Whatever happens, ``dispatch`` returns a
mirai-shaped ``data`` object: a bad command must never kill the connection. Only cancellation propagates.
"""

from __future__ import annotations

import logging

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode
from adapters.mirai.commands_in import BridgeQuery, LocalAnswer, answer_query, decode_command
from adapters.mirai.results_out import encode_failure, encode_result
from relay.errors import CommandFailed
from relay.ports import BotIdentity, CommandService

log = logging.getLogger(__name__)

__all__ = ["MiraiCommandHandler"]


class MiraiCommandHandler:
    """Answers mirai commands through the relay's :class:`~relay.ports.CommandService`.

    ``session_key`` is what ``sessionInfo`` reports; a per-connection key can be given with
    :meth:`for_session` (cheap: the handler holds no per-connection state).
    """

    def __init__(
        self,
        service: CommandService,
        identity: BotIdentity,
        *,
        bot_id: int | None = None,
        session_key: str = codec.SINGLE_SESSION_KEY,
    ) -> None:
        self._service = service
        self._identity = identity
        #: the qq presented to frameworks (config mirai.bot_id); None = the Discord bot user id
        self._bot_id = bot_id
        self._session_key = session_key

    def for_session(self, session_key: str) -> MiraiCommandHandler:
        """The same handler reporting ``session_key`` from ``sessionInfo``."""
        return MiraiCommandHandler(self._service, self._identity, bot_id=self._bot_id, session_key=session_key)

    @property
    def bot_id(self) -> int:
        return self._bot_id if self._bot_id else self._identity.bot_id

    async def dispatch(self, command: str, sub_command: str | None, content: object) -> dict[str, object]:
        """Run one mirai command; returns the response's ``data`` object (never raises but for cancellation)."""
        try:
            decoded = decode_command(command, sub_command, content)
            if isinstance(decoded, LocalAnswer):
                if decoded.data.get("code") != StatusCode.SUCCESS:
                    log.info("mirai command %s answered locally: %s", command, decoded.data.get("msg"))
                return dict(decoded.data)
            if isinstance(decoded, BridgeQuery):
                return answer_query(
                    decoded, bot_id=self.bot_id, bot_name=self._identity.bot_name, session_key=self._session_key
                )
            result = await self._service.execute(decoded)
            return encode_result(command, result, bot_id=self.bot_id)
        except CommandFailed as failure:
            log.info("mirai command %s failed: %s", command, failure)
            return encode_failure(failure)
        except Exception as exc:  # a bug somewhere below: answer 500, keep the connection (trio.Cancelled passes)
            log.exception("mirai command %s crashed the bridge's handler", command)
            return codec.status_data(
                StatusCode.INTERNAL_ERROR,
                f"{command}: internal error in the bridge ({type(exc).__name__}: {exc}); see the bridge log",
            )
