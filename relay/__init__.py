"""discord-mirai-relay: run mirai-api-http v2 bot frameworks on Discord."""

from __future__ import annotations

__version__ = "0.1.0"
