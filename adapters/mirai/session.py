"""mirai-api-http reverse-ws session state machine (sans-I/O).

The bridge dials the framework's websocket server; the framework authenticates with ``verify``. This machine
reproduces mirai-api-http's ``handleReverseWs`` (docs/mirai-api-http.md §3.3, §3.5), with the leniencies of
docs/architecture.md §4:

``AWAITING_VERIFY`` (the bridge never speaks first)
    * ``verify`` → the session registry decides (:meth:`~adapters.mirai.sessions.SessionRegistry.open`, shared
      with the ws and http adapters, so a ``sessionKey`` made over http works here: rows f–h): the verifyKey
      when ``enable_verify`` (constant-time compare); single mode → session ``"SINGLE_SESSION"``; a
      ``sessionKey`` → that session (unknown: raw code 3, not bound: raw code 4); otherwise ``qq`` (number,
      numeric string or missing) must be the bot id (else the raw code-2 frame) and a fresh 8-char
      ``[A-Za-z0-9]`` session key is drawn from the injected rng.
      Success → the wrapped ``{"code":0,"session":...}`` reply, then a pushed ``BotOnlineEvent``, then
      :class:`Verified`. A wrong key → the raw code-1 frame; the connection stays open (as in mirai-api-http).
      The connection holds a reference to its session until :meth:`MiraiSession.leave`.
    * ``about`` / ``botList`` → answered (wrapped, same syncId); still unauthenticated.
    * any other command → the raw ``{"code":1,"msg":"Auth Key错误"}`` frame.
    * junk (not JSON, no ``command``) → ignored, no reply.

``VERIFIED``
    * ``about`` / ``botList`` → answered by the session itself, exactly as before verify (a choice: they do not
      depend on Discord state beyond the bot id);
    * ``verify`` again → wrapped code 6 (it is an unknown command once authenticated, docs/mirai-api-http.md §3.5);
    * malformed JSON / no ``command`` / oversize → the raw ``{"code":400,"msg":"无效参数"}`` frame;
    * every other command → :class:`Execute`, for the shell to dispatch concurrently.

The machine never reads the clock (``receive`` takes ``now``), never imports trio and draws randomness only from
the injected rng (through its registry).
"""

from __future__ import annotations

import enum
import logging
import random
from typing import Protocol, TypeAlias

import attrs

from adapters.mirai import codec
from adapters.mirai.codec import IncomingFrame
from adapters.mirai.sessions import SESSION_KEY_ALPHABET, SESSION_KEY_LENGTH, Refused, Session, SessionRegistry
from relay.errors import RemoteProtocolError

__all__ = [
    "SESSION_KEY_ALPHABET",
    "SESSION_KEY_LENGTH",
    "CommandDispatcher",
    "Execute",
    "FrameRejected",
    "Ignored",
    "MiraiSession",
    "SendFrame",
    "SessionAction",
    "SessionState",
    "Verified",
]

log = logging.getLogger(__name__)


class CommandDispatcher(Protocol):
    """Runs one authenticated mirai command and returns the ``data`` object of its response.

    Implemented by ``adapters/mirai/handlers.py`` (decode → envelope command → relay → encode). ``data`` is the
    whole result object (``{"code":0,"msg":"success","messageId":5}``, a bare profile, ...). Command failures
    are returned as ``{"code": N, "msg": ...}``; an exception escaping ``dispatch`` is a bug and is answered
    with code 500 by the client.
    """

    async def dispatch(self, command: str, sub_command: str | None, content: object) -> dict[str, object]: ...


class SessionState(enum.Enum):
    AWAITING_VERIFY = "awaiting_verify"
    VERIFIED = "verified"


# --------------------------------------------------------------------------- actions (outputs)


@attrs.frozen
class SendFrame:
    """Write this text frame to the socket (handshake replies, rejections, immediate answers)."""

    text: str


@attrs.frozen
class Verified:
    """The framework is authenticated; the shell starts delivering events (after the frames before this)."""

    session_key: str = attrs.field(repr=False)


@attrs.frozen
class Execute:
    """Dispatch this command and answer it with the same syncId."""

    frame: IncomingFrame


@attrs.frozen
class Ignored:
    """Nothing to send; ``reason`` is for a debug log line."""

    reason: str


@attrs.frozen
class FrameRejected:
    """An incoming frame broke the rules after verify (the raw code-400 frame precedes this action)."""

    reason: str


SessionAction: TypeAlias = SendFrame | Verified | Execute | Ignored | FrameRejected


# --------------------------------------------------------------------------- the machine


@attrs.define
class MiraiSession:
    """One connection's pre-auth/auth state. Feed it every received message with :meth:`receive`."""

    verify_key: str = attrs.field(repr=False)
    enable_verify: bool
    single_mode: bool
    reserved_sync_id: str
    max_frame_bytes: int
    rng: random.Random = attrs.field(repr=False)
    state: SessionState = SessionState.AWAITING_VERIFY
    session_key: str | None = attrs.field(default=None, repr=False)
    bot_id: int = 0  #: the bot the session is bound to (set on verify)
    #: the sessions of every transport; a private one (from the fields above) when not given
    registry: SessionRegistry | None = attrs.field(default=None, repr=False)
    #: the registry's session this connection holds (after verify)
    session: Session | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.registry is None:
            self.registry = SessionRegistry(
                verify_key=self.verify_key,
                enable_verify=self.enable_verify,
                single_mode=self.single_mode,
                rng=self.rng,
            )

    def receive(
        self, data: str | bytes, *, bot_id: int, now: float = 0.0, bot_online: bool = True
    ) -> list[SessionAction]:
        """Process one incoming message. ``bot_id`` is the identity the bridge presents right now; ``now`` is the
        clock of the registry (it expires unbound http sessions); ``bot_online`` whether the bot's Discord
        connection is up (what a successful verify announces)."""
        if self.state is SessionState.AWAITING_VERIFY:
            return self._receive_pre_auth(data, bot_id, now, bot_online)
        return self._receive_verified(data, bot_id)

    def leave(self) -> None:
        """The connection ended: give its reference to the session back (idempotent)."""
        session, self.session = self.session, None
        if session is not None and self.registry is not None:
            self.registry.leave(session)

    # ----------------------------------------------------------------- pre-auth

    def _receive_pre_auth(self, data: str | bytes, bot_id: int, now: float, bot_online: bool) -> list[SessionAction]:
        try:
            frame = codec.decode_frame(data, max_frame_bytes=self.max_frame_bytes)
        except RemoteProtocolError as exc:  # includes FrameTooLarge: mirai-api-http ignores unparseable frames
            return [Ignored(f"pre-auth frame ignored: {exc}")]
        if frame.command == "verify":
            return self._verify(frame, bot_id, now, bot_online)
        if frame.command in ("about", "botList"):
            return [SendFrame(self._answer_builtin(frame, bot_id))]
        return [SendFrame(codec.encode_raw(codec.AUTH_KEY_FAIL))]

    def _verify(self, frame: IncomingFrame, bot_id: int, now: float, bot_online: bool) -> list[SessionAction]:
        try:
            content = codec.decode_verify_content(frame.content)
        except RemoteProtocolError as exc:
            log.warning("verify rejected: %s", exc)
            return [SendFrame(codec.encode_raw(codec.AUTH_KEY_FAIL))]  # row a
        assert self.registry is not None  # set in __attrs_post_init__
        outcome = self.registry.open(
            verify_key=content.verify_key, session_key=content.session_key, qq=content.qq, bot_id=bot_id, now=now
        )
        if isinstance(outcome, Refused):
            if outcome.code is codec.StatusCode.AUTH_KEY_FAIL:
                log.warning("verify rejected: wrong verifyKey (check mirai.verify_key against the framework's)")
            else:
                log.warning("verify rejected (code %d): %s", outcome.code, outcome.reason)
            return [SendFrame(codec.encode_raw(outcome.data()))]  # rows b, d, f, g: raw, the connection stays open
        self.state = SessionState.VERIFIED
        self.session = outcome
        self.session_key = outcome.key
        self.bot_id = outcome.bot_id or bot_id
        return [
            SendFrame(codec.encode_response(frame.sync_id, codec.verify_success_data(outcome.key))),
            # one event right away, or Ariadne never becomes usable (docs/mirai-api-http.md §3.7): the truth about the
            # bot — online, or dropped while Discord is away (a BotReloginEvent follows when it is back)
            SendFrame(
                codec.encode_event(
                    self.reserved_sync_id,
                    codec.bot_online_event_data(self.bot_id)
                    if bot_online
                    else codec.bot_dropped_event_data(self.bot_id),
                )
            ),
            Verified(outcome.key),
        ]

    # ----------------------------------------------------------------- verified

    def _receive_verified(self, data: str | bytes, bot_id: int) -> list[SessionAction]:
        try:
            frame = codec.decode_frame(data, max_frame_bytes=self.max_frame_bytes)
        except RemoteProtocolError as exc:  # includes FrameTooLarge
            return [SendFrame(codec.encode_raw(codec.INVALID_PARAMETER)), FrameRejected(str(exc))]
        if frame.command == "verify":
            return [SendFrame(codec.encode_response(frame.sync_id, codec.NO_OPERATE_SUPPORT))]
        if frame.command in ("about", "botList"):
            return [SendFrame(self._answer_builtin(frame, bot_id))]
        return [Execute(frame)]

    def _answer_builtin(self, frame: IncomingFrame, bot_id: int) -> str:
        if frame.command == "about":
            return codec.encode_response(frame.sync_id, codec.about_data())
        return codec.encode_response(frame.sync_id, codec.bot_list_data(bot_id))
