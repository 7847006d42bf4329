"""Prometheus metrics: one registry per bridge, and the ``/metrics`` handler that exposes it (no trio).

prometheus-client does the metric types and the exposition formats. :class:`Metrics` holds a private
``CollectorRegistry`` rather than the library's global one, so two bridges (or two tests) in one process count
apart, and only what the bridge registers is exposed: the process collector (CPU seconds, resident memory,
open file descriptors, read from ``/proc``; nothing on systems without it) plus the bridge's own metrics,
which are attributes of :class:`Metrics`. :meth:`Metrics.handler` answers a scrape in the text format, or in
OpenMetrics when the scraper's ``Accept`` asks for it.

Counters on the event path are not prometheus-client objects: the components count in plain ints and dicts
(their ``statistics()``), and :meth:`Metrics.add_reader` turns them into metric families when a scrape asks, from
:class:`MetricSpec` declarations (names, types, help and labels, declared once, so a clash of names is found when
the reader is added, not at a scrape). The event path then pays a dict update, not a labelled counter's lock.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from relay.web.models import Request, Response

__all__ = ["MetricKind", "MetricSpec", "Metrics", "Reading", "Samples"]

log = logging.getLogger(__name__)


class MetricKind(enum.Enum):
    COUNTER = "counter"  #: only goes up (exposed with the ``_total`` suffix)
    GAUGE = "gauge"  #: goes up and down


@attrs.frozen
class MetricSpec:
    """One metric a reader reports: ``name`` without a counter's ``_total``, its ``help`` text and label names."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


#: one metric's samples: label values (in the spec's label order) → value
Samples = Mapping[tuple[str, ...], float]
#: what a reader returns at scrape time: metric name → its samples (a name left out has no samples this time)
Reading = Mapping[str, Samples]


class _ReaderCollector:
    """A prometheus-client collector that asks its reader at every scrape (never on the event path)."""

    def __init__(self, specs: Sequence[MetricSpec], read: Callable[[], Reading]) -> None:
        self._specs = tuple(specs)
        self._read = read
        self._failing = False

    def describe(self) -> Iterable[Metric]:
        return [self._family(spec) for spec in self._specs]

    def collect(self) -> Iterable[Metric]:
        try:
            reading = self._read()
        except Exception:  # a failing reader must not fail the whole scrape (the other metrics still count)
            if not self._failing:
                log.exception("metrics: a reader failed; its metrics are left out until it works again")
            self._failing = True
            return []
        self._failing = False
        families = []
        for spec in self._specs:
            family = self._family(spec)
            for values, value in reading.get(spec.name, {}).items():
                family.add_metric(values, value)
            families.append(family)
        return families

    @staticmethod
    def _family(spec: MetricSpec) -> CounterMetricFamily | GaugeMetricFamily:
        if spec.kind is MetricKind.COUNTER:
            return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


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

    def add_reader(self, specs: Sequence[MetricSpec], read: Callable[[], Reading]) -> None:
        """Expose ``specs``, their samples read by ``read()`` at every scrape (on the event loop's thread: keep it
        to copying counters). Raises ``ValueError`` when a name is already taken."""
        self.registry.register(_ReaderCollector(specs, read))

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
