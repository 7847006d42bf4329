"""The embedded Discord put together: one world, its REST API and its gateway, with the control API tests use.

:class:`Emulator` composes the pure parts (:mod:`.world` + :mod:`.actions` persisted by :mod:`.db`,
:mod:`.rest` over :mod:`.endpoints` and :mod:`.ratelimits`, :mod:`.gateway`) and is their trio side: it reads
the clocks, answers HTTP requests in the contract's handler shape (:meth:`Emulator.handle_http`: sleeping for an
injected slow answer; for a dropped one raising :class:`relay.web.models.DropConnection`, which relay.web
closes unanswered) and wraps the gateway's control calls as awaitables for the project's tests.

Clocks: the gateway and the rate limits run on ``trio.current_time()``; the world's wall clock is
``epoch + trio.current_time()`` when ``epoch`` is given (virtual-time tests: ids and timestamps look real and
advance with the autojump clock), else the real clock (the sandbox, a bridge process running on wall time).

Control API (what the project's tests use): ``world`` (``add_guild/add_channel/add_member/add_user/add_role/
add_message/add_dm_channel/add_file`` and the live ``users/guilds/channels/members/messages/pins/bans/
dm_channels``, ``application_flags``, ``deviations``), ``actions`` (what members and moderators do, with
events), ``inject``, ``forbid``, ``allow``, ``close_dms``, ``set_bucket``, ``global_limit``, ``requests``,
``requests_to``, ``limit_violations``, ``gateway`` (knobs and records: ``identifies``, ``resumes``,
``heartbeats``, ``sends``, ``member_requests``, ``connections``, ``client_closes``, ``server_closes``,
``invalid_sessions``, ``ack_heartbeats``, ``allowed_intents``, ``hold_ready``, ``unavailable_guilds``,
``refuse_resume``, ``close_on_identify``, …), ``dispatch``, ``dispatch_many``, ``send_reconnect``,
``invalidate_session``, ``close_with``, ``drop_connection``, ``send_raw``, ``release_ready``,
``guild_available``, ``wait_until``, ``live_shards``, ``frames_sent``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from relay.sandbox.emulator import intents as it
from relay.sandbox.emulator.actions import Actions
from relay.sandbox.emulator.db import StateFile
from relay.sandbox.emulator.defaults import seed_default_world
from relay.sandbox.emulator.endpoints import Endpoints
from relay.sandbox.emulator.gateway import Gateway
from relay.sandbox.emulator.ratelimits import RateLimits
from relay.sandbox.emulator.rest import Failure, RecordedRequest, RestApi
from relay.sandbox.emulator.world import DEFAULT_BOT_ID, JSON, World
from relay.web.models import DropConnection, Request, Response

#: the token the sandbox's bridge logs in with (nothing secret: the emulator is loopback-only)
DEFAULT_TOKEN = "sandbox-token"


def _monotonic() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # seeding before trio runs
        return 0.0


class Emulator:
    """See the module docstring. ``state_path``: the SQLite file of the world (``":memory:"``: none);
    ``seed_default``: an empty world starts as :mod:`.defaults` (one guild, channels, members, roles);
    ``keep_requests``: bound the request log (None: keep every request, as tests want); ``application_id`` and
    ``application_flags``: the application (``GET /applications/@me``); the gateway refuses privileged intents
    its flags do not enable (4014)."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        state_path: str = ":memory:",
        seed_default: bool = False,
        bot_user_id: int = DEFAULT_BOT_ID,
        bot_username: str = "relay-bot",
        epoch: float | None = None,
        global_limit: int | None = 50,
        default_limit: int = 50,
        default_per: float = 1.0,
        keep_requests: int | None = None,
        application_id: int | None = None,
        application_flags: int = it.ALL_PRIVILEGED_INTENT_FLAGS,
    ) -> None:
        self.token = token
        self.epoch = epoch
        self.port = 0
        self._host = "127.0.0.1"
        self.state = StateFile.open(state_path)
        self.world = World(
            self.state,
            clock=self.wall_time,
            bot_user_id=bot_user_id,
            bot_username=bot_username,
            application_id=application_id,
            application_flags=application_flags,
        )
        if seed_default and not self.world.guilds:
            seed_default_world(self.world)
        self.actions = Actions(self.world)
        self.gateway = Gateway(
            token=token,
            bot_user=self.world.bot_user,
            guilds_for_shard=self._guilds_for_shard,
            members_of_guild=self.world.listed_members,
            on_change=self._notify,
            application={"id": str(self.world.application_id), "flags": application_flags},
            allowed_intents=it.enabled_by(application_flags),
        )
        self.limits = RateLimits(
            global_limit=global_limit,
            default_limit=default_limit,
            default_per=default_per,
            wall_offset=epoch if epoch is not None else time.time() - _monotonic(),
        )
        self.rest = RestApi(
            self.world,
            Endpoints(self.world, self.actions, self.gateway),
            self.limits,
            token=token,
            keep_requests=keep_requests,
        )
        #: called with each HTTP request answered (or dropped: None) as it is decided, before an injected delay
        self.request_listeners: list[Callable[[RecordedRequest, Response | None], None]] = []
        self.world.listeners.append(self.gateway.publish)
        self._changed = trio.Event()

    def close(self) -> None:
        """Close the state file (the world is written through: nothing is lost)."""
        self.state.close()

    # ------------------------------------------------------------------ clocks and addresses

    def wall_time(self) -> float:
        """The emulated Discord's "now" in epoch seconds (see the module docstring)."""
        if self.epoch is None:
            return time.time()
        return self.epoch + _monotonic()

    def bound(self, port: int, host: str = "127.0.0.1") -> None:
        """The I/O shell listens on ``host``:``port``: addresses follow, the gateway's budget window starts."""
        self.port = port
        self._host = f"[{host}]" if ":" in host else host
        self.world.set_origin(self.origin)
        self.gateway.url = f"ws://{self._host}:{port}"
        now = _monotonic()
        if self.epoch is None:
            self.limits.wall_offset = time.time() - now
        self.gateway.start(now)

    @property
    def origin(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Use as ``DiscordConfig.api_base_url``."""
        return f"{self.origin}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Use as ``DiscordConfig.gateway_url`` (``GET /gateway/bot`` gives the same)."""
        return self.gateway.url

    def _guilds_for_shard(self, shard_id: int, shard_count: int, large_threshold: int) -> list[JSON]:
        return [
            self.world.guild_create(g, large_threshold)
            for g in self.world.bot_guilds()
            if (g >> 22) % shard_count == shard_id
        ]

    # ------------------------------------------------------------------ HTTP

    async def handle_http(self, request: Request) -> Response:
        """The REST API and the uploaded files, as a ``relay.web`` handler."""
        outcome = self.rest.answer(request, trio.current_time())
        for listener in list(self.request_listeners):
            listener(self.rest.requests[-1], outcome.response)
        if outcome.delay:
            await trio.sleep(outcome.delay)
        if outcome.response is None:
            raise DropConnection("an injected Drop")
        return outcome.response

    # ------------------------------------------------------------------ REST knobs

    def inject(self, route: str, *failures: Failure) -> None:
        self.rest.inject(route, *failures)

    def forbid(self, route: str, major: int | None = None) -> None:
        self.rest.forbid(route, major)

    def allow(self, route: str, major: int | None = None) -> None:
        self.rest.allow(route, major)

    def close_dms(self, user_id: int) -> None:
        self.world.close_dms(user_id)

    def set_bucket(self, route: str, *, limit: int, per: float, bucket_hash: str | None = None) -> None:
        self.rest.check_route(route)
        self.limits.set_bucket(route, limit=limit, per=per, bucket_hash=bucket_hash)

    @property
    def global_limit(self) -> int | None:
        return self.limits.global_limit

    @global_limit.setter
    def global_limit(self, value: int | None) -> None:
        self.limits.global_limit = value

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.rest.requests

    def requests_to(self, route: str) -> list[RecordedRequest]:
        return self.rest.requests_to(route)

    @property
    def limit_violations(self) -> int:
        return self.limits.limit_violations

    # ------------------------------------------------------------------ gateway knobs

    async def dispatch(self, name: str, data: Mapping[str, Any], *, shard_id: int = 0) -> int | None:
        """Sequence and send one raw dispatch (buffered for resume). Its seq (None: no session yet)."""
        seq = self.gateway.dispatch(name, data, shard_id=shard_id)
        await trio.lowlevel.checkpoint()
        return seq

    async def dispatch_many(self, name: str, datas: Iterable[Mapping[str, Any]], *, shard_id: int = 0) -> list[int]:
        seqs = self.gateway.dispatch_many(name, datas, shard_id=shard_id)
        await trio.lowlevel.checkpoint()
        return seqs

    async def send_reconnect(self, *, shard_id: int = 0) -> None:
        self.gateway.send_reconnect(shard_id=shard_id)
        await trio.lowlevel.checkpoint()

    async def invalidate_session(self, resumable: bool, *, shard_id: int = 0) -> None:
        self.gateway.invalidate_session(resumable, trio.current_time(), shard_id=shard_id)
        await trio.lowlevel.checkpoint()

    async def close_with(self, code: int, *, shard_id: int = 0, reason: str = "") -> None:
        self.gateway.close_with(code, trio.current_time(), shard_id=shard_id, reason=reason)
        await trio.lowlevel.checkpoint()

    async def release_ready(self) -> None:
        """End ``gateway.hold_ready``: the clients identified meanwhile get their READY."""
        self.gateway.release_ready()
        await trio.lowlevel.checkpoint()

    async def guild_available(self, guild_id: int) -> None:
        """A guild of ``gateway.unavailable_guilds`` is back: its GUILD_CREATE goes out."""
        self.gateway.guild_available(self.world.guild_create(guild_id))
        await trio.lowlevel.checkpoint()

    async def drop_connection(self, *, shard_id: int = 0) -> None:
        self.gateway.drop_connection(shard_id=shard_id)
        await trio.lowlevel.checkpoint()

    async def send_raw(self, message: str | bytes, *, shard_id: int = 0) -> None:
        self.gateway.send_raw(message, shard_id=shard_id)
        await trio.lowlevel.checkpoint()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever the gateway records something."""
        while not predicate():
            await self._changed.wait()

    def live_shards(self) -> set[int]:
        return self.gateway.live_shards()

    def frames_sent(self) -> int:
        return self.gateway.frames_sent()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
