"""The one error hierarchy of the bridge.

Every error the bridge raises on purpose derives from :class:`RelayError`. Constructors take the
facts as fields (so callers can act on them) and build a message that says what to do next.
Nothing here may ever hold a secret in its message or ``repr``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class RelayError(Exception):
    """Root of every error raised by the bridge."""


# --------------------------------------------------------------------------- configuration


class ConfigError(RelayError):
    """The configuration is invalid. ``problems`` lists *every* problem, each prefixed by its TOML path."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source}: {count} configuration {noun}:\n{lines}")


# --------------------------------------------------------------------------- protocols


class ProtocolError(RelayError):
    """A protocol rule was broken. Use a subclass: who broke it matters."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol (or the state machine's current state) forbids: our bug."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids. ``hint`` may carry a suggested reply."""

    def __init__(self, message: str, *, hint: object | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class FrameTooLarge(RemoteProtocolError):
    """An incoming frame exceeded the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"incoming frame of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


# --------------------------------------------------------------------------- Discord


class InvalidSnowflake(RemoteProtocolError, ValueError):
    """Discord sent an id outside ``0 < id < 2**63`` (docs/discord.md §10), or a non-integral number where an id goes.

    A :class:`ValueError` too, so the lenient readers that skip a malformed dispatch skip this one as well.
    """

    def __init__(self, value: object) -> None:
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        super().__init__(f"id {shown} is not a snowflake (0 < id < 2**63)")
        self.value = value


class DiscordError(RelayError):
    """Root of the errors that come from talking to Discord."""


class GatewayClosed(DiscordError):
    """The gateway connection ended. ``fatal`` ones stop the bridge; ``advice`` says what to do."""

    def __init__(self, code: int | None, reason: str, *, fatal: bool, advice: str = "") -> None:
        self.code = code
        self.reason = reason
        self.fatal = fatal
        self.advice = advice
        text = f"Discord gateway closed (code {code}): {reason}"
        if advice:
            text += f" — {advice}"
        super().__init__(text)


class IdentifyBudgetExhausted(DiscordError):
    """Discord's daily identify budget is (nearly) spent; identifying again risks a token reset."""

    def __init__(self, remaining: int, reset_after: float) -> None:
        self.remaining = remaining
        self.reset_after = reset_after
        super().__init__(
            f"only {remaining} gateway identifies left today; refusing to identify until the budget "
            f"resets in {reset_after:.0f} s (Discord resets the token of bots that exhaust it)"
        )


class HTTPError(DiscordError):
    """A Discord REST request failed.

    ``status`` is the HTTP status, ``code`` Discord's JSON error code (0 when absent), ``message``
    Discord's message, ``field_errors`` the flattened ``errors`` tree of a 400 (``"content: too long"``).
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        method: str = "",
        route: str = "",
        field_errors: tuple[str, ...] = (),
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.route = route
        self.field_errors = field_errors
        where = f"{method} {route}: " if method else ""
        text = f"{where}HTTP {status}, Discord error {code}: {message}"
        if field_errors:
            text += " (" + "; ".join(field_errors) + ")"
        super().__init__(text)


class RateLimitedTooLong(DiscordError):
    """Honouring a rate limit would mean waiting longer than the configured maximum."""

    def __init__(self, route: str, retry_after: float, limit: float) -> None:
        self.route = route
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(
            f"{route}: Discord asks to wait {retry_after:.1f} s, more than the {limit:.0f} s allowed; "
            "giving up on this request"
        )


class CloudflareBanned(DiscordError):
    """Discord's edge answered with a non-JSON 429/403: the IP is temporarily banned. Stop, do not retry."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        self.status = status
        self.retry_after = retry_after
        wait = f"; retry after {retry_after:.0f} s" if retry_after else ""
        super().__init__(
            f"Discord's edge (Cloudflare) refused the request with HTTP {status} and no JSON body: this IP "
            f"is temporarily banned for too many invalid requests{wait}. All REST requests are paused."
        )


class InvalidRequestGuard(DiscordError):
    """Our own guard refused a request because the invalid-request (401/403/429) budget is nearly spent."""

    def __init__(self, count: int, limit: int, window: float) -> None:
        self.count = count
        self.limit = limit
        self.window = window
        super().__init__(
            f"refusing REST request: {count} invalid (401/403/429) responses in the last {window:.0f} s; "
            f"Discord bans the IP at {limit}"
        )


class PayloadTooLarge(DiscordError):
    """An upload or download exceeds a limit; checked before (or while) transferring, never after."""

    def __init__(self, what: str, size: int, limit: int, *, unit: str = "bytes") -> None:
        self.what = what
        self.size = size
        self.limit = limit
        self.unit = unit
        super().__init__(
            f"{what} is {size} {unit}, more than the limit of {limit} {unit}; "
            "send something smaller (or raise the limit in the configuration if Discord allows it)"
        )


class DiscordUnreachable(DiscordError):
    """A REST request got no usable answer (network error, timeout, 5xx) even after the allowed retries."""

    def __init__(self, method: str, route: str, reason: str, *, attempts: int) -> None:
        self.method = method
        self.route = route
        self.reason = reason
        self.attempts = attempts
        super().__init__(
            f"{method} {route}: no usable answer from Discord after {attempts} attempt(s): {reason}; "
            "check connectivity to Discord and retry later"
        )


class MediaUnreachable(DiscordError):
    """A media download (an attachment's CDN URL, or a URL a framework sent) got no answer: a network error or
    a timeout. ``where`` is the host and path only: signed CDN URLs carry their signature in the query."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"download of {where} failed: {reason}; check that the bridge can reach it and retry later")


# --------------------------------------------------------------------------- commands


class FailureKind(enum.Enum):
    """Why a command failed, in words both sides understand. The mirai side maps these to status codes."""

    #: target group/friend/member/message unknown (mirai 5)
    NOT_FOUND = "not_found"
    #: the bot lacks a permission (mirai 10)
    NO_PERMISSION = "no_permission"
    #: the bot is timed out where it tried to act (mirai 20)
    BOT_MUTED = "bot_muted"
    #: message too long and splitting is disabled (mirai 30)
    TOO_LONG = "too_long"
    #: the request was malformed or had bad values (mirai 400)
    BAD_INPUT = "bad_input"
    #: no Discord meaning (mirai 6)
    UNSUPPORTED = "unsupported"
    #: timed out waiting for Discord (mirai 500)
    TIMEOUT = "timeout"
    #: anything else (mirai 500)
    INTERNAL = "internal"


class CommandFailed(RelayError):
    """A command could not be carried out. ``kind`` says why; the message is readable by a bot author."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(f"{kind.value}: {message}")


# --------------------------------------------------------------------------- mirai reverse-ws


class WebSocketError(RelayError):
    """A websocket connection could not be opened, or it is over (:mod:`relay.wire`). Its owner decides what
    follows: the Discord shard and the reverse-ws destinations reconnect with backoff."""


class WebSocketHandshakeFailed(WebSocketError):
    """Opening failed: TCP, TLS or the HTTP upgrade. ``status`` is the HTTP status when the peer answered the
    upgrade with one instead of 101."""

    def __init__(self, peer: str, status: int | None, reason: str) -> None:
        self.peer = peer
        self.status = status
        self.reason = reason
        super().__init__(f"could not open a websocket to {peer}: {reason}")


class WebSocketClosed(WebSocketError):
    """The connection is over. ``code``: the close code of the close handshake (the peer's, or ours when we
    closed first); ``None`` when the TCP connection ended without a close frame."""

    def __init__(self, peer: str, code: int | None, reason: str) -> None:
        self.peer = peer
        self.code = code
        self.reason = reason
        what = f"closed with code {code}" if code is not None else "dropped without a close frame"
        super().__init__(f"websocket to {peer} {what}" + (f": {reason}" if reason else ""))


# --------------------------------------------------------------------------- proxies


class InvalidProxyURL(RelayError, ValueError):
    """A proxy URL (configuration or environment) cannot be used. ``problem`` says what is wrong, never the
    password; ``where`` names its origin (``"[discord] proxy"``, ``"environment variable HTTPS_PROXY"``)."""

    def __init__(self, problem: str, *, where: str = "proxy URL") -> None:
        self.problem = problem
        self.where = where
        super().__init__(f"{where}: {problem}")


class ProxyError(RelayError):
    """Opening a connection through a proxy failed. ``proxy`` is the redacted proxy URL (no password),
    ``target`` the ``host:port`` the tunnel was for. The connection is closed; the caller retries with backoff."""

    def __init__(self, proxy: str, target: str, message: str) -> None:
        self.proxy = proxy
        self.target = target
        super().__init__(message)


class ProxyConnectFailed(ProxyError):
    """No (TCP or TLS) connection to the proxy itself: refused, unreachable, unknown name, TLS refused.
    ``reason`` says what happened and what to check."""

    def __init__(self, proxy: str, target: str, reason: str) -> None:
        self.reason = reason
        super().__init__(proxy, target, f"cannot connect to the proxy {proxy}: {reason}")


class ProxyAuthenticationRefused(ProxyError):
    """The proxy refused our credentials, or wants credentials and the URL has none."""

    def __init__(self, proxy: str, target: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            proxy,
            target,
            f"the proxy {proxy} refused authentication: {reason}; check the user name and password "
            "in the proxy URL (percent-encode : @ / ? # in them)",
        )


class ProxyCannotReachTarget(ProxyError):
    """The proxy accepted us but could not (or would not) connect to the target."""

    def __init__(self, proxy: str, target: str, reason: str) -> None:
        self.reason = reason
        super().__init__(proxy, target, f"the proxy {proxy} could not connect to {target}: {reason}")


class ProxyTimeout(ProxyError):
    """A step of opening the tunnel did not finish in time. ``step`` names it (``"the SOCKS5 greeting"``)."""

    def __init__(self, proxy: str, target: str, step: str, seconds: float) -> None:
        self.step = step
        self.seconds = seconds
        super().__init__(proxy, target, f"the proxy {proxy} did not finish {step} for {target} within {seconds:g} s")


class ProxyProtocolError(ProxyError):
    """The proxy answered in a way its scheme does not allow (often: the wrong scheme in the URL)."""

    def __init__(self, proxy: str, target: str, reason: str) -> None:
        self.reason = reason
        super().__init__(proxy, target, f"the proxy {proxy} broke its protocol while connecting to {target}: {reason}")


# --------------------------------------------------------------------------- storage


class StoreError(RelayError):
    """The SQLite store failed (disk full, corrupt file, locked by another process)."""


class StoreLost(StoreError):
    """The store can no longer keep its promises: its file was deleted or replaced under the running bridge, or
    damaged where the bridge cannot work around it. The bridge stops rather than issue a message id twice."""


def leaves(group: BaseExceptionGroup[RelayError]) -> list[RelayError]:
    """Every error in ``group`` and its nested groups, in order: trio's nurseries group what ends their tasks
    together (the shards of one bot with a bad token fail alike), and a fatal line is said once per error."""
    out: list[RelayError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(leaves(exc))
        else:
            out.append(exc)
    return out
