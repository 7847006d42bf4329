"""TRACE logging of the Discord REST client: request and response bodies, redacted like every line; nothing of
them below TRACE. Against the emulated Discord REST API on 127.0.0.1."""

from __future__ import annotations

import io
import logging

import pytest

from relay.logs import MASK, setup_logging
from tests.integration.test_rest_client import CHANNEL, TOKEN, make_discord, running

SECRET = "a-verify-key-that-leaked-into-a-message"


@pytest.mark.parametrize(("level", "logged"), [("TRACE", True), ("DEBUG", False)])
async def test_rest_bodies_at_trace_only(level: str, logged: bool) -> None:
    buffer = io.StringIO()
    handler = setup_logging(level, "text", [TOKEN, SECRET], stream=buffer)
    try:
        async with running(make_discord()) as rest:
            await rest.create_message(CHANNEL, {"content": f"hello {SECRET}"})
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    text = buffer.getvalue()
    sent = f'Discord REST → POST /channels/{CHANNEL}/messages {{"content":"hello {MASK}"'
    assert (sent in text) is logged
    assert (f"Discord REST ← 200 POST /channels/{CHANNEL}/messages {{" in text) is logged
    assert SECRET not in text
    assert TOKEN not in text
