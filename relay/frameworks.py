"""The bot frameworks ``init`` knows: which mirai-api-http adapters each speaks, and where it listens or dials
unless told otherwise.

Pure data. A framework in reverse-ws mode is dialed by the bridge, so a destination names the host, port and path
of the framework's own server; one in ws or http mode dials the bridge at mirai-api-http's default
``http://localhost:8080`` (the bridge's ``[mirai.ws]``/``[mirai.http]`` defaults, one port); one that takes events
by webhook gets a ``[[mirai.webhook.destinations]]`` at its receiver. Each value says where it comes from, so
``init --framework NAME`` writes a file that works with an unchanged bot.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["DEFAULT_FRAMEWORK", "FRAMEWORKS", "Framework"]


@attrs.frozen(kw_only=True)
class Framework:
    name: str  #: what ``--framework`` takes
    title: str  #: what a person reads
    #: mirai-api-http's adapters it speaks (``[mirai] adapters``)
    adapters: tuple[str, ...] = ("reverse-ws",)
    #: its reverse-ws server (with "reverse-ws" in ``adapters``)
    host: str = "localhost"
    port: int = 8080
    path: str = "/"
    #: its webhook receiver's URL, when it takes events by webhook
    webhook_url: str = ""
    single_mode: bool = False  #: mirai-api-http's singleMode, as the framework expects it
    #: where these values come from (a comment in the written file)
    source: str
    #: the framework side of the connection, for the "next steps" ``init`` prints
    framework_side: str

    @property
    def where(self) -> str:
        """How it meets the bridge, in a few words (``init``'s question, ``init --help``)."""
        if "reverse-ws" in self.adapters:
            return f"the bridge dials its server at {self.host}:{self.port}, path {self.path}"
        via = " and ".join(self.adapters) + (" (events by webhook)" if self.webhook_url else "")
        return f"it dials the bridge's {via} on 127.0.0.1:8080"


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
        # Ariadne's client connections default to mirai-api-http's http://localhost:8080
        # (graia/ariadne/connection/config.py: WebsocketClientConfig/HttpClientConfig(host="http://localhost:8080")),
        # which the bridge's [mirai.ws] and [mirai.http] defaults serve on one port; Ariadne uploads only through
        # the http client, so ws mode runs both (README "Which framework, which adapter")
        Framework(
            name="ariadne-ws",
            title="Graia Ariadne with WebsocketClientConfig (it dials the bridge)",
            adapters=("ws", "http"),
            source="Graia Ariadne: WebsocketClientConfig() + HttpClientConfig() dial http://localhost:8080",
            framework_side=(
                'config(BOT_ID, VERIFY_KEY, WebsocketClientConfig("http://127.0.0.1:8080"), '
                'HttpClientConfig("http://127.0.0.1:8080"))'
            ),
        ),
        Framework(
            name="ariadne-http",
            title="Graia Ariadne with HttpClientConfig (it polls the bridge)",
            adapters=("http",),
            source="Graia Ariadne: HttpClientConfig() calls and polls http://localhost:8080",
            framework_side='config(BOT_ID, VERIFY_KEY, HttpClientConfig("http://127.0.0.1:8080"))',
        ),
        # HttpServerConfig(path="/") takes the webhook on Ariadne's default server, 127.0.0.1:8000 (as above); its
        # commands go over the http adapter
        Framework(
            name="ariadne-webhook",
            title="Graia Ariadne with HttpServerConfig (events by webhook) and HttpClientConfig",
            adapters=("http",),
            webhook_url="http://127.0.0.1:8000/",
            source="Graia Ariadne: HttpServerConfig() receives on 127.0.0.1:8000, path /",
            framework_side=(
                'config(BOT_ID, VERIFY_KEY, HttpServerConfig(), HttpClientConfig("http://127.0.0.1:8080"))'
            ),
        ),
        # nonebot-adapter-mirai: one "host"/"port" per client for both its ws events and its http commands and
        # uploads (nonebot/adapters/mirai/config.py: port defaults to mirai-api-http's 8080)
        Framework(
            name="nonebot",
            title="NoneBot2 with nonebot-adapter-mirai (events over ws, commands over http)",
            adapters=("ws", "http"),
            source="nonebot-adapter-mirai: one host and port (8080) for its ws events and http commands",
            framework_side=(
                'MIRAI_CLIENTS=\'[{"host": "127.0.0.1", "port": 8080, "account": BOT_ID, "verify_key": "KEY"}]\''
            ),
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
