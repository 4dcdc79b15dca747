"""Attribute contrast on deploys whose cause is known: is the right value named, and only it?

Every span is made by the real OpenTelemetry SDK (one ``TracerProvider`` per instance whose
resource carries ``service.name``, ``service.version`` and ``service.instance.id``; start and end
times drawn with numpy and passed explicitly), encoded as OTLP protobuf, decoded by feedbot's
decoder and aggregated as the embedded backend aggregates. One route, ``GET /orders/{id}``: its
SERVER spans carry ``tenant.id`` (six tenants, 30/20/15/15/10/10% of the traffic) and
``app.region`` (two tenants per region) and call a CLIENT span with ``peer.service`` (three
peers). Log-normal latency (median 20 ms, σ = 0.5), 3 instances per version with a 3% host
spread, 0.2% errors, REQUESTS requests per version.

Each deploy changes one thing, picked at random where a value is: one tenant, region, instance
or peer's requests get slower or start failing, everything gets slower or fails more, or nothing
changes. :func:`feedbot.analysis.contrast.causes` is then asked about the route as if it had
regressed in latency *and* in errors (so a value named on the side that did not change counts
as wrong). Printed per scenario: the share of deploys where exactly the right value is named
("right"), where any other value is named ("wrong"), and the seconds taken.

    python -m benchmarks.contrast [--quick] [--deploys N] [--only TEXT]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from feedbot.analysis.contrast import causes
from feedbot.analysis.findings import Cause
from feedbot.policy import DetectionPolicy
from feedbot.spans.aggregate import aggregate
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp import decode_protobuf
from tests.fakes.sdk_spans import recording

Row = tuple[str, float, str]
ROUTE = "GET /orders/{id}"
SERVICE = "shop"
POLICY = DetectionPolicy()
DEPLOY = datetime(2026, 11, 24, 10, tzinfo=UTC)
HOUR = 3600.0
REQUESTS = 3_000
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")
WEIGHTS = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
REGIONS = ("eu", "eu", "us", "us", "ap", "ap")  # per tenant
PEERS = ("payments", "stock", "pricing")
INSTANCES = 3
SIGMA, SPREAD, MEDIAN_MS, ERROR_RATE = 0.5, 0.03, 20.0, 0.002


@dataclass(frozen=True)
class Scenario:
    """One kind of deploy: ``key`` is the label whose value changes (None: all or nothing)."""

    name: str
    key: str | None = None
    slower: float = 1.0  # latency factor of the changed requests
    failing: float = ERROR_RATE  # error rate of the changed requests


SCENARIOS = (
    Scenario("one tenant 2x slower", "tenant.id", slower=2.0),
    Scenario("one tenant 1.5x slower", "tenant.id", slower=1.5),
    Scenario("one region 1.5x slower", "app.region", slower=1.5),
    Scenario("one instance 2x slower", "instance", slower=2.0),
    Scenario("one peer 2x slower", "peer.service", slower=2.0),
    Scenario("one tenant fails 5% (0.2% before)", "tenant.id", failing=0.05),
    Scenario("one instance fails 5% (0.2% before)", "instance", failing=0.05),
    Scenario("everything 1.3x slower (no value to name)", None, slower=1.3),
    Scenario("everything fails 2% (no value to name)", None, failing=0.02),
    Scenario("no change"),
)


@dataclass
class Requests:
    """One version's requests: start (s from the deploy), labels, ms, error flags."""

    starts: np.ndarray
    tenant: np.ndarray
    peer: np.ndarray
    instance: np.ndarray
    ms: np.ndarray
    errors: np.ndarray


def _requests(rng: np.random.Generator, s: Scenario, new: bool, value: int) -> Requests:
    """Draw one version's requests; in the new one, those with ``value`` of ``s.key`` change."""
    n = REQUESTS
    starts = rng.uniform(0.0, HOUR, n) if new else rng.uniform(-HOUR, 0.0, n)
    tenant = rng.choice(len(TENANTS), n, p=WEIGHTS)
    peer, instance = rng.integers(0, len(PEERS), n), rng.integers(0, INSTANCES, n)
    logs = (
        np.log(MEDIAN_MS) + rng.normal(0.0, SIGMA, n) + rng.normal(0.0, SPREAD, INSTANCES)[instance]
    )
    changed = np.zeros(n, np.bool_)
    if new and s.key is None:
        changed[:] = s.slower != 1.0 or s.failing != ERROR_RATE
    elif new:
        changed = _has(s.key, value, tenant, peer, instance)
    logs += np.where(changed, np.log(s.slower), 0.0)
    errors = rng.random(n) < np.where(changed, s.failing, ERROR_RATE)
    return Requests(starts, tenant, peer, instance, np.exp(logs), errors)


def _has(
    key: str, value: int, tenant: np.ndarray, peer: np.ndarray, instance: np.ndarray
) -> np.ndarray:
    if key == "tenant.id":
        return np.asarray(tenant == value)
    if key == "app.region":
        return np.isin(tenant, [t for t, r in enumerate(REGIONS) if r == REGIONS[value]])
    if key == "peer.service":
        return np.asarray(peer == value)
    return np.asarray(instance == value)


def _expected(s: Scenario, version: str, value: int) -> str | None:
    """The cause's name a deploy of ``s`` should get."""
    if s.key is None:
        return None
    named = {
        "tenant.id": TENANTS,
        "app.region": REGIONS,
        "peer.service": PEERS,
        "instance": tuple(f"{version}-{i}" for i in range(INSTANCES)),
    }[s.key][value]
    return f"{s.key}={named}"


def _ns(seconds: float) -> int:
    return int((DEPLOY.timestamp() + seconds) * 1e9)


def _request(tracer: Any, r: Requests, i: int) -> None:
    """One request: the route's SERVER span and its call to a peer, which takes most of it."""
    start, ms = _ns(float(r.starts[i])), float(r.ms[i])
    tenant = int(r.tenant[i])
    server = tracer.start_span(
        f"GET /orders/{i}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={
            "http.route": "/orders/{id}",
            "http.request.method": "GET",
            "tenant.id": TENANTS[tenant],
            "app.region": REGIONS[tenant],
        },
    )
    client = tracer.start_span(
        "POST",
        context=set_span_in_context(server),
        kind=SpanKind.CLIENT,
        start_time=start + 100_000,
        attributes={"peer.service": PEERS[int(r.peer[i])], "http.request.method": "POST"},
    )
    client.end(end_time=start + 100_000 + int(ms * 0.8e6))
    # The server span names its peer too, so the route's spans can be contrasted by it.
    server.set_attribute("peer.service", PEERS[int(r.peer[i])])
    if r.errors[i]:
        server.record_exception(TimeoutError("upstream failed"), timestamp=start)
        server.set_status(Status(StatusCode.ERROR))
    server.end(end_time=start + int(ms * 1e6))


def release_spans(version: str, r: Requests) -> list[ReadableSpan]:
    """A version's spans made with the SDK, one provider per instance."""
    spans: list[ReadableSpan] = []
    for instance in range(INSTANCES):
        resource = {
            "service.name": SERVICE,
            "service.version": version,
            "service.instance.id": f"{version}-{instance}",
        }
        with recording(resource, "benchmarks.contrast") as (tracer, finished):
            for i in np.flatnonzero(r.instance == instance).tolist():
                _request(tracer, r, i)
        spans += finished
    return spans


def collect(spans: list[ReadableSpan], version: str, new: bool) -> ReleaseData:
    """The spans through OTLP protobuf, the decoder and the aggregator, as a check reads them."""
    rows = decode_protobuf(encode_spans(spans).SerializeToString())
    start = DEPLOY if new else DEPLOY - timedelta(hours=24)
    end = DEPLOY + timedelta(hours=24) if new else DEPLOY
    return aggregate(rows, SpanQuery(SERVICE, version, start, end))


def deploy(rng: np.random.Generator, s: Scenario) -> tuple[list[Cause], str | None]:
    """One deploy of ``s``: the causes named for the route, and the one expected."""
    sizes = {"tenant.id": len(TENANTS), "app.region": len(TENANTS), "peer.service": len(PEERS)}
    value = int(rng.integers(0, sizes.get(s.key or "", INSTANCES)))
    found = {}
    for version, new in (("1.0", False), ("1.1", True)):
        r = _requests(rng, s, new, value)
        found[new] = collect(release_spans(version, r), version, new)
    named = causes(found[True], found[False], slower=[ROUTE], erroring=[ROUTE], policy=POLICY)
    return named, _expected(s, "1.1", value)


def _rows(s: Scenario, results: list[tuple[list[Cause], str | None]], seconds: float) -> list[Row]:
    right = sum(1 for named, want in results if want and [c.name for c in named] == [want])
    wrong = sum(1 for named, want in results if any(c.name != want for c in named))
    rows = [(f"{s.name}: a wrong value named", 100.0 * wrong / len(results), "%")]
    if s.key is not None:
        rows.insert(0, (f"{s.name}: the right value named", 100.0 * right / len(results), "%"))
    rows.append((f"{s.name}: seconds per deploy", seconds / len(results), "s"))
    return rows


def run(deploys: int, *, only: str | None = None) -> list[Row]:
    """Rows of (benchmark, figure, unit) for every scenario (or those whose name has ``only``)."""
    rows: list[Row] = []
    for number, s in enumerate(SCENARIOS):
        if only and only not in s.name:
            continue
        rng = np.random.default_rng(2000 + number)
        started = time.perf_counter()
        results = [deploy(rng, s) for _ in range(deploys)]
        rows += _rows(s, results, time.perf_counter() - started)
    return rows


def main() -> None:
    """``python -m benchmarks.contrast [--quick] [--deploys N] [--only TEXT]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 deploys per scenario")
    parser.add_argument("--deploys", type=int, default=40, help="deploys per scenario")
    parser.add_argument("--only", help="scenarios whose name contains this text")
    args = parser.parse_args()
    rows = run(5 if args.quick else args.deploys, only=args.only)
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'figure':>8}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>8.2f}  {unit}")


if __name__ == "__main__":
    main()
