"""Whole-guild member requests (op 8) and their chunks: the pure bookkeeping (issue 18)."""

from __future__ import annotations

from typing import Any

from adapters.discord.cache import DiscordCache
from adapters.discord.member_requests import REQUEST_STALE_AFTER, WHOLE_GUILD_INTERVAL, MemberRequests

GUILD = 100


def setup(**bounds: int) -> tuple[DiscordCache, MemberRequests, list[tuple[int, bool]]]:
    cache = DiscordCache(**bounds)
    cache.on_ready({"user": {"id": "1", "username": "bot"}, "guilds": []})
    cache.upsert_guild({"id": str(GUILD), "member_count": 5, "large": True})
    requests = MemberRequests(cache)
    done: list[tuple[int, bool]] = []
    requests.on_done = lambda guild_id, complete: done.append((guild_id, complete))
    return cache, requests, done


def chunk(nonce: str, index: int, count: int, users: range) -> dict[str, Any]:
    members = [{"user": {"id": str(u), "username": f"u{u}"}, "roles": []} for u in users]
    return {"guild_id": str(GUILD), "members": members, "chunk_index": index, "chunk_count": count, "nonce": nonce}


def test_a_request_is_complete_when_every_chunk_came_in_any_order() -> None:
    cache, requests, done = setup()
    payload = requests.start(GUILD, now=0.0)
    assert payload["op"] == 8
    assert payload["d"] == {"guild_id": "100", "query": "", "limit": 0, "presences": False, "nonce": "members-1"}
    for index, users in ((1, range(13, 15)), (0, range(10, 13))):
        data = chunk("members-1", index, 2, users)
        cache.load_members(GUILD, data["members"])
        requests.on_chunk(data, now=1.0)
    assert done == [(GUILD, True)]
    assert cache.guilds[GUILD].members_complete
    assert not requests.in_flight(GUILD, now=2.0)


def test_chunks_of_another_request_or_an_eviction_meanwhile() -> None:
    cache, requests, done = setup(max_members_per_guild=2, max_members_total=10)
    requests.start(GUILD, now=0.0)
    requests.on_chunk(chunk("not-ours", 0, 1, range(10, 13)), now=0.5)
    assert done == []
    data = chunk("members-1", 0, 1, range(10, 13))
    cache.load_members(GUILD, data["members"])  # three members, two fit: one is evicted
    requests.on_chunk(data, now=1.0)
    assert done == [(GUILD, False)] and not cache.guilds[GUILD].members_complete


def test_discord_allows_one_whole_guild_request_per_30_s_and_refusals_end_it() -> None:
    _, requests, done = setup()
    requests.start(GUILD, now=0.0)
    assert not requests.may_request(GUILD, now=1.0)  # in flight
    requests.on_rate_limited({"opcode": 8, "retry_after": 12.5, "meta": {"guild_id": str(GUILD), "nonce": "members-1"}})
    assert done == [(GUILD, False)]
    assert not requests.may_request(GUILD, now=WHOLE_GUILD_INTERVAL - 1)
    assert requests.may_request(GUILD, now=WHOLE_GUILD_INTERVAL)
    requests.start(GUILD, now=100.0)
    requests.cancel(GUILD)  # could not be sent: forgotten, and may be asked again at once
    assert requests.may_request(GUILD, now=100.0)


def test_a_request_whose_chunks_stopped_coming_is_given_up() -> None:
    _, requests, done = setup()
    requests.start(GUILD, now=0.0)
    assert requests.in_flight(GUILD, now=REQUEST_STALE_AFTER - 1)
    assert not requests.in_flight(GUILD, now=REQUEST_STALE_AFTER)
    assert done == [(GUILD, False)]
