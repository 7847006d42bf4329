"""The commented ``bridge.toml`` that ``discord-mirai-relay init`` writes.

:func:`render_template` fills in what ``init`` asks or is told (the framework's destination, the proxy, the store
path); :data:`BRIDGE_TOML` is it with the defaults (a plain ``init``). The repository's own ``bridge.toml`` is
exactly that text (a test checks it), and a test parses it and compares it with the defaults of
:mod:`relay.config`, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Final

from relay.config import DEFAULT_SERVER_PORT
from relay.frameworks import DEFAULT_FRAMEWORK, FRAMEWORKS, Framework

__all__ = ["BRIDGE_TOML", "render_template"]

_TEMPLATE: Final = """\
# bridge.toml — configuration of discord-mirai-relay.
#
# Every key is listed with its default value. Delete what you do not change, or keep it as a reminder.
# Check this file with:   discord-mirai-relay check bridge.toml
# Secrets do NOT belong here: the Discord token and the mirai verify key are read from environment
# variables (DISCORD_TOKEN and MIRAI_VERIFY_KEY unless renamed below).
# Some values can also be set by environment variables (RELAY_LOG_LEVEL, RELAY_LOG_FORMAT,
# RELAY_STORE_PATH) and by command-line flags; flags win over the environment, which wins over this file.

[discord]
# token = "..."                  # possible, but keep the token in the environment variable instead
token_env = "DISCORD_TOKEN"      # name of the environment variable holding the bot token
# Proxy for every connection to Discord (REST, gateway, media; never the frameworks): http://, https://,
# socks5:// or socks5h:// (DNS through the proxy), e.g. "socks5h://127.0.0.1:1080". "" = the environment's
# HTTPS_PROXY / ALL_PROXY (and NO_PROXY); "none" = no proxy even if the environment names one. A password in
# the URL is never shown; keep it out of this file by putting the URL in ALL_PROXY instead.
proxy = {proxy}
allow_insecure = false           # allow http:// / ws:// URLs to Discord's own hosts (the token travels unencrypted)
# Gateway intents: names, or one integer bitfield. MESSAGE_CONTENT and GUILD_MEMBERS are privileged:
# enable them for your bot in the Developer Portal (Bot → Privileged Gateway Intents) or Discord refuses
# to connect (close code 4014).
intents = ["GUILDS", "GUILD_MEMBERS", "GUILD_MODERATION", "GUILD_MESSAGES", "DIRECT_MESSAGES", "MESSAGE_CONTENT"]
shard_count = "auto"             # "auto" (Discord's recommendation) or a number of shards
shard_ids = []                   # shards this process runs; [] = all of them (needs a number above if set)
api_base_url = "https://discord.com/api/v10"  # REST base URL; change only for a Discord-compatible server
gateway_url = ""                 # "" = ask Discord (GET /gateway/bot); or a ws:// / wss:// URL
compress = true                  # zlib-stream transport compression on the gateway
large_threshold = 250            # 50–250: guilds bigger than this send only part of their member list
max_message_bytes = 67108864     # largest gateway message accepted (64 MiB)
request_timeout = 15.0           # seconds for one REST request
max_rate_limit_wait = 300.0      # give up on a request rather than wait longer than this for a rate limit
global_rate_limit = 50           # REST requests per second across all routes (Discord's global limit)
max_retries = 3                  # retries of a request after a 5xx or network error, when safe to repeat
max_upload_bytes = 10485760      # largest attachment uploaded (10 MiB)
invalid_request_warn = 5000      # warn at this many 401/403/429 answers in 10 minutes (Discord bans at 10,000)
invalid_request_refuse = 9000    # refuse REST requests from this many on, before Discord's ban
identify_reserve = 5             # never spend the last N gateway identifies of the daily budget

[discord.reconnect]              # backoff between gateway reconnects: random(0, min(cap, initial * factor^n))
initial = 1.0
factor = 2.0
cap = 60.0

[discord.backfill]               # after a lost session (crash, refused resume): read what was missed from history
max_age_seconds = 3600           # read each bridged channel back at most this far; 0 = never back-fill
max_messages = 1000              # and at most this many messages per channel (100 per request); 0 = never

[discord.presence]               # what the bot shows in member lists, sent when it connects
status = "online"                # "online", "idle", "dnd" (do not disturb) or "invisible"
activity = ""                    # "" = none; "playing", "streaming", "listening", "watching", "competing", "custom"
text = ""                        # the activity's text ("Playing <text>"), or the custom status itself
url = ""                         # "streaming" only: a https://twitch.tv/... or https://youtube.com/... URL

[discord.cache]                  # bounds of the Discord state cache; `check` prints the memory they imply
max_members = 100000             # members over all guilds, least recently used evicted first (~0.4 KB each)
max_members_per_guild = 25000    # members per guild; memberList answers from the cache when a guild fits
max_users = 20000                # users outside member lists: DM partners, profile lookups (~0.37 KB each)
max_dm_channels = 20000          # DM channel -> user remembered (~0.2 KB each)
max_media_ids = 20000            # image/audio ids whose URL is remembered (~0.45 KB each)

[mirai]
# verify_key = "..."             # possible, but keep the key in the environment variable instead
verify_key_env = "MIRAI_VERIFY_KEY"  # name of the environment variable holding the verifyKey
enable_verify = true             # frameworks must send the verifyKey (as mirai-api-http's enableVerify)
single_mode = {single_mode}              # mirai-api-http singleMode: one shared session "SINGLE_SESSION"
bot_id = 0                       # the bot "qq" frameworks bind with; 0 = the Discord bot user id (as `ids` shows it)
# How frameworks see Discord ids (groups, members, friends, the bot). "snowflake": as they are (64-bit);
# "small": each as a stable 16-digit number below 2^53, kept in the store, for frameworks that parse JSON
# numbers as doubles (JavaScript) and would corrupt snowflakes. Switching changes every id frameworks see.
# With "small", bot_id must be 0 or below 1000000000000000; `discord-mirai-relay ids` shows the mapping.
ids = "snowflake"
send_qq_header = true            # send the bot id as a `qq` header when dialing a framework
reserved_sync_id = "-1"          # syncId of pushed events (mirai-api-http's reservedSyncId)
command_timeout = 30.0           # seconds a framework command may take before it fails
max_frame_bytes = 16777216       # largest websocket frame accepted from a framework (16 MiB)
# mirai-api-http's adapters to run, any combination (as its `adapters`):
#   "reverse-ws"  the bridge dials your framework's websocket server ([mirai.reverse_ws] below)
#   "ws"          your framework dials the bridge's websocket server ([mirai.ws]): NoneBot, Ariadne's
#                 WebsocketClientConfig, most SDKs
#   "http"        your framework calls the bridge's HTTP API and polls for events ([mirai.http]):
#                 Ariadne's HttpClientConfig, NoneBot (for commands), YiriMirai
adapters = {adapters}

[mirai.reverse_ws]
# Added to every destination; a destination's own values are added after these (same key: the
# destination's value wins).
extra_parameters = {{}}            # URL query parameters, e.g. {{ token = "abc" }}
extra_headers = {{}}               # request headers, e.g. {{ Authorization = "..." }}; masked in logs
connect_timeout = 10.0           # seconds to open the websocket connection

[mirai.reverse_ws.reconnect]     # backoff between reconnects to a framework
initial = 1.0
factor = 2.0
cap = 30.0

# The "ws" adapter: frameworks connect to ws://host:port/all (or /message, /event) with verifyKey and qq
# (or sessionKey) in the headers or the query. ws and http may share one port, as in mirai-api-http.
# Listening on anything but a loopback address needs enable_verify = true.
[mirai.ws]
host = "127.0.0.1"
port = 8080

# The "http" adapter: /verify, /bind, every command at its mirai-api-http route, event polling
# (fetchMessage...), uploads (uploadImage...). The ws adapter serves the upload routes on its port too.
[mirai.http]
host = "127.0.0.1"
port = 8080
cors = ["*"]                     # browser origins allowed to call it: hosts, whole origins, or "*"
unread_queue_max_size = 100      # events one poller sees at a time (mirai-api-http's unreadQueueMaxSize);
                                 # the rest wait in the outbox and come as earlier ones are fetched

# Uploads (uploadImage, uploadVoice, uploadShortVideo, file/upload) are kept in a private folder beside
# the store (<store path>.uploads) until they are sent; each at most [discord] max_upload_bytes.
[mirai.uploads]
retention_seconds = 86400        # an upload is deleted this long after it arrived (1 day)
total_bytes = 536870912          # beyond this (512 MiB) the oldest uploads are deleted first

# One table per bot framework websocket server the bridge dials (it is the client). Repeat the table
# for more. host and port are required; the rest shows the defaults.
{destination}

# --- webhooks out: mirai-api-http's `webhook` adapter, durable and signed (README "Webhooks out").
# Every event is POSTed, as the bare mirai event object, to each destination, in order; a receiver that is
# down gets its events when it is back (within [outbox] retention); an event whose POSTs keep failing goes
# to the dead letters (`discord-mirai-relay webhooks dead-letters` / `webhooks replay`).
[mirai.webhook]
extra_headers = {{}}               # headers on every POST (mirai-api-http's extraHeaders); masked in logs

# One table per URL; none by default. Uncomment and repeat for more. url is required.
{webhook_destination}
# extra_headers = {{}}             # added after [mirai.webhook] extra_headers (same key: this one wins)
# timeout = 5.0                  # seconds for one POST, connecting included
# retries = 3                    # further attempts of a failed POST, then its events go to the dead letters
# events = []                    # mirai event types to send, e.g. ["GroupMessage", "MemberJoinEvent"]; [] = all
# signing = "none"               # "none" (as mirai-api-http), "standard" (Standard Webhooks) or "x-signature"
# secret_env = ""                # environment variable holding the signing secret (standard: whsec_<base64>)
# secret = "..."                 # NOT here: always in the environment variable named by secret_env
# batch_max_events = 0           # 0 = one event per POST; N = a JSON array of up to N events per POST
# batch_max_ms = 200             # with batching: wait at most this long for a batch to fill
# [mirai.webhook.destinations.backoff]  # between attempts: random(0, min(cap, initial * factor^n)) seconds
# initial = 1.0
# factor = 2.0
# cap = 60.0

[store]
path = {store_path}                        # SQLite file; "" = $XDG_DATA_HOME/discord-mirai-relay/bridge.sqlite3
                                 # (~/.local/share/...); a relative path is relative to this file
message_retention_days = 30      # how long message ids stay resolvable (quote, recall, messageFromId)

[outbox]                         # events kept while a framework is away, replayed when it returns
max_events = 200000              # oldest events are dropped (and counted, and logged) beyond this
max_age_seconds = 604800         # events older than this (7 days) are dropped

[mapping]
threads = "own_group"            # "own_group": a thread is a group of its own; "parent": its parent channel's
long_messages = "split"          # text over 2000 characters: "split" into several messages or "refuse" (code 30)
guild_events = "system"          # where member join/leave/mute... go: "system" channel, or a channel id
admin_role = ""                  # role name or id that memberAdmin assigns; "" = memberAdmin unsupported
allow_mention_all = false        # may frameworks send AtAll (@everyone)?
webhook_messages = "forward"     # webhook messages: "forward" as group messages, or "ignore"
channels = []                    # channel ids to bridge; [] = every text channel the bot can see

[logging]
level = "INFO"                   # TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL
format = "text"                  # "text", or "json" (one JSON object per line, for log shippers)
status_interval = 60.0           # seconds between status lines at INFO

# --- the bridge's own HTTP listener (README "Health and metrics"): GET /healthz (alive), /readyz (ready, or 503
# with the reasons), /metrics (Prometheus), and the robots' POST /robots/<name>. It may share its host and port
# with [mirai.ws] / [mirai.http].
[server]
host = "127.0.0.1"               # address to listen on; "0.0.0.0" or "::" = every interface (no authentication!)
port = {server_port}                      # 0 = any free port (the log says which)
ready_requires_frameworks = false  # true: /readyz (and systemd READY=1) also wait for every framework

# --- inbound webhook robots (README "Webhook robots"): POST /robots/<name> on the bridge's [server] listener
# posts the body's text into one Discord channel. None by default; uncomment and repeat for more.
# [[robots]]
# name = "ci"                    # required; the URL is /robots/<name> (letters, digits, - and _)
# group = 123456789012345678     # required; the mirai group id = the Discord channel id it posts into
# display_name = ""              # shown in bold before each post; "" = the name
# secret_env = "ROBOT_CI_SECRET" # environment variable holding the secret senders sign with
# secret = "..."                 # NOT here: always in the environment variable named by secret_env
# signature = "any"              # "any", "standard" (Standard Webhooks), "timestamp" (DingTalk/Feishu), "none"
# max_body_bytes = 1048576       # larger posts are refused with 413
# forward_to_frameworks = false  # also push each post to the frameworks as a GroupMessage
"""


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's: \\" \\\\ \\n \\uXXXX)."""
    return json.dumps(value, ensure_ascii=False)


def _destination(framework: Framework) -> str:
    """The reverse-ws destination table: ``framework``'s server when the bridge dials it, else mirai-api-http's
    defaults, commented out (an example for later)."""
    dials = "reverse-ws" in framework.adapters
    lines = [
        f"# This one: {framework.source}." if dials else "# For example (reverse-ws is not in adapters above):",
        "[[mirai.reverse_ws.destinations]]",
        'name = ""                        # label in logs and in the outbox; "" = "host:port/path"',
        f"host = {_toml_string(framework.host if dials else 'localhost')}",
        f"port = {framework.port if dials else 8080}",
        f"path = {_toml_string(framework.path if dials else '/')}",
        'protocol = "ws"                  # "ws" or "wss"',
        'method = "GET"                   # HTTP method of the upgrade request',
        "extra_parameters = {}",
        "extra_headers = {}",
        'ca_file = ""                     # extra CA bundle (PEM) for wss; "" = the system trust store',
    ]
    return "\n".join(lines if dials else [lines[0], *(f"# {line}" for line in lines[1:])])


def _webhook_destination(framework: Framework) -> str:
    """The first webhook destination: ``framework``'s receiver when it takes events by webhook, else an example."""
    if framework.webhook_url:
        return "\n".join(
            [
                f"# This one: {framework.source}.",
                "[[mirai.webhook.destinations]]",
                f"name = {_toml_string(framework.name)}",
                f"url = {_toml_string(framework.webhook_url)}",
            ]
        )
    return "\n".join(
        [
            "# [[mirai.webhook.destinations]]",
            '# name = ""                      # label in logs, metrics and dead letters; "" = the url',
            '# url = "http://127.0.0.1:9999/events"  # http:// or https://; without a scheme, http:// is assumed',
        ]
    )


def render_template(framework: Framework | None = None, *, proxy: str = "", store_path: str = "") -> str:
    """The commented configuration, set up for ``framework``: the adapters it speaks, the destination of its
    server when the bridge dials it, its webhook receiver when it takes events that way."""
    chosen = framework or FRAMEWORKS[DEFAULT_FRAMEWORK]
    return _TEMPLATE.format(
        proxy=_toml_string(proxy),
        single_mode="true" if chosen.single_mode else "false",
        adapters="[" + ", ".join(_toml_string(a) for a in chosen.adapters) + "]",
        destination=_destination(chosen),
        webhook_destination=_webhook_destination(chosen),
        store_path=_toml_string(store_path),
        server_port=DEFAULT_SERVER_PORT,
    )


BRIDGE_TOML: Final = render_template()
