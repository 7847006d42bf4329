"""A Graia Ariadne bot in webhook mode (``HttpServerConfig``) for tests/integration/test_ariadne_webhook.py — run
with Ariadne's OWN interpreter ($ARIADNE_PYTHON; it pins pydantic 1):

    $ARIADNE_PYTHON tests/integration/ariadne_webhook_bot.py PORT ACCOUNT PATH HEADER_VALUE

Ariadne's HTTP server (amnesia's aiohttp service on 127.0.0.1:PORT) takes POSTed events at PATH, answering 403
unless the ``qq`` header is ACCOUNT and 401 unless ``X-Auth`` is HEADER_VALUE (docs/mirai-api-http.md §10.2). Each
GroupMessage it receives is printed as one JSON line, ``ARIADNE_BOT {"group": ..., "text": ..., "source": ...}``.
It has no client connection (no API calls): webhook mode is one-way. Runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys

from graia.amnesia.builtins.aiohttp import AiohttpServerService
from graia.ariadne.app import Ariadne
from graia.ariadne.connection.config import HttpServerConfig, config
from graia.ariadne.event.message import GroupMessage
from launart import Launart


def report(**fields: object) -> None:
    print("ARIADNE_BOT " + json.dumps(fields, ensure_ascii=False), flush=True)


def main() -> None:
    port, account, path, header_value = sys.argv[1:5]
    manager = Launart()
    Ariadne.config(launch_manager=manager)
    manager.add_service(AiohttpServerService("127.0.0.1", int(port)))
    app = Ariadne(
        config(int(account), "unused-in-webhook-mode", HttpServerConfig(path=path, headers={"X-Auth": header_value}))
    )

    @app.broadcast.receiver(GroupMessage)
    async def on_group_message(event: GroupMessage) -> None:
        report(group=event.sender.group.id, text=str(event.message_chain), source=event.source.id)

    report(status="launching", port=int(port))
    Ariadne.launch_blocking(stop_signals=(signal.SIGINT, signal.SIGTERM))


if __name__ == "__main__":
    main()
