"""relay.proxyurl: parsing proxy URLs, redaction, and which proxy a host gets (configuration, environment)."""

from __future__ import annotations

import pytest

from relay.errors import InvalidProxyURL
from relay.proxyurl import (
    ProxyChoice,
    ProxyScheme,
    ProxySettings,
    choose_proxy,
    format_host_port,
    no_proxy_matches,
    parse_proxy_url,
)

SECRET = "pa55:w/rd@#?"  # every character that must be percent-encoded in a URL's password
ENCODED_SECRET = "pa55%3Aw%2Frd%40%23%3F"


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://proxy.corp:3128", ProxySettings(ProxyScheme.HTTP, "proxy.corp", 3128)),
        ("HTTP://Proxy.Corp:3128/", ProxySettings(ProxyScheme.HTTP, "proxy.corp", 3128)),
        ("http://proxy.corp", ProxySettings(ProxyScheme.HTTP, "proxy.corp", 80)),
        ("https://proxy.corp", ProxySettings(ProxyScheme.HTTPS, "proxy.corp", 443)),
        ("socks5://127.0.0.1", ProxySettings(ProxyScheme.SOCKS5, "127.0.0.1", 1080)),
        ("socks5h://[::1]:9050", ProxySettings(ProxyScheme.SOCKS5H, "::1", 9050)),
        ("  socks5h://localhost:1080  ", ProxySettings(ProxyScheme.SOCKS5H, "localhost", 1080)),
        ("http://alice@proxy:8080", ProxySettings(ProxyScheme.HTTP, "proxy", 8080, "alice", "")),
        ("http://alice:@proxy:8080", ProxySettings(ProxyScheme.HTTP, "proxy", 8080, "alice", "")),
        (
            f"socks5://al%20ice:{ENCODED_SECRET}@proxy:1080",
            ProxySettings(ProxyScheme.SOCKS5, "proxy", 1080, "al ice", SECRET),
        ),
        ("socks5h://u:p@ss@proxy:1080", ProxySettings(ProxyScheme.SOCKS5H, "proxy", 1080, "u", "p@ss")),
        ("http://bücher.example:8080", ProxySettings(ProxyScheme.HTTP, "xn--bcher-kva.example", 8080)),
    ],
)
def test_parse_accepts(text: str, expected: ProxySettings) -> None:
    assert parse_proxy_url(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("proxy.corp:3128", "needs a scheme"),
        ("socks4://proxy:1080", "SOCKS4 is not supported"),
        ("socks://proxy:1080", "write socks5:// or socks5h://"),
        ("ftp://proxy:21", "unsupported scheme ftp://"),
        ("http://:3128", "has no host"),
        ("http://proxy:0", "port must be a number from 1 to 65535"),
        ("http://proxy:65536", "port must be a number from 1 to 65535"),
        ("http://proxy:31x8", "port must be a number from 1 to 65535"),
        ("http://proxy:", "port must be a number from 1 to 65535"),
        ("http://::1:3128", "an IPv6 host must be written in brackets"),
        ("http://[::g]:3128", "malformed [IPv6] host"),
        ("http://[::1]x:3128", "malformed [IPv6] host"),
        ("http://pro xy:3128", "spaces or control characters"),
        ("http://pro_x!y:3128", "not a valid name or address"),
        ("http://proxy:3128/path", "without a path, query or fragment"),
        ("http://proxy:3128?x=1", "without a path, query or fragment"),
        ("http://:secret@proxy:3128", "has a password but no user name"),
        ("http://@proxy:3128", "has an empty user name before @"),
        ("socks5://alice@proxy:1080", "needs both a user name and a password"),
        (f"socks5://alice:{'x' * 256}@proxy:1080", "password is longer than SOCKS5 allows"),
        ("http://a%3Ab:secret@proxy:1", "may not contain ':'"),
        ("http://alice:%ff@proxy:1", "not valid percent-encoded UTF-8"),
    ],
)
def test_parse_refuses_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(InvalidProxyURL) as caught:
        parse_proxy_url(text, where="[discord] proxy")
    assert problem in caught.value.problem
    assert str(caught.value).startswith("[discord] proxy: ")


@pytest.mark.parametrize(
    "text",
    [
        "socks5://alice:topsecret@proxy:99999",
        "http://alice:topsecret@proxy:3128/x",
        "http://alice:top/secret@proxy:3128",  # an unencoded "/" cuts the authority inside the password
        "socks4://alice:topsecret@proxy",
        "socks5h://alice:topsecret@[::1",
        "http://alice:topsecret@bad_host!:1",
        f"socks5://alice:topsecret{'x' * 300}@proxy",
    ],
)
def test_errors_never_contain_the_password(text: str) -> None:
    with pytest.raises(InvalidProxyURL) as caught:
        parse_proxy_url(text)
    assert "topsecret" not in str(caught.value)
    assert "topsecret" not in repr(caught.value)


def test_an_unencoded_slash_in_a_password_gets_a_hint() -> None:
    with pytest.raises(InvalidProxyURL, match="percent-encoded: %2F"):
        parse_proxy_url("http://alice:top/secret@proxy:3128")


def test_default_scheme_is_used_only_without_one() -> None:
    assert parse_proxy_url("proxy:3128", default_scheme=ProxyScheme.HTTP) == ProxySettings(
        ProxyScheme.HTTP, "proxy", 3128
    )
    assert parse_proxy_url("socks5h://proxy", default_scheme=ProxyScheme.HTTP).scheme is ProxyScheme.SOCKS5H


# --------------------------------------------------------------------------- showing it


def test_redacted_form_and_repr_hide_the_password() -> None:
    proxy = parse_proxy_url(f"socks5://alice:{ENCODED_SECRET}@proxy:1080")
    assert proxy.redacted() == "socks5://alice:***@proxy:1080"
    assert str(proxy) == proxy.redacted()
    assert SECRET not in repr(proxy) and ENCODED_SECRET not in repr(proxy)
    assert "alice" in repr(proxy)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://proxy:3128", "http://proxy:3128"),
        ("http://alice@proxy:3128", "http://alice@proxy:3128"),
        ("https://a%40b:x@[::1]:443", "https://a%40b:***@[::1]:443"),
        ("socks5h://proxy", "socks5h://proxy:1080"),
    ],
)
def test_redacted_forms(text: str, shown: str) -> None:
    assert parse_proxy_url(text).redacted() == shown


def test_scheme_properties() -> None:
    socks5, socks5h, http, https = (parse_proxy_url(f"{s}://h") for s in ("socks5", "socks5h", "http", "https"))
    assert (socks5.is_socks, socks5h.is_socks, http.is_socks, https.is_socks) == (True, True, False, False)
    assert (socks5.resolves_names, socks5h.resolves_names, http.resolves_names) == (False, True, True)
    assert (http.tls, https.tls) == (False, True)


def test_format_host_port_brackets_ipv6() -> None:
    assert format_host_port("::1", 443) == "[::1]:443"
    assert format_host_port("discord.com", 443) == "discord.com:443"


# --------------------------------------------------------------------------- NO_PROXY (curl's rules)


@pytest.mark.parametrize(
    ("no_proxy", "host", "excluded"),
    [
        ("*", "discord.com", True),
        (" * ", "10.0.0.1", True),
        ("*.com", "discord.com", False),  # "*" is a wildcard only as the whole value
        ("discord.com", "discord.com", True),
        ("discord.com", "gateway.discord.com", True),
        ("discord.com", "notdiscord.com", False),
        ("discord.com", "discord.com.evil", False),
        (".discord.com", "discord.com", True),
        (".discord.com", "cdn.discord.com", True),
        ("discord.com.", "discord.com", True),
        ("discord.com", "discord.com.", True),
        ("DISCORD.com", "Gateway.Discord.COM", True),
        ("example.org, discord.com", "discord.com", True),
        (" example.org ,, discord.com ,", "discord.com", True),
        ("example.org", "discord.com", False),
        ("", "discord.com", False),
        ("discord.com:443", "discord.com", False),  # ports are not matched, as in curl
        ("localhost", "localhost", True),
        ("127.0.0.1", "localhost", False),  # no name resolution
        ("localhost", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.0/8", "127.1.2.3", True),
        ("10.0.0.0/8", "127.1.2.3", False),
        ("127.0.0.1/0", "127.0.0.2", False),  # curl: 0 bits compare the whole address
        ("::1", "::1", True),
        ("[::1]", "[::1]", True),
        ("fd00::/8", "fd12::5", True),
        ("fd00::/8", "fe80::1", False),
        ("127.0.0.1", "::1", False),
        ("1.2.3.4", "1.2.3.4.example", False),
    ],
)
def test_no_proxy_matches(no_proxy: str, host: str, excluded: bool) -> None:
    assert no_proxy_matches(no_proxy, host) is excluded


# --------------------------------------------------------------------------- choose_proxy


CONFIGURED = ProxySettings(ProxyScheme.SOCKS5H, "10.1.1.1", 1080, "alice", "secret")


def test_configured_proxy_wins_over_the_environment_and_ignores_no_proxy() -> None:
    env = {"HTTPS_PROXY": "http://other:3128", "NO_PROXY": "*"}
    choice = choose_proxy(CONFIGURED, env, "discord.com")
    assert choice == ProxyChoice(CONFIGURED, "[discord] proxy")
    assert choice.describe("discord.com") == "socks5h://alice:***@10.1.1.1:1080 (from [discord] proxy)"


def test_no_configuration_and_no_environment_means_direct() -> None:
    choice = choose_proxy(None, {}, "discord.com")
    assert choice == ProxyChoice(None)
    assert choice.describe("discord.com") == "none"


@pytest.mark.parametrize(
    ("env", "source", "url"),
    [
        ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"}, "https_proxy", "http://lower:1"),
        ({"HTTPS_PROXY": "http://upper:2", "ALL_PROXY": "socks5h://all:3"}, "HTTPS_PROXY", "http://upper:2"),
        ({"https_proxy": "", "HTTPS_PROXY": "http://upper:2"}, "HTTPS_PROXY", "http://upper:2"),  # empty = unset
        ({"all_proxy": "socks5h://a:1", "ALL_PROXY": "socks5h://b:2"}, "all_proxy", "socks5h://a:1080"),
        ({"ALL_PROXY": "socks5://b:2"}, "ALL_PROXY", "socks5://b:2"),
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "HTTPS_PROXY", "http://proxy.corp:3128"),  # no scheme: http
        ({"HTTP_PROXY": "http://plain:1", "ALL_PROXY": "socks5h://all:2"}, "ALL_PROXY", "socks5h://all:2"),
    ],
)
def test_environment_order_for_tls_targets(env: dict[str, str], source: str, url: str) -> None:
    choice = choose_proxy(None, env, "discord.com")
    assert choice.proxy is not None
    assert choice.source == f"environment variable {source}"
    expected = parse_proxy_url(url)
    assert (choice.proxy.scheme, choice.proxy.host) == (expected.scheme, expected.host)


def test_plain_targets_use_lower_case_http_proxy_only() -> None:
    env = {"HTTP_PROXY": "http://httpoxy:1", "HTTPS_PROXY": "http://tls:2"}
    assert choose_proxy(None, env, "localhost", tls=False) == ProxyChoice(None)
    choice = choose_proxy(None, {"http_proxy": "http://plain:1", **env}, "localhost", tls=False)
    assert choice.proxy is not None and choice.proxy.host == "plain"


def test_no_proxy_excludes_an_environment_proxy_and_says_so() -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "example.org", "NO_PROXY": "discord.com"}
    assert choose_proxy(None, env, "discord.com").proxy is not None  # lower case no_proxy is the one read
    env["no_proxy"] = ".discord.com"
    choice = choose_proxy(None, env, "gateway.discord.com")
    assert choice == ProxyChoice(None, "HTTPS_PROXY", excluded_by="no_proxy")
    assert choice.describe("gateway.discord.com") == "none (no_proxy excludes gateway.discord.com from HTTPS_PROXY)"


def test_an_unusable_environment_value_names_its_variable_not_its_password() -> None:
    with pytest.raises(InvalidProxyURL) as caught:
        choose_proxy(None, {"ALL_PROXY": "socks4://u:hunter2@proxy"}, "discord.com")
    assert str(caught.value).startswith("environment variable ALL_PROXY: ")
    assert "hunter2" not in str(caught.value)
