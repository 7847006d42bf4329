"""Health, readiness and metrics over HTTP: the readiness verdict's model and the ``/healthz``, ``/readyz`` and
``/metrics`` routes for the ``[server]`` listener (pure: no trio, no sockets).

* ``/healthz``: the process is alive. Answering at all proves it: the handler runs on the bridge's event loop,
  the same loop that reads Discord and writes to the frameworks, so a wedged loop answers nothing (and a
  scraper's timeout says so). 200 with ``{"status": "alive", "uptime_seconds": ...}``.
* ``/readyz``: the bridge does its job. 200 with ``{"ready": true, ...}``, else 503 with every reason it is not,
  one sentence per reason, and every component's state. What "ready" means is decided in one place, the
  composition's readiness function (:func:`relay.observe.readiness`); the status line and the systemd
  notification use the same function.
* ``/metrics``: Prometheus exposition (:class:`relay.web.metrics.Metrics`).

Every answer is ``Cache-Control: no-store``: a proxy must never answer for the bridge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import attrs

from relay.web.metrics import Metrics
from relay.web.models import Request, Response
from relay.web.routing import Route

__all__ = ["HEALTHZ", "METRICS", "READYZ", "Component", "Verdict", "health_routes"]

HEALTHZ: Final = "/healthz"
READYZ: Final = "/readyz"
METRICS: Final = "/metrics"

_NO_STORE: Final = (("cache-control", "no-store"),)


@attrs.frozen
class Component:
    """One part of the bridge as readiness sees it."""

    name: str  #: "discord", "store", "reverse-ws", ...
    summary: str  #: how it is, for people ("1/1 shards READY")
    problems: tuple[str, ...] = ()  #: why it is not ready, one sentence each; empty: ready
    #: whether it decides readiness; a component that does not is still reported (with its problems)
    required: bool = True

    @property
    def ready(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "required": self.required,
            "summary": self.summary,
            "problems": list(self.problems),
        }


@attrs.frozen
class Verdict:
    """Whether the bridge is ready, and why not: every required component must be ready."""

    components: tuple[Component, ...]

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.components if c.required)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it is not ready: ``"<component>: <problem>"`` for every problem of a required component."""
        return tuple(f"{c.name}: {p}" for c in self.components if c.required for p in c.problems)

    def describe(self) -> str:
        """``ready`` or ``not ready: <reason>; <reason>`` (the status line's ending)."""
        return "ready" if self.ready else "not ready: " + "; ".join(self.reasons)

    def to_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "reasons": list(self.reasons),
            "components": {c.name: c.to_json() for c in self.components},
        }


def health_routes(
    verdict: Callable[[], Verdict],
    metrics: Metrics,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Route, ...]:
    """The routes of ``/healthz``, ``/readyz`` (answered from ``verdict()``) and ``/metrics`` (``metrics``), for
    the ``[server]`` listener's router. Uptime counts from this call, on ``clock``."""
    started = clock()

    async def healthz(_request: Request) -> Response:
        return Response.json({"status": "alive", "uptime_seconds": round(clock() - started, 3)}, headers=_NO_STORE)

    async def readyz(_request: Request) -> Response:
        current = verdict()
        return Response.json(current.to_json(), status=200 if current.ready else 503, headers=_NO_STORE)

    async def scrape(request: Request) -> Response:
        answer = await metrics.handler(request)
        return attrs.evolve(answer, headers=(*answer.headers, *_NO_STORE))

    return (
        Route(("GET",), HEALTHZ, healthz),
        Route(("GET",), READYZ, readyz),
        Route(("GET",), METRICS, scrape),
    )
