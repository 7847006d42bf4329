"""The questions a plain ``init`` asks in a terminal: which framework, the proxy, where the store goes.

Reads answers line by line from the streams it is given (the terminal, or a test's pseudo-terminal) and returns
them checked; a bad answer is explained and asked again. End of input (Ctrl-D) returns None: nothing is written.
"""

from __future__ import annotations

from typing import Final, TextIO

import attrs

from relay.config import PROXY_NONE
from relay.errors import InvalidProxyURL
from relay.frameworks import DEFAULT_FRAMEWORK, FRAMEWORKS, Framework
from relay.proxyurl import parse_proxy_url

__all__ = ["InitAnswers", "ask_init_questions"]

_PROXY_SCHEMES: Final = "http://, https://, socks5:// or socks5h://"


@attrs.frozen
class InitAnswers:
    framework: Framework
    proxy: str = attrs.field(default="", repr=False)  #: as written in [discord] proxy (may hold a password)
    store_path: str = ""  #: "" = the default place


class _EndOfInput(Exception):
    pass


def ask_init_questions(
    stdin: TextIO, stdout: TextIO, *, environment_proxy: str, default_store: str
) -> InitAnswers | None:
    """Ask the three questions. ``environment_proxy`` describes what ``proxy = ""`` would use today
    (:meth:`relay.egress.DiscordEgress.describe`); ``default_store`` is where ``path = ""`` puts the store."""
    try:
        framework = _ask_framework(stdin, stdout)
        proxy = _ask_proxy(stdin, stdout, environment_proxy)
        store = _ask(
            stdin,
            stdout,
            "Where should the bridge keep its store (SQLite: message ids and the outbox)?\n"
            "A relative path is relative to the configuration file.",
            "Store path",
            default_store,
        )
    except _EndOfInput:
        stdout.write("\n")
        return None
    return InitAnswers(framework=framework, proxy=proxy, store_path="" if store == default_store else store)


def _ask(stdin: TextIO, stdout: TextIO, question: str, prompt: str, default: str) -> str:
    stdout.write(f"\n{question}\n{prompt} [{default}]: ")
    stdout.flush()
    line = stdin.readline()
    if not line:
        raise _EndOfInput
    return line.strip() or default


def _ask_framework(stdin: TextIO, stdout: TextIO) -> Framework:
    choices = list(FRAMEWORKS.values())
    listed = "\n".join(
        f"  {number}) {framework.title}: {framework.where}" for number, framework in enumerate(choices, 1)
    )
    default = str(choices.index(FRAMEWORKS[DEFAULT_FRAMEWORK]) + 1)
    while True:
        answer = _ask(
            stdin,
            stdout,
            f"Which bot framework will use the bridge?\n{listed}",
            "Framework",
            default,
        )
        if answer.isdigit() and 1 <= int(answer) <= len(choices):
            return choices[int(answer) - 1]
        if answer.lower() in FRAMEWORKS:
            return FRAMEWORKS[answer.lower()]
        stdout.write(f"Please answer a number from 1 to {len(choices)}, or one of: {', '.join(FRAMEWORKS)}.\n")


def _ask_proxy(stdin: TextIO, stdout: TextIO, environment_proxy: str) -> str:
    question = (
        f"Does this machine reach Discord through a proxy? Give its URL ({_PROXY_SCHEMES}, e.g.\n"
        f'socks5h://127.0.0.1:1080), "{PROXY_NONE}" for none even if the environment names one, or nothing to use\n'
        f"the environment's HTTPS_PROXY / ALL_PROXY (today: {environment_proxy})."
    )
    while True:
        answer = _ask(stdin, stdout, question, "Proxy", "")
        if answer in ("", PROXY_NONE):
            return answer
        try:
            proxy = parse_proxy_url(answer, where="that proxy URL")
        except InvalidProxyURL as exc:
            stdout.write(f"{exc}.\n")
            continue
        if proxy.password:
            stdout.write(
                "Note: the password will be written into the configuration file; to keep it out, leave the proxy\n"
                "empty there and set ALL_PROXY in the bridge's environment instead.\n"
            )
        return answer
