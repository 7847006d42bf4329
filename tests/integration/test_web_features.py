"""relay/web's router, CORS, multipart uploads and /metrics, through a real HTTP client (httpx) over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from relay.web import multipart
from relay.web.cors import with_cors
from relay.web.metrics import Metrics
from relay.web.models import Request, Response
from relay.web.routing import Router
from tests.integration.test_web_server import GUARD
from tests.integration.webclient import serving


async def upload(request: Request) -> Response:
    parts = multipart.parse_multipart(request, max_parts=4, max_part_bytes=1000)
    return Response.json(
        [{"name": p.name, "filename": p.filename, "content_type": p.content_type, "size": len(p.data)} for p in parts]
    )


async def hello(request: Request) -> Response:
    return Response.text("hello")


def make_app(metrics: Metrics) -> Router:
    router = Router()
    router.add("POST", "/uploadImage", upload)
    router.add("GET", "/about", hello)
    router.add("GET", "/metrics", metrics.handler)
    return router


@asynccontextmanager
async def client_for(router: Router, *, cors: tuple[str, ...] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    handler = router if cors is None else with_cors(router, allowed_origins=cors)
    async with serving(handler) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client


async def test_router_answers_404_405_and_options() -> None:
    with trio.fail_after(GUARD):
        async with client_for(make_app(Metrics())) as client:
            missing = await client.get("/nothing")
            wrong = await client.delete("/about")
            options = await client.options("/about")
    assert missing.status_code == 404
    assert missing.json()["status"] == 404
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, OPTIONS"
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_a_multipart_upload_from_a_real_client() -> None:
    files = {"img": ("cat.png", b"\x89PNG" + bytes(100), "image/png")}
    with trio.fail_after(GUARD):
        async with client_for(make_app(Metrics())) as client:
            ok = await client.post("/uploadImage", data={"sessionKey": "k", "type": "group"}, files=files)
            too_big = await client.post("/uploadImage", files={"img": ("big.png", bytes(2000), "image/png")})
            not_form = await client.post("/uploadImage", json={"img": "x"})
    assert ok.status_code == 200
    assert ok.json() == [
        {"name": "sessionKey", "filename": None, "content_type": None, "size": 1},
        {"name": "type", "filename": None, "content_type": None, "size": 5},
        {"name": "img", "filename": "cat.png", "content_type": "image/png", "size": 104},
    ]
    assert too_big.status_code == 413
    assert not_form.status_code == 415


async def test_cors_preflight_and_requests() -> None:
    with trio.fail_after(GUARD):
        async with client_for(make_app(Metrics()), cors=("app.example",)) as client:
            preflight = await client.options(
                "/about",
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            allowed = await client.get("/about", headers={"Origin": "http://app.example"})
            refused = await client.get("/about", headers={"Origin": "https://evil.example"})
            plain = await client.get("/about")
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "GET, POST, HEAD, OPTIONS"
    assert preflight.headers["access-control-allow-headers"] == "content-type"
    assert preflight.headers["access-control-max-age"] == "86400"
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://app.example"
    assert allowed.headers["vary"] == "Origin"
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers


async def test_cors_star_allows_every_origin() -> None:
    with trio.fail_after(GUARD):
        async with client_for(make_app(Metrics()), cors=("*",)) as client:
            reply = await client.get("/about", headers={"Origin": "https://anywhere.example"})
    assert reply.headers["access-control-allow-origin"] == "*"


async def test_metrics_are_scraped() -> None:
    metrics = Metrics()
    metrics.http_requests.labels(method="GET", status="200").inc(3)
    with trio.fail_after(GUARD):
        async with client_for(make_app(metrics)) as client:
            text = await client.get("/metrics")
            openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.text)
        for sample in family.samples
    }
    assert samples[("relay_http_requests_total", (("method", "GET"), ("status", "200")))] == 3.0
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
