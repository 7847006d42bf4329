"""mirai-api-http's JSON field types (pure): lenient readers for command content, and the Int32 clamp for
what the bridge writes.

Commands arrive as JSON objects whatever the transport: the ``content`` of a websocket frame, or the query
parameters of an http GET and the JSON body of an http POST (docs/mirai-api-http.md §11.2), where every value of a
query string is a string. So the readers are lenient the way mirai-api-http's kotlinx decoder is (docs/mirai-api-http.md
§2): a quoted number is a number, ``"true"``/``"false"`` are booleans, a number is accepted where a string is
expected, and synonyms (``target``/``group``/``qq``) are read in order. A value that cannot be used raises
:class:`BadContent` naming the field; :func:`adapters.mirai.commands_in.decode_command` answers it.

Ids of contacts (groups, members, friends) are read with :func:`contact` / :func:`resolve`, which map the id a
framework sent back to the Discord id through the bridge's :class:`~relay.ports.IdPresenter` (``[mirai] ids``):
an id the bridge never presented is code 5, never passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from adapters.mirai.codec import StatusCode
from relay.envelope import INT32_MAX
from relay.ports import IdPresenter

__all__ = [
    "BAD_INPUT_PREFIX",
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "BadContent",
    "as_int",
    "bad",
    "boolean",
    "clamp32",
    "contact",
    "epoch",
    "first",
    "int32",
    "long",
    "mapping",
    "message_id",
    "missing",
    "optional_contact",
    "optional_long",
    "resolve",
    "string",
    "unsupported",
]

_T = TypeVar("_T")

INT32_MIN: Final = -(2**31)
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

#: how every code-400 message begins: mirai's standard message, then the field (``无效参数: target is missing``)
BAD_INPUT_PREFIX: Final = f"{StatusCode.INVALID_PARAMETER.message}: "


class BadContent(Exception):
    """A command's content is unusable. Raised while decoding a command (here and in :mod:`.chain`), never
    beyond :func:`adapters.mirai.commands_in.decode_command`, which answers it with ``code`` and ``msg``."""

    def __init__(self, code: StatusCode, msg: str, *, missing: str | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        #: the field whose absence this is, if that is the problem (http answers name it mirai's way, §11.3)
        self.missing = missing


def bad(field: str, why: str) -> BadContent:
    """Code 400 with mirai's standard message, the field and why: ``无效参数: target is missing``."""
    return BadContent(StatusCode.INVALID_PARAMETER, f"{BAD_INPUT_PREFIX}{field} {why}")


def missing(field: str, hint: str = "") -> BadContent:
    """Code 400 for a required field that is absent: ``无效参数: target is missing``, remembering the field."""
    return BadContent(
        StatusCode.INVALID_PARAMETER, f"{BAD_INPUT_PREFIX}{field} is missing{' ' + hint if hint else ''}", missing=field
    )


def unsupported(msg: str) -> BadContent:
    """Code 6: the content is understood but has no Discord meaning."""
    return BadContent(StatusCode.NO_OPERATE_SUPPORT, msg)


def as_int(value: object, field: str, low: int, high: int, kind: str) -> int:
    """Lenient integer (docs/mirai-api-http.md §2: quoted numbers accepted), range-checked."""
    if isinstance(value, bool):
        raise bad(field, f"must be an {kind}, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            raise bad(field, f"must be an {kind} (got {value!r})") from None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise bad(field, f"must be an {kind} (got {type(value).__name__})")
    if not low <= number <= high:
        raise bad(field, f"is out of the {kind} range ({number})")
    return number


def first(content: Mapping[str, object], *names: str) -> object:
    """First present, non-null key of ``names`` (synonyms, e.g. ``target``/``group``)."""
    for name in names:
        value = content.get(name)
        if value is not None:
            return value
    return None


def long(content: Mapping[str, object], *names: str) -> int:
    """A required mirai ``Long`` (ids), under the first of ``names`` present."""
    value = first(content, *names)
    if value is None:
        raise missing(names[0])
    return as_int(value, names[0], INT64_MIN, INT64_MAX, "integer id")


def optional_long(content: Mapping[str, object], *names: str) -> int | None:
    """An optional mirai ``Long``: ``None`` when none of ``names`` is present."""
    value = first(content, *names)
    return None if value is None else as_int(value, names[0], INT64_MIN, INT64_MAX, "integer id")


def resolve(ids: IdPresenter, value: int, field: str) -> int:
    """The Discord id behind ``value``, the id a framework sent in ``field``; code 5 when no Discord id has it."""
    real = ids.resolve(value)
    if real is None:
        raise BadContent(
            StatusCode.NO_ELEMENT,
            f"{StatusCode.NO_ELEMENT.message}: {field} {value} is not an id the bridge presented "
            '([mirai] ids = "small": frameworks see every Discord id as a 16-digit small id; '
            "`discord-mirai-relay ids` shows them)",
        )
    return real


def _present_name(content: Mapping[str, object], names: tuple[str, ...]) -> str:
    return next((name for name in names if content.get(name) is not None), names[0])


def contact(content: Mapping[str, object], ids: IdPresenter, *names: str) -> int:
    """A required contact id (group, member, friend) under the first of ``names`` present, as its Discord id."""
    return resolve(ids, long(content, *names), _present_name(content, names))


def optional_contact(content: Mapping[str, object], ids: IdPresenter, *names: str) -> int | None:
    """An optional contact id as its Discord id; ``None`` when none of ``names`` is present."""
    value = optional_long(content, *names)
    return None if value is None else resolve(ids, value, _present_name(content, names))


def message_id(content: Mapping[str, object], name: str = "messageId") -> int:
    """A required message id (mirai ``Int``)."""
    value = content.get(name)
    if value is None:
        raise missing(name)
    # docs/mirai-api-http.md §2: message ids are Int32; out of range → 400
    return as_int(value, name, INT32_MIN, INT32_MAX, "Int32 message id")


def int32(content: Mapping[str, object], name: str, default: int) -> int:
    """An optional mirai ``Int``."""
    value = content.get(name)
    return default if value is None else as_int(value, name, INT32_MIN, INT32_MAX, "Int32")


def epoch(content: Mapping[str, object], names: tuple[str, ...], default: int) -> int:
    """Epoch seconds; a fractional float is truncated."""
    value = first(content, *names)
    if value is None:
        return default
    if isinstance(value, float) and not value.is_integer():
        value = int(value)  # Ariadne sends datetime.timestamp() floats (docs/mirai-api-http.md §3.7)
    return as_int(value, names[0], INT64_MIN, INT64_MAX, "epoch seconds")


def _default(name: str, default: _T | None) -> _T:
    """What an absent field reads as: ``default``, or code 400 when there is none (the field is required)."""
    if default is None:
        raise missing(name)
    return default


def boolean(content: Mapping[str, object], name: str, default: bool | None) -> bool:
    """A boolean, or the strings ``"true"``/``"false"``; required when ``default`` is ``None``."""
    value = content.get(name)
    if value is None:
        return _default(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad(name, f"must be true or false (got {value!r})")


def string(content: Mapping[str, object], name: str, default: str | None) -> str:
    """A string (a number is accepted as its text); required when ``default`` is ``None``."""
    value = content.get(name)
    if value is None:
        return _default(name, default)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # lenient like kotlinx isLenient
    raise bad(name, f"must be a string (got {type(value).__name__})")


def mapping(value: object, field: str) -> Mapping[str, object]:
    """A JSON object (``content``, ``config``, a Forward node...)."""
    if not isinstance(value, Mapping):
        if value is None:
            raise missing(field, "(send a JSON object)")
        raise bad(field, f"must be a JSON object (got {type(value).__name__})")
    return value


def clamp32(value: int) -> int:
    """mirai Int fields (timestamps, durations) cannot exceed Int32; saturate instead of overflowing."""
    if value > INT32_MAX:
        return INT32_MAX
    if value < INT32_MIN:
        return INT32_MIN
    return value
