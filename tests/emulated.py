"""The project's tests against the embedded Discord (relay.sandbox.emulator): how they start it, and the few
conveniences they share. A thin layer over :class:`~relay.sandbox.emulator.emulator.Emulator`: the REST API,
the gateway, the world and what users and moderators do are all the emulator's own.

    discord = Emulator(token=TOKEN)                  # in memory (":memory:"), the real clock
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    await start_emulator(nursery, discord)           # REST + gateway on one 127.0.0.1 port
    await say(discord, CHANNEL, ALICE, "hi")         # stored, and MESSAGE_CREATE to every session that wants it

A test about a hand-built or malformed dispatch sends it raw (``discord.dispatch``); one that needs the payload
Discord would send for a stored message takes it from :func:`message_create`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

import trio

from relay.sandbox.emulator import payloads
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.server import serve_emulator
from relay.sandbox.emulator.world import DEFAULT_BOT_ID

#: the token the tests' bridges log in with
TOKEN = "test-token"
#: the bot user of a new emulated world
BOT_ID = DEFAULT_BOT_ID

JSON = dict[str, Any]


async def start_emulator(nursery: trio.Nursery, emulator: Emulator | None = None, **options: Any) -> Emulator:
    """Serve ``emulator`` (default: a new in-memory one with ``options``) on a free 127.0.0.1 port in ``nursery``;
    its addresses (``base_url``, ``gateway_url``) are set when this returns."""
    if emulator is None:
        emulator = Emulator(**{"token": TOKEN, **options})
    await nursery.start(functools.partial(serve_emulator, emulator))
    return emulator


def add_guild(
    emulator: Emulator,
    guild_id: int,
    name: str,
    *,
    owner_id: int,
    channels: dict[int, str],
    members: Iterable[int] = (),
) -> None:
    """Seed a guild (the bot and the owner are members) with text channels and members, silently (no events)."""
    world = emulator.world
    world.add_guild(guild_id, name, owner_id=owner_id)
    for channel_id, channel_name in channels.items():
        world.add_channel(channel_id, channel_name, guild_id=guild_id)
    for user_id in members:
        if (guild_id, user_id) not in world.members:
            world.add_member(guild_id, user_id)


async def say(
    emulator: Emulator, channel_id: int, author_id: int, content: str, *, reply_to: int | None = None
) -> JSON:
    """``author_id`` posts ``content`` in the channel (as Discord's client would): the stored message, whose
    MESSAGE_CREATE went to the gateway sessions."""
    message = emulator.actions.post_message(channel_id, content, author_id=author_id, reply_to=reply_to)
    await trio.lowlevel.checkpoint()
    return message


def message_create(emulator: Emulator, message: JSON) -> JSON:
    """The MESSAGE_CREATE ``d`` Discord sends for a stored message (the author's partial member included)."""
    return payloads.message_create(message, emulator.world.members)


def sent_dispatches(emulator: Emulator, name: str, *, shard_id: int = 0) -> list[JSON]:
    """The ``d`` of every dispatch ``name`` the shard's current session was sent (kept for a resume), in order."""
    session = emulator.gateway.session_of(shard_id)
    if session is None:
        return []
    found = []
    for _seq, text in session.buffer:
        payload = json.loads(text)
        if payload["t"] == name:
            found.append(payload["d"])
    return found
