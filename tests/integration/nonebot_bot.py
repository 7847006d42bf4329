"""A NoneBot2 bot with the official mirai adapter (nonebot-adapter-mirai), for tests/integration/test_nonebot.py —
run with NoneBot's OWN interpreter ($NONEBOT_PYTHON; a venv with ``nonebot2[httpx,websockets]`` and
``nonebot-adapter-mirai``):

    $NONEBOT_PYTHON tests/integration/nonebot_bot.py HOST PORT ACCOUNT VERIFY_KEY

The adapter dials the bridge's ws adapter at ``ws://HOST:PORT/all?qq=…&verifyKey=…`` for events and sends every
command over the http adapter on the same port with the ws session's key (its default, ``only_ws = false``).

On a GroupMessage "ping" it replies "pong: ping" quoting it, lists the group's members, recalls its reply,
uploads a small PNG and sends it. Each step prints one JSON line starting with ``NONEBOT_BOT``.
"""

from __future__ import annotations

import json
import sys
import zlib

import nonebot
from nonebot import on_message
from nonebot.adapters.mirai import Adapter, Bot, MessageSegment
from nonebot.adapters.mirai.bot import UploadMethod
from nonebot.adapters.mirai.event import GroupMessage


def report(**fields: object) -> None:
    print("NONEBOT_BOT " + json.dumps(fields, ensure_ascii=False), flush=True)


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


async def send(bot: Bot, group: int, chain: list[dict[str, object]], quote: int | None = None) -> int:
    """sendGroupMessage as bot.send_group_message sends it (over http with the ws session: the adapter's default)."""
    content: dict[str, object] = {"target": group, "messageChain": chain, **({"quote": quote} if quote else {})}
    result = await bot.adapter.call(bot, "sendGroupMessage", "post", content)
    return int(result["messageId"])


def main() -> None:
    host, port, account, verify_key = sys.argv[1:5]
    nonebot.init(
        driver="~httpx+~websockets",
        mirai_clients=[{"host": host, "port": int(port), "account": int(account), "verify_key": verify_key}],
        log_level="INFO",
    )
    nonebot.get_driver().register_adapter(Adapter)
    matcher = on_message()

    @matcher.handle()
    async def on_group_message(bot: Bot, event: GroupMessage) -> None:
        text = event.get_plaintext()
        if text != "ping":
            return
        group = event.sender.group
        # bot.send_group_message builds an ActiveGroupMessage from the message it was given, which fails in
        # nonebot-adapter-mirai 2.3.3 for str and Message alike (its validator indexes the segments) whatever
        # the server answers: the sends go through the adapter's own transport call instead, the same request
        reply_id = await send(bot, group.id, [{"type": "Plain", "text": f"pong: {text}"}], quote=event.message_id)
        report(step="reply", group=group.id, quoted=event.message_id, reply_message_id=reply_id)
        members = await bot.get_member_list(group=group, cache=False)
        report(step="members", ids=sorted(m.id for m in members))
        await bot.recall_message(message=reply_id, target=group)
        report(step="recalled", message_id=reply_id)
        image = await bot.upload_image(method=UploadMethod.Group, data=png())
        report(step="uploaded", image_id=image.data.get("id"))
        chain = (MessageSegment.text("a picture") + image).to_elements()
        report(step="image", message_id=await send(bot, group.id, chain))

    report(status="launching")
    nonebot.run()


if __name__ == "__main__":
    main()
