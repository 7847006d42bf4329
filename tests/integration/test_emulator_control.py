"""The emulator's trio side without sockets: the HTTP handler's late and dropped answers, the awaitable gateway
controls and ``wait_until``, on the virtual clock."""

from __future__ import annotations

import json

import pytest
import trio

from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH
from relay.sandbox.emulator.rest import Drop, Slow
from relay.web.models import DropConnection, Request

TOKEN = "control-token"
GUILD = 600_000_000_000_000_001
OWNER = 600_000_000_000_000_101
CHANNEL = 600_000_000_000_000_201
SEND = "POST /channels/{channel_id}/messages"


def send_request(content: str) -> Request:
    path = f"/api/v10/channels/{CHANNEL}/messages"
    return Request(
        method="POST",
        target=path,
        path=path,
        query=(),
        headers=(("authorization", f"Bot {TOKEN}"), ("content-type", "application/json")),
        body=json.dumps({"content": content}).encode(),
    )


def make() -> Emulator:
    em = Emulator(token=TOKEN, epoch=FAKE_EPOCH)
    em.world.add_guild(GUILD, "Guild", owner_id=OWNER)
    em.world.add_channel(CHANNEL, "general", guild_id=GUILD)
    em.bound(1)
    return em


async def test_slow_answers_late_and_drop_raises(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    em.inject(SEND, Slow(delay=30.0), Drop(after_handling=True))
    start = trio.current_time()
    response = await em.handle_http(send_request("late"))
    assert response.status == 200 and trio.current_time() - start == pytest.approx(30.0)
    with pytest.raises(DropConnection):
        await em.handle_http(send_request("dropped"))
    assert [m["content"] for m in em.world.messages[CHANNEL].values()] == ["late", "dropped"]
    # the world's clock follows the virtual one: the second message is 30 s younger
    first, second = em.world.messages[CHANNEL].values()
    assert first["timestamp"] < second["timestamp"]


async def test_wait_until_wakes_on_gateway_records(autojump_clock: trio.abc.Clock) -> None:
    em = make()
    async with trio.open_nursery() as nursery:
        woke = trio.Event()

        async def waiter() -> None:
            await em.wait_until(lambda: len(em.gateway.identifies) == 1)
            woke.set()

        nursery.start_soon(waiter)
        await trio.sleep(1)
        assert not woke.is_set()
        conn = em.gateway.connect("/", {"v": "10", "encoding": "json"}, trio.current_time())
        em.gateway.receive(conn, json.dumps({"op": 2, "d": {"token": TOKEN, "intents": 513}}), trio.current_time())
        await woke.wait()
    assert em.live_shards() == {0}
    assert await em.dispatch("MESSAGE_CREATE", {"content": "x"}) == 3  # READY 1, GUILD_CREATE 2
    await em.send_reconnect()
    await em.invalidate_session(False)
    await em.close_with(4000)
    assert em.gateway.server_closes[-1][1] == 4000 and em.gateway.session_of(0) is None
