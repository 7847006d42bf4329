"""The bot frameworks ``init`` knows, and where each one's websocket server listens unless told otherwise.

Pure data. The bridge dials the framework (it plays mirai-api-http's reverse-ws adapter), so a destination must
name the host, port and path of the framework's own server; these are the values that server uses by default,
each with where it comes from, so ``init --framework NAME`` writes a file that works with an unchanged bot.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["DEFAULT_FRAMEWORK", "FRAMEWORKS", "Framework"]


@attrs.frozen(kw_only=True)
class Framework:
    name: str  #: what ``--framework`` takes
    title: str  #: what a person reads
    host: str
    port: int
    path: str
    single_mode: bool = False  #: mirai-api-http's singleMode, as the framework expects it
    #: where these values come from (a comment in the written file)
    source: str
    #: the framework side of the connection, for the "next steps" ``init`` prints
    framework_side: str


FRAMEWORKS: Final[dict[str, Framework]] = {
    framework.name: framework
    for framework in (
        # Ariadne's WebsocketServerConfig() serves path "/" (graia/ariadne/connection/config.py) on the ASGI/HTTP
        # server service Ariadne adds when none is given: graia-amnesia's AiohttpServerService(host="127.0.0.1",
        # port=8000) (graia/amnesia/builtins/aiohttp.py; its uvicorn service has the same defaults). It sends
        # verify with its account as qq, so single mode stays off (docs/mirai-api-http.md §3.3, §3.7).
        Framework(
            name="ariadne",
            title="Graia Ariadne",
            host="127.0.0.1",
            port=8000,
            path="/",
            source="Graia Ariadne: WebsocketServerConfig() on its default server, 127.0.0.1:8000, path /",
            framework_side="Ariadne(config(BOT_ID, VERIFY_KEY, WebsocketServerConfig()))",
        ),
        # mirai-api-http's own Destination defaults (docs/mirai-api-http.md §3.1): what a framework written against
        # its documented reverse-ws example most likely listens on
        Framework(
            name="other",
            title="another framework with a reverse-ws server (mirai-api-http's defaults)",
            host="localhost",
            port=8080,
            path="/",
            source="mirai-api-http's reverse-ws destination defaults: localhost:8080, path /",
            framework_side="its server for mirai-api-http's reverse-ws adapter, with the same verifyKey",
        ),
    )
}

#: the framework of the README's example, and of a plain ``init``
DEFAULT_FRAMEWORK: Final = "ariadne"
