"""The member table of the Discord cache: bounds, eviction order, compact records and their memory (pure)."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

from adapters.discord.cache import DiscordCache
from adapters.discord.entities import MAX_ROLE_SETS_A_GUILD, EntityFactory
from adapters.discord.members import CachedMember, intern_roles
from adapters.discord.snowflakes import parse_iso_time
from relay import envelope as env
from relay.config import CACHE_MEMBER_BYTES, DiscordCacheConfig, MappingConfig

BOT = 1
USER_BASE = 960000000000000000


def member(n: int, **extra: Any) -> dict[str, Any]:
    """A member object as GUILD_CREATE, GUILD_MEMBERS_CHUNK or REST list it (docs/discord.md §6.3)."""
    return {
        "user": {
            "username": f"user{n}",
            "public_flags": 0,
            "id": str(USER_BASE + n),
            "global_name": f"User {n}",
            "discriminator": "0",
            "avatar": f"{n:032x}",
        },
        "roles": [],
        "nick": None,
        "joined_at": "2025-01-01T00:00:00.000000+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "communication_disabled_until": None,
        **extra,
    }


def cache_with(guilds: int, **bounds: int) -> DiscordCache:
    cache = DiscordCache(**bounds)
    cache.on_ready({"user": {"id": str(BOT), "username": "bot", "bot": True}, "guilds": []})
    for g in range(guilds):
        cache.upsert_guild({"id": str(100 + g), "name": f"g{g}", "roles": [], "channels": []})
    return cache


def ids(cache: DiscordCache, guild_id: int) -> list[int]:
    return [user_id - USER_BASE for user_id in cache.guilds[guild_id].members]


def upsert_guild_with_roles(cache: DiscordCache, owner: int, *roles: tuple[str, str, int]) -> None:
    """Guild 100 owned by ``owner``, with @everyone (no permissions) and ``roles`` as (id, name, permissions)."""
    everyone = {"id": "100", "name": "@everyone", "permissions": "0", "position": 0}
    listed = [
        {"id": role_id, "name": name, "permissions": str(permissions), "position": position}
        for position, (role_id, name, permissions) in enumerate(roles, start=1)
    ]
    cache.upsert_guild({"id": "100", "owner_id": str(owner), "roles": [everyone, *listed]})


def test_the_least_recently_used_member_goes_first_per_guild_and_overall() -> None:
    cache = cache_with(2, max_members_per_guild=3, max_members_total=5)
    for n in range(3):
        cache.upsert_member(100, member(n))
    cache.touch_message_author(100, member(0)["user"], None, 1.0)  # 0 spoke: now the newest
    cache.upsert_member(100, member(3))  # the guild is full: 1 goes
    assert ids(cache, 100) == [2, 0, 3]
    for n in (10, 11, 12):
        cache.upsert_member(101, member(n))  # 6 members: the oldest overall (2, guild 100) goes
    assert ids(cache, 100) == [0, 3]
    assert ids(cache, 101) == [10, 11, 12]
    assert cache.statistics()["members"] == 5
    assert cache.members_evicted == 2
    assert cache.guilds[100].members_evicted == 2
    assert cache.member(100, BOT) is None or cache.member(100, BOT) is cache.guilds[100].bot_member


def test_removing_members_and_guilds_keeps_the_global_order_consistent() -> None:
    cache = cache_with(2, max_members_per_guild=10, max_members_total=4)
    for n in range(3):
        cache.upsert_member(100, member(n))
    cache.upsert_member(101, member(10))
    removed = cache.remove_member(100, USER_BASE + 1)
    assert removed is not None and removed.username == "user1"
    cache.remove_guild(101)
    assert cache.statistics()["members"] == 2
    for n in (20, 21, 22):
        cache.upsert_member(100, member(n))  # fills to 4 with room for the removed ones: evicts only 0
    assert ids(cache, 100) == [2, 20, 21, 22]
    assert cache._members.count == len(list(cache._members.oldest_first())) == 4


def test_a_member_record_is_one_object_with_only_what_the_mapping_needs() -> None:
    cache = cache_with(1)
    raw = member(7, nick="Seven", roles=["5", "6"], communication_disabled_until="2030-01-01T00:00:00+00:00")
    result = cache.upsert_member(100, raw)
    assert result is not None
    record = result[1]
    assert record.user is record  # no separate user object
    assert not hasattr(record, "__dict__")
    assert (record.id, record.username, record.global_name, record.nick) == (USER_BASE + 7, "user7", "User 7", "Seven")
    assert record.roles == (5, 6) and record.roles is intern_roles(["5", "6"])  # shared by equal role sets
    assert record.joined_at == parse_iso_time("2025-01-01T00:00:00.000000+00:00")
    assert record.timeout_until == parse_iso_time("2030-01-01T00:00:00+00:00")
    # a message's partial member ends the timeout; an unchanged name keeps the cached string object
    username = record.username
    author = json.loads(json.dumps(raw["user"]))
    cache.touch_message_author(100, author, {"communication_disabled_until": None, "roles": ["5", "6"]}, 9.0)
    assert record.timeout_until == 0.0 and record.last_spoke_at == 9.0
    assert record.username is username


def test_compact_records_give_the_envelope_the_values_of_the_payload() -> None:
    """memberList / events see exactly what the payload says: name order, role, times, bot flag."""
    cache = cache_with(1)
    upsert_guild_with_roles(cache, USER_BASE + 1, ("5", "mods", 1 << 5))
    entities = EntityFactory(cache, MappingConfig())
    group = env.Group(id=200, name="general", bot_role=env.Role.MEMBER, guild_id=100)
    payloads = [
        member(1),  # the owner
        member(2, nick="Two", roles=["5"]),  # MANAGE_GUILD through a role
        member(3, communication_disabled_until="2030-01-01T00:00:00+00:00"),
        {**member(4), "user": {**member(4)["user"], "global_name": None, "bot": True}},
    ]
    now = 1_700_000_000.0
    for raw in payloads:
        cache.upsert_member(100, raw)
    got = [entities.member_of(100, m, group, now) for m in cache.iter_members(100) if m.id != BOT]
    joined = int(parse_iso_time("2025-01-01T00:00:00.000000+00:00"))
    mute = int(parse_iso_time("2030-01-01T00:00:00+00:00") - now)

    def expect(n: int, name: str, role: env.Role, *, mute: int = 0, is_bot: bool = False) -> env.Member:
        return env.Member(
            user_id=USER_BASE + n,
            display_name=name,
            role=role,
            group=group,
            joined_at=joined,
            mute_remaining=mute,
            is_bot=is_bot,
        )

    expected = [
        expect(1, "User 1", env.Role.OWNER),
        expect(2, "Two", env.Role.ADMINISTRATOR),
        expect(3, "User 3", env.Role.MEMBER, mute=mute),
        expect(4, "user4", env.Role.MEMBER, is_bot=True),
    ]
    assert got == expected


def test_a_guild_create_that_lists_every_member_makes_the_list_complete_until_an_eviction() -> None:
    cache = cache_with(0, max_members_per_guild=3, max_members_total=10)
    everyone = [member(n) for n in range(3)]
    cache.upsert_guild({"id": "100", "member_count": 4, "members": [member(BOT - USER_BASE), *everyone]})
    assert cache.guilds[100].members_complete
    cache.upsert_guild({"id": "101", "member_count": 40, "large": True, "members": everyone[:1]})
    assert not cache.guilds[101].members_complete  # partial: a large guild lists only some
    cache.upsert_member(100, member(9))  # a fourth member does not fit the per-guild bound
    assert not cache.guilds[100].members_complete


def test_a_cached_member_costs_under_the_documented_bytes_at_the_cap_with_churn() -> None:
    """~0.5 KB was the budget (issue 18); relay.config.CACHE_MEMBER_BYTES is the figure `check` uses."""
    cap = 10_000
    cache = cache_with(10, max_members_per_guild=cap, max_members_total=cap)
    payloads = [json.dumps(member(n)) for n in range(3 * cap)]  # parsed one by one, as from the gateway
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n, text in enumerate(payloads):  # three times the cap goes through: churn
            raw = json.loads(text)
            cache.upsert_member(100 + n % 10, raw)
            if n % 3 == 0:
                partial = {k: v for k, v in raw.items() if k != "user"}
                cache.touch_message_author(100 + n * 7 % 10, raw["user"], partial, 1.0)
        del raw, partial
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert cache.statistics()["members"] == cap
    assert cache.members_evicted >= 2 * cap
    assert grown / cap <= CACHE_MEMBER_BYTES <= 512


def test_cache_bounds_come_from_the_configuration() -> None:
    config = DiscordCacheConfig(max_members=7, max_members_per_guild=3, max_users=2, max_dm_channels=2, max_media_ids=2)
    cache = DiscordCache.from_config(config)
    cache.on_ready({"user": {"id": str(BOT), "username": "bot"}, "guilds": []})
    cache.upsert_guild({"id": "100"})
    for n in range(5):
        cache.upsert_member(100, member(n))
        cache.upsert_user(member(n)["user"])
        cache.remember_media(f"m{n}", "https://cdn/x")
        cache.note_dm_channel(500 + n, USER_BASE + n)
    stats = cache.statistics()
    assert (stats["members"], stats["users"], stats["media_ids"], stats["dm_channels"]) == (3, 2, 2, 2)
    assert config.estimated_bytes() == 7 * CACHE_MEMBER_BYTES + 2 * (370 + 200 + 450)


def test_a_detached_copy_is_equal_but_outside_the_table() -> None:
    cache = cache_with(1)
    result = cache.upsert_member(100, member(1, nick="n"))
    assert result is not None
    copy = result[1].copy()
    assert copy == result[1] and copy is not result[1]
    assert isinstance(copy, CachedMember)
    cache._members.touch(copy)  # not in a table: nothing happens
    assert ids(cache, 100) == [1]


def test_a_remembered_role_follows_every_change_it_depends_on() -> None:
    """EntityFactory.member_role remembers the role on the member (CachedMember.role_memo) with the version of its
    guild's roles: a role update or deletion, a new owner, or the member's own roles changing (a GUILD_MEMBER_UPDATE
    or a message's partial member) must each give the role afresh."""
    cache = cache_with(1)
    upsert_guild_with_roles(cache, BOT, ("5", "mods", 0))
    entities = EntityFactory(cache, MappingConfig())
    cache.upsert_member(100, member(2, roles=["5"]))
    guild, record = cache.guilds[100], cache.guilds[100].members[USER_BASE + 2]

    def role() -> env.Role:
        return entities.member_role(guild, record)

    assert role() == env.Role.MEMBER and record.role_memo  # remembered
    assert role() == env.Role.MEMBER
    cache.upsert_role(100, {"id": "5", "name": "mods", "permissions": str(1 << 5), "position": 1})  # MANAGE_GUILD
    assert role() == env.Role.ADMINISTRATOR
    cache.remove_role(100, 5)
    assert role() == env.Role.MEMBER
    cache.upsert_role(100, {"id": "6", "name": "admins", "permissions": str(1 << 3), "position": 2})
    assert role() == env.Role.MEMBER  # not the member's role yet
    record.refresh_from_message({"roles": ["6"]})  # a message's partial member says it is now
    assert role() == env.Role.ADMINISTRATOR
    cache.upsert_member(100, member(2, roles=[]))  # GUILD_MEMBER_UPDATE: the role was taken away
    assert role() == env.Role.MEMBER
    cache.upsert_guild({"id": "100", "owner_id": str(USER_BASE + 2)})  # ownership moves to the member
    assert role() == env.Role.OWNER
    cache.upsert_guild({"id": "100", "owner_id": str(BOT)})
    assert role() == env.Role.MEMBER
    # with admin_role configured the role depends on the factory's configuration too: never remembered
    configured = EntityFactory(cache, MappingConfig(admin_role="admins"))
    record.role_memo = 0
    record.refresh_from_message({"roles": ["6"]})
    assert configured.member_role(guild, record) == env.Role.ADMINISTRATOR and not record.role_memo
    cache.upsert_role(100, {"id": "6", "name": "admins", "permissions": "0", "position": 2})
    assert configured.member_role(guild, record) == env.Role.ADMINISTRATOR  # by name: the configured admin role
    assert entities.member_role(guild, record) == env.Role.MEMBER  # the other factory: by permissions only


def test_the_configured_admin_role_is_found_once_the_cache_learns_it_without_a_dispatch() -> None:
    """memberAdmin fetches a guild's roles over REST when the configured admin role is not cached, and upserts them
    into the cache without a dispatch (nothing calls forget_groups): the factory's remembered "no such role" must
    not outlive that, or a member holding the role reads as a plain MEMBER until some later dispatch."""
    cache = cache_with(1)
    cache.upsert_guild({"id": "100", "roles": [{"id": "100", "name": "@everyone", "permissions": "0", "position": 0}]})
    cache.upsert_member(100, member(2, roles=["6"]))  # holds a role the cache does not know yet
    guild, record = cache.guilds[100], cache.guilds[100].members[USER_BASE + 2]
    configured = EntityFactory(cache, MappingConfig(admin_role="admins"))
    assert configured.admin_role_id(guild) == 0
    assert configured.member_role(guild, record) == env.Role.MEMBER
    cache.upsert_role(100, {"id": "6", "name": "admins", "permissions": "0", "position": 1})  # the REST answer
    assert configured.admin_role_id(guild) == 6
    assert configured.member_role(guild, record) == env.Role.ADMINISTRATOR
    cache.remove_role(100, 6)
    assert configured.admin_role_id(guild) == 0
    assert configured.member_role(guild, record) == env.Role.MEMBER


def test_members_with_the_same_roles_share_one_derived_role_and_the_owner_keeps_its_own() -> None:
    """EntityFactory derives a role once per role set and version of the guild's roles (its _role_codes): members
    holding the same roles get the same answer, the owner holding them too is still the OWNER, a change to the
    guild's roles gives every role set afresh, and a guild whose members hold more role sets than the memo keeps is
    still answered right."""
    cache = cache_with(1)
    upsert_guild_with_roles(cache, USER_BASE + 3, ("5", "mods", 1 << 5), ("6", "helpers", 0))  # 1 << 5: MANAGE_GUILD
    for n, roles in ((1, ["5"]), (2, ["5"]), (3, ["5"]), (4, ["6"]), (5, [])):
        cache.upsert_member(100, member(n, roles=roles))
    guild = cache.guilds[100]
    for admin_role in ("", "helpers"):  # the memo also holds for roles derived with admin_role configured
        entities = EntityFactory(cache, MappingConfig(admin_role=admin_role))

        def role(n: int, entities: EntityFactory = entities) -> env.Role:
            return entities.member_role(guild, guild.members[USER_BASE + n])

        helper = env.Role.ADMINISTRATOR if admin_role else env.Role.MEMBER
        assert [role(n) for n in (1, 2, 3, 4, 5)] == [
            env.Role.ADMINISTRATOR,
            env.Role.ADMINISTRATOR,
            env.Role.OWNER,
            helper,
            env.Role.MEMBER,
        ]
        cache.upsert_role(100, {"id": "5", "name": "mods", "permissions": "0", "position": 1})
        assert [role(n) for n in (1, 2, 3)] == [env.Role.MEMBER, env.Role.MEMBER, env.Role.OWNER]
        cache.upsert_role(100, {"id": "5", "name": "mods", "permissions": str(1 << 5), "position": 1})
        assert role(2) == env.Role.ADMINISTRATOR
    # more distinct role sets than the memo keeps: each still derived from the roles it holds
    entities = EntityFactory(cache, MappingConfig())
    many = MAX_ROLE_SETS_A_GUILD + 100
    expected = [(CachedMember(USER_BASE + 10 + i, roles=(6, 10_000 + i)), env.Role.MEMBER) for i in range(many)]
    expected += [
        (CachedMember(USER_BASE + 10 + many + i, roles=(5, 10_000 + i)), env.Role.ADMINISTRATOR) for i in range(50)
    ]
    assert [entities.member_role(guild, record) for record, _ in expected] == [want for _, want in expected]
