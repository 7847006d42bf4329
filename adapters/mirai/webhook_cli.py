"""``discord-mirai-relay webhooks dead-letters`` and ``webhooks replay``: offline commands on the store's file.

Both open the SQLite file of ``[store] path`` (the bridge may be running: SQLite's WAL lets them share it) and
nothing else: no Discord connection, no framework.

* ``dead-letters`` lists the events webhook destinations gave up on: id, destination, event type, outbox
  sequence number, attempts, when, and the last error.
* ``replay`` POSTs the chosen dead letters (``--id N`` repeated, or ``--all``) once each, to their destination as
  configured *now* (URL, headers, signing), with the bot id they were first sent with and their original
  ``webhook-id``. A 2xx deletes the dead letter; anything else counts an attempt and keeps it. A command in a
  receiver's answer is not run (there is no Discord connection here): it is reported instead.

Exit codes: 0 (all replayed, or listed), 1 (some replay failed, or the store could not be read).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import TextIO

import trio

from adapters.mirai import webhook_requests
from adapters.mirai.deadletters import DeadLetter, DeadLetters
from adapters.mirai.webhook import Delivered, open_client, post_once
from relay.config import BridgeConfig, WebhookDestinationConfig

__all__ = ["list_dead_letters", "replay_dead_letters"]


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def list_dead_letters(config: BridgeConfig, out: TextIO) -> int:
    """Print every dead letter, oldest first; returns the exit code."""
    with DeadLetters(config.store.path) as store:
        letters = store.list()
    if not letters:
        print(f"no webhook dead letters in {config.store.path}", file=out)
        return 0
    print(f"{len(letters)} webhook dead letter(s) in {config.store.path}:", file=out)
    for letter in letters:
        print(
            f"  #{letter.id}  {letter.destination}  {letter.event_type or '?'} (event {letter.seq})  "
            f"{letter.attempts} attempts, given up {_when(letter.created)}: {letter.error}",
            file=out,
        )
    print("re-send with: discord-mirai-relay webhooks replay [CONFIG] --id N ... | --all", file=out)
    return 0


def replay_dead_letters(config: BridgeConfig, ids: Sequence[int] | None, out: TextIO) -> int:
    """POST the dead letters ``ids`` (None: all) once each; returns the exit code (1 if any failed)."""
    with DeadLetters(config.store.path) as store:
        letters = store.list(ids=ids)
        missing = sorted(set(ids or ()) - {letter.id for letter in letters})
        for letter_id in missing:
            print(f"  #{letter_id}: no such dead letter", file=out)
        if not letters:
            print("nothing to replay", file=out)
            return 1 if missing else 0
        destinations = {d.label: d for d in config.mirai.webhook.destinations}
        results = trio.run(_replay, letters, destinations, config)
        failed = bool(missing)
        for letter, outcome in zip(letters, results, strict=True):
            if isinstance(outcome, Delivered):
                store.remove(letter.id)
                print(f"  #{letter.id} → {letter.destination}: delivered (HTTP {outcome.status})", file=out)
                command = webhook_requests.response_command(outcome.body)
                if command is not None:
                    print(
                        f"    the answer asked for the command {command.command}: not run, a replay is offline",
                        file=out,
                    )
            else:
                failed = True
                store.record_attempt(letter.id, outcome, now=time.time())
                print(f"  #{letter.id} → {letter.destination}: {outcome}; kept", file=out)
    return 1 if failed else 0


async def _replay(
    letters: list[DeadLetter], destinations: dict[str, WebhookDestinationConfig], config: BridgeConfig
) -> list[Delivered | str]:
    results: list[Delivered | str] = []
    for letter in letters:
        destination = destinations.get(letter.destination)
        if destination is None:
            results.append("its destination is no longer in the configuration")
            continue
        post = webhook_requests.build_post(
            destination,
            [letter.event],
            msg_id=webhook_requests.message_id(letter.seq, letter.seq),
            bot_id=letter.bot_id,
            common_headers=config.mirai.webhook.extra_headers,
            now=int(time.time()),
            batch=destination.batch_max_events > 0,  # a batching receiver reads arrays: a batch of one
        )
        async with open_client(destination) as client:
            outcome = await post_once(client, destination, post)
        results.append(outcome if isinstance(outcome, Delivered) else outcome.reason)
    return results
