"""Test harness for the bridge's listening mirai adapters (ws, http, uploads) on 127.0.0.1.

Everything of ours runs for real — the session registry, the outbox (a SQLite file in tmp_path), the cursors,
the upload store, the command handler and the listeners — in front of :class:`FakeService`, a scriptable stand-in
for the relay's CommandService (what the Discord side would do). Clients are independent implementations:
trio-websocket for websockets, httpx for HTTP.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
import trio_websocket

from adapters.mirai import codec
from adapters.mirai.cursors import DynamicCursors
from adapters.mirai.handlers import MiraiCommandHandler
from adapters.mirai.http_server import HttpAdapter
from adapters.mirai.sessions import SessionRegistry
from adapters.mirai.upload_routes import UploadRoutes
from adapters.mirai.uploads import UploadStore
from adapters.mirai.ws_server import WsAdapter
from relay import envelope as env
from relay.config import HttpServerConfig, MiraiConfig, OutboxConfig, WsServerConfig
from relay.errors import CommandFailed
from relay.listeners import serve_listeners
from relay.storage.flushers import serve_outbox_flusher
from relay.storage.outbox import Outbox

BOT = 1_234_567
GROUP = 555
KEY = "servers-verify-key"
GUARD = 20  # seconds: a failure guard only, never a measurement

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GROUP_MODEL = env.Group(id=GROUP, name="general", bot_role=env.Role.ADMINISTRATOR)


@attrs.frozen
class Identity:
    bot_id: int = BOT
    bot_name: str = "relay-bot"


class FakeService:
    """Answers envelope commands like a tiny Discord; ``fail`` maps a command type to the failure it raises."""

    def __init__(self) -> None:
        self.commands: list[env.Command] = []
        self.fail: dict[type, CommandFailed] = {}
        self.next_id = 100

    async def execute(self, command: env.Command) -> env.Result:
        self.commands.append(command)
        await trio.lowlevel.checkpoint()
        failure = self.fail.get(type(command))
        if failure is not None:
            raise failure
        if isinstance(command, env.SendMessage):
            self.next_id += 1
            ref = env.MessageRef(
                conversation=command.conversation, local_id=self.next_id, platform_id=9_000 + self.next_id
            )
            return env.MessageSent(ref=ref, time=1_700_000_000)
        if isinstance(command, env.ListGroups):
            return env.GroupList(groups=(GROUP_MODEL,))
        if isinstance(command, env.ListMembers):
            member = env.Member(user_id=42, display_name="alice", role=env.Role.MEMBER, group=GROUP_MODEL)
            return env.MemberList(members=(member,))
        return env.Done()

    def sent(self) -> list[env.SendMessage]:
        return [c for c in self.commands if isinstance(c, env.SendMessage)]


def event_frame(n: int, kind: str = "GroupMessage") -> str:
    data: dict[str, object] = {"type": kind, "n": n}
    if kind.endswith("Message"):
        data["messageChain"] = [{"type": "Source", "id": n, "time": 1}, {"type": "Plain", "text": f"event {n}"}]
    return codec.encode_event("-1", data)


@attrs.define(eq=False)
class Servers:
    """The running adapters and what a test needs to drive them."""

    outbox: Outbox
    sessions: SessionRegistry
    service: FakeService
    uploads: UploadStore
    cursors: DynamicCursors
    ws: WsAdapter
    http: HttpAdapter
    ws_port: int
    http_port: int
    config: MiraiConfig

    def ws_url(self, path: str = "/all", **query: object) -> str:
        text = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{self.ws_port}{path}" + (f"?{text}" if text else "")

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def publish(self, *frames: str) -> None:
        for frame in frames:
            self.outbox.append(frame)

    async def session(self, client: httpx.AsyncClient) -> str:
        """A bound http session (verify + bind)."""
        verified = (await client.post(f"{self.http_base}/verify", json={"verifyKey": KEY})).json()
        key = str(verified["session"])
        bound = (await client.post(f"{self.http_base}/bind", json={"sessionKey": key, "qq": BOT})).json()
        assert bound == {"code": 0, "msg": "success"}, bound
        return key


@asynccontextmanager
async def mirai_servers(
    tmp_path: Path,
    *,
    single_mode: bool = False,
    enable_verify: bool = True,
    shared_port: bool = True,
    unread_queue_max_size: int = 100,
    cors: tuple[str, ...] = ("*",),
    max_frame_bytes: int = 1 << 20,
    max_upload_bytes: int = 1 << 20,
    total_upload_bytes: int = 8 << 20,
    outbox_config: OutboxConfig | None = None,
    service: FakeService | None = None,
) -> AsyncIterator[Servers]:
    """Run the ws and http adapters (on one ephemeral port, or two) until the block ends."""
    http_port = 0
    if not shared_port:
        with trio.socket.socket() as probe:
            await probe.bind(("127.0.0.1", 0))
            http_port = probe.getsockname()[1]
    config = MiraiConfig(
        verify_key=KEY,
        enable_verify=enable_verify,
        single_mode=single_mode,
        max_frame_bytes=max_frame_bytes,
        adapters=("ws", "http"),
        ws=WsServerConfig(host="127.0.0.1", port=0),
        http=HttpServerConfig(host="127.0.0.1", port=http_port, cors=cors, unread_queue_max_size=unread_queue_max_size),
    )
    service = service or FakeService()
    rng = random.Random(5)
    with Outbox(str(tmp_path / "bridge.sqlite3"), outbox_config or OutboxConfig()) as outbox:
        sessions = SessionRegistry(verify_key=KEY, enable_verify=enable_verify, single_mode=single_mode, rng=rng)
        uploads = UploadStore(
            tmp_path / "bridge.sqlite3.uploads",
            max_bytes=max_upload_bytes,
            total_bytes=total_upload_bytes,
            retention_seconds=3600,
            rng=random.Random(6),
            now=1_700_000_000.0,
        )
        handler = MiraiCommandHandler(service, Identity(), uploads=uploads)
        cursors = DynamicCursors(outbox, max_idle=3600)
        routes = UploadRoutes(sessions=sessions, store=uploads, handler=handler, bot_id=lambda: BOT).routes()
        common: dict[str, Any] = {
            "config": config,
            "sessions": sessions,
            "handler": handler,
            "outbox": outbox,
            "cursors": cursors,
            "bot_id": lambda: BOT,
            "extra_routes": routes,
        }
        ws = WsAdapter(rng=rng, **common)
        http = HttpAdapter(**common)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_outbox_flusher, outbox)
            ports = await nursery.start(functools.partial(serve_listeners, [ws.mount(), http.mount()]))
            yield Servers(
                outbox=outbox,
                sessions=sessions,
                service=service,
                uploads=uploads,
                cursors=cursors,
                ws=ws,
                http=http,
                ws_port=ports["mirai.ws"],
                http_port=ports["mirai.http"],
                config=config,
            )
            nursery.cancel_scope.cancel()


async def receive_json(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(GUARD):
        value = json.loads(await ws.get_message())
    assert isinstance(value, dict)
    return value


async def command(
    ws: trio_websocket.WebSocketConnection,
    sync_id: str | int,
    name: str,
    content: object = None,
    sub: str | None = None,
) -> dict[str, Any]:
    """Send a command frame and return the ``data`` of its response (events in between are skipped)."""
    await ws.send_message(json.dumps({"syncId": sync_id, "command": name, "subCommand": sub, "content": content}))
    while True:
        frame = await receive_json(ws)
        if frame.get("syncId") == str(sync_id):  # always answered as a string (docs/mirai-api-http.md §3.4)
            data = frame["data"]
            assert isinstance(data, dict)
            return data


async def closed_with(ws: trio_websocket.WebSocketConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with trio.fail_after(GUARD):
        try:
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed as closed:
            return closed.reason.code, closed.reason.reason or ""
