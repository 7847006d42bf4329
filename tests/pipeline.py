"""Both data paths of the bridge, wired exactly as ``relay.app`` wires them, without a socket (in the spirit of
h11's ``tests/helpers.py`` ``ConnectionPair``): a Discord dispatch goes in and the exact mirai frame text comes
out; a mirai command frame goes in and the exact Discord REST requests and the exact response frame come out.

The object graph is :func:`relay.app.compose_core` itself, so these tests cover the production wiring; only the
edges are replaced: the gateway socket (dispatches are fed to the translator as the shard's reader would) and the
network under the REST client (``httpx.MockTransport`` answering like Discord with :class:`ScriptedDiscord`). The
store and the outbox are real SQLite, in memory / in a temporary file.

Use::

    async with open_pipeline(tmp_path) as pipe:
        pipe.ready(guild_create)                          # READY + GUILD_CREATE, the cache learns the guild
        frames = pipe.dispatch("MESSAGE_CREATE", payload) # -> ['{"syncId":"-1","data":{"type":"GroupMessage",...}}']
        frames, requests = await pipe.command('{"syncId":"7","command":"sendGroupMessage",...}')
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx

from adapters.discord.rest.client import open_rest_client
from adapters.mirai import codec
from adapters.mirai.session import Execute, MiraiSession, SendFrame
from relay.app import Core, compose_core
from relay.config import BridgeConfig, DiscordConfig, MiraiConfig, OutboxConfig
from relay.storage.outbox import Outbox
from relay.storage.store import MessageStore

BOT_ID = 1_100_000_000_000_000_001
BOT_NAME = "relay-bot"
TOKEN = "pipeline-token"
VERIFY_KEY = "pipeline-verify-key"
#: the clock the pipeline hands the translator: a fixed instant, so frames are byte-for-byte repeatable
NOW = 1_717_243_200.0  # 2024-06-01T12:00:00Z

Responder = Callable[[httpx.Request], httpx.Response]


@attrs.define
class ScriptedDiscord:
    """The network under the REST client: records every request and answers like Discord.

    ``answers`` maps ``(method, path)`` (path without the ``/api/v10`` prefix, query excluded) to a responder;
    created messages get snowflakes counting up from ``next_id`` and echo the body's content, like Discord.
    """

    requests: list[httpx.Request] = attrs.Factory(list)
    answers: dict[tuple[str, str], Responder] = attrs.Factory(dict)
    next_id: itertools.count[int] = attrs.Factory(lambda: itertools.count(1_300_000_000_000_000_000))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v10")
        answer = self.answers.get((request.method, path))
        if answer is not None:
            return answer(request)
        if request.method == "POST" and path.startswith("/channels/") and path.endswith("/messages"):
            return self._message_created(request, channel_id=path.split("/")[2])
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.method == "GET" and path.startswith("/channels/") and path.count("/") == 2:
            # docs/discord.md §8.2: JSON error code 10003 "Unknown Channel"
            return httpx.Response(404, json={"message": "Unknown Channel", "code": 10003})
        return httpx.Response(404, json={"message": "Unknown route in the pipeline script", "code": 0})

    def _message_created(self, request: httpx.Request, *, channel_id: str) -> httpx.Response:
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        message = {
            "id": str(next(self.next_id)),
            "channel_id": channel_id,
            "type": 19 if body.get("message_reference") else 0,
            "content": body.get("content", ""),
            "author": {"id": str(BOT_ID), "username": BOT_NAME, "discriminator": "0", "bot": True},
            "timestamp": "2024-06-01T12:00:01.000000+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "nonce": body.get("nonce"),
        }
        return httpx.Response(200, json=message, headers={"content-type": "application/json"})


@attrs.define(eq=False)
class Pipeline:
    """One bridge core with its store and outbox; see the module docstring."""

    core: Core
    outbox: Outbox
    discord: ScriptedDiscord
    session: MiraiSession
    _delivered: int = 0

    def ready(self, *guilds: dict[str, Any]) -> list[str]:
        """READY for the bot, then one GUILD_CREATE per guild; returns the frames they produced."""
        user = {"id": str(BOT_ID), "username": BOT_NAME, "discriminator": "0", "bot": True}
        frames = self.dispatch(
            "READY",
            {
                "v": 10,
                "user": user,
                "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
                "session_id": "pipeline",
                "resume_gateway_url": "wss://gateway.example",
                "application": {"id": str(BOT_ID)},
            },
        )
        for guild in guilds:
            frames += self.dispatch("GUILD_CREATE", guild)
        return frames

    def dispatch(self, name: str, data: dict[str, Any]) -> list[str]:
        """Feed one gateway dispatch as the shard's reader does; the frames it appended to the outbox."""
        for event in self.core.translator.on_dispatch(name, data, NOW):
            self.core.bridge.publish_nowait(event)
        new = self.outbox.read_after(self._delivered, 10_000)
        if new:
            self._delivered = new[-1][0]
        return [frame for _, frame in new]

    async def verify(self) -> list[str]:
        """The framework's ``verify`` for this bot (after :meth:`ready`); the frames answered (success, BotOnline)."""
        frames, _ = await self.command(
            json.dumps(
                {
                    "syncId": "verify",
                    "command": "verify",
                    "content": {"verifyKey": VERIFY_KEY, "sessionKey": None, "qq": self.core.identity.bot_id},
                }
            )
        )
        return frames

    async def command(self, frame: str) -> tuple[list[str], list[httpx.Request]]:
        """One frame from a verified framework → the frames sent back to it, and the REST requests it caused."""
        before = len(self.discord.requests)
        out: list[str] = []
        for action in self.session.receive(frame, bot_id=self.core.identity.bot_id):
            if isinstance(action, SendFrame):
                out.append(action.text)
            elif isinstance(action, Execute):
                request = action.frame
                data = await self.core.handler.dispatch(request.command, request.sub_command, request.content)
                out.append(codec.encode_response(request.sync_id, data))
        return out, self.discord.requests[before:]


@asynccontextmanager
async def open_pipeline(tmp_path: Path, config: BridgeConfig | None = None) -> AsyncIterator[Pipeline]:
    """A pipeline on a fresh store. The framework side starts unverified: call :meth:`Pipeline.verify` after
    :meth:`Pipeline.ready`, as a framework would verify once the bot id is known."""
    config = config or BridgeConfig(
        discord=DiscordConfig(token=TOKEN, api_base_url="https://discord.example/api/v10"),
        mirai=MiraiConfig(verify_key=VERIFY_KEY),
    )
    path = str(tmp_path / "pipeline.sqlite3")
    store = MessageStore.open(path, batch_size=10**9)
    discord = ScriptedDiscord()
    try:
        with Outbox(path, OutboxConfig()) as outbox:
            outbox.register("framework")
            transport = httpx.MockTransport(discord)
            async with open_rest_client(config.discord, config.discord.token, http_transport=transport) as rest:
                core = compose_core(config, store=store, outbox=outbox, rest=rest)
                session = MiraiSession(
                    verify_key=VERIFY_KEY,
                    enable_verify=True,
                    single_mode=False,
                    reserved_sync_id=config.mirai.reserved_sync_id,
                    max_frame_bytes=config.mirai.max_frame_bytes,
                    rng=random.Random(0),
                )
                pipe = Pipeline(core=core, outbox=outbox, discord=discord, session=session)
                yield pipe
    finally:
        store.close()
