"""Readiness of a shard: every guild READY listed has arrived or was given up as unavailable (issue 18; pure)."""

from __future__ import annotations

import math
from typing import Any

from adapters.discord.gateway.events import ResumeState, ShardGuildsLoaded, ShardReady
from adapters.discord.gateway.session import GUILD_LOAD_TIMEOUT, ShardSession
from tests.unit.test_gateway_protocol import RESUME, connected, dispatch, frames, hello, make_session


def loaded(events: list[Any]) -> list[ShardGuildsLoaded]:
    return [e for e in events if isinstance(e, ShardGuildsLoaded)]


def test_loaded_once_every_guild_of_ready_arrived_in_any_order() -> None:
    gw = connected()  # READY listed guilds 5 and 6
    assert not gw.guilds_loaded
    assert gw.guilds_deadline() == GUILD_LOAD_TIMEOUT
    assert loaded(gw.receive(dispatch("GUILD_CREATE", 2, {"id": "6"}), now=0.5)) == []
    assert gw.guilds_deadline() == 0.5 + GUILD_LOAD_TIMEOUT  # every arrival restarts the wait
    assert loaded(gw.receive(dispatch("GUILD_CREATE", 3, {"id": "77"}), now=0.6)) == []  # joined since: not READY's
    events = gw.receive(dispatch("GUILD_CREATE", 4, {"id": "5"}), now=0.7)
    assert events[0].name == "GUILD_CREATE"  # type: ignore[union-attr]  # the dispatch goes first
    assert loaded(events) == [ShardGuildsLoaded(shard_id=0, guilds=2, unavailable=0)]
    assert gw.guilds_loaded and gw.guilds_deadline() == math.inf
    assert loaded(gw.receive(dispatch("GUILD_CREATE", 5, {"id": "5"}), now=0.8)) == []  # once per READY


def test_an_outage_counts_a_guild_as_unavailable() -> None:
    gw = connected()
    gw.receive(dispatch("GUILD_CREATE", 2, {"id": "5", "unavailable": True}), now=0.1)
    events = gw.receive(dispatch("GUILD_DELETE", 3, {"id": "6", "unavailable": True}), now=0.2)
    assert loaded(events) == [ShardGuildsLoaded(shard_id=0, guilds=2, unavailable=2)]


def test_guilds_that_never_come_are_given_up_after_the_timeout() -> None:
    gw = connected()
    gw.receive(dispatch("GUILD_CREATE", 2, {"id": "5"}), now=1.0)
    assert gw.expire_guilds(now=1.0 + GUILD_LOAD_TIMEOUT - 0.01) == []
    assert gw.expire_guilds(now=1.0 + GUILD_LOAD_TIMEOUT) == [ShardGuildsLoaded(shard_id=0, guilds=2, unavailable=1)]
    assert gw.guilds_loaded
    assert gw.expire_guilds(now=100.0) == []


def test_a_ready_without_guilds_is_loaded_at_once_and_a_new_ready_loads_afresh() -> None:
    gw = make_session()
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    gw.identify_now(now=0.0)
    frames(gw, 0.0)
    ready = {"user": {"id": "99"}, "guilds": [], "session_id": "s", "resume_gateway_url": RESUME}
    events = gw.receive(dispatch("READY", 1, ready), now=0.0)
    assert [type(e) for e in events][1:] == [ShardReady, ShardGuildsLoaded]
    assert gw.guilds_loaded
    gw.connection_lost(4009, now=1.0)  # session timed out: a new identify and READY follow
    gw.connection_opened(now=2.0)
    gw.receive(hello(), now=2.0)
    gw.identify_now(now=2.0)
    frames(gw, 2.0)
    gw.receive(dispatch("READY", 1, {**ready, "guilds": [{"id": "8", "unavailable": True}]}), now=2.0)
    assert not gw.guilds_loaded


def test_a_resume_keeps_waiting_for_the_guilds_it_replays() -> None:
    gw = connected()
    gw.receive(dispatch("GUILD_CREATE", 2, {"id": "5"}), now=0.1)
    gw.connection_lost(None, now=0.2)
    assert gw.guilds_deadline() == math.inf  # not connected: no timeout runs
    gw.connection_opened(now=1.0)
    gw.receive(hello(), now=1.0)
    frames(gw, 1.0)
    assert loaded(gw.receive(dispatch("GUILD_CREATE", 3, {"id": "6"}), now=1.1)) != []  # replayed before RESUMED
    assert gw.guilds_loaded


def test_resuming_a_saved_session_is_loaded_at_resumed() -> None:
    gw: ShardSession = make_session(initial_session=ResumeState(session_id="old", seq=41, resume_url=RESUME))
    gw.connection_opened(now=0.0)
    gw.receive(hello(), now=0.0)
    frames(gw, 0.0)
    assert not gw.guilds_loaded
    events = gw.receive(dispatch("RESUMED", 42), now=0.5)
    assert loaded(events) == [ShardGuildsLoaded(shard_id=0, guilds=0, unavailable=0)]
