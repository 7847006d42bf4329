"""Discord side of the bridge.

``gateway/`` (the session machine and its pieces, the trio shard, resuming across a restart) and ``rest/`` (the
rate limiter and the client) talk to Discord; ``cache`` (with its member records in ``members``), ``snowflakes``
and ``media`` hold its state and ids; ``member_requests`` keeps the books of whole-guild member lists asked over
the gateway (``gateway/members`` sends and waits);
``entities`` turns payloads and cached state into envelope entities for both directions, ``markup`` converts
message content both ways; ``events_in`` (dispatches → events) and ``commands_out`` (commands → REST) share
only ``own_actions``, what the bridge itself did.

:data:`USER_AGENT` is how the bridge introduces itself to Discord, the one copy for every HTTP request it makes
there (REST, ``check --online``, and the gateway's websocket handshake once it sends one).
"""

from typing import Final

from relay import __version__

#: docs/discord.md §8.1: Discord requires a User-Agent of this shape (Cloudflare may block others, error 40333).
USER_AGENT: Final = f"DiscordBot (https://github.com/discord-mirai-relay/discord-mirai-relay, {__version__})"
