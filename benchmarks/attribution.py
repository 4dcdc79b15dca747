"""Attribution on generated deploys whose cause is known: is the named cause the right one?

Every span is made by the real OpenTelemetry SDK (one ``TracerProvider`` per instance, its
resource carrying ``service.name``, ``service.version`` and ``service.instance.id``; start and
end times drawn with numpy and passed explicitly, nothing sleeps), encoded as OTLP protobuf,
decoded and aggregated the way the embedded store reads it (critical paths walked per closed
trace), then analysed by :func:`feedbot.analysis.compare.analyse` as a one-shot report.

A request to ``POST /items`` (the route a scenario changes) runs, inside a ``deposit``
handler: ``SELECT vaults``, then ``GET /rates`` and ``GET /fees`` concurrently, ``validate``,
``SELECT items`` (once per request), and after the handler returns, ``publish`` (a producer span
that outlives the request, truncated on the critical path); ``GET /vaults`` is a second route
that never changes. Every part's time is log-normal (σ = 0.35) around its median, each instance
adds its own log-offset (sd 0.05), INSTANCES instances per version, REQUESTS requests per
version. A scenario changes one thing in the new version (the table :data:`SCENARIOS`; add a
row to add one): ``validate`` twice as slow, a new ``seal`` step of 4 ms, ``SELECT items`` run
6 times per request (an N+1), or nothing.

Printed per scenario: deploys, the share where the route's top cause (largest share) is the
right part with the right kind, the median share it was given, and for no-change deploys the
share where any cause was named (through ``analyse``, and asking
:func:`feedbot.analysis.critical_path.causes` about every group, as if each had regressed).
Aim (issue 15): the right cause in ≥ 95%, a cause on no-change deploys in ≤ 2%.

    python -m benchmarks.attribution [--deploys N] [--quick] [--only TEXT]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind, set_span_in_context

from feedbot.analysis import attribution, critical_path
from feedbot.analysis.compare import analyse
from feedbot.analysis.findings import Cause
from feedbot.policy import DetectionPolicy
from feedbot.spans.aggregate import aggregate
from feedbot.spans.model import ReleaseData
from feedbot.spans.otlp import decode_protobuf
from tests.fakes.sdk_spans import recording

POLICY = DetectionPolicy()
ROUTE = "POST /items"
INSTANCES = 4
REQUESTS = 400  # per version, over all instances
SIGMA, SPREAD = 0.35, 0.05
T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
#: Median ms of each part of a POST /items request (the handler's and route's own time too).
MEDIANS = {
    "route": 0.5,
    "deposit": 0.5,
    "SELECT vaults": 1.5,
    "GET /rates": 4.0,
    "GET /fees": 3.0,
    "validate": 3.0,
    "seal": 4.0,
    "SELECT items": 1.2,
    "publish": 5.0,
}


@dataclass(frozen=True)
class Scenario:
    """One deploy shape: what the new version changes and which cause must be named.

    Attributes:
        name: What the row is called.
        expect: The cause's name must contain this (None: no cause may be named).
        kind: The cause's kind.
        slower: ``validate``'s time is multiplied by this in the new version.
        new_step: The new version runs ``seal`` (a new child of ``deposit``).
        repeats: ``SELECT items`` runs this many times per request in the new version.
    """

    name: str
    expect: str | None = None
    kind: str | None = None
    slower: float = 1.0
    new_step: bool = False
    repeats: int = 1


SCENARIOS = (
    Scenario("slower child: validate x2", "validate", "child", slower=2.0),
    Scenario("new child: seal, 4 ms", "seal", "new_child", new_step=True),
    Scenario("N+1: SELECT items 1 -> 6 per request", "items", "repeat", repeats=6),
    Scenario("no change"),
)


class _Clock:
    """Draws each part's time for one instance: log-normal around its median."""

    def __init__(self, rng: np.random.Generator, offset: float) -> None:
        self.rng, self.offset = rng, offset

    def ms(self, part: str, factor: float = 1.0) -> int:
        """Nanoseconds of one ``part``."""
        log = np.log(MEDIANS[part] * factor) + self.offset + self.rng.normal(0.0, SIGMA)
        return int(np.exp(log) * 1e6)


def _request(tracer: Any, clock: _Clock, start: int, s: Scenario, new: bool) -> None:
    """One POST /items trace (see the module docstring)."""
    server = tracer.start_span(
        ROUTE,
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.route": "/items", "http.request.method": "POST"},
    )
    at = start + clock.ms("route")
    handler = tracer.start_span("deposit", context=set_span_in_context(server), start_time=at)
    inside = set_span_in_context(handler)
    at = _step(tracer, inside, "SELECT vaults", at, clock.ms("SELECT vaults"), SpanKind.CLIENT)
    rates, fees = clock.ms("GET /rates"), clock.ms("GET /fees")
    _step(tracer, inside, "GET /rates", at, rates, SpanKind.CLIENT)
    at = max(at + rates, _step(tracer, inside, "GET /fees", at, fees, SpanKind.CLIENT))
    at = _step(tracer, inside, "validate", at, clock.ms("validate", s.slower if new else 1.0))
    if new and s.new_step:
        at = _step(tracer, inside, "seal", at, clock.ms("seal"))
    for k in range(s.repeats if new else 1):
        statement = {"db.system.name": "postgresql", "db.query.text": f"SELECT * FROM items {k}"}
        at = _step(
            tracer, inside, "SELECT items", at, clock.ms("SELECT items"), SpanKind.CLIENT, statement
        )
    at += clock.ms("deposit")
    handler.end(end_time=at)
    _step(
        tracer, set_span_in_context(server), "publish", at, clock.ms("publish"), SpanKind.PRODUCER
    )
    server.end(end_time=at + clock.ms("route"))


def _step(
    tracer: Any,
    context: Any,
    name: str,
    start: int,
    ns: int,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, str] | None = None,
) -> int:
    """One child span from ``start`` lasting ``ns``; returns its end."""
    span = tracer.start_span(
        name, context=context, kind=kind, start_time=start, attributes=attributes
    )
    span.end(end_time=start + ns)
    return start + ns


def _other(tracer: Any, clock: _Clock, start: int) -> None:
    """One GET /vaults trace: a SELECT and the route's own time."""
    server = tracer.start_span(
        "GET /vaults",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.route": "/vaults", "http.request.method": "GET"},
    )
    at = _step(
        tracer,
        set_span_in_context(server),
        "SELECT vaults",
        start,
        clock.ms("SELECT vaults"),
        SpanKind.CLIENT,
    )
    server.end(end_time=at + clock.ms("route"))


def version(
    s: Scenario, rng: np.random.Generator, name: str, new: bool, requests: int = REQUESTS
) -> ReleaseData:
    """One version's spans, made by the SDK per instance, read back as the embedded store does."""
    rows = []
    begin = T0 if new else T0 - timedelta(hours=1)
    for instance in range(INSTANCES):
        resource = {
            "service.name": "vault",
            "service.version": name,
            "service.instance.id": f"{name}-{instance}",
            "deployment.environment.name": "production",
        }
        with recording(resource, "benchmarks.attribution") as (tracer, finished):
            clock = _Clock(rng, rng.normal(0.0, SPREAD))
            for i in range(requests // INSTANCES):
                start = int((begin + timedelta(seconds=i * 3 + instance * 0.7)).timestamp() * 1e9)
                _request(tracer, clock, start, s, new)
                _other(tracer, clock, start + 1_000_000_000)
        rows += decode_protobuf(encode_spans(finished).SerializeToString())
    return aggregate(rows)


def deploy(
    s: Scenario, rng: np.random.Generator, requests: int = REQUESTS
) -> tuple[ReleaseData, ReleaseData]:
    """(new version, baseline) of one deploy of scenario ``s``, ``requests`` each."""
    return version(s, rng, "1.1", True, requests), version(s, rng, "1.0", False, requests)


@dataclass
class Tally:
    """One scenario's outcomes over its deploys."""

    deploys: int = 0
    right: int = 0
    named: int = 0  # deploys where analyse named any cause
    named_any_group: int = 0  # ... where causes() named one when asked about every group
    shares: list[float] | None = None


def _top(causes: tuple[Cause, ...] | list[Cause]) -> Cause | None:
    mine = [c for c in causes if c.span == ROUTE and c.explains == "latency"]
    return max(mine, key=lambda c: c.share) if mine else None


def run_scenario(s: Scenario, deploys: int, seed: int) -> Tally:
    """Generate and analyse ``deploys`` deploys of ``s``."""
    rng = np.random.default_rng(seed)
    tally = Tally(shares=[])
    for _ in range(deploys):
        candidate, baseline = deploy(s, rng)
        result = analyse(candidate, baseline, changes=(), policy=POLICY, final=True)
        top = _top(result.causes)
        tally.deploys += 1
        tally.named += bool(result.causes)
        everything = [g.name for g in candidate.groups]
        asked = critical_path.causes(candidate, baseline, everything, POLICY)
        tally.named_any_group += any(c.share >= attribution.MIN_SHARE for c in asked)
        if top is not None and s.expect is not None and s.expect in top.name and top.kind == s.kind:
            tally.right += 1
            assert tally.shares is not None
            tally.shares.append(top.share)
    return tally


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> None:
    """Run the scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deploys", type=int, default=100, help="deploys per scenario")
    parser.add_argument("--quick", action="store_true", help="20 deploys per scenario")
    parser.add_argument("--only", default="", help="scenarios whose name contains this")
    args = parser.parse_args(argv)
    deploys = 20 if args.quick else args.deploys
    out(
        f"{'scenario':<40} {'deploys':>7} {'right cause':>11} {'median share':>12} "
        f"{'cause named':>11} {'any group':>9}  {'s':>5}"
    )
    for seed, s in enumerate(SCENARIOS):
        if args.only not in s.name:
            continue
        began = time.perf_counter()
        t = run_scenario(s, deploys, seed)
        right = f"{t.right / t.deploys:.0%}" if s.expect else "-"
        share = f"{np.median(t.shares):.0%}" if t.shares else "-"
        named = f"{t.named / t.deploys:.0%}" if s.expect is None else "-"
        anywhere = f"{t.named_any_group / t.deploys:.0%}" if s.expect is None else "-"
        out(
            f"{s.name:<40} {t.deploys:>7} {right:>11} {share:>12} {named:>11} {anywhere:>9}  "
            f"{time.perf_counter() - began:>5.0f}"
        )


if __name__ == "__main__":
    main()
