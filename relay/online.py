"""``check --online``: prove, before ``run``, everything ``run`` needs from Discord and from each framework.

One :class:`Probe` (ok or not, one line saying what to do) per question, asked the way ``run`` asks it:

1. **the token**: ``GET /users/@me`` (who the bot is: its id is the qq frameworks must verify with);
2. **the privileged intents**: ``GET /applications/@me`` → ``flags``; every privileged intent in
   ``[discord] intents`` must be enabled for the application, else Discord closes the gateway with 4014;
3. **the gateway**: ``GET /gateway/bot`` for its URL (unless ``gateway_url`` is set), then the websocket is
   opened through the same proxy ``run`` would use, Hello (op 10) read, and the connection closed with 1000;
4. **the servers**: ``GET /users/@me/guilds``: the bot must be in a server where it has the permissions the bridge
   needs (:data:`NEEDED_PERMISSIONS`); the invite URL with every permission it uses is printed otherwise;
5. **each destination, a complete verify round trip**: dial as ``run`` dials (URL, headers, TLS), wait for the
   framework's ``verify``, let the same session state machine ``run`` uses check its verifyKey (constant-time)
   and its qq against the bot id ``run`` would present, send the same answer ``run`` sends, and close with 1000.
   A wrong key and a wrong qq are each one clear line. (``run`` then pushes a BotOnlineEvent; the check does not,
   so a bot's own BotOnlineEvent handlers do not run for a check.)

REST goes through :class:`relay.egress.DiscordEgress`'s proxy with :func:`relay.proxy.httpx_proxy_options`, the
gateway with :func:`relay.proxy.proxied_stream_opener`; destinations are never proxied (as in ``run``). Every
probe is bounded by ``timeout`` seconds: a person is waiting. Response bodies are logged at TRACE.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from typing import Any, Final

import attrs
import httpx
import trio

from adapters.discord import USER_AGENT  # the REST client's, so the probes look like `run`
from adapters.discord.gateway.payloads import gateway_connect_url
from adapters.discord.rest.client import tls_failure
from adapters.mirai import codec
from adapters.mirai.connection import new_session
from adapters.mirai.reverse_ws import destination_endpoint, destination_headers, ssl_context_for
from adapters.mirai.session import SendFrame, Verified
from relay.config import PRIVILEGED_INTENTS, BridgeConfig, DestinationConfig, DiscordConfig, IdMode
from relay.egress import DiscordEgress
from relay.errors import RelayError, RemoteProtocolError, WebSocketClosed, WebSocketHandshakeFailed
from relay.logs import TRACE, shorten_payload
from relay.proxy import httpx_proxy_options, proxied_stream_opener
from relay.storage.idmap import read_small_ids
from relay.wire import frames
from relay.wire.client import connect_websocket
from relay.wire.connection import WebSocketConnection

__all__ = [
    "ALL_PERMISSIONS",
    "BRIDGE_PERMISSIONS",
    "NEEDED_PERMISSIONS",
    "ONLINE_TIMEOUT",
    "Permission",
    "Probe",
    "invite_url",
    "run_online_checks",
]

log = logging.getLogger(__name__)

#: seconds for each probe; short, because a person is waiting for the answer
ONLINE_TIMEOUT: Final = 5.0
#: seconds granted to a closing handshake
CLOSE_GRACE: Final = 2.0


@attrs.frozen
class Probe:
    ok: bool
    text: str


# --------------------------------------------------------------------------- what Discord must allow


@attrs.frozen
class Permission:
    name: str  #: as the Developer Portal and the server settings name it
    bit: int
    needed: bool  #: without it the bridge cannot relay at all; otherwise some commands answer code 10
    used_for: str


#: Every permission the bridge uses (docs/discord.md §9.2), the same list as the README's "Permissions" table (a test
#: compares them). The invite URL asks for all of them.
BRIDGE_PERMISSIONS: Final[tuple[Permission, ...]] = (
    Permission("View Channels", 1 << 10, True, "see the channels and receive their messages"),
    Permission("Send Messages", 1 << 11, True, "sendGroupMessage and every reply"),
    Permission("Send Messages in Threads", 1 << 38, True, "groups that are threads"),
    Permission("Attach Files", 1 << 15, True, "Image, Voice and File elements"),
    Permission("Read Message History", 1 << 16, True, "quotes, messageFromId, roamingMessages"),
    Permission("Manage Messages", 1 << 13, False, "recall of other members' messages"),
    Permission("Pin Messages", 1 << 51, False, "setEssence, anno_publish, anno_delete"),
    Permission("Moderate Members", 1 << 40, False, "mute, unmute"),
    Permission("Kick Members", 1 << 1, False, "kick"),
    Permission("Ban Members", 1 << 2, False, "kick with block"),
    Permission("Manage Roles", 1 << 28, False, "muteAll, unmuteAll (channel overwrites), memberAdmin"),
    Permission("Manage Channels", 1 << 4, False, "groupConfig (the channel name)"),
    Permission("Manage Nicknames", 1 << 27, False, "memberInfo (the member's name)"),
    Permission("View Audit Log", 1 << 7, False, "telling a kick from a member leaving"),
)
NEEDED_PERMISSIONS: Final = sum(p.bit for p in BRIDGE_PERMISSIONS if p.needed)
ALL_PERMISSIONS: Final = sum(p.bit for p in BRIDGE_PERMISSIONS)
_ADMINISTRATOR: Final = 1 << 3

#: privileged intent → (the application flags that enable it, the Developer Portal's name for it); either flag
#: counts (``_LIMITED`` is the toggle of an unverified application)
_INTENT_FLAGS: Final[dict[str, tuple[int, str]]] = {
    "GUILD_PRESENCES": ((1 << 12) | (1 << 13), "Presence Intent"),
    "GUILD_MEMBERS": ((1 << 14) | (1 << 15), "Server Members Intent"),
    "MESSAGE_CONTENT": ((1 << 18) | (1 << 19), "Message Content Intent"),
}


def invite_url(client_id: int, permissions: int = ALL_PERMISSIONS) -> str:
    """The OAuth2 URL that adds the bot to a server with ``permissions``."""
    return f"https://discord.com/oauth2/authorize?client_id={client_id}&scope=bot&permissions={permissions}"


def _names(bits: int) -> str:
    return ", ".join(p.name for p in BRIDGE_PERMISSIONS if bits & p.bit)


# --------------------------------------------------------------------------- entry point


async def run_online_checks(
    config: BridgeConfig, egress: DiscordEgress, *, timeout: float = ONLINE_TIMEOUT
) -> list[Probe]:
    """Every probe of the module docstring, in order; never raises for what it checks."""
    discord = config.discord
    probes: list[Probe] = []
    options = httpx_proxy_options(egress.choice(discord.api_base_url).proxy)
    headers = {"Authorization": f"Bot {discord.token}", "User-Agent": USER_AGENT}
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers=headers, **options) as client:
        rest = _Rest(client, discord.api_base_url)
        token, user_id = await _probe_token(rest, discord)
        probes.append(token)
        gateway_url = discord.gateway_url
        if user_id:
            intents, application_id = await _probe_intents(rest, discord)
            probes.append(intents)
            probes.append(await _probe_guilds(rest, user_id, application_id or user_id))
            if not gateway_url:
                gateway_url, failure = await _gateway_url(rest)
                if failure is not None:
                    probes.append(failure)
    if gateway_url:
        probes.append(await _probe_gateway(gateway_url, discord, egress, timeout))
    bot_id = config.mirai.bot_id or user_id
    if config.mirai.ids is IdMode.SMALL and not config.mirai.bot_id and user_id:
        # [mirai] ids = "small": frameworks bind with the bot's small id (the one `run` presents, relay/ids.py)
        bot_id = read_small_ids(config.store.path).preview(user_id)
        probes.append(
            Probe(True, f"bot qq: {bot_id}, the small id of Discord user {user_id} (frameworks verify with it)")
        )
    for destination in config.mirai.reverse_ws.destinations:
        probes.append(await _probe_destination(destination, config, bot_id, timeout))
    return probes


# --------------------------------------------------------------------------- REST


@attrs.frozen
class _Answer:
    status: int
    body: Any
    failure: str = ""  #: set when no answer came (network, proxy)


@attrs.define
class _Rest:
    client: httpx.AsyncClient
    base: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    async def get(self, path: str) -> _Answer:
        url = self.url(path)
        try:
            response = await self.client.get(url)
        except httpx.HTTPError as exc:
            tls = tls_failure(exc, httpx.URL(url).host)  # "certificate verify failed for HOST: reason", as run says
            return _Answer(0, None, f"cannot reach {url}: {tls or f'{type(exc).__name__}: {exc}'}")
        except RelayError as exc:
            return _Answer(0, None, f"cannot reach {url}: {exc}")
        log.log(TRACE, "GET %s → %d %s", url, response.status_code, shorten_payload(response.text))
        try:
            body = response.json()
        except ValueError:
            body = None
        return _Answer(response.status_code, body)

    def trouble(self, path: str, answer: _Answer) -> str:
        """Why ``answer`` is not a 200, as a clause."""
        if answer.failure:
            return answer.failure
        detail = f": {answer.body['message']}" if isinstance(answer.body, dict) and "message" in answer.body else ""
        return f"{self.url(path)} answered HTTP {answer.status}{detail}"


async def _probe_token(rest: _Rest, discord: DiscordConfig) -> tuple[Probe, int]:
    """GET /users/@me (docs/discord.md §9, "get bot profile"): the token, and the bot's user id."""
    answer = await rest.get("/users/@me")
    if answer.status == 401:
        return (
            Probe(
                False,
                "discord: the token was rejected (HTTP 401); reset it in the Developer Portal (Bot → Reset Token) "
                f"and set {discord.token_env}",
            ),
            0,
        )
    if answer.status != 200:
        return Probe(False, f"discord: {rest.trouble('/users/@me', answer)}"), 0
    try:
        name, user_id = str(answer.body["username"]), int(answer.body["id"])
    except (KeyError, TypeError, ValueError):
        return Probe(False, f"discord: {rest.url('/users/@me')} answered 200 but not with a user object"), 0
    return Probe(True, f"discord: token accepted, logged in as {name} (id {user_id})"), user_id


async def _probe_intents(rest: _Rest, discord: DiscordConfig) -> tuple[Probe, int]:
    """GET /applications/@me → ``flags``: are the requested privileged intents enabled (else close 4014)?"""
    requested = [name for name in discord.intents if name in PRIVILEGED_INTENTS]
    answer = await rest.get("/applications/@me")
    if answer.status != 200 or not isinstance(answer.body, dict):
        return Probe(
            False, f"discord: cannot read the application's intents: {rest.trouble('/applications/@me', answer)}"
        ), 0
    try:
        flags = int(answer.body.get("flags") or 0)
        application_id = int(answer.body["id"])
    except (KeyError, TypeError, ValueError):
        return Probe(False, "discord: GET /applications/@me answered without an application id and flags"), 0
    missing = [name for name in requested if not flags & _INTENT_FLAGS[name][0]]
    if missing:
        toggles = ", ".join(_INTENT_FLAGS[name][1] for name in missing)
        return (
            Probe(
                False,
                f"discord: privileged intents {', '.join(missing)} are requested but not enabled for the application "
                f"(Discord would close the gateway with 4014); turn on {toggles} in the Developer Portal "
                "(your application → Bot → Privileged Gateway Intents), or remove them from [discord] intents",
            ),
            application_id,
        )
    shown = f"privileged intents enabled: {', '.join(requested)}" if requested else "no privileged intents requested"
    return Probe(True, f"discord: {shown}"), application_id


async def _probe_guilds(rest: _Rest, user_id: int, client_id: int) -> Probe:
    """GET /users/@me/guilds: at least one server where the bot has :data:`NEEDED_PERMISSIONS`."""
    path = "/users/@me/guilds?limit=200"
    answer = await rest.get(path)
    if answer.status != 200 or not isinstance(answer.body, list):
        return Probe(False, f"discord: cannot list the bot's servers: {rest.trouble(path, answer)}")
    invite = invite_url(client_id)
    if not answer.body:
        return Probe(False, f"discord: the bot is in no server; add it to yours with {invite}")
    granted: list[tuple[str, int]] = []
    for guild in answer.body:
        name = str(guild.get("name", guild.get("id")))
        granted.append((name, await _guild_permissions(rest, guild, user_id)))
    complete = [name for name, perms in granted if perms & ALL_PERMISSIONS == ALL_PERMISSIONS]
    if complete:
        return Probe(True, f"discord: the bot has every permission the bridge uses in {_quoted(complete)}")
    usable = [(name, perms) for name, perms in granted if perms & NEEDED_PERMISSIONS == NEEDED_PERMISSIONS]
    if usable:
        name, perms = usable[0]
        where, lacking = _quoted([n for n, _ in usable]), _names(ALL_PERMISSIONS & ~perms)
        return Probe(
            True,
            f'discord: the bot can relay in {where}, but lacks {lacking} in "{name}" (the commands that need them '
            f"answer code 10); to grant them all, invite it with {invite}",
        )
    name, perms = granted[0]
    return Probe(
        False,
        f"discord: in none of its {len(granted)} server(s) can the bot relay: it lacks "
        f'{_names(NEEDED_PERMISSIONS & ~perms)} in "{name}"; give its role these permissions, or invite it with '
        f"{invite}",
    )


async def _guild_permissions(rest: _Rest, guild: dict[str, Any], user_id: int) -> int:
    """The bot's guild-level permissions: the ``permissions`` field Discord includes, else computed from the
    guild's roles and the bot's member object (docs/discord.md §9.2: owner → all; @everyone | its roles;
    admin → all)."""
    if guild.get("owner"):
        return ALL_PERMISSIONS
    if "permissions" in guild:
        perms = _to_int(guild["permissions"])
    else:
        guild_id = _to_int(guild.get("id"))
        full = await rest.get(f"/guilds/{guild_id}")
        member = await rest.get(f"/guilds/{guild_id}/members/{user_id}")
        if full.status != 200 or member.status != 200:
            return 0
        if _to_int(full.body.get("owner_id")) == user_id:
            return ALL_PERMISSIONS
        mine = {_to_int(r) for r in member.body.get("roles", ())} | {guild_id}
        perms = 0
        for role in full.body.get("roles", ()):
            if _to_int(role.get("id")) in mine:
                perms |= _to_int(role.get("permissions"))
    return ALL_PERMISSIONS if perms & _ADMINISTRATOR else perms


def _to_int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _quoted(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(f'"{n}"' for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------- the gateway


async def _gateway_url(rest: _Rest) -> tuple[str, Probe | None]:
    answer = await rest.get("/gateway/bot")
    if answer.status == 200 and isinstance(answer.body, dict) and isinstance(answer.body.get("url"), str):
        return answer.body["url"], None
    return "", Probe(False, f"discord gateway: cannot ask for its URL: {rest.trouble('/gateway/bot', answer)}")


async def _probe_gateway(url: str, discord: DiscordConfig, egress: DiscordEgress, timeout: float) -> Probe:
    """Open the gateway through the configured proxy, read Hello (op 10), close with 1000."""
    proxy = egress.choice(url).proxy
    through = f" through {proxy.redacted()}" if proxy is not None else ""
    where = f"discord gateway: {url}"
    try:
        with trio.fail_after(timeout):
            ws = await connect_websocket(
                gateway_connect_url(url, compress=False),
                max_message_size=discord.max_message_bytes,
                open_stream=proxied_stream_opener(proxy),
                peer="the Discord gateway",
            )
            try:
                message = await ws.get_message()
            finally:
                with trio.move_on_after(CLOSE_GRACE):
                    await ws.aclose(frames.CLOSE_NORMAL)
    except trio.TooSlowError:
        return Probe(False, f"{where}: no Hello within {timeout:g} s{through}")
    except WebSocketHandshakeFailed as exc:
        return Probe(False, f"{where}: cannot open the websocket{through}: {exc.reason}")
    except WebSocketClosed as exc:
        return Probe(False, f"{where}: closed before Hello{through} ({exc})")
    except RelayError as exc:  # the proxy's errors say what to fix
        return Probe(False, f"{where}: {exc}")
    try:
        hello = json.loads(message)
        interval = float(hello["d"]["heartbeat_interval"]) / 1000
        if hello["op"] != 10:
            raise ValueError(hello["op"])
    except (ValueError, KeyError, TypeError):
        return Probe(False, f"{where}: the first message is not Hello (op 10); is this a Discord gateway?")
    return Probe(True, f"{where}: reached{through}, Hello received (heartbeat every {interval:g} s)")


# --------------------------------------------------------------------------- destinations


async def _probe_destination(
    destination: DestinationConfig, config: BridgeConfig, bot_id: int, timeout: float
) -> Probe:
    """The complete verify round trip with one framework (see the module docstring)."""
    mirai = config.mirai
    where = f"destination {destination.label}"
    endpoint = destination_endpoint(mirai, destination)
    try:
        context = ssl_context_for(destination)
        with trio.fail_after(timeout):
            ws = await connect_websocket(
                endpoint,
                max_message_size=mirai.max_frame_bytes,
                headers=destination_headers(mirai, destination, bot_id),
                ssl_context=context,
                peer=endpoint.display,
            )
    except WebSocketHandshakeFailed as exc:
        if exc.status is not None:
            return Probe(
                False,
                f"{where}: the framework refused the websocket upgrade with HTTP {exc.status}; check path, "
                "extra_parameters and extra_headers against its reverse-ws settings",
            )
        if "refused" in exc.reason:
            return Probe(
                False,
                f"{where}: cannot connect to {destination.host}:{destination.port}: connection refused; is the "
                "framework's websocket server running, and listening there?",
            )
        return Probe(False, f"{where}: cannot connect: {exc.reason}")
    except trio.TooSlowError:
        return Probe(False, f"{where}: no websocket handshake within {timeout:g} s")
    except RelayError as exc:  # e.g. an unreadable ca_file
        return Probe(False, f"{where}: {exc}")
    try:
        return await _verify_round_trip(ws, where, config, bot_id, timeout)
    finally:
        with trio.move_on_after(CLOSE_GRACE):
            await ws.aclose(frames.CLOSE_NORMAL)


async def _verify_round_trip(
    ws: WebSocketConnection, where: str, config: BridgeConfig, bot_id: int, timeout: float
) -> Probe:
    mirai = config.mirai
    session = new_session(mirai, random.Random())
    who = f"the bot id {bot_id}" if bot_id else "an unknown bot id (the token check failed; or set [mirai] bot_id)"
    try:
        with trio.fail_after(timeout):
            while True:
                message = await ws.get_message()
                try:
                    frame = codec.decode_frame(message, max_frame_bytes=mirai.max_frame_bytes)
                except RemoteProtocolError:
                    frame = None
                if frame is None or frame.command != "verify":
                    for action in session.receive(message, bot_id=bot_id):  # about/botList answered as run does
                        if isinstance(action, SendFrame):
                            await ws.send_message(action.text)
                    continue
                qq = _verify_qq(frame.content)
                actions = session.receive(message, bot_id=bot_id)
                break
    except trio.TooSlowError:
        return Probe(
            False,
            f"{where}: connected, but the framework sent no verify within {timeout:g} s; is this a mirai-api-http "
            "reverse-ws server (e.g. Ariadne's WebsocketServerConfig)?",
        )
    except WebSocketClosed as exc:
        return Probe(False, f"{where}: the framework closed the connection before verifying ({exc})")
    sent = [action.text for action in actions if isinstance(action, SendFrame)]
    if any(isinstance(action, Verified) for action in actions):
        await ws.send_message(sent[0])  # the verify answer; run pushes a BotOnlineEvent next, the check does not
        mode = "single mode" if mirai.single_mode else f"qq {bot_id}"
        return Probe(True, f"{where}: verify round trip complete (verifyKey matches, {mode})")
    if bot_id or mirai.single_mode:
        for text in sent:
            await ws.send_message(text)  # the same refusal run sends
    code = _raw_code(sent[0]) if sent else None
    if code == codec.StatusCode.AUTH_KEY_FAIL:
        if mirai.enable_verify and _verify_key_given(frame.content):
            return Probe(
                False,
                f"{where}: the framework's verifyKey differs from the bridge's ({mirai.verify_key_env}); "
                "set the same key on both sides",
            )
        return Probe(False, f"{where}: the framework's verify is malformed: {shorten_payload(message, 200)}")
    if not bot_id:
        return Probe(False, f"{where}: the verifyKey matches, but the qq cannot be checked against {who}")
    if qq is None:
        return Probe(False, f"{where}: the framework's verify names no qq, and the bridge presents {bot_id}")
    return Probe(
        False,
        f"{where}: the framework verifies as qq {qq}, but the bridge presents {bot_id}; give the framework the "
        f"account {bot_id}, or set bot_id = {qq} under [mirai]",
    )


def _raw_code(text: str) -> object:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data.get("code") if isinstance(data, dict) else None


def _verify_key_given(content: object) -> bool:
    try:
        return codec.decode_verify_content(content).verify_key is not None
    except RemoteProtocolError:
        return False


def _verify_qq(content: object) -> int | None:
    try:
        return codec.decode_verify_content(content).qq
    except RemoteProtocolError:
        return None
