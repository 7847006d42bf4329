"""The world a new sandbox starts with: one guild, a few text channels, members and roles, a welcome message.

Ids are fixed, so a bridge configuration or a bot written against the sandbox keeps working across fresh
starts. ``erin`` exists but is not a member, so "make a member join" has someone to bring in.
"""

from __future__ import annotations

from typing import Final

from relay.sandbox.emulator.world import World

GUILD: Final = 1_200_000_000_000_000_001
GENERAL: Final = 1_200_000_000_000_000_101
RANDOM: Final = 1_200_000_000_000_000_102
BOT_COMMANDS: Final = 1_200_000_000_000_000_103
ADMINS: Final = 1_200_000_000_000_000_201
MODERATORS: Final = 1_200_000_000_000_000_202
RELAY_ROLE: Final = 1_200_000_000_000_000_203
ALICE: Final = 1_200_000_000_000_000_301
BOB: Final = 1_200_000_000_000_000_302
CAROL: Final = 1_200_000_000_000_000_303
DAVE: Final = 1_200_000_000_000_000_304
ERIN: Final = 1_200_000_000_000_000_305

# docs/discord.md §9.2 permission bits
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
VIEW_AUDIT_LOG = 1 << 7
MANAGE_MESSAGES = 1 << 13
MANAGE_NICKNAMES = 1 << 27
MANAGE_ROLES = 1 << 28
MODERATE_MEMBERS = 1 << 40
PIN_MESSAGES = 1 << 51

#: what the bridge needs to do everything it can (kick, ban, mute, recall, rename, pin, mute-all)
RELAY_PERMISSIONS: Final = (
    KICK_MEMBERS
    | BAN_MEMBERS
    | MANAGE_CHANNELS
    | VIEW_AUDIT_LOG
    | MANAGE_MESSAGES
    | MANAGE_NICKNAMES
    | MANAGE_ROLES
    | MODERATE_MEMBERS
    | PIN_MESSAGES
)
MODERATOR_PERMISSIONS: Final = KICK_MEMBERS | BAN_MEMBERS | MANAGE_MESSAGES | MANAGE_NICKNAMES | MODERATE_MEMBERS


def seed_default_world(world: World) -> None:
    """Fill an empty world with the default guild (one transaction)."""
    with world.state.transaction():
        world.add_user(ALICE, "alice", global_name="Alice")
        world.add_user(BOB, "bob", global_name="Bob")
        world.add_user(CAROL, "carol", global_name="Carol")
        world.add_user(DAVE, "dave")
        world.add_user(ERIN, "erin", global_name="Erin")
        world.add_guild(GUILD, "Sandbox", owner_id=ALICE)
        world.add_role(GUILD, ADMINS, "Admins", permissions=ADMINISTRATOR, position=3)
        world.add_role(GUILD, RELAY_ROLE, "Relay", permissions=RELAY_PERMISSIONS, position=2)
        world.add_role(GUILD, MODERATORS, "Moderators", permissions=MODERATOR_PERMISSIONS, position=1)
        world.add_channel(GENERAL, "general", guild_id=GUILD, topic="Say hello. The bridge sees everything here.")
        world.add_channel(RANDOM, "random", guild_id=GUILD)
        world.add_channel(BOT_COMMANDS, "bot-commands", guild_id=GUILD, topic="Try: echo hi")
        world.members[(GUILD, world.bot_user_id)]["roles"] = [str(RELAY_ROLE)]
        world.save_member(GUILD, world.bot_user_id)
        world.members[(GUILD, ALICE)]["roles"] = [str(ADMINS)]
        world.save_member(GUILD, ALICE)
        world.add_member(GUILD, BOB, roles=[MODERATORS])
        world.add_member(GUILD, CAROL, nick="Caz")
        world.add_member(GUILD, DAVE)
        world.add_message(
            GENERAL,
            "Welcome to the sandbox: an emulated Discord on your machine. Pick who you are and say something.",
            author_id=ALICE,
        )
