"""The Discord edge validates and contains (issue 15): ids outside 0 < id < 2**63 are refused with a warning that
names the dispatch, and an error while handling one dispatch is logged with its name and skipped."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from adapters.discord.cache import DiscordCache
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.gateway.payloads import PayloadDecoder
from adapters.discord.own_actions import OwnActions
from adapters.discord.snowflakes import SNOWFLAKE_LIMIT, parse_snowflake, to_int
from relay import envelope as env
from relay.config import MappingConfig
from relay.errors import InvalidSnowflake, RemoteProtocolError, StoreError
from tests.unit.test_discord_events_in import GENERAL, NOW, load, make, ready_payload, text_message

OUT_OF_RANGE: list[object] = [
    SNOWFLAKE_LIMIT,
    str(SNOWFLAKE_LIMIT),
    10**400,
    "1" + "0" * 400,
    "9" * 5000,  # beyond int()'s digit limit: still refused, not read as "absent"
    -1,
    "-5",
    1.5,
    1.8446744073709552e19,  # what orjson makes of 2**64
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_to_int_refuses_what_is_not_a_snowflake(value: object) -> None:
    with pytest.raises(InvalidSnowflake):
        to_int(value)
    assert parse_snowflake(value) is None


def test_to_int_takes_the_whole_range_and_stays_lenient_about_absence() -> None:
    assert to_int(str(SNOWFLAKE_LIMIT - 1)) == SNOWFLAKE_LIMIT - 1
    assert to_int(SNOWFLAKE_LIMIT - 1) == SNOWFLAKE_LIMIT - 1
    assert to_int(None) == 0 and to_int("") == 0 and to_int("abc", 7) == 7 and to_int([1]) == 0
    assert to_int("a long text that is not a number at all") == 0
    assert parse_snowflake("0") is None  # 0 < id


def test_invalid_snowflake_is_both_a_value_error_and_a_relay_error() -> None:
    exc = InvalidSnowflake(10**400)
    assert isinstance(exc, ValueError) and isinstance(exc, RemoteProtocolError)
    assert len(str(exc)) < 100  # never the whole 400-digit number in a log line


@pytest.mark.parametrize("field", ["id", "author", "channel_id", "guild_id"])
def test_a_message_with_an_out_of_range_id_is_refused_naming_the_dispatch(
    field: str, caplog: pytest.LogCaptureFixture
) -> None:
    translator, _ = make()
    data = text_message("hi")
    if field == "author":
        data["author"]["id"] = str(2**64)
    else:
        data[field] = str(10**30)
    with caplog.at_level(logging.WARNING):
        assert translator.on_dispatch("MESSAGE_CREATE", data, NOW) == []
    assert "refused a MESSAGE_CREATE dispatch" in caplog.text
    assert translator.malformed_dispatches == 1
    # the next message is unaffected
    (event,) = translator.on_dispatch("MESSAGE_CREATE", text_message("after"), NOW)
    assert isinstance(event, env.MessageReceived)


def test_an_out_of_range_id_inside_a_guild_create_refuses_that_dispatch(caplog: pytest.LogCaptureFixture) -> None:
    cache = DiscordCache()
    translator = DispatchTranslator(EntityFactory(cache, MappingConfig()), OwnActions())
    translator.on_dispatch("READY", ready_payload(), NOW)
    guild = load("guild_create.json")
    guild["members"][0]["user"]["id"] = str(2**63)
    with caplog.at_level(logging.WARNING):
        assert translator.on_dispatch("GUILD_CREATE", guild, NOW) == []
    assert "refused a GUILD_CREATE dispatch" in caplog.text


def test_an_exception_while_handling_a_dispatch_is_logged_with_its_name_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def failing_factory(**fields: Any) -> env.Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreError("the store is closed")
        return env.Message(**fields)

    cache = DiscordCache()
    translator = DispatchTranslator(EntityFactory(cache, MappingConfig()), OwnActions(), new_message=failing_factory)
    translator.on_dispatch("READY", ready_payload(), NOW)
    translator.on_dispatch("GUILD_CREATE", load("guild_create.json"), NOW)
    with caplog.at_level(logging.WARNING):
        assert translator.on_dispatch("MESSAGE_CREATE", text_message("one"), NOW) == []
        (event,) = translator.on_dispatch("MESSAGE_CREATE", text_message("two"), NOW)
    assert isinstance(event, env.MessageReceived) and event.message.channel_id == GENERAL
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert "MESSAGE_CREATE" in record.getMessage() and record.exc_info is not None
    assert translator.failed_dispatches == 1


def test_deep_nesting_in_a_message_is_contained() -> None:
    translator, _ = make()
    data = text_message("outer")
    inner: dict[str, Any] = {"content": "x"}
    for _ in range(5_000):  # forwarded inside forwarded...: deep enough for RecursionError
        inner = {"content": "x", "message_snapshots": [{"message": inner}]}
    data["message_snapshots"] = [{"message": inner}]
    assert translator.on_dispatch("MESSAGE_CREATE", data, NOW) == []
    assert translator.failed_dispatches == 1


def test_a_used_dispatch_whose_d_is_not_an_object_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    translator, _ = make()
    with caplog.at_level(logging.WARNING):
        assert translator.on_dispatch("GUILD_MEMBER_ADD", ["not", "an", "object"], NOW) == []
        assert translator.on_dispatch("SESSIONS_REPLACE", [{"status": "online"}], NOW) == []
    assert "skipping malformed GUILD_MEMBER_ADD" in caplog.text
    assert "SESSIONS_REPLACE" not in caplog.text
    assert translator.on_dispatch("RESUMED", None, NOW)  # RESUMED's d is null: still handled


def test_gateway_json_nested_too_deeply_is_a_remote_protocol_error() -> None:
    decoder = PayloadDecoder(compressed=False, max_size=1 << 20)
    deep = '{"op":0,"t":"X","s":1,"d":' + "[" * 50_000 + "]" * 50_000 + "}"
    with pytest.raises(RemoteProtocolError):
        decoder.feed(deep)
