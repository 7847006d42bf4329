"""relay.egress: which proxy each Discord URL goes through, from ``[discord] proxy`` and the environment."""

from __future__ import annotations

import pytest

from relay.config import DiscordConfig
from relay.egress import DiscordEgress
from relay.errors import InvalidProxyURL

CONFIGURED = "socks5h://alice:pw-secret@127.0.0.1:1080"
ENV = {"HTTPS_PROXY": "http://bob:env-secret@10.0.0.1:3128", "NO_PROXY": "localhost"}


def egress(proxy: str, env: dict[str, str] | None = None) -> DiscordEgress:
    return DiscordEgress.from_config(DiscordConfig(proxy=proxy), ENV if env is None else env)


def test_configured_proxy_for_every_discord_url_and_the_environment_ignored() -> None:
    chosen = egress(CONFIGURED)
    for url in ("https://discord.com/api/v10", "wss://gateway.discord.gg", "http://localhost:5000/api"):
        choice = chosen.choice(url)
        assert choice.proxy is not None and choice.proxy.address == "127.0.0.1:1080"
    assert chosen.describe("https://discord.com/api/v10") == "socks5h://alice:***@127.0.0.1:1080 (from [discord] proxy)"


def test_none_means_direct_whatever_the_environment_says() -> None:
    chosen = egress("none")
    assert chosen.choice("https://discord.com/api/v10").proxy is None
    assert chosen.describe("wss://gateway.discord.gg") == 'none ([discord] proxy = "none")'


def test_empty_means_the_environment_with_no_proxy() -> None:
    chosen = egress("")
    assert chosen.describe("https://discord.com/api/v10") == (
        "http://bob:***@10.0.0.1:3128 (from environment variable HTTPS_PROXY)"
    )
    # a plain http:// test server: only http_proxy is read (never HTTP_PROXY)
    assert chosen.choice("http://127.0.0.1:5000/api").proxy is None
    assert chosen.describe("https://localhost/api") == "none (NO_PROXY excludes localhost from HTTPS_PROXY)"
    assert egress("", {}).describe("https://discord.com") == "none"


def test_only_proxy_variables_are_kept() -> None:
    chosen = egress("", {**ENV, "DISCORD_TOKEN": "not-kept"})
    assert "DISCORD_TOKEN" not in chosen.environment


def test_secrets_hold_every_possible_password() -> None:
    assert set(egress(CONFIGURED).secrets()) == {"pw-secret", "env-secret"}
    assert egress("none", {"ALL_PROXY": "::bad"}).secrets() == ()


def test_an_unusable_environment_value_names_its_variable() -> None:
    with pytest.raises(InvalidProxyURL) as info:
        egress("", {"ALL_PROXY": "socks4://h:1"}).choice("https://discord.com")
    assert str(info.value).startswith("environment variable ALL_PROXY: unsupported scheme socks4://")
