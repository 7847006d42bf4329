"""Who recalled a message (issue 15): GroupRecallEvent.operator is the moderator the audit log names, else the
author (a self-deletion), and null only when the bot itself deleted it (adapters/discord/recalls.py)."""

from __future__ import annotations

from typing import Any

from adapters.discord.cache import DiscordCache
from adapters.discord.entities import EntityFactory
from adapters.discord.events_in import DispatchTranslator
from adapters.discord.own_actions import OwnActions
from adapters.discord.recalls import AUDIT_WAIT
from relay import envelope as env
from relay.config import MappingConfig
from tests.unit.test_discord_events_in import ALICE, GENERAL, GUILD, MSG, NOW, OWNER, load, ready_payload

MOD_ROLE = 1100000000000000021
VIEW_AUDIT_LOG = 1 << 7


def make(*, audit_log: bool) -> tuple[DispatchTranslator, OwnActions]:
    own = OwnActions()
    translator = DispatchTranslator(
        EntityFactory(DiscordCache(), MappingConfig()), own, author_of=lambda mid: ALICE if mid == MSG else None
    )
    translator.on_dispatch("READY", ready_payload(), NOW)
    guild = load("guild_create.json")
    if audit_log:
        for role in guild["roles"]:
            if int(role["id"]) == MOD_ROLE:  # the bot's role
                role["permissions"] = str(int(role["permissions"]) | VIEW_AUDIT_LOG)
    translator.on_dispatch("GUILD_CREATE", guild, NOW)
    return translator, own


def delete(message_id: int = MSG) -> dict[str, Any]:
    return {"id": str(message_id), "channel_id": str(GENERAL), "guild_id": str(GUILD)}


def audit_entry(operator: int, target: int, *, count: int = 1) -> dict[str, Any]:
    return {
        "id": "1",
        "guild_id": str(GUILD),
        "action_type": 72,
        "user_id": str(operator),
        "target_id": str(target),
        "options": {"channel_id": str(GENERAL), "count": str(count)},
    }


def operator_of(events: list[env.Event]) -> int | None:
    (recall,) = events
    assert isinstance(recall, env.MessageRecalled)
    assert recall.author_id == ALICE
    return recall.operator.user_id if recall.operator is not None else None


def test_a_self_deletion_names_the_author() -> None:
    translator, _ = make(audit_log=False)
    assert operator_of(translator.on_dispatch("MESSAGE_DELETE", delete(), NOW)) == ALICE


def test_the_bots_own_recall_has_no_operator() -> None:
    translator, own = make(audit_log=True)
    own.note_recalled(MSG)
    assert operator_of(translator.on_dispatch("MESSAGE_DELETE", delete(), NOW)) is None


def test_a_moderator_named_by_a_later_audit_entry() -> None:
    translator, _ = make(audit_log=True)
    assert translator.on_dispatch("MESSAGE_DELETE", delete(), NOW) == []  # waits for its entry
    events = translator.on_dispatch("GUILD_AUDIT_LOG_ENTRY_CREATE", audit_entry(OWNER, ALICE), NOW + 0.3)
    assert operator_of(events) == OWNER
    assert translator.tick(NOW + AUDIT_WAIT + 1) == []


def test_a_moderator_named_by_an_earlier_audit_entry() -> None:
    translator, _ = make(audit_log=True)
    assert translator.on_dispatch("GUILD_AUDIT_LOG_ENTRY_CREATE", audit_entry(OWNER, ALICE), NOW) == []
    assert operator_of(translator.on_dispatch("MESSAGE_DELETE", delete(), NOW + 0.1)) == OWNER


def test_without_an_entry_in_time_it_was_the_author() -> None:
    translator, _ = make(audit_log=True)
    assert translator.on_dispatch("MESSAGE_DELETE", delete(), NOW) == []
    assert translator.tick(NOW + AUDIT_WAIT / 2) == []
    assert operator_of(translator.tick(NOW + AUDIT_WAIT)) == ALICE


def test_an_entry_for_another_author_does_not_match() -> None:
    translator, _ = make(audit_log=True)
    translator.on_dispatch("MESSAGE_DELETE", delete(), NOW)
    assert translator.on_dispatch("GUILD_AUDIT_LOG_ENTRY_CREATE", audit_entry(OWNER, 424242), NOW) == []
    assert operator_of(translator.tick(NOW + AUDIT_WAIT)) == ALICE
