"""``python -m relay``: the same command as the ``discord-mirai-relay`` console script."""

from __future__ import annotations

from relay.cli import console_main

if __name__ == "__main__":
    console_main()
