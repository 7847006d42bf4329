"""The bounded Discord state cache (pure)."""

from __future__ import annotations

from typing import Any

from adapters.discord.cache import (
    ALL_PERMISSIONS,
    DiscordCache,
    Overwrite,
)
from adapters.discord.members import CachedMember
from adapters.discord.snowflakes import parse_iso_time, snowflake_at, snowflake_time, to_int

GUILD = 10
BOT = 99


def member(user_id: int, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user": {"id": str(user_id), "username": f"u{user_id}"},
        "roles": [],
        "joined_at": "2024-01-01T00:00:00+00:00",
    }
    data.update(extra)
    return data


def guild(guild_id: int = GUILD, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(guild_id),
        "name": "G",
        "owner_id": "1",
        "system_channel_id": "100",
        "roles": [
            {"id": str(guild_id), "name": "@everyone", "permissions": "3072", "position": 0},
            {"id": "20", "name": "Admin", "permissions": "8", "position": 1},
        ],
        "channels": [
            {
                "id": "100",
                "type": 0,
                "name": "general",
                "position": 0,
                "permission_overwrites": [{"id": str(guild_id), "type": 0, "allow": "0", "deny": "2048"}],
            },
            {"id": "101", "type": 0, "name": "___hidden___", "flags": 1 << 17},
        ],
        "threads": [{"id": "300", "type": 11, "name": "t", "parent_id": "100", "guild_id": str(guild_id)}],
        "members": [member(BOT)],
    }
    data.update(extra)
    return data


def ready_cache(**bounds: int) -> DiscordCache:
    cache = DiscordCache(**bounds)
    cache.on_ready({"user": {"id": str(BOT), "username": "bot", "bot": True}, "guilds": [{"id": str(GUILD)}]})
    cache.upsert_guild(guild())
    return cache


def test_guild_channels_threads_overwrites_and_obfuscation() -> None:
    cache = ready_cache()
    assert cache.bot_id == BOT
    assert cache.ready_guild_ids == {GUILD}
    g = cache.guilds[GUILD]
    assert (g.name, g.owner_id, g.system_channel_id) == ("G", 1, 100)
    assert cache.channels[100].overwrites == {GUILD: Overwrite(GUILD, 0, 0, 2048)}
    assert cache.channels[100].guild_id == GUILD  # filled in from the guild (docs/discord.md §6.1)
    assert cache.channels[300].is_thread
    assert 101 not in cache.channels  # obfuscated channel never cached
    assert g.bot_member is not None
    assert g.members == {}  # the bot's own member is kept apart (never evicted)
    # a later full channel list drops vanished channels but keeps threads
    cache.replace_guild_channels(GUILD, [{"id": "102", "type": 0, "name": "new"}])
    assert set(cache.channels) == {102, 300}


def test_member_lru_per_guild_bound() -> None:
    cache = ready_cache(max_members_per_guild=3, max_members_total=100)
    for user_id in range(1, 6):
        cache.upsert_member(GUILD, member(user_id))
    assert list(cache.guilds[GUILD].members) == [3, 4, 5]
    cache.touch_message_author(GUILD, {"id": "3", "username": "u3"}, None, 1.0)  # used → newest
    cache.upsert_member(GUILD, member(6))
    assert list(cache.guilds[GUILD].members) == [5, 3, 6]
    assert cache.members_evicted == 3
    assert cache.member(GUILD, BOT) is not None  # never evicted


def test_member_global_bound_across_guilds() -> None:
    cache = ready_cache(max_members_per_guild=10, max_members_total=4)
    cache.upsert_guild(guild(11, members=[]))
    cache.guilds[GUILD].members_complete = True
    for user_id in (1, 2, 3):
        cache.upsert_member(GUILD, member(user_id))
    for user_id in (4, 5):
        cache.upsert_member(11, member(user_id))
    assert cache.statistics()["members"] == 4
    assert list(cache.guilds[GUILD].members) == [2, 3]
    assert list(cache.guilds[11].members) == [4, 5]
    assert cache.guilds[GUILD].members_complete is False  # an eviction makes the listing incomplete
    cache.remove_guild(11)
    assert cache.statistics()["members"] == 2


def test_upsert_member_returns_previous_copy_and_partials_keep_fields() -> None:
    cache = ready_cache()
    first = cache.upsert_member(GUILD, member(5, nick="a", communication_disabled_until="2030-01-01T00:00:00+00:00"))
    assert first is not None
    assert first[0] is None
    second = cache.upsert_member(GUILD, {"user": {"id": "5"}, "nick": "b"})
    assert second is not None
    previous, current = second
    assert previous is not None
    assert (previous.nick, current.nick) == ("a", "b")
    assert current.timeout_until == previous.timeout_until == parse_iso_time("2030-01-01T00:00:00+00:00")
    assert current.user.username == "u5"
    assert cache.upsert_member(12345, member(5)) is None  # unknown guild


def test_permissions_owner_admin_roles() -> None:
    cache = ready_cache()
    g = cache.guilds[GUILD]
    plain = CachedMember(7)
    assert g.base_permissions(plain) == 3072
    assert g.base_permissions(CachedMember(7, roles=(20,))) == ALL_PERMISSIONS
    assert g.base_permissions(CachedMember(1)) == ALL_PERMISSIONS  # owner
    assert g.role_id_by_name_or_id("Admin") == 20
    assert g.role_id_by_name_or_id("20") == 20
    assert g.role_id_by_name_or_id("nope") == 0


def test_users_dm_channels_media_and_statistics() -> None:
    cache = DiscordCache(max_users=2, max_media_ids=2)
    for user_id in (1, 2, 3):
        cache.upsert_user({"id": str(user_id), "username": f"u{user_id}", "global_name": None})
    assert list(cache.users) == [2, 3]
    assert cache.find_user(3) is not None
    cache.note_dm_channel(500, 3)
    cache.upsert_channel({"id": "500", "type": 1})  # a DM channel update without recipients keeps the user
    assert cache.dm_partner(500) == 3
    assert cache.dm_channel_of(3) == 500
    assert 500 not in cache.channels  # DM channels live in their own bounded map
    for i in range(3):
        cache.remember_media(f"m{i}", f"https://cdn/{i}")
    assert cache.media_url("m0") is None
    assert cache.media_url("m2") == "https://cdn/2"
    assert cache.statistics() == {
        "guilds": 0,
        "channels": 0,
        "members": 0,
        "members_evicted": 0,
        "users": 2,
        "media_ids": 2,
        "dm_channels": 1,
    }


def test_helpers_snowflakes_times_ints() -> None:
    assert snowflake_time(175928847299117063) == 1462015105.796
    assert snowflake_at(1462015105.796) >> 22 == 175928847299117063 >> 22
    assert snowflake_at(0) == 0
    assert parse_iso_time("2024-01-01T00:00:00Z") == 1704067200.0
    assert parse_iso_time(None) == 0.0
    assert parse_iso_time("garbage") == 0.0
    assert to_int("12") == 12
    assert to_int("x", 7) == 7
    assert to_int(None) == 0


def test_remembered_timestamps_answer_as_a_fresh_parse_and_stay_bounded() -> None:
    from adapters.discord import snowflakes

    texts = [f"2025-01-01T00:00:{second:02d}.000000+02:00" for second in range(60)]
    first = [parse_iso_time(text) for text in texts]
    again = [parse_iso_time(text) for text in texts]
    assert first == again == [1735682400.0 + second for second in range(60)]
    assert parse_iso_time("2025-01-01T00:00:00") == 1735689600.0  # no offset: UTC, whatever the local zone
    for day in range(1, 29):
        for hour in range(24):
            for minute in range(0, 60, 30):
                parse_iso_time(f"2025-02-{day:02d}T{hour:02d}:{minute:02d}:00Z")
    info = snowflakes._parse_iso_text.cache_info()
    assert info.maxsize == snowflakes.ISO_TIMES_REMEMBERED
    assert info.currsize <= snowflakes.ISO_TIMES_REMEMBERED
    assert parse_iso_time("garbage") == 0.0 and parse_iso_time("") == 0.0


def test_known_guilds_tell_a_join_from_a_guild_create_of_a_guild_already_in() -> None:
    cache = ready_cache()
    other = GUILD + 1
    assert cache.knows_guild(GUILD)  # listed by READY
    assert not cache.knows_guild(other)
    cache.mark_guild_known(other)  # joined, or fetched to resume a saved session
    assert cache.knows_guild(other) and cache.ready_guild_ids == {GUILD, other}
    cache.remove_guild(other)
    assert not cache.knows_guild(other)
