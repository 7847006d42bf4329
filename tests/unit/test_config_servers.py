"""Configuration of the listening mirai adapters (issue 13): ``[mirai] adapters``, ``[mirai.ws]``,
``[mirai.http]``, ``[mirai.uploads]``; every problem names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.configload import is_loopback_host, load_config
from relay.errors import ConfigError

ENV = {"DISCORD_TOKEN": "discord-token-for-tests", "MIRAI_VERIFY_KEY": "verify-key-for-tests", "HOME": "/home/u"}
DESTINATION = """
[[mirai.reverse_ws.destinations]]
host = "127.0.0.1"
port = 9000
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=ENV)


def problems_of(tmp_path: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_defaults_run_reverse_ws_only_and_listen_on_loopback(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, DESTINATION), env=ENV)
    mirai = config.mirai
    assert mirai.adapters == ("reverse-ws",)
    assert mirai.runs("reverse-ws") and not mirai.runs("ws") and not mirai.runs("http")
    assert (mirai.ws.host, mirai.ws.port) == ("127.0.0.1", 8080)
    assert (mirai.http.host, mirai.http.port, mirai.http.cors) == ("127.0.0.1", 8080, ("*",))
    assert mirai.http.unread_queue_max_size == 100  # mirai-api-http's default
    assert (mirai.uploads.retention_seconds, mirai.uploads.total_bytes) == (86400, 512 * 1024 * 1024)


def test_ws_and_http_without_destinations(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            """
[mirai]
adapters = ["ws", "http"]
[mirai.ws]
host = "::1"
port = 9001
[mirai.http]
host = "::1"
port = 9001
cors = ["example.com", "https://app.example.com"]
unread_queue_max_size = 5
[mirai.uploads]
retention_seconds = 60
total_bytes = 1000000
""",
        ),
        env=ENV,
    )
    mirai = config.mirai
    assert mirai.adapters == ("ws", "http")
    assert mirai.reverse_ws.destinations == ()
    assert (mirai.ws.host, mirai.ws.port, mirai.http.port) == ("::1", 9001, 9001)
    assert mirai.http.cors == ("example.com", "https://app.example.com")
    assert mirai.http.unread_queue_max_size == 5
    assert (mirai.uploads.retention_seconds, mirai.uploads.total_bytes) == (60, 1000000)


def test_destinations_are_required_only_with_reverse_ws(tmp_path: Path) -> None:
    assert any(
        p.startswith("mirai.reverse_ws.destinations: missing") and '"reverse-ws" out of mirai.adapters' in p
        for p in problems_of(tmp_path, '[mirai]\nadapters = ["reverse-ws", "http"]\n')
    )
    load(tmp_path, '[mirai]\nadapters = ["http"]\n')


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("adapters = []", "mirai.adapters: expected a non-empty list of adapter names"),
        ('adapters = "ws"', "mirai.adapters: expected a non-empty list of adapter names"),
        ('adapters = ["ws", "ws"]', "mirai.adapters: expected a list of distinct adapter names"),
        (
            'adapters = ["websocket"]',
            'mirai.adapters: expected adapter names from "reverse-ws", "ws", "http", got an array with unknown '
            '"websocket"',
        ),
        ('adapters = ["htp"]', '(did you mean "http"?)'),
    ],
)
def test_adapter_list_problems(tmp_path: Path, snippet: str, expected: str) -> None:
    problems = problems_of(tmp_path, f"[mirai]\n{snippet}\n" + DESTINATION)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[mirai.ws]\nport = 0", "mirai.ws.port: expected an integer 1–65535, got 0"),
        ('[mirai.ws]\nhost = "ws://0.0.0.0"', "mirai.ws.host: expected a bare address or host name"),
        ('[mirai.ws]\nhost = ""', "mirai.ws.host: expected an address or host name to listen on"),
        ('[mirai.http]\nhost = "[::1]"', "mirai.http.host: expected a bare address or host name"),
        ('[mirai.http]\nport = "8080"', 'mirai.http.port: expected an integer 1–65535, got "8080"'),
        ('[mirai.http]\ncors = "*"', "mirai.http.cors: expected a list of allowed origins"),
        ('[mirai.http]\ncors = [""]', "mirai.http.cors: expected a list of allowed origins"),
        ("[mirai.http]\nunread_queue_max_size = 0", "mirai.http.unread_queue_max_size: expected an integer 1–10000"),
        ("[mirai.http]\nunread_queue_max_size = 10001", "mirai.http.unread_queue_max_size: expected an integer"),
        (
            "[mirai.http]\nunread_queue = 1",
            'mirai.http.unread_queue: unknown key (did you mean "unread_queue_max_size"',
        ),
        ("[mirai.uploads]\nretention_seconds = 0", "mirai.uploads.retention_seconds: expected an integer ≥ 1"),
        ("[mirai.uploads]\ntotal_bytes = -1", "mirai.uploads.total_bytes: expected an integer ≥ 1"),
    ],
)
def test_value_problems_name_their_key(tmp_path: Path, snippet: str, expected: str) -> None:
    problems = problems_of(tmp_path, DESTINATION + snippet + "\n")
    assert any(expected in p for p in problems), problems


def test_listening_beyond_loopback_without_verify_is_refused(tmp_path: Path) -> None:
    text = """
[mirai]
enable_verify = false
adapters = ["ws", "http"]
[mirai.ws]
host = "0.0.0.0"
[mirai.http]
host = "0.0.0.0"
port = 8081
"""
    problems = problems_of(tmp_path, text)
    assert any(p.startswith('mirai.ws.host: "0.0.0.0" lets other machines reach the ws adapter') for p in problems)
    assert any(p.startswith('mirai.http.host: "0.0.0.0" lets other machines reach the http adapter') for p in problems)
    assert all("enable_verify = true" in p for p in problems)
    # the same on loopback, or with verify on, is fine; an adapter that is off does not listen
    load(tmp_path, text.replace('"0.0.0.0"', '"127.0.0.1"'))
    load(
        tmp_path,
        text.replace('adapters = ["ws", "http"]', 'adapters = ["http"]').replace(
            '[mirai.http]\nhost = "0.0.0.0"', '[mirai.http]\nhost = "localhost"'
        ),
    )
    load(tmp_path, text.replace("enable_verify = false", "enable_verify = true"))


def test_a_shared_port_needs_the_same_host(tmp_path: Path) -> None:
    text = '[mirai]\nadapters = ["ws", "http"]\n[mirai.ws]\nhost = "127.0.0.1"\n[mirai.http]\nhost = "::1"\n'
    (problem,) = problems_of(tmp_path, text)
    assert problem.startswith('mirai.http.host: port 8080 is also mirai.ws.port but on host "127.0.0.1"')
    load(tmp_path, text.replace('host = "::1"', 'host = "::1"\nport = 8081'))


def test_destination_names_may_not_look_like_a_listening_framework_cursor(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, DESTINATION + 'name = "ws:1234:all"\n')
    assert any(p.startswith("mirai.reverse_ws.destinations[0].name:") for p in problems)
    load(tmp_path, DESTINATION.replace('"127.0.0.1"', '"ws"'))  # label "ws:9000/" is no cursor name


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.2", False),
        ("bridge.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_summarises_the_listening_adapters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from relay.cli import main

    path = _write(tmp_path, '[mirai]\nadapters = ["ws", "http"]\n[mirai.http]\ncors = ["example.com"]\n')
    assert main(["check", str(path)], env=ENV) == 0
    out = capsys.readouterr().out
    assert "mirai adapters: ws, http" in out
    assert "ws adapter:     ws://127.0.0.1:8080/all, /message, /event (and the upload routes)" in out
    assert "http adapter:   http://127.0.0.1:8080 (the same port), cors example.com, 100 unread events" in out
    assert "destinations:   0" in out
