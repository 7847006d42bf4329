"""Proxy settings: the proxy URL model, and which proxy (if any) a connection to a given host uses.

Pure (no I/O). :func:`parse_proxy_url` turns ``socks5h://user:password@host:1080`` into a frozen
:class:`ProxySettings` whose password is in no ``repr``, log line or error; :meth:`ProxySettings.redacted`
is the form to show (``socks5h://user:***@host:1080``). :func:`choose_proxy` decides, for one target host,
between the configured proxy, the environment's, and none. :mod:`relay.proxy` opens the tunnels.

Schemes and what they mean:

* ``http://``: an HTTP proxy; tunnels are opened with ``CONNECT host:port`` (the proxy resolves the name).
* ``https://``: the same, over TLS to the proxy itself (then TLS to the target inside: TLS in TLS).
* ``socks5h://``: SOCKS5; the host *name* is sent to the proxy, which resolves it (DNS through the proxy).
* ``socks5://``: SOCKS5; the name is resolved here and the proxy is given the address.

A port left out defaults to the scheme's usual one: 80 for http, 443 for https, 1080 for socks5/socks5h (curl
assumes 1080 for http:// too; we follow the URL standard, as httpx and requests do). Credentials
(``user:password@``) are percent-decoded; percent-encode ``: @ / ? #`` inside them. SOCKS5 sends them with
username/password authentication (RFC 1929: both required, at most 255 bytes each in UTF-8); HTTP and HTTPS as
``Proxy-Authorization: Basic`` (the user name may not contain ``:``; an empty password is allowed).

Which proxy a connection uses (:func:`choose_proxy`):

1. The configured proxy (``[discord] proxy``), when set, for every connection it is given to. The environment
   (``NO_PROXY`` included) is then not consulted.
2. Otherwise the environment, with curl's rules. Lower case is looked up before upper case; a variable set to
   the empty string counts as unset.

   * TLS targets (https, wss: every Discord endpoint): ``https_proxy``, ``HTTPS_PROXY``;
     plain targets (http, ws: a local test server): ``http_proxy`` only — never ``HTTP_PROXY``, which a CGI
     web server sets from a request's ``Proxy:`` header ("httpoxy"; curl ignores it too).
   * If that found nothing: ``all_proxy``, ``ALL_PROXY``.
   * A value without ``://`` is taken as ``http://`` (as curl does).
   * ``no_proxy``, ``NO_PROXY`` then exclude hosts (see :func:`no_proxy_matches`): an excluded host is
     connected to directly.
3. Otherwise no proxy.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Mapping

import attrs

from relay.errors import InvalidProxyURL

__all__ = [
    "ProxyChoice",
    "ProxyScheme",
    "ProxySettings",
    "choose_proxy",
    "format_host_port",
    "no_proxy_matches",
    "parse_proxy_url",
]

#: RFC 1929: one length byte each for the user name and the password
SOCKS5_CREDENTIAL_LIMIT = 255

#: builds the error for one problem, with the URL's origin (parse_proxy_url's ``where``) attached
_Invalid = Callable[[str], InvalidProxyURL]

_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


class ProxyScheme(enum.Enum):
    """The kinds of proxy the bridge can tunnel through."""

    #: HTTP CONNECT over plain TCP
    HTTP = "http"
    #: HTTP CONNECT over TLS to the proxy
    HTTPS = "https"
    #: SOCKS5, target names resolved locally
    SOCKS5 = "socks5"
    #: SOCKS5, target names resolved by the proxy
    SOCKS5H = "socks5h"


DEFAULT_PORTS: Mapping[ProxyScheme, int] = {
    ProxyScheme.HTTP: 80,
    ProxyScheme.HTTPS: 443,
    ProxyScheme.SOCKS5: 1080,
    ProxyScheme.SOCKS5H: 1080,
}

#: schemes people write that we do not support, with what to write instead
_SCHEME_ADVICE: Mapping[str, str] = {
    "socks": "write socks5:// or socks5h://",
    "socks4": "SOCKS4 is not supported; use socks5:// or socks5h://",
    "socks4a": "SOCKS4a is not supported; use socks5h:// (it also lets the proxy resolve names)",
    "socks5a": "write socks5h:// for SOCKS5 with names resolved by the proxy",
}


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:443``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.frozen
class ProxySettings:
    """One proxy: where it is, how to talk to it, and the credentials to give it (``password`` never shown)."""

    scheme: ProxyScheme
    host: str  #: lower case; an IPv6 address without brackets
    port: int
    username: str | None = None  #: None: no authentication
    password: str = attrs.field(default="", repr=False)

    @property
    def is_socks(self) -> bool:
        return self.scheme in (ProxyScheme.SOCKS5, ProxyScheme.SOCKS5H)

    @property
    def resolves_names(self) -> bool:
        """True when target names go to the proxy unresolved (everything but ``socks5://``)."""
        return self.scheme is not ProxyScheme.SOCKS5

    @property
    def tls(self) -> bool:
        """True when the connection to the proxy itself is TLS (``https://``)."""
        return self.scheme is ProxyScheme.HTTPS

    @property
    def address(self) -> str:
        return format_host_port(self.host, self.port)

    def redacted(self) -> str:
        """The URL to show in logs, errors and ``check``: ``socks5://user:***@host:1080``."""
        credentials = ""
        if self.username is not None:
            user = urllib.parse.quote(self.username, safe="")
            credentials = f"{user}:***@" if self.password else f"{user}@"
        return f"{self.scheme.value}://{credentials}{self.address}"

    def __str__(self) -> str:
        return self.redacted()


def parse_proxy_url(text: str, *, where: str = "proxy URL", default_scheme: ProxyScheme | None = None) -> ProxySettings:
    """Parse ``scheme://[user[:password]@]host[:port][/]``. Raises :class:`InvalidProxyURL` naming the problem
    (prefixed by ``where``) and never the password. ``default_scheme`` is used for a value without ``://``
    (the environment's habit); without it a scheme is required."""

    def invalid(problem: str) -> InvalidProxyURL:
        return InvalidProxyURL(problem, where=where)

    raw = text.strip()
    if not raw:
        raise invalid("is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise invalid("contains spaces or control characters (percent-encode them inside a user name or password)")
    scheme_text, separator, rest = raw.partition("://")
    if not separator:
        if default_scheme is None:
            raise invalid("needs a scheme: http://, https://, socks5:// or socks5h:// (e.g. socks5h://127.0.0.1:1080)")
        scheme_text, rest = default_scheme.value, raw
    scheme = _parse_scheme(scheme_text.lower(), invalid)

    # RFC 3986: the authority ends at the first "/", "?" or "#"
    end = min((i for i in (rest.find(ch) for ch in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if tail not in ("", "/"):
        hint = " (a password containing / ? or # must be percent-encoded: %2F %3F %23)" if "@" in tail else ""
        raise invalid(f"must be scheme://[user:password@]host:port, without a path, query or fragment{hint}")
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _parse_host_port(hostport, DEFAULT_PORTS[scheme], invalid)
    username: str | None = None
    password = ""
    if at:
        username, password = _parse_credentials(userinfo, scheme, invalid)
    return ProxySettings(scheme=scheme, host=host, port=port, username=username, password=password)


def _parse_scheme(text: str, invalid: _Invalid) -> ProxyScheme:
    try:
        return ProxyScheme(text)
    except ValueError:
        pass
    advice = _SCHEME_ADVICE.get(text, "use http://, https://, socks5:// or socks5h://")
    shown = text if re.fullmatch(r"[a-z0-9+.-]{1,20}", text) else "?"
    raise invalid(f"unsupported scheme {shown}://; {advice}")


def _parse_host_port(text: str, default_port: int, invalid: _Invalid) -> tuple[str, int]:
    port_text = ""
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise invalid("has a malformed [IPv6] host")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid("has a malformed [IPv6] host") from None
        port_text = after[1:]
        has_port = bool(after)
    else:
        if text.count(":") > 1:
            raise invalid("an IPv6 host must be written in brackets, e.g. http://[::1]:3128")
        host, colon, port_text = text.partition(":")
        has_port = bool(colon)
        if not host:
            raise invalid("has no host")
        host = _normalise_host_name(host, invalid)
    if not has_port:
        return host.lower(), default_port
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise invalid("port must be a number from 1 to 65535")
    return host.lower(), int(port_text)


def _normalise_host_name(host: str, invalid: _Invalid) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise invalid("has a host that is not a valid name or address") from None
    if not _HOST_NAME.fullmatch(ascii_host.lower()):
        raise invalid("has a host that is not a valid name or address")
    return ascii_host


def _parse_credentials(userinfo: str, scheme: ProxyScheme, invalid: _Invalid) -> tuple[str, str]:
    user_text, _, password_text = userinfo.partition(":")
    try:
        username = urllib.parse.unquote(user_text, errors="strict")
        password = urllib.parse.unquote(password_text, errors="strict")
    except UnicodeDecodeError:
        raise invalid("user name or password is not valid percent-encoded UTF-8") from None
    if not username:
        raise invalid("has a password but no user name" if password else "has an empty user name before @")
    if scheme in (ProxyScheme.SOCKS5, ProxyScheme.SOCKS5H):
        if not password:
            raise invalid("SOCKS5 authentication needs both a user name and a password (user:password@)")
        for what, value in (("user name", username), ("password", password)):
            if len(value.encode("utf-8")) > SOCKS5_CREDENTIAL_LIMIT:
                raise invalid(f"the {what} is longer than SOCKS5 allows ({SOCKS5_CREDENTIAL_LIMIT} bytes)")
    elif ":" in username:
        raise invalid("the user name may not contain ':' (HTTP Basic authentication splits at the first one)")
    return username, password


# --------------------------------------------------------------------------- which proxy for a host


@attrs.frozen
class ProxyChoice:
    """The proxy one connection uses, and why (for ``check`` and the logs)."""

    proxy: ProxySettings | None
    #: ``"[discord] proxy"`` or the environment variable the proxy came from; ``""`` when none was found
    source: str = ""
    #: the ``NO_PROXY``-style variable that excluded the host from ``source``'s proxy, or ``""``
    excluded_by: str = ""

    def describe(self, host: str) -> str:
        """One line: ``socks5h://alice:***@10.0.0.1:1080 (from [discord] proxy)``, ``none (NO_PROXY excludes
        discord.com from HTTPS_PROXY)``, ``none``."""
        if self.proxy is not None:
            return f"{self.proxy.redacted()} (from {self.source})"
        if self.excluded_by:
            return f"none ({self.excluded_by} excludes {host} from {self.source})"
        return "none"


def choose_proxy(
    configured: ProxySettings | None,
    env: Mapping[str, str],
    host: str,
    *,
    tls: bool = True,
    configured_as: str = "[discord] proxy",
) -> ProxyChoice:
    """The proxy for a connection to ``host`` (``tls``: https/wss, else http/ws), by the rules in the module
    docstring. Raises :class:`InvalidProxyURL` naming the environment variable when its value is unusable."""
    if configured is not None:
        return ProxyChoice(configured, configured_as)
    names = ("https_proxy", "HTTPS_PROXY") if tls else ("http_proxy",)
    found = _first_set(env, (*names, "all_proxy", "ALL_PROXY"))
    if found is None:
        return ProxyChoice(None)
    name, value = found
    where = f"environment variable {name}"
    proxy = parse_proxy_url(value, where=where, default_scheme=ProxyScheme.HTTP)
    exclusions = _first_set(env, ("no_proxy", "NO_PROXY"))
    if exclusions is not None and no_proxy_matches(exclusions[1], host):
        return ProxyChoice(None, name, excluded_by=exclusions[0])
    return ProxyChoice(proxy, where)


def _first_set(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "")
        if value.strip():
            return name, value
    return None


def no_proxy_matches(no_proxy: str, host: str) -> bool:
    """Whether a ``NO_PROXY`` value excludes ``host`` (curl's rules, lib/noproxy.c):

    * the whole value ``*`` excludes every host;
    * otherwise a comma-separated list; blanks around entries and empty entries are ignored;
    * a host name matches an entry equal to it or to one of its parent domains, case-insensitively, ignoring
      one leading and one trailing dot of the entry and a trailing dot of the host: ``example.com`` and
      ``.example.com`` both exclude ``example.com`` and ``www.example.com``, not ``notexample.com``;
    * an IP address (IPv4, or IPv6 with or without brackets) matches an entry that is the same address or a
      network containing it (``10.0.0.0/8``, ``fd00::/8``; ``/0`` means the address alone, as in curl). Names
      are never resolved to compare them with addresses: ``127.0.0.1`` does not exclude ``localhost``;
    * ports play no part: ``example.com`` excludes every port of it, and an entry with a port
      (``example.com:443``) excludes nothing, as in curl. (We also accept ``[::1]``, which curl does not.)
    """
    value = no_proxy.strip()
    if value == "*":
        return True
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = _ip_address(host)
    name = host.lower().removesuffix(".")
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if address is not None:
            if _address_in(address, entry):
                return True
            continue
        entry = entry.lower().removesuffix(".").removeprefix(".")
        if entry and (name == entry or name.endswith("." + entry)):
            return True
    return False


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _address_in(address: ipaddress.IPv4Address | ipaddress.IPv6Address, entry: str) -> bool:
    network_text, slash, bits = entry.partition("/")
    if network_text.startswith("[") and network_text.endswith("]"):
        network_text = network_text[1:-1]
    if slash and bits.strip() in ("", "0"):
        slash = ""  # curl: no bits, or 0 bits, compares the whole address
    try:
        network = ipaddress.ip_network(f"{network_text}/{bits}" if slash else network_text, strict=False)
    except ValueError:
        return False
    return network.version == address.version and address in network
