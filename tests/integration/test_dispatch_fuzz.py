"""10,000 randomly mutated real dispatches through the real gateway shell (issue 15): no crash, the connection is
never dropped, and a marker message sent after them arrives.

Hypothesis (seeded: ``derandomize=True``) mutates real-shaped dispatches — the rich MESSAGE_CREATE of
tests/fixtures/discord, and the emulated Discord's own shapes of the events in docs/discord.md §6.1 — by replacing
one to four values anywhere in them (or ``d`` itself) with random JSON: huge and negative integers, digit strings up
to 400 digits, floats, NaN, strings, nulls, small lists and objects. They go as raw dispatches from the emulated
gateway over a real websocket to the bridge's shard, translator, store, outbox and on to a fake framework.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from relay.sandbox.emulator import payloads
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, message_create, say
from tests.integration.test_end_to_end import ALICE, CHANNEL, GUILD, OTHER_CHANNEL, OWNER, plain_text, running_bridge

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "discord"
DISPATCHES = 10_000
PER_EXAMPLE = 5  # mutated dispatches drawn per Hypothesis example (fewer examples: faster generation)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True),
    st.sampled_from(["", "0", "-1", str(2**63), "1" * 400]),
)
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=6), _scalars, max_size=3)
)
_pick = st.integers(0, 2**16)
_count = st.integers(1, 4)


def real_dispatches(discord: Emulator) -> list[tuple[str, Any]]:
    """Real-shaped dispatches for the emulated world's guild (the marker channel itself is left alone): payloads
    of objects seeded silently, to be mutated and sent raw."""
    world = discord.world
    rich = json.loads((FIXTURES / "message_create_rich.json").read_text("utf-8"))
    text = json.dumps(rich).replace("1100000000000000010", str(GUILD)).replace("1100000000000000100", str(CHANNEL))
    other = dict(world.channels[OTHER_CHANNEL])
    role = {"id": str(GUILD + 77), "name": "Mods", "permissions": "8", "position": 1}
    member = payloads.member_event(GUILD, world.add_member(GUILD, 6900, username="fuzzed"))
    message = message_create(discord, world.add_message(CHANNEL, "a message to mutate", author_id=ALICE))
    return [
        ("MESSAGE_CREATE", json.loads(text)),
        ("MESSAGE_CREATE", message),
        ("MESSAGE_DELETE", {"id": message["id"], "channel_id": str(CHANNEL), "guild_id": str(GUILD)}),
        ("MESSAGE_DELETE_BULK", {"ids": [message["id"], "1"], "channel_id": str(CHANNEL), "guild_id": str(GUILD)}),
        ("GUILD_CREATE", world.guild_create(GUILD)),
        ("GUILD_UPDATE", {k: v for k, v in world.guild_create(GUILD).items() if k not in ("channels", "members")}),
        ("GUILD_MEMBER_ADD", member),
        ("GUILD_MEMBER_UPDATE", {**member, "nick": "changed", "communication_disabled_until": "2099-01-01T00:00:00"}),
        ("GUILD_MEMBER_REMOVE", {"guild_id": str(GUILD), "user": member["user"]}),
        ("GUILD_MEMBERS_CHUNK", {"guild_id": str(GUILD), "members": [member], "chunk_index": 0, "chunk_count": 1}),
        ("CHANNEL_UPDATE", {**other, "name": "renamed"}),
        ("CHANNEL_CREATE", {**other, "id": str(OTHER_CHANNEL + 50)}),
        ("THREAD_CREATE", {**other, "id": str(OTHER_CHANNEL + 60), "type": 11, "parent_id": str(OTHER_CHANNEL)}),
        ("THREAD_LIST_SYNC", {"guild_id": str(GUILD), "threads": [{**other, "id": "5", "type": 11}]}),
        ("GUILD_ROLE_CREATE", {"guild_id": str(GUILD), "role": role}),
        ("GUILD_ROLE_UPDATE", {"guild_id": str(GUILD), "role": role}),
        ("GUILD_ROLE_DELETE", {"guild_id": str(GUILD), "role_id": role["id"]}),
        ("GUILD_BAN_ADD", {"guild_id": str(GUILD), "user": member["user"]}),
        (
            "GUILD_AUDIT_LOG_ENTRY_CREATE",
            {
                "guild_id": str(GUILD),
                "action_type": 72,
                "user_id": str(OWNER),
                "target_id": str(ALICE),
                "options": {"channel_id": str(CHANNEL), "count": "1"},
            },
        ),
        ("USER_UPDATE", {"id": str(BOT_ID), "username": "relay-bot"}),
        ("TYPING_START", {"channel_id": str(CHANNEL), "user_id": str(ALICE), "timestamp": 1}),
        ("SESSIONS_REPLACE", [{"session_id": "x", "status": "online"}]),
    ]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def mutated_dispatches(bases: list[tuple[str, Any]], count: int) -> list[tuple[str, Any]]:
    """``count`` dispatches, each a base with 1–4 values replaced (see the module docstring); seeded."""
    found: list[tuple[str, Any]] = []

    @settings(
        max_examples=count // PER_EXAMPLE + 1,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def generate(data: st.DataObject) -> None:
        for _ in range(PER_EXAMPLE):
            name, original = bases[data.draw(_pick) % len(bases)]
            dispatch = copy.deepcopy(original)
            for _ in range(data.draw(_count)):
                paths = _paths(dispatch)
                path = paths[data.draw(_pick) % len(paths)]
                value = data.draw(_values)
                if not path:
                    dispatch = value
                    continue
                parent = dispatch
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]] = value
            found.append((name, dispatch))

    generate()
    return found[:count]


async def test_10000_mutated_dispatches_crash_nothing_and_a_marker_still_arrives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with trio.fail_after(180):
        async with running_bridge(tmp_path) as env:
            discord = env.discord
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            dispatches = mutated_dispatches(real_dispatches(discord), DISPATCHES)
            assert len(dispatches) == DISPATCHES
            for start in range(0, DISPATCHES, 500):
                for name, data in dispatches[start : start + 500]:
                    await discord.dispatch(name, data)
                await trio.sleep(0)
            await say(discord, CHANNEL, ALICE, "marker after the fuzz")
            with trio.fail_after(120):
                while not any(
                    e.data.get("type") == "GroupMessage" and plain_text(e.data) == "marker after the fuzz"
                    for e in env.framework.events
                ):
                    await trio.sleep(0.05)
    refused = sum("refused a" in r.getMessage() for r in caplog.records)
    malformed = sum("skipping malformed" in r.getMessage() for r in caplog.records)
    contained = sum("handling it failed" in r.getMessage() for r in caplog.records)
    print(f"{DISPATCHES} mutated dispatches: {refused} refused ids, {malformed} malformed, {contained} contained")
    assert len(discord.gateway.identifies) == 1 and not discord.gateway.resumes  # the connection never dropped
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
