"""Configuration loading: valid files, every kind of problem, several at once, and precedence."""

from __future__ import annotations

import typing
from pathlib import Path

import attrs
import pytest

from relay import config as schema
from relay.config import BridgeConfig, LogFormat, Protocol
from relay.configload import Override, default_store_path, load_config, parse_config, secrets_of
from relay.errors import ConfigError
from relay.template import BRIDGE_TOML

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {"DISCORD_TOKEN": "discord-token-for-tests", "MIRAI_VERIFY_KEY": "verify-key-for-tests", "HOME": "/home/u"}
MINIMAL = """
[[mirai.reverse_ws.destinations]]
host = "127.0.0.1"
port = 8080
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=ENV if env is None else env)
    return info.value.problems


# --------------------------------------------------------------------------- valid files


def test_minimal_file_gets_defaults_and_secrets_from_env(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env=ENV)
    assert config.discord.token == "discord-token-for-tests"
    assert config.mirai.verify_key == "verify-key-for-tests"
    assert config.discord.intents == schema.DEFAULT_INTENTS
    (destination,) = config.mirai.reverse_ws.destinations
    assert (destination.host, destination.port, destination.path, destination.protocol) == (
        "127.0.0.1",
        8080,
        "/",
        Protocol.WS,
    )
    assert config.store.path == "/home/u/.local/share/discord-mirai-relay/bridge.sqlite3"


def test_full_file_with_every_kind_of_value(tmp_path: Path) -> None:
    text = """
[discord]
intents = ["guilds", "GUILD_MESSAGES", "MESSAGE_CONTENT"]
shard_count = 4
shard_ids = [0, 2]
api_base_url = "http://127.0.0.1:9000/api/v10/"
gateway_url = "ws://127.0.0.1:9001"
[discord.reconnect]
cap = 10.0
[mirai]
enable_verify = false
bot_id = 1234
reserved_sync_id = "-2"
[mirai.reverse_ws]
extra_headers = { X-Common = "a" }
[mirai.reverse_ws.reconnect]
initial = 2
[[mirai.reverse_ws.destinations]]
name = "ariadne"
host = "localhost"
port = 8081
path = "/ws"
protocol = "wss"
method = "get"
extra_parameters = { token = "abc", n = 1 }
[[mirai.reverse_ws.destinations]]
host = "127.0.0.1"
port = 8082
[store]
path = "data/bridge.sqlite3"
[mapping]
threads = "parent"
long_messages = "refuse"
guild_events = 123456789012345678
admin_role = 42
channels = [1, "2"]
[logging]
level = "debug"
format = "json"
"""
    config = load_config(write(tmp_path, text), env={"DISCORD_TOKEN": "t0ken-value-1"})
    assert config.discord.intents == ("GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT")
    assert (config.discord.shard_count, config.discord.shard_ids) == (4, (0, 2))
    assert config.discord.api_base_url == "http://127.0.0.1:9000/api/v10"
    assert config.discord.reconnect == schema.BackoffConfig(initial=1.0, factor=2.0, cap=10.0)
    # a partial table keeps its own section's defaults (cap 30 here, not BackoffConfig's 60)
    assert config.mirai.reverse_ws.reconnect == schema.BackoffConfig(initial=2.0, factor=2.0, cap=30.0)
    first, second = config.mirai.reverse_ws.destinations
    assert (first.label, first.protocol, first.method) == ("ariadne", Protocol.WSS, "GET")
    assert first.extra_parameters == {"token": "abc", "n": "1"}
    assert second.label == "127.0.0.1:8082/"
    assert config.mirai.verify_key == ""  # enable_verify = false: no key needed
    assert config.store.path == str(tmp_path / "data" / "bridge.sqlite3")  # relative to the file
    assert config.mapping.threads is schema.ThreadMode.PARENT
    assert config.mapping.guild_events == "123456789012345678"
    assert config.mapping.admin_role == "42"
    assert config.mapping.channels == (1, 2)
    assert (config.logging.level, config.logging.format) == ("DEBUG", LogFormat.JSON)


def test_intents_as_bitfield(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[discord]\nintents = 33281\n" + MINIMAL), env=ENV)
    assert config.discord.intents == ("GUILDS", "GUILD_MESSAGES", "MESSAGE_CONTENT")
    assert config.discord.intents_value == 33281


def test_shard_count_auto_is_none(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[discord]\nshard_count = "auto"\n' + MINIMAL), env=ENV)
    assert config.discord.shard_count is None


def test_parse_config_is_pure_on_a_mapping() -> None:
    mapping = {"mirai": {"reverse_ws": {"destinations": [{"host": "h", "port": 1}]}}}
    config = parse_config(mapping, source="<dict>", env=ENV, base_dir="/srv")
    assert config.mirai.reverse_ws.destinations[0].host == "h"
    assert mapping == {"mirai": {"reverse_ws": {"destinations": [{"host": "h", "port": 1}]}}}  # not mutated


def test_store_path_default_follows_xdg_data_home() -> None:
    assert default_store_path({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}) == (
        "/data/discord-mirai-relay/bridge.sqlite3"
    )
    # the XDG spec: a relative XDG_DATA_HOME is invalid and ignored
    assert default_store_path({"XDG_DATA_HOME": "rel", "HOME": "/home/u"}) == (
        "/home/u/.local/share/discord-mirai-relay/bridge.sqlite3"
    )


# --------------------------------------------------------------------------- each kind of problem


def test_type_error_names_path_expectation_and_value(tmp_path: Path) -> None:
    text = MINIMAL + '[[mirai.reverse_ws.destinations]]\nhost = "b"\nport = "80a"\n'
    assert problems_of(tmp_path, text) == (
        'mirai.reverse_ws.destinations[1].port: expected an integer 1–65535, got "80a"',
    )


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[discord]\nlarge_threshold = 10", "discord.large_threshold: expected an integer 50–250, got 10"),
        ("[discord]\nrequest_timeout = 0", "discord.request_timeout: expected a positive number (seconds), got 0"),
        (
            "[discord]\nrequest_timeout = -1.5",
            "discord.request_timeout: expected a positive number (seconds), got -1.5",
        ),
        ("[discord]\ncompress = 1", "discord.compress: expected true or false, got 1"),
        ("[discord]\nmax_retries = true", "discord.max_retries: expected an integer ≥ 0, got true"),
        ("[discord]\nshard_count = 0", 'discord.shard_count: expected "auto" or an integer ≥ 1, got 0'),
        ('[discord]\ntoken_env = "NOT A NAME"', "discord.token_env: expected the name of an environment variable"),
        ('[discord]\napi_base_url = "discord.com"', "discord.api_base_url: expected an http:// or https:// URL"),
        ("[discord.reconnect]\nfactor = 0.5", "discord.reconnect.factor: expected a number ≥ 1, got 0.5"),
        ("[discord.cache]\nmax_members = 0", "discord.cache.max_members: expected an integer ≥ 1, got 0"),
        (
            "[discord.cache]\nmax_members = 10\nmax_members_per_guild = 20",
            "discord.cache.max_members_per_guild: expected at most max_members (10), got 20",
        ),
        ('[mirai]\nreserved_sync_id = ""', 'mirai.reserved_sync_id: expected a non-empty string, got ""'),
        ("[mirai]\nbot_id = -1", "mirai.bot_id: expected an integer 0–9223372036854775807, got -1"),
        ("[outbox]\nmax_events = 0", "outbox.max_events: expected an integer ≥ 1, got 0"),
        ('[mapping]\nlong_messages = "trim"', 'mapping.long_messages: expected one of "split", "refuse", got "trim"'),
        ('[mapping]\nguild_events = "general"', 'mapping.guild_events: expected "system" or a channel id'),
        ('[logging]\nlevel = "verbose"', "logging.level: expected one of"),
        ('[logging]\nformat = "xml"', 'logging.format: expected one of "text", "json", got "xml"'),
    ],
)
def test_value_problems(tmp_path: Path, snippet: str, expected: str) -> None:
    (problem,) = problems_of(tmp_path, snippet + "\n" + MINIMAL)
    assert problem.startswith(expected), problem


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ('host = "h"\nport = 0', "mirai.reverse_ws.destinations[0].port: expected an integer 1–65535, got 0"),
        ('host = "h"\nport = 70000', "mirai.reverse_ws.destinations[0].port: expected an integer 1–65535, got 70000"),
        ('host = "h"\nport = 1\nprotocol = "http"', 'mirai.reverse_ws.destinations[0].protocol: expected one of "ws"'),
        (
            'host = "h"\nport = 1\npath = "ws"',
            'mirai.reverse_ws.destinations[0].path: expected a path starting with "/"',
        ),
        ('host = "ws://h"\nport = 1', "mirai.reverse_ws.destinations[0].host: expected a bare host name"),
        ('host = "h"\nport = 1\nextra_parameters = { a = [1] }', "mirai.reverse_ws.destinations[0].extra_parameters.a"),
    ],
)
def test_destination_problems(tmp_path: Path, destination: str, expected: str) -> None:
    (problem,) = problems_of(tmp_path, f"[[mirai.reverse_ws.destinations]]\n{destination}\n")
    assert problem.startswith(expected), problem


def test_unknown_key_with_did_you_mean(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "[discord]\nintens = []\n[mirai.reverse_ws]\nconect_timeout = 3\n" + MINIMAL)
    assert problems == (
        'discord.intens: unknown key (did you mean "intents"?)',
        'mirai.reverse_ws.conect_timeout: unknown key (did you mean "connect_timeout"?)',
    )


def test_unknown_section_and_unhinted_key(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "[discrod]\nx = 1\n[store]\nzzz = 1\n" + MINIMAL)
    assert problems == ('discrod: unknown key (did you mean "discord"?)', "store.zzz: unknown key")


def test_unknown_intent_name_with_hint(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, '[discord]\nintents = ["GUILDS", "MESAGE_CONTENT"]\n' + MINIMAL)
    assert problem.startswith("discord.intents: expected known intent names")
    assert '"MESAGE_CONTENT" (did you mean "MESSAGE_CONTENT"?)' in problem


def test_unknown_intent_bit(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[discord]\nintents = 131073\n" + MINIMAL)  # bit 17 is unassigned
    assert problem == "discord.intents: expected an integer made of known intent bits, got 131073 (unknown bit 17)"


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, '[[mirai.reverse_ws.destinations]]\npath = "/ws"\n')
    assert problems[0].startswith("mirai.reverse_ws.destinations[0].host: missing; give the host")
    assert problems[1].startswith("mirai.reverse_ws.destinations[0].port: missing; give the port")


def test_no_destination_is_a_problem(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[mirai]\nbot_id = 1\n")
    assert problem.startswith("mirai.reverse_ws.destinations: missing; add at least one")


def test_missing_secrets_name_the_env_vars(tmp_path: Path) -> None:
    text = '[discord]\ntoken_env = "MY_TOKEN"\n' + MINIMAL
    problems = problems_of(tmp_path, text, env={})
    assert len(problems) == 2
    assert problems[0].startswith("discord.token: missing; set the environment variable MY_TOKEN")
    assert problems[1].startswith("mirai.verify_key: missing; set the environment variable MIRAI_VERIFY_KEY")


def test_secrets_may_be_skipped(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={}, require_secrets=False)
    assert config.discord.token == ""


def test_token_with_bot_prefix_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env = {**ENV, "DISCORD_TOKEN": "Bot sekrit-value-123"}
    (problem,) = problems_of(tmp_path, MINIMAL, env=env)
    assert problem.startswith("discord.token (from environment variable DISCORD_TOKEN): must be the bare bot token")
    assert "sekrit" not in problem


def test_secret_values_never_appear_in_problems(tmp_path: Path) -> None:
    text = "[discord]\ntoken = 12345678901\n[mirai]\nverify_key = 98765432101\n" + MINIMAL
    text += '[mirai.reverse_ws]\nextra_headers = { Authorization = ["hidden-header-value"] }\n'
    problems = problems_of(tmp_path, text)
    assert problems == (
        "discord.token: expected a string, got an integer",
        "mirai.verify_key: expected a string, got an integer",
        "mirai.reverse_ws.extra_headers.Authorization: expected a string, got an array",
    )


def test_bad_toml_shows_line_and_column(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, '[discord]\nintents = ["GUILDS"\ncompress = true\n')
    assert problem.startswith("line 3, column")
    assert "TOML syntax error" in problem


def test_bad_toml_does_not_echo_a_secret_line(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, '[discord]\ntoken = "abc\n')
    assert problem.startswith("line 2, column")
    assert "abc" not in problem


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", env=ENV)
    assert "file not found" in info.value.problems[0]
    assert "discord-mirai-relay init" in info.value.problems[0]


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    text = """
[discord]
intens = ["GUILDS"]
large_threshold = "big"
[mirai]
enable_verify = "yes"
[[mirai.reverse_ws.destinations]]
host = "a"
port = 8080
[[mirai.reverse_ws.destinations]]
host = "b"
port = "80a"
protocol = "tcp"
[logging]
level = "loud"
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=ENV)
    paths = [p.split(":")[0] for p in info.value.problems]
    assert paths == [
        "discord.intens",
        "discord.large_threshold",
        "mirai.enable_verify",
        "mirai.reverse_ws.destinations[1].port",
        "mirai.reverse_ws.destinations[1].protocol",
        "logging.level",
    ]
    assert str(info.value).startswith(f"{tmp_path / 'bridge.toml'}: 6 configuration problems:")


def test_cross_field_problems(tmp_path: Path) -> None:
    text = """
[discord]
shard_count = 2
shard_ids = [0, 2, 5]
[discord.reconnect]
initial = 10.0
cap = 5.0
[[mirai.reverse_ws.destinations]]
host = "a"
port = 1
[[mirai.reverse_ws.destinations]]
host = "a"
port = 1
"""
    assert problems_of(tmp_path, text) == (
        "discord.shard_ids: expected ids below shard_count = 2, got 2, 5",
        "discord.reconnect.cap: expected a cap ≥ initial (10), got 5",
        'mirai.reverse_ws.destinations[1]: same label "a:1/" as destinations[0]; give each a distinct `name`',
    )


def test_shard_ids_need_explicit_count(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[discord]\nshard_ids = [0]\n" + MINIMAL)
    assert problem == 'discord.shard_ids: needs an explicit shard_count (not "auto")'


# --------------------------------------------------------------------------- precedence


def test_precedence_cli_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[logging]\nlevel = "ERROR"\nformat = "json"\n' + MINIMAL)
    defaults = load_config(write(tmp_path, MINIMAL), env=ENV)
    assert defaults.logging.level == "INFO"  # defaults

    path = write(tmp_path, '[logging]\nlevel = "ERROR"\nformat = "json"\n[store]\npath = "/file"\n' + MINIMAL)
    from_file = load_config(path, env=ENV)
    assert (from_file.logging.level, from_file.store.path) == ("ERROR", "/file")  # file > defaults

    env = {**ENV, "RELAY_LOG_LEVEL": "warning", "RELAY_STORE_PATH": "/env"}
    from_env = load_config(path, env=env)
    assert (from_env.logging.level, from_env.store.path) == ("WARNING", "/env")  # env > file
    assert from_env.logging.format is LogFormat.JSON  # untouched keys keep the file's value

    cli = [Override("logging.level", "DEBUG", "--log-level"), Override("store.path", "/cli", "--store-path")]
    from_cli = load_config(path, env=env, overrides=cli)
    assert (from_cli.logging.level, from_cli.store.path) == ("DEBUG", "/cli")  # CLI > env


def test_env_secret_overrides_file_secret(tmp_path: Path) -> None:
    path = write(tmp_path, '[discord]\ntoken = "from-the-file"\n[mirai]\nverify_key = "file-key"\n' + MINIMAL)
    assert load_config(path, env={}).discord.token == "from-the-file"
    config = load_config(path, env={"DISCORD_TOKEN": "from-the-env", "MIRAI_VERIFY_KEY": ""})
    assert config.discord.token == "from-the-env"
    assert config.mirai.verify_key == "file-key"  # an empty variable does not erase the file's value


def test_problem_names_the_override_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            write(tmp_path, MINIMAL),
            env={**ENV, "RELAY_LOG_FORMAT": "xml"},
            overrides=[Override("logging.level", "LOUD", "--log-level")],
        )
    assert info.value.problems == (
        'logging.level (from --log-level): expected one of "TRACE", "DEBUG", "INFO", "WARNING", "ERROR", '
        '"CRITICAL", got "LOUD"',
        'logging.format (from environment variable RELAY_LOG_FORMAT): expected one of "text", "json", got "xml"',
    )


# --------------------------------------------------------------------------- the template and bridge.toml


def test_repo_bridge_toml_is_the_init_template() -> None:
    assert (REPO_ROOT / "bridge.toml").read_text(encoding="utf-8") == BRIDGE_TOML


def test_template_holds_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BRIDGE_TOML), env=ENV)
    example = schema.DestinationConfig(host="127.0.0.1", port=8000, path="/")
    expected = BridgeConfig(
        discord=attrs.evolve(schema.DiscordConfig(), token=ENV["DISCORD_TOKEN"]),
        mirai=attrs.evolve(
            schema.MiraiConfig(),
            verify_key=ENV["MIRAI_VERIFY_KEY"],
            reverse_ws=attrs.evolve(schema.ReverseWsConfig(), destinations=(example,)),
        ),
        store=schema.StoreConfig(path=default_store_path(ENV)),
    )
    assert config == expected


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        field_type = hints[field.name]
        if attrs.has(field_type):
            keys.extend(_all_keys(field_type, f"{prefix}{field.name}."))
        elif typing.get_origin(field_type) is tuple and attrs.has(typing.get_args(field_type)[0]):
            keys.extend(_all_keys(typing.get_args(field_type)[0], f"{prefix}{field.name}[]."))
        else:
            keys.append(prefix + field.name)
    return keys


def test_template_mentions_every_key() -> None:
    import tomllib

    data = tomllib.loads(BRIDGE_TOML)
    missing = []
    for key in _all_keys(BridgeConfig):
        node: object = data
        for part in key.split("."):
            if isinstance(node, list):
                node = node[0]
            name = part.removesuffix("[]")
            node = node.get(name, None) if isinstance(node, dict) else None
        if node is None and f"# {key.rsplit('.', 1)[-1]} = " not in BRIDGE_TOML:  # secrets are commented out
            missing.append(key)
    assert missing == [], f"add these keys of relay/config.py to relay/template.py: {missing}"


def test_template_has_no_secret_values() -> None:
    import tomllib

    data = tomllib.loads(BRIDGE_TOML)
    assert "token" not in data["discord"]
    assert "verify_key" not in data["mirai"]


def test_secrets_of_lists_every_secret(tmp_path: Path) -> None:
    text = MINIMAL + 'extra_headers = { Authorization = "header-secret" }\n'
    config = load_config(write(tmp_path, text), env=ENV)
    assert set(secrets_of(config)) == {ENV["DISCORD_TOKEN"], ENV["MIRAI_VERIFY_KEY"], "header-secret"}


def test_repr_never_shows_secrets(tmp_path: Path) -> None:
    text = MINIMAL + 'extra_headers = { Authorization = "header-secret" }\n'
    config = load_config(write(tmp_path, text), env=ENV)
    shown = repr(config) + str(config)
    for secret in secrets_of(config):
        assert secret not in shown


def test_relative_store_path_from_a_flag_is_relative_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = config_dir / "bridge.toml"
    path.write_text('[store]\npath = "in-file.db"\n' + MINIMAL, encoding="utf-8")
    assert load_config(path, env=ENV).store.path == str(config_dir / "in-file.db")
    flag = [Override("store.path", "from-flag.db", "--store-path")]
    assert load_config(path, env=ENV, overrides=flag).store.path == str(work / "from-flag.db")
    assert load_config(path, env={**ENV, "RELAY_STORE_PATH": "env.db"}).store.path == str(work / "env.db")


def test_nan_and_infinity_are_refused(tmp_path: Path) -> None:
    text = "[discord]\nrequest_timeout = inf\n[discord.reconnect]\nfactor = nan\n" + MINIMAL
    assert problems_of(tmp_path, text) == (
        "discord.request_timeout: expected a positive number (seconds), got inf",
        "discord.reconnect.factor: expected a number ≥ 1, got nan",
    )


def test_readme_documents_every_key() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

    def documented(key: str) -> bool:
        parts = key.replace("[]", "").split(".")
        return f"`{parts[-1]}`" in readme or f"`{'.'.join(parts[-2:])}`" in readme

    missing = [key for key in _all_keys(BridgeConfig) if not documented(key)]
    assert missing == [], f"document these keys in README.md's configuration reference: {missing}"


# --------------------------------------------------------------------------- [mirai] ids


def test_ids_default_to_snowflakes_and_small_is_accepted(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL), env=ENV).mirai.ids is schema.IdMode.SNOWFLAKE
    small = load_config(write(tmp_path, '[mirai]\nids = "small"\nbot_id = 10000\n' + MINIMAL), env=ENV)
    assert small.mirai.ids is schema.IdMode.SMALL and small.mirai.bot_id == 10000


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[mirai]\nids = "tiny"', 'mirai.ids: expected one of "snowflake", "small", got "tiny"'),
        (
            '[mirai]\nids = "small"\nbot_id = 1100000000000000001',
            'mirai.bot_id: with ids = "small", expected 0 or a number below 1000000000000000 (presented ids start '
            "there), got 1100000000000000001",
        ),
    ],
)
def test_ids_problems(tmp_path: Path, snippet: str, expected: str) -> None:
    (problem,) = problems_of(tmp_path, snippet + "\n" + MINIMAL)
    assert problem == expected


SECRET = "s3cr3t-value"


@pytest.mark.parametrize(
    "text",
    [
        f'[mirai.reverse_ws.extra_headers]\nAuthorization = "Bearer {SECRET}\n',
        f'[mirai.reverse_ws]\nextra_headers = {{ Authorization = "Bearer {SECRET}" \n',
        f'[mirai.reverse_ws]\nextra_parameters = {{ access = "{SECRET}" \n',
        '[[mirai.reverse_ws.destinations]]\nhost = "h"\n'
        f'[mirai.reverse_ws.destinations.extra_parameters]\nsig = "{SECRET}\n',
        f'[discord]\ntoken = "{SECRET}\n',
        f'[discord]\napi_base_url = "https://user:{SECRET}@example.com\n',
        f'[discord]\nintents = [\n  "{SECRET}=", \n  "x" "y"\n]\n',
        f'[discord]\ntoken = """\n{SECRET}=\n"""x\n',
    ],
)
def test_a_syntax_error_never_quotes_a_value(tmp_path: Path, text: str) -> None:
    # issue 15: only token = / verify_key = lines were masked; a header, a parameter or a URL was echoed
    (problem,) = problems_of(tmp_path, text)
    assert "TOML syntax error" in problem
    assert SECRET not in problem and "Bearer" not in problem and SECRET[:4] not in problem


def test_a_syntax_error_still_points_at_the_key_or_table(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[discord]\ncompress = tru\n")
    assert "near `compress = …`" in problem
    (problem,) = problems_of(tmp_path, "[discord\ncompress = true\n")
    assert "near `[discord`" in problem


def test_extra_parameters_values_are_secrets_as_written_and_as_encoded(tmp_path: Path) -> None:
    text = (
        '[mirai.reverse_ws]\nextra_parameters = { access = "a b/c" }\n'
        '[[mirai.reverse_ws.destinations]]\nhost = "h"\nport = 1\nextra_parameters = { sig = "per-destination" }\n'
    )
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    found = secrets_of(load_config(path, env=ENV))
    assert {"a b/c", "a+b%2Fc", "a%20b%2Fc", "per-destination"} <= set(found)


def test_a_wrong_extra_parameter_value_is_not_echoed(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[mirai.reverse_ws]\nextra_parameters = { flag = true }\n")
    assert problem == "mirai.reverse_ws.extra_parameters.flag: expected a string, got a boolean"


def test_backfill_bounds_are_validated_with_their_paths(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "[discord.backfill]\nmax_age_seconds = 0\nmax_messages = 50\n" + MINIMAL), env=ENV
    )
    assert (config.discord.backfill.max_age_seconds, config.discord.backfill.max_messages) == (0, 50)
    problems = problems_of(tmp_path, '[discord.backfill]\nmax_age_seconds = -1\nmax_messages = "many"\nlimit = 3\n')
    assert any(p.startswith("discord.backfill.max_age_seconds: expected") for p in problems), problems
    assert any(p.startswith("discord.backfill.max_messages: expected") for p in problems), problems
    assert any(p.startswith("discord.backfill.limit: unknown key") for p in problems), problems
