"""How robot posts look on Discord, and how a burst is packed into messages (pure).

Every post is shown as ``**<display name>**: <text>`` (``**<display name> · <username>**`` when the sender named
itself, as a Discord webhook's ``username``), so readers can tell robots and people apart although the bot account
posts them all. The name's Markdown characters are escaped; the text's Markdown is kept (it is what senders
write for DingTalk, Slack and Discord alike). Mentions in the text never ping: the executor sends every message
with explicit ``allowed_mentions`` and no AtAll.

Packing: the queued posts of a channel are cut into pieces of at most :data:`MAX_MESSAGE` characters (a longer
post is split, at a line break when there is one in its second half), and consecutive pieces are joined with
newlines, in order, into as few messages as fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["MAX_MESSAGE", "pack", "render", "split"]

#: Discord's limit on a message's content, in characters (docs/discord.md §7.3)
MAX_MESSAGE: Final = 2000

_MARKDOWN = re.compile(r"([\\*_~`|>\[\]])")


def render(display_name: str, text: str, username: str = "") -> str:
    """One post as it appears in a message."""
    name = _MARKDOWN.sub(r"\\\1", display_name)
    if username and username != display_name:
        name += " · " + _MARKDOWN.sub(r"\\\1", username)
    return f"**{name}**: {text}"


def split(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a line break in each piece's second half when
    there is one."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit)
        if cut == -1:
            pieces.append(text[:limit])
            text = text[limit:]
        else:
            pieces.append(text[:cut])
            text = text[cut + 1 :]
    if text or not pieces:
        pieces.append(text)
    return pieces


def pack(pieces: Sequence[str], limit: int = MAX_MESSAGE) -> tuple[str, int]:
    """The next message: as many of the leading ``pieces`` (each ≤ ``limit``) as fit, joined by newlines; returns
    it and how many pieces it took (at least one)."""
    message = pieces[0]
    taken = 1
    while taken < len(pieces) and len(message) + 1 + len(pieces[taken]) <= limit:
        message += "\n" + pieces[taken]
        taken += 1
    return message, taken
