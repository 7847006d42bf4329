"""The store deleted under the running bridge (the real CLI in a subprocess, the emulated Discord and a fake framework
over loopback): it stops with one clear line naming the file, and the store that replaces it issues none of its ids."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from tests.emulated import say
from tests.integration.test_end_to_end_process import (
    ALICE,
    CHANNEL,
    bridge_process,
    discord_and_framework,
)


def message_ids(framework: object) -> list[int]:
    return [
        int(e.data["messageChain"][0]["id"])  # type: ignore[index]
        for e in framework.events  # type: ignore[attr-defined]
        if e.data.get("type") == "GroupMessage"
    ]


async def test_a_deleted_store_stops_the_bridge_and_no_id_is_issued_twice(tmp_path: Path) -> None:
    store = tmp_path / "bridge.sqlite3"
    with trio.fail_after(90):
        async with discord_and_framework(tmp_path) as (discord, framework, config):
            async with bridge_process(config, token=discord.token) as bridge:
                await (await framework.wait_connection()).wait_verified()
                await say(discord, CHANNEL, ALICE, "first")
                while not message_ids(framework):
                    await trio.sleep(0.05)
                for name in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
                    os.unlink(name)
                with trio.fail_after(15):  # a hang guard: the watch looks every second
                    code = await bridge.process.wait()
            assert code == 1, bridge.log
            errors = [line for line in bridge.log.splitlines() if " ERROR " in line]
            assert len(errors) == 1 and f"the store file {store}" in errors[0] and "was deleted" in errors[0], errors
            (first_id,) = message_ids(framework)

            async with bridge_process(config, token=discord.token) as bridge:  # a new store in its place
                await (await framework.wait_connection(1)).wait_verified()
                await say(discord, CHANNEL, ALICE, "second")
                while len(message_ids(framework)) < 2:
                    await trio.sleep(0.05)
                bridge.process.terminate()
    # the old store's id for this conversation is not issued again: the new store starts from the clock, which has
    # moved on (a restart takes far longer than the 0.1 s one id of the seed stands for)
    assert message_ids(framework)[1] > first_id
