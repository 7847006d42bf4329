"""One consistent fake Discord: the fake REST server's state and the fake gateway's dispatches agree.

    world = DiscordWorld()
    world.add_guild(GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    await world.start(nursery)          # REST + gateway on 127.0.0.1; READY carries the guild
    await world.gateway.dispatch("MESSAGE_CREATE", world.user_message(CHANNEL, ALICE, "hi"))

Used by the end-to-end tests and usable from scripts; it only ever listens on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import trio

from tests.fakes.fake_gateway import FakeGateway
from tests.fakes.fake_rest import DEFAULT_BOT_ID, FakeDiscordRest

TOKEN = "test-token"


class _RestMembers(Mapping[int, list[dict[str, Any]]]):
    """Every guild's members as the fake REST has them now: what the fake gateway's op 8 answers."""

    def __init__(self, rest: FakeDiscordRest) -> None:
        self.rest = rest

    def __getitem__(self, guild_id: int) -> list[dict[str, Any]]:
        if guild_id not in self.rest.guilds:
            raise KeyError(guild_id)
        return [self.rest.listed_member(g, u) for (g, u) in self.rest.members if g == guild_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self.rest.guilds)

    def __len__(self) -> int:
        return len(self.rest.guilds)


class DiscordWorld:
    def __init__(self, *, token: str = TOKEN, bot_id: int = DEFAULT_BOT_ID) -> None:
        self.token = token
        self.bot_id = bot_id
        # the bridge runs on wall-clock time, so the fake Discord's timestamps follow the real clock too
        self.rest = FakeDiscordRest(token=token, bot_user_id=bot_id, epoch=None)
        self.gateway = FakeGateway(
            token=token, bot_user=dict(self.rest.users[bot_id]), guild_members=_RestMembers(self.rest)
        )
        self._guild_ids: list[int] = []

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.rest.serve)
        self.gateway.ready_guilds = [self.guild_create(g) for g in self._guild_ids]
        await nursery.start(self.gateway.serve)
        self.rest.gateway_url = self.gateway.url

    def add_guild(
        self,
        guild_id: int,
        name: str,
        *,
        owner_id: int,
        channels: dict[int, str],
        members: list[int] = (),  # type: ignore[assignment]
    ) -> None:
        self.rest.add_guild(guild_id, name, owner_id=owner_id)
        for channel_id, channel_name in channels.items():
            self.rest.add_channel(channel_id, channel_name, guild_id=guild_id)
        for user_id in members:
            if (guild_id, user_id) not in self.rest.members:
                self.rest.add_member(guild_id, user_id)
        self._guild_ids.append(guild_id)

    def guild_create(self, guild_id: int) -> dict[str, Any]:
        """The GUILD_CREATE body for a guild as the REST state has it (channels and members included)."""
        guild = dict(self.rest.guilds[guild_id])
        guild["channels"] = [
            {k: v for k, v in c.items() if k != "guild_id"}  # Discord omits guild_id inside GUILD_CREATE
            for c in self.rest.channels.values()
            if c.get("guild_id") == str(guild_id)
        ]
        guild["members"] = [self.rest.listed_member(g, u) for (g, u) in self.rest.members if g == guild_id]
        guild.update(
            joined_at=self.rest.now_iso(),
            large=False,
            unavailable=False,
            member_count=len(guild["members"]),
            threads=[],
            presences=[],
            voice_states=[],
        )
        return guild

    def user_message(
        self, channel_id: int, author_id: int, content: str, *, reply_to: int | None = None
    ) -> dict[str, Any]:
        """Store a message in the REST state and return its MESSAGE_CREATE body (with the partial member)."""
        message = dict(self.rest.add_message(channel_id, content, author_id=author_id, reply_to=reply_to))
        guild_id = message.get("guild_id")
        if guild_id is not None:
            member = self.rest.members.get((int(guild_id), author_id))
            if member is not None:
                message["member"] = {k: v for k, v in member.items() if k != "user"}
        return message

    def member_add(self, guild_id: int, user_id: int, username: str) -> dict[str, Any]:
        member = dict(self.rest.add_member(guild_id, user_id, username=username))
        return {**member, "guild_id": str(guild_id)}
