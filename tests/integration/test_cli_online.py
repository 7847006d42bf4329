"""``check --online`` over loopback: the emulated Discord (REST and gateway), and fake frameworks that verify with
the right key and qq, the wrong key, the wrong qq, or refuse the upgrade; through a real proxy process too
(127.0.0.1 only).

``main`` runs in a worker thread (it calls ``trio.run`` itself) while the emulator and the fake frameworks serve
in the test's trio loop.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from relay.cli import main
from relay.online import ALL_PERMISSIONS, BRIDGE_PERMISSIONS, NEEDED_PERMISSIONS, invite_url
from relay.sandbox.emulator import intents as it
from relay.sandbox.emulator.emulator import Emulator
from tests.emulated import BOT_ID, start_emulator
from tests.fakes.fake_framework import FakeFramework, open_fake_framework
from tests.integration.pproxy_server import open_pproxy

TOKEN = "online-check-token-abcdefghijklmnop"
VERIFY_KEY = "online-check-verify-key"
ENV = {"DISCORD_TOKEN": TOKEN, "MIRAI_VERIFY_KEY": VERIFY_KEY, "HOME": "/home/u"}
GUILD, OWNER, ROLE = 1_100_000_000_000_000_010, 1_100_000_000_000_000_500, 1_100_000_000_000_000_020


@asynccontextmanager
async def open_discord(**options: object) -> AsyncIterator[Emulator]:
    """The emulated Discord (``options``: the application's id and flags) with one guild the bot is in."""
    async with trio.open_nursery() as nursery:
        discord = Emulator(token=TOKEN, **options)  # type: ignore[arg-type]
        discord.world.add_guild(GUILD, "Bridge Guild", owner_id=OWNER)
        yield await start_emulator(nursery, discord)
        nursery.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine's proxy must not stand between the test and 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connecting is refused
    return port


def write_config(tmp_path: Path, api: str, destinations: list[str], discord: str = "") -> Path:
    text = (
        f'[discord]\napi_base_url = "{api}"\n{discord}\n[mirai.reverse_ws]\nextra_headers = {{ X-Common = "common" }}\n'
    )
    for destination in destinations:
        text += f"[[mirai.reverse_ws.destinations]]\n{destination}\n"
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def check_online(path: Path, env: dict[str, str] = ENV) -> int:
    code: int = await trio.to_thread.run_sync(functools.partial(main, ["check", "--online", "-c", str(path)], env=env))
    return code


def destination(framework: FakeFramework, name: str = "", extra: str = "") -> str:
    named = f'\nname = "{name}"' if name else ""
    return f'host = "127.0.0.1"\nport = {framework.port}\npath = "/ws"{named}\n{extra}'


def give_bot_every_permission(discord: Emulator) -> None:
    discord.world.add_role(GUILD, ROLE, "relay", permissions=ALL_PERMISSIONS)
    discord.world.members[(GUILD, BOT_ID)]["roles"] = [str(ROLE)]


# --------------------------------------------------------------------------- everything right


async def test_online_check_passes_with_a_complete_verify_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        open_discord() as discord,
        open_fake_framework(
            verify_key=VERIFY_KEY,
            qq=BOT_ID,
            path="/ws",
            expected_params={"room": "a b"},
            expected_headers={"X-Common": "mine", "X-Token": "dest-secret-value"},
        ) as framework,
    ):
        give_bot_every_permission(discord)
        extra = (
            'extra_parameters = { room = "a b" }\nextra_headers = { X-Common = "mine", X-Token = "dest-secret-value" }'
        )
        path = write_config(tmp_path, discord.base_url, [destination(framework, extra=extra)])
        assert await check_online(path) == 0
        out = capsys.readouterr().out
        assert f"[ok] discord: token accepted, logged in as relay-bot (id {BOT_ID})" in out
        assert "[ok] discord: privileged intents enabled: GUILD_MEMBERS, MESSAGE_CONTENT" in out
        assert '[ok] discord: the bot has every permission the bridge uses in "Bridge Guild"' in out
        assert f"[ok] discord gateway: {discord.gateway_url}: reached, Hello received (heartbeat every 41.25 s)" in out
        label = f"127.0.0.1:{framework.port}/ws"
        assert f"[ok] destination {label}: verify round trip complete (verifyKey matches, qq {BOT_ID})" in out
        conn = framework.connections[0]
        await conn.wait_closed()
        assert conn.session is not None and len(conn.session) == 8  # the bridge's verify answer, as run sends it
        assert conn.events == []  # no BotOnlineEvent: the bot's own handlers do not run for a check
        assert conn.close_code == 1000
        assert conn.params == {"room": "a b"}
        assert conn.headers["x-common"] == "mine"  # the destination's value wins over the adapter-wide one
        assert conn.headers["qq"] == str(BOT_ID)  # the bot id: the Discord user id when [mirai] bot_id = 0
        (hello_client,) = discord.gateway.client_closes
        assert hello_client[1] == 1000
        requests = {r.route for r in discord.requests}
        assert {"GET /users/@me", "GET /applications/@me", "GET /users/@me/guilds", "GET /gateway/bot"} <= requests
        assert discord.requests[0].headers["user-agent"].startswith("DiscordBot (")
        assert TOKEN not in out
        assert VERIFY_KEY not in out
        assert "dest-secret-value" not in out


# --------------------------------------------------------------------------- the framework's verify


@pytest.mark.parametrize(
    ("verify_key", "qq", "expected"),
    [
        (
            "not-the-key",
            BOT_ID,
            "the framework's verifyKey differs from the bridge's (MIRAI_VERIFY_KEY); set the same key on both sides",
        ),
        (
            VERIFY_KEY,
            123456,
            f"the framework verifies as qq 123456, but the bridge presents {BOT_ID}; give the framework the "
            f"account {BOT_ID}, or set bot_id = 123456 under [mirai]",
        ),
    ],
)
async def test_a_wrong_key_or_qq_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verify_key: str, qq: int, expected: str
) -> None:
    async with (
        open_discord() as discord,
        open_fake_framework(verify_key=verify_key, qq=qq, path="/ws") as framework,
    ):
        give_bot_every_permission(discord)
        path = write_config(tmp_path, discord.base_url, [destination(framework, "bot")])
        assert await check_online(path) == 1
        out = capsys.readouterr().out
        assert f"[FAIL] destination bot: {expected}" in out
        assert [line for line in out.splitlines() if "FAIL" in line] == [f"  [FAIL] destination bot: {expected}"]
        conn = framework.connections[0]
        await conn.wait_closed()
        assert conn.session is None
        assert [raw["code"] for raw in conn.raw] == [1 if verify_key != VERIFY_KEY else 2]  # as run answers
        assert conn.close_code == 1000
        assert "not-the-key" not in out


async def test_a_framework_that_never_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with (
        open_discord() as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws", auto_verify=False) as framework,
    ):
        path = write_config(tmp_path, discord.base_url, [destination(framework, "silent")])
        code = await trio.to_thread.run_sync(functools.partial(main, ["check", "--online", str(path)], env=ENV))
        assert code == 1
        assert (
            "[FAIL] destination silent: connected, but the framework sent no verify within 5 s; is this a "
            "mirai-api-http reverse-ws server" in capsys.readouterr().out
        )


# --------------------------------------------------------------------------- Discord's side


async def test_an_application_without_the_privileged_intents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        open_discord(application_flags=it.GATEWAY_MESSAGE_CONTENT_LIMITED) as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework,
    ):
        give_bot_every_permission(discord)
        path = write_config(tmp_path, discord.base_url, [destination(framework)])
        assert await check_online(path) == 1
        out = capsys.readouterr().out
        assert (
            "[FAIL] discord: privileged intents GUILD_MEMBERS are requested but not enabled for the application "
            "(Discord would close the gateway with 4014); turn on Server Members Intent in the Developer Portal "
            "(your application → Bot → Privileged Gateway Intents), or remove them from [discord] intents"
        ) in out
        assert sum("FAIL" in line for line in out.splitlines()) == 1


async def test_permissions_and_the_invite_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with (
        open_discord(application_id=4242) as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework,
    ):
        invite = invite_url(4242)
        assert invite == f"https://discord.com/oauth2/authorize?client_id=4242&scope=bot&permissions={ALL_PERMISSIONS}"
        path = write_config(tmp_path, discord.base_url, [destination(framework)])
        # the default @everyone role lets it relay, but not moderate: ok, with what is missing and the URL
        assert await check_online(path) == 0
        out = capsys.readouterr().out
        assert '[ok] discord: the bot can relay in "Bridge Guild", but lacks Manage Messages, Pin Messages' in out
        assert invite in out
        # without the permissions it needs in any server, and computed from roles when Discord leaves them out
        discord.world.guilds[GUILD]["roles"][0]["permissions"] = str(NEEDED_PERMISSIONS & ~(1 << 11))
        discord.world.deviations.omit_guild_permissions = True
        assert await check_online(path) == 1
        out = capsys.readouterr().out
        assert (
            '[FAIL] discord: in none of its 1 server(s) can the bot relay: it lacks Send Messages in "Bridge Guild"; '
            f"give its role these permissions, or invite it with {invite}"
        ) in out
        # in no server at all
        del discord.world.members[(GUILD, BOT_ID)]
        assert await check_online(path) == 1
        assert f"[FAIL] discord: the bot is in no server; add it to yours with {invite}" in capsys.readouterr().out


def test_invite_permissions_are_exactly_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Permissions", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("|")][2:]
    listed = [(name.strip(), bit.strip(), needed.strip()) for name, bit, needed in rows]
    assert listed == [
        (p.name, f"`1 << {p.bit.bit_length() - 1}`", "yes" if p.needed else "") for p in BRIDGE_PERMISSIONS
    ]
    assert f"permissions={ALL_PERMISSIONS}" in readme


async def test_failures_on_discord_and_destinations_each_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    async with (
        open_discord() as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework,
    ):
        destinations = [
            destination(framework, "good"),
            f'host = "127.0.0.1"\nport = {framework.port}\npath = "/wrong"\nname = "wrong-path"',
            f'host = "127.0.0.1"\nport = {closed_port}\nname = "nobody-home"',
        ]
        path = write_config(tmp_path, discord.base_url, destinations)
        env = {**ENV, "DISCORD_TOKEN": "a-wrong-token-value"}
        assert await check_online(path, env) == 1
        out = capsys.readouterr().out
        assert "[FAIL] discord: the token was rejected (HTTP 401)" in out
        assert "GET /applications/@me" not in {r.route for r in discord.requests}  # no point without a token
        assert (
            "[FAIL] destination good: the verifyKey matches, but the qq cannot be checked against an unknown bot id"
        ) in out
        assert (
            "[FAIL] destination wrong-path: the framework refused the websocket upgrade with HTTP 403; check path"
        ) in out
        assert f"[FAIL] destination nobody-home: cannot connect to 127.0.0.1:{closed_port}: connection refused" in out
        assert "a-wrong-token-value" not in out


async def test_online_check_when_discord_is_unreachable(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    async with open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework:
        path = write_config(tmp_path, f"http://127.0.0.1:{closed_port}/api/v10", [destination(framework)])
        assert await check_online(path) == 1
        out = capsys.readouterr().out
        assert f"[FAIL] discord: cannot reach http://127.0.0.1:{closed_port}/api/v10/users/@me: ConnectError" in out


async def test_online_check_on_a_non_discord_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with (
        open_discord() as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework,
    ):
        path = write_config(tmp_path, discord.base_url.replace("/api/v10", "/elsewhere"), [destination(framework)])
        assert await check_online(path) == 1
        assert "answered HTTP 404: 404: Not Found" in capsys.readouterr().out


# --------------------------------------------------------------------------- through a proxy


async def test_online_check_goes_through_the_configured_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        open_discord() as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework,
        open_pproxy(tmp_path) as proxy,
    ):
        give_bot_every_permission(discord)
        url = proxy.url("socks5")
        path = write_config(tmp_path, discord.base_url, [destination(framework)], discord=f'proxy = "{url}"')
        assert await check_online(path) == 0
        out = capsys.readouterr().out
        shown = f"socks5://alice:***@127.0.0.1:{proxy.port}"
        assert f"proxy:          {shown} (from [discord] proxy)" in out
        assert f"[ok] discord gateway: {discord.gateway_url}: reached through {shown}, Hello received" in out
        log = proxy.log()
        # REST and the gateway share the emulator's port: every TCP connection it accepted, REST's (one per
        # client address) and the gateway's, is one tunnel of the proxy's
        assert discord.gateway.connections
        tunnels = len({r.client for r in discord.requests}) + len(discord.gateway.connections)
        assert log.count(f"127.0.0.1:{discord.port}") == tunnels
        assert f"127.0.0.1:{framework.port}" not in log  # frameworks never do
        assert "s3cret" not in out


async def test_a_proxy_that_refuses_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with open_discord() as discord, open_pproxy(tmp_path) as proxy:
        url = proxy.url("socks5", password="wrong-password")
        path = write_config(
            tmp_path,
            discord.base_url,
            ['host = "127.0.0.1"\nport = 1'],
            discord=f'proxy = "{url}"\ngateway_url = "{discord.gateway_url}"',
        )
        assert await check_online(path) == 1
        out = capsys.readouterr().out
        assert f"[FAIL] discord: cannot reach {discord.base_url}/users/@me" in out
        assert (
            f"[FAIL] discord gateway: {discord.gateway_url}: the proxy socks5://alice:***@127.0.0.1:{proxy.port} "
            "refused authentication"
        ) in out
        assert "wrong-password" not in out


async def test_check_online_very_verbose_never_shows_an_extra_parameter_value(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # issue 15: -vv logged a credential given in extra_parameters (the dial's request target carries it)
    secret = "param-secret/value x"
    async with (
        open_discord() as discord,
        open_fake_framework(verify_key=VERIFY_KEY, qq=BOT_ID, path="/ws") as framework,
    ):
        give_bot_every_permission(discord)
        extra = f'extra_parameters = {{ access = "{secret}" }}'
        path = write_config(tmp_path, discord.base_url, [destination(framework, extra=extra)])
        code: int = await trio.to_thread.run_sync(
            functools.partial(main, ["-vv", "check", "--online", "-c", str(path)], env=ENV)
        )
        captured = capfd.readouterr()
    assert code == 0, captured.out
    for shown in ("param-secret", "param-secret%2Fvalue", "value+x"):
        assert shown not in captured.out + captured.err
    assert framework.connections[0].params["access"] == secret  # it was sent, only never shown
