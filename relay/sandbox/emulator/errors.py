"""The emulator's errors: Discord's own error answers (:class:`ApiError`) and a broken state file.

An :class:`ApiError` is not a failure of the emulator: it is the answer real Discord gives to that request,
with its HTTP status, JSON error code, message and (for 50035) the nested ``errors`` tree (docs/discord.md §8.2).
"""

from __future__ import annotations

from typing import Any

from relay.errors import RelayError

JSON = dict[str, Any]


class EmulatorError(RelayError):
    """Root of the emulator's errors."""


class StateFileError(EmulatorError):
    """The emulator's SQLite file cannot be opened or read."""


class ApiError(EmulatorError):
    """A Discord error answer: ``{"message", "code"[, "errors"]}`` with ``status`` (and extra headers)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: JSON | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers

    def body(self) -> JSON:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def field_error(path: str, code: str, message: str) -> ApiError:
    """50035 Invalid Form Body with Discord's nested ``errors`` tree; ``path`` like ``embeds.0.title``."""
    tree: JSON = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        tree = {key: tree}
    return ApiError(400, 50035, "Invalid Form Body", tree)


def unknown(kind: str) -> ApiError:
    """404 with the code Discord uses for an unknown ``kind`` (Channel, Guild, Member, Message, Role, User)."""
    return ApiError(404, UNKNOWN_CODES[kind], f"Unknown {kind}")


#: docs/discord.md §8.2 JSON error codes for unknown objects
UNKNOWN_CODES = {
    "Channel": 10003,
    "Guild": 10004,
    "Member": 10007,
    "Message": 10008,
    "Role": 10011,
    "User": 10013,
    "Ban": 10026,
}
