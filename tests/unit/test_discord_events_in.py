"""Golden tests: real-shaped Discord dispatches → the exact envelope events (pure; no trio, no sockets)."""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import attrs
import pytest

from adapters.discord.cache import DiscordCache
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.markup import embed_text, format_timestamp
from adapters.discord.media import media_id, parse_media_id
from adapters.discord.own_actions import OwnActions
from relay.config import MappingConfig, ThreadMode, WebhookMessageMode
from relay.envelope import (
    Audio,
    BotJoinedGroup,
    BotLeftGroup,
    BotRoleChanged,
    BotStatus,
    BotStatusChanged,
    ConversationRef,
    Emoji,
    File,
    Group,
    GroupMuteAllChanged,
    GroupRenamed,
    Image,
    Member,
    MemberJoined,
    MemberLeft,
    MemberMuted,
    MemberNicknameChanged,
    MemberRoleChanged,
    MemberUnmuted,
    Mention,
    MentionAll,
    Message,
    MessageRecalled,
    MessageReceived,
    MessageRef,
    Quote,
    RichContent,
    Role,
    Sticker,
    Text,
    Unsupported,
    User,
)

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "discord"

GUILD = 1100000000000000010
GENERAL = 1100000000000000100
WELCOME = 1100000000000000101  # the system channel
ANNOUNCE = 1100000000000000120
VOICE = 1100000000000000110
HIDDEN = 1100000000000000130
THREAD = 1100000000000000300
BOT = 1100000000000000999
OWNER = 1100000000000000500
ALICE = 1100000000000000600
BOB = 1100000000000000700
ADMIN_ROLE = 1100000000000000020
MOD_ROLE = 1100000000000000021
HELPERS = 1100000000000000022
NOW = 1717243000.0
MSG = 1246431468000000000  # created 1717242819.548
MSG_TIME = 1717242819


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return data


def ready_payload() -> dict[str, Any]:
    return {
        "v": 10,
        "user": {"id": str(BOT), "username": "relaybot", "global_name": None, "bot": True, "discriminator": "0"},
        "guilds": [{"id": str(GUILD), "unavailable": True}],
        "session_id": "abc",
        "resume_gateway_url": "wss://gateway-us-east1-b.discord.gg",
        "application": {"id": str(BOT), "flags": 0},
    }


def translator_for(cache: DiscordCache, config: MappingConfig) -> DispatchTranslator:
    return DispatchTranslator(EntityFactory(cache, config), OwnActions())


def make(config: MappingConfig | None = None) -> tuple[DispatchTranslator, DiscordCache]:
    cache = DiscordCache()
    translator = translator_for(cache, config or MappingConfig())
    translator.on_dispatch("READY", ready_payload(), NOW)
    assert translator.on_dispatch("GUILD_CREATE", load("guild_create.json"), NOW) == []  # announced in READY
    return translator, cache


def group(channel_id: int = GENERAL, name: str = "general", role: Role = Role.ADMINISTRATOR) -> Group:
    # the bot has the Mods role (MANAGE_GUILD) → ADMINISTRATOR
    return Group(id=channel_id, name=name, bot_role=role, guild_id=GUILD)


def text_message(
    content: str, *, author: int = ALICE, channel: int = GENERAL, msg_id: int = MSG, **extra: Any
) -> dict[str, Any]:
    names = {ALICE: ("alice", "Alice A"), OWNER: ("owner", "The Owner"), BOT: ("relaybot", None), BOB: ("bob", None)}
    username, global_name = names[author]
    data: dict[str, Any] = {
        "type": 0,
        "tts": False,
        "timestamp": "2024-06-01T12:00:00.000000+00:00",
        "pinned": False,
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "id": str(msg_id),
        "channel_id": str(channel),
        "guild_id": str(GUILD),
        "content": content,
        "author": {
            "id": str(author),
            "username": username,
            "global_name": global_name,
            "discriminator": "0",
            "avatar": None,
        },
        "member": {
            "roles": [],
            "nick": None,
            "joined_at": "2024-02-03T04:05:06.000000+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
        },
        "attachments": [],
        "embeds": [],
        "components": [],
        "flags": 0,
        "edited_timestamp": None,
    }
    if author == BOT:
        data["author"]["bot"] = True
        data["member"]["roles"] = [str(MOD_ROLE)]
    data.update(extra)
    return data


def only_message(events: list[Any]) -> Message:
    assert len(events) == 1
    assert isinstance(events[0], MessageReceived)
    return events[0].message


# ============================================================================ lifecycle


def test_ready_online_then_drop_then_resume_and_reidentify() -> None:
    cache = DiscordCache()
    translator = translator_for(cache, MappingConfig())
    assert translator.on_dispatch("READY", ready_payload(), NOW) == [
        BotStatusChanged(bot_id=BOT, status=BotStatus.ONLINE)
    ]
    assert cache.bot_id == BOT
    # a second shard's READY does not announce the bot twice
    assert translator.on_dispatch("READY", ready_payload(), NOW) == []
    assert translator.connection_lost() == [BotStatusChanged(bot_id=BOT, status=BotStatus.OFFLINE_DROPPED)]
    assert translator.connection_lost() == []  # one per outage
    assert translator.on_dispatch("RESUMED", {}, NOW) == [BotStatusChanged(bot_id=BOT, status=BotStatus.RELOGIN)]
    translator.connection_lost()
    assert translator.on_dispatch("READY", ready_payload(), NOW) == [
        BotStatusChanged(bot_id=BOT, status=BotStatus.RELOGIN)
    ]


def test_unknown_and_malformed_dispatches_are_skipped() -> None:
    translator, _ = make()
    assert translator.on_dispatch("TYPING_START", {"channel_id": "1"}, NOW) == []
    assert translator.on_dispatch("GUILD_MEMBER_UPDATE", None, NOW) == []
    assert translator.on_dispatch("MESSAGE_CREATE", {"id": "x"}, NOW) == []
    assert translator.on_dispatch("MESSAGE_CREATE", {"id": "1", "channel_id": "2", "author": None}, NOW) == []


# ============================================================================ messages


def test_plain_text_group_message_exact() -> None:
    translator, _ = make()
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("hello 👋 world"), NOW))
    expected_group = group()
    assert message == Message(
        conversation=ConversationRef.group(GENERAL),
        channel_id=GENERAL,
        platform_id=MSG,
        time=MSG_TIME,
        sender=Member(
            user_id=ALICE,
            display_name="Alice A",  # nick null in the partial member → global_name
            role=Role.MEMBER,
            group=expected_group,
            joined_at=1706933106,
            last_spoke_at=MSG_TIME,
        ),
        segments=(Text("hello 👋 world"),),
        group=expected_group,
    )


def test_rich_reply_message_golden() -> None:
    translator, cache = make()
    data = load("message_create_rich.json")
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", data, NOW))
    g = group()
    assert message.sender == Member(
        user_id=ALICE, display_name="Ali", role=Role.MEMBER, group=g, joined_at=1706933106, last_spoke_at=MSG_TIME
    )
    cdn = "https://cdn.discordapp.com/attachments/1100000000000000100"
    assert message.segments == (
        Text("hi "),
        Mention(user_id=OWNER, display="Boss"),
        Text(", ask @Helpers in #welcome 😀 "),
        Emoji(id=1200000000000000002, name="party", animated=True),
        Text(" at 12:00 UTC "),
        MentionAll(here=True),
        Image(
            id=f"{GENERAL}-{MSG}-1246431467000000001.png",
            url=f"{cdn}/1246431467000000001/cat.png?ex=1&is=2&hm=3",
            filename="cat.png",
            content_type="image/png",
            size=34567,
            width=640,
            height=480,
        ),
        Audio(
            id=f"{GENERAL}-{MSG}-1246431467000000002.ogg",
            url=f"{cdn}/1246431467000000002/voice-message.ogg",
            filename="voice-message.ogg",
            content_type="audio/ogg",
            size=12000,
            duration=3.5,
        ),
        File(
            id=f"{GENERAL}-{MSG}-1246431467000000003.pdf",
            name="report.pdf",
            size=99999,
            url=f"{cdn}/1246431467000000003/report.pdf",
        ),
        Sticker(id=1200000000000000777, name="Wumpus wave", format=1),
    )
    assert message.quote == Quote(
        ref=MessageRef(
            conversation=ConversationRef.group(GENERAL), platform_id=1246431216000000000, channel_id=GENERAL
        ),
        author_id=OWNER,
        origin=(Text("earlier "), Emoji(id=1200000000000000001, name="wave")),
    )
    # the image id can be resolved later: the cache remembers its URL, and the id says where it lives
    assert cache.media_url(
        f"{GENERAL}-{MSG}-1246431467000000001.png",
    ) == (f"{cdn}/1246431467000000001/cat.png?ex=1&is=2&hm=3")
    assert parse_media_id(f"{GENERAL}-{MSG}-1246431467000000001.png") == (GENERAL, MSG, 1246431467000000001)


def test_reply_to_deleted_or_unfetched_message_keeps_the_reference() -> None:
    translator, _ = make()
    data = text_message(
        "re",
        type=19,
        message_reference={"message_id": "1246431216000000000", "channel_id": str(GENERAL), "guild_id": str(GUILD)},
        referenced_message=None,
    )
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", data, NOW))
    assert message.quote == Quote(
        ref=MessageRef(conversation=ConversationRef.group(GENERAL), platform_id=1246431216000000000, channel_id=GENERAL)
    )


def test_everyone_mention_and_unknown_role_channel_and_legacy_mention() -> None:
    translator, _ = make()
    content = "@everyone look <@1100000000000000700> <@&42> <#43> <t:1717243200:D>"
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message(content), NOW))
    assert message.segments == (
        MentionAll(),
        Text(" look "),
        Mention(user_id=BOB, display=""),
        Text(" @deleted-role #unknown 01 June 2024"),
    )


def test_timestamp_styles() -> None:
    assert format_timestamp(1717243200, None) == "2024-06-01 12:00 UTC"
    assert format_timestamp(1717243200, "T") == "12:00:00 UTC"
    assert format_timestamp(1717243200, "d") == "2024-06-01"
    assert format_timestamp(1717243200, "F") == "Saturday, 01 June 2024 12:00 UTC"
    assert format_timestamp(10**20, "f") == f"<t:{10**20}>"


def test_embeds_from_bots_become_rich_content_but_link_previews_do_not() -> None:
    translator, _ = make()
    embed = {
        "type": "rich",
        "title": "Build passed",
        "description": "main is green",
        "url": "https://ci.example",
        "fields": [{"name": "took", "value": "3m", "inline": True}],
        "footer": {"text": "CI bot"},
        "author": {"name": "CI"},
    }
    bot_message = text_message("", embeds=[embed])
    bot_message["author"]["bot"] = True
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", bot_message, NOW))
    assert message.segments == (
        RichContent(
            text="CI\nBuild passed\nmain is green\ntook: 3m\nCI bot", title="Build passed", url="https://ci.example"
        ),
    )
    preview = text_message("see https://example.com", embeds=[{"type": "link", "url": "https://example.com"}])
    human = only_message(translator.on_dispatch("MESSAGE_CREATE", preview, NOW))
    assert human.segments == (Text("see https://example.com"),)
    assert embed_text({"url": "https://x"}) == "https://x"


def test_empty_content_is_never_dropped() -> None:
    translator, _ = make()
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message(""), NOW))
    assert message.segments == (Unsupported(fallback="[empty message]", what="empty"),)


def test_poll_becomes_unsupported_with_readable_fallback() -> None:
    translator, _ = make()
    poll = {
        "question": {"text": "Lunch?"},
        "answers": [
            {"answer_id": 1, "poll_media": {"text": "Pizza"}},
            {"answer_id": 2, "poll_media": {"text": "Sushi"}},
        ],
    }
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("", poll=poll), NOW))
    assert message.segments == (Unsupported(fallback="[poll] Lunch? Pizza / Sushi", what="poll"),)


def test_forwarded_message_snapshot_is_rendered() -> None:
    translator, _ = make()
    data = text_message(
        "",
        message_reference={"type": 1, "message_id": "5", "channel_id": "6"},
        message_snapshots=[{"message": {"content": "original words", "attachments": [], "embeds": [], "type": 0}}],
    )
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", data, NOW))
    assert message.quote is None
    assert message.segments == (Text("[forwarded message]\noriginal words"),)


def test_system_messages_are_not_forwarded() -> None:
    translator, _ = make()
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("", type=7), NOW) == []  # USER_JOIN
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("", type=6), NOW) == []  # pinned notice


def test_dm_becomes_private_message_from_user() -> None:
    translator, cache = make()
    data = text_message("psst", author=BOB, channel=777)
    del data["guild_id"]
    del data["member"]
    data["channel_type"] = 1
    message = only_message(translator.on_dispatch("MESSAGE_CREATE", data, NOW))
    assert message == Message(
        conversation=ConversationRef.private(BOB),
        channel_id=777,
        platform_id=MSG,
        time=MSG_TIME,
        sender=User(id=BOB, name="bob", username="bob"),
        segments=(Text("psst"),),
    )
    assert cache.dm_partner(777) == BOB
    # the bot's own DM from another client is a sync message to the same partner
    own = text_message("reply", author=BOT, channel=777, msg_id=MSG + 1)
    del own["guild_id"]
    del own["member"]
    mine = only_message(translator.on_dispatch("MESSAGE_CREATE", own, NOW))
    assert mine.conversation == ConversationRef.private(BOB)
    assert mine.from_self is True
    assert mine.sender == User(id=BOT, name="relaybot", username="relaybot", is_bot=True)


def test_own_messages_echo_suppressed_by_nonce_and_by_id_others_from_self() -> None:
    translator, _ = make()
    translator.own.expect_nonce("n1")
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("a", author=BOT, nonce="n1"), NOW) == []
    translator.own.note_sent(GENERAL, MSG + 5)
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("b", author=BOT, msg_id=MSG + 5), NOW) == []
    other = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("c", author=BOT, msg_id=MSG + 6), NOW))
    assert other.from_self is True
    assert other.sender == Member(
        user_id=BOT,
        display_name="relaybot",
        role=Role.ADMINISTRATOR,
        group=group(),
        joined_at=1706933106,
        last_spoke_at=int(other.time),
        is_bot=True,
    )
    assert translator.dropped_echoes == 2


@pytest.mark.parametrize("mode", [WebhookMessageMode.FORWARD, WebhookMessageMode.IGNORE])
def test_webhook_messages(mode: WebhookMessageMode) -> None:
    translator, _ = make(MappingConfig(webhook_messages=mode))
    data = text_message("from a webhook")
    data["webhook_id"] = "1300000000000000001"
    data["author"] = {
        "id": "1300000000000000001",
        "username": "GitHub",
        "avatar": None,
        "discriminator": "0000",
        "bot": True,
    }
    del data["member"]
    events = translator.on_dispatch("MESSAGE_CREATE", data, NOW)
    if mode == WebhookMessageMode.IGNORE:
        assert events == []
        return
    message = only_message(events)
    assert message.sender == Member(
        user_id=1300000000000000001,
        display_name="GitHub",
        role=Role.MEMBER,
        group=group(),
        last_spoke_at=MSG_TIME,
        is_bot=True,
    )


def test_threads_own_group_or_parent() -> None:
    translator, _ = make()
    own = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("t", channel=THREAD), NOW))
    assert own.conversation == ConversationRef.group(THREAD)
    assert own.group == group(THREAD, "design thread")
    translator, _ = make(MappingConfig(threads=ThreadMode.PARENT))
    folded = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("t", channel=THREAD), NOW))
    assert folded.conversation == ConversationRef.group(GENERAL)
    assert folded.channel_id == THREAD
    assert folded.group == group()


def test_channel_filter_and_non_text_channels() -> None:
    translator, _ = make(MappingConfig(channels=(WELCOME,)))
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("x"), NOW) == []  # general not bridged
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("x", channel=THREAD), NOW) == []  # its thread
    assert only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("x", channel=WELCOME), NOW))
    translator, _ = make()
    assert translator.on_dispatch("MESSAGE_CREATE", text_message("x", channel=VOICE), NOW) == []


def test_roles_owner_admin_manage_guild_and_configured_admin_role() -> None:
    translator, _ = make(MappingConfig(admin_role="Helpers"))
    owner = only_message(translator.on_dispatch("MESSAGE_CREATE", text_message("x", author=OWNER), NOW))
    assert isinstance(owner.sender, Member)
    assert owner.sender.role == Role.OWNER
    data = text_message("x")
    data["member"]["roles"] = [str(HELPERS)]
    alice = only_message(translator.on_dispatch("MESSAGE_CREATE", data, NOW))
    assert isinstance(alice.sender, Member)
    assert alice.sender.role == Role.ADMINISTRATOR
    data["member"]["roles"] = [str(ADMIN_ROLE)]
    assert only_message(translator.on_dispatch("MESSAGE_CREATE", data, NOW)).sender.role == Role.ADMINISTRATOR  # type: ignore[union-attr]


# ============================================================================ recalls


def test_message_delete_and_bulk() -> None:
    translator, _ = make()
    events = translator.on_dispatch(
        "MESSAGE_DELETE", {"id": str(MSG), "channel_id": str(GENERAL), "guild_id": str(GUILD)}, NOW
    )
    assert events == [
        MessageRecalled(
            ref=MessageRef(conversation=ConversationRef.group(GENERAL), platform_id=MSG, channel_id=GENERAL),
            author_id=0,
            time=int(NOW),
            group=group(),
        )
    ]
    bulk = translator.on_dispatch(
        "MESSAGE_DELETE_BULK", {"ids": ["1", "2"], "channel_id": str(THREAD), "guild_id": str(GUILD)}, NOW
    )
    assert [e.ref.platform_id for e in bulk] == [1, 2]  # type: ignore[union-attr]
    assert all(isinstance(e, MessageRecalled) and e.ref.conversation == ConversationRef.group(THREAD) for e in bulk)
    # DM recall: the partner is known once a DM was seen; unknown DM channels cannot be attributed
    assert translator.on_dispatch("MESSAGE_DELETE", {"id": "9", "channel_id": "555"}, NOW) == []
    translator.cache.note_dm_channel(555, BOB)
    dm = translator.on_dispatch("MESSAGE_DELETE", {"id": "9", "channel_id": "555"}, NOW)
    assert dm == [
        MessageRecalled(
            ref=MessageRef(conversation=ConversationRef.private(BOB), platform_id=9, channel_id=555),
            author_id=0,
            time=int(NOW),
        )
    ]


# ============================================================================ members

SYSTEM = group(WELCOME, "welcome")


def member_payload(user: int = BOB, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "guild_id": str(GUILD),
        "user": {"id": str(user), "username": "bob", "global_name": None, "discriminator": "0", "avatar": None},
        "nick": None,
        "roles": [],
        "joined_at": "2024-06-01T00:00:00.000000+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    data.update(extra)
    return data


def bob(**changes: Any) -> Member:
    base = Member(user_id=BOB, display_name="bob", role=Role.MEMBER, group=SYSTEM, joined_at=1717200000)
    return attrs.evolve(base, **changes)


def test_member_join_goes_to_system_channel_once() -> None:
    translator, _ = make()
    assert translator.on_dispatch("GUILD_MEMBER_ADD", member_payload(), NOW) == [MemberJoined(member=bob())]
    assert translator.on_dispatch("GUILD_MEMBER_ADD", member_payload(), NOW) == []  # duplicate add


def test_guild_events_channel_configured_or_first_text_channel() -> None:
    translator, _ = make(MappingConfig(guild_events=str(ANNOUNCE)))
    joined = translator.on_dispatch("GUILD_MEMBER_ADD", member_payload(), NOW)
    assert joined == [MemberJoined(member=bob(group=group(ANNOUNCE, "announcements")))]
    # system channel not bridged → the first bridged text channel by position
    translator, _ = make(MappingConfig(channels=(GENERAL, ANNOUNCE)))
    joined = translator.on_dispatch("GUILD_MEMBER_ADD", member_payload(), NOW)
    assert joined == [MemberJoined(member=bob(group=group()))]


def test_member_leave_quit_kick_by_bridge_ban_and_audit_log() -> None:
    translator, _ = make()
    translator.on_dispatch("GUILD_MEMBER_ADD", member_payload(), NOW)
    remove = {"guild_id": str(GUILD), "user": member_payload()["user"]}
    assert translator.on_dispatch("GUILD_MEMBER_REMOVE", remove, NOW) == [MemberLeft(member=bob())]
    translator.own.note_kicked(GUILD, BOB)
    assert translator.on_dispatch("GUILD_MEMBER_REMOVE", remove, NOW) == [
        MemberLeft(member=bob(joined_at=0), kicked=True)
    ]
    translator.on_dispatch("GUILD_BAN_ADD", {"guild_id": str(GUILD), "user": remove["user"]}, NOW)
    assert translator.on_dispatch("GUILD_MEMBER_REMOVE", remove, NOW)[0].kicked is True  # type: ignore[union-attr]
    translator.on_dispatch(
        "GUILD_AUDIT_LOG_ENTRY_CREATE",
        {"guild_id": str(GUILD), "action_type": 20, "target_id": str(BOB), "user_id": str(OWNER)},
        NOW,
    )
    kicked = translator.on_dispatch("GUILD_MEMBER_REMOVE", remove, NOW)
    assert len(kicked) == 1
    assert isinstance(kicked[0], MemberLeft)
    assert kicked[0].kicked is True
    assert kicked[0].operator is not None
    assert kicked[0].operator.user_id == OWNER
    assert kicked[0].operator.role == Role.OWNER
    # a failed bridge kick is forgotten
    translator.own.note_kicked(GUILD, BOB)
    translator.own.forget_kicked(GUILD, BOB)
    assert translator.on_dispatch("GUILD_MEMBER_REMOVE", remove, NOW)[0].kicked is False  # type: ignore[union-attr]


def test_member_update_nick_mute_unmute_role() -> None:
    translator, _ = make()
    translator.on_dispatch("GUILD_MEMBER_ADD", member_payload(), NOW)
    assert translator.on_dispatch("GUILD_MEMBER_UPDATE", member_payload(), NOW) == []  # nothing changed
    assert translator.on_dispatch("GUILD_MEMBER_UPDATE", member_payload(nick="Bobby"), NOW) == [
        MemberNicknameChanged(member=bob(display_name="Bobby"), old="bob", new="Bobby")
    ]
    until = "2024-06-01T12:06:40.000000+00:00"  # NOW + 600 s
    assert translator.on_dispatch(
        "GUILD_MEMBER_UPDATE", member_payload(nick="Bobby", communication_disabled_until=until), NOW
    ) == [MemberMuted(member=bob(display_name="Bobby", mute_remaining=600), duration=600)]
    assert translator.on_dispatch("GUILD_MEMBER_UPDATE", member_payload(nick="Bobby"), NOW + 5) == [
        MemberUnmuted(member=bob(display_name="Bobby"))
    ]
    assert translator.on_dispatch("GUILD_MEMBER_UPDATE", member_payload(nick="Bobby", roles=[str(MOD_ROLE)]), NOW) == [
        MemberRoleChanged(
            member=bob(display_name="Bobby", role=Role.ADMINISTRATOR), old=Role.MEMBER, new=Role.ADMINISTRATOR
        )
    ]


def test_member_update_of_unknown_member_emits_nothing() -> None:
    translator, _ = make()
    assert translator.on_dispatch("GUILD_MEMBER_UPDATE", member_payload(nick="x"), NOW) == []


def test_bot_role_change_per_bridged_channel() -> None:
    translator, _ = make()
    bot_member = {
        "guild_id": str(GUILD),
        "user": {"id": str(BOT), "username": "relaybot", "bot": True},
        "roles": [],
        "nick": None,
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
    }
    events = translator.on_dispatch("GUILD_MEMBER_UPDATE", bot_member, NOW)
    assert events == [
        BotRoleChanged(group=group(c, n, Role.MEMBER), old=Role.ADMINISTRATOR, new=Role.MEMBER)
        for c, n in ((WELCOME, "welcome"), (GENERAL, "general"), (ANNOUNCE, "announcements"))
    ]
    # a role permission change can give it back
    events = translator.on_dispatch(
        "GUILD_ROLE_UPDATE",
        {"guild_id": str(GUILD), "role": {"id": str(GUILD), "name": "@everyone", "permissions": "8", "position": 0}},
        NOW,
    )
    assert [type(e) for e in events] == [BotRoleChanged] * 3
    assert events[0] == BotRoleChanged(group=group(WELCOME, "welcome"), old=Role.MEMBER, new=Role.ADMINISTRATOR)


# ============================================================================ channels and guilds


def channel_payload(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(load("guild_create.json")["channels"][0])
    data["guild_id"] = str(GUILD)
    data.update(changes)
    return data


def test_channel_rename_and_mute_all() -> None:
    translator, _ = make()
    assert translator.on_dispatch("CHANNEL_UPDATE", channel_payload(name="lounge"), NOW) == [
        GroupRenamed(group=group(name="lounge"), old="general", new="lounge")
    ]
    muted = channel_payload(
        name="lounge", permission_overwrites=[{"id": str(GUILD), "type": 0, "allow": "0", "deny": "377957124160"}]
    )
    assert translator.on_dispatch("CHANNEL_UPDATE", muted, NOW) == [
        GroupMuteAllChanged(group=group(name="lounge"), old=False, new=True)
    ]
    # an unrelated overwrite change is not a mute-all change
    other = copy.deepcopy(muted)
    other["permission_overwrites"].append({"id": str(ALICE), "type": 1, "allow": "0", "deny": "2048"})
    assert translator.on_dispatch("CHANNEL_UPDATE", other, NOW) == []
    assert translator.on_dispatch("CHANNEL_UPDATE", channel_payload(name="lounge"), NOW) == [
        GroupMuteAllChanged(group=group(name="lounge"), old=True, new=False)
    ]


def test_channel_create_delete_and_obfuscation() -> None:
    translator, cache = make()
    new = channel_payload(id="1100000000000000140", name="fresh", position=9)
    assert translator.on_dispatch("CHANNEL_CREATE", new, NOW) == [
        BotJoinedGroup(group=group(1100000000000000140, "fresh"))
    ]
    assert translator.on_dispatch("CHANNEL_DELETE", new, NOW) == [
        BotLeftGroup(group=group(1100000000000000140, "fresh"))
    ]
    assert HIDDEN not in cache.channels  # ___hidden___ from GUILD_CREATE was never cached
    hidden = channel_payload(name="___hidden___", flags=1 << 17)
    assert translator.on_dispatch("CHANNEL_UPDATE", hidden, NOW) == [BotLeftGroup(group=group())]
    assert GENERAL not in cache.channels


def test_guild_create_for_new_guild_and_guild_delete() -> None:
    translator, cache = make()
    other = copy.deepcopy(load("guild_create.json"))
    other["id"] = "1400000000000000010"
    for i, channel in enumerate(other["channels"]):
        channel["id"] = str(1400000000000000100 + i)
    other["channels"] = other["channels"][:2]
    other["system_channel_id"] = None
    other["threads"] = []
    other["roles"][0]["id"] = "1400000000000000010"
    events = translator.on_dispatch("GUILD_CREATE", other, NOW)
    # the copied roles keep the Mods role (MANAGE_GUILD) the bot holds → ADMINISTRATOR there too
    g = [
        Group(id=1400000000000000101, name="welcome", bot_role=Role.ADMINISTRATOR, guild_id=1400000000000000010),
        Group(id=1400000000000000100, name="general", bot_role=Role.ADMINISTRATOR, guild_id=1400000000000000010),
    ]
    assert events == [BotJoinedGroup(group=g[0]), BotJoinedGroup(group=g[1])]
    # an outage is not a removal
    assert translator.on_dispatch("GUILD_DELETE", {"id": str(GUILD), "unavailable": True}, NOW) == []
    assert translator.on_dispatch("GUILD_CREATE", load("guild_create.json"), NOW) == []  # back after outage
    translator.own.note_left_guild(1400000000000000010)
    assert translator.on_dispatch("GUILD_DELETE", {"id": "1400000000000000010"}, NOW) == [
        BotLeftGroup(group=g[0]),
        BotLeftGroup(group=g[1]),
    ]
    left = translator.on_dispatch("GUILD_DELETE", {"id": str(GUILD)}, NOW)
    assert [e.kicked for e in left] == [True, True, True]  # type: ignore[union-attr]
    assert cache.statistics()["guilds"] == 0


def test_guild_update_owner_transfer_changes_bot_role() -> None:
    translator, _ = make()
    update = copy.deepcopy(load("guild_create.json"))
    for key in ("channels", "threads", "members", "presences", "voice_states"):
        update.pop(key)
    update["owner_id"] = str(BOT)
    events = translator.on_dispatch("GUILD_UPDATE", update, NOW)
    assert events[0] == BotRoleChanged(
        group=group(WELCOME, "welcome", Role.OWNER), old=Role.ADMINISTRATOR, new=Role.OWNER
    )


def test_thread_rename_in_own_group_mode() -> None:
    translator, _ = make()
    thread = copy.deepcopy(load("guild_create.json")["threads"][0])
    thread["name"] = "renamed thread"
    assert translator.on_dispatch("THREAD_UPDATE", thread, NOW) == [
        GroupRenamed(group=group(THREAD, "renamed thread"), old="design thread", new="renamed thread")
    ]


def test_media_id_roundtrip_and_rejects_foreign_ids() -> None:
    assert media_id(1, 2, 3, "a.JPG") == "1-2-3.jpg"
    assert media_id(1, 2, 3, "noext") == "1-2-3"
    assert parse_media_id("1-2-3") == (1, 2, 3)
    assert parse_media_id("{01E9451B-70ED-EAE3-B37C-101F1EEBF5B5}.jpg") is None


def test_rest_message_without_guild_id_uses_the_cached_channel_and_malformed_is_none() -> None:
    translator, _ = make()
    data = text_message("from history")
    del data["guild_id"]
    del data["member"]  # REST messages carry neither
    message = translator.entities.message_from_payload(data)
    assert message is not None
    assert message.conversation == ConversationRef.group(GENERAL)
    assert isinstance(message.sender, Member)
    assert message.sender.display_name == "Ali"  # the cached member (nick from GUILD_CREATE)
    assert translator.entities.message_from_payload({"id": "1", "type": 0}) is None


def test_members_chunk_feeds_the_cache_only() -> None:
    translator, cache = make()
    chunk = {"guild_id": str(GUILD), "members": [member_payload(BOB)], "chunk_index": 0, "chunk_count": 1}
    assert translator.on_dispatch("GUILD_MEMBERS_CHUNK", chunk, NOW) == []
    assert cache.member(GUILD, BOB) is not None
