"""Logging set-up: one handler on the root logger, text or JSON lines, and secret redaction.

:func:`setup_logging` is called once by the CLI before anything connects. Modules log through
``logging.getLogger(__name__)``. The handler carries a :class:`RedactionFilter`, so every record that
reaches it, from any module (ours or a library's), has the Discord token, the verify key and
``Bot <token>`` / ``Bearer <token>`` authorization values replaced by ``***`` in its message, its
arguments, its exception text and its stack text.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Final, TextIO

from relay.config import LogFormat
from relay.errors import ConfigError

__all__ = [
    "MASK",
    "THIRD_PARTY_LOGGERS",
    "TRACE",
    "JsonFormatter",
    "RedactionFilter",
    "TextFormatter",
    "level_number",
    "setup_logging",
    "shorten_payload",
    "utc_timestamp",
]

#: Below DEBUG: raw payloads, both ways, redacted like everything else.
TRACE: Final = 5
logging.addLevelName(TRACE, "TRACE")

MASK: Final = "***"

# An Authorization value in any text: "Bot <token>" or "Bearer <token>". Discord tokens are base64url
# pieces joined by dots, far longer than 20 characters (docs/discord.md §1).
_AUTH_VALUE = re.compile(r"\b(Bot|Bearer)\s+[A-Za-z0-9_\-.]{20,}")

#: Third-party libraries whose INFO lines (httpx: one per request) and DEBUG lines (httpcore, hpack, h11,
#: python-multipart: several per request) would drown the bridge's own: at WARNING unless the level is TRACE,
#: so ``-v`` (DEBUG) shows the bridge's debug lines and only ``-vv`` (TRACE) adds theirs.
THIRD_PARTY_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "hpack",
    "h11",
    "h2",
    "socksio",
    "python_multipart",
    "multipart",
    "trio-websocket",
    "trio_websocket",
    "charset_normalizer",
)

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: the longest payload a TRACE line shows; the rest is counted, not printed
TRACE_PAYLOAD_LIMIT: Final = 4000


def level_number(level: str | int) -> int:
    """``"TRACE"``/``"debug"``/``20`` → a logging level number."""
    if isinstance(level, int):
        return level
    name = level.upper()
    if name == "TRACE":
        return TRACE
    number = logging.getLevelName(name)
    if not isinstance(number, int):
        raise ConfigError("logging.level", [f"unknown log level {level!r}; use TRACE, DEBUG, INFO, WARNING or ERROR"])
    return number


class RedactionFilter(logging.Filter):
    """Replaces every secret in a record with ``***``. Install it on handlers (filters on a logger do not
    see records propagated from child loggers)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another one is masked whole.
        self._secrets: tuple[str, ...] = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _AUTH_VALUE.sub(lambda m: f"{m.group(1)} {MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record (or leak its args)
            message = f"{record.msg!s} (log arguments could not be formatted)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def utc_timestamp(created: float) -> str:
    """``2026-12-04T05:06:07.089+00:00``: ISO 8601, UTC with its offset, milliseconds. Both log formats use it,
    so a text line and a JSON line of the same moment carry the same time whatever the machine's time zone."""
    return datetime.datetime.fromtimestamp(created, tz=datetime.UTC).isoformat(timespec="milliseconds")


def shorten_payload(payload: str | bytes, limit: int = TRACE_PAYLOAD_LIMIT) -> str:
    """A payload for a TRACE line: text up to ``limit`` characters (then how many more there were); binary
    as its size (a zlib-stream chunk says nothing to a reader)."""
    if isinstance(payload, bytes | bytearray):
        return f"<binary, {len(payload)} bytes>"
    if len(payload) <= limit:
        return payload
    return f"{payload[:limit]}… ({len(payload) - limit} more characters)"


class TextFormatter(logging.Formatter):
    """``<UTC timestamp> LEVEL   logger: message`` (see :func:`utc_timestamp`)."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601, as in text lines), ``level``, ``logger``, ``msg`` and,
    when there is one, ``exc`` (the formatted traceback) — for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


class _RelayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second set-up replaces it instead of doubling lines."""


def setup_logging(
    level: str | int,
    fmt: LogFormat | str,
    secrets: Iterable[str],
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the bridge's single log handler on the root logger and return it.

    ``level`` is a level name (``TRACE``..``CRITICAL``) or number, ``fmt`` ``text`` or ``json``,
    ``secrets`` the values to mask (see :func:`relay.configload.secrets_of`). Log lines go to ``stream``
    (stderr by default). Calling it again replaces the previous handler.
    """
    number = level_number(level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RelayHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _RelayHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactionFilter(secrets))
    if LogFormat(fmt) is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root.addHandler(handler)
    root.setLevel(number)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(number if number <= TRACE else max(number, logging.WARNING))
    logging.captureWarnings(True)
    return handler
