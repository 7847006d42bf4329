"""The emulated gateway's answer to Request Guild Members (op 8): GUILD_MEMBERS_CHUNK payloads, and the
RATE_LIMITED dispatch of a whole-guild request made too soon (docs/discord.md §3, §6.4). Pure.

A request names members by ``user_ids`` (``not_found`` lists the unknown ones), or by a ``query`` prefix of the
user name or nickname up to ``limit`` (0: no limit); ``query ""`` with ``limit 0`` asks for the whole guild,
which Discord answers at most once per guild per 30 s. Members are as lists show them: an entry without its
``user`` (a deviant server, :class:`~.world.Deviations`) is in a whole-guild answer and matches no query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

JSON = dict[str, Any]

#: members per GUILD_MEMBERS_CHUNK (docs/discord.md §6.4)
CHUNK_SIZE: Final = 1000
#: whole-guild requests: one per guild per this many seconds (docs/discord.md §3)
WHOLE_GUILD_INTERVAL: Final = 30.0


def is_whole_guild(d: JSON) -> bool:
    """Whether op 8's ``d`` asks for every member (``query ""``, ``limit 0``, no ``user_ids``)."""
    return d.get("user_ids") is None and not d.get("query") and not d.get("limit")


def rate_limited(d: JSON, guild_id: int, retry_after: float) -> JSON:
    """RATE_LIMITED's ``d`` for an op 8 made ``retry_after`` seconds too soon."""
    return {"opcode": 8, "retry_after": retry_after, "meta": {"guild_id": str(guild_id), "nonce": d.get("nonce")}}


def _user_id(member: JSON) -> str | None:
    user = member.get("user")
    return str(user["id"]) if isinstance(user, dict) else None


def answer(members: Sequence[JSON], d: JSON, guild_id: int, chunk_size: int = CHUNK_SIZE) -> list[JSON]:
    """The GUILD_MEMBERS_CHUNK ``d`` payloads answering op 8 ``d`` for a guild with ``members``."""
    not_found: list[str] = []
    user_ids = d.get("user_ids")
    if user_ids is not None:
        wanted = [str(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])]
        by_id = {_user_id(m): m for m in members if _user_id(m) is not None}
        found = [by_id[u] for u in wanted if u in by_id]
        not_found = [u for u in wanted if u not in by_id]
    elif is_whole_guild(d):
        found = list(members)
    else:
        query = str(d.get("query") or "").lower()
        found = [
            m
            for m in members
            if isinstance(m.get("user"), dict)
            and (
                str(m["user"]["username"]).lower().startswith(query)
                or str(m.get("nick") or "").lower().startswith(query)
            )
        ]
        limit = d.get("limit") or 0
        if isinstance(limit, int) and limit > 0:
            found = found[:limit]
    chunks = [found[i : i + chunk_size] for i in range(0, len(found), chunk_size)] or [[]]
    datas = []
    for index, chunk in enumerate(chunks):
        data: JSON = {"guild_id": str(guild_id), "members": chunk, "chunk_index": index, "chunk_count": len(chunks)}
        if not_found and index == 0:
            data["not_found"] = not_found
        if d.get("nonce") is not None:
            data["nonce"] = d["nonce"]
        datas.append(data)
    return datas
