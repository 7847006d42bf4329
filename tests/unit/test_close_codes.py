"""The close-code table (docs/discord.md §2.11) as a pure function."""

from __future__ import annotations

import pytest

from adapters.discord.gateway.close_codes import (
    FATAL_CLOSE_CODES,
    RESUMABLE_CLOSE_CODE,
    CloseAction,
    classify_close,
    close_reason_text,
    fatal_close_advice,
)


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (None, CloseAction.RESUME),  # socket died without a close frame
        (1000, CloseAction.RESUME),  # from the server: try to resume, op 9 tells us if it's gone
        (1001, CloseAction.RESUME),
        (1006, CloseAction.RESUME),
        (1009, CloseAction.RESUME),
        (1011, CloseAction.RESUME),
        (4000, CloseAction.RESUME),
        (4001, CloseAction.RESUME),
        (4002, CloseAction.RESUME),
        (4003, CloseAction.REIDENTIFY),
        (4004, CloseAction.FATAL),
        (4005, CloseAction.RESUME),
        (4007, CloseAction.REIDENTIFY),
        (4008, CloseAction.RESUME),
        (4009, CloseAction.REIDENTIFY),
        (4010, CloseAction.FATAL),
        (4011, CloseAction.FATAL),
        (4012, CloseAction.FATAL),
        (4013, CloseAction.FATAL),
        (4014, CloseAction.FATAL),
        (4999, CloseAction.RESUME),  # unknown future code: not fatal
    ],
)
def test_classify_close(code: int | None, action: CloseAction) -> None:
    assert classify_close(code) is action


def test_our_close_code_keeps_the_session() -> None:
    assert 4000 <= RESUMABLE_CLOSE_CODE < 5000
    assert RESUMABLE_CLOSE_CODE not in (1000, 1001, 1006)
    assert classify_close(RESUMABLE_CLOSE_CODE) is CloseAction.RESUME


@pytest.mark.parametrize("code", sorted(FATAL_CLOSE_CODES))
def test_every_fatal_code_has_specific_advice(code: int) -> None:
    advice = fatal_close_advice(code, ("GUILDS",))
    assert advice
    assert "not recoverable" not in advice
    assert close_reason_text(code) != "close code"


def test_4014_names_the_privileged_intents_that_were_requested() -> None:
    advice = fatal_close_advice(4014, ("GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT"))
    assert "Message Content Intent (MESSAGE_CONTENT)" in advice
    assert "Server Members Intent" not in advice
    assert "Developer Portal" in advice
    assert "discord.intents" in advice


def test_4014_without_known_privileged_intents_lists_all_of_them() -> None:
    advice = fatal_close_advice(4014, ())
    for portal_name in ("Server Members Intent", "Presence Intent", "Message Content Intent"):
        assert portal_name in advice


def test_4004_advice_points_to_the_token_setting() -> None:
    assert "discord.token_env" in fatal_close_advice(4004)


@pytest.mark.parametrize("code", [None, 1000, 1001, 4000, 4002, 4005, 4008, 4999])
def test_without_a_session_a_close_never_says_resume(code: int | None) -> None:
    # issue 15: a connection that ended before READY has nothing to resume; the log must not promise it
    assert classify_close(code, has_session=False) is CloseAction.REIDENTIFY


def test_without_a_session_fatal_codes_stay_fatal() -> None:
    assert all(classify_close(code, has_session=False) is CloseAction.FATAL for code in FATAL_CLOSE_CODES)
