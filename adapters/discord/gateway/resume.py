"""Resuming a gateway session across a restart of the bridge (docs/discord.md §2.7).

A clean shutdown saves each shard's :class:`~adapters.discord.gateway.events.ResumeState` next to the store;
the next start loads what is recent enough and, since a resume replays only the dispatches missed meanwhile
(not READY and the GUILD_CREATEs), first fetches through REST the cache state those would have given. When
any of it fails or is not worth it, the shards identify afresh as on a first start.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import attrs

from adapters.discord.cache import DiscordCache
from adapters.discord.gateway.events import DispatchReceived, GatewayEvent, ResumeState, ShardReady, ShardResumed
from adapters.discord.gateway.shard import Gateway
from adapters.discord.rest.client import RestClient
from relay.errors import RelayError, RemoteProtocolError

log = logging.getLogger(__name__)

#: a saved Discord session is only worth resuming for this long (Discord keeps it "a few minutes",
#: docs/discord.md §2.7); older ones would be refused with op 9 anyway
RESUME_WINDOW: Final = 120.0
#: resuming a saved session needs the state READY + GUILD_CREATE would have given, fetched through REST
#: (3 requests a guild); for more guilds than this a fresh identify is cheaper
HYDRATE_MAX_GUILDS: Final = 25


def session_file(store_path: str) -> Path:
    """Where the sessions of the bridge whose store is ``store_path`` are saved."""
    return Path(store_path + ".session.json")


def load_sessions(path: Path, *, now: float) -> dict[int, ResumeState]:
    """Sessions saved by a recent clean shutdown (none when missing, stale or unreadable)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the saved Discord session in %s: %s", path, exc)
        return {}
    if not isinstance(saved, dict) or not isinstance(saved.get("saved_at"), int | float):
        log.warning("ignoring the saved Discord session in %s: unexpected content", path)
        return {}
    age = now - float(saved["saved_at"])
    if not 0 <= age <= RESUME_WINDOW:
        log.info("saved Discord session is %.0f s old: identifying afresh", age)
        return {}
    sessions: dict[int, ResumeState] = {}
    for shard_id, state in dict(saved.get("sessions") or {}).items():
        try:
            sessions[int(shard_id)] = ResumeState.from_json(state)
        except (ValueError, RemoteProtocolError) as exc:
            log.warning("ignoring the saved session of shard %s: %s", shard_id, exc)
    return sessions


def save_sessions(path: Path, sessions: Mapping[int, ResumeState], *, now: float) -> None:
    """Persist resumable sessions (no secrets: a session id is useless without the token)."""
    body = {"saved_at": now, "sessions": {str(k): v.to_json() for k, v in sessions.items()}}
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(body), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not save the Discord session for a quick restart: %s", exc)


async def hydrate_cache(rest: RestClient, cache: DiscordCache) -> bool:
    """Rebuild the cache a resumed session will not get from READY/GUILD_CREATE (a resume replays only missed
    dispatches, docs/discord.md §2.7). Returns False when that is not worth it or fails: identify afresh then."""
    try:
        me = await rest.get_current_user()
        guilds = await rest.iter_current_user_guilds()
        if len(guilds) > HYDRATE_MAX_GUILDS:
            log.info("%d guilds: identifying afresh rather than fetching their state to resume", len(guilds))
            return False
        cache.set_bot_user(me)
        for partial in guilds:
            guild_id = int(partial["id"])
            guild = await rest.get_guild(guild_id)
            guild["channels"] = await rest.get_guild_channels(guild_id)
            guild["members"] = [await rest.get_guild_member(guild_id, int(me["id"]))]
            cache.upsert_guild(guild)
            cache.mark_guild_known(guild_id)
    except (RelayError, KeyError, TypeError, ValueError) as exc:
        log.warning("could not fetch the state needed to resume the saved session (%s): identifying afresh", exc)
        return False
    log.info("fetched the state of %d guild(s) to resume the saved Discord session", len(guilds))
    return True


@attrs.define
class GatewaySessions:
    """The flusher's gateway session snapshot (:data:`relay.storage.flush.SessionSnapshot`): each shard's resume
    state as JSON text, its seq the one up to which every dispatch has been handed over, frames and all.

    Once the gateway is up, ``gateway.sessions()`` (taken between two dispatches: the shard hands each dispatch
    over whole before it reads the next). Before that — while a resume replays what was missed, or a first READY
    arrives — what the shard's events said (:meth:`listen`), starting from ``resuming``, the sessions being
    resumed. At shutdown, ``final``: what the closed gateway left resumable.
    """

    resuming: dict[int, ResumeState] = attrs.field(factory=dict)
    gateway: Gateway | None = None
    final: Mapping[int, ResumeState] | None = None
    _seqs: dict[int, int] = attrs.field(factory=dict)

    def listen(self, inner: Callable[[GatewayEvent], None]) -> Callable[[GatewayEvent], None]:
        """``inner`` (the gateway listener), then a note of the shard's session (READY, RESUMED) or of the seq of
        the dispatch just handed over."""
        seqs, states = self._seqs, self.resuming

        def on_event(event: GatewayEvent) -> None:
            inner(event)
            if type(event) is DispatchReceived:
                if event.seq is not None:
                    seqs[event.shard_id] = event.seq
            elif isinstance(event, ShardReady | ShardResumed):
                states[event.shard_id] = event.session
                seqs.pop(event.shard_id, None)

        return on_event

    def __call__(self) -> dict[int, str] | None:
        if self.final is not None:
            states: Mapping[int, ResumeState] = self.final
        elif self.gateway is not None:
            states = self.gateway.sessions()
        else:
            seqs = self._seqs
            states = {
                shard: state if shard not in seqs else attrs.evolve(state, seq=seqs[shard])
                for shard, state in self.resuming.items()
            }
        return {shard: json.dumps(state.to_json()) for shard, state in states.items()}


def resumable_sessions(saved: Mapping[int, str], *, age: float) -> dict[int, ResumeState]:
    """The sessions the last flush of the previous run saved (each shard's :class:`GatewaySessions` text), if
    Discord still keeps them: written ``age`` seconds ago, within :data:`RESUME_WINDOW` (after a clean stop or a
    crash alike)."""
    if not saved:
        return {}
    if not 0 <= age <= RESUME_WINDOW:
        log.info("the saved Discord session is %.0f s old: identifying afresh", age)
        return {}
    sessions: dict[int, ResumeState] = {}
    for shard_id, text in saved.items():
        try:
            sessions[shard_id] = ResumeState.from_json(json.loads(text))
        except (ValueError, RemoteProtocolError) as exc:
            log.warning("ignoring the saved session of shard %s: %s", shard_id, exc)
    return sessions
