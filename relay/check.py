"""What offline ``check`` prints: the configuration exactly as ``run`` would use it, one line per subject.

Pure apart from reading the environment mapping it is given: the token's source, the intents, the shards, the
Discord URLs and the proxy each goes through (:class:`relay.egress.DiscordEgress`), the presence sent in Identify,
the Discord cache's bounds and the memory they imply, the verify settings, the destinations, the store, the outbox,
the mapping and logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from relay.config import PRIVILEGED_INTENTS, BridgeConfig, IdMode
from relay.configload import ENV_OVERRIDES
from relay.egress import DEFAULT_GATEWAY_URL, DiscordEgress

__all__ = ["WEAK_SECRET_LENGTH", "summary_lines"]

#: Verify keys shorter than this get a warning (mirai-api-http generates "INITKEY" + 8 random characters).
WEAK_SECRET_LENGTH: Final = 8


def summary_lines(source: str, config: BridgeConfig, env: Mapping[str, str], egress: DiscordEgress) -> list[str]:
    """The lines ``check`` prints. Raises :class:`relay.errors.InvalidProxyURL` when an environment variable's
    proxy cannot be used (``run`` would fail on it too)."""
    discord, mirai = config.discord, config.mirai
    token_from = (
        f"environment variable {discord.token_env}" if env.get(discord.token_env) else "the file ([discord] token)"
    )
    privileged = sorted(PRIVILEGED_INTENTS.intersection(discord.intents))
    shards = "auto (Discord's recommendation)" if discord.shard_count is None else str(discord.shard_count)
    if discord.shard_ids:
        shards += f", running {', '.join(map(str, discord.shard_ids))}"
    if not mirai.enable_verify:
        verify = "off"
    elif env.get(mirai.verify_key_env):
        verify = f"on, key from environment variable {mirai.verify_key_env}"
    else:
        verify = "on, key from the file ([mirai] verify_key)"
    rest_proxy = egress.describe(discord.api_base_url)
    gateway_proxy = egress.describe(discord.gateway_url or DEFAULT_GATEWAY_URL)
    lines = [
        f"{source}: configuration is valid",
        f"  discord token:  from {token_from}",
        f"  intents:        {', '.join(discord.intents)} (= {discord.intents_value})",
    ]
    if privileged:
        lines.append(f"                  privileged, enable them in the Developer Portal: {', '.join(privileged)}")
    lines += [
        f"  shards:         {shards}",
        f"  discord API:    {discord.api_base_url}",
        f"  gateway:        {discord.gateway_url or 'from GET /gateway/bot'}",
    ]
    if rest_proxy == gateway_proxy:
        lines.append(f"  proxy:          {rest_proxy}")
    else:
        lines += [f"  proxy (API):    {rest_proxy}", f"  proxy (gateway): {gateway_proxy}"]
    cache = discord.cache
    lines += [
        f"  presence:       {discord.presence.describe()}",
        f"  discord cache:  {cache.max_members:,} members ({cache.max_members_per_guild:,} a guild), "
        f"{cache.max_users:,} users, {cache.max_dm_channels:,} DM channels, {cache.max_media_ids:,} media ids: "
        f"up to ~{cache.estimated_bytes() / 2**20:.0f} MiB when full",
        f"  mirai verify:   {verify}; single mode {'on' if mirai.single_mode else 'off'}",
        f"  bot id (qq):    {mirai.bot_id or _default_bot_id(config)}",
        f"  ids:            {_ids(source, config)}",
        f"  mirai adapters: {', '.join(mirai.adapters)}",
    ]
    lines += _listening_lines(config)
    off = ' (not dialed: "reverse-ws" is off)' if mirai.reverse_ws.destinations and not mirai.runs("reverse-ws") else ""
    lines += [
        f"  destinations:   {len(mirai.reverse_ws.destinations)} (never through the proxy){off}",
    ]
    for destination in mirai.reverse_ws.destinations:
        url = f"{destination.protocol.value}://{destination.host}:{destination.port}{destination.path}"
        lines.append(f"    - {destination.label}: {url}")
    hooks = mirai.webhook.destinations
    lines.append(f"  webhooks out:   {len(hooks)}" if hooks else "  webhooks out:   none")
    for hook in hooks:
        events = ", ".join(hook.events) if hook.events else "every event"
        batching = f", batches of up to {hook.batch_max_events}" if hook.batch_max_events else ""
        lines.append(f"    - {hook.label}: {events}, signing {hook.signing.value}{batching}")
    lines.append(f"  robots:         {len(config.robots)}" if config.robots else "  robots:         none")
    for robot in config.robots:
        forward = ", also to the frameworks" if robot.forward_to_frameworks else ""
        lines.append(
            f"    - /robots/{robot.name} → channel {robot.group} as {robot.shown_name!r}, signature "
            f"{robot.signature.value}{forward}"
        )
    lines += _server_lines(config)
    lines += [
        f"  store:          {config.store.path}",
        f"  outbox:         up to {config.outbox.max_events} events, {config.outbox.max_age_seconds} s",
        f"  mapping:        threads {config.mapping.threads.value}, "
        f"long messages {config.mapping.long_messages.value}, guild events to {config.mapping.guild_events}",
        f"  logging:        {config.logging.level}, {config.logging.format.value}",
    ]
    if mirai.enable_verify and len(mirai.verify_key) < WEAK_SECRET_LENGTH:
        lines.append(
            f"  warning: the verify key has fewer than {WEAK_SECRET_LENGTH} characters; it is easy to guess, and "
            "every log line containing it is masked"
        )
    overridden = [var for var in ENV_OVERRIDES if env.get(var)]
    if overridden:
        lines.append(f"  from the environment: {', '.join(overridden)}")
    return lines


def _listening_lines(config: BridgeConfig) -> list[str]:
    """Where the ws and http adapters listen (one line each; a shared port says so)."""
    mirai = config.mirai
    lines: list[str] = []
    shared = (
        mirai.runs("ws") and mirai.runs("http") and (mirai.ws.host, mirai.ws.port) == (mirai.http.host, mirai.http.port)
    )
    if mirai.runs("ws"):
        host = f"[{mirai.ws.host}]" if ":" in mirai.ws.host else mirai.ws.host
        lines.append(f"  ws adapter:     ws://{host}:{mirai.ws.port}/all, /message, /event (and the upload routes)")
    if mirai.runs("http"):
        host = f"[{mirai.http.host}]" if ":" in mirai.http.host else mirai.http.host
        lines.append(
            f"  http adapter:   http://{host}:{mirai.http.port}{' (the same port)' if shared else ''}, "
            f"cors {', '.join(mirai.http.cors)}, {mirai.http.unread_queue_max_size} unread events per poller"
        )
    if mirai.runs("ws") or mirai.runs("http"):
        lines.append(
            f"  uploads:        kept {mirai.uploads.retention_seconds} s, at most {mirai.uploads.total_bytes} bytes "
            f"in all, {config.discord.max_upload_bytes} each, in {config.store.path}.uploads"
        )
    return lines


def _server_lines(config: BridgeConfig) -> list[str]:
    """Where ``[server]`` listens: health, readiness and metrics (and the robots, listed above)."""
    server = config.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    port = str(server.port) if server.port else "<any free port, logged at start>"
    base = f"http://{host}:{port}"
    readiness = "Discord, the store, the adapters" + (
        " and every framework" if server.ready_requires_frameworks else " (frameworks reported, not required)"
    )
    return [
        f"  health:         {base}/healthz (alive), {base}/readyz (ready: {readiness})",
        f"  metrics:        {base}/metrics (Prometheus)",
    ]


def _default_bot_id(config: BridgeConfig) -> str:
    if config.mirai.ids is IdMode.SMALL:
        return "the small id of the Discord bot user id (`check --online` prints it)"
    return "the Discord bot user id"


def _ids(source: str, config: BridgeConfig) -> str:
    """``[mirai] ids``, and in small mode how to find a channel's presented id (relay/ids.py)."""
    if config.mirai.ids is IdMode.SNOWFLAKE:
        return "snowflake (frameworks see Discord ids as they are, 64-bit)"
    return (
        "small (every Discord id shown as a 16-digit id below 2^53, kept in the store); a channel's: "
        f"discord-mirai-relay ids {source} --id CHANNEL_ID"
    )
