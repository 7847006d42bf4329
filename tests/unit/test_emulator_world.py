"""The emulator's world: persistence across restarts, ids, the default world, and the events each action
produces in Discord's order. No trio, no sockets (SQLite files in tmp_path)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from relay.sandbox.emulator import defaults
from relay.sandbox.emulator.actions import Actions
from relay.sandbox.emulator.db import StateFile
from relay.sandbox.emulator.errors import ApiError, StateFileError
from relay.sandbox.emulator.world import Dispatch, Upload, World

GUILD = 900_000_000_000_000_001
OWNER = 900_000_000_000_000_101
ALICE = 900_000_000_000_000_102
CHANNEL = 900_000_000_000_000_201
NOW = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def open_world(path: str, clock: Clock | None = None) -> tuple[World, Actions, list[Dispatch]]:
    world = World(StateFile.open(path), clock=clock or Clock())
    events: list[Dispatch] = []
    world.listeners.append(events.append)
    return world, Actions(world), events


def seed(world: World) -> None:
    world.add_guild(GUILD, "Guild", owner_id=OWNER)
    world.add_channel(CHANNEL, "general", guild_id=GUILD)
    world.add_member(GUILD, ALICE, username="alice", nick="Ali")


def test_a_restart_keeps_the_world(tmp_path: Path) -> None:
    path = str(tmp_path / "discord.sqlite3")
    world, actions, _ = open_world(path)
    seed(world)
    question = actions.post_message(CHANNEL, "question", author_id=ALICE)
    answer = actions.post_message(
        CHANNEL,
        f"answer <@{ALICE}>",
        reply_to=int(question["id"]),
        uploads=[Upload("a.txt", b"hello", "text/plain")],
    )
    actions.pin_message(CHANNEL, int(question["id"]))
    actions.update_member(GUILD, ALICE, nick="Ally", communication_disabled_until="2026-09-22T00:00:00+00:00")
    actions.put_overwrite(CHANNEL, GUILD, type=0, allow=0, deny=2048)
    dm = actions.open_dm(ALICE)
    actions.post_message(int(dm["id"]), "psst")
    world.close_dms(ALICE)
    actions.ban(GUILD, OWNER)
    world.state.close()

    again, _, _ = open_world(path)
    assert again.guilds == world.guilds and again.channels == world.channels
    assert again.members == world.members and again.users == world.users
    assert again.messages == world.messages
    assert list(again.messages[CHANNEL]) == list(world.messages[CHANNEL])  # id order
    assert again.pins == world.pins and again.bans == world.bans and again.dm_channels == world.dm_channels
    assert again.audit_log == world.audit_log and again.dms_closed(ALICE)
    reloaded = again.messages[CHANNEL][int(answer["id"])]
    assert reloaded["referenced_message"]["content"] == "question"
    url = reloaded["attachments"][0]["url"]
    assert again.file(url.removeprefix(again.origin)) == (b"hello", "text/plain")
    # members share the one user object, as in a fresh world
    assert again.members[(GUILD, ALICE)]["user"] is again.users[ALICE]
    # new ids keep increasing past everything stored, even when the clock went back
    clock = Clock()
    clock.now = NOW - 3600
    third, _, _ = open_world(path, clock)
    stored = [int(i) for i in third.messages[CHANNEL]] + [int(e["id"]) for e in third.audit_log[GUILD]]
    assert third.new_id() > max(stored)


def test_state_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "discord.sqlite3"
    world, actions, _ = open_world(str(path))
    seed(world)
    actions.post_message(CHANNEL, "x")
    for file in tmp_path.iterdir():  # the -wal/-shm files too
        assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file


def test_unreadable_or_newer_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "discord.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateFileError, match="cannot open"):
        StateFile.open(str(path))
    newer = tmp_path / "newer.sqlite3"
    StateFile.open(str(newer)).set_meta("schema", "99")
    with pytest.raises(StateFileError, match="schema 99"):
        StateFile.open(str(newer))


def test_a_failed_operation_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "discord.sqlite3")
    state = StateFile.open(path)
    with pytest.raises(RuntimeError), state.transaction():
        state.put("user", 1, {"id": "1"})
        raise RuntimeError("boom")
    assert state.load("user") == []


def test_attachment_urls_follow_a_new_port(tmp_path: Path) -> None:
    path = str(tmp_path / "discord.sqlite3")
    world, actions, _ = open_world(path)
    world.set_origin("http://127.0.0.1:1111")
    seed(world)
    message = actions.post_message(CHANNEL, "file", uploads=[Upload("a.png", b"png", "image/png")])
    reply = actions.post_message(CHANNEL, "re", reply_to=int(message["id"]))
    world.state.close()
    again, _, _ = open_world(path)
    again.set_origin("http://127.0.0.1:2222")
    moved = again.messages[CHANNEL][int(message["id"])]["attachments"][0]
    assert moved["url"].startswith("http://127.0.0.1:2222/attachments/")
    assert moved["proxy_url"] == moved["url"]
    quoted = again.messages[CHANNEL][int(reply["id"])]["referenced_message"]["attachments"][0]
    assert quoted["url"] == moved["url"]
    again.state.close()
    third, _, _ = open_world(path)
    third.set_origin("http://127.0.0.1:2222")
    assert third.messages[CHANNEL][int(message["id"])]["attachments"][0]["url"] == moved["url"]


def test_default_world() -> None:
    world, _, _ = open_world(":memory:")
    defaults.seed_default_world(world)
    (guild,) = world.guilds.values()
    assert guild["name"] == "Sandbox" and guild["system_channel_id"] == str(defaults.GENERAL)
    assert [c["name"] for c in world.guild_channels(defaults.GUILD)] == ["general", "random", "bot-commands"]
    assert {m["user"]["username"] for m in world.guild_members(defaults.GUILD)} == {
        "relay-bot",
        "alice",
        "bob",
        "carol",
        "dave",
    }
    assert defaults.ERIN in world.users and (defaults.GUILD, defaults.ERIN) not in world.members
    assert world.members[(defaults.GUILD, world.bot_user_id)]["roles"] == [str(defaults.RELAY_ROLE)]
    assert len(world.messages[defaults.GENERAL]) == 1


def test_join_and_leave_events() -> None:
    world, actions, events = open_world(":memory:")
    seed(world)
    world.add_user(777, "newbie")
    actions.member_join(GUILD, 777)
    assert [e.name for e in events] == ["GUILD_MEMBER_ADD", "MESSAGE_CREATE"]
    assert events[0].data["guild_id"] == str(GUILD) and events[0].data["user"]["username"] == "newbie"
    assert events[1].data["type"] == 7 and events[1].data["channel_id"] == str(CHANNEL)
    events.clear()
    actions.member_leave(GUILD, 777)
    assert [e.name for e in events] == ["GUILD_MEMBER_REMOVE"]  # a quit has no audit entry
    assert events[0].data == {"guild_id": str(GUILD), "user": world.users[777]}
    actions.ban(GUILD, 777)
    with pytest.raises(ApiError) as banned:
        actions.member_join(GUILD, 777)
    assert (banned.value.status, banned.value.code) == (403, 40007)


def test_member_deleting_their_own_message_makes_no_audit_entry() -> None:
    world, actions, events = open_world(":memory:")
    seed(world)
    message = actions.post_message(CHANNEL, "oops", author_id=ALICE)
    events.clear()
    actions.delete_message(CHANNEL, int(message["id"]), actor_id=ALICE)
    assert [e.name for e in events] == ["MESSAGE_DELETE"]
    assert world.audit_log[GUILD] == []


def test_dm_events_carry_no_guild() -> None:
    world, actions, events = open_world(":memory:")
    seed(world)
    dm = actions.open_dm(ALICE)
    actions.post_message(int(dm["id"]), "hello", author_id=ALICE)
    (event,) = events
    assert event.guild_id is None and "guild_id" not in event.data and "member" not in event.data


def test_unknown_objects_are_discord_404s() -> None:
    world, actions, _ = open_world(":memory:")
    seed(world)
    cases = [
        (lambda: world.channel(1), 10003),
        (lambda: world.guild(1), 10004),
        (lambda: world.member(GUILD, 1), 10007),
        (lambda: world.message(CHANNEL, 1), 10008),
        (lambda: world.role(GUILD, 1), 10011),
        (lambda: world.user(1), 10013),
        (lambda: actions.unban(GUILD, ALICE), 10026),
    ]
    for call, code in cases:
        with pytest.raises(ApiError) as info:
            call()
        assert (info.value.status, info.value.code) == (404, code)


def test_a_reply_quotes_the_live_message_and_null_once_it_is_deleted(tmp_path: Path) -> None:
    path = str(tmp_path / "discord.sqlite3")
    world, actions, _ = open_world(path)
    seed(world)
    question = actions.post_message(CHANNEL, "question", author_id=ALICE)
    reply = actions.post_message(CHANNEL, "answer", reply_to=int(question["id"]))
    actions.pin_message(CHANNEL, int(question["id"]))
    assert reply["referenced_message"]["pinned"] is True  # as REST would resolve it now
    actions.delete_message(CHANNEL, int(question["id"]))
    assert reply["referenced_message"] is None  # docs/discord.md §6.2: null = deleted
    world.state.close()
    again, _, _ = open_world(path)
    reloaded = again.messages[CHANNEL][int(reply["id"])]
    assert reloaded["referenced_message"] is None and reloaded["message_reference"]["message_id"] == question["id"]
