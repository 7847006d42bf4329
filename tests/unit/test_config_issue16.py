"""Configuration keys of issue 16: ``[discord] proxy`` and ``allow_insecure``, ``[discord.presence]``,
``reserved_sync_id`` as a number, and mirai-api-http's own key names answered with ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import PROXY_NONE, ActivityType, PresenceConfig, PresenceStatus
from relay.configload import load_config, secrets_of
from relay.errors import ConfigError

ENV = {"DISCORD_TOKEN": "discord-token-for-tests", "MIRAI_VERIFY_KEY": "verify-key-for-tests", "HOME": "/home/u"}
MINIMAL = '\n[[mirai.reverse_ws.destinations]]\nhost = "127.0.0.1"\nport = 8000\n'
PASSWORD = "pr0xy-pa55word"


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "bridge.toml"
    path.write_text(text + MINIMAL, encoding="utf-8")
    return load_config(path, env=ENV)


def problems(tmp_path: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


# --------------------------------------------------------------------------- [discord] proxy


@pytest.mark.parametrize(
    "value",
    ["", PROXY_NONE, "http://127.0.0.1:3128", "socks5h://127.0.0.1:1080", f"https://u:{PASSWORD}@proxy.example:443"],
)
def test_proxy_values(tmp_path: Path, value: str) -> None:
    assert load(tmp_path, f'[discord]\nproxy = "{value}"').discord.proxy == value


def test_proxy_password_is_a_secret(tmp_path: Path) -> None:
    config = load(tmp_path, f'[discord]\nproxy = "socks5h://alice:{PASSWORD}@127.0.0.1:1080"')
    assert PASSWORD in secrets_of(config)
    assert PASSWORD not in repr(config)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"socks4://alice:{PASSWORD}@127.0.0.1:1080", "unsupported scheme socks4://"),
        ("127.0.0.1:1080", "needs a scheme"),
        (f"http://alice:{PASSWORD}@proxy:99999", "port must be a number from 1 to 65535"),
    ],
)
def test_bad_proxy_names_the_problem_never_the_password(tmp_path: Path, value: str, says: str) -> None:
    (problem,) = problems(tmp_path, f'[discord]\nproxy = "{value}"')
    assert problem.startswith("discord.proxy: expected a proxy URL such as"), problem
    assert says in problem
    assert PASSWORD not in problem


def test_proxy_of_the_wrong_type(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "[discord]\nproxy = false")
    assert problem.startswith("discord.proxy: expected a proxy URL"), problem


def test_toml_syntax_error_on_a_proxy_line_does_not_quote_it(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, f'[discord]\nproxy = "http://u:{PASSWORD}@h:1" x')
    assert "line 2" in problem
    assert PASSWORD not in problem


# --------------------------------------------------------------------------- [discord] allow_insecure


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("api_base_url", "http://discord.com/api/v10"),
        ("api_base_url", "http://canary.discord.com/api/v10"),
        ("api_base_url", "http://DISCORDAPP.COM./api"),
        ("gateway_url", "ws://gateway.discord.gg"),
        ("gateway_url", "ws://gateway-us-east1-b.discord.gg/?v=10"),
    ],
)
def test_plain_urls_to_discord_hosts_are_refused(tmp_path: Path, key: str, url: str) -> None:
    (problem,) = problems(tmp_path, f'[discord]\n{key} = "{url}"')
    assert problem.startswith(f"discord.{key}: "), problem
    assert "unencrypted" in problem
    assert "allow_insecure = true" in problem
    config = load(tmp_path, f'[discord]\n{key} = "{url}"\nallow_insecure = true')
    assert config.discord.allow_insecure is True


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("api_base_url", "http://127.0.0.1:5000/api/v10"),
        ("api_base_url", "http://notdiscord.com/api"),  # not a subdomain
        ("api_base_url", "https://discord.com/api/v10"),
        ("gateway_url", "ws://[::1]:9000"),
        ("gateway_url", "wss://gateway.discord.gg"),
    ],
)
def test_other_urls_need_no_permission(tmp_path: Path, key: str, url: str) -> None:
    assert load(tmp_path, f'[discord]\n{key} = "{url}"').discord.allow_insecure is False


# --------------------------------------------------------------------------- [discord.presence]


def test_presence_default_and_values(tmp_path: Path) -> None:
    assert load(tmp_path, "").discord.presence == PresenceConfig()
    text = '[discord.presence]\nstatus = "dnd"\nactivity = "streaming"\ntext = "talks"\nurl = "https://www.twitch.tv/x"'
    presence = load(tmp_path, text).discord.presence
    assert presence == PresenceConfig(
        status=PresenceStatus.DND, activity=ActivityType.STREAMING, text="talks", url="https://www.twitch.tv/x"
    )
    assert presence.describe() == 'dnd, Streaming "talks" (https://www.twitch.tv/x)'
    custom = load(tmp_path, '[discord.presence]\nactivity = "custom"\ntext = "bridging"').discord.presence
    assert custom.describe() == 'online, custom status "bridging"'


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            'status = "away"',
            'discord.presence.status: expected one of "online", "idle", "dnd", "invisible", got "away"',
        ),
        ('activity = "gaming"', 'discord.presence.activity: expected one of "", "playing"'),
        ('text = "chess"', "discord.presence.text: needs an activity: set activity to one of"),
        ('activity = "playing"', "discord.presence.text: missing; give what the bot is playing"),
        ('activity = "custom"', "discord.presence.text: missing; give the custom status text"),
        ('activity = "streaming"\ntext = "x"', "discord.presence.url: missing; a streaming activity needs"),
        ('activity = "watching"\ntext = "x"\nurl = "https://twitch.tv/x"', 'discord.presence.url: only a "streaming"'),
        ('activity = "streaming"\ntext = "x"\nurl = "https://example.com/x"', "discord.presence.url: expected a https"),
        ('activity = "streaming"\ntext = "x"\nurl = "http://twitch.tv/x"', "discord.presence.url: expected a https"),
    ],
)
def test_presence_problems(tmp_path: Path, snippet: str, expected: str) -> None:
    (problem,) = problems(tmp_path, f"[discord.presence]\n{snippet}")
    assert problem.startswith(expected), problem


# --------------------------------------------------------------------------- mirai-api-http habits


@pytest.mark.parametrize(("value", "expected"), [("-1", "-1"), ("-2", "-2"), ('"-1"', "-1"), ('"push"', "push")])
def test_reserved_sync_id_as_number_or_string(tmp_path: Path, value: str, expected: str) -> None:
    assert load(tmp_path, f"[mirai]\nreserved_sync_id = {value}").mirai.reserved_sync_id == expected


def test_reserved_sync_id_of_another_type(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "[mirai]\nreserved_sync_id = 1.5")
    assert problem == 'mirai.reserved_sync_id: expected a string or an integer such as "-1", got 1.5'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'verifyKey = "k"\n',
            'verifyKey: unknown key (did you mean "verify_key" under [mirai] (better: the environment variable '
            'MIRAI_VERIFY_KEY)? "verifyKey" is mirai-api-http\'s name)',
        ),
        ('[mirai]\nverifyKey = "k"', 'mirai.verifyKey: unknown key (did you mean "verify_key" under [mirai]'),
        (
            "[mirai]\nenableVerify = false",
            'mirai.enableVerify: unknown key (did you mean "enable_verify" under [mirai]?',
        ),
        ("[mirai]\nsingleMode = true", 'mirai.singleMode: unknown key (did you mean "single_mode" under [mirai]?'),
        ("adapters = ['reverse-ws']", "adapters: unknown key (did you mean [mirai.reverse_ws] (the bridge is"),
        ("[adapterSettings]\nx = 1", "adapterSettings: unknown key (did you mean [mirai.reverse_ws] and its"),
        ("[mirai.reverse-ws]\nx = 1", 'mirai.reverse-ws: unknown key (did you mean [mirai.reverse_ws]? "reverse-ws"'),
        (
            '[mirai.reverse_ws]\nreservedSyncId = "-1"',
            'mirai.reverse_ws.reservedSyncId: unknown key (did you mean "reserved_sync_id" under [mirai]? '
            '"reservedSyncId" is mirai-api-http\'s name)',
        ),
        (
            "[mirai.reverse_ws]\nextraHeaders = {}",
            'mirai.reverse_ws.extraHeaders: unknown key (did you mean "extra_headers"?',
        ),
        (
            "[mirai.reverse_ws]\nextraParameters = {}",
            'mirai.reverse_ws.extraParameters: unknown key (did you mean "extra_parameters"?',
        ),
        ("[mirai]\ncacheSize = 4096", 'mirai.cacheSize: unknown key (did you mean "message_retention_days" under'),
        ("debug = true", 'debug: unknown key (did you mean level = "DEBUG" under [logging] (or -v)?'),
        ('[discord]\napiBaseUrl = "https://x"', 'discord.apiBaseUrl: unknown key (did you mean "api_base_url"? keys'),
    ],
)
def test_mirai_api_http_key_names_point_at_ours(tmp_path: Path, text: str, expected: str) -> None:
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(expected), problem


def test_destination_keys_of_mirai_api_http(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        "[[mirai.reverse_ws.destinations]]\nhost = 'h'\nport = 1\nextraHeaders = {}\nextraParameters = {}\n"
        "reconnectInterval = 5000\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    assert info.value.problems == (
        'mirai.reverse_ws.destinations[0].extraHeaders: unknown key (did you mean "extra_headers"? '
        '"extraHeaders" is mirai-api-http\'s name)',
        'mirai.reverse_ws.destinations[0].extraParameters: unknown key (did you mean "extra_parameters"? '
        '"extraParameters" is mirai-api-http\'s name)',
        'mirai.reverse_ws.destinations[0].reconnectInterval: unknown key (did you mean "initial" and "cap" under '
        '[mirai.reverse_ws.reconnect] (seconds, with backoff)? "reconnectInterval" is mirai-api-http\'s name)',
    )
