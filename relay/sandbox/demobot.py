"""The demo bot (trio shell): a tiny mirai bot framework built in, so that ``sandbox --demo-bot`` shows a full
round trip with no framework installed.

It plays a framework's **reverse-ws server** (docs/mirai-api-http.md §3): it listens on loopback with
:func:`relay.web.server.serve_http`, accepts the bridge's websocket upgrade on its path with
:class:`relay.wire.server.UpgradeRequest` (any other path: 404), and on each connection

1. authenticates like Graia Ariadne (§3.3): ``verify`` with its verify key and the bot's qq. With ``bot_qq=None``
   it first asks ``botList`` (answered before verify since mirai-api-http 2.7.0, §3.3) and binds to the bot
   listed there; when the list is empty it sends ``qq: null`` (real mirai-api-http answers that with 400; this
   bridge binds it to its one bot). A refusal is logged with what to check, and the connection is closed: the
   bridge dials again with backoff;
2. then reacts to pushed events as ``relay/sandbox/demobot_logic.py`` says (echo with a quote, member count,
   recall of a quoted message, help, a welcome), a few events at a time, each command with a fresh ``syncId``
   and its response matched by that id, so several commands may be in flight. A failed command (``code`` ≠ 0)
   is logged as a warning and, where it helps, answered in the chat.

Every connection of the bridge (a reconnect included) starts again at step 1. Frames the bot cannot read are
logged and ignored. It logs what it does at INFO, so a newcomer watching the terminal sees each command.

What ``discord-mirai-relay sandbox --demo-bot`` passes: :data:`DEFAULT_HOST`, ``port=0`` (:data:`DEFAULT_PORT`:
an ephemeral port, returned by ``nursery.start``), :data:`DEFAULT_PATH`, the bridge's own ``mirai.verify_key``
and ``bot_qq=None``; then it points the bridge at the bot with ``[[mirai.reverse_ws.destinations]]`` =
:func:`demo_destination` of the port::

    port = await nursery.start(partial(serve_demo_bot, verify_key=key))
    destinations = (demo_destination(port),)
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Final, NoReturn

import attrs
import trio

from relay.config import DestinationConfig
from relay.errors import FrameTooLarge, RelayError, WebSocketClosed, WebSocketHandshakeFailed
from relay.sandbox import demobot_logic as logic
from relay.web.models import Request, Response
from relay.web.server import WebSocketUpgrade, serve_http
from relay.wire.connection import WebSocketConnection
from relay.wire.server import UpgradeRequest

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PATH",
    "DEFAULT_PORT",
    "DESTINATION_NAME",
    "demo_destination",
    "serve_demo_bot",
]

log = logging.getLogger(__name__)

#: loopback only: the demo bot has no business on a network
DEFAULT_HOST: Final = "127.0.0.1"
#: 0 = an ephemeral port, given back by ``nursery.start`` (nothing to collide with)
DEFAULT_PORT: Final = 0
#: the websocket path the bridge's destination dials
DEFAULT_PATH: Final = "/demo-bot"
#: the destination's name in the bridge's logs (and its outbox cursor)
DESTINATION_NAME: Final = "demo-bot"
#: a frame from the bridge larger than this closes the connection with 1009 (events are a few KB)
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
#: seconds for botList + verify to be answered
HANDSHAKE_TIMEOUT: Final = 15.0
#: seconds one reaction (its commands and their responses) may take; the bridge answers within its own timeout
REACTION_TIMEOUT: Final = 30.0
#: reactions under way at once on one connection (each may wait for responses)
WORKERS: Final = 4
#: events waiting for a worker; beyond it an event is logged and ignored (the reader must keep reading responses)
EVENT_BACKLOG: Final = 64
#: seconds granted to the closing handshake
CLOSE_GRACE: Final = 2.0


def demo_destination(port: int, *, host: str = DEFAULT_HOST, path: str = DEFAULT_PATH) -> DestinationConfig:
    """The bridge's ``[[mirai.reverse_ws.destinations]]`` entry that dials a demo bot serving on ``port``."""
    return DestinationConfig(name=DESTINATION_NAME, host=host, port=port, path=path)


async def serve_demo_bot(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    path: str = DEFAULT_PATH,
    verify_key: str,
    bot_qq: int | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the demo bot on ``host``:``port`` until cancelled; ``task_status.started`` gets the bound port.

    ``path`` is the websocket path the bridge must dial, ``verify_key`` the bridge's ``mirai.verify_key``,
    ``bot_qq`` the bot to verify as (None: the one ``botList`` names).
    """
    bot = _DemoBot(path=path, verify_key=verify_key, bot_qq=bot_qq)
    async with trio.open_nursery() as nursery:
        bound: int = await nursery.start(
            partial(serve_http, bot.answer_http, host=host, port=port, upgrade_handler=bot.serve_upgrade)
        )
        host_text = f"[{host}]" if ":" in host else host
        log.info(
            "demo bot listening on ws://%s:%d%s: waiting for the bridge to dial it (a reverse-ws destination)",
            host_text,
            bound,
            path,
        )
        task_status.started(bound)
    raise AssertionError("unreachable: serve_http never returns")  # pragma: no cover


@attrs.define(eq=False)
class _DemoBot:
    """The listener's side: answers plain HTTP, checks the path and accepts each websocket."""

    path: str
    verify_key: str = attrs.field(repr=False)
    bot_qq: int | None

    async def answer_http(self, request: Request) -> Response:
        """A browser (or curl) visiting: say what this port is."""
        if request.path != self.path:
            return Response.text(f"not found; the demo bot's websocket is at {self.path}\n", status=404)
        return Response.text(
            "this is discord-mirai-relay's demo bot, a mirai-api-http framework: the bridge dials it with a "
            "websocket (reverse-ws)\n",
            status=426,
            headers=(("upgrade", "websocket"),),
        )

    async def serve_upgrade(self, upgrade: WebSocketUpgrade) -> None:
        peer = _peer_text(upgrade.request.client)
        request = UpgradeRequest(
            upgrade.stream,
            target=upgrade.request.target,
            headers=upgrade.request.headers,
            trailing=upgrade.trailing,
            peer=peer,
        )
        if upgrade.request.path != self.path:
            log.warning(
                "%s dialed the path %s; the demo bot is at %s (refused with 404: check the destination's path)",
                peer,
                upgrade.request.path,
                self.path,
            )
            await request.reject(404, f"the demo bot's websocket is at {self.path}\n".encode())
            return
        if not request.valid:
            log.warning("%s: not a valid websocket upgrade (%s); refused with 400", peer, request.problem)
            await request.reject(400, f"{request.problem}\n".encode())
            return
        try:
            ws = await request.accept(max_message_size=MAX_MESSAGE_BYTES)
        except WebSocketHandshakeFailed as exc:
            log.info("%s: %s", peer, exc.reason)
            return
        log.info("the bridge connected from %s", peer)
        try:
            await _BotConnection(ws, verify_key=self.verify_key, bot_qq=self.bot_qq).serve()
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await ws.aclose(1000)


def _peer_text(client: tuple[str, int] | None) -> str:
    if client is None:
        return "the bridge"
    host, port = client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.define(eq=False)
class _Waiter:
    """One command waiting for its answer: a response, or (during the handshake) a raw state frame."""

    done: trio.Event = attrs.field(factory=trio.Event)
    answer: dict[str, Any] | logic.RawState | None = None

    def resolve(self, answer: dict[str, Any] | logic.RawState) -> None:
        if not self.done.is_set():
            self.answer = answer
            self.done.set()


class _VerifyRefused(RelayError):
    """The bridge refused the handshake; the message says what to check."""


class _BotConnection:
    """One connection from the bridge: a reader that routes frames, the handshake, then the workers."""

    def __init__(self, ws: WebSocketConnection, *, verify_key: str, bot_qq: int | None) -> None:
        self._ws = ws
        self._verify_key = verify_key
        self._bot_qq = bot_qq
        self._sync_ids = logic.SyncIds()
        self._pending: dict[str, _Waiter] = {}
        #: the handshake command that gets the raw (unwrapped) refusals of §3.3
        self._handshake_waiter: _Waiter | None = None
        self._events_in, self._events_out = trio.open_memory_channel[logic.Event](EVENT_BACKLOG)

    async def serve(self) -> None:
        """Until the bridge goes away (or refuses the handshake)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, nursery.cancel_scope)
            with trio.move_on_after(HANDSHAKE_TIMEOUT) as handshake:
                try:
                    self._bot_qq = await self._handshake()
                except _VerifyRefused as exc:
                    log.error("%s; closing the connection (the bridge dials again)", exc)
                    nursery.cancel_scope.cancel()
                    return
                except WebSocketClosed:
                    return  # the reader logs it and ends the connection
            if handshake.cancelled_caught:
                log.error("the bridge did not answer verify within %g s; closing the connection", HANDSHAKE_TIMEOUT)
                nursery.cancel_scope.cancel()
                return
            for _ in range(WORKERS):
                nursery.start_soon(self._work)

    # ----------------------------------------------------------------- reading

    async def _read(self, scope: trio.CancelScope) -> None:
        """Route every frame: responses to their waiters, events to the workers; then end the connection."""
        try:
            while True:
                self._route(await self._ws.get_message())
        except WebSocketClosed as exc:
            log.info("the bridge closed the connection (%s)", exc)
        except FrameTooLarge as exc:
            log.warning("the bridge sent a frame too large (%s); the connection is closed", exc)
        finally:
            scope.cancel()

    def _route(self, message: str | bytes) -> None:
        incoming = logic.read_frame(message, pending=self._pending)
        if isinstance(incoming, logic.Response):
            self._pending[incoming.sync_id].resolve(incoming.data)
        elif isinstance(incoming, logic.Event):
            try:
                self._events_in.send_nowait(incoming)
            except trio.WouldBlock:
                log.warning("busy: %d events wait already; ignoring a %s", EVENT_BACKLOG, incoming.kind)
        elif isinstance(incoming, logic.RawState):
            if self._handshake_waiter is not None:
                self._handshake_waiter.resolve(incoming)
            else:
                log.warning("the bridge could not read a frame of ours: %s", logic.describe_failure(incoming))
        else:
            log.warning("ignoring a frame from the bridge: %s", incoming.reason)

    # ----------------------------------------------------------------- commands

    async def _command(
        self, command: str, content: object = None, *, handshake: bool = False
    ) -> dict[str, Any] | logic.RawState:
        """Send one command with a fresh syncId and wait for its answer (bound the wait at the call site).

        ``handshake``: the answer may also be a raw state frame, which carries no syncId (§3.3); the handshake
        sends one command at a time, so such a frame belongs to it.
        """
        sync_id = self._sync_ids.next()
        waiter = self._pending[sync_id] = _Waiter()
        if handshake:
            self._handshake_waiter = waiter
        try:
            await self._ws.send_message(logic.command_frame(sync_id, command, content))
            await waiter.done.wait()
        finally:
            del self._pending[sync_id]
            if handshake:
                self._handshake_waiter = None
        assert waiter.answer is not None
        return waiter.answer

    async def _handshake(self) -> int | None:
        """``botList`` when no bot is configured, then ``verify`` (§3.3); the bot the session is bound to."""
        qq = self._bot_qq
        if qq is None:
            log.info("→ botList (which bot does the bridge serve?)")
            answer = await self._command("botList", handshake=True)
            if isinstance(answer, logic.RawState) or logic.code_of(answer) != 0:
                log.warning("← botList refused (%s); verifying without a qq", logic.describe_failure(answer))
            else:
                ids = logic.bot_ids(answer)
                qq = ids[0] if ids else None
                log.info("← botList: %s", ids or "no bot yet; verifying without a qq")
        log.info("→ verify as bot %s", qq if qq is not None else "(none)")
        answer = await self._command("verify", logic.verify_content(self._verify_key, qq), handshake=True)
        code = answer.code if isinstance(answer, logic.RawState) else logic.code_of(answer)
        if code == 0:
            log.info("← verify: ok, session open; waiting for messages (say help in a channel)")
            return qq
        raise _VerifyRefused(f"← verify refused: {logic.describe_failure(answer)}{_verify_advice(code, qq)}")

    # ----------------------------------------------------------------- reacting

    async def _work(self) -> None:
        async for event in self._events_out:
            log.info("%s", logic.describe_event(event))
            reaction = logic.reaction_to(event, bot_qq=self._bot_qq)
            if reaction is None:
                continue
            with trio.move_on_after(REACTION_TIMEOUT) as scope:
                try:
                    await self._react(reaction)
                except WebSocketClosed:
                    return  # the reader logs it and ends the connection
            if scope.cancelled_caught:
                log.warning("no answer from the bridge within %g s; gave up on %s", REACTION_TIMEOUT, reaction)

    async def _react(self, reaction: logic.Reaction) -> None:
        if isinstance(reaction, logic.Send):
            await self._send(reaction)
        elif isinstance(reaction, logic.CountMembers):
            log.info("→ memberList of group %d", reaction.group)
            answer = await self._command("memberList", {"target": reaction.group})
            if not _ok("memberList", answer):
                text = f"memberList failed: {logic.describe_failure(answer)}"
            else:
                assert isinstance(answer, dict)
                text = logic.member_summary(answer)
            await self._send(logic.Send(reaction.group, (logic.plain(text),), quote=reaction.quote, why="members"))
        else:
            log.info("→ recall message %d in group %d", reaction.message_id, reaction.group)
            answer = await self._command("recall", {"target": reaction.group, "messageId": reaction.message_id})
            if not _ok("recall", answer):
                text = f"I could not recall that message: {logic.describe_failure(answer)}"
                await self._send(logic.Send(reaction.group, (logic.plain(text),), quote=reaction.quote, why="recall"))

    async def _send(self, send: logic.Send) -> None:
        text = logic.plain_text(list(send.chain))
        quoting = f", quoting message {send.quote}" if send.quote is not None else ""
        log.info("→ sendGroupMessage to group %d%s (%s): %s", send.group, quoting, send.why, logic.shorten(text))
        content: dict[str, object] = {"target": send.group, "messageChain": list(send.chain)}
        if send.quote is not None:
            content["quote"] = send.quote
        answer = await self._command("sendGroupMessage", content)
        if _ok("sendGroupMessage", answer) and isinstance(answer, dict):
            log.info("← sendGroupMessage: ok, message %s", answer.get("messageId"))


def _ok(command: str, answer: dict[str, Any] | logic.RawState) -> bool:
    """Log the outcome of a command; True when it succeeded."""
    if isinstance(answer, dict) and logic.code_of(answer) == 0:
        if command != "sendGroupMessage":
            log.info("← %s: ok", command)
        return True
    log.warning("← %s failed: %s", command, logic.describe_failure(answer))
    return False


def _verify_advice(code: int, qq: int | None) -> str:
    if code == 1:
        return ": the verify key differs from the bridge's mirai.verify_key"
    if code == 2:
        return f": the bridge does not serve bot {qq} (give the demo bot the bridge's bot id, or none)"
    return ""
