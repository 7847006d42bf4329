"""What one webhook POST carries and what its answer means (pure: no trio, no sockets, ``now`` passed in).

mirai-api-http's ``webhook`` adapter (docs/mirai-api-http.md §10), exactly, plus what chat platforms add:

* **body**: the bare event object (no ``syncId``/``data`` wrapper), ``Content-Type: application/json;
  charset=UTF-8``. With batching (``batch_max_events`` > 0, off by default) the body is a JSON array of bare event
  objects instead, and the whole array is signed once; a receiver written for mirai-api-http must leave batching
  off, because it expects one object per POST.
* **headers**: ``qq``, ``X-qq``, ``bot``, ``X-bot`` all set to the bot id (Ariadne checks ``qq``, YiriMirai
  ``bot``), then ``[mirai.webhook] extra_headers``, then the destination's ``extra_headers`` (same name: the
  destination wins), then the signature headers (:mod:`relay.signatures`). ``webhook-id`` is ``msg_<seq>`` (the
  event's outbox sequence number; ``msg_<first>-<last>`` for a batch), the same on every retry of it, so a
  receiver can drop a repeat.
* **answer**: any 2xx is a delivery. Its body may hold one command, ``{"command": ..., "content": {...}}``
  (§10.3), which is run and whose result is thrown away; ``subCommand`` is not read (``groupConfig`` and
  ``memberInfo`` always mean *update*); ``about`` means ``sessionInfo``; an empty or unreadable body, a command
  outside the list mirai-api-http accepts here, or a missing ``content`` is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from relay import __version__, fastjson
from relay.config import WebhookDestinationConfig, WebhookSigning
from relay.signatures import standard_headers, x_signature

__all__ = ["RESPONSE_COMMANDS", "Post", "ResponseCommand", "build_post", "message_id", "response_command"]

#: the commands a webhook answer may carry (docs/mirai-api-http.md §10.3), with the subCommand each one runs with
RESPONSE_COMMANDS: Final[Mapping[str, tuple[str, str | None]]] = {
    **{
        name: (name, None)
        for name in (
            "resp_newFriendRequestEvent",
            "resp_memberJoinRequestEvent",
            "resp_botInvitedJoinGroupRequestEvent",
            "deleteFriend",
            "mute",
            "unmute",
            "kick",
            "quit",
            "muteAll",
            "unmuteAll",
            "setEssence",
            "memberAdmin",
            "sendFriendMessage",
            "sendGroupMessage",
            "sendTempMessage",
            "sendOtherClientMessage",
            "sendImageMessage",
            "recall",
            "sendNudge",
            "cmd_execute",
            "cmd_register",
            "anno_list",
            "anno_publish",
            "anno_delete",
        )
    },
    "groupConfig": ("groupConfig", "update"),
    "memberInfo": ("memberInfo", "update"),
    "about": ("sessionInfo", None),
}

CONTENT_TYPE: Final = "application/json; charset=UTF-8"
USER_AGENT: Final = f"discord-mirai-relay/{__version__} (webhook)"


@attrs.frozen
class Post:
    """One POST, ready to send: ``body`` is exactly what was signed."""

    msg_id: str
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=False)  #: may carry secrets
    body: bytes = attrs.field(repr=False)


@attrs.frozen
class ResponseCommand:
    """A command found in a webhook answer, ready for ``MiraiCommandHandler.dispatch``."""

    command: str
    sub_command: str | None
    content: object = attrs.field(repr=False)


def message_id(first_seq: int, last_seq: int) -> str:
    """The ``webhook-id`` of the events ``first_seq``..``last_seq`` (stable across retries and restarts)."""
    return f"msg_{first_seq}" if first_seq == last_seq else f"msg_{first_seq}-{last_seq}"


def build_post(
    destination: WebhookDestinationConfig,
    events: Sequence[str],
    *,
    msg_id: str,
    bot_id: int,
    common_headers: Mapping[str, str],
    now: int,
    batch: bool,
) -> Post:
    """The POST of ``events`` (each the JSON text of one bare event object) to ``destination`` at time ``now``."""
    if batch:
        body = ("[" + ",".join(events) + "]").encode()
    else:
        (only,) = events
        body = only.encode()
    qq = str(bot_id)
    merged: dict[str, str] = {
        "content-type": CONTENT_TYPE,
        "user-agent": USER_AGENT,
        "qq": qq,
        "X-qq": qq,
        "bot": qq,
        "X-bot": qq,
    }
    for name, value in (*common_headers.items(), *destination.extra_headers.items()):
        for existing in [key for key in merged if key.lower() == name.lower()]:
            del merged[existing]
        merged[name] = value
    headers = tuple(merged.items())
    if destination.signing is WebhookSigning.STANDARD:
        headers += standard_headers(destination.secret, msg_id=msg_id, timestamp=now, body=body)
    elif destination.signing is WebhookSigning.X_SIGNATURE:
        headers += (("x-signature", x_signature(destination.secret, body)),)
    return Post(msg_id=msg_id, headers=headers, body=body)


def response_command(body: bytes) -> ResponseCommand | None:
    """The command a 2xx answer carries, or None (empty, not JSON, no command, not allowed here, no content)."""
    if not body.strip():
        return None
    try:
        obj = fastjson.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    name = obj.get("command")
    if not isinstance(name, str) or name not in RESPONSE_COMMANDS or "content" not in obj:
        return None
    command, sub_command = RESPONSE_COMMANDS[name]
    return ResponseCommand(command, sub_command, obj["content"])


def is_success(status: int) -> bool:
    return 200 <= status < 300
