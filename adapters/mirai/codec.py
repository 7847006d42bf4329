"""mirai-api-http v2 frame codec and status codes (sans-I/O): text/bytes ⇄ frame models, and the one table of
the status codes every transport answers with.

What travels on a reverse-ws connection (docs/mirai-api-http.md §3.3–§3.5):

* incoming (framework → bridge): ``{"syncId": ..., "command": ..., "subCommand": ..., "content": ...}``;
* outgoing responses: ``{"syncId": "<same, always a JSON string>", "data": {...}}``;
* outgoing pushed events: ``{"syncId": "<reserved, default \\"-1\\">", "data": {"type": ...}}``;
* outgoing *raw* frames with no ``syncId`` wrapper, for pre-auth rejections and malformed input.

The ``data`` objects (:func:`status_data`, :func:`restful_data`, ...) are the same on every transport: on http
they are the whole response body (docs/mirai-api-http.md §11.3). :class:`StatusCode` is the only place a status code
or its standard message is written down.

Frames are compact JSON, UTF-8, non-ASCII not escaped (docs/mirai-api-http.md §2 "Frames"). Binary frames are decoded
like text frames. Decoding is lenient as docs/architecture.md §4 asks: a numeric ``syncId`` becomes its string form, a
lowercase ``subcommand`` is accepted, ``subCommand: null`` means none, unknown keys are ignored.

This module never imports trio and never reads the clock. All JSON (de)serialization of the mirai side of the
bridge goes through :data:`WIRE` so that switching the JSON library is a one-line change.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.preconf.json import JsonConverter
from cattrs.preconf.json import make_converter as make_json_converter

from relay import fastjson
from relay.config import MIRAI_EVENT_TYPES
from relay.errors import FrameTooLarge, RemoteProtocolError

# --------------------------------------------------------------------------- status codes


class StatusCode(enum.IntEnum):
    """mirai-api-http's ``StateCode`` (docs/mirai-api-http.md §5.2): every code a framework can be answered with.

    The names are mirai's; :attr:`message` is mirai's exact standard message. Frameworks branch on the code
    (Ariadne raises a different exception for each, docs/mirai-api-http.md §5.3).
    """

    SUCCESS = 0
    #: wrong verifyKey; on reverse-ws also any command before verify, and unusable verify content
    AUTH_KEY_FAIL = 1
    #: the ``qq`` to bind is not a logged-in bot
    NO_BOT = 2
    #: unknown session key
    ILLEGAL_SESSION = 3
    #: the session is not bound to a bot yet
    NOT_VERIFY_SESSION = 4
    #: friend/group/member/message/file not found
    NO_ELEMENT = 5
    #: unknown command or unsupported operation; also mirai's ``NoFile`` (message :data:`NO_FILE_MESSAGE`)
    NO_OPERATE_SUPPORT = 6
    PERMISSION_DENIED = 10
    BOT_MUTED = 20
    MESSAGE_TOO_LARGE = 30
    #: bad or missing parameters
    INVALID_PARAMETER = 400
    #: any other failure (mirai sends the exception's message; the bridge says what went wrong)
    INTERNAL_ERROR = 500

    @property
    def message(self) -> str:
        """mirai's standard ``msg`` for this code."""
        return _STANDARD_MESSAGES[self]


_STANDARD_MESSAGES: Final[dict[StatusCode, str]] = {
    StatusCode.SUCCESS: "success",
    StatusCode.AUTH_KEY_FAIL: "Auth Key错误",
    StatusCode.NO_BOT: "指定Bot不存在",
    StatusCode.ILLEGAL_SESSION: "Session失效或不存在",
    StatusCode.NOT_VERIFY_SESSION: "Session未认证",
    StatusCode.NO_ELEMENT: "指定对象不存在",
    StatusCode.NO_OPERATE_SUPPORT: "指定操作不支持",
    StatusCode.PERMISSION_DENIED: "无操作权限",
    StatusCode.BOT_MUTED: "Bot被禁言",
    StatusCode.MESSAGE_TOO_LARGE: "消息过长",
    StatusCode.INVALID_PARAMETER: "无效参数",
    StatusCode.INTERNAL_ERROR: "internal error",
}

#: mirai's ``NoFile`` message (code 6), followed by the path that does not exist (docs/mirai-api-http.md §5.2)
NO_FILE_MESSAGE: Final = "文件不存在："


def status_data(code: StatusCode, msg: str | None = None) -> dict[str, object]:
    """The ``{code, msg}`` shape of states and errors (docs/mirai-api-http.md §5.3); ``msg`` defaults to the standard
    message of ``code``."""
    return {"code": code._value_, "msg": code.message if msg is None else msg}


def restful_data(data: object) -> dict[str, object]:
    """A successful answer that carries ``data``: ``{"code": 0, "msg": "", "data": ...}``
    (docs/mirai-api-http.md §6.1)."""
    return {"code": StatusCode.SUCCESS._value_, "msg": "", "data": data}


#: raw (unwrapped) frames, docs/mirai-api-http.md §3.3 / §3.5
AUTH_KEY_FAIL: Final = status_data(StatusCode.AUTH_KEY_FAIL)
NO_BOT: Final = status_data(StatusCode.NO_BOT)
INVALID_PARAMETER: Final = status_data(StatusCode.INVALID_PARAMETER)
#: wrapped in ``data``: unknown command, or ``verify`` again after auth (docs/mirai-api-http.md §3.5)
NO_OPERATE_SUPPORT: Final = status_data(StatusCode.NO_OPERATE_SUPPORT)

# --------------------------------------------------------------------------- protocol constants

#: the version reported by ``about``: a plain dotted version, because Ariadne parses it with
#: ``tuple(map(int, version.split(".")))`` (docs/mirai-api-http.md §3.7)
MIRAI_API_HTTP_VERSION: Final = "2.10.0"

#: session key in single mode (docs/mirai-api-http.md §3.3 row c, §5.1)
SINGLE_SESSION_KEY: Final = "SINGLE_SESSION"

#: the id of a file uploaded to the bridge (``uploadImage``...): mirai's ``{UUID}.ext`` form, upper-case hex
#: (Discord attachments the bridge names are ``{channel}-{message}-{attachment}.ext``, digits only)
UPLOAD_ID: Final = re.compile(r"\{([0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12})\}\.([a-z0-9]{1,5})")


def is_upload_id(media_id: str) -> bool:
    """Whether ``media_id`` is the id of an upload to the bridge (``Image.imageId``, ``Voice.voiceId``, ...)."""
    return UPLOAD_ID.fullmatch(media_id) is not None


# --------------------------------------------------------------------------- models


@attrs.frozen
class IncomingFrame:
    """One command frame from a framework, after lenient decoding.

    ``sync_id`` is ``None`` only when the frame carried ``"syncId": null`` (answered with ``null``, as
    mirai-api-http does); ``content`` is the raw JSON value of ``content`` (``None`` when absent).
    """

    sync_id: str | None
    command: str
    sub_command: str | None
    content: object


@attrs.frozen
class VerifyContent:
    """``content`` of a ``verify`` command (docs/mirai-api-http.md §3.3, ``ReverseAuthDTO``); every key optional
    here."""

    verify_key: str | None = attrs.field(default=None, repr=False)
    session_key: str | None = attrs.field(default=None, repr=False)
    qq: int | None = None


# --------------------------------------------------------------------------- converter


def _structure_lenient_qq(value: object, _type: object) -> int | None:
    """``qq`` as a number or a numeric string (docs/mirai-api-http.md §3.3: the docs show a string)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("qq must be a number, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise TypeError(f"qq must be a number or a numeric string, got {type(value).__name__}")


def _structure_optional_str(value: object, _type: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # kotlinx "isLenient": a JSON number is accepted where a String is expected (§2)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def make_wire_converter() -> JsonConverter:
    """The converter for mirai wire JSON: renames (``verifyKey``...) live here, not on the models."""
    converter = make_json_converter()
    converter.register_structure_hook(
        VerifyContent,
        make_dict_structure_fn(
            VerifyContent,
            converter,
            verify_key=override(rename="verifyKey", struct_hook=_structure_optional_str),
            session_key=override(rename="sessionKey", struct_hook=_structure_optional_str),
            qq=override(struct_hook=_structure_lenient_qq),
        ),
    )
    return converter


WIRE: Final = make_wire_converter()


# --------------------------------------------------------------------------- decoding


def check_frame_size(data: str | bytes, limit: int) -> None:
    """Raise :class:`FrameTooLarge` when ``len(data)`` exceeds ``limit`` (measured like trio-websocket does)."""
    if len(data) > limit:
        raise FrameTooLarge(len(data), limit)


def loads(data: str | bytes) -> object:
    """Parse JSON text; raise :class:`RemoteProtocolError` (never a bare ValueError) when it is not JSON.

    Nesting too deep to decode (a 50,000-deep array: RecursionError; MemoryError for what would not fit) is not
    JSON the bridge can use either: the same RemoteProtocolError, so the framework gets the bare 400 answer and
    its connection stays."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RemoteProtocolError(f"frame is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise RemoteProtocolError("frame is JSON nested too deeply to decode") from None
    except MemoryError:
        raise RemoteProtocolError("frame is JSON too large to decode") from None


def decode_frame(data: str | bytes, *, max_frame_bytes: int) -> IncomingFrame:
    """Decode one incoming websocket message into an :class:`IncomingFrame`.

    Raises :class:`FrameTooLarge` for an oversize frame and :class:`RemoteProtocolError` for anything that is
    not a command frame (not JSON, not an object, no string ``command``, a ``syncId`` that is neither string,
    number nor null). A missing ``syncId`` key is tolerated as ``None`` (lenient, docs/architecture.md §4).
    """
    check_frame_size(data, max_frame_bytes)
    obj = loads(data)
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"frame must be a JSON object, got {type(obj).__name__}")
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise RemoteProtocolError("frame has no string 'command'")
    raw_sync_id = obj.get("syncId")
    sync_id: str | None
    if raw_sync_id is None or isinstance(raw_sync_id, str):
        sync_id = raw_sync_id
    elif isinstance(raw_sync_id, int | float) and not isinstance(raw_sync_id, bool):
        sync_id = str(raw_sync_id)  # numeric syncId 123 is answered as "123" (docs/mirai-api-http.md §2)
    else:
        raise RemoteProtocolError(f"'syncId' must be a string or a number, got {type(raw_sync_id).__name__}")
    raw_sub = obj["subCommand"] if "subCommand" in obj else obj.get("subcommand")
    if raw_sub is not None and not isinstance(raw_sub, str):
        raise RemoteProtocolError(f"'subCommand' must be a string or null, got {type(raw_sub).__name__}")
    return IncomingFrame(sync_id=sync_id, command=command, sub_command=raw_sub or None, content=obj.get("content"))


def decode_verify_content(content: object) -> VerifyContent:
    """Structure ``verify`` content leniently; raise :class:`RemoteProtocolError` when it cannot be used."""
    if content is None:
        return VerifyContent()
    if not isinstance(content, dict):
        raise RemoteProtocolError(f"verify content must be an object, got {type(content).__name__}")
    try:
        return WIRE.structure(content, VerifyContent)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"verify content is invalid: {exc}") from None


# --------------------------------------------------------------------------- encoding


def dumps(obj: object) -> str:
    """Compact JSON, non-ASCII unescaped (docs/mirai-api-http.md §2 "Frames").

    orjson writes the same text as ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))`` several times
    faster (every pushed event goes through here). What it refuses goes through the stdlib: integers beyond 64
    bits, and strings with a lone surrogate (Discord JSON may carry an escaped one), which are written
    ASCII-escaped, so the frame is still valid UTF-8 and the framework reads back the very same string.
    """
    try:
        return fastjson.dumps(obj).decode()
    except TypeError:  # something orjson does not write (see above)
        pass
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: escape it
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text


def encode_response(sync_id: str | None, data: object) -> str:
    """``{"syncId": <same>, "data": {...}}``; the syncId is always a JSON string (or null if it was null)."""
    return dumps({"syncId": sync_id, "data": data})


def encode_event(reserved_sync_id: str, data: object) -> str:
    """A pushed event frame: ``{"syncId": "<reserved>", "data": {"type": ...}}`` (docs/mirai-api-http.md §3.4)."""
    return dumps({"syncId": reserved_sync_id, "data": data})


def encode_raw(data: object) -> str:
    """A raw frame with no syncId wrapper (pre-auth rejections, malformed input)."""
    return dumps(data)


def about_data() -> dict[str, object]:
    """``data`` of the ``about`` response (docs/mirai-api-http.md §6.1)."""
    return restful_data({"version": MIRAI_API_HTTP_VERSION})


def bot_list_data(bot_id: int) -> dict[str, object]:
    """``data`` of the ``botList`` response (docs/mirai-api-http.md §6.1); empty before Discord READY."""
    return restful_data([bot_id] if bot_id else [])


def verify_success_data(session_key: str) -> dict[str, object]:
    """``data`` of a successful ``verify`` (docs/mirai-api-http.md §3.3)."""
    return {"code": StatusCode.SUCCESS._value_, "session": session_key}


def bot_online_event_data(bot_id: int) -> dict[str, object]:
    """``BotOnlineEvent`` pushed right after verify so Ariadne becomes usable (docs/mirai-api-http.md §3.7, §9.2)."""
    return {"type": "BotOnlineEvent", "qq": bot_id}


def bot_dropped_event_data(bot_id: int) -> dict[str, object]:
    """``BotOfflineEventDropped``: what a verify announces instead while the Discord connection is down
    (docs/mirai-api-http.md §9.2); any event makes Ariadne usable, and this one is true."""
    return {"type": "BotOfflineEventDropped", "qq": bot_id}


def event_frame_prefix(reserved_sync_id: str, event_type: str) -> str:
    """How every pushed frame of ``event_type`` begins (compact JSON, keys in order: see :func:`encode_event`), so a
    transport can recognise one without decoding it."""
    return encode_event(reserved_sync_id, {"type": event_type})[: -len("}}")]


# --------------------------------------------------------------------------- pushed frames → bare events (webhook)


def event_of_frame(frame: str) -> dict[str, object] | None:
    """The event object inside a pushed event frame (``{"syncId": <reserved>, "data": {...}}``, §3.4), or None
    for text that is not one. Whatever the reserved syncId is (a string, a number), only ``data`` is read."""
    try:
        obj = fastjson.loads(frame)
    except ValueError:  # orjson refuses what json accepts (a lone surrogate escape, which dumps may write)
        try:
            obj = json.loads(frame)
        except ValueError:
            return None
    data = obj.get("data") if isinstance(obj, dict) else None
    return data if isinstance(data, dict) else None


def event_type(event: dict[str, object]) -> str:
    """The mirai event type name of an event object (docs/mirai-api-http.md §9), "" when it has none."""
    kind = event.get("type")
    return kind if isinstance(kind, str) else ""


def encode_bare_event(event: dict[str, object]) -> str:
    """The bare event object as the webhook adapter POSTs it (docs/mirai-api-http.md §10.2): no syncId/data wrapper."""
    return dumps(event)


# --------------------------------------------------------------------------- reading outbox frames

#: the message events of docs/mirai-api-http.md §9.1 (the ``/message`` channel of the ws adapter, §4.2)
MESSAGE_EVENT_TYPES: Final = frozenset(name for name in MIRAI_EVENT_TYPES if name.endswith("Message"))

#: what follows an event frame's syncId string: :func:`encode_event` writes ``{"syncId":"<id>","data":{...}}``
_DATA_AFTER_SYNC_ID: Final = '","data":'
_FRAME_START: Final = '{"syncId":"'
_TYPE_START: Final = '{"type":"'


def event_data_text(frame: str) -> str:
    """The ``data`` of a pushed event frame, as JSON text (the bare event object the http adapter polls, §11.5).

    Outbox frames are :func:`encode_event`'s text, so ``data`` is found without parsing: inside the syncId
    string every ``"`` is escaped, so the first ``","data":`` after it ends the syncId whatever reserved syncId
    is configured. Any other shape is parsed.
    """
    if frame.startswith(_FRAME_START) and frame.endswith("}"):
        at = frame.find(_DATA_AFTER_SYNC_ID, len(_FRAME_START) - 1)
        if at >= 0:
            return frame[at + len(_DATA_AFTER_SYNC_ID) : -1]
    obj = loads(frame)
    if not isinstance(obj, dict) or "data" not in obj:
        raise RemoteProtocolError("not an event frame (no data)")
    return dumps(obj["data"])


def frame_event_type(frame: str) -> str:
    """The ``type`` of a pushed event frame (``"GroupMessage"``); ``""`` when it has none."""
    data = event_data_text(frame)
    if data.startswith(_TYPE_START):  # every event object the bridge writes starts with its type (§2)
        end = data.find('"', len(_TYPE_START))
        if end >= 0 and "\\" not in data[len(_TYPE_START) : end]:
            return data[len(_TYPE_START) : end]
    obj = loads(data)
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else ""


def is_message_frame(frame: str) -> bool:
    """Whether a pushed event frame carries a message event (§9.1), for the ws adapter's channels (§4.2)."""
    return frame_event_type(frame) in MESSAGE_EVENT_TYPES
