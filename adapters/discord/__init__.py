"""Discord side: gateway (sans-I/O + trio shard), REST client + rate limiter, Discord ⇄ envelope.

:data:`USER_AGENT` is how the bridge introduces itself to Discord, the one copy for every HTTP request it makes
there (REST, ``check --online``, and the gateway's websocket handshake once it sends one).
"""

from typing import Final

from relay import __version__

#: discord.md §8.1: Discord requires a User-Agent of this shape (Cloudflare may block others, error 40333).
USER_AGENT: Final = f"DiscordBot (https://github.com/discord-mirai-relay/discord-mirai-relay, {__version__})"
