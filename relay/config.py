"""Configuration model (``bridge.toml``): frozen attrs classes with defaults.

Secrets (the Discord token, the mirai verify key) are ``repr=False`` and normally come from environment
variables named in the file (``token_env`` / ``verify_key_env``), never from the file itself.

Loading, validation (every problem with its TOML path), and precedence (CLI > environment > file >
defaults) live in :mod:`relay.configload`.
"""

from __future__ import annotations

import enum
import json
from typing import Final

import attrs

# Discord gateway intents (docs/discord.md §5). The default set is what the bridge needs to map every event of
# docs/architecture.md §3: GUILDS | GUILD_MEMBERS | GUILD_MODERATION | GUILD_MESSAGES | DIRECT_MESSAGES |
# MESSAGE_CONTENT.
INTENT_BITS: dict[str, int] = {
    "GUILDS": 1 << 0,
    "GUILD_MEMBERS": 1 << 1,
    "GUILD_MODERATION": 1 << 2,
    "GUILD_EXPRESSIONS": 1 << 3,
    "GUILD_INTEGRATIONS": 1 << 4,
    "GUILD_WEBHOOKS": 1 << 5,
    "GUILD_INVITES": 1 << 6,
    "GUILD_VOICE_STATES": 1 << 7,
    "GUILD_PRESENCES": 1 << 8,
    "GUILD_MESSAGES": 1 << 9,
    "GUILD_MESSAGE_REACTIONS": 1 << 10,
    "GUILD_MESSAGE_TYPING": 1 << 11,
    "DIRECT_MESSAGES": 1 << 12,
    "DIRECT_MESSAGE_REACTIONS": 1 << 13,
    "DIRECT_MESSAGE_TYPING": 1 << 14,
    "MESSAGE_CONTENT": 1 << 15,
    "GUILD_SCHEDULED_EVENTS": 1 << 16,
    "AUTO_MODERATION_CONFIGURATION": 1 << 20,
    "AUTO_MODERATION_EXECUTION": 1 << 21,
    "GUILD_MESSAGE_POLLS": 1 << 24,
    "DIRECT_MESSAGE_POLLS": 1 << 25,
}
PRIVILEGED_INTENTS: frozenset[str] = frozenset({"GUILD_MEMBERS", "GUILD_PRESENCES", "MESSAGE_CONTENT"})
DEFAULT_INTENTS: tuple[str, ...] = (
    "GUILDS",
    "GUILD_MEMBERS",
    "GUILD_MODERATION",
    "GUILD_MESSAGES",
    "DIRECT_MESSAGES",
    "MESSAGE_CONTENT",
)


def intents_value(names: tuple[str, ...]) -> int:
    value = 0
    for name in names:
        value |= INTENT_BITS[name]
    return value


@attrs.frozen(kw_only=True)
class BackoffConfig:
    """Exponential backoff with full jitter: delay = uniform(0, min(cap, initial * factor**attempt))."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0


# --- [discord.presence] and [discord] proxy (issue 16) -------------------------------------------------------


class PresenceStatus(enum.Enum):
    """The status shown next to the bot (docs/discord.md §2.5: identify ``presence.status``)."""

    ONLINE = "online"
    IDLE = "idle"
    DND = "dnd"  #: do not disturb
    INVISIBLE = "invisible"  #: shown as offline


class ActivityType(enum.Enum):
    """The activity under the bot's name; Discord's activity types 0–5 (``""``: none)."""

    NONE = ""
    PLAYING = "playing"
    STREAMING = "streaming"
    LISTENING = "listening"
    WATCHING = "watching"
    CUSTOM = "custom"
    COMPETING = "competing"


#: how Discord shows each activity: "Playing {text}", ...; a custom status shows its text alone
_ACTIVITY_FORMAT: dict[ActivityType, str] = {
    ActivityType.PLAYING: "Playing {}",
    ActivityType.STREAMING: "Streaming {}",
    ActivityType.LISTENING: "Listening to {}",
    ActivityType.WATCHING: "Watching {}",
    ActivityType.CUSTOM: "custom status {}",
    ActivityType.COMPETING: "Competing in {}",
}


@attrs.frozen(kw_only=True)
class PresenceConfig:
    """What the bot shows in member lists, sent with every identify (bots may set an activity's name, type,
    state and url, and nothing else)."""

    status: PresenceStatus = PresenceStatus.ONLINE
    activity: ActivityType = ActivityType.NONE
    text: str = ""  #: the activity's name; for ``custom``, the status text itself
    url: str = ""  #: ``streaming`` only: a https://twitch.tv/... or https://youtube.com/... URL

    def describe(self) -> str:
        """``online``, ``idle, Playing chess``, ``online, Streaming talks (https://twitch.tv/x)``."""
        if self.activity is ActivityType.NONE:
            return self.status.value
        shown = _ACTIVITY_FORMAT[self.activity].format(json.dumps(self.text, ensure_ascii=False))
        return f"{self.status.value}, {shown}" + (f" ({self.url})" if self.url else "")


#: ``[discord] proxy`` value that means "connect directly, whatever the environment says"
PROXY_NONE = "none"


# --- end of the issue 16 block ----------------------------------------------------------------------------------
#: Bytes a full entry of the Discord cache costs, measured with tracemalloc (tests/unit/test_discord_members.py
#: checks the member figure at the cap with churn; users, DM channels and media ids (a CDN URL with its query)
#: were measured the same way, 60,000 through maps of 20,000).
CACHE_MEMBER_BYTES: Final = 400
CACHE_USER_BYTES: Final = 370
CACHE_DM_CHANNEL_BYTES: Final = 200
CACHE_MEDIA_ID_BYTES: Final = 450


@attrs.frozen(kw_only=True)
class DiscordCacheConfig:
    """``[discord.cache]``: the bounds of the Discord state cache (adapters/discord/members.py: what each costs)."""

    #: members kept over all guilds, least recently used evicted first (~0.4 KB each)
    max_members: int = 100_000
    #: members kept per guild; a guild's member list is served from the cache only when it fits
    max_members_per_guild: int = 25_000
    #: users kept outside guild member lists (DM partners, profile lookups)
    max_users: int = 20_000
    #: DM channels remembered (channel → the other user)
    max_dm_channels: int = 20_000
    #: image/audio ids the bridge issued whose URL is remembered
    max_media_ids: int = 20_000

    def estimated_bytes(self) -> int:
        """The memory these bounds imply once every one is full (guilds, channels and roles come on top)."""
        return (
            self.max_members * CACHE_MEMBER_BYTES
            + self.max_users * CACHE_USER_BYTES
            + self.max_dm_channels * CACHE_DM_CHANNEL_BYTES
            + self.max_media_ids * CACHE_MEDIA_ID_BYTES
        )


# --- [discord.backfill] (issue 15: crash without loss) ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class BackfillConfig:
    """How far back the bridge reads a channel's history after its gateway session was lost (a crash, a refused
    resume, a server that never resumes), to deliver the messages it missed. 0 in either turns it off."""

    max_age_seconds: int = 3600  #: read back at most this far (older gaps are reported, not filled)
    max_messages: int = 1000  #: per channel and gap (each 100 cost one rate-limited request)


# --- end of the issue 15 block ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DiscordConfig:
    token: str = attrs.field(default="", repr=False)  #: prefer token_env; never logged
    token_env: str = "DISCORD_TOKEN"
    intents: tuple[str, ...] = DEFAULT_INTENTS
    shard_count: int | None = None  #: None = "auto" (from GET /gateway/bot)
    shard_ids: tuple[int, ...] = ()  #: empty = all shards of shard_count
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = ""  #: empty = from GET /gateway/bot
    compress: bool = True  #: zlib-stream transport compression
    large_threshold: int = 250
    max_message_bytes: int = 64 * 1024 * 1024  #: largest gateway message accepted
    request_timeout: float = 15.0  #: per REST request
    max_rate_limit_wait: float = 300.0  #: give up on a request rather than wait longer than this
    global_rate_limit: int = 50  #: REST requests per second (Discord's default global limit)
    max_retries: int = 3  #: for 5xx / network errors on requests safe to repeat
    max_upload_bytes: int = 10 * 1024 * 1024
    invalid_request_warn: int = 5000  #: warn at this many 401/403/429 in 10 min (Discord bans at 10,000)
    invalid_request_refuse: int = 9000  #: refuse REST requests from this many on, before Discord's ban
    identify_reserve: int = 5  #: never spend the last N identifies of the daily budget
    reconnect: BackoffConfig = BackoffConfig()
    #: proxy URL for REST, the gateway and media; "" = the environment's (HTTPS_PROXY, ALL_PROXY, NO_PROXY);
    #: "none" = no proxy whatever the environment says. May carry a password: never shown.
    proxy: str = attrs.field(default="", repr=False)
    #: allow plain http:// / ws:// URLs that point at Discord's own hosts (the token would travel unencrypted)
    allow_insecure: bool = False
    presence: PresenceConfig = PresenceConfig()
    cache: DiscordCacheConfig = DiscordCacheConfig()
    backfill: BackfillConfig = BackfillConfig()

    @property
    def intents_value(self) -> int:
        return intents_value(self.intents)


class Protocol(enum.Enum):
    WS = "ws"
    WSS = "wss"


@attrs.frozen(kw_only=True)
class DestinationConfig:
    """One bot framework's websocket server (mirai-api-http ``reverse-ws`` destination)."""

    name: str = ""  #: label in logs and the outbox cursor; default "host:port/path"
    host: str = "localhost"
    port: int = 8080
    path: str = "/"
    protocol: Protocol = Protocol.WS
    method: str = "GET"
    extra_parameters: dict[str, str] = attrs.field(factory=dict)
    extra_headers: dict[str, str] = attrs.field(factory=dict, repr=False)  #: may carry credentials
    ca_file: str = ""  #: extra CA bundle for wss (system trust store otherwise)

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}{self.path}"


@attrs.frozen(kw_only=True)
class ReverseWsConfig:
    destinations: tuple[DestinationConfig, ...] = ()
    extra_parameters: dict[str, str] = attrs.field(factory=dict)
    extra_headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    reconnect: BackoffConfig = BackoffConfig(initial=1.0, factor=2.0, cap=30.0)
    connect_timeout: float = 10.0


# --- [mirai] ids (small ids for frameworks that parse JSON numbers as doubles; relay/ids.py)
class IdMode(enum.Enum):
    SNOWFLAKE = "snowflake"  #: frameworks see Discord ids as they are (64-bit)
    SMALL = "small"  #: frameworks see each Discord id as a stable integer below 2**53, stored in the store


# --- end [mirai] ids
# --------------------------------------------------------------------------- webhooks out (issue 14)

#: every mirai event type name (docs/mirai-api-http.md §9): what ``[[mirai.webhook.destinations]] events`` may list
MIRAI_EVENT_TYPES: tuple[str, ...] = (
    "FriendMessage",
    "GroupMessage",
    "TempMessage",
    "StrangerMessage",
    "OtherClientMessage",
    "FriendSyncMessage",
    "GroupSyncMessage",
    "TempSyncMessage",
    "StrangerSyncMessage",
    "BotOnlineEvent",
    "BotOfflineEventActive",
    "BotOfflineEventForce",
    "BotOfflineEventDropped",
    "BotReloginEvent",
    "BotGroupPermissionChangeEvent",
    "BotMuteEvent",
    "BotUnmuteEvent",
    "BotJoinGroupEvent",
    "BotLeaveEventActive",
    "BotLeaveEventKick",
    "BotLeaveEventDisband",
    "FriendInputStatusChangedEvent",
    "FriendNickChangedEvent",
    "FriendAddEvent",
    "FriendDeleteEvent",
    "FriendRecallEvent",
    "GroupRecallEvent",
    "NudgeEvent",
    "GroupNameChangeEvent",
    "GroupMuteAllEvent",
    "GroupAllowAnonymousChatEvent",
    "GroupAllowConfessTalkEvent",
    "GroupAllowMemberInviteEvent",
    "MemberJoinEvent",
    "MemberLeaveEventKick",
    "MemberLeaveEventQuit",
    "MemberCardChangeEvent",
    "MemberSpecialTitleChangeEvent",
    "MemberPermissionChangeEvent",
    "MemberMuteEvent",
    "MemberUnmuteEvent",
    "MemberHonorChangeEvent",
    "NewFriendRequestEvent",
    "MemberJoinRequestEvent",
    "BotInvitedJoinGroupRequestEvent",
    "OtherClientOnlineEvent",
    "OtherClientOfflineEvent",
    "CommandExecutedEvent",
)


class WebhookSigning(enum.Enum):
    NONE = "none"  #: mirai-api-http's behaviour: no signature
    STANDARD = "standard"  #: Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature
    X_SIGNATURE = "x-signature"  #: hex HMAC-SHA256 of the body (the Sendbird convention)


@attrs.frozen(kw_only=True)
class WebhookDestinationConfig:
    """One URL every event is POSTed to (mirai-api-http's ``webhook`` adapter, durable and signed)."""

    name: str = ""  #: label in logs, metrics, dead letters and the outbox cursor; default: the url
    url: str = ""  #: required; http:// or https:// (a URL without a scheme gets http://, as mirai-api-http)
    extra_headers: dict[str, str] = attrs.field(factory=dict, repr=False)  #: may carry credentials
    timeout: float = 5.0  #: seconds for one POST, connection included
    retries: int = 3  #: further attempts of a failed POST before its events go to the dead letters
    backoff: BackoffConfig = BackoffConfig(initial=1.0, factor=2.0, cap=60.0)
    events: tuple[str, ...] = ()  #: mirai event type names to send; empty = all
    signing: WebhookSigning = WebhookSigning.NONE
    secret_env: str = ""  #: environment variable holding the signing secret
    secret: str = attrs.field(default="", repr=False)  #: read from secret_env only; never logged
    batch_max_events: int = 0  #: 0 = off (one bare event per POST); N = a JSON array of up to N events
    batch_max_ms: int = 200  #: with batching: wait at most this long for a batch to fill

    @property
    def label(self) -> str:
        return self.name or self.url


@attrs.frozen(kw_only=True)
class WebhookConfig:
    destinations: tuple[WebhookDestinationConfig, ...] = ()
    extra_headers: dict[str, str] = attrs.field(factory=dict, repr=False)  #: on every POST (mirai extraHeaders)


# --------------------------------------------------------------------------- end of webhooks out
# ------------------------------------------------------------------ mirai-api-http adapters (issue 13)

#: mirai-api-http's adapters the bridge can run, as ``[mirai] adapters`` names them (docs/mirai-api-http.md §1).
#: ``webhook`` joins this list with the webhook adapter.
MIRAI_ADAPTERS: tuple[str, ...] = ("reverse-ws", "ws", "http")


@attrs.frozen(kw_only=True)
class WsServerConfig:
    """mirai-api-http's ``ws`` adapter: the bridge as a websocket server (docs/mirai-api-http.md §4.1)."""

    host: str = "127.0.0.1"
    port: int = 8080


@attrs.frozen(kw_only=True)
class HttpServerConfig:
    """mirai-api-http's ``http`` adapter: commands as HTTP requests, events polled (docs/mirai-api-http.md §11.1)."""

    host: str = "127.0.0.1"
    port: int = 8080
    cors: tuple[str, ...] = ("*",)  #: allowed browser origins (hosts or whole origins); "*" = every origin
    #: unread events one polling identity sees at a time; the rest wait in the outbox (never dropped)
    unread_queue_max_size: int = 100


@attrs.frozen(kw_only=True)
class UploadsConfig:
    """Files frameworks upload (uploadImage, uploadVoice, uploadShortVideo, file/upload), kept beside the store.

    Each upload is at most ``[discord] max_upload_bytes`` (Discord would refuse anything larger)."""

    retention_seconds: int = 24 * 3600  #: an upload is deleted this long after it arrived
    total_bytes: int = 512 * 1024 * 1024  #: beyond this the oldest uploads are deleted first


@attrs.frozen(kw_only=True)
class MiraiConfig:
    verify_key: str = attrs.field(default="", repr=False)  #: prefer verify_key_env; never logged
    verify_key_env: str = "MIRAI_VERIFY_KEY"
    enable_verify: bool = True
    single_mode: bool = False
    bot_id: int = 0  #: the qq the bridge presents; 0 = the Discord bot user id (as `ids` presents it)
    ids: IdMode = IdMode.SNOWFLAKE  #: how Discord ids are shown to frameworks (see README, "Ids")
    send_qq_header: bool = True  #: send the bot id as a `qq` header when dialing
    reserved_sync_id: str = "-1"
    command_timeout: float = 30.0
    max_frame_bytes: int = 16 * 1024 * 1024
    #: the adapters to run, any of MIRAI_ADAPTERS (mirai-api-http's ``adapters``)
    adapters: tuple[str, ...] = ("reverse-ws",)
    reverse_ws: ReverseWsConfig = ReverseWsConfig()
    webhook: WebhookConfig = WebhookConfig()
    ws: WsServerConfig = WsServerConfig()
    http: HttpServerConfig = HttpServerConfig()
    uploads: UploadsConfig = UploadsConfig()

    def runs(self, adapter: str) -> bool:
        """Whether ``adapter`` (a name of MIRAI_ADAPTERS) is in ``adapters``."""
        return adapter in self.adapters


@attrs.frozen(kw_only=True)
class StoreConfig:
    path: str = ""  #: empty = <user data dir>/discord-mirai-relay/bridge.sqlite3
    message_retention_days: int = 30


@attrs.frozen(kw_only=True)
class OutboxConfig:
    max_events: int = 200_000
    max_age_seconds: int = 7 * 24 * 3600


class ThreadMode(enum.Enum):
    OWN_GROUP = "own_group"  #: a thread is a group of its own (id = thread id)
    PARENT = "parent"  #: thread messages appear in the parent channel's group


class LongMessageMode(enum.Enum):
    SPLIT = "split"
    REFUSE = "refuse"


class WebhookMessageMode(enum.Enum):
    FORWARD = "forward"  #: forwarded as GroupMessage from a member named after the webhook
    IGNORE = "ignore"


@attrs.frozen(kw_only=True)
class MappingConfig:
    threads: ThreadMode = ThreadMode.OWN_GROUP
    long_messages: LongMessageMode = LongMessageMode.SPLIT
    #: where guild-level events (member join/leave/mute...) go: "system" (system channel, else the first
    #: text channel) or a channel id
    guild_events: str = "system"
    admin_role: str = ""  #: role name or id that memberAdmin assigns; empty = memberAdmin unsupported
    allow_mention_all: bool = False  #: may frameworks send AtAll (@everyone)?
    webhook_messages: WebhookMessageMode = WebhookMessageMode.FORWARD
    #: channels to bridge (ids); empty = every text channel the bot can see
    channels: tuple[int, ...] = ()


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


@attrs.frozen(kw_only=True)
class LoggingConfig:
    level: str = "INFO"
    format: LogFormat = LogFormat.TEXT
    status_interval: float = 60.0  #: seconds between status lines at INFO


# --------------------------------------------------------------------------- inbound robots (issue 14)


class RobotSignature(enum.Enum):
    ANY = "any"  #: Standard Webhooks or timestamp + sign, whichever the request carries
    STANDARD = "standard"  #: Standard Webhooks headers only
    TIMESTAMP = "timestamp"  #: DingTalk/Feishu timestamp + sign only
    NONE = "none"  #: no signature checked (only for a listener nobody else can reach)


@attrs.frozen(kw_only=True)
class RobotConfig:
    """An inbound webhook robot: ``POST /robots/<name>`` posts into one group (Discord channel)."""

    name: str = ""  #: required; the URL path segment: letters, digits, "-" and "_"
    group: int = 0  #: required; the mirai group id = the Discord channel id it posts into
    display_name: str = ""  #: shown in bold before each post on Discord; default: the name
    secret_env: str = ""  #: environment variable holding the secret (required unless signature = "none")
    secret: str = attrs.field(default="", repr=False)  #: read from secret_env only; never logged
    signature: RobotSignature = RobotSignature.ANY
    max_body_bytes: int = 1024 * 1024  #: larger posts are refused with 413
    forward_to_frameworks: bool = False  #: also push each post to the frameworks as a GroupMessage

    @property
    def shown_name(self) -> str:
        return self.display_name or self.name


# --------------------------------------------------------------------------- end of inbound robots


# --------------------------------------------------------------------------- [server]: health, metrics, robots

#: the ``[server]`` listener's default port. Not 8080 (mirai-api-http's default for every adapter, so also where a
#: reverse-ws framework server usually listens on the same machine), not 8000 (Graia Ariadne's server), not 8765
#: (the sandbox), not 9090-9999 (Prometheus itself and the range its exporters register ports in).
DEFAULT_SERVER_PORT = 8780


@attrs.frozen(kw_only=True)
class ServerConfig:
    """The bridge's own HTTP listener: ``/healthz``, ``/readyz``, ``/metrics`` and the robots' ``/robots/<name>``.

    It may share its host and port with ``[mirai.ws]`` / ``[mirai.http]`` (one socket, one router)."""

    host: str = "127.0.0.1"  #: an address or host name to listen on; "0.0.0.0" or "::" for every interface
    port: int = DEFAULT_SERVER_PORT  #: 0 = any free port (the log says which)
    #: also count the frameworks in readiness: every reverse-ws destination connected and verified, every
    #: webhook receiver reachable (off: they are reported by /readyz but a framework that is down does not make
    #: the bridge unready, nor hold up systemd's READY=1 at start)
    ready_requires_frameworks: bool = False


# --------------------------------------------------------------------------- end of [server]


@attrs.frozen(kw_only=True)
class BridgeConfig:
    discord: DiscordConfig = DiscordConfig()
    mirai: MiraiConfig = MiraiConfig()
    store: StoreConfig = StoreConfig()
    outbox: OutboxConfig = OutboxConfig()
    mapping: MappingConfig = MappingConfig()
    logging: LoggingConfig = LoggingConfig()
    robots: tuple[RobotConfig, ...] = ()
    server: ServerConfig = ServerConfig()
