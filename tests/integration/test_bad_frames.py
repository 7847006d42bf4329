"""A hostile or broken framework (issue 15): whatever it sends that cannot be decoded gets mirai-api-http's bare
400 answer (docs/mirai-api-http.md §3.5), the connection stays, and every valid command among the garbage is answered.

Through the whole bridge: fake framework → reverse-ws client → session → handlers → relay → emulated Discord.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
import trio

from tests.integration.test_end_to_end import CHANNEL, running_bridge

VALID = 200
MALFORMED = 2_000
DEEP = 50_000


def malformed_frames(rng: random.Random) -> list[str | bytes]:
    """2,000 frames no mirai command can be read from: each of these shapes, repeated with random variations."""
    shapes: list[str | bytes] = [
        "[" * DEEP + "]" * DEEP,  # 50,000-deep JSON: RecursionError in the decoder
        '{"syncId":"x","command":"about","content":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
        "[" * (2 * DEEP),  # deep and unterminated
        '{"syncId": "1", "command": ',  # truncated
        "not json at all",
        "",
        " ",
        "[1, 2, 3]",
        "42",
        "null",
        '"a string"',
        "{}",
        '{"syncId": "1"}',  # no command
        '{"syncId": "1", "command": 5}',
        '{"syncId": "1", "command": ""}',
        '{"syncId": [1], "command": "about"}',
        '{"syncId": true, "command": "about"}',
        '{"syncId": "1", "command": "groupList", "subCommand": 7}',
        '{"syncId": "1", "command": "groupList", "content": ' + "9" * 5_000 + "}",  # beyond int()'s digit limit
        '{"syncId": "\\ud800", "command": 1}',
        b"\xff\xfe\xfd not utf-8",
        b'{"syncId": "1", "command": "about"\xff}',
        "\ufeff{}",
        '{"syncId": NaN, "command": {}}',
    ]
    frames = list(shapes)
    while len(frames) < MALFORMED:
        base = rng.choice(shapes[3:])  # the deep ones are expensive to build: each at most a few times
        if isinstance(base, bytes):
            frame: str | bytes = base + bytes([rng.randrange(0x80, 0x100)])
        elif rng.random() < 0.5 and base:
            cut = rng.randrange(len(base))
            frame = base[:cut] + rng.choice(["{", "[", '"', ",", ":", "}"]) + base[cut + 1 :]
        else:
            frame = base + rng.choice(["", "}", "]", ",", " x"])
        if not could_be_a_command(frame):  # a mutation may happen to make a valid command: leave those out
            frames.append(frame)
    rng.shuffle(frames)
    return frames


def could_be_a_command(frame: str | bytes) -> bool:
    """A frame mirai-api-http would read a command from (docs/mirai-api-http.md §3.4), judged without our codec."""
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("command"), str)
        and bool(obj["command"])
        and (obj.get("syncId") is None or type(obj["syncId"]) in (str, int, float))
        and (obj.get("subCommand") is None or isinstance(obj.get("subCommand"), str))
    )


async def test_every_valid_command_among_2000_malformed_frames_is_answered_on_the_same_connection(
    tmp_path: Path,
) -> None:
    rng = random.Random(15)
    garbage = malformed_frames(rng)
    with trio.fail_after(120):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            sent: list[str] = []
            per_command = MALFORMED // VALID
            for i in range(VALID):
                for frame in garbage[i * per_command : (i + 1) * per_command]:
                    await conn.send_text(frame)
                command = ("about", "botList", "groupList", "memberList")[i % 4]
                content = {"target": CHANNEL} if command == "memberList" else {}
                sent.append(await conn.send_command(command, content))
            answers = [await conn.wait_response(sync_id) for sync_id in sent]
            raw = await conn.wait_raw(MALFORMED)
            assert not conn.closed.is_set()
            assert (await conn.request("groupList", {}))["code"] == 0  # and it still works
    assert len(answers) == VALID
    assert all(answer.get("code") == 0 for answer in answers), [a for a in answers if a.get("code") != 0][:3]
    assert len(env.framework.connections) == 1  # never dropped, never reconnected
    assert raw[:MALFORMED] == [{"code": 400, "msg": "无效参数"}] * MALFORMED
    assert json.dumps(raw[0], ensure_ascii=False) == '{"code": 400, "msg": "无效参数"}'


async def test_bad_frames_are_logged_with_a_bound(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with trio.fail_after(60):
        async with running_bridge(tmp_path) as env:
            conn = await env.framework.wait_connection()
            await conn.wait_verified()
            for _ in range(1_500):
                await conn.send_text("not json")
            await conn.wait_raw(1_500)
    lines = [r for r in caplog.records if "bad frame from the framework" in r.getMessage()]
    assert len(lines) == 11  # the first ten, then one per thousand
    assert "(1000 so far)" in lines[-1].getMessage()
