"""relay/listeners.py: mounts on one (host, port) share a socket and a router; bind failures name the sections."""

from __future__ import annotations

import functools

import httpx
import pytest
import trio

from relay.errors import RelayError
from relay.listeners import Mount, WebSocketRoute, plan_listeners, serve_listeners
from relay.web.models import Request, Response
from relay.web.routing import Route
from relay.web.server import WebSocketUpgrade


async def hello(request: Request) -> Response:
    return Response.text(f"hello {request.path}")


async def other(request: Request) -> Response:
    return Response.text("other")


async def upgrade(upgrade: WebSocketUpgrade) -> None:
    raise AssertionError("not called")


def test_mounts_on_one_host_and_port_share_a_listener_and_a_route_once() -> None:
    shared = Route(("POST",), "/upload", hello)
    listeners = plan_listeners(
        [
            Mount("a", "127.0.0.1", 8080, (shared, Route(("GET",), "/a", hello)), (WebSocketRoute("/all", upgrade),)),
            Mount("b", "127.0.0.1", 8080, (shared, Route(("GET",), "/b", hello)), cors=("*",)),
            Mount("c", "127.0.0.1", 8081, (shared,)),
        ]
    )
    assert [(li.port, li.names) for li in listeners] == [(8080, ["a", "b"]), (8081, ["c"])]
    assert listeners[0].websockets == {"/all": upgrade}
    assert listeners[0].label == "a + b (127.0.0.1:8080)"
    with pytest.raises(Exception, match="routed twice"):
        plan_listeners(
            [Mount("a", "h", 1, (Route(("GET",), "/x", hello),)), Mount("b", "h", 1, (Route(("GET",), "/x", other),))]
        )
    with pytest.raises(RelayError, match="two websocket handlers for /all"):

        async def another(upgrade: WebSocketUpgrade) -> None:
            raise AssertionError

        plan_listeners(
            [
                Mount("a", "h", 1, (), (WebSocketRoute("/all", upgrade),)),
                Mount("b", "h", 1, (), (WebSocketRoute("/all", another),)),
            ]
        )


async def test_served_and_cors_only_where_asked(nursery: trio.Nursery) -> None:
    mounts = [
        Mount("plain", "127.0.0.1", 0, (Route(("GET",), "/p", hello),)),
        Mount("api", "127.0.0.1", 0, (Route(("GET",), "/c", hello),), cors=("x.example",)),
    ]
    ports = await nursery.start(functools.partial(serve_listeners, mounts))
    assert ports["plain"] == ports["api"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as client:
        assert (await client.get("/p")).text == "hello /p"
        assert (await client.get("/c", headers={"Origin": "https://y.example"})).status_code == 403
        assert (await client.get("/p", headers={"Origin": "https://y.example"})).status_code == 200
        assert (
            await client.options("/c", headers={"Origin": "https://x.example", "Access-Control-Request-Method": "GET"})
        ).status_code == 204


async def test_a_port_in_use_names_the_sections(nursery: trio.Nursery) -> None:
    taken = await nursery.start(functools.partial(serve_listeners, [Mount("first", "127.0.0.1", 0)]))
    port = taken["first"]
    with pytest.raises(BaseExceptionGroup) as info:
        await nursery.start(functools.partial(serve_listeners, [Mount("mirai.ws", "127.0.0.1", port)]))
    (failure,) = info.value.exceptions
    assert isinstance(failure, RelayError)
    assert str(failure) == (
        f"mirai.ws (127.0.0.1:{port}): cannot listen: the address is already in use (another program, or another "
        "bridge, listens there); change host or port in [mirai.ws]"
    )
