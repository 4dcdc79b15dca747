"""Prometheus metrics of one feedbot process, served on ``GET /metrics``.

:class:`Metrics` owns a private ``CollectorRegistry`` (never prometheus_client's global one), so
several runtimes in one process, as in the tests, each count only their own work. It holds two
kinds of series:

* counters and histograms of what *this process* did since it started (checks run, messages
  sent, Slack retries, OTLP requests, trace backend queries, webhook requests), updated by the
  code that does the work through the small methods below;
* gauges read from the store at scrape time (:class:`StoreCollector`): checks and deliveries by
  state, lagging checks, releases. They are the same for every replica of one database.

A :class:`Metrics` nobody scrapes costs a few dictionary updates per event, so components take
one optionally and make their own when none is given, the way warehouse's ``NullMetrics`` is
the default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock
from feedbot.store import queries

log = logging.getLogger(__name__)

#: The ``Content-Type`` of :meth:`Metrics.render`'s text (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

CHECK_OUTCOMES = ("done", "failed", "retried", "superseded")
DELIVERY_OUTCOMES = ("sent", "failed", "retried")
#: HTTP status → the ``reason`` label of a refused OTLP export request.
OTLP_REJECTIONS = {
    400: "malformed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    503: "store_unavailable",
}
#: The ``source`` label of ``/webhooks/<name>``; ``deploy`` is the generic source's other name.
WEBHOOK_SOURCES = ("generic", "github", "gitlab", "argocd")
#: Seconds; trace backend queries run from milliseconds (embedded) to the 30 s timeout.
BACKEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds; every HTTP request feedbot answers should be well under Slack's 3 s.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counters, histograms and store gauges of one feedbot runtime.

    Args:
        registry: where the series are registered; a new private registry when None.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.check_runs = Counter(
            "feedbot_check_runs", "Check runs finished by this process, by outcome "
            "(retried: failed and due again; superseded: another replica took the check over).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.delivery_attempts = Counter(
            "feedbot_delivery_attempts",
            "Outbox messages this process tried to send, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.slack_retries = Counter(
            "feedbot_slack_retries",
            "Slack Web API requests repeated by slack_sdk's retry handlers, by method and reason.",
            ["method", "reason"],
            registry=r,
        )
        self.otlp_requests = Counter(
            "feedbot_otlp_requests", "OTLP/HTTP export requests received on /v1/traces.", registry=r
        )
        self.otlp_spans = Counter(
            "feedbot_otlp_spans_accepted", "Spans stored from OTLP export requests.", registry=r
        )
        self.otlp_rejected = Counter(
            "feedbot_otlp_rejected_requests",
            "OTLP export requests refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.backend_seconds = Histogram(
            "feedbot_backend_query_seconds",
            "Time of one trace backend query (collect), by backend.",
            ["backend"],
            buckets=BACKEND_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "feedbot_backend_errors",
            "Trace backend queries that failed, by backend and error.",
            ["backend", "error"],
            registry=r,
        )
        self.webhooks = Counter(
            "feedbot_webhook_requests",
            "Deploy webhook requests, by source and HTTP status.",
            ["source", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "feedbot_http_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        for outcome in CHECK_OUTCOMES:
            self.check_runs.labels(outcome)
        for outcome in DELIVERY_OUTCOMES:
            self.delivery_attempts.labels(outcome)

    def watch_store(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        """Serve the store's gauges (see :class:`StoreCollector`) with this registry."""
        self.registry.register(StoreCollector(sessions, clock))

    def render(self) -> bytes:
        """Every series in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return bytes(generate_latest(self.registry))

    def check_finished(self, outcome: str) -> None:
        """Count a check run that ended ``done``, ``failed``, ``retried`` or ``superseded``."""
        self.check_runs.labels(_one_of(outcome, CHECK_OUTCOMES)).inc()

    def delivery_attempted(self, outcome: str) -> None:
        """Count an outbox send that ended ``sent``, ``failed`` or ``retried``."""
        self.delivery_attempts.labels(_one_of(outcome, DELIVERY_OUTCOMES)).inc()

    def slack_retried(self, method: str, reason: str) -> None:
        """Count a Slack Web API request about to be repeated (``rate_limited``, …)."""
        self.slack_retries.labels(method, reason).inc()

    def otlp_request(self, status: int) -> None:
        """Count an OTLP export request answered ``status``; refusals by their reason."""
        self.otlp_requests.inc()
        if status >= 400:
            self.otlp_rejected.labels(OTLP_REJECTIONS.get(status, f"http_{status}")).inc()

    def spans_accepted(self, count: int) -> None:
        """Count ``count`` spans stored from one export request."""
        self.otlp_spans.inc(count)

    def backend_queried(self, backend: str, seconds: float, error: str | None = None) -> None:
        """Record one ``collect`` of ``backend``: its time, and the error class when it failed."""
        self.backend_seconds.labels(backend).observe(seconds)
        if error is not None:
            self.backend_errors.labels(backend, error).inc()

    def webhook_answered(self, source: str, status: int) -> None:
        """Count a request to ``/webhooks/<source>``; unknown sources are counted as ``other``."""
        source = "generic" if source == "deploy" else source
        self.webhooks.labels(source if source in WEBHOOK_SOURCES else "other", str(status)).inc()

    def request_answered(self, route: str, seconds: float) -> None:
        """Record the time taken to answer a request to ``route`` (a template, not a path)."""
        self.request_seconds.labels(route).observe(seconds)


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"outcome: {value!r} is not one of {', '.join(allowed)}")
    return value


class StoreCollector(Collector):
    """Gauges read from the store at each scrape: checks, deliveries, releases, lagging checks.

    When the store does not answer, the scrape still succeeds, with ``feedbot_store_up 0`` and
    without the store's gauges, so the process's own counters stay visible during an outage.

    Args:
        sessions: session factory of the store.
        clock: time source (a pending check whose due time has passed is lagging).
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families :meth:`collect` yields, without asking the store (for name checks)."""
        yield GaugeMetricFamily("feedbot_store_up", "")
        yield GaugeMetricFamily("feedbot_checks", "", labels=["state"])
        yield GaugeMetricFamily("feedbot_checks_lagging", "")
        yield GaugeMetricFamily("feedbot_deliveries", "", labels=["state"])
        yield GaugeMetricFamily("feedbot_releases", "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The store's gauges, and whether the store answered."""
        up = GaugeMetricFamily("feedbot_store_up", "1 when the store answered this scrape.")
        try:
            families = list(self._read())
        except Exception as exc:  # the scrape must not fail with the database
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock.now()
        with self._sessions() as session:
            counts = queries.store_counts(session, now)
        yield _by_state("feedbot_checks", "Checks by state.", counts["checks"])
        yield GaugeMetricFamily(
            "feedbot_checks_lagging",
            "Pending checks whose due time has passed.",
            value=counts["lagging"],
        )
        yield _by_state("feedbot_deliveries", "Outbox messages by state.", counts["deliveries"])
        yield GaugeMetricFamily(
            "feedbot_releases", "Releases registered.", value=counts["releases"]
        )


def _by_state(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    for state, count in sorted(counts.items()):
        family.add_metric([state], count)
    return family
