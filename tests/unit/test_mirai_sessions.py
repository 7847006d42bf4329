"""The session registry every transport shares (docs/mirai-api-http.md §5.1, §3.3 rows b–h, §11.2), pure with
``now``."""

from __future__ import annotations

import random
import re

import pytest

from adapters.mirai import codec
from adapters.mirai.codec import StatusCode
from adapters.mirai.session import MiraiSession, SendFrame, SessionState, Verified
from adapters.mirai.sessions import UNBOUND_SESSION_TTL, Refused, Session, SessionRegistry

KEY = "verify-key"
BOT = 4242


def registry(*, single_mode: bool = False, enable_verify: bool = True, seed: int = 1) -> SessionRegistry:
    return SessionRegistry(
        verify_key=KEY, enable_verify=enable_verify, single_mode=single_mode, rng=random.Random(seed)
    )


def session_of(outcome: Session | Refused) -> Session:
    assert isinstance(outcome, Session), outcome
    return outcome


def code_of(outcome: Session | Refused) -> StatusCode:
    assert isinstance(outcome, Refused), outcome
    return outcome.code


# --------------------------------------------------------------------------- ws / reverse-ws (open, leave)


def test_open_with_qq_makes_a_bound_session_with_a_random_key() -> None:
    sessions = registry()
    session = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    assert re.fullmatch(r"[A-Za-z0-9]{8}", session.key)
    assert (session.bot_id, session.references, session.bound) == (BOT, 1, True)
    other = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    assert other.key != session.key
    assert len(sessions) == 2


def test_keys_come_from_the_injected_rng() -> None:
    first = session_of(registry(seed=7).open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    again = session_of(registry(seed=7).open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    assert first.key == again.key


def test_a_colliding_key_is_drawn_again() -> None:
    sessions = registry(seed=3)
    taken = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0)).key
    sessions._rng = random.Random(3)  # the same draws again: the first collides
    fresh = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0)).key
    assert fresh != taken


@pytest.mark.parametrize(
    ("verify_key", "session_key", "qq", "bot_id", "code"),
    [
        ("wrong", None, BOT, BOT, StatusCode.AUTH_KEY_FAIL),  # row b
        (None, None, BOT, BOT, StatusCode.AUTH_KEY_FAIL),
        (KEY, None, 1, BOT, StatusCode.NO_BOT),  # row d: not the bot
        (KEY, None, BOT, 0, StatusCode.NO_BOT),  # before READY nobody is the bot
        (KEY, "Nope1234", None, BOT, StatusCode.ILLEGAL_SESSION),  # row f
    ],
)
def test_open_refusals(verify_key: str | None, session_key: str | None, qq: int | None, bot_id: int, code: int) -> None:
    sessions = registry()
    assert code_of(sessions.open(verify_key=verify_key, session_key=session_key, qq=qq, bot_id=bot_id, now=0)) == code
    assert len(sessions) == 0


def test_open_without_qq_binds_to_the_one_bot_leniently() -> None:  # row e, lenient
    session = session_of(registry().open(verify_key=KEY, session_key=None, qq=None, bot_id=BOT, now=0))
    assert session.bot_id == BOT


def test_verify_off_accepts_any_key() -> None:
    sessions = registry(enable_verify=False)
    session_of(sessions.open(verify_key="anything", session_key=None, qq=BOT, bot_id=BOT, now=0))
    session_of(sessions.verify(None, bot_id=BOT, now=0))


def test_an_http_session_works_on_websockets_rows_f_to_h() -> None:
    sessions = registry()
    made = session_of(sessions.verify(KEY, bot_id=BOT, now=0))
    # row g: known but not bound
    assert code_of(sessions.open(verify_key=KEY, session_key=made.key, qq=None, bot_id=BOT, now=1)) == 4
    session_of(sessions.bind(made.key, BOT, bot_id=BOT, now=2))
    # row h: reused, one more reference
    reused = session_of(sessions.open(verify_key=KEY, session_key=made.key, qq=None, bot_id=BOT, now=3))
    assert reused is made and made.references == 2
    sessions.leave(made)  # the websocket ends; http still holds it
    assert not made.closed and made.references == 1
    assert session_of(sessions.lookup(made.key, bot_id=BOT, now=4)) is made


def test_the_last_reference_removes_a_websocket_session_and_tells_its_listeners() -> None:
    sessions = registry()
    session = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    joined = session_of(sessions.open(verify_key=KEY, session_key=session.key, qq=None, bot_id=BOT, now=0))
    closed: list[str] = []
    session.add_close_listener(lambda: closed.append("closed"))
    sessions.leave(joined)
    assert closed == [] and len(sessions) == 1
    sessions.leave(session)
    assert closed == ["closed"] and session.closed and len(sessions) == 0
    sessions.leave(session)  # idempotent
    assert code_of(sessions.lookup(session.key, bot_id=BOT, now=0)) == StatusCode.ILLEGAL_SESSION


# --------------------------------------------------------------------------- http (verify, bind, lookup, release)


def test_http_verify_bind_lookup_release() -> None:
    sessions = registry()
    assert code_of(sessions.verify("wrong", bot_id=BOT, now=0)) == StatusCode.AUTH_KEY_FAIL
    session = session_of(sessions.verify(KEY, bot_id=BOT, now=0))
    assert not session.bound and session.references == 0
    assert code_of(sessions.lookup(session.key, bot_id=BOT, now=1)) == StatusCode.NOT_VERIFY_SESSION
    assert code_of(sessions.bind("unknown1", BOT, bot_id=BOT, now=1)) == StatusCode.ILLEGAL_SESSION
    assert code_of(sessions.bind(session.key, 99, bot_id=BOT, now=1)) == StatusCode.NO_BOT
    assert code_of(sessions.bind(session.key, None, bot_id=BOT, now=1)) == StatusCode.NO_BOT
    assert session_of(sessions.bind(session.key, BOT, bot_id=BOT, now=1)) is session
    assert session_of(sessions.bind(session.key, BOT, bot_id=BOT, now=1)) is session  # again: no second reference
    assert session.references == 1
    assert session_of(sessions.lookup(session.key, bot_id=BOT, now=10_000)) is session  # bound: never expires
    assert code_of(sessions.lookup(None, bot_id=BOT, now=1)) == StatusCode.ILLEGAL_SESSION
    assert code_of(sessions.release(session.key, 99, now=2)) == StatusCode.NO_BOT
    closed: list[bool] = []
    session.add_close_listener(lambda: closed.append(True))
    session_of(sessions.release(session.key, BOT, now=2))
    assert closed == [True]
    assert code_of(sessions.lookup(session.key, bot_id=BOT, now=3)) == StatusCode.ILLEGAL_SESSION
    assert code_of(sessions.release(session.key, BOT, now=3)) == StatusCode.ILLEGAL_SESSION


def test_release_closes_a_session_websockets_still_hold() -> None:
    sessions = registry()
    session = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    session_of(sessions.release(session.key, BOT, now=1))
    assert session.closed and len(sessions) == 0


def test_an_unbound_session_expires_after_180_seconds() -> None:
    sessions = registry()
    session = session_of(sessions.verify(KEY, bot_id=BOT, now=100.0))
    assert code_of(sessions.lookup(session.key, bot_id=BOT, now=100.0 + UNBOUND_SESSION_TTL)) == 4  # not yet
    assert code_of(sessions.bind(session.key, BOT, bot_id=BOT, now=100.0 + UNBOUND_SESSION_TTL + 0.1)) == 3
    assert session.closed
    other = session_of(sessions.verify(KEY, bot_id=BOT, now=0))
    assert sessions.expire(UNBOUND_SESSION_TTL + 1) == 1 and other.closed
    bound = session_of(sessions.verify(KEY, bot_id=BOT, now=0))
    session_of(sessions.bind(bound.key, BOT, bot_id=BOT, now=1))
    assert sessions.expire(10_000) == 0


# --------------------------------------------------------------------------- single mode


def test_single_mode_everything_is_the_one_session() -> None:
    sessions = registry(single_mode=True)
    ws = session_of(sessions.open(verify_key=KEY, session_key="whatever", qq=1, bot_id=BOT, now=0))
    assert ws.key == codec.SINGLE_SESSION_KEY and ws.bot_id == BOT
    assert session_of(sessions.verify(KEY, bot_id=BOT, now=0)) is ws
    assert code_of(sessions.bind(ws.key, BOT, bot_id=BOT, now=0)) == StatusCode.NO_OPERATE_SUPPORT
    assert session_of(sessions.lookup("any-key", bot_id=BOT, now=0)) is ws
    assert session_of(sessions.lookup(None, bot_id=BOT, now=0)) is ws
    sessions.leave(ws)
    assert not ws.closed  # the single session stays
    session_of(sessions.release("x", BOT, now=0))
    assert not ws.closed
    assert code_of(sessions.open(verify_key="wrong", session_key=None, qq=None, bot_id=BOT, now=0)) == 1


def test_keys_never_in_reprs() -> None:
    sessions = registry()
    session = session_of(sessions.open(verify_key=KEY, session_key=None, qq=BOT, bot_id=BOT, now=0))
    assert session.key not in repr(session) and session.key not in repr(sessions) and KEY not in repr(sessions)


# --------------------------------------------------------------------------- reverse-ws through the registry


def test_reverse_ws_verify_accepts_a_session_key_made_over_http() -> None:
    sessions = registry()
    made = session_of(sessions.verify(KEY, bot_id=BOT, now=0))
    machine = MiraiSession(
        verify_key=KEY,
        enable_verify=True,
        single_mode=False,
        reserved_sync_id="-1",
        max_frame_bytes=1 << 20,
        rng=random.Random(0),
        registry=sessions,
    )
    verify = codec.dumps(
        {"syncId": "#", "command": "verify", "content": {"verifyKey": KEY, "sessionKey": made.key, "qq": None}}
    )
    (reply,) = machine.receive(verify, bot_id=BOT, now=1)
    assert reply == SendFrame('{"code":4,"msg":"Session未认证"}')  # row g, raw
    unknown = verify.replace(made.key, "Unknown1")
    assert machine.receive(unknown, bot_id=BOT, now=1) == [SendFrame('{"code":3,"msg":"Session失效或不存在"}')]
    session_of(sessions.bind(made.key, BOT, bot_id=BOT, now=2))
    actions = machine.receive(verify, bot_id=BOT, now=3)
    assert actions[-1] == Verified(made.key) and machine.state is SessionState.VERIFIED
    assert made.references == 2
    machine.leave()
    machine.leave()
    assert made.references == 1
