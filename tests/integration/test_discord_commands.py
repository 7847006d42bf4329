"""Every envelope command end to end: DiscordCommandExecutor → real RestClient → the emulated Discord on 127.0.0.1.

Each command has a success test and at least one failure test; ``test_every_command_is_exercised`` fails when
a command of ``relay.envelope.Command`` is added without a test here.
"""

from __future__ import annotations

import pathlib
import socket
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from adapters.discord.cache import DiscordCache
from adapters.discord.commands_out import MUTE_ALL_DENY, DiscordCommandExecutor
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.media import media_id
from adapters.discord.own_actions import OwnActions
from adapters.discord.rest.client import open_rest_client
from adapters.discord.snowflakes import parse_iso_time
from relay.config import BridgeConfig, DiscordConfig, LongMessageMode, MappingConfig
from relay.envelope import (
    Announcement,
    AnnouncementList,
    AnnouncementPublished,
    Audio,
    Command,
    ConversationRef,
    DeleteAnnouncement,
    DeleteFriend,
    Done,
    Emoji,
    FriendList,
    GetBotProfile,
    GetGroupConfig,
    GetHistory,
    GetMember,
    GetMessage,
    GetUserProfile,
    Group,
    GroupConfig,
    GroupList,
    Image,
    KickMember,
    LeaveGroup,
    ListAnnouncements,
    ListFriends,
    ListGroups,
    ListMembers,
    Member,
    MemberFound,
    MemberLeft,
    MemberList,
    Mention,
    MentionAll,
    MessageFound,
    MessageList,
    MessageRef,
    MessageSent,
    MuteMember,
    PinMessage,
    Profile,
    ProfileFound,
    PublishAnnouncement,
    Quote,
    RecallMessage,
    Result,
    Role,
    SendMessage,
    SetMemberAdmin,
    SetMuteAll,
    Text,
    UnmuteMember,
    UpdateGroupConfig,
    UpdateMember,
    User,
)
from relay.errors import CommandFailed, FailureKind
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH
from relay.sandbox.emulator.rest import Fail
from tests.emulated import BOT_ID, message_create, start_emulator

TOKEN = "test-token-for-commands"
BOT = BOT_ID
GUILD = 900_000_000_000_000_001
OWNER = 900_000_000_000_000_101
ALICE = 900_000_000_000_000_102
BOB = 900_000_000_000_000_103
CAROL = 900_000_000_000_000_104  # a user who shares no guild
GENERAL = 900_000_000_000_000_201
RANDOM = 900_000_000_000_000_202
VOICE = 900_000_000_000_000_203
MODS = 900_000_000_000_000_301
UNKNOWN = 900_000_000_000_000_999
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
OGG = b"OggS" + b"\x00" * 60


def make_discord() -> Emulator:
    """The emulated Discord on the virtual clock (its wall time is FAKE_EPOCH + trio time)."""
    discord = Emulator(token=TOKEN, epoch=FAKE_EPOCH)
    world = discord.world
    world.add_guild(GUILD, "Guild", owner_id=OWNER)
    world.add_role(GUILD, MODS, "Moderators", permissions=0, position=1)
    world.add_channel(GENERAL, "general", guild_id=GUILD)
    world.add_channel(RANDOM, "random", guild_id=GUILD)
    world.add_channel(VOICE, "voice", guild_id=GUILD, type=2)
    world.add_member(GUILD, ALICE, nick="Alice", username="alice")
    world.add_member(GUILD, BOB, username="bob")
    world.add_user(CAROL, "carol")
    return discord


def fake_now() -> float:
    return FAKE_EPOCH + trio.current_time()


def sync_cache(discord: Emulator, translator: DispatchTranslator) -> None:
    """What READY + GUILD_CREATE tell the translator about the emulated Discord's state (no gateway here)."""
    now = fake_now()
    world = discord.world
    translator.on_dispatch(
        "READY",
        {"user": world.bot_user, "guilds": [{"id": str(g), "unavailable": True} for g in world.bot_guilds()]},
        now,
    )
    for guild_id in world.bot_guilds():
        translator.on_dispatch("GUILD_CREATE", world.guild_create(guild_id), now)


@attrs.define
class Env:
    discord: Emulator
    executor: DiscordCommandExecutor
    translator: DispatchTranslator
    cache: DiscordCache

    async def run(self, command: Command) -> Result:
        return await self.executor.execute(command)

    async def fails(self, command: Command, kind: FailureKind) -> CommandFailed:
        with pytest.raises(CommandFailed) as caught:
            await self.executor.execute(command)
        assert caught.value.kind == kind, caught.value
        assert caught.value.message  # always readable
        return caught.value

    def bodies(self, route: str = "POST /channels/{channel_id}/messages") -> list[Any]:
        return [r.json for r in self.discord.requests_to(route)]


@asynccontextmanager
async def running(mapping: MappingConfig | None = None, discord: Emulator | None = None) -> AsyncIterator[Env]:
    discord = discord or make_discord()
    mapping = mapping or MappingConfig()
    async with trio.open_nursery() as nursery:
        await start_emulator(nursery, discord)
        config = BridgeConfig(discord=DiscordConfig(api_base_url=discord.base_url, max_retries=1), mapping=mapping)
        async with open_rest_client(config.discord, TOKEN) as rest:
            cache = DiscordCache()
            entities, own = EntityFactory(cache, mapping), OwnActions()
            translator = DispatchTranslator(entities, own)
            sync_cache(discord, translator)
            executor = DiscordCommandExecutor(rest, entities, own, config, clock=fake_now)
            yield Env(discord, executor, translator, cache)
        nursery.cancel_scope.cancel()


G = ConversationRef.group(GENERAL)


def group_of(channel: int = GENERAL, name: str = "general") -> Group:
    return Group(id=channel, name=name, bot_role=Role.MEMBER, guild_id=GUILD)


# ============================================================================ SendMessage


async def test_send_message_text_mention_emoji_quote(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            earlier = env.discord.world.add_message(GENERAL, "earlier", author_id=ALICE)
            result = await env.run(
                SendMessage(
                    conversation=G,
                    segments=(Text("hi "), Mention(user_id=ALICE), Text(" "), Emoji(id=42, name="wave", animated=True)),
                    quote=MessageRef(conversation=G, platform_id=int(earlier["id"]), channel_id=GENERAL),
                )
            )
            assert isinstance(result, MessageSent)
            body = env.bodies()[-1]
            nonce = body.pop("nonce")
            assert 0 < len(nonce) <= 25
            assert body == {
                "allowed_mentions": {"parse": [], "users": [str(ALICE)], "replied_user": False},
                "content": f"hi <@{ALICE}> <a:wave:42>",
                "message_reference": {"message_id": earlier["id"], "fail_if_not_exists": False},
                "enforce_nonce": True,
            }
            sent_id = max(env.discord.world.messages[GENERAL])
            assert result.ref == MessageRef(conversation=G, platform_id=sent_id, channel_id=GENERAL)
            assert result.extra == ()
            # the echo of our own send is not pushed back to the frameworks
            echo = message_create(env.discord, env.discord.world.messages[GENERAL][sent_id])
            assert env.translator.on_dispatch("MESSAGE_CREATE", echo, fake_now()) == []


async def test_send_message_failures(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running(MappingConfig(channels=(GENERAL,))) as env:
            await env.fails(
                SendMessage(conversation=ConversationRef.group(UNKNOWN), segments=(Text("x"),)), FailureKind.NOT_FOUND
            )
            await env.fails(
                SendMessage(conversation=ConversationRef.group(RANDOM), segments=(Text("x"),)), FailureKind.NOT_FOUND
            )  # not bridged
            await env.fails(SendMessage(conversation=G, segments=()), FailureKind.BAD_INPUT)
            await env.fails(
                SendMessage(conversation=G, segments=(Text("x"),), quote=MessageRef(conversation=G)),
                FailureKind.NOT_FOUND,
            )
            env.discord.forbid("POST /channels/{channel_id}/messages", GENERAL)
            await env.fails(SendMessage(conversation=G, segments=(Text("x"),)), FailureKind.NO_PERMISSION)
            assert env.discord.world.messages[GENERAL] == {}


@pytest.mark.parametrize("allowed", [False, True])
async def test_send_mention_all(autojump_clock: trio.abc.Clock, allowed: bool) -> None:
    with trio.fail_after(30):
        async with running(MappingConfig(allow_mention_all=allowed)) as env:
            await env.run(SendMessage(conversation=G, segments=(MentionAll(), Text(" meeting now"))))
            body = env.bodies()[-1]
            assert body["content"] == "@everyone meeting now"
            assert body["allowed_mentions"]["parse"] == (["everyone"] if allowed else [])


async def test_send_images_by_data_url_and_issued_id(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            # base64 / raw data → multipart upload
            first = await env.run(SendMessage(conversation=G, segments=(Text("pic"), Image(data=PNG))))
            assert isinstance(first, MessageSent)
            request = env.discord.requests_to("POST /channels/{channel_id}/messages")[-1]
            assert [p.name for p in request.parts] == ["payload_json", "files[0]"]
            assert request.parts[1].data == PNG
            assert request.parts[1].content_type == "image/png"
            assert request.json["attachments"] == [{"id": 0, "filename": "image.png"}]
            assert request.json["content"] == "pic"
            # by URL → downloaded, then uploaded
            url = env.discord.world.add_file("/cdn/voice.ogg", OGG, "audio/ogg")
            await env.run(SendMessage(conversation=G, segments=(Audio(url=url),)))
            request = env.discord.requests_to("POST /channels/{channel_id}/messages")[-1]
            assert request.parts[1].data == OGG
            assert request.json["attachments"] == [{"id": 0, "filename": "voice.ogg"}]
            assert "content" not in request.json
            # an id this bridge issued for a received attachment (the cache has forgotten it): re-fetched
            stored = env.discord.world.messages[GENERAL][first.ref.platform_id or 0]
            attachment = stored["attachments"][0]
            issued = media_id(GENERAL, int(stored["id"]), int(attachment["id"]), attachment["filename"])
            await env.run(SendMessage(conversation=ConversationRef.group(RANDOM), segments=(Image(id=issued),)))
            request = env.discord.requests_to("POST /channels/{channel_id}/messages")[-1]
            assert request.parts[1].data == PNG
            assert request.json["attachments"] == [{"id": 0, "filename": "image.png"}]
            # failures: an id from elsewhere, a dead URL, too large data
            await env.fails(SendMessage(conversation=G, segments=(Image(id="{0000-AAAA}.jpg"),)), FailureKind.NOT_FOUND)
            await env.fails(
                SendMessage(conversation=G, segments=(Image(url=env.discord.origin + "/cdn/none.png"),)),
                FailureKind.NOT_FOUND,
            )
            big = b"\x89PNG" + b"\x00" * (10 * 1024 * 1024)
            await env.fails(SendMessage(conversation=G, segments=(Image(data=big),)), FailureKind.BAD_INPUT)


async def test_send_image_from_an_unreachable_url_fails_as_a_command(autojump_clock: trio.abc.Clock) -> None:
    """A download that gets no answer is a CommandFailed like any unanswered request. It used to escape the
    executor as httpx.ConnectError (or trio.TooSlowError): the framework was told the handler crashed."""
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    closed_port = refusing.getsockname()[1]
    refusing.close()  # nothing listens there now: the connection is refused
    with trio.fail_after(60):
        async with running() as env, trio.open_nursery() as nursery:
            silent = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
            nursery.start_soon(_accept_and_say_nothing, silent)
            silent_port = silent.socket.getsockname()[1]
            refused = await env.fails(
                SendMessage(conversation=G, segments=(Image(url=f"http://127.0.0.1:{closed_port}/cat.png"),)),
                FailureKind.TIMEOUT,
            )
            assert f"127.0.0.1:{closed_port}/cat.png" in refused.message
            unanswered = await env.fails(
                SendMessage(conversation=G, segments=(Audio(url=f"http://127.0.0.1:{silent_port}/a.ogg?sig=s3cret"),)),
                FailureKind.TIMEOUT,
            )
            assert "timed out" in unanswered.message
            assert "s3cret" not in unanswered.message  # signed CDN URLs: the query is never shown
            assert env.bodies() == []  # nothing was sent
            nursery.cancel_scope.cancel()


async def _accept_and_say_nothing(listener: trio.SocketListener) -> None:
    async with listener:
        held = []
        while True:
            held.append(await listener.accept())  # kept open, never answered


async def test_send_long_text_split_or_refused(autojump_clock: trio.abc.Clock) -> None:
    line = "x" * 99 + "\n"
    text = line * 45  # 4500 characters
    with trio.fail_after(30):
        async with running() as env:
            result = await env.run(SendMessage(conversation=G, segments=(Text(text),)))
            assert isinstance(result, MessageSent)
            contents = [b["content"] for b in env.bodies()]
            assert [len(c) for c in contents] == [1999, 1999, 500]
            assert "\n".join(contents) == text  # split at line ends; nothing lost
            assert len(result.extra) == 2
            ids = sorted(env.discord.world.messages[GENERAL])
            assert [result.ref.platform_id, *(r.platform_id for r in result.extra)] == ids
        async with running(MappingConfig(long_messages=LongMessageMode.REFUSE)) as env:
            await env.fails(SendMessage(conversation=G, segments=(Text(text),)), FailureKind.TOO_LONG)
            assert env.bodies() == []


async def test_send_private_message_opens_dm(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            result = await env.run(SendMessage(conversation=ConversationRef.private(ALICE), segments=(Text("hey"),)))
            assert isinstance(result, MessageSent)
            dm = env.discord.world.dm_channels[ALICE]
            assert result.ref.channel_id == dm
            assert env.discord.world.messages[dm][result.ref.platform_id or 0]["content"] == "hey"
            assert env.cache.dm_partner(dm) == ALICE
            env.discord.world.add_message(dm, "thanks", author_id=ALICE)
            history = await env.run(GetHistory(conversation=ConversationRef.private(ALICE)))
            assert isinstance(history, MessageList)
            mine, theirs = history.messages
            assert (mine.conversation, mine.from_self, mine.segments) == (
                ConversationRef.private(ALICE),
                True,
                (Text("hey"),),
            )
            assert (theirs.conversation, theirs.from_self, theirs.sender) == (
                ConversationRef.private(ALICE),
                False,
                User(id=ALICE, name="alice", username="alice"),
            )
            # a temp message through a group: only to members of that group's guild
            temp = await env.run(
                SendMessage(conversation=ConversationRef.private(BOB), segments=(Text("t"),), via_group=GENERAL)
            )
            assert isinstance(temp, MessageSent)
            await env.fails(
                SendMessage(conversation=ConversationRef.private(CAROL), segments=(Text("t"),), via_group=GENERAL),
                FailureKind.NOT_FOUND,
            )
            env.discord.close_dms(BOB)
            await env.fails(
                SendMessage(conversation=ConversationRef.private(BOB), segments=(Text("x"),)), FailureKind.NO_PERMISSION
            )
            await env.fails(
                SendMessage(conversation=ConversationRef.private(UNKNOWN), segments=(Text("x"),)), FailureKind.NOT_FOUND
            )


# ============================================================================ messages


async def test_recall_message(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            message = env.discord.world.add_message(GENERAL, "oops", author_id=ALICE)
            ref = MessageRef(conversation=G, platform_id=int(message["id"]), channel_id=GENERAL)
            assert await env.run(RecallMessage(ref=ref)) == Done()
            assert int(message["id"]) not in env.discord.world.messages[GENERAL]
            await env.fails(RecallMessage(ref=ref), FailureKind.NOT_FOUND)
            await env.fails(RecallMessage(ref=MessageRef(conversation=G)), FailureKind.NOT_FOUND)


async def test_get_message(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            world = env.discord.world
            original = world.add_message(GENERAL, "first", author_id=BOB)
            reply = world.add_message(GENERAL, f"yes <@{BOB}>", author_id=ALICE, reply_to=int(original["id"]))
            ref = MessageRef(conversation=G, platform_id=int(reply["id"]))  # no channel id: from the conversation
            found = await env.run(GetMessage(ref=ref))
            assert isinstance(found, MessageFound)
            message = found.message
            assert message.conversation == G
            assert message.segments == (Text("yes "), Mention(user_id=BOB, display="bob"))
            assert isinstance(message.sender, Member)
            assert message.sender.display_name == "Alice"
            assert message.quote == Quote(
                ref=MessageRef(conversation=G, platform_id=int(original["id"]), channel_id=GENERAL),
                author_id=BOB,
                origin=(Text("first"),),
            )
            await env.fails(GetMessage(ref=MessageRef(conversation=G, platform_id=UNKNOWN)), FailureKind.NOT_FOUND)


async def test_get_history_between_bounds_oldest_first(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with running() as env:
            stamps = []
            for i in range(5):
                env.discord.world.add_message(GENERAL, f"m{i}", author_id=ALICE)
                stamps.append(int(fake_now()))
                await trio.sleep(10)
            found = await env.run(GetHistory(conversation=G, time_start=stamps[1], time_end=stamps[3]))
            assert isinstance(found, MessageList)
            assert [m.segments for m in found.messages] == [(Text("m1"),), (Text("m2"),), (Text("m3"),)]
            everything = await env.run(GetHistory(conversation=G))
            assert isinstance(everything, MessageList)
            assert [m.segments[0] for m in everything.messages] == [Text(f"m{i}") for i in range(5)]
            latest_two = await env.run(GetHistory(conversation=G, limit=2))
            assert isinstance(latest_two, MessageList)
            assert [m.segments[0] for m in latest_two.messages] == [Text("m3"), Text("m4")]
            await env.fails(GetHistory(conversation=ConversationRef.group(VOICE)), FailureKind.NOT_FOUND)


async def test_pin_message(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            message = env.discord.world.add_message(GENERAL, "essence", author_id=ALICE)
            assert await env.run(PinMessage(ref=MessageRef(conversation=G, platform_id=int(message["id"])))) == Done()
            assert message["pinned"] is True
            await env.fails(PinMessage(ref=MessageRef(conversation=G, platform_id=UNKNOWN)), FailureKind.NOT_FOUND)


# ============================================================================ contacts


async def test_list_friends_and_list_groups(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running(MappingConfig(channels=(GENERAL,))) as env:
            assert await env.run(ListFriends()) == FriendList(friends=())
            await env.run(SendMessage(conversation=ConversationRef.private(CAROL), segments=(Text("hi"),)))
            env.cache.users.clear()  # forgotten → fetched
            friends = await env.run(ListFriends())
            assert friends == FriendList(friends=(User(id=CAROL, name="carol", username="carol"),))
            groups = await env.run(ListGroups())
            assert groups == GroupList(groups=(group_of(),))  # RANDOM filtered out, VOICE not text
            # failure: Discord down while fetching an unknown friend's profile
            env.cache.users.clear()
            env.discord.inject("GET /users/{user_id}", Fail(500), Fail(500), Fail(500))
            failure = await env.fails(ListFriends(), FailureKind.INTERNAL)
            assert "500" in failure.message


async def test_list_groups_empty_when_no_guild(autojump_clock: trio.abc.Clock) -> None:
    # ListGroups has no failure mode of its own (it answers from the cache); no guild means no groups
    with trio.fail_after(30):
        async with running(discord=Emulator(token=TOKEN, epoch=FAKE_EPOCH)) as env:
            assert await env.run(ListGroups()) == GroupList(groups=())


async def test_list_members_cache_fresh_and_ids(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            fresh = await env.run(ListMembers(group_id=GENERAL, fresh=True))
            assert isinstance(fresh, MemberList)
            names = {m.user_id: (m.display_name, m.role) for m in fresh.members}
            assert names == {
                OWNER: ("owner101", Role.OWNER),
                ALICE: ("Alice", Role.MEMBER),
                BOB: ("bob", Role.MEMBER),
            }  # the bot itself is left out
            assert all(m.group == group_of() for m in fresh.members)
            requests = len(env.discord.requests)
            cached = await env.run(ListMembers(group_id=GENERAL))
            assert isinstance(cached, MemberList)
            assert {m.user_id for m in cached.members} == set(names)
            assert len(env.discord.requests) == requests  # answered from the (complete) cache
            some = await env.run(ListMembers(group_id=GENERAL, user_ids=(ALICE, CAROL)))
            assert isinstance(some, MemberList)
            assert [m.user_id for m in some.members] == [ALICE]
            await env.fails(ListMembers(group_id=UNKNOWN), FailureKind.NOT_FOUND)
            env.discord.forbid("GET /guilds/{guild_id}/members")
            await env.fails(ListMembers(group_id=GENERAL, fresh=True), FailureKind.NO_PERMISSION)


async def test_get_member(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            found = await env.run(GetMember(group_id=GENERAL, user_id=ALICE))
            assert isinstance(found, MemberFound)
            assert found.member.display_name == "Alice"
            assert found.member.group == group_of()
            await env.fails(GetMember(group_id=GENERAL, user_id=CAROL), FailureKind.NOT_FOUND)


async def test_profiles(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            assert await env.run(GetBotProfile()) == ProfileFound(profile=Profile(nickname="relay-bot"))
            assert await env.run(GetUserProfile(user_id=CAROL)) == ProfileFound(profile=Profile(nickname="carol"))
            await env.fails(GetUserProfile(user_id=UNKNOWN), FailureKind.NOT_FOUND)
            env.discord.inject("GET /users/@me", Fail(502), Fail(502), Fail(502))
            await env.fails(GetBotProfile(), FailureKind.INTERNAL)


async def test_delete_friend_is_unsupported_with_reason(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            failure = await env.fails(DeleteFriend(user_id=ALICE), FailureKind.UNSUPPORTED)
            assert "friends list" in failure.message


# ============================================================================ moderation


async def test_mute_clamped_and_unmute(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            assert await env.run(MuteMember(group_id=GENERAL, user_id=ALICE, seconds=40 * 86400)) == Done()
            until = parse_iso_time(env.discord.world.members[(GUILD, ALICE)]["communication_disabled_until"])
            assert until == pytest.approx(fake_now() + 28 * 86400, abs=2)
            assert await env.run(UnmuteMember(group_id=GENERAL, user_id=ALICE)) == Done()
            assert env.discord.world.members[(GUILD, ALICE)]["communication_disabled_until"] is None
            await env.fails(MuteMember(group_id=GENERAL, user_id=ALICE, seconds=0), FailureKind.BAD_INPUT)
            await env.fails(UnmuteMember(group_id=GENERAL, user_id=CAROL), FailureKind.NOT_FOUND)
            env.discord.forbid("PATCH /guilds/{guild_id}/members/{user_id}")
            await env.fails(MuteMember(group_id=GENERAL, user_id=ALICE, seconds=60), FailureKind.NO_PERMISSION)
            # when the bot itself is timed out, Discord's 50013 means "bot muted"
            bot = env.cache.guilds[GUILD].bot_member
            assert bot is not None
            bot.timeout_until = fake_now() + 600
            await env.fails(MuteMember(group_id=GENERAL, user_id=ALICE, seconds=60), FailureKind.BOT_MUTED)


async def test_kick_and_ban(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            assert await env.run(KickMember(group_id=GENERAL, user_id=ALICE, reason="spam")) == Done()
            assert (GUILD, ALICE) not in env.discord.world.members
            kick = env.discord.requests_to("DELETE /guilds/{guild_id}/members/{user_id}")[-1]
            assert kick.headers["x-audit-log-reason"] == "spam"
            removed = env.translator.on_dispatch(
                "GUILD_MEMBER_REMOVE", {"guild_id": str(GUILD), "user": env.discord.world.users[ALICE]}, fake_now()
            )
            assert len(removed) == 1
            assert isinstance(removed[0], MemberLeft)
            assert removed[0].kicked is True
            assert await env.run(KickMember(group_id=GENERAL, user_id=BOB, ban=True)) == Done()
            assert BOB in env.discord.world.bans[GUILD]
            await env.fails(KickMember(group_id=GENERAL, user_id=CAROL), FailureKind.NOT_FOUND)
            # the failed kick is not remembered: a later removal of that user is a quit
            quit_ = env.translator.on_dispatch(
                "GUILD_MEMBER_REMOVE", {"guild_id": str(GUILD), "user": env.discord.world.users[CAROL]}, fake_now()
            )
            assert isinstance(quit_[0], MemberLeft)
            assert quit_[0].kicked is False


async def test_leave_group(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            await env.fails(LeaveGroup(group_id=UNKNOWN), FailureKind.NOT_FOUND)
            assert await env.run(LeaveGroup(group_id=GENERAL)) == Done()
            assert GUILD not in env.discord.world.guilds
            left = env.translator.on_dispatch("GUILD_DELETE", {"id": str(GUILD)}, fake_now())
            assert left
            assert all(not e.kicked for e in left)  # type: ignore[union-attr]


async def test_set_mute_all_read_modify_write(autojump_clock: trio.abc.Clock) -> None:
    attach_files, embed_links = 1 << 15, 1 << 14
    with trio.fail_after(30):
        async with running() as env:
            # GENERAL has an @everyone overwrite with other bits: they survive mute and unmute
            env.discord.world.channels[GENERAL]["permission_overwrites"] = [
                {"id": str(GUILD), "type": 0, "allow": str(embed_links | (1 << 11)), "deny": str(attach_files)}
            ]
            assert await env.run(SetMuteAll(group_id=GENERAL, muted=True)) == Done()
            (overwrite,) = env.discord.world.channels[GENERAL]["permission_overwrites"]
            assert overwrite == {
                "id": str(GUILD),
                "type": 0,
                "allow": str(embed_links),
                "deny": str(attach_files | MUTE_ALL_DENY),
            }
            config = await env.run(GetGroupConfig(group_id=GENERAL))
            assert config == GroupConfig(name="general", mute_all=True)
            assert await env.run(SetMuteAll(group_id=GENERAL, muted=False)) == Done()
            (overwrite,) = env.discord.world.channels[GENERAL]["permission_overwrites"]
            assert (overwrite["allow"], overwrite["deny"]) == (str(embed_links), str(attach_files))
            # RANDOM had no overwrite: mute creates one, unmute deletes it again
            await env.run(SetMuteAll(group_id=RANDOM, muted=True))
            assert env.discord.world.channels[RANDOM]["permission_overwrites"] == [
                {"id": str(GUILD), "type": 0, "allow": "0", "deny": str(MUTE_ALL_DENY)}
            ]
            await env.run(SetMuteAll(group_id=RANDOM, muted=False))
            assert env.discord.world.channels[RANDOM]["permission_overwrites"] == []
            env.discord.forbid("PUT /channels/{channel_id}/permissions/{overwrite_id}")
            await env.fails(SetMuteAll(group_id=RANDOM, muted=True), FailureKind.NO_PERMISSION)


# ============================================================================ settings


async def test_group_config_get_and_update(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            assert await env.run(GetGroupConfig(group_id=GENERAL)) == GroupConfig(name="general", mute_all=False)
            await env.fails(GetGroupConfig(group_id=UNKNOWN), FailureKind.NOT_FOUND)
            assert await env.run(UpdateGroupConfig(group_id=GENERAL, name="lounge", mute_all=True)) == Done()
            assert env.discord.world.channels[GENERAL]["name"] == "lounge"
            assert await env.run(GetGroupConfig(group_id=GENERAL)) == GroupConfig(name="lounge", mute_all=True)
            await env.fails(UpdateGroupConfig(group_id=GENERAL, name="x" * 101), FailureKind.BAD_INPUT)
            # Discord's own 50035 (with field errors) is a BAD_INPUT too
            env.discord.inject("PATCH /channels/{channel_id}", Fail(400, 50035, "Invalid Form Body"))
            failure = await env.fails(UpdateGroupConfig(group_id=GENERAL, name="ok"), FailureKind.BAD_INPUT)
            assert "50035" in failure.message


async def test_group_config_allow_member_invite_maps_to_the_everyone_overwrite(autojump_clock: trio.abc.Clock) -> None:
    # issue 15: mirai applies allowMemberInvite; on Discord it is @everyone's CREATE_INSTANT_INVITE in the channel
    invite = 1 << 0
    with trio.fail_after(30):
        async with running() as env:
            assert (await env.run(GetGroupConfig(group_id=GENERAL))).allow_member_invite is False
            assert await env.run(UpdateGroupConfig(group_id=GENERAL, allow_member_invite=True)) == Done()
            (overwrite,) = env.discord.world.channels[GENERAL]["permission_overwrites"]
            assert int(overwrite["allow"]) & invite and not int(overwrite["deny"]) & invite
            assert (await env.run(GetGroupConfig(group_id=GENERAL))).allow_member_invite is True
            puts = len(env.discord.requests_to("PUT /channels/{channel_id}/permissions/{overwrite_id}"))
            # asking for what already is changes nothing
            assert await env.run(UpdateGroupConfig(group_id=GENERAL, allow_member_invite=True)) == Done()
            assert len(env.discord.requests_to("PUT /channels/{channel_id}/permissions/{overwrite_id}")) == puts
            assert await env.run(UpdateGroupConfig(group_id=GENERAL, allow_member_invite=False)) == Done()
            assert (await env.run(GetGroupConfig(group_id=GENERAL))).allow_member_invite is False


async def test_update_member_nick_and_special_title(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            assert await env.run(UpdateMember(group_id=GENERAL, user_id=BOB, nickname="Bobby")) == Done()
            assert env.discord.world.members[(GUILD, BOB)]["nick"] == "Bobby"
            assert await env.run(UpdateMember(group_id=GENERAL, user_id=BOB, nickname="")) == Done()
            assert env.discord.world.members[(GUILD, BOB)]["nick"] is None
            failure = await env.fails(
                UpdateMember(group_id=GENERAL, user_id=BOB, special_title="Elder"), FailureKind.UNSUPPORTED
            )
            assert "special title" in failure.message
            await env.fails(UpdateMember(group_id=GENERAL, user_id=CAROL, nickname="c"), FailureKind.NOT_FOUND)


async def test_set_member_admin(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running(MappingConfig(admin_role="Moderators")) as env:
            assert await env.run(SetMemberAdmin(group_id=GENERAL, user_id=ALICE, admin=True)) == Done()
            assert env.discord.world.members[(GUILD, ALICE)]["roles"] == [str(MODS)]
            assert await env.run(SetMemberAdmin(group_id=GENERAL, user_id=ALICE, admin=False)) == Done()
            assert env.discord.world.members[(GUILD, ALICE)]["roles"] == []
            await env.fails(SetMemberAdmin(group_id=GENERAL, user_id=CAROL, admin=True), FailureKind.NOT_FOUND)
        async with running(MappingConfig(admin_role="Nope")) as env:
            await env.fails(SetMemberAdmin(group_id=GENERAL, user_id=ALICE, admin=True), FailureKind.NOT_FOUND)
        async with running() as env:
            failure = await env.fails(
                SetMemberAdmin(group_id=GENERAL, user_id=ALICE, admin=True), FailureKind.UNSUPPORTED
            )
            assert "admin_role" in failure.message


# ============================================================================ announcements


async def test_announcements_publish_list_delete(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with running() as env:
            first = await env.run(PublishAnnouncement(group_id=GENERAL, content="rules: be nice"))
            assert isinstance(first, AnnouncementPublished)
            await trio.sleep(5)
            second = await env.run(PublishAnnouncement(group_id=GENERAL, content="meeting at 5", pinned=True))
            assert isinstance(second, AnnouncementPublished)
            assert second.announcement == Announcement(
                group=group_of(),
                content="meeting at 5",
                sender_id=BOT,
                id=second.announcement.id,
                published_at=second.announcement.published_at,
            )
            listed = await env.run(ListAnnouncements(group_id=GENERAL))
            assert isinstance(listed, AnnouncementList)
            assert [a.content for a in listed.announcements] == ["meeting at 5", "rules: be nice"]
            assert listed.announcements[1].id == first.announcement.id
            page = await env.run(ListAnnouncements(group_id=GENERAL, offset=1, size=1))
            assert isinstance(page, AnnouncementList)
            assert [a.content for a in page.announcements] == ["rules: be nice"]
            assert await env.run(DeleteAnnouncement(group_id=GENERAL, announcement_id=first.announcement.id)) == Done()
            listed = await env.run(ListAnnouncements(group_id=GENERAL))
            assert isinstance(listed, AnnouncementList)
            assert [a.content for a in listed.announcements] == ["meeting at 5"]
            # failures
            await env.fails(PublishAnnouncement(group_id=GENERAL, content="y" * 2001), FailureKind.TOO_LONG)
            await env.fails(DeleteAnnouncement(group_id=GENERAL, announcement_id="abc"), FailureKind.BAD_INPUT)
            await env.fails(DeleteAnnouncement(group_id=GENERAL, announcement_id=str(UNKNOWN)), FailureKind.NOT_FOUND)
            await env.fails(ListAnnouncements(group_id=UNKNOWN), FailureKind.NOT_FOUND)


# ============================================================================ coverage of the command set


def test_every_command_is_exercised() -> None:
    """Adding a command to the envelope without an end-to-end test here fails this test."""
    source = pathlib.Path(__file__).read_text("utf-8")
    commands = typing.get_args(Command)
    missing = [c.__name__ for c in commands if f"{c.__name__}(" not in source.split("def test_every_command")[0]]
    assert missing == []
    handled = set(DiscordCommandExecutor.__init__.__code__.co_names)
    assert all(c.__name__ in handled for c in commands)
