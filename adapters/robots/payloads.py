"""What a robot's sender POSTs → the text to post (pure).

Accepted shapes, tried in this order on a JSON object:

* **Discord webhook** (``content``, ``username``, ``embeds``): the content, then each embed as readable lines —
  author, title (with its url), description, ``name: value`` per field, footer;
* **DingTalk** (``msgtype`` = ``text`` with ``text.content``; ``markdown`` with ``markdown.title`` and
  ``markdown.text``) and **Feishu** (``msg_type`` = ``text`` with ``content.text``);
* **Slack** (``text``; else the ``text.text`` of ``blocks``, else each attachment's ``text`` or ``fallback``).

A body sent as ``text/plain`` (or without a Content-Type, when it is not JSON) is posted as it is. Anything else
is refused: a Content-Type other than JSON or plain text → 415; a body that is not UTF-8, or JSON labelled as JSON
that does not parse → 400; JSON in none of the shapes above, or with nothing to post → 422.
"""

from __future__ import annotations

from typing import Any

import attrs

from relay import fastjson
from relay.web.bodies import media_type
from relay.web.models import Request, RequestRejected

__all__ = ["RobotPost", "read_post"]


@attrs.frozen
class RobotPost:
    text: str  #: what to post (Markdown as Discord renders it)
    username: str = ""  #: a sender-chosen name (Discord webhook ``username``), shown beside the robot's
    #: the parsed JSON object (Feishu signs with ``timestamp`` and ``sign`` fields in it), when the body was one
    fields: dict[str, Any] = attrs.field(factory=dict, repr=False)


def _is_json(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def read_post(request: Request) -> RobotPost:
    """The post in ``request``'s body; raises :class:`~relay.web.models.RequestRejected` (400, 415, 422)."""
    kind = media_type(request)
    if kind and kind != "text/plain" and not _is_json(kind):
        raise RequestRejected(
            415, f"cannot read a {kind} body: send JSON (Discord, Slack, DingTalk or Feishu style) or text/plain"
        )
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(400, "the body is not UTF-8 text") from None
    if kind == "text/plain":
        return _plain(body)
    try:
        value = fastjson.loads(body)
    except ValueError:
        if kind:  # labelled JSON
            raise RequestRejected(400, "the body is not valid JSON") from None
        return _plain(body)
    if not isinstance(value, dict):
        if isinstance(value, str) and not kind:
            return _plain(value)
        raise RequestRejected(422, "the body must be a JSON object (Discord, Slack, DingTalk or Feishu style)")
    text, username = _from_object(value)
    if not text.strip():
        raise RequestRejected(
            422,
            "nothing to post: expected content/embeds (Discord), text (Slack), msgtype text/markdown (DingTalk) or "
            "msg_type text (Feishu)",
        )
    return RobotPost(text.strip(), username, value)


def _plain(body: str) -> RobotPost:
    if not body.strip():
        raise RequestRejected(422, "nothing to post: the body is empty")
    return RobotPost(body.strip())


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _from_object(obj: dict[str, Any]) -> tuple[str, str]:
    if "msgtype" in obj:
        return _dingtalk(obj), ""
    if "msg_type" in obj:
        return _feishu(obj), ""
    if "content" in obj or "embeds" in obj:
        parts = [_str(obj.get("content"))]
        embeds = obj.get("embeds")
        if isinstance(embeds, list):
            parts.extend(_embed(embed) for embed in embeds if isinstance(embed, dict))
        return "\n".join(part for part in parts if part.strip()), _str(obj.get("username"))
    if "text" in obj or "blocks" in obj or "attachments" in obj:
        return _slack(obj), _str(obj.get("username"))
    return "", ""


def _embed(embed: dict[str, Any]) -> str:
    lines: list[str] = []
    author = embed.get("author")
    if isinstance(author, dict) and _str(author.get("name")):
        lines.append(_str(author.get("name")))
    title, url = _str(embed.get("title")), _str(embed.get("url"))
    if title:
        lines.append(f"**{title}**" + (f" ({url})" if url else ""))
    elif url:
        lines.append(url)
    if _str(embed.get("description")):
        lines.append(_str(embed.get("description")))
    fields = embed.get("fields")
    if isinstance(fields, list):
        for field in fields:
            if isinstance(field, dict) and (_str(field.get("name")) or _str(field.get("value"))):
                lines.append(f"{_str(field.get('name'))}: {_str(field.get('value'))}")
    footer = embed.get("footer")
    if isinstance(footer, dict) and _str(footer.get("text")):
        lines.append(_str(footer.get("text")))
    return "\n".join(lines)


def _dingtalk(obj: dict[str, Any]) -> str:
    kind = obj.get("msgtype")
    if kind == "text" and isinstance(obj.get("text"), dict):
        return _str(obj["text"].get("content"))
    if kind == "markdown" and isinstance(obj.get("markdown"), dict):
        title, text = _str(obj["markdown"].get("title")), _str(obj["markdown"].get("text"))
        if title and not text.lstrip().lstrip("#").strip().startswith(title):
            return f"**{title}**\n{text}" if text else f"**{title}**"
        return text or title
    raise RequestRejected(422, f'msgtype {kind!r} is not supported: use "text" (text.content) or "markdown"')


def _feishu(obj: dict[str, Any]) -> str:
    kind = obj.get("msg_type")
    content = obj.get("content")
    if kind == "text" and isinstance(content, dict):
        return _str(content.get("text"))
    raise RequestRejected(422, f'msg_type {kind!r} is not supported: use "text" with content.text')


def _slack(obj: dict[str, Any]) -> str:
    if _str(obj.get("text")).strip():
        return _str(obj.get("text"))
    lines: list[str] = []
    blocks = obj.get("blocks")
    if isinstance(blocks, list):
        for block in blocks:
            text = block.get("text") if isinstance(block, dict) else None
            if isinstance(text, dict) and _str(text.get("text")):
                lines.append(_str(text.get("text")))
    attachments = obj.get("attachments")
    if not lines and isinstance(attachments, list):
        for attachment in attachments:
            if isinstance(attachment, dict):
                lines.append(_str(attachment.get("text")) or _str(attachment.get("fallback")))
    return "\n".join(line for line in lines if line)
