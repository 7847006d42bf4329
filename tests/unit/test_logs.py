"""Logging: secrets never reach a log line, JSON lines are well-formed, TRACE exists."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from relay.config import BridgeConfig, DestinationConfig, DiscordConfig, MiraiConfig, ReverseWsConfig
from relay.configload import secrets_of
from relay.errors import HTTPError
from relay.logs import (
    MASK,
    TRACE,
    JsonFormatter,
    RedactionFilter,
    TextFormatter,
    level_number,
    setup_logging,
    shorten_payload,
)

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz0123456789AB"
VERIFY_KEY = "INITKEYq1w2e3r4"
HEADER = "header-credential-xyz"


def make_config() -> BridgeConfig:
    destination = DestinationConfig(host="127.0.0.1", port=8080, extra_headers={"X-Auth": HEADER})
    return BridgeConfig(
        discord=DiscordConfig(token=TOKEN),
        mirai=MiraiConfig(verify_key=VERIFY_KEY, reverse_ws=ReverseWsConfig(destinations=(destination,))),
    )


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Installs the bridge's handler on a string buffer, and removes it afterwards."""
    buffer = io.StringIO()
    handler = setup_logging("TRACE", "text", secrets_of(make_config()), stream=buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)


def assert_clean(text: str) -> None:
    for secret in (TOKEN, VERIFY_KEY, HEADER):
        assert secret not in text


def test_repr_of_config_hides_secrets() -> None:
    config = make_config()
    assert_clean(repr(config))
    assert_clean(str(config))


def test_logging_a_config_object_and_secret_args(stream: io.StringIO) -> None:
    log = logging.getLogger("relay.test")
    config = make_config()
    log.info("config: %r", config)
    log.info("token is %s and key is %s", TOKEN, VERIFY_KEY)
    log.info("dict with header %s", {"X-Auth": HEADER})
    text = stream.getvalue()
    assert_clean(text)
    assert f"token is {MASK} and key is {MASK}" in text
    assert "X-Auth" in text


def test_failing_request_exception_is_redacted(stream: io.StringIO) -> None:
    log = logging.getLogger("adapters.discord.rest.client")
    try:
        try:
            raise ConnectionError(f"connection reset while sending 'Authorization: Bot {TOKEN}'")
        except ConnectionError as cause:
            raise HTTPError(401, 0, f"401: Unauthorized for token {TOKEN}", method="GET", route="/users/@me") from cause
    except HTTPError:
        log.exception("request failed")
    text = stream.getvalue()
    assert "request failed" in text
    assert "Traceback" in text
    assert "HTTP 401" in text
    assert_clean(text)


def test_bot_authorization_pattern_is_redacted_without_knowing_the_token() -> None:
    redactor = RedactionFilter([])
    line = redactor.redact("headers={'Authorization': 'Bot some.other.tokenvalue_that-is-long'}")
    assert line == "headers={'Authorization': 'Bot ***'}"
    assert redactor.redact("Bearer abcdefghijklmnopqrstuvwxyz") == "Bearer ***"
    assert redactor.redact("Bot framework started") == "Bot framework started"  # short words are left alone


def test_longer_secret_masked_whole() -> None:
    redactor = RedactionFilter(["abcd", "abcdefgh"])
    assert redactor.redact("x abcdefgh y") == "x *** y"


def test_stack_info_is_redacted(stream: io.StringIO) -> None:
    def leaky(secret: str) -> None:
        logging.getLogger("relay.x").warning("stack follows", stack_info=True)

    leaky(TOKEN)
    assert "stack follows" in stream.getvalue()
    assert_clean(stream.getvalue())


def test_json_lines() -> None:
    buffer = io.StringIO()
    handler = setup_logging("INFO", "json", [TOKEN], stream=buffer)
    try:
        log = logging.getLogger("relay.json")
        log.info("hello %s", "world")
        try:
            raise RuntimeError(f"boom {TOKEN}")
        except RuntimeError:
            log.exception("failed")
        log.debug("not shown at INFO")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "hello world"
    assert (first["level"], first["logger"]) == ("INFO", "relay.json")
    assert first["ts"].endswith("+00:00")
    assert "exc" not in first
    assert second["msg"] == "failed"
    assert "RuntimeError: boom ***" in second["exc"]
    assert_clean(buffer.getvalue())


def test_setup_twice_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", "text", [], stream=first)
    handler = setup_logging("INFO", "text", [], stream=second)
    try:
        logging.getLogger("relay.twice").warning("once")
    finally:
        logging.getLogger().removeHandler(handler)
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_trace_level() -> None:
    assert TRACE == 5
    assert logging.getLevelName(TRACE) == "TRACE"
    assert level_number("trace") == TRACE
    assert level_number("WARNING") == logging.WARNING
    buffer = io.StringIO()
    handler = setup_logging("TRACE", "text", [], stream=buffer)
    try:
        logging.getLogger("relay.raw").log(TRACE, "raw payload %s", "{}")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "TRACE   relay.raw: raw payload {}" in buffer.getvalue()


def test_text_and_json_lines_carry_the_same_utc_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # a local time zone must not leak into the lines
    import time

    time.tzset()
    try:
        record = logging.LogRecord("relay.ts", logging.INFO, __file__, 1, "at %s", ("noon",), None)
        record.created = 1_790_000_000.25  # 2026-09-21T14:13:20.250 UTC
        text = TextFormatter().format(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert text == "2026-09-21T14:13:20.250+00:00 INFO    relay.ts: at noon"
    assert line["ts"] == "2026-09-21T14:13:20.250+00:00"


@pytest.mark.parametrize(("level", "third_party_debug"), [("INFO", False), ("DEBUG", False), ("TRACE", True)])
def test_third_party_debug_lines_only_at_trace(level: str, third_party_debug: bool) -> None:
    handler = setup_logging(level, "text", [], stream=io.StringIO())
    try:
        for name in ("httpx", "httpcore", "hpack", "python_multipart", "h11"):
            assert logging.getLogger(f"{name}.sub").isEnabledFor(logging.DEBUG) is third_party_debug, name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING)
        assert logging.getLogger("relay.x").isEnabledFor(logging.DEBUG) is (level != "INFO")
    finally:
        logging.getLogger().removeHandler(handler)


def test_shorten_payload() -> None:
    assert shorten_payload("short") == "short"
    assert shorten_payload("x" * 10, limit=4) == "xxxx… (6 more characters)"
    assert shorten_payload(b"\x78\x9c" * 5) == "<binary, 10 bytes>"
