"""Which proxy each connection to Discord goes through (pure): ``[discord] proxy`` with the environment.

* ``proxy = "<URL>"``: every connection to Discord (REST, the gateway websocket, media downloads) uses it; the
  environment is not consulted, not even ``NO_PROXY``.
* ``proxy = "none"``: no proxy, whatever the environment says.
* ``proxy = ""`` (the default): the environment, by :func:`relay.proxyurl.choose_proxy`'s rules (curl's):
  ``https_proxy``/``HTTPS_PROXY`` for TLS targets (https, wss: Discord), ``http_proxy`` for plain ones (a local
  test server), then ``all_proxy``/``ALL_PROXY``, minus the hosts ``no_proxy``/``NO_PROXY`` exclude.

The connections to the bot frameworks never use a proxy. :class:`DiscordEgress` is built once from the
configuration and the environment (only the proxy variables are kept) and asked per URL;
:func:`relay.proxy.httpx_proxy_options` and :func:`relay.proxy.proxied_stream_opener` turn its answer into what
httpx and :func:`relay.wire.client.connect_websocket` take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import attrs

from relay.config import PROXY_NONE, DiscordConfig
from relay.errors import InvalidProxyURL
from relay.proxyurl import ProxyChoice, ProxyScheme, ProxySettings, choose_proxy, parse_proxy_url

__all__ = ["CONFIGURED_AS", "DEFAULT_GATEWAY_URL", "PROXY_VARIABLES", "DiscordEgress"]

#: how the configured proxy is named in ``check`` and in errors
CONFIGURED_AS: Final = "[discord] proxy"
#: the environment variables :func:`relay.proxyurl.choose_proxy` reads
PROXY_VARIABLES: Final = (
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)
#: where ``GET /gateway/bot`` sends bots (for describing the gateway's proxy before asking Discord)
DEFAULT_GATEWAY_URL: Final = "wss://gateway.discord.gg"


@attrs.frozen
class DiscordEgress:
    """The proxy decision for Discord's URLs. Build it with :meth:`from_config`."""

    configured: ProxySettings | None = None  #: ``[discord] proxy`` as a URL (its repr hides the password)
    direct: bool = False  #: ``[discord] proxy = "none"``
    environment: Mapping[str, str] = attrs.field(factory=dict, repr=False)  #: the proxy variables only

    @classmethod
    def from_config(cls, discord: DiscordConfig, env: Mapping[str, str]) -> DiscordEgress:
        """Raises :class:`InvalidProxyURL` for an unusable ``[discord] proxy`` (the loader has checked it)."""
        value = discord.proxy.strip()
        kept = {name: env[name] for name in PROXY_VARIABLES if name in env}
        if value == PROXY_NONE:
            return cls(direct=True, environment=kept)
        configured = parse_proxy_url(value, where="discord.proxy") if value else None
        return cls(configured=configured, environment=kept)

    def choice(self, url: str) -> ProxyChoice:
        """The proxy for a connection to ``url`` (http, https, ws or wss). Raises :class:`InvalidProxyURL` naming
        the environment variable whose value cannot be used."""
        if self.direct:
            return ProxyChoice(None, CONFIGURED_AS)
        parts = urlsplit(url)
        return choose_proxy(
            self.configured,
            self.environment,
            parts.hostname or "",
            tls=parts.scheme in ("https", "wss"),
            configured_as=CONFIGURED_AS,
        )

    def describe(self, url: str) -> str:
        """One line for ``check``: ``socks5h://alice:***@127.0.0.1:1080 (from [discord] proxy)``,
        ``none ([discord] proxy = "none")``, ``none (NO_PROXY excludes discord.com from HTTPS_PROXY)``, ``none``."""
        if self.direct:
            return f'none ({CONFIGURED_AS} = "{PROXY_NONE}")'
        return self.choice(url).describe(urlsplit(url).hostname or "")

    def secrets(self) -> tuple[str, ...]:
        """The passwords of every proxy this could use (configured or from the environment), for the log
        redaction filter; unusable environment values are skipped (:meth:`choice` reports them)."""
        found: list[str] = []
        if self.configured is not None:
            found.append(self.configured.password)
        for name in PROXY_VARIABLES[:5]:
            value = self.environment.get(name, "")
            if value.strip():
                with contextlib.suppress(InvalidProxyURL):
                    found.append(parse_proxy_url(value, default_scheme=ProxyScheme.HTTP).password)
        return tuple(dict.fromkeys(s for s in found if s))
