"""``[mirai] ids = "small"`` through the whole bridge: a framework that keeps only 53 bits of every number (a
JavaScript one, simulated by the fake framework's ``doubles`` mode) talks to channels and users with real 64-bit
snowflakes, across a restart of the bridge.

emulated Discord (loopback gateway + REST) ⇄ bridge (reverse-ws) ⇄ fake framework parsing every JSON number as a
double and sending back what it parsed.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import trio

from relay.app import serve_bridge
from relay.config import IdMode
from relay.ids import IdMap
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, TOKEN, add_guild, say, start_emulator
from tests.fakes.fake_framework import FakeConnection, FakeFramework, open_fake_framework
from tests.integration.test_end_to_end import VERIFY_KEY, bridge_config, plain_text

# Snowflakes of 2024 (~2**60). A double cannot hold any of them: the framework would corrupt each one.
GUILD = 1_250_000_000_000_000_101
CHANNEL = 1_250_000_000_000_000_203
OWNER = 1_250_000_000_000_000_305
ALICE = 1_250_000_000_000_000_407


def framework_sees(value: int) -> int:
    """What a JavaScript framework keeps of a JSON integer."""
    return int(float(value))


def group_messages(framework: FakeFramework) -> list[dict[str, object]]:
    return [e.data for e in framework.events if e.data.get("type") == "GroupMessage"]


async def wait_group_messages(framework: FakeFramework, count: int) -> list[dict[str, object]]:
    with trio.fail_after(20):
        while len(group_messages(framework)) < count:
            await trio.sleep(0.02)
    return group_messages(framework)


def posts_to(discord: Emulator, channel: int) -> list[dict[str, object]]:
    return [
        r.json
        for r in discord.requests
        if r.method == "POST" and r.path.endswith(f"/channels/{channel}/messages") and r.json
    ]


@attrs.frozen
class Shown:
    """The ids a framework took from a GroupMessage, as it stored them (doubles)."""

    group: float
    sender: float
    message: float


def shown_in(event: dict[str, object]) -> Shown:
    sender = event["sender"]
    chain = event["messageChain"]
    assert isinstance(sender, dict) and isinstance(chain, list)
    return Shown(group=sender["group"]["id"], sender=sender["id"], message=chain[0]["id"])


async def reply(conn: FakeConnection, shown: Shown, text: str) -> dict[str, object]:
    """What a bot does with what it was shown: answer in the group, quoting and mentioning the sender."""
    return await conn.request(
        "sendGroupMessage",
        {
            "target": shown.group,
            "quote": shown.message,
            "messageChain": [{"type": "At", "target": shown.sender, "display": ""}, {"type": "Plain", "text": text}],
        },
    )


async def test_a_snowflake_round_trips_through_a_53_bit_framework_across_a_restart(tmp_path: Path) -> None:
    for snowflake in (CHANNEL, ALICE):
        assert framework_sees(snowflake) != snowflake  # the simulation does corrupt real ids

    discord = Emulator(token=TOKEN)
    add_guild(discord, GUILD, "Dev", owner_id=OWNER, channels={CHANNEL: "general"}, members=[ALICE])
    # the bot's presented id is a function of its snowflake (relay/ids.py): the framework is configured with it
    # as `discord-mirai-relay ids` would print it, before the bridge ever ran
    bot_qq = IdMap().preview(BOT_ID)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await start_emulator(nursery, discord)
            async with open_fake_framework(verify_key=VERIFY_KEY, qq=bot_qq, doubles=True) as framework:
                base = bridge_config(discord, framework, tmp_path)
                config = attrs.evolve(base, mirai=attrs.evolve(base.mirai, ids=IdMode.SMALL))

                # --- first run: Alice writes, the framework answers her with the ids it was shown
                running = await nursery.start(serve_bridge, config)
                conn = await framework.wait_connection()
                await conn.wait_verified()
                await say(discord, CHANNEL, ALICE, "hello")
                (first,) = await wait_group_messages(framework, 1)
                shown = shown_in(first)
                assert shown.group < 2**53 and shown.sender < 2**53  # kept exactly by a double

                answer = await reply(conn, shown, " hi")
                assert answer["code"] == 0
                (post,) = posts_to(discord, CHANNEL)  # the right channel, not a corrupted one
                assert post["content"] == f"<@{ALICE}> hi"
                assert post["allowed_mentions"]["users"] == [str(ALICE)]  # type: ignore[index]
                original = next(m for m in discord.world.messages[CHANNEL].values() if m["content"] == "hello")
                assert post["message_reference"]["message_id"] == original["id"]  # type: ignore[index]

                running.shutdown()
                with trio.fail_after(15):
                    await conn.wait_closed()

                # --- second run, same store: the ids the framework stored still mean the same Discord ids
                running = await nursery.start(serve_bridge, config)
                conn = await framework.wait_connection()
                await conn.wait_verified()  # the bot's presented id did not change either
                answer = await reply(conn, shown, " again")
                assert answer["code"] == 0
                assert [p["content"] for p in posts_to(discord, CHANNEL)] == [f"<@{ALICE}> hi", f"<@{ALICE}> again"]

                members = await conn.request("memberList", {"target": shown.group})
                assert members["code"] == 0
                assert shown.sender in [m["id"] for m in members["data"]]  # type: ignore[union-attr]

                await say(discord, CHANNEL, ALICE, "still me")
                later = (await wait_group_messages(framework, 2))[1]
                assert plain_text(later) == "still me"
                assert (shown_in(later).group, shown_in(later).sender) == (shown.group, shown.sender)

                # an id the bridge never presented is "not found", never some other Discord id
                unknown = await conn.request(
                    "sendGroupMessage",
                    {"target": shown.group + 1, "messageChain": [{"type": "Plain", "text": "lost"}]},
                )
                assert unknown["code"] == 5
                assert "is not an id the bridge presented" in str(unknown["msg"])
                raw = await conn.request(
                    "sendGroupMessage", {"target": CHANNEL, "messageChain": [{"type": "Plain", "text": "lost"}]}
                )
                assert raw["code"] == 5  # the snowflake itself (corrupted on the way) is refused too
                assert len(posts_to(discord, CHANNEL)) == 2

                running.shutdown()
                with trio.fail_after(15):
                    await conn.wait_closed()
            nursery.cancel_scope.cancel()
