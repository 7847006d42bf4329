"""Prometheus metrics: one registry per bridge, and the ``/metrics`` handler that exposes it (no trio).

prometheus-client does the metric types and the exposition formats. :class:`Metrics` holds a private
``CollectorRegistry`` rather than the library's global one, so two bridges (or two tests) in one process count
apart, and only what the bridge registers is exposed: the process collector (CPU seconds, resident memory,
open file descriptors, read from ``/proc``; nothing on systems without it) plus the bridge's own metrics,
which are attributes of :class:`Metrics`. :meth:`Metrics.handler` answers a scrape in the text format, or in
OpenMetrics when the scraper's ``Accept`` asks for it.
"""

from __future__ import annotations

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.exposition import choose_encoder

from relay.web.models import Request, Response

__all__ = ["Metrics"]


@attrs.define(eq=False)
class Metrics:
    """The bridge's metrics, in a registry of their own."""

    registry: CollectorRegistry = attrs.field(factory=CollectorRegistry, init=False)
    #: an example to follow: HTTP requests answered by relay/web handlers that count, by method and status
    http_requests: Counter = attrs.field(init=False)
    #: webhook POSTs by destination and outcome: delivered, retried (a failed attempt), unreachable (could not
    #: connect; the destination is down and its events wait), dead_letter (the last retry failed)
    webhook_posts: Counter = attrs.field(init=False)
    #: events given up after their last retry, by destination (they are in the dead-letter table)
    webhook_dead_letters: Counter = attrs.field(init=False)
    #: events in the outbox a destination has not been sent yet
    webhook_queue_depth: Gauge = attrs.field(init=False)
    #: posts to a robot by robot and answer status ("202", "401", ...; robot "" = an unknown robot name)
    robot_posts: Counter = attrs.field(init=False)
    #: robot posts by robot and outcome: sent (on Discord), failed (a permanent Discord error)
    robot_deliveries: Counter = attrs.field(init=False)
    #: robot posts queued for a channel and not sent yet
    robot_queue_depth: Gauge = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter(
            "relay_http_requests",  # exposed as relay_http_requests_total
            "HTTP requests answered, by method and status code",
            ["method", "status"],
            registry=self.registry,
        )
        self.webhook_posts = Counter(
            "relay_webhook_posts",
            "Webhook POSTs by destination and outcome",
            ["destination", "result"],
            registry=self.registry,
        )
        self.webhook_dead_letters = Counter(
            "relay_webhook_dead_letters",
            "Events given up after their last retry",
            ["destination"],
            registry=self.registry,
        )
        self.webhook_queue_depth = Gauge(
            "relay_webhook_queue_depth",
            "Events a webhook destination has not been sent yet",
            ["destination"],
            registry=self.registry,
        )
        self.robot_posts = Counter(
            "relay_robot_posts",
            "Posts to webhook robots by robot and answer status",
            ["robot", "status"],
            registry=self.registry,
        )
        self.robot_deliveries = Counter(
            "relay_robot_deliveries",
            "Robot posts by robot and outcome (sent, failed)",
            ["robot", "result"],
            registry=self.registry,
        )
        self.robot_queue_depth = Gauge(
            "relay_robot_queue_depth", "Robot posts queued for a channel", ["channel"], registry=self.registry
        )

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its Content-Type, in the format ``accept`` asks for (text by default)."""
        try:
            encoder, content_type = choose_encoder(accept or "")
        except ValueError:  # an Accept with a version it cannot parse: the default format
            encoder, content_type = choose_encoder("")
        return encoder(self.registry), content_type

    async def handler(self, request: Request) -> Response:
        """The ``/metrics`` handler (route it for GET)."""
        body, content_type = self.render(request.header("accept"))
        return Response(200, (("content-type", content_type),), body)
