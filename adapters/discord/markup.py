"""Discord message markup ⇄ envelope segments, both directions (docs/discord.md §7.1–§7.4).

* inbound, :func:`parse_content`: message content → segments (user mentions, @everyone/@here and custom
  emojis as their own segments; role/channel mentions and timestamps rendered as readable text), with
  :func:`embed_text` for the embeds of bots;
* outbound, :func:`render_segments` and :func:`build_message_bodies`: segments → content with explicit
  ``allowed_mentions``, split into Create Message bodies within Discord's limits.

Pure: names the message does not carry are looked up through :class:`Names` (the cache implements it).

Decisions (documented for framework authors):

* Text is sent **as is**: no Discord-markdown escaping (frameworks send plain text and expect it shown; a
  framework that wants literal ``*`` can escape it itself).
* ``allowed_mentions`` is always explicit: ``parse: []``, ``users`` = exactly the users mentioned through
  Mention segments, ``replied_user: false``. A framework can never mass-ping by putting ``@everyone`` or
  ``<@&role>`` in text.
* MentionAll is rendered as ``@everyone``/``@here`` text; it pings only when ``MappingConfig.allow_mention_all``
  is true (then ``"everyone"`` is added to ``parse``). Otherwise the text is shown without notifying anyone —
  the message is still delivered (refusing it would break frameworks that prefix announcements with AtAll).
* Text over 2000 characters is split at line, then space boundaries (``LongMessageMode.SPLIT``) or refused
  with ``FailureKind.TOO_LONG`` (``REFUSE``). The quote goes on the first part, uploads/stickers/embeds on the
  last.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import attrs

from adapters.discord.media import MAX_FILES_PER_MESSAGE
from adapters.discord.snowflakes import to_int
from relay import envelope as env
from relay.config import LongMessageMode, MappingConfig
from relay.errors import CommandFailed, FailureKind

# docs/discord.md §7.3 limits
MAX_CONTENT: Final = 2000
MAX_STICKERS_PER_MESSAGE: Final = 3
MAX_EMBED_DESCRIPTION: Final = 4096
MAX_EMBED_TITLE: Final = 256
MAX_ALLOWED_MENTION_USERS: Final = 100  # docs/discord.md §7.2

# --------------------------------------------------------------------------- inbound

# docs/discord.md §7.1: one pass over the content for every markup token the bridge maps
_TOKEN = re.compile(
    r"<@!?(?P<user>\d+)>"
    r"|<@&(?P<role>\d+)>"
    r"|<#(?P<channel>\d+)>"
    r"|<(?P<anim>a?):(?P<ename>\w+):(?P<eid>\d+)>"
    r"|<t:(?P<ts>-?\d+)(?::(?P<style>[tTdDfFsSR]))?>"
    r"|@(?P<all>everyone|here)",
)

_TIME_STYLES = {
    "t": "%H:%M UTC",
    "T": "%H:%M:%S UTC",
    "d": "%Y-%m-%d",
    "D": "%d %B %Y",
    "f": "%Y-%m-%d %H:%M UTC",
    "F": "%A, %d %B %Y %H:%M UTC",
    "s": "%Y-%m-%d %H:%M UTC",
    "S": "%Y-%m-%d %H:%M:%S UTC",
    "R": "%Y-%m-%d %H:%M UTC",  # relative needs a "now" at read time; an absolute time stays true
}


def format_timestamp(seconds: int, style: str | None) -> str:
    """``<t:…>`` → readable UTC text (a framework has no idea of the reader's time zone)."""
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"<t:{seconds}>"
    return moment.strftime(_TIME_STYLES.get(style or "f", _TIME_STYLES["f"]))


class Names(Protocol):
    """Where :func:`parse_content` looks up the names a message does not carry."""

    def display_name(self, guild_id: int, user_id: int) -> str:
        """A user's name as shown in the guild (nick first); "" when unknown."""
        ...

    def role_name(self, guild_id: int, role_id: int) -> str | None:
        """None when the guild has no such role (any more)."""
        ...

    def channel_name(self, channel_id: int) -> str | None:
        """None when the channel is unknown."""
        ...


def parse_content(content: str, data: Mapping[str, Any], guild_id: int, names: Names) -> list[env.Segment]:
    """Message content → segments: user mentions, @everyone/@here and custom emojis become their own segments;
    role and channel mentions and timestamps are rendered as text (docs/discord.md §7.1). ``data`` is the message
    (its ``mentions`` name the users mentioned), ``names`` looks up what the message does not carry."""
    out: list[env.Segment] = []
    position = 0
    mentioned: dict[int, str] | None = None
    pending: list[str] = []  # text (incl. rendered role/channel/time tokens) not yet emitted
    for match in _TOKEN.finditer(content):
        start = match.start()
        if start > position:
            pending.append(content[position:start])
        position = match.end()
        kind = match.lastgroup
        if kind == "user":
            if mentioned is None:
                mentioned = _mention_names(data)
            user_id = int(match.group("user"))
            display = mentioned.get(user_id) or names.display_name(guild_id, user_id)
            segment: env.Segment = env.Mention(user_id=user_id, display=display)
        elif kind == "all":
            segment = env.MentionAll(here=match.group("all") == "here")
        elif kind == "eid":
            segment = env.Emoji(
                id=int(match.group("eid")), name=match.group("ename"), animated=match.group("anim") == "a"
            )
        elif kind == "role":
            role = names.role_name(guild_id, int(match.group("role")))
            pending.append("@" + role if role is not None else "@deleted-role")
            continue
        elif kind == "channel":
            channel = names.channel_name(int(match.group("channel")))
            pending.append("#" + channel if channel else "#unknown")
            continue
        else:  # "ts" or "style": a timestamp
            pending.append(format_timestamp(int(match.group("ts")), match.group("style")))
            continue
        if pending:
            out.append(env.Text("".join(pending)))
            pending.clear()
        out.append(segment)
    if position < len(content):
        pending.append(content[position:])
    if pending:
        out.append(env.Text("".join(pending)))
    return out


def _mention_names(data: Mapping[str, Any]) -> dict[int, str]:
    """Display names of the users a message mentions (``mentions[]`` carries partial members)."""
    names: dict[int, str] = {}
    for user in data.get("mentions") or ():
        if isinstance(user, dict):
            member = user.get("member")
            nick = member.get("nick") if isinstance(member, dict) else None
            names[to_int(user.get("id"))] = str(nick or user.get("global_name") or user.get("username") or "")
    return names


def merge_text(segments: list[env.Segment]) -> tuple[env.Segment, ...]:
    """Adjacent Text segments become one (role/channel mentions are rendered as text)."""
    if len(segments) < 2:
        return tuple(segments)
    merged: list[env.Segment] = []
    for segment in segments:
        if merged and type(segment) is env.Text and type(merged[-1]) is env.Text:
            merged[-1] = env.Text(merged[-1].text + segment.text)
        else:
            merged.append(segment)
    return tuple(merged)


def embed_text(embed: Mapping[str, Any]) -> str:
    """An embed as readable plain text: author, title, description, fields, footer (one per line)."""
    lines: list[str] = []
    author = embed.get("author")
    if isinstance(author, dict) and author.get("name"):
        lines.append(str(author["name"]))
    if embed.get("title"):
        lines.append(str(embed["title"]))
    if embed.get("description"):
        lines.append(str(embed["description"]))
    for field in embed.get("fields") or ():
        if isinstance(field, dict):
            lines.append(f"{field.get('name', '')}: {field.get('value', '')}")
    footer = embed.get("footer")
    if isinstance(footer, dict) and footer.get("text"):
        lines.append(str(footer["text"]))
    if not lines and embed.get("url"):
        lines.append(str(embed["url"]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- outbound


@attrs.frozen(kw_only=True)
class Rendered:
    """Segments turned into Discord parts: text, users to allow pinging, and what still needs uploading."""

    content: str
    mention_users: tuple[int, ...] = ()
    mention_everyone: bool = False
    media: tuple[env.Image | env.Audio | env.File, ...] = ()
    sticker_ids: tuple[int, ...] = ()
    embeds: tuple[dict[str, Any], ...] = ()


def render_segments(segments: Sequence[env.Segment], *, allow_mention_all: bool) -> Rendered:
    """Envelope segments → Discord markup (docs/discord.md §7.1). Media are returned for upload, not rendered."""
    parts: list[str] = []
    users: list[int] = []
    everyone = False
    media: list[env.Image | env.Audio | env.File] = []
    stickers: list[int] = []
    embeds: list[dict[str, Any]] = []
    for segment in segments:
        if isinstance(segment, env.Text):
            parts.append(segment.text)
        elif isinstance(segment, env.Mention):
            parts.append(f"<@{segment.user_id}>")
            if segment.user_id not in users:
                users.append(segment.user_id)
        elif isinstance(segment, env.MentionAll):
            parts.append("@here" if segment.here else "@everyone")
            everyone = everyone or allow_mention_all
        elif isinstance(segment, env.Emoji):
            parts.append(f"<{'a' if segment.animated else ''}:{segment.name}:{segment.id}>")
        elif isinstance(segment, (env.Image, env.Audio, env.File)):
            media.append(segment)
        elif isinstance(segment, env.Sticker):
            stickers.append(segment.id)
        elif isinstance(segment, env.RichContent):
            embed: dict[str, Any] = {"description": segment.text[:MAX_EMBED_DESCRIPTION]}
            if segment.title:
                embed["title"] = segment.title[:MAX_EMBED_TITLE]
            if segment.url:
                embed["url"] = segment.url
            embeds.append(embed)
        elif isinstance(segment, env.Unsupported):
            parts.append(segment.fallback)
    return Rendered(
        content="".join(parts),
        mention_users=tuple(users),
        mention_everyone=everyone,
        media=tuple(media),
        sticker_ids=tuple(stickers),
        embeds=tuple(embeds),
    )


def allowed_mentions(users: Sequence[int], everyone: bool) -> dict[str, Any]:
    """Exactly these users (and @everyone/@here only when allowed) may be pinged (docs/discord.md §7.2)."""
    return {
        "parse": ["everyone"] if everyone else [],
        "users": [str(u) for u in users[:MAX_ALLOWED_MENTION_USERS]],
        "replied_user": False,
    }


def split_text(text: str, limit: int = MAX_CONTENT) -> list[str]:
    """Split at the last newline, else the last space, within ``limit``; hard-cut only a single huge word.

    Mention/emoji tokens contain no spaces, so they are only cut when a word longer than ``limit`` forces it.
    """
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = window.rfind("\n")
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            chunks.append(rest[:limit])
            rest = rest[limit:]
            continue
        chunks.append(rest[:cut])
        rest = rest[cut + 1 :]  # the separator itself is dropped: it would start the next message
    if rest:
        chunks.append(rest)
    return chunks


def build_message_bodies(
    rendered: Rendered,
    *,
    quote_message_id: int | None,
    upload_names: Sequence[str],
    config: MappingConfig,
) -> list[dict[str, Any]]:
    """The JSON bodies of Create Message for one SendMessage (docs/discord.md §7.3, §7.4).

    ``upload_names`` are the file names of the uploads (files[0..n]) that go with the last body.
    Raises CommandFailed(TOO_LONG) in refuse mode, CommandFailed(BAD_INPUT) when nothing would be sent.
    """
    content = rendered.content
    if len(content) > MAX_CONTENT and config.long_messages == LongMessageMode.REFUSE:
        raise CommandFailed(
            FailureKind.TOO_LONG,
            f"message text is {len(content)} characters; Discord allows {MAX_CONTENT} and "
            '[mapping] long_messages = "refuse" (set it to "split" to send it in parts)',
        )
    if len(upload_names) > MAX_FILES_PER_MESSAGE:
        raise CommandFailed(
            FailureKind.BAD_INPUT,
            f"{len(upload_names)} attachments; Discord allows {MAX_FILES_PER_MESSAGE} per message",
        )
    if len(rendered.sticker_ids) > MAX_STICKERS_PER_MESSAGE:
        raise CommandFailed(
            FailureKind.BAD_INPUT,
            f"{len(rendered.sticker_ids)} stickers; Discord allows {MAX_STICKERS_PER_MESSAGE} per message",
        )
    chunks = split_text(content) if content else []
    has_extras = bool(upload_names or rendered.sticker_ids or rendered.embeds)
    if not chunks and not has_extras:
        raise CommandFailed(FailureKind.BAD_INPUT, "the message is empty: nothing to send")
    if not chunks:
        chunks = [""]
    mentions = allowed_mentions(rendered.mention_users, rendered.mention_everyone)
    bodies: list[dict[str, Any]] = []
    for index, chunk in enumerate(chunks):
        body: dict[str, Any] = {"allowed_mentions": mentions}
        if chunk:
            body["content"] = chunk
        if index == 0 and quote_message_id:
            body["message_reference"] = {"message_id": str(quote_message_id), "fail_if_not_exists": False}
        if index == len(chunks) - 1:
            if upload_names:
                body["attachments"] = [{"id": n, "filename": name} for n, name in enumerate(upload_names)]
            if rendered.sticker_ids:
                body["sticker_ids"] = [str(s) for s in rendered.sticker_ids]
            if rendered.embeds:
                body["embeds"] = [dict(e) for e in rendered.embeds]
        bodies.append(body)
    return bodies
