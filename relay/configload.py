"""Loading and validating ``bridge.toml``.

Two layers, towncrier style:

* :func:`load_config` does the I/O: read the file, parse TOML (syntax errors carry line and column), then
  hand the mapping to :func:`parse_config`.
* :func:`parse_config` is pure: it layers the sources (CLI overrides > environment > file > defaults),
  checks every value against the schema in :mod:`relay.config`, collects **every** problem with its TOML
  path (``mirai.reverse_ws.destinations[1].port: expected an integer 1–65535, got "80a"``), and only then
  structures the checked mapping into the frozen attrs classes with the cattrs config converter.

Secrets (``discord.token``, ``mirai.verify_key``, header values) are never echoed in problem messages.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import json
import os
import re
import sys
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
from cattrs.preconf.tomllib import make_converter

from relay.config import (
    INTENT_BITS,
    MIRAI_ADAPTERS,
    MIRAI_EVENT_TYPES,
    PROXY_NONE,
    ActivityType,
    BackfillConfig,
    BackoffConfig,
    BridgeConfig,
    DestinationConfig,
    DiscordCacheConfig,
    DiscordConfig,
    HttpServerConfig,
    IdMode,
    LoggingConfig,
    MappingConfig,
    MiraiConfig,
    OutboxConfig,
    PresenceConfig,
    RobotConfig,
    RobotSignature,
    ServerConfig,
    StoreConfig,
    UploadsConfig,
    WebhookDestinationConfig,
    WebhookSigning,
    WsServerConfig,
)
from relay.errors import ConfigError, InvalidProxyURL
from relay.ids import PRESENTED_MIN
from relay.proxyurl import parse_proxy_url
from relay.signatures import is_standard_secret

if sys.version_info >= (3, 11):  # noqa: UP036 - kept so the tomli fallback works if requires-python drops
    import tomllib
else:  # pragma: no cover - the declared dependency tomli fills in on older interpreters
    import tomli as tomllib

__all__ = [
    "ENV_OVERRIDES",
    "LOG_LEVELS",
    "Override",
    "default_store_path",
    "load_config",
    "make_config_converter",
    "parse_config",
    "secrets_of",
]

APP_DIR_NAME: Final = "discord-mirai-relay"
STORE_FILE_NAME: Final = "bridge.sqlite3"

#: Log level names accepted in ``[logging] level`` and ``--log-level`` (TRACE = 5 is ours, see relay.logs).
LOG_LEVELS: Final[tuple[str, ...]] = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Environment variables that override a file value (and are overridden by CLI flags). The secrets have
#: their own variables, named in the file by ``token_env`` / ``verify_key_env``.
ENV_OVERRIDES: Final[Mapping[str, str]] = {
    "RELAY_LOG_LEVEL": "logging.level",
    "RELAY_LOG_FORMAT": "logging.format",
    "RELAY_STORE_PATH": "store.path",
}

#: Paths whose values must never be echoed in a problem message.
_SECRET_KEYS: Final = frozenset({"token", "verify_key", "proxy", "secret"})
_SECRET_TABLES: Final = frozenset({"extra_headers", "extra_parameters"})

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HTTP_METHOD = re.compile(r"[A-Z]+\Z")
_MAX_SNOWFLAKE: Final = 2**63 - 1


@attrs.frozen
class Override:
    """One value set from outside the file: ``path`` is a dotted TOML path, ``origin`` names where it came
    from (``--log-level``, ``environment variable RELAY_LOG_LEVEL``) so problems can point at it."""

    path: str
    value: object
    origin: str


def make_config_converter() -> cattrs.Converter:
    """The CONFIG converter: TOML-shaped data to the frozen config classes; unknown keys are errors."""
    return make_converter(forbid_extra_keys=True)


_CONVERTER: Final = make_config_converter()


# --------------------------------------------------------------------------- public API


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str],
    overrides: Sequence[Override] = (),
    require_secrets: bool = True,
) -> BridgeConfig:
    """Read, check and build the configuration from ``path``.

    Raises :class:`ConfigError` listing every problem (file missing, TOML syntax with line and column,
    unknown keys, wrong types, out-of-range values, missing secrets).
    """
    source = os.fspath(path)
    file = Path(source)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [f"file not found; create one with `discord-mirai-relay init {source}`"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read the file: {exc}"]) from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [_describe_toml_error(exc, text)]) from None
    return parse_config(
        mapping,
        source=source,
        env=env,
        overrides=overrides,
        base_dir=file.resolve().parent,
        require_secrets=require_secrets,
    )


def parse_config(
    mapping: Mapping[str, Any],
    *,
    source: str,
    env: Mapping[str, str],
    overrides: Sequence[Override] = (),
    base_dir: str | os.PathLike[str] | None = None,
    require_secrets: bool = True,
) -> BridgeConfig:
    """Check ``mapping`` (the parsed TOML) and build a :class:`BridgeConfig`.

    Layering: ``overrides`` (CLI) > ``env`` (:data:`ENV_OVERRIDES`, and the secrets' variables) > the
    mapping > defaults. A relative ``store.path`` written in the mapping is taken relative to ``base_dir``
    (the config file's folder; the current directory when None); one given by an override or the
    environment, relative to the current directory. With ``require_secrets`` a missing Discord token, or a
    missing verify key while ``enable_verify`` is on, is a problem that names the variable to set.
    """
    checker = _Checker()
    data = _deep_copy(mapping)
    layered: list[Override] = [
        Override(dotted, env[var], f"environment variable {var}")
        for var, dotted in ENV_OVERRIDES.items()
        if env.get(var)
    ]
    layered.extend(overrides)
    for override in layered:
        if _set_dotted(data, override.path, override.value):
            checker.origins[override.path] = override.origin
        else:
            checker.add(override.path, f"cannot be set by {override.origin}: a parent key is not a table")

    normalized = checker.table(BridgeConfig, data, "", BridgeConfig())
    if checker.problems:
        raise ConfigError(source, checker.problems)

    _cross_checks(checker, normalized)
    # A relative path from the file is relative to the file; one from a flag or variable, to the current folder.
    _resolve_store_path(normalized, env, None if "store.path" in checker.origins else base_dir)
    _apply_secrets(checker, normalized, env, require_secrets=require_secrets)
    if checker.problems:
        raise ConfigError(source, checker.problems)

    try:
        return _CONVERTER.structure(normalized, BridgeConfig)
    except Exception as exc:  # the checks above should make this unreachable; never show a raw traceback
        problems = cattrs.transform_error(exc, path="config") if isinstance(exc, cattrs.BaseValidationError) else []
        raise ConfigError(source, problems or [f"cannot build the configuration: {type(exc).__name__}"]) from None


def default_store_path(env: Mapping[str, str]) -> str:
    """``$XDG_DATA_HOME/discord-mirai-relay/bridge.sqlite3``, else ``~/.local/share/...`` (XDG base dirs)."""
    data_home = env.get("XDG_DATA_HOME", "")
    if not data_home or not os.path.isabs(data_home):  # the XDG spec says relative values are ignored
        home = env.get("HOME") or os.path.expanduser("~")
        data_home = os.path.join(home, ".local", "share")
    return os.path.join(data_home, APP_DIR_NAME, STORE_FILE_NAME)


def secrets_of(config: BridgeConfig) -> tuple[str, ...]:
    """Every secret value in ``config``, for the log redaction filter: the token, the verify key, the values of
    extra headers (which often carry credentials) and the password of ``[discord] proxy``."""
    found: list[str] = [config.discord.token, config.mirai.verify_key, configured_proxy_password(config.discord.proxy)]
    reverse_ws = config.mirai.reverse_ws
    found.extend(reverse_ws.extra_headers.values())
    for destination in reverse_ws.destinations:
        found.extend(destination.extra_headers.values())
    webhook = config.mirai.webhook
    found.extend(webhook.extra_headers.values())
    for hook in webhook.destinations:
        found.extend([*hook.extra_headers.values(), hook.secret])
    found.extend(robot.secret for robot in config.robots)
    found.extend(_query_secrets(reverse_ws.extra_parameters))
    for destination in reverse_ws.destinations:
        found.extend(_query_secrets(destination.extra_parameters))
    return tuple(dict.fromkeys(s for s in found if s))


def _query_secrets(parameters: Mapping[str, str]) -> list[str]:
    """``extra_parameters`` values (frameworks take tokens there too), as written and as they appear in a URL's
    query string once encoded, so a logged request target is masked as well."""
    found: list[str] = []
    for value in parameters.values():
        found.extend((value, urllib.parse.quote_plus(value), urllib.parse.quote(value, safe="")))
    return found


def configured_proxy_password(value: str) -> str:
    """The password inside a ``[discord] proxy`` value ("" when it has none or is not a URL)."""
    if value in ("", PROXY_NONE):
        return ""
    try:
        return parse_proxy_url(value).password
    except InvalidProxyURL:
        return ""


# --------------------------------------------------------------------------- the checker


class _Invalid(Exception):
    """Internal: a value failed a check. ``expected`` completes "expected ..."."""

    def __init__(self, expected: str, *, hint: str = "", show_value: bool = True) -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint
        self.show_value = show_value


Rule = Callable[[object], object]


@attrs.define
class _Checker:
    problems: list[str] = attrs.Factory(list)
    origins: dict[str, str] = attrs.Factory(dict)

    def add(self, path: str, message: str) -> None:
        origin = self.origins.get(_strip_indexes(path)) or self.origins.get(path)
        where = f"{path} (from {origin})" if origin else path
        self.problems.append(f"{where}: {message}")

    def table(self, cls: type, data: object, path: str, default: object) -> dict[str, Any]:
        """Check one TOML table against attrs class ``cls``; return it normalized, defaults filled in from
        ``default`` (so a partial ``[mirai.reverse_ws.reconnect]`` keeps that section's own defaults)."""
        if not isinstance(data, Mapping):
            self.add(path or "(top level)", f"expected a table, got {_describe(data, secret=False)}")
            return {}
        fields = attrs.fields_dict(cls)
        hints = typing.get_type_hints(cls)
        names = list(fields)
        for key in data:
            if key not in fields:
                hint = _mirai_api_http_hint(path, str(key), names) or _did_you_mean(str(key), names)
                self.add(_join(path, str(key)), f"unknown key{hint}")
        out: dict[str, Any] = {}
        for name in names:
            child = _join(path, name)
            default_value = getattr(default, name)
            if name not in data:
                if (cls, name) in _REQUIRED:
                    self.add(child, f"missing; {_REQUIRED[(cls, name)]}")
                    continue
                out[name] = _CONVERTER.unstructure(default_value)
                continue
            value = data[name]
            field_type = hints[name]
            secret = name in _SECRET_KEYS or path.rsplit(".", 1)[-1] in _SECRET_TABLES
            if attrs.has(field_type):
                out[name] = self.table(field_type, value, child, default_value)
            elif typing.get_origin(field_type) is tuple and attrs.has(typing.get_args(field_type)[0]):
                out[name] = self.array_of_tables(typing.get_args(field_type)[0], value, child)
            elif typing.get_origin(field_type) is dict:
                out[name] = self.string_table(value, child, secret_values=name in _SECRET_TABLES)
            else:
                rule = _RULES.get((cls, name)) or _rule_for_type(field_type)
                try:
                    out[name] = rule(value)
                except _Invalid as bad:
                    shown = _describe(value, secret=secret or not bad.show_value)
                    self.add(child, f"expected {bad.expected}, got {shown}{bad.hint}")
        return out

    def array_of_tables(self, cls: type, data: object, path: str) -> list[dict[str, Any]]:
        if not isinstance(data, list):
            self.add(path, f"expected an array of tables ([[{path}]]), got {_describe(data, secret=False)}")
            return []
        return [self.table(cls, item, f"{path}[{i}]", cls()) for i, item in enumerate(data)]

    def string_table(self, data: object, path: str, *, secret_values: bool) -> dict[str, str]:
        if not isinstance(data, Mapping):
            self.add(path, f"expected a table of strings, got {_describe(data, secret=False)}")
            return {}
        out: dict[str, str] = {}
        for key, value in data.items():
            if isinstance(value, str):
                out[str(key)] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[str(key)] = str(value)  # `port = 8080` in extra_parameters means the text "8080"
            else:
                shown = _describe(value, secret=secret_values)
                self.add(_join(path, str(key)), f"expected a string, got {shown}")
        return out


# --------------------------------------------------------------------------- leaf rules


def _rule_for_type(field_type: object) -> Rule:
    if field_type is bool:
        return _boolean
    if field_type is int:
        return _int_range(0, None)
    if field_type is float:
        return _positive_number
    if field_type is str:
        return _string
    if isinstance(field_type, type) and issubclass(field_type, enum.Enum):
        return _choice(tuple(str(m.value) for m in field_type))
    raise AssertionError(f"no config rule for type {field_type!r}; add one to relay.configload")


def _boolean(value: object) -> object:
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return value


def _string(value: object) -> object:
    if not isinstance(value, str):
        raise _Invalid("a string")
    return value


def _non_empty_string(value: object) -> object:
    if not isinstance(value, str) or not value:
        raise _Invalid("a non-empty string")
    return value


def _int_range(low: int, high: int | None) -> Rule:
    expected = f"an integer {low}–{high}" if high is not None else f"an integer ≥ {low}"

    def rule(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(expected)
        if value < low or (high is not None and value > high):
            raise _Invalid(expected)
        return value

    return rule


def _positive_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value == float("inf"):
        raise _Invalid("a positive number (seconds)")
    return float(value)


def _number_at_least(low: float) -> Rule:
    def rule(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value < float("inf"):
            raise _Invalid(f"a number ≥ {low:g}")
        return float(value)

    return rule


def _choice(options: tuple[str, ...], *, fold_case: bool = False) -> Rule:
    listed = ", ".join(json.dumps(o) for o in options)

    def rule(value: object) -> object:
        if isinstance(value, str):
            candidate = value.upper() if fold_case else value
            if candidate in options:
                return candidate
            raise _Invalid(f"one of {listed}", hint=_did_you_mean(candidate, options))
        raise _Invalid(f"one of {listed}")

    return rule


def _env_var_name(value: object) -> object:
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise _Invalid("the name of an environment variable (letters, digits, _)")
    return value


def _http_url(value: object) -> object:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _Invalid('an http:// or https:// URL such as "https://discord.com/api/v10"')
    return value.rstrip("/")


def _ws_url_or_empty(value: object) -> object:
    if not isinstance(value, str) or (value and not value.startswith(("ws://", "wss://"))):
        raise _Invalid('a ws:// or wss:// URL, or "" to ask Discord (GET /gateway/bot)')
    return value


def _proxy(value: object) -> object:
    """``""`` (the environment's proxy), ``"none"``, or a proxy URL checked by :func:`parse_proxy_url` (whose
    problems never quote the password)."""
    if not isinstance(value, str):
        raise _Invalid(_PROXY_EXPECTED)
    if value.strip() in ("", PROXY_NONE):
        return value.strip()
    try:
        parse_proxy_url(value, where="discord.proxy")
    except InvalidProxyURL as exc:
        raise _Invalid(_PROXY_EXPECTED, hint=f": the URL {exc.problem}", show_value=False) from None
    return value.strip()


_PROXY_EXPECTED: Final = (
    'a proxy URL such as "socks5h://127.0.0.1:1080" or "http://user:password@proxy:3128", '
    '"" (the environment\'s HTTPS_PROXY / ALL_PROXY) or "none"'
)

#: hosts whose streaming URLs Discord shows (docs/discord.md §2.5: "Only https://twitch.tv/ and https://youtube.com/")
_STREAMING_HOSTS: Final = ("twitch.tv", "youtube.com")


def _streaming_url(value: object) -> object:
    if not isinstance(value, str):
        raise _Invalid("a https://twitch.tv/... or https://youtube.com/... URL")
    if not value:
        return value
    parts = urllib.parse.urlsplit(value)
    host = (parts.hostname or "").removeprefix("www.").removeprefix("m.")
    if parts.scheme != "https" or host not in _STREAMING_HOSTS:
        raise _Invalid(
            "a https://twitch.tv/... or https://youtube.com/... URL",
            hint=" (Discord shows a streaming activity only with a Twitch or YouTube URL)",
        )
    return value


def _sync_id(value: object) -> object:
    """mirai-api-http's ``reservedSyncId`` is a string, but its YAML reads ``-1`` as a number and turns it into
    the text "-1"; a TOML number is taken the same way."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _Invalid('a string or an integer such as "-1"')
    if not value:
        raise _Invalid("a non-empty string")
    return value


def _intents(value: object) -> object:
    """A list of intent names (case-insensitive) or an integer bitfield; normalized to a tuple of names."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _Invalid("a list of intent names or a non-negative integer bitfield")
        known = sum(INTENT_BITS.values())
        if value & ~known:
            unknown_bits = [str(bit) for bit in range(value.bit_length()) if value & ~known & (1 << bit)]
            raise _Invalid(
                "an integer made of known intent bits",
                hint=f" (unknown bit{'s' if len(unknown_bits) > 1 else ''} {', '.join(unknown_bits)})",
            )
        return [name for name, bit in INTENT_BITS.items() if value & bit]
    if not isinstance(value, list):
        raise _Invalid("a list of intent names or an integer bitfield")
    names: list[str] = []
    unknown: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise _Invalid("a list of intent names (strings) or an integer bitfield")
        name = item.upper()
        if name in INTENT_BITS:
            if name not in names:
                names.append(name)
        else:
            unknown.append(f"{json.dumps(item)}{_did_you_mean(name, list(INTENT_BITS))}")
    if unknown:
        raise _Invalid("known intent names", hint=f" with unknown {'; '.join(unknown)}", show_value=False)
    return names


def _shard_count(value: object) -> object:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Invalid('"auto" or an integer ≥ 1')
    return value


def _shard_ids(value: object) -> object:
    if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in value):
        raise _Invalid("a list of shard ids (integers ≥ 0)")
    if len(set(value)) != len(value):
        raise _Invalid("a list of distinct shard ids")
    return value


def _snowflake(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_SNOWFLAKE:
        return value
    return None


def _channel_ids(value: object) -> object:
    if not isinstance(value, list):
        raise _Invalid("a list of channel ids")
    ids = [_snowflake(item) for item in value]
    if any(i is None for i in ids):
        raise _Invalid("a list of channel ids (positive integers)")
    return ids


def _guild_events(value: object) -> object:
    if value == "system":
        return value
    channel = _snowflake(value)
    if channel is None:
        raise _Invalid('"system" or a channel id')
    return str(channel)


def _role(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str):
        return value
    raise _Invalid('a role name, a role id, or "" (memberAdmin unsupported)')


def _host(value: object) -> object:
    if not isinstance(value, str) or not value:
        raise _Invalid("a host name or address")
    if "://" in value or "/" in value:
        raise _Invalid("a bare host name or address", hint=" (put the scheme in `protocol` and the path in `path`)")
    return value


def _ws_path(value: object) -> object:
    if not isinstance(value, str) or not value.startswith("/"):
        raise _Invalid('a path starting with "/"')
    return value


def _http_method(value: object) -> object:
    if not isinstance(value, str) or not _HTTP_METHOD.match(value.upper()):
        raise _Invalid('an HTTP method such as "GET"')
    return value.upper()


def _webhook_url(value: object) -> object:
    """An http(s) URL with a host; one without a scheme gets http:// (mirai-api-http accepts ``localhost:9999/x``)."""
    if not isinstance(value, str) or not value.strip():
        raise _Invalid('an http:// or https:// URL such as "http://127.0.0.1:9999/events"')
    url = value.strip()
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if scheme.lower() not in ("http", "https") or not host or host.startswith(":") or any(c.isspace() for c in url):
        raise _Invalid('an http:// or https:// URL such as "http://127.0.0.1:9999/events"')
    return url


def _env_var_name_or_empty(value: object) -> object:
    if value == "":
        return value
    return _env_var_name(value)


def _secret_not_here(value: object) -> object:
    raise _Invalid(
        "no secret in the file",
        hint="; put it in an environment variable and name that in secret_env",
        show_value=False,
    )


def _event_types(value: object) -> object:
    """mirai event type names (exact case, docs/mirai-api-http.md §9); unknown ones are refused with a did-you-mean."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid('a list of mirai event type names, e.g. ["GroupMessage"]; [] = all')
    unknown = [
        f"{json.dumps(item)}{_did_you_mean(item, MIRAI_EVENT_TYPES)}" for item in value if item not in MIRAI_EVENT_TYPES
    ]
    if unknown:
        raise _Invalid("mirai event type names", hint=f" with unknown {'; '.join(unknown)}", show_value=False)
    return list(dict.fromkeys(value))


_ROBOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def _robot_name(value: object) -> object:
    if not isinstance(value, str) or not _ROBOT_NAME.match(value):
        raise _Invalid('a name of 1–64 letters, digits, "-" or "_" (it is the URL path: /robots/<name>)')
    return value


def _channel_id(value: object) -> object:
    channel = _snowflake(value)
    if channel is None:
        raise _Invalid("a channel id (the mirai group id: a positive integer)")
    return channel


def _adapters(value: object) -> object:
    """mirai-api-http's ``adapters``: a non-empty list of distinct names from MIRAI_ADAPTERS."""
    listed = ", ".join(json.dumps(a) for a in MIRAI_ADAPTERS)
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise _Invalid(f"a non-empty list of adapter names ({listed})")
    unknown = [item for item in value if item not in MIRAI_ADAPTERS]
    if unknown:
        hint = _did_you_mean(unknown[0], MIRAI_ADAPTERS)
        raise _Invalid(f"adapter names from {listed}", hint=f" with unknown {json.dumps(unknown[0])}{hint}")
    if len(set(value)) != len(value):
        raise _Invalid("a list of distinct adapter names")
    return value


def _listen_host(value: object) -> object:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise _Invalid('an address or host name to listen on, such as "127.0.0.1", "::1" or "0.0.0.0"')
    if "://" in value or "/" in value or value.startswith("["):
        raise _Invalid("a bare address or host name", hint=" (no scheme, path or brackets)")
    return value


def _cors(value: object) -> object:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise _Invalid('a list of allowed origins, such as ["*"] or ["example.com", "https://app.example.com"]')
    return value


def is_loopback_host(host: str) -> bool:
    """Whether listening on ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to an address others can reach


_PORT = _int_range(1, 65535)
_POSITIVE_INT = _int_range(1, None)

#: Field-specific rules, keyed by (class, field name). Fields not listed get the rule of their type.
_RULES: Final[dict[tuple[type, str], Rule]] = {
    (BackoffConfig, "factor"): _number_at_least(1.0),
    (DiscordConfig, "token"): _string,
    (DiscordConfig, "token_env"): _env_var_name,
    (DiscordConfig, "intents"): _intents,
    (DiscordConfig, "shard_count"): _shard_count,
    (DiscordConfig, "shard_ids"): _shard_ids,
    (DiscordConfig, "api_base_url"): _http_url,
    (DiscordConfig, "gateway_url"): _ws_url_or_empty,
    (DiscordConfig, "proxy"): _proxy,
    (PresenceConfig, "url"): _streaming_url,
    (BackfillConfig, "max_age_seconds"): _int_range(0, 14 * 86_400),  # Discord keeps history; 2 weeks is plenty
    (BackfillConfig, "max_messages"): _int_range(0, 100_000),
    (DiscordConfig, "large_threshold"): _int_range(50, 250),  # docs/discord.md §5 (IDENTIFY: 50–250)
    (DiscordConfig, "max_message_bytes"): _POSITIVE_INT,
    (DiscordConfig, "global_rate_limit"): _POSITIVE_INT,
    (DiscordConfig, "max_upload_bytes"): _POSITIVE_INT,
    # docs/discord.md: Cloudflare bans an IP after 10,000 invalid requests in 10 minutes
    (DiscordConfig, "invalid_request_warn"): _int_range(1, 10_000),
    (DiscordConfig, "invalid_request_refuse"): _int_range(1, 10_000),
    (DiscordCacheConfig, "max_members"): _POSITIVE_INT,
    (DiscordCacheConfig, "max_members_per_guild"): _POSITIVE_INT,
    (DiscordCacheConfig, "max_users"): _POSITIVE_INT,
    (DiscordCacheConfig, "max_dm_channels"): _POSITIVE_INT,
    (DiscordCacheConfig, "max_media_ids"): _POSITIVE_INT,
    (DestinationConfig, "host"): _host,
    (DestinationConfig, "port"): _PORT,
    (DestinationConfig, "path"): _ws_path,
    (DestinationConfig, "method"): _http_method,
    (MiraiConfig, "verify_key"): _string,
    (MiraiConfig, "verify_key_env"): _env_var_name,
    (MiraiConfig, "bot_id"): _int_range(0, _MAX_SNOWFLAKE),
    (MiraiConfig, "reserved_sync_id"): _sync_id,
    (MiraiConfig, "max_frame_bytes"): _POSITIVE_INT,
    (MiraiConfig, "adapters"): _adapters,
    (WsServerConfig, "host"): _listen_host,
    (WsServerConfig, "port"): _PORT,
    (HttpServerConfig, "host"): _listen_host,
    (HttpServerConfig, "port"): _PORT,
    (HttpServerConfig, "cors"): _cors,
    # one fetchMessage answer holds at most this many events (~1 KB each)
    (HttpServerConfig, "unread_queue_max_size"): _int_range(1, 10_000),
    (UploadsConfig, "retention_seconds"): _POSITIVE_INT,
    (UploadsConfig, "total_bytes"): _POSITIVE_INT,
    (StoreConfig, "message_retention_days"): _POSITIVE_INT,
    (OutboxConfig, "max_events"): _POSITIVE_INT,
    (OutboxConfig, "max_age_seconds"): _POSITIVE_INT,
    (MappingConfig, "guild_events"): _guild_events,
    (MappingConfig, "admin_role"): _role,
    (MappingConfig, "channels"): _channel_ids,
    (LoggingConfig, "level"): _choice(LOG_LEVELS, fold_case=True),
    (WebhookDestinationConfig, "url"): _webhook_url,
    (WebhookDestinationConfig, "retries"): _int_range(0, 100),
    (WebhookDestinationConfig, "events"): _event_types,
    (WebhookDestinationConfig, "secret_env"): _env_var_name_or_empty,
    (WebhookDestinationConfig, "secret"): _secret_not_here,
    (WebhookDestinationConfig, "batch_max_events"): _int_range(0, 10_000),
    (WebhookDestinationConfig, "batch_max_ms"): _int_range(1, 60_000),
    (RobotConfig, "name"): _robot_name,
    (RobotConfig, "group"): _channel_id,
    (RobotConfig, "secret_env"): _env_var_name_or_empty,
    (RobotConfig, "secret"): _secret_not_here,
    (RobotConfig, "max_body_bytes"): _int_range(1, 32 * 1024 * 1024),  # relay/web's ServerLimits.max_body_bytes
    (ServerConfig, "host"): _listen_host,
    (ServerConfig, "port"): _int_range(0, 65535),  # 0: any free port
}

#: Keys that must be written explicitly, with what to do about it.
_REQUIRED: Final[dict[tuple[type, str], str]] = {
    (DestinationConfig, "host"): 'give the host of the framework\'s websocket server, e.g. host = "127.0.0.1"',
    (DestinationConfig, "port"): "give the port of the framework's websocket server, e.g. port = 8080",
    (WebhookDestinationConfig, "url"): 'give the URL events are POSTed to, e.g. url = "http://127.0.0.1:9999/events"',
    (RobotConfig, "name"): 'give the robot a name; it posts at /robots/<name>, e.g. name = "ci"',
    (RobotConfig, "group"): "give the channel id (the mirai group id) it posts into, e.g. group = 123456789012345678",
}


# --------------------------------------------------------------------------- whole-config checks


def _cross_checks(checker: _Checker, data: dict[str, Any]) -> None:
    discord = data["discord"]
    count, ids = discord["shard_count"], discord["shard_ids"]
    if ids and count is None:
        checker.add("discord.shard_ids", 'needs an explicit shard_count (not "auto")')
    elif ids and any(i >= count for i in ids):
        too_big = ", ".join(str(i) for i in ids if i >= count)
        checker.add("discord.shard_ids", f"expected ids below shard_count = {count}, got {too_big}")

    if discord["invalid_request_warn"] > discord["invalid_request_refuse"]:
        checker.add(
            "discord.invalid_request_warn",
            f"expected at most invalid_request_refuse ({discord['invalid_request_refuse']}), "
            f"got {discord['invalid_request_warn']}",
        )

    _check_insecure_discord_urls(checker, discord)
    _check_presence(checker, discord["presence"])
    cache = discord["cache"]
    if cache["max_members_per_guild"] > cache["max_members"]:
        checker.add(
            "discord.cache.max_members_per_guild",
            f"expected at most max_members ({cache['max_members']}), got {cache['max_members_per_guild']}",
        )

    for path, backoff in (
        ("discord.reconnect", discord["reconnect"]),
        ("mirai.reverse_ws.reconnect", data["mirai"]["reverse_ws"]["reconnect"]),
    ):
        if backoff["cap"] < backoff["initial"]:
            checker.add(f"{path}.cap", f"expected a cap ≥ initial ({backoff['initial']:g}), got {backoff['cap']:g}")

    # [mirai] ids: in small mode the bind qq must survive a double too, and stay clear of the presented range
    mirai = data["mirai"]
    if mirai["ids"] == IdMode.SMALL.value and mirai["bot_id"] >= PRESENTED_MIN:
        checker.add(
            "mirai.bot_id",
            f'with ids = "small", expected 0 or a number below {PRESENTED_MIN} (presented ids start there), '
            f"got {mirai['bot_id']}",
        )

    _mirai_adapter_checks(checker, data["mirai"])
    destinations = data["mirai"]["reverse_ws"]["destinations"]
    webhooks = data["mirai"]["webhook"]["destinations"]
    if not destinations and not webhooks and "reverse-ws" in data["mirai"]["adapters"]:
        checker.add(
            "mirai.reverse_ws.destinations",
            "missing; add at least one [[mirai.reverse_ws.destinations]] table (the framework's websocket server) "
            'or a [[mirai.webhook.destinations]] table, or leave "reverse-ws" out of mirai.adapters',
        )
    _webhook_checks(checker, webhooks)
    _robot_checks(checker, data["robots"])
    seen: dict[str, int] = {}
    for index, destination in enumerate(destinations):
        label = destination["name"] or f"{destination['host']}:{destination['port']}{destination['path']}"
        if label in seen:
            checker.add(
                f"mirai.reverse_ws.destinations[{index}]",
                f"same label {json.dumps(label)} as destinations[{seen[label]}]; give each a distinct `name`",
            )
        else:
            seen[label] = index
        if _RESERVED_CURSOR.fullmatch(label):
            checker.add(
                f"mirai.reverse_ws.destinations[{index}].name",
                f"{json.dumps(label)} looks like the outbox cursor of a framework connected to the ws or http "
                'adapter ("ws:…", "http:…"); choose another name',
            )


#: outbox cursor names of frameworks that connect to the bridge (adapters/mirai/cursors.py)
_RESERVED_CURSOR: Final = re.compile(r"(?:ws|http):[^/]*")


def _mirai_adapter_checks(checker: _Checker, mirai: dict[str, Any]) -> None:
    """The listening adapters: no open port without verify, and ports shared only on the same host."""
    listening = [name for name in ("ws", "http") if name in mirai["adapters"]]
    if not mirai["enable_verify"]:
        for name in listening:
            host = mirai[name]["host"]
            if not is_loopback_host(host):
                checker.add(
                    f"mirai.{name}.host",
                    f"{json.dumps(host)} lets other machines reach the {name} adapter, and mirai.enable_verify is "
                    "false: anyone could drive the bot. Set enable_verify = true (with a verify key) or listen on "
                    '"127.0.0.1"',
                )
    if len(listening) == 2:
        ws, http = mirai["ws"], mirai["http"]
        if ws["port"] == http["port"] and ws["host"] != http["host"]:
            checker.add(
                "mirai.http.host",
                f"port {http['port']} is also mirai.ws.port but on host {json.dumps(ws['host'])}: to share one "
                "port (as mirai-api-http allows) give both the same host, else give them different ports",
            )


#: Discord's own host names (and every name under them): plain http:// or ws:// to them is refused unless
#: ``allow_insecure`` (the token would cross the network unencrypted)
DISCORD_HOSTS: Final = ("discord.com", "discord.gg", "discordapp.com", "discordapp.net")


def is_discord_host(host: str) -> bool:
    name = host.lower().rstrip(".")
    return any(name == known or name.endswith("." + known) for known in DISCORD_HOSTS)


def _check_insecure_discord_urls(checker: _Checker, discord: dict[str, Any]) -> None:
    if discord["allow_insecure"]:
        return
    for key, plain, secure in (("api_base_url", "http", "https"), ("gateway_url", "ws", "wss")):
        parts = urllib.parse.urlsplit(discord[key])
        if parts.scheme == plain and is_discord_host(parts.hostname or ""):
            checker.add(
                f"discord.{key}",
                f"{plain}:// to Discord's own host {parts.hostname} would send the token unencrypted; write "
                f"{secure}://, or set allow_insecure = true under [discord] if this really is a test server",
            )


def _check_presence(checker: _Checker, presence: dict[str, Any]) -> None:
    activity = ActivityType(presence["activity"])
    listed = ", ".join(json.dumps(a.value) for a in ActivityType if a is not ActivityType.NONE)
    if activity is ActivityType.NONE:
        if presence["text"] or presence["url"]:
            key = "text" if presence["text"] else "url"
            checker.add(f"discord.presence.{key}", f"needs an activity: set activity to one of {listed}")
        return
    if not presence["text"]:
        what = "the custom status text" if activity is ActivityType.CUSTOM else f"what the bot is {activity.value}"
        checker.add("discord.presence.text", f'missing; give {what}, e.g. text = "mirai bots"')
    if activity is ActivityType.STREAMING and not presence["url"]:
        checker.add(
            "discord.presence.url",
            "missing; a streaming activity needs the stream's https://twitch.tv/... or https://youtube.com/... URL",
        )
    elif activity is not ActivityType.STREAMING and presence["url"]:
        checker.add("discord.presence.url", f'only a "streaming" activity has a url, not "{activity.value}"')


def _webhook_checks(checker: _Checker, webhooks: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for index, hook in enumerate(webhooks):
        path = f"mirai.webhook.destinations[{index}]"
        label = hook["name"] or hook["url"]
        if label in seen:
            checker.add(
                path, f"same label {json.dumps(label)} as destinations[{seen[label]}]; give each a distinct `name`"
            )
        else:
            seen[label] = index
        if hook["backoff"]["cap"] < hook["backoff"]["initial"]:
            checker.add(f"{path}.backoff.cap", f"expected a cap ≥ initial ({hook['backoff']['initial']:g})")
        if hook["signing"] != WebhookSigning.NONE.value and not hook["secret_env"]:
            checker.add(
                f"{path}.secret_env",
                f'missing; signing = "{hook["signing"]}" needs the name of the environment variable holding the secret',
            )


def _robot_checks(checker: _Checker, robots: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for index, robot in enumerate(robots):
        path = f"robots[{index}]"
        if robot["name"] in seen:
            checker.add(f"{path}.name", f"same name {json.dumps(robot['name'])} as robots[{seen[robot['name']]}]")
        else:
            seen[robot["name"]] = index
        if robot["signature"] != RobotSignature.NONE.value and not robot["secret_env"]:
            checker.add(
                f"{path}.secret_env",
                'missing; name the environment variable holding the robot\'s secret (or signature = "none" for a '
                "robot nobody else can reach)",
            )


def _resolve_store_path(data: dict[str, Any], env: Mapping[str, str], base_dir: str | os.PathLike[str] | None) -> None:
    store = data["store"]
    raw: str = store["path"]
    if not raw:
        store["path"] = default_store_path(env)
        return
    if raw.startswith("~"):
        home = env.get("HOME") or os.path.expanduser("~")
        raw = home + raw[1:] if raw == "~" or raw.startswith("~/") else os.path.expanduser(raw)
    if not os.path.isabs(raw):
        raw = os.path.join(os.fspath(base_dir) if base_dir is not None else os.getcwd(), raw)
    store["path"] = os.path.normpath(raw)


def _apply_secrets(checker: _Checker, data: dict[str, Any], env: Mapping[str, str], *, require_secrets: bool) -> None:
    discord, mirai = data["discord"], data["mirai"]
    token_env: str = discord["token_env"]
    if env.get(token_env):
        discord["token"] = env[token_env]
        checker.origins["discord.token"] = f"environment variable {token_env}"
    token: str = discord["token"]
    if any(c.isspace() for c in token):
        checker.add(
            "discord.token", "must be the bare bot token without spaces or a 'Bot ' prefix (the bridge adds it)"
        )
    if require_secrets and not token:
        checker.add(
            "discord.token",
            f"missing; set the environment variable {token_env} to the bot token "
            "(Discord Developer Portal → your application → Bot → Reset Token)",
        )

    _apply_named_secrets(checker, data, env, require_secrets=require_secrets)

    key_env: str = mirai["verify_key_env"]
    if env.get(key_env):
        mirai["verify_key"] = env[key_env]
    if require_secrets and mirai["enable_verify"] and not mirai["verify_key"]:
        checker.add(
            "mirai.verify_key",
            f"missing; set the environment variable {key_env} to the verifyKey your framework uses "
            "(or set enable_verify = false under [mirai])",
        )


def _apply_named_secrets(
    checker: _Checker, data: dict[str, Any], env: Mapping[str, str], *, require_secrets: bool
) -> None:
    """The webhook destinations' and the robots' secrets, each from the environment variable its table names."""
    owners = [
        (f"mirai.webhook.destinations[{i}]", hook, hook["signing"] == WebhookSigning.STANDARD.value)
        for i, hook in enumerate(data["mirai"]["webhook"]["destinations"])
        if hook["signing"] != WebhookSigning.NONE.value
    ]
    owners.extend(
        (f"robots[{i}]", robot, robot["signature"] == RobotSignature.STANDARD.value)
        for i, robot in enumerate(data["robots"])
        if robot["signature"] != RobotSignature.NONE.value
    )
    for path, table, standard in owners:
        name: str = table["secret_env"]
        if not name:
            continue  # reported by the cross checks
        table["secret"] = env.get(name, "")
        if not table["secret"]:
            if require_secrets:
                checker.add(f"{path}.secret", f"missing; set the environment variable {name} to the secret")
        elif standard and not is_standard_secret(table["secret"]):
            checker.add(
                f"{path}.secret",
                f"the environment variable {name} must hold a Standard Webhooks secret: whsec_ followed by base64 "
                "(e.g. the output of: python -c \"import base64,secrets;print('whsec_'+base64.b64encode("
                'secrets.token_bytes(32)).decode())")',
            )


# --------------------------------------------------------------------------- helpers


def _describe_toml_error(exc: tomllib.TOMLDecodeError, text: str) -> str:
    # Python 3.14 exposes lineno/colno; older versions only put "(at line L, column C)" in the message.
    message = str(exc)
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    found = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if line is None and found:
        line, column = int(found.group(1)), int(found.group(2))
    reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", getattr(exc, "msg", message))
    if line is None:
        return f"TOML syntax error: {reason}"
    lines = text.splitlines()
    snippet = _excerpt(lines[line - 1]) if 0 < line <= len(lines) else ""
    shown = f" near `{snippet}`" if snippet else ""
    return f"line {line}, column {column}: TOML syntax error: {reason}{shown}"


def _excerpt(line: str) -> str:
    """What of a broken line a syntax error may quote: a table header whole; of ``key = value`` only the key, and
    only when it is one of the bridge's own keys; of anything else (a header or query parameter of its own, a
    line inside an array or a multi-line string) nothing. A value is never shown: any of them may carry a secret
    (a token, a header, a query parameter, a proxy password), inline or on a line of its own."""
    stripped = line.strip()
    if _TABLE_HEADER.match(stripped):
        return stripped
    key, equals, _value = stripped.partition("=")
    if equals and key.strip() in _OWN_KEYS:
        return f"{key.strip()} = …"
    return ""


def _own_keys(cls: type) -> set[str]:
    keys: set[str] = set()
    for field in attrs.fields(cls):
        keys.add(field.name)
        hint = typing.get_type_hints(cls)[field.name]
        if attrs.has(hint):
            keys |= _own_keys(hint)
        elif typing.get_origin(hint) is tuple and attrs.has(typing.get_args(hint)[0]):
            keys |= _own_keys(typing.get_args(hint)[0])
    return keys


#: every key the bridge's configuration has (a broken line may be quoted up to its ``=`` only if it is one)
_OWN_KEYS: Final = frozenset(_own_keys(BridgeConfig))
#: ``[a.b]`` / ``[[a.b]]`` with bare key names only
_TABLE_HEADER: Final = re.compile(r"\[\[?[A-Za-z0-9_.\- ]{1,60}\]?\]?\Z|\[\[?[A-Za-z0-9_.\- ]{1,60}\Z")


def _describe(value: object, *, secret: bool) -> str:
    kind = _kind(value)
    if secret or isinstance(value, dict | list):
        return kind
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


#: mirai-api-http's own setting names (its setting.yml: docs/mirai-api-http.md §3.1, §4, §10, §11) where someone used to
#: it writes them, keyed by (table path without indexes, key), with where the same job is done here
_MIRAI_API_HTTP_KEYS: Final[dict[tuple[str, str], str]] = {
    **{
        (table, key): hint
        for table in ("", "mirai")
        for key, hint in {
            "verifyKey": '"verify_key" under [mirai] (better: the environment variable MIRAI_VERIFY_KEY)',
            "enableVerify": '"enable_verify" under [mirai]',
            "singleMode": '"single_mode" under [mirai]',
            "reservedSyncId": '"reserved_sync_id" under [mirai]',
            "adapters": "[mirai.reverse_ws] (the bridge is mirai-api-http's reverse-ws adapter)",
            "adapterSettings": "[mirai.reverse_ws] and its [[mirai.reverse_ws.destinations]] tables",
            "debug": 'level = "DEBUG" under [logging] (or -v)',
            "cacheSize": '"message_retention_days" under [store] (message ids are kept by age)',
            "persistenceFactory": '"path" under [store]',
        }.items()
    },
    ("mirai", "reverse-ws"): "[mirai.reverse_ws]",
    ("mirai.reverse_ws", "reservedSyncId"): '"reserved_sync_id" under [mirai]',
    ("mirai.reverse_ws", "extraParameters"): '"extra_parameters"',
    ("mirai.reverse_ws", "extraHeaders"): '"extra_headers"',
    ("mirai.reverse_ws.destinations", "extraParameters"): '"extra_parameters"',
    ("mirai.reverse_ws.destinations", "extraHeaders"): '"extra_headers"',
    ("mirai.reverse_ws.destinations", "reconnectInterval"): (
        '"initial" and "cap" under [mirai.reverse_ws.reconnect] (seconds, with backoff)'
    ),
}
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _mirai_api_http_hint(table: str, key: str, names: Sequence[str]) -> str:
    """ " (did you mean ...? "verifyKey" is mirai-api-http's name)" for a key written the mirai-api-http way;
    any other camelCase or kebab-case spelling of one of ``names`` gets its snake_case form."""
    known = _MIRAI_API_HTTP_KEYS.get((_strip_indexes(table), key))
    if known is not None:
        return f" (did you mean {known}? {json.dumps(key)} is mirai-api-http's name)"
    snake = _CAMEL_HUMP.sub("_", key).replace("-", "_").lower()
    if snake != key and snake in names:
        return f" (did you mean {json.dumps(snake)}? keys here are snake_case)"
    return ""


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _strip_indexes(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def _set_dotted(data: dict[str, Any], dotted: str, value: object) -> bool:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            return False
        node = child
    node[leaf] = value
    return True


def _deep_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    def copy(item: object) -> object:
        if isinstance(item, Mapping):
            return {k: copy(v) for k, v in item.items()}
        if isinstance(item, list):
            return [copy(v) for v in item]
        return item

    return {k: copy(v) for k, v in value.items()}
