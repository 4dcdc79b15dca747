"""A busy service with many routes, made by the real OpenTelemetry SDK: a deploy to compare.

The baseline version serves from three hours before the deploy until two minutes after it (a
rolling overlap); the new version from the deploy to ``minutes`` after it. Each request is a
SERVER span on one of :data:`ROUTES` (by its traffic share) with one DB CLIENT span under it;
latency is log-normal (σ = 0.5) around the route's median, times each pod's own offset (3
pods a version, 2% spread). The new version can make one route slower (``slower``) and raise
a new exception type on a share of another route's requests (``new_error``); both versions
raise a ``TimeoutError`` on 0.2% of all requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from tests.fakes.sdk_spans import T0, ns, sdk_spans

SERVICE = "shop"
DEPLOY = T0
#: (route, share of requests, median ms). "GET /cart" has 12% of the traffic.
ROUTES = (
    ("GET /products", 0.30, 40.0),
    ("GET /products/{id}", 0.20, 25.0),
    ("POST /checkout", 0.14, 120.0),
    ("GET /cart", 0.12, 60.0),
    ("POST /cart", 0.08, 45.0),
    ("GET /search", 0.08, 90.0),
    ("GET /account", 0.05, 30.0),
    ("POST /login", 0.03, 70.0),
)
SLOW_ROUTE = "GET /cart"
ERROR_ROUTE = "POST /checkout"
NEW_ERROR = "InventoryError"


@dataclass(frozen=True)
class Deploy:
    """What the new version changes, and how busy the service is.

    Attributes:
        slower: ``SLOW_ROUTE``'s latency factor in the new version (1.3 is +30%).
        new_error: share of ``ERROR_ROUTE``'s new-version requests raising ``NEW_ERROR``.
        rate: requests per second over all routes.
        minutes: how long the new version has served (the deploy's age).
        seed: the random seed.
    """

    slower: float = 1.3
    new_error: float = 0.02
    rate: float = 1.0
    minutes: int = 90
    seed: int = 0

    @property
    def now(self) -> datetime:
        """When the check runs: ``minutes`` after the deploy."""
        return DEPLOY + timedelta(minutes=self.minutes)


def _version(
    deploy: Deploy, version: str, start: datetime, end: datetime, changed: bool, seed: int
) -> list[Any]:
    rng = np.random.default_rng(seed)
    count = int((end - start).total_seconds() * deploy.rate)
    offsets = np.sort(rng.uniform(0, (end - start).total_seconds(), count))
    shares = np.array([share for _, share, _ in ROUTES])
    routes = rng.choice(len(ROUTES), size=count, p=shares / shares.sum())
    noise = rng.lognormal(0.0, 0.5, count)
    pods = rng.integers(0, 3, count)
    pod_effect = np.exp(rng.normal(0.0, 0.02, 3))
    draws = rng.random(count)
    timeouts = rng.random(count) < 0.002
    spans: list[Any] = []
    for pod in range(3):
        resource = {
            "service.name": SERVICE,
            "service.version": version,
            "deployment.environment.name": "production",
            "service.instance.id": f"{SERVICE}-{version}-{pod}",
        }
        mine = np.flatnonzero(pods == pod)

        def build(tracer: Any, mine: Any = mine, pod: int = pod) -> None:
            for i in mine:
                name, _, median = ROUTES[routes[i]]
                factor = deploy.slower if changed and name == SLOW_ROUTE else 1.0
                ms = median * noise[i] * pod_effect[pod] * factor
                begin = ns(start) + int(offsets[i] * 1e9)
                method, route = name.split(" ")
                server = tracer.start_span(
                    name,
                    kind=SpanKind.SERVER,
                    start_time=begin,
                    attributes={"http.route": route, "http.request.method": method},
                )
                db = tracer.start_span(
                    "SELECT shop",
                    kind=SpanKind.CLIENT,
                    context=set_span_in_context(server),
                    start_time=begin + 1_000_000,
                    attributes={"db.query.text": f"SELECT * FROM {route.split('/')[1]}"},
                )
                db.end(begin + 1_000_000 + int(ms * 200_000))
                kind = None
                if changed and name == ERROR_ROUTE and draws[i] < deploy.new_error:
                    kind = NEW_ERROR
                elif timeouts[i]:
                    kind = "TimeoutError"
                if kind is not None:
                    server.add_event(
                        "exception",
                        {"exception.type": kind, "exception.message": "failed"},
                        timestamp=begin + 2_000_000,
                    )
                    server.set_status(Status(StatusCode.ERROR, kind))
                server.end(begin + int(ms * 1_000_000))

        spans += sdk_spans(resource, build)
    return spans


def deploy_spans(deploy: Deploy) -> list[Any]:
    """Both versions' spans: the baseline ``1.0`` and the new ``1.1``."""
    base = _version(
        deploy,
        "1.0",
        DEPLOY - timedelta(hours=3),
        DEPLOY + timedelta(minutes=2),
        False,
        deploy.seed * 2,
    )
    new = _version(deploy, "1.1", DEPLOY, deploy.now, True, deploy.seed * 2 + 1)
    return base + new
