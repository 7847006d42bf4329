"""What ``discord-mirai-relay sandbox`` runs, without I/O: where it keeps its files, its built-in configuration,
and the bridge configuration pointed at the emulated Discord.

**Files.** Everything the sandbox keeps lives in one folder of its own, by default ``sandbox/`` beside the
bridge's default store (``$XDG_DATA_HOME/discord-mirai-relay/sandbox``, else
``~/.local/share/discord-mirai-relay/sandbox``; ``--data-dir`` chooses another): the emulated Discord's world
(:data:`WORLD_FILE`: guild, members, messages, uploads; a restart keeps the history) and the sandbox bridge's
own store, outbox and gateway session (:data:`STORE_FILE`). The user's real store is never used: ids of the
emulated Discord must not mix with a real guild's, nor its events wait in a real framework's outbox. Delete
the folder to start a fresh world.

**The bridge's configuration.** The framework side (``[mirai]``, ``[mapping]``, ``[outbox]``, ``[logging]``,
the intents) comes from the user's bridge.toml when one is given, else from :data:`BUILT_IN` (one destination,
``ws://127.0.0.1:8080/ws`` as ``init`` writes it, and the verify key :data:`VERIFY_KEY`; no file, no
environment variable needed). The Discord side is replaced by the emulator's (:func:`sandbox_config`): its
REST and gateway addresses, its token, all shards in one, and ``proxy = "none"`` (the emulator is on loopback:
no proxy, whatever the environment says). With ``--demo-bot`` the destinations are replaced by the demo bot's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

import attrs

from relay.config import PROXY_NONE, BridgeConfig, DestinationConfig
from relay.configload import default_store_path

#: the page's and the emulated Discord's port unless --port says otherwise (0: any free port)
DEFAULT_PORT: Final = 8765
#: the folder beside the bridge's default store
DIR_NAME: Final = "sandbox"
#: the emulated Discord's world
WORLD_FILE: Final = "discord.sqlite3"
#: the sandbox bridge's store (its outbox and gateway session file sit beside it)
STORE_FILE: Final = "bridge.sqlite3"
#: the built-in configuration's mirai verify key (the sandbox is loopback-only: nothing secret about it)
VERIFY_KEY: Final = "sandbox-verify-key"
#: what the built-in configuration is called in messages
BUILT_IN_NAME: Final = "the built-in sandbox configuration"

#: the built-in configuration, as if read from a bridge.toml (so it is checked like one, and the environment's
#: RELAY_LOG_LEVEL / MIRAI_VERIFY_KEY and the logging flags apply to it)
BUILT_IN: Final[Mapping[str, Any]] = {
    "mirai": {
        "verify_key": VERIFY_KEY,
        "reverse_ws": {"destinations": [{"host": "127.0.0.1", "port": 8080, "path": "/ws"}]},
    },
}


def sandbox_dir(env: Mapping[str, str]) -> str:
    """The default folder of the sandbox's files (see the module docstring)."""
    return os.path.join(os.path.dirname(default_store_path(env)), DIR_NAME)


def sandbox_config(
    base: BridgeConfig,
    *,
    api_base_url: str,
    gateway_url: str,
    token: str,
    store_path: str,
    destinations: tuple[DestinationConfig, ...] | None = None,
    verify_key: str | None = None,
) -> BridgeConfig:
    """``base`` with the emulated Discord in place of Discord, the sandbox's own store and ``[server]`` on any free
    port; ``destinations`` and ``verify_key`` replace the framework side's when given (``--demo-bot``)."""
    discord = attrs.evolve(
        base.discord,
        api_base_url=api_base_url,
        gateway_url=gateway_url,
        token=token,
        shard_count=None,
        shard_ids=(),
        proxy=PROXY_NONE,
    )
    mirai = base.mirai
    if destinations is not None:
        mirai = attrs.evolve(mirai, reverse_ws=attrs.evolve(mirai.reverse_ws, destinations=destinations))
    if verify_key is not None:
        mirai = attrs.evolve(mirai, verify_key=verify_key)
    store = attrs.evolve(base.store, path=store_path)
    # health, metrics and robots on any free port (logged at start): a real bridge on this machine may hold the
    # configured one, and the sandbox must start beside it
    server = attrs.evolve(base.server, port=0)
    return attrs.evolve(base, discord=discord, mirai=mirai, store=store, server=server)


def needs_verify_key(config: BridgeConfig) -> bool:
    """The framework side verifies, but no key was given (the user's bridge.toml without MIRAI_VERIFY_KEY)."""
    return config.mirai.enable_verify and not config.mirai.verify_key
