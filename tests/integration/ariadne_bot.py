"""A tiny Graia Ariadne bot for tests/integration/test_ariadne.py — run with Ariadne's OWN interpreter.

Ariadne pins pydantic 1, so it lives in a separate venv ($ARIADNE_PYTHON); the test starts this script as a
subprocess:

    $ARIADNE_PYTHON tests/integration/ariadne_bot.py PORT ACCOUNT VERIFY_KEY PATH TOKEN HEADER_VALUE

Ariadne runs its reverse-ws server (``WebsocketServerConfig``, served by amnesia's aiohttp server on
127.0.0.1:PORT), requiring the query parameter ``token=TOKEN`` and the header ``X-Auth: HEADER_VALUE``.
When a GroupMessage arrives it replies with ``sendGroupMessage`` quoting it, then prints one JSON line to
stdout: ``{"group": ..., "quoted": <Source.id of the message>, "reply_message_id": <messageId returned>}``.
It runs until it receives SIGINT/SIGTERM. Every line it prints starts with ``ARIADNE_BOT`` so the test can
tell it from anything else.
"""

from __future__ import annotations

import json
import signal
import sys

from graia.amnesia.builtins.aiohttp import AiohttpServerService
from graia.ariadne.app import Ariadne
from graia.ariadne.connection.config import WebsocketServerConfig, config
from graia.ariadne.event.message import GroupMessage
from graia.ariadne.message.chain import MessageChain
from graia.ariadne.message.element import Plain
from launart import Launart


def report(**fields: object) -> None:
    print("ARIADNE_BOT " + json.dumps(fields, ensure_ascii=False), flush=True)


def main() -> None:
    port, account, verify_key, path, token, header_value = sys.argv[1:7]
    manager = Launart()
    Ariadne.config(launch_manager=manager)
    manager.add_service(AiohttpServerService("127.0.0.1", int(port)))
    app = Ariadne(
        config(
            int(account),
            verify_key,
            WebsocketServerConfig(path=path, params={"token": token}, headers={"X-Auth": header_value}),
        )
    )

    @app.broadcast.receiver(GroupMessage)
    async def on_group_message(app: Ariadne, event: GroupMessage) -> None:
        text = str(event.message_chain)
        active = await app.send_group_message(
            event.sender.group, MessageChain([Plain(f"pong: {text}")]), quote=event.source
        )
        report(group=event.sender.group.id, quoted=event.source.id, text=text, reply_message_id=active.id)

    report(status="launching", port=int(port))
    Ariadne.launch_blocking(stop_signals=(signal.SIGINT, signal.SIGTERM))


if __name__ == "__main__":
    main()
