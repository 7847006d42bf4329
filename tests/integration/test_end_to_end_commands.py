"""Every mirai-api-http command (docs/mirai-api-http.md §6.1) through the whole running bridge.

framework (fake, loopback websocket) → reverse-ws client → mirai translation → relay (store-resolved ids)
→ Discord executor → REST client → the emulated Discord's REST API (loopback HTTP), and the answer all the way back.
Each command runs once where it succeeds and once where it must fail with the mirai code a framework
expects; commands with no Discord meaning must answer code 6 with a reason. A command missing anywhere in
the chain fails this test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio

from relay.config import MappingConfig
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID
from tests.integration.test_end_to_end import ALICE, CHANNEL, GUILD, OTHER_CHANNEL, running_bridge

UNKNOWN = 4_242_424_242  # no channel, user or member has this id
ADMIN_ROLE = 5900

#: (command, subCommand) with no Discord meaning: code 6 and a reason, never a fake success
UNSUPPORTED = [
    ("sendNudge", {"target": ALICE, "subject": CHANNEL, "kind": "Group"}),
    ("sendOtherClientMessage", {"target": 1, "messageChain": [{"type": "Plain", "text": "x"}]}),
    ("sendImageMessage", {"target": CHANNEL, "urls": ["http://127.0.0.1:1/x.png"]}),
    ("resp_newFriendRequestEvent", {"eventId": 1, "fromId": ALICE, "groupId": 0, "operate": 0, "message": ""}),
    ("resp_memberJoinRequestEvent", {"eventId": 1, "fromId": ALICE, "groupId": CHANNEL, "operate": 0, "message": ""}),
    (
        "resp_botInvitedJoinGroupRequestEvent",
        {"eventId": 1, "fromId": ALICE, "groupId": 1, "operate": 0, "message": ""},
    ),
    ("file_list", {"id": "", "target": CHANNEL}),
    ("file_info", {"id": "x", "target": CHANNEL}),
    ("file_mkdir", {"id": "", "target": CHANNEL, "directoryName": "d"}),
    ("file_delete", {"id": "x", "target": CHANNEL}),
    ("file_move", {"id": "x", "target": CHANNEL, "moveTo": "y"}),
    ("file_rename", {"id": "x", "target": CHANNEL, "renameTo": "z"}),
    ("file_upload", {}),
    ("uploadImage", {}),
    ("uploadVoice", {}),
    ("uploadShortVideo", {}),
    ("cmd_execute", {"command": [{"type": "Plain", "text": "help"}]}),
    ("cmd_register", {"name": "x"}),
    ("deleteFriend", {"target": ALICE}),
]


@attrs.define
class Matrix:
    conn: Any
    problems: list[str] = attrs.field(factory=list)
    seen: set[str] = attrs.field(factory=set)

    async def expect(
        self, command: str, content: object, code: int, *, sub: str | None = None, bare: bool = False
    ) -> dict[str, Any]:
        """Run one command; ``bare``: success answers a bare object (profiles, groupConfig/memberInfo get)."""
        name = f"{command}{'.' + sub if sub else ''}"
        self.seen.add(name)
        data: dict[str, Any] = await self.conn.request(command, content, sub_command=sub)
        got = data.get("code", 0 if bare else None)
        if got != code:
            self.problems.append(f"{name} {content!r}: expected code {code}, got {data!r}")
        elif code != 0 and not str(data.get("msg", "")).strip():
            self.problems.append(f"{name}: a failure without a readable msg: {data!r}")
        return data


async def test_every_mirai_command_succeeds_and_fails_as_a_framework_expects(tmp_path: Path) -> None:
    mapping = MappingConfig(admin_role="Admins")
    with trio.fail_after(90):
        async with running_bridge(tmp_path, mapping=mapping, before_start=_seed_admin_role) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            discord, world = env.discord, env.discord.world
            m = Matrix(conn)
            text = [{"type": "Plain", "text": "hello"}]

            # --- bridge-local answers (no failure mode exists for these)
            assert (await m.expect("about", {}, 0))["data"] == {"version": "2.10.0"}
            assert (await m.expect("botList", {}, 0))["data"] == [BOT_ID]
            await m.expect("sessionInfo", {}, 0)
            await m.expect("groupList", {}, 0)
            await m.expect("botProfile", {}, 0, bare=True)

            # --- messages
            group_sent = await m.expect("sendGroupMessage", {"target": CHANNEL, "messageChain": text}, 0)
            await m.expect("sendGroupMessage", {"target": UNKNOWN, "messageChain": text}, 5)
            await m.expect("sendGroupMessage", {"target": CHANNEL, "messageChain": "not a chain"}, 400)
            await m.expect("sendFriendMessage", {"target": ALICE, "messageChain": text}, 0)
            discord.close_dms(ALICE)
            await m.expect("sendFriendMessage", {"target": ALICE, "messageChain": text}, 10)
            await m.expect("sendTempMessage", {"qq": ALICE, "group": CHANNEL, "messageChain": text}, 10)  # DMs closed
            await m.expect("sendTempMessage", {"qq": UNKNOWN, "group": CHANNEL, "messageChain": text}, 5)
            friends = await m.expect("friendList", {}, 0)
            assert [f["id"] for f in friends["data"]] == [ALICE]
            await m.expect("friendProfile", {"target": ALICE}, 0, bare=True)
            await m.expect("friendProfile", {"target": UNKNOWN}, 5)
            await m.expect("userProfile", {"target": ALICE}, 0, bare=True)
            await m.expect("userProfile", {"target": UNKNOWN}, 5)

            message_id = group_sent["messageId"]
            found = await m.expect("messageFromId", {"target": CHANNEL, "messageId": message_id}, 0)
            assert found["data"]["messageChain"][0] == {
                "type": "Source",
                "id": message_id,
                "time": found["data"]["messageChain"][0]["time"],
            }
            await m.expect("messageFromId", {"target": CHANNEL, "messageId": 77_777}, 5)
            roaming = {"timeStart": 0, "timeEnd": 2**40, "target": CHANNEL, "qq": None, "group": None}
            history = await m.expect("roamingMessages", roaming, 0)
            assert any(e["messageChain"][0]["id"] == message_id for e in history["data"])
            await m.expect("roamingMessages", {**roaming, "target": UNKNOWN}, 5)
            await m.expect("setEssence", {"target": CHANNEL, "messageId": message_id}, 0)
            assert world.pins[CHANNEL], "setEssence did not pin on Discord"
            await m.expect("setEssence", {"target": CHANNEL, "messageId": 77_777}, 5)
            await m.expect("recall", {"target": CHANNEL, "messageId": message_id}, 0)
            await m.expect("recall", {"target": CHANNEL, "messageId": 77_777}, 5)

            # --- members
            await m.expect("memberList", {"target": CHANNEL}, 0)
            await m.expect("memberList", {"target": UNKNOWN}, 5)
            await m.expect("latestMemberList", {"target": CHANNEL, "memberIds": [ALICE]}, 0)
            await m.expect("latestMemberList", {"target": UNKNOWN, "memberIds": None}, 5)
            await m.expect("memberProfile", {"target": CHANNEL, "memberId": ALICE}, 0, bare=True)
            await m.expect("memberProfile", {"target": CHANNEL, "memberId": UNKNOWN}, 5)
            await m.expect("memberInfo", {"target": CHANNEL, "memberId": ALICE}, 0, sub="get", bare=True)
            await m.expect("memberInfo", {"target": CHANNEL, "memberId": UNKNOWN}, 5, sub="get")
            update = {"target": CHANNEL, "memberId": ALICE, "info": {"name": "Ally"}}
            await m.expect("memberInfo", update, 0, sub="update")
            assert world.members[(GUILD, ALICE)]["nick"] == "Ally"
            await m.expect("memberInfo", {**update, "memberId": UNKNOWN}, 5, sub="update")
            await m.expect("memberAdmin", {"target": CHANNEL, "memberId": ALICE, "assign": True}, 0)
            assert str(ADMIN_ROLE) in world.members[(GUILD, ALICE)]["roles"]
            await m.expect("memberAdmin", {"target": CHANNEL, "memberId": UNKNOWN, "assign": True}, 5)
            await m.expect("mute", {"target": CHANNEL, "memberId": ALICE, "time": 600}, 0)
            assert world.members[(GUILD, ALICE)]["communication_disabled_until"]
            await m.expect("unmute", {"target": CHANNEL, "memberId": ALICE}, 0)
            assert world.members[(GUILD, ALICE)]["communication_disabled_until"] is None
            discord.forbid("PATCH /guilds/{guild_id}/members/{user_id}", GUILD)
            await m.expect("mute", {"target": CHANNEL, "memberId": ALICE, "time": 600}, 10)
            await m.expect("unmute", {"target": CHANNEL, "memberId": ALICE}, 10)
            discord.allow("PATCH /guilds/{guild_id}/members/{user_id}", GUILD)

            # --- the group
            await m.expect("groupConfig", {"target": CHANNEL}, 0, sub="get", bare=True)
            await m.expect("groupConfig", {"target": UNKNOWN}, 5, sub="get")
            await m.expect("groupConfig", {"target": CHANNEL, "config": {"name": "renamed"}}, 0, sub="update")
            assert world.channels[CHANNEL]["name"] == "renamed"
            await m.expect("groupConfig", {"target": UNKNOWN, "config": {"name": "x"}}, 5, sub="update")
            # issue 15: what maps is applied, "no change" is ignored, a change Discord cannot make is refused
            await m.expect(
                "groupConfig",
                {"target": CHANNEL, "config": {"allowMemberInvite": True, "confessTalk": False}},
                0,
                sub="update",
            )
            await m.expect("groupConfig", {"target": CHANNEL, "config": {"anonymousChat": True}}, 6, sub="update")
            await m.expect("muteAll", {"target": CHANNEL}, 0)
            await m.expect("muteAll", {"target": UNKNOWN}, 5)
            await m.expect("unmuteAll", {"target": CHANNEL}, 0)
            await m.expect("unmuteAll", {"target": UNKNOWN}, 5)
            published = await m.expect("anno_publish", {"target": CHANNEL, "content": "notice"}, 0)
            await m.expect("anno_publish", {"target": UNKNOWN, "content": "notice"}, 5)
            listed = await m.expect("anno_list", {"id": CHANNEL}, 0)
            assert [a["content"] for a in listed["data"]][-1] == "notice"
            await m.expect("anno_list", {"id": UNKNOWN}, 5)
            await m.expect("anno_delete", {"id": CHANNEL, "fid": published["data"]["fid"]}, 0)
            await m.expect("anno_delete", {"id": CHANNEL, "fid": "123"}, 5)

            # --- leaving
            await m.expect("kick", {"target": CHANNEL, "memberId": ALICE, "msg": "bye"}, 0)
            assert (GUILD, ALICE) not in world.members
            await m.expect("kick", {"target": CHANNEL, "memberId": UNKNOWN}, 5)
            await m.expect("quit", {"target": UNKNOWN}, 5)
            await m.expect("quit", {"target": OTHER_CHANNEL}, 0)

            # --- no Discord meaning, and unknown
            for command, content in UNSUPPORTED:
                await m.expect(command, content, 6)
            await m.expect("noSuchCommand", {}, 6)

            assert not m.problems, "\n".join(m.problems)
            documented = {
                "about",
                "botList",
                "sessionInfo",
                "messageFromId",
                "friendList",
                "groupList",
                "memberList",
                "latestMemberList",
                "botProfile",
                "friendProfile",
                "memberProfile",
                "userProfile",
                "sendFriendMessage",
                "sendGroupMessage",
                "sendTempMessage",
                "recall",
                "roamingMessages",
                "mute",
                "unmute",
                "kick",
                "quit",
                "muteAll",
                "unmuteAll",
                "setEssence",
                "groupConfig.get",
                "groupConfig.update",
                "memberInfo.get",
                "memberInfo.update",
                "memberAdmin",
                "anno_list",
                "anno_publish",
                "anno_delete",
            } | {c for c, _ in UNSUPPORTED}
            assert documented <= m.seen, f"not exercised: {sorted(documented - m.seen)}"


def _seed_admin_role(discord: Emulator) -> None:
    discord.world.add_role(GUILD, ADMIN_ROLE, "Admins")
