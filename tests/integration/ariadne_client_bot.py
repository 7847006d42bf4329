"""A Graia Ariadne bot in its CLIENT modes, for tests/integration/test_ariadne_clients.py — run with Ariadne's OWN
interpreter ($ARIADNE_PYTHON; Ariadne pins pydantic 1):

    $ARIADNE_PYTHON tests/integration/ariadne_client_bot.py MODE BASE_URL ACCOUNT VERIFY_KEY

MODE ``ws``: ``WebsocketClientConfig(BASE_URL)`` — Ariadne dials the bridge's ws adapter at ``BASE_URL/all``
(with ``HttpClientConfig(BASE_URL)`` beside it, which Ariadne uses for uploads only, as its docs show).
MODE ``http``: ``HttpClientConfig(BASE_URL)`` alone — verify/bind, every command over HTTP, events polled with
``fetchMessage``.

On a GroupMessage "ping" it replies "pong: ping" quoting it, lists the group's members, recalls its reply,
uploads a small PNG and sends it to the group. Each step prints one JSON line starting with ``ARIADNE_BOT``.
It runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import zlib

from graia.ariadne.app import Ariadne
from graia.ariadne.connection.config import HttpClientConfig, WebsocketClientConfig, config
from graia.ariadne.connection.util import UploadMethod
from graia.ariadne.event.message import GroupMessage
from graia.ariadne.message.chain import MessageChain
from graia.ariadne.message.element import Plain
from launart import Launart


def report(**fields: object) -> None:
    print("ARIADNE_BOT " + json.dumps(fields, ensure_ascii=False), flush=True)


def png() -> bytes:
    """A valid 1×1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def main() -> None:
    mode, base_url, account, verify_key = sys.argv[1:5]
    manager = Launart()
    Ariadne.config(launch_manager=manager)
    if mode == "ws":
        connection = config(int(account), verify_key, WebsocketClientConfig(base_url), HttpClientConfig(base_url))
    else:
        connection = config(int(account), verify_key, HttpClientConfig(base_url))
    app = Ariadne(connection)

    @app.broadcast.receiver(GroupMessage)
    async def on_group_message(app: Ariadne, event: GroupMessage) -> None:
        text = str(event.message_chain)
        if text != "ping":
            report(step="ignored", text=text)
            return
        group = event.sender.group
        reply = await app.send_group_message(group, MessageChain([Plain(f"pong: {text}")]), quote=event.source)
        report(step="reply", group=group.id, quoted=event.source.id, text=text, reply_message_id=reply.id)
        members = await app.get_member_list(group)
        report(step="members", ids=sorted(m.id for m in members), names=sorted(m.name for m in members))
        await app.recall_message(reply.id, group)
        report(step="recalled", message_id=reply.id)
        image = await app.upload_image(png(), UploadMethod.Group)
        report(step="uploaded", image_id=image.id)
        sent = await app.send_group_message(group, MessageChain([Plain("a picture"), image]))
        report(step="image", message_id=sent.id)

    report(status="launching", mode=mode)
    Ariadne.launch_blocking(stop_signals=(signal.SIGINT, signal.SIGTERM))


if __name__ == "__main__":
    main()
