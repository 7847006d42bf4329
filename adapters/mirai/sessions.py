"""mirai-api-http's sessions, shared by every transport (sans-I/O: takes ``now``, draws keys from an injected rng).

A session is what a framework authenticates into (docs/mirai-api-http.md §5.1): a key, the bot it is bound to, and
the connections that hold it. MAH keeps one global store of sessions across its adapters, so a key made over
http works on ws and reverse-ws (§3.3 rows f–h), and :class:`SessionRegistry` is that store for the bridge:

* **ws / reverse-ws** authenticate with :meth:`SessionRegistry.open` (§3.3 rows b–h, §4.2): a wrong verifyKey →
  code 1; single mode → the one session ``"SINGLE_SESSION"``; with ``sessionKey`` → that session if it is known
  (else 3) and bound (else 4); with ``qq`` → a fresh session bound to the bot when ``qq`` is the bot (else 2).
  Each such connection holds one reference and gives it back with :meth:`SessionRegistry.leave` when it ends.
* **http** (§11.2) makes an *unbound* session with :meth:`SessionRegistry.verify` (it expires
  :data:`UNBOUND_SESSION_TTL` seconds later unless bound), binds it with :meth:`SessionRegistry.bind` (which holds
  a reference until :meth:`SessionRegistry.release`), and finds it for every command with
  :meth:`SessionRegistry.lookup` (3 unknown, 4 unbound). In single mode every key means the single session and
  ``/bind`` answers 6.
* A session is removed when its last reference is given back, or at once by ``/release``; either way its close
  listeners are called, so a websocket using a session released over http is closed (§4.2).

Leniency kept from the reverse-ws adapter (docs/architecture.md §4): a ``verify`` with neither ``qq`` nor ``sessionKey``
binds to the bridge's one bot instead of answering 400 (§3.3 row e). The bridge has exactly one bot: a ``qq``
that is not its id (or any ``qq`` before Discord's READY told the bridge its id) is "no such bot", code 2.

Session keys are 8 random ``[A-Za-z0-9]`` characters (§5.1), drawn again on a collision. They are secrets:
never in a repr or a log line.
"""

from __future__ import annotations

import hmac
import random
import string
from collections.abc import Callable
from typing import Final, TypeAlias

import attrs

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode

__all__ = [
    "SESSION_KEY_ALPHABET",
    "SESSION_KEY_LENGTH",
    "UNBOUND_SESSION_TTL",
    "Refused",
    "Session",
    "SessionRegistry",
    "keys_equal",
]

#: docs/mirai-api-http.md §5.1: session keys are 8 random [A-Za-z0-9] characters
SESSION_KEY_ALPHABET: Final = string.ascii_letters + string.digits
SESSION_KEY_LENGTH: Final = 8
#: seconds an http session made by /verify lives unless /bind binds it (docs/mirai-api-http.md §5.1)
UNBOUND_SESSION_TTL: Final = 180.0


@attrs.define(eq=False)
class Session:
    """One session: its key, the bot it is bound to (0: not yet), and who holds it."""

    key: str = attrs.field(repr=False)
    created: float
    bot_id: int = 0
    #: ws/reverse-ws connections using it, plus one while http holds it (from /bind to /release)
    references: int = 0
    held_by_http: bool = False
    closed: bool = False
    _close_listeners: list[Callable[[], None]] = attrs.field(factory=list, repr=False)

    @property
    def bound(self) -> bool:
        return self.bot_id != 0

    def add_close_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` once when the session is removed (synchronously; it must not block)."""
        self._close_listeners.append(listener)

    def remove_close_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._close_listeners:
            self._close_listeners.remove(listener)

    def _close(self) -> None:
        self.closed = True
        listeners, self._close_listeners = self._close_listeners, []
        for listener in listeners:
            listener()


@attrs.frozen
class Refused:
    """A refusal in mirai's terms: the status code to answer and, for the log, why."""

    code: StatusCode
    reason: str

    def data(self) -> dict[str, object]:
        """``{"code": N, "msg": <mirai's standard message>}``, what every transport answers."""
        return codec.status_data(self.code)


Outcome: TypeAlias = Session | Refused


def keys_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so a key cannot be guessed byte by byte from the reply timing."""
    return hmac.compare_digest((given or "").encode("utf-8"), expected.encode("utf-8"))


class SessionRegistry:
    """Every session of the bridge, whatever transport made it. Single-threaded (the trio thread)."""

    def __init__(
        self,
        *,
        verify_key: str,
        enable_verify: bool,
        single_mode: bool,
        rng: random.Random,
        unbound_ttl: float = UNBOUND_SESSION_TTL,
    ) -> None:
        self._verify_key = verify_key
        self.enable_verify = enable_verify
        self.single_mode = single_mode
        self._rng = rng
        self.unbound_ttl = unbound_ttl
        self._sessions: dict[str, Session] = {}

    def __repr__(self) -> str:
        return f"<SessionRegistry {len(self._sessions)} sessions, single_mode={self.single_mode}>"

    def __len__(self) -> int:
        return len(self._sessions)

    # ----------------------------------------------------------------- shared pieces

    def key_accepted(self, verify_key: str | None) -> bool:
        """Whether ``verify_key`` passes (always, when verify is off)."""
        return not self.enable_verify or keys_equal(verify_key, self._verify_key)

    def _new_key(self) -> str:
        while True:
            key = "".join(self._rng.choice(SESSION_KEY_ALPHABET) for _ in range(SESSION_KEY_LENGTH))
            if key not in self._sessions and key != codec.SINGLE_SESSION_KEY:
                return key

    def _single(self, bot_id: int, now: float) -> Session:
        """The single session (single mode), bound to the bot once its id is known."""
        session = self._sessions.get(codec.SINGLE_SESSION_KEY)
        if session is None:
            session = self._sessions[codec.SINGLE_SESSION_KEY] = Session(codec.SINGLE_SESSION_KEY, now)
        if bot_id:
            session.bot_id = bot_id
        return session

    def _find(self, key: str | None, now: float) -> Session | None:
        session = self._sessions.get(key) if key is not None else None
        if session is not None and not session.bound and now - session.created > self.unbound_ttl:
            self._remove(session)
            return None
        return session

    def _remove(self, session: Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        session._close()

    # ----------------------------------------------------------------- websocket transports

    def open(
        self, *, verify_key: str | None, session_key: str | None, qq: int | None, bot_id: int, now: float
    ) -> Outcome:
        """Authenticate a ws or reverse-ws connection (§3.3 rows b–h); on success it holds one reference."""
        if not self.key_accepted(verify_key):
            return Refused(StatusCode.AUTH_KEY_FAIL, "wrong verifyKey")
        if self.single_mode:
            session = self._single(bot_id, now)  # row c: qq and sessionKey ignored
        elif session_key is not None:
            found = self._find(session_key, now)
            if found is None:
                return Refused(StatusCode.ILLEGAL_SESSION, "unknown sessionKey")  # row f
            if not found.bound:
                return Refused(StatusCode.NOT_VERIFY_SESSION, "the session is not bound to the bot yet")  # row g
            session = found  # row h
        else:
            # rows d, d′ (e: no qq binds to the one bot, leniently)
            if bot_id == 0 or (qq is not None and qq != bot_id):
                return Refused(StatusCode.NO_BOT, f"qq {qq} is not this bridge's bot ({bot_id or 'not known yet'})")
            session = Session(self._new_key(), now, bot_id=bot_id)
            self._sessions[session.key] = session
        session.references += 1
        return session

    def leave(self, session: Session) -> None:
        """A ws/reverse-ws connection holding ``session`` ended; the last reference removes it."""
        if session.closed:
            return
        session.references = max(0, session.references - 1)
        if session.references == 0 and session.key != codec.SINGLE_SESSION_KEY:
            self._remove(session)

    # ----------------------------------------------------------------- http

    def verify(self, verify_key: str | None, *, bot_id: int, now: float) -> Outcome:
        """http ``/verify``: an unbound session (single mode: the single session)."""
        if not self.key_accepted(verify_key):
            return Refused(StatusCode.AUTH_KEY_FAIL, "wrong verifyKey")
        if self.single_mode:
            return self._single(bot_id, now)
        self.expire(now)
        session = Session(self._new_key(), now)
        self._sessions[session.key] = session
        return session

    def bind(self, session_key: str | None, qq: int | None, *, bot_id: int, now: float) -> Outcome:
        """http ``/bind``: bind the session to the bot ``qq``; http holds it until ``/release``."""
        if self.single_mode:
            return Refused(StatusCode.NO_OPERATE_SUPPORT, "single mode has no /bind (every key is the one session)")
        session = self._find(session_key, now)
        if session is None:
            return Refused(StatusCode.ILLEGAL_SESSION, "unknown sessionKey")
        if bot_id == 0 or qq != bot_id:
            return Refused(StatusCode.NO_BOT, f"qq {qq} is not this bridge's bot ({bot_id or 'not known yet'})")
        session.bot_id = bot_id
        if not session.held_by_http:
            session.held_by_http = True
            session.references += 1
        return session

    def lookup(self, session_key: str | None, *, bot_id: int, now: float) -> Outcome:
        """The session of an http request: 3 when unknown (or none was given), 4 when not bound yet."""
        if self.single_mode:
            return self._single(bot_id, now)  # every key means the single session (§11.2)
        session = self._find(session_key, now)
        if session is None:
            return Refused(StatusCode.ILLEGAL_SESSION, "unknown sessionKey" if session_key else "no sessionKey given")
        if not session.bound:
            return Refused(StatusCode.NOT_VERIFY_SESSION, "the session is not bound to the bot yet (POST /bind)")
        return session

    def release(self, session_key: str | None, qq: int | None, *, now: float) -> Outcome:
        """http ``/release``: the session ends for every transport using it (its websockets are closed)."""
        if self.single_mode:
            return self._sessions.get(codec.SINGLE_SESSION_KEY) or Session(codec.SINGLE_SESSION_KEY, now)
        session = self._find(session_key, now)
        if session is None:
            return Refused(StatusCode.ILLEGAL_SESSION, "unknown sessionKey")
        if session.bound and qq != session.bot_id:
            return Refused(StatusCode.NO_BOT, f"qq {qq} is not the bot of this session")
        self._remove(session)
        return session

    def expire(self, now: float) -> int:
        """Remove the unbound sessions older than :attr:`unbound_ttl`; returns how many."""
        stale = [s for s in self._sessions.values() if not s.bound and now - s.created > self.unbound_ttl]
        for session in stale:
            self._remove(session)
        return len(stale)
