"""The message-chain codec (pure): envelope segments ⇄ mirai message elements (docs/mirai-api-http.md §7).

* **Out** (:func:`encode_chain`, :func:`encode_message_chain`): the elements of pushed events and of
  ``messageFromId``/``roamingMessages`` results, every DTO field present, nulls included.
* **In** (:func:`decode_chain`): the ``messageChain`` of a send command, from any transport.

Representation choices (documented here because frameworks see them):

* **Discord custom emoji → ``Face``.** mirai's ``faceId`` is an Int32 and Discord emoji ids are
  snowflakes, so a custom emoji is ``{"type":"Face","faceId":-1,"name":"<:name:id>","isSuperFace":false}``
  (``<a:name:id>`` when animated). ``-1`` is mirai's own "no id" default and ``name`` carries Discord's
  literal emoji syntax, so Ariadne parses it (``Face(id=-1, name=...)``) and a framework that sends the
  same element back gets the same emoji (:func:`decode_chain` recognises the syntax in ``name``).
* **Discord stickers → ``MarketFace``** with ``id`` -1 and ``name`` ``<sticker:NAME:ID>`` for the same
  reason (Int32 ``id``); sending it back posts the sticker.
* **Quotes whose target id is unknown** carry ``id`` 0 (the store never allocates 0), so a later
  ``recall``/``quote`` with it is answered "not found" rather than hitting the wrong message.
* **One stand-alone element per chain.** Ariadne rejects a whole event whose chain has more than one
  element outside Plain/Image/Face/At/AtAll/Source/Quote; a Discord message with several audio/file
  attachments or stickers keeps the first as Voice/File/MarketFace and the rest become readable Plain.
* **Ids.** ``At.target`` and ``Quote``'s ``senderId``/``targetId``/``groupId`` go through ``ids.present`` when
  encoding; a received ``At.target`` (and ``[mirai:at:N]``) through ``ids.resolve`` when decoding, an id no
  Discord id has being answered code 5 (:class:`~relay.ports.IdPresenter`, ``[mirai] ids``).
* **Send-side elements** with no Discord form: Face with a QQ face id → ``[表情:name]`` text; Dice → "🎲 N";
  MusicShare → title and link; ShortVideo with ``videoUrl`` → the link; Forward → quoted ``> name: text``
  lines; MiraiCode → at/atall/image parsed, the rest literal; FlashImage → an ordinary image. File and
  ShortVideo with an id the bridge issued for an upload (:func:`~adapters.mirai.codec.is_upload_id`) → an
  attachment. Refused with code 6 and a reason: Xml/Json/App cards, Poke, other File elements, ShortVideo without
  url or upload id, Forward nodes by reference, and any ``path`` (the bridge does not share the framework's file
  system).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence

from adapters.mirai import codec, fields
from relay import envelope as env
from relay.ids import SNOWFLAKE_IDS
from relay.ports import IdPresenter

__all__ = ["decode_chain", "encode_chain", "encode_message_chain"]

#: the literal syntax Discord uses for custom emoji; carried in ``Face.name``
_EMOJI_RE = re.compile(r"<(a?):([A-Za-z0-9_~]+):([0-9]{1,20})>")
#: our own syntax for stickers, carried in ``MarketFace.name`` (Discord has no text form for stickers)
_STICKER_RE = re.compile(r"<sticker:(.*):([0-9]{1,20})>", re.DOTALL)
#: mirai code (docs/mirai-api-http.md §7 ``MiraiCode``): ``[mirai:kind:args]`` with ``\`` escapes
_MIRAI_CODE_RE = re.compile(r"\[mirai:([A-Za-z]+)(?::((?:\\.|[^\]\\])*))?\]")
_MIRAI_CODE_UNESCAPE_RE = re.compile(r"\\(.)")


# --------------------------------------------------------------------------- out: segments → elements


def _image_type(image: env.Image) -> str:
    # docs/mirai-api-http.md §7 Image.imageType ∈ PNG/BMP/JPG/GIF/APNG/UNKNOWN
    ctype = image.content_type.lower()
    name = image.filename.lower()
    if ctype == "image/png" or name.endswith(".png"):
        return "PNG"
    if ctype in ("image/jpeg", "image/jpg") or name.endswith((".jpg", ".jpeg")):
        return "JPG"
    if ctype == "image/gif" or name.endswith(".gif"):
        return "GIF"
    if ctype == "image/apng" or name.endswith(".apng"):
        return "APNG"
    if ctype in ("image/bmp", "image/x-ms-bmp") or name.endswith(".bmp"):
        return "BMP"
    return "UNKNOWN"


def _encode_segment(segment: env.Segment, ids: IdPresenter) -> dict[str, object]:
    # Order of tests = rough frequency on Discord (text first).
    if type(segment) is env.Text:
        return {"type": "Plain", "text": segment.text}
    if isinstance(segment, env.Mention):
        # real mirai-api-http always emits display "" (docs/mirai-api-http.md §7)
        return {"type": "At", "target": ids.present(segment.user_id), "display": ""}
    if isinstance(segment, env.Image):
        return {
            "type": "Image",
            "imageId": segment.id,
            "url": segment.url,
            "path": None,
            "base64": None,
            "width": fields.clamp32(segment.width),
            "height": fields.clamp32(segment.height),
            "size": segment.size,
            "imageType": _image_type(segment),
            "isEmoji": segment.is_emoji,
        }
    if isinstance(segment, env.Emoji):
        prefix = "a" if segment.animated else ""
        return {"type": "Face", "faceId": -1, "name": f"<{prefix}:{segment.name}:{segment.id}>", "isSuperFace": False}
    if isinstance(segment, env.MentionAll):
        return {"type": "AtAll", "target": 0}
    if isinstance(segment, env.Audio):
        return {
            "type": "Voice",
            "voiceId": segment.id,
            "url": segment.url,
            "path": None,
            "base64": None,
            "length": int(segment.duration),
        }
    if isinstance(segment, env.File):
        return {"type": "File", "id": segment.id, "name": segment.name, "size": segment.size}
    if isinstance(segment, env.Sticker):
        return {"type": "MarketFace", "id": -1, "name": f"<sticker:{segment.name}:{segment.id}>"}
    if isinstance(segment, env.RichContent):
        return {"type": "Plain", "text": segment.text}
    if isinstance(segment, env.Unsupported):
        return {"type": "Plain", "text": segment.fallback}
    if isinstance(segment, env.Text):  # subclasses, if anyone ever makes one
        return {"type": "Plain", "text": segment.text}
    # Unknown segment kinds (a newer envelope): readable, never dropped.
    return {"type": "Plain", "text": str(segment)}


#: segments that become mirai elements which must stand alone in a chain. Ariadne refuses a whole event
#: whose chain holds more than one element outside {Plain, Image, Face, At, AtAll, Source, Quote}
#: ("An MessageChain can only contain *one* special element"), while one Discord message may carry
#: several attachments and stickers. The first keeps its element; the rest become readable Plain text.
_SPECIAL_SEGMENTS = (env.Audio, env.File, env.Sticker)


def _special_as_text(segment: env.Segment) -> dict[str, object]:
    if isinstance(segment, env.Audio):
        text = f"[Voice] {segment.url}" if segment.url else "[Voice]"
    elif isinstance(segment, env.File):
        text = f"[File: {segment.name}] {segment.url}" if segment.url else f"[File: {segment.name}]"
    elif isinstance(segment, env.Sticker):
        text = f"[Sticker: {segment.name}]"
    else:
        text = str(segment)
    return {"type": "Plain", "text": text}


def encode_chain(segments: Sequence[env.Segment], ids: IdPresenter = SNOWFLAKE_IDS) -> list[dict[str, object]]:
    """Segments → mirai elements, in order (no Source/Quote); at most one stand-alone element."""
    elements: list[dict[str, object]] = []
    special_seen = False
    for segment in segments:
        if isinstance(segment, _SPECIAL_SEGMENTS):
            if special_seen:
                elements.append(_special_as_text(segment))
                continue
            special_seen = True
        elements.append(_encode_segment(segment, ids))
    return elements


def _quote_element(message: env.Message, *, bot_id: int, ids: IdPresenter) -> dict[str, object]:
    quote = message.quote
    assert quote is not None  # the caller checked
    conversation = message.conversation
    if conversation.kind is env.ConversationKind.GROUP:
        group_id = target_id = ids.present(conversation.id)
    else:
        # targetId = who received the quoted message (docs/mirai-api-http.md §7 Quote). A private conversation has two
        # parties, the bot and the user whose id it bears: whoever did not write the quoted message received it.
        group_id = 0
        target_id = bot_id if quote.author_id == conversation.id else ids.present(conversation.id)
    local_id = quote.ref.local_id
    return {
        "type": "Quote",
        "id": local_id if local_id is not None else 0,
        "groupId": group_id,
        "senderId": ids.present(quote.author_id),
        "targetId": target_id,
        "origin": encode_chain(quote.origin, ids),
    }


def encode_message_chain(
    message: env.Message, *, bot_id: int, ids: IdPresenter = SNOWFLAKE_IDS
) -> list[dict[str, object]]:
    """A message's whole chain: Source, the Quote if it replies, then its segments. ``bot_id`` is the bot's
    presented id (the receiver in private quotes), ``ids`` presents the others."""
    # Source first, Quote second: Ariadne looks for both in the first two elements (docs/mirai-api-http.md §3.7)
    chain: list[dict[str, object]] = [{"type": "Source", "id": message.local_id, "time": fields.clamp32(message.time)}]
    if message.quote is not None:
        chain.append(_quote_element(message, bot_id=bot_id, ids=ids))
    chain.extend(encode_chain(message.segments, ids))
    return chain


# --------------------------------------------------------------------------- in: elements → segments


def _decode_image(
    element: Mapping[str, object], where: str, id_key: str
) -> tuple[str | None, str | None, bytes | None]:
    """``(id, url, data)`` honouring mirai's send priority id > url > path > base64 (§7)."""
    media_id = element.get(id_key)
    if media_id is not None and media_id != "":
        return fields.string(element, id_key, None), None, None
    url = element.get("url")
    if url is not None and url != "":
        return None, fields.string(element, "url", None), None
    path = element.get("path")
    if path is not None and path != "":
        # mirai answers a missing local file with code 6 `文件不存在：<path>` (docs/mirai-api-http.md §5.2)
        raise fields.unsupported(
            f"{codec.NO_FILE_MESSAGE}{path} ({where}.path: the bridge does not share a file system with the framework; "
            "send url or base64 instead)"
        )
    data = element.get("base64")
    if data is not None and data != "":
        if not isinstance(data, str):
            raise fields.bad(f"{where}.base64", "must be a base64 string")
        try:
            return None, None, base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise fields.bad(f"{where}.base64", "is not valid base64") from None
    raise fields.bad(where, f"needs one of {id_key}, url or base64")


def _plain_text_of(chain: object, where: str, ids: IdPresenter) -> str:
    """Readable text of a nested chain (Forward nodes): Plain as is, everything else in brackets/urls."""
    parts: list[str] = []
    for segment in decode_chain(chain, where, ids=ids):
        if isinstance(segment, env.Text):
            parts.append(segment.text)
        elif isinstance(segment, env.Mention):
            parts.append(f"<@{segment.user_id}>")
        elif isinstance(segment, env.MentionAll):
            parts.append("@everyone")
        elif isinstance(segment, env.Image | env.Audio):
            parts.append(segment.url or "[media]")
        elif isinstance(segment, env.Emoji):
            parts.append(f"<{'a' if segment.animated else ''}:{segment.name}:{segment.id}>")
        elif isinstance(segment, env.Sticker):
            parts.append(f"[{segment.name}]")
    return "".join(parts)


def _decode_mirai_code(code: str, where: str, ids: IdPresenter) -> list[env.Segment]:
    """Best-effort mirai code: ``at``/``atall``/``image`` become elements; anything else stays readable text."""
    segments: list[env.Segment] = []
    position = 0

    def add_text(raw: str) -> None:
        text = _MIRAI_CODE_UNESCAPE_RE.sub(r"\1", raw)
        if text:
            segments.append(env.Text(text))

    for match in _MIRAI_CODE_RE.finditer(code):
        add_text(code[position : match.start()])
        position = match.end()
        kind = match.group(1).lower()
        args = _MIRAI_CODE_UNESCAPE_RE.sub(r"\1", match.group(2) or "")
        if kind == "at" and args.strip().lstrip("-").isdigit():
            segments.append(env.Mention(user_id=fields.resolve(ids, int(args.strip()), f"{where} [mirai:at]")))
        elif kind == "atall":
            segments.append(env.MentionAll())
        elif kind == "image" and args:
            segments.append(env.Image(id=args))
        else:
            segments.append(env.Text(match.group(0)))
    add_text(code[position:])
    return segments


def _decode_element(element: object, where: str, ids: IdPresenter) -> list[env.Segment]:
    if not isinstance(element, Mapping):
        raise fields.bad(where, "must be a message element object")
    kind = element.get("type")
    if not isinstance(kind, str):
        raise fields.missing(f"{where}.type")
    if kind == "Plain":
        return [env.Text(fields.string(element, "text", None))] if element.get("text") != "" else []
    if kind == "At":
        return [env.Mention(user_id=fields.resolve(ids, fields.long(element, "target"), f"{where}.target"))]
    if kind == "AtAll":
        return [env.MentionAll()]
    if kind in ("Source", "Quote"):
        return []  # ignored on send (docs/mirai-api-http.md §7); the `quote` parameter makes replies
    if kind in ("Image", "FlashImage"):
        # FlashImage: Discord has no self-destructing images; it is sent as an ordinary image.
        image_id, url, data = _decode_image(element, where, "imageId")
        return [env.Image(id=image_id, url=url, data=data)]
    if kind == "Voice":
        voice_id, url, data = _decode_image(element, where, "voiceId")
        return [env.Audio(id=voice_id, url=url, data=data)]
    if kind == "Face":
        name = element.get("name")
        if isinstance(name, str):
            match = _EMOJI_RE.fullmatch(name)
            if match:
                return [env.Emoji(id=int(match.group(3)), name=match.group(2), animated=match.group(1) == "a")]
        # a QQ face has no Discord counterpart: readable text
        label = name if isinstance(name, str) and name else str(element.get("faceId", "?"))
        return [env.Text(f"[表情:{label}]")]
    if kind == "MarketFace":
        name = fields.string(element, "name", "")
        match = _STICKER_RE.fullmatch(name)
        if match:
            return [env.Sticker(id=int(match.group(2)), name=match.group(1))]
        return [env.Text(f"[{name or '商城表情'}]")]
    if kind == "MiraiCode":
        return _decode_mirai_code(fields.string(element, "code", None), f"{where}.code", ids)
    if kind == "Dice":
        value = fields.int32(element, "value", 0)
        return [env.Text(f"🎲 {value}")]
    if kind == "MusicShare":
        title = fields.string(element, "title", "")
        summary = fields.string(element, "summary", "")
        url = fields.string(element, "jumpUrl", "") or fields.string(element, "musicUrl", "")
        text = " - ".join(part for part in (title, summary) if part)
        return [env.Text(f"🎵 {text}\n{url}".strip() if url else f"🎵 {text}")]
    if kind == "ShortVideo":
        video_id = element.get("videoId")
        if isinstance(video_id, str) and codec.is_upload_id(video_id):  # uploaded to the bridge: an attachment
            return [env.File(id=video_id, name=fields.string(element, "filename", ""))]
        video_url = element.get("videoUrl")
        if isinstance(video_url, str) and video_url:
            return [env.Text(video_url)]  # Discord embeds the link
        raise fields.unsupported(f"{where}: ShortVideo without videoUrl cannot be sent to Discord (no QQ video store)")
    if kind == "Forward":
        return _decode_forward(element, where, ids)
    if kind in ("Xml", "Json", "App"):
        raise fields.unsupported(
            f"{where}: {kind} service cards cannot be rendered on Discord; send Plain text or an Image instead"
        )
    if kind == "Poke":
        raise fields.unsupported(f"{where}: Discord has no poke (戳一戳)")
    if kind == "File":
        file_id = element.get("id")
        if isinstance(file_id, str) and codec.is_upload_id(file_id):  # uploaded to the bridge: an attachment
            return [env.File(id=file_id, name=fields.string(element, "name", ""))]
        raise fields.unsupported(f"{where}: File elements cannot be sent (mirai drops them too); send a link instead")
    raise fields.bad(f"{where}.type", f"is not a mirai message element ({kind!r})")


def _decode_forward(element: Mapping[str, object], where: str, ids: IdPresenter) -> list[env.Segment]:
    """Forward → readable quoted lines ``> name: text`` (Discord has no merged-forward cards)."""
    nodes = element.get("nodeList")
    if not isinstance(nodes, list):
        raise fields.bad(f"{where}.nodeList", "must be a list of nodes")
    lines: list[str] = []
    for index, node in enumerate(nodes):
        node_where = f"{where}.nodeList[{index}]"
        node_map = fields.mapping(node, node_where)
        chain = node_map.get("messageChain")
        if chain is None:
            raise fields.unsupported(
                f"{node_where}: forward nodes by messageId/messageRef are not supported; "
                "give senderName and messageChain"
            )
        name = fields.string(node_map, "senderName", "") or str(node_map.get("senderId") or "")
        text = _plain_text_of(chain, f"{node_where}.messageChain", ids)
        lines.append(f"> {name}: {text}" if name else f"> {text}")
    display = element.get("display")
    title = ""
    if isinstance(display, Mapping):
        raw_title = display.get("title")
        title = raw_title if isinstance(raw_title, str) else ""
    header = [f"**{title}**"] if title else []
    return [env.Text("\n".join(header + lines))] if lines or header else []


def decode_chain(chain: object, where: str = "messageChain", *, ids: IdPresenter = SNOWFLAKE_IDS) -> list[env.Segment]:
    """A mirai ``messageChain`` → envelope segments; raises :class:`~adapters.mirai.fields.BadContent` naming the
    element (``messageChain[2].target``) when one cannot be used. ``ids`` maps ``At`` targets back to Discord
    ids."""
    if not isinstance(chain, list):
        raise fields.bad(where, "must be a list of message elements")
    segments: list[env.Segment] = []
    for index, element in enumerate(chain):
        element_where = f"{where}[{index}]"
        try:
            segments.extend(_decode_element(element, element_where, ids))
        except fields.BadContent as problem:
            if element_where in problem.msg:
                raise
            # a field of the element (``text``, ``target``...): name it with its path in the chain
            prefix = fields.BAD_INPUT_PREFIX
            msg = problem.msg.replace(prefix, f"{prefix}{element_where}.", 1)
            missing = f"{element_where}.{problem.missing}" if problem.missing else None
            raise fields.BadContent(problem.code, msg, missing=missing) from None
    return segments
