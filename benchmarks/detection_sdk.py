"""Detection on the real path: OpenTelemetry SDK spans, OTLP protobuf, the embedded store, the
check's queries and the analysis, at each scheduled look.

:mod:`benchmarks.detection` draws its 200-deploy grids as ``ReleaseData`` with numpy. Here every
span is made by the real OpenTelemetry SDK (one ``TracerProvider`` per instance whose resource
carries ``service.name``, ``service.version`` and ``service.instance.id``; start and end times
drawn with numpy and passed explicitly), exported as OTLP protobuf into the embedded backend
(SQLite), and read back with the queries the check runner sends: the new version from the deploy
to the look with the policy's warm-up, the previous version over the day before the deploy.
Versions are told apart by ``service.version`` only, so the rolling scenarios, where both
versions serve at once, test that too.

It adds what the numpy grid cannot draw: no-change deploys with bimodal and heavy-tailed latency
and with a rolling overlap, too little traffic, and a new version that never serves; and it
repeats the grid's changes on the real path: latency +5/10/15/20/50% (and +20% while rolling),
the slowest 5% 1.5 times slower, error rates 0.1% -> 0.5% and -> 2%, a new exception type, an
N+1 and changed code not reached. Beside each, the naive static rule of the grid (p95 up 10% or
errors up 50% at any look): its false alarms on no-change deploys, its recall on the changed
route for latency and errors. GROUPS routes (``GET /r0`` … ), 4 instances per version,
log-normal latency (σ = 0.5) unless said, 0.1% errors. The looks are at +30 min, +1 h, +2 h and
+4 h at RATE requests per minute per route, so 300 / 600 / 1,200 / 2,400 spans per group (the
schedule's +15 min … +24 h, compressed so that a deploy takes seconds, not minutes).

    python -m benchmarks.detection_sdk [--quick] [--deploys N] [--only TEXT] [--workers N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from benchmarks.detection import CHANGE, INSTANCES, POLICY, SIGMA, TARGET, naive_alarms
from feedbot.analysis.compare import Analysis, analyse
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.spans.model import SpanQuery
from feedbot.store.db import make_engine, make_sessions, migrate
from tests.fakes.sdk_spans import recording

Row = tuple[str, float, str]
GROUPS = 5
RATE = 10.0
DEPLOY = datetime(2026, 11, 24, 10, tzinfo=UTC)
LOOKS = (timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2), timedelta(hours=4))
#: The baseline's spans: the previous version serving for this long before the deploy.
BASELINE_SPAN = LOOKS[-1]
BASELINE_WINDOW = timedelta(hours=24)  # checks.baseline_window's default
ROLLOUT = timedelta(minutes=30)  # rolling scenarios: both versions serve, half the traffic each
ERROR_RATE = 0.001
#: The exception types of background errors; route g raises type (i + g) mod 4 with weight
#: ERROR_MIX[i], so each type is raised on several routes, some of them rarely.
ERROR_TYPES: tuple[type[Exception], ...] = (
    TimeoutError,
    ConnectionResetError,
    ValueError,
    PermissionError,
)
ERROR_MIX = np.array([0.55, 0.3, 0.15, 0.0])
#: One SELECT per request on the changed route (at most half its time); eight of DB_MS each
#: under an N+1 (56 ms: past Sentry's 5 repeats and 50 ms).
DB_MS, N_PLUS_ONE = 7.0, 8
BATCH = 2_000  # spans per OTLP export


@dataclass(frozen=True)
class Scenario:
    """One deploy shape; ``expect`` is a finding kind or, for ``verdict``, the verdict wanted."""

    name: str
    expect: str | None = None
    verdict: str | None = None
    spread: float = 0.02
    shape: str = "lognormal"  # or "bimodal" (20% of requests 4x slower), "heavy" (Student t3)
    ratio: float = 1.0
    rolling: bool = False
    rate: float = RATE
    target_rate: float | None = None  # requests per minute to the changed route, if not rate
    base_factor: int = 1  # the changed route's baseline requests per new-version request
    new_type_rate: float = 0.0
    n_plus_one: bool = False
    reached: bool = True
    serving: bool = True
    children: bool = True  # the changed route's ``appraise`` and SELECT spans
    tail: float = 1.0  # the changed route's slowest 5% of new requests this many times slower
    error_rate: float = ERROR_RATE  # the changed route's error rate in the new version
    base_error_rate: float = ERROR_RATE  # every other route's (and the baseline's) error rate
    error_types: int = 1  # 1: every error is a TimeoutError; 4: ERROR_TYPES mixed per route
    instances: int = INSTANCES  # per version


SCENARIOS = (
    Scenario("no change, 2% host spread"),
    Scenario("no change, bimodal latency (20% of requests 4x slower)", shape="bimodal"),
    Scenario("no change, heavy-tailed latency (log-t, 3 df)", shape="heavy"),
    Scenario("no change, 5% host spread", spread=0.05),
    Scenario("no change, rolling overlap for 30 min", rolling=True),
    Scenario("latency +5%", "latency_regression", ratio=1.05),
    Scenario("latency +10%", "latency_regression", ratio=1.1),
    Scenario("latency +15%", "latency_regression", ratio=1.15),
    Scenario("latency +20%", "latency_regression", ratio=1.2),
    Scenario("latency +50%", "latency_regression", ratio=1.5),
    Scenario("tail only: slowest 5% x1.5", "latency_regression", tail=1.5),
    Scenario("error rate 0.1% -> 0.5%", "error_rate_increase", error_rate=0.005),
    Scenario("error rate 0.1% -> 2%", "error_rate_increase", error_rate=0.02),
    Scenario(
        "latency +20%, rolling overlap for 30 min", "latency_regression", ratio=1.2, rolling=True
    ),
    Scenario(
        "new exception type at 1%",
        "new_error_type",
        new_type_rate=0.01,
        target_rate=35.0,
        base_factor=2,
        children=False,
    ),
    Scenario("N+1 introduced", "n_plus_one", n_plus_one=True),
    Scenario("changed code not reached", "code_not_reached", reached=False),
    Scenario(
        "too little traffic (3 requests per route by the first look)",
        verdict="insufficient_data",
        rate=0.1,
    ),
    Scenario("new version never serving", verdict="not_running", serving=False),
)


@dataclass
class Requests:
    """One version's requests: start (s from the deploy), route, instance, ms, flags."""

    starts: np.ndarray
    routes: np.ndarray
    instances: np.ndarray
    ms: np.ndarray
    errors: np.ndarray
    new_type: np.ndarray
    error_type: np.ndarray  # index into ERROR_TYPES


def _requests(rng: np.random.Generator, s: Scenario, medians: np.ndarray, new: bool) -> Requests:
    """Draw a version's requests over its serving time (see the module docstring)."""
    begin, end = (0.0, LOOKS[-1].total_seconds()) if new else (-BASELINE_SPAN.total_seconds(), 0.0)
    starts, routes = [], []
    for g in range(GROUPS):
        rate = s.rate
        if g == TARGET:
            rate = (s.target_rate or s.rate) * (1 if new else s.base_factor)
        n = rng.poisson(rate * (end - begin) / 60)
        starts.append(rng.uniform(begin, end, n))
        routes.append(np.full(n, g))
    start, route = np.concatenate(starts), np.concatenate(routes)
    if s.rolling:
        # During the rollout each request goes to either version, and the old version keeps
        # serving its half after the deploy (outside the baseline window, by version only).
        rollout = ROLLOUT.total_seconds()
        if new:
            keep = (start >= rollout) | (rng.random(start.size) < 0.5)
            start, route = start[keep], route[keep]
        else:
            extra = rng.uniform(0.0, rollout, rng.poisson(s.rate * GROUPS * rollout / 120))
            start = np.concatenate((start, extra))
            route = np.concatenate((route, rng.integers(0, GROUPS, extra.size)))
    if new and not s.serving:
        start, route = start[:0], route[:0]
    instance = rng.integers(0, s.instances, start.size)
    offsets = rng.normal(0.0, s.spread, s.instances)
    noise = rng.standard_normal(start.size) * SIGMA
    if s.shape == "heavy":
        noise = rng.standard_t(3, start.size) * SIGMA / np.sqrt(3.0)
    logs = np.log(medians[route]) + noise + offsets[instance]
    if s.shape == "bimodal":
        logs += np.where(rng.random(start.size) < 0.2, np.log(4.0), 0.0)
    target = route == TARGET
    rates = np.full(start.size, s.base_error_rate)
    if new:
        logs += np.where(target, np.log(s.ratio), 0.0)
        if s.tail != 1.0 and target.any():
            cut = np.quantile(logs[target], 0.95)
            logs += np.where(target & (logs > cut), np.log(s.tail), 0.0)
        rates[target] = s.error_rate
    errors = rng.random(start.size) < rates
    new_type = target & new & (rng.random(start.size) < s.new_type_rate)
    kinds = np.zeros(start.size, dtype=np.int64)
    if s.error_types > 1:  # drawn only then, so single-type scenarios keep their draws
        picked = np.searchsorted(np.cumsum(ERROR_MIX), rng.random(start.size), side="right")
        kinds = (np.minimum(picked, ERROR_MIX.size - 1) + route) % s.error_types
    return Requests(start, route, instance, np.exp(logs), errors, new_type, kinds)


def _ns(seconds: float) -> int:
    return int((DEPLOY.timestamp() + seconds) * 1e9)


def _request(tracer: Any, r: Requests, i: int, s: Scenario, new: bool) -> None:
    """One request: its SERVER span and, on the changed route, ``appraise`` and the SELECTs."""
    route, start = int(r.routes[i]), _ns(float(r.starts[i]))
    server = tracer.start_span(
        f"GET /r{route}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.route": f"/r{route}", "http.request.method": "GET"},
    )
    ms, extra_ns = float(r.ms[i]), 0
    if route == TARGET and s.children:
        inside = set_span_in_context(server)
        if s.reached or not new:
            function, path = CHANGE.functions[0], CHANGE.file
            attributes = {"code.function.name": function, "code.file.path": path}
            tracer.start_span(
                "appraise", context=inside, start_time=start, attributes=attributes
            ).end(end_time=start + int(ms * 1e5))
        # One SELECT fits in the request's drawn time; an N+1's further SELECTs add theirs.
        repeats = N_PLUS_ONE if s.n_plus_one and new else 1
        each = int((DB_MS if repeats > 1 else min(DB_MS, ms / 2)) * 1e6)
        for k in range(repeats):
            statement = f"SELECT * FROM items WHERE id = {i * 10 + k}"
            tracer.start_span(
                "SELECT items",
                context=inside,
                kind=SpanKind.CLIENT,
                start_time=start + k * each,
                attributes={"db.system.name": "postgresql", "db.query.text": statement},
            ).end(end_time=start + (k + 1) * each)
        extra_ns = (repeats - 1) * each
    if r.new_type[i]:
        server.record_exception(KeyError("vault 713 has no price"), timestamp=start)
        server.set_status(Status(StatusCode.ERROR))
    elif r.errors[i]:
        error = ERROR_TYPES[int(r.error_type[i])]("upstream failed")
        server.record_exception(error, timestamp=start)
        server.set_status(Status(StatusCode.ERROR))
    server.end(end_time=start + int(ms * 1e6) + extra_ns)


def _export(
    backend: EmbeddedBackend, service: str, version: str, r: Requests, s: Scenario, new: bool
) -> int:
    """Make a version's spans with the SDK, one provider per instance; post them as OTLP."""
    sent = 0
    for instance in range(s.instances):
        resource = {
            "service.name": service,
            "service.version": version,
            "service.instance.id": f"{version}-{instance}",
            "deployment.environment.name": "production",
        }
        with recording(resource, "benchmarks.detection_sdk") as (tracer, finished):
            for i in np.flatnonzero(r.instances == instance).tolist():
                _request(tracer, r, i, s, new)
        for at in range(0, len(finished), BATCH):
            body = encode_spans(finished[at : at + BATCH]).SerializeToString()
            sent += backend.ingest(body, "application/x-protobuf", None)
    return sent


@dataclass
class Outcome:
    """What one deploy's looks said."""

    first: bool = False  # the expected finding at look 1 (watching or confirmed)
    confirmed: bool = False  # ... confirmed by the last look
    regressed: bool = False  # verdict regressed at any look
    watching: bool = False  # any watching finding at any look
    naive: bool = False  # the static rule alarmed (on the changed route, for a change) at a look
    verdicts: tuple[str, ...] = ()
    spans: int = 0


def _found(a: Analysis, kind: str | None, *, confirmed: bool) -> bool:
    return any(
        f.kind == kind
        and (f.state == "confirmed" or not confirmed)
        and (f.span == f"GET /r{TARGET}" or f.function == CHANGE.functions[0])
        for f in a.findings
    )


def _deploy(
    backend: EmbeddedBackend, service: str, s: Scenario, rng: np.random.Generator
) -> Outcome:
    """Export both versions, then analyse at each look as a check would."""
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), GROUPS))
    out = Outcome()
    for version, new in (("1.0", False), ("1.1", True)):
        out.spans += _export(backend, service, version, _requests(rng, s, medians, new), s, new)
    base = backend.collect(
        SpanQuery(service, "1.0", DEPLOY - BASELINE_WINDOW, DEPLOY, environment="production")
    )
    previous: Analysis | None = None
    for look, after in enumerate(LOOKS, start=1):
        query = SpanQuery(
            service,
            "1.1",
            DEPLOY,
            DEPLOY + after,
            environment="production",
            warmup=POLICY.latency.warmup,
        )
        candidate = backend.collect(query)
        a = analyse(
            candidate,
            base,
            changes=[CHANGE],
            policy=POLICY,
            look=look,
            looks=len(LOOKS),
            previous=previous,
        )
        previous = a
        out.first |= look == 1 and _found(a, s.expect, confirmed=False)
        out.confirmed |= _found(a, s.expect, confirmed=True)
        out.regressed |= a.verdict == "regressed"
        out.watching |= bool(a.watching)
        hits = naive_alarms(candidate, base)
        out.naive |= bool(hits) if s.expect is None else any(f"GET /r{TARGET}" in h for h in hits)
        out.verdicts += (a.verdict,)
    return out


def _rows(s: Scenario, results: list[Outcome], seconds: float) -> list[Row]:
    n = len(results)

    def share(flags: list[bool]) -> float:
        return 100.0 * sum(flags) / n

    sizes = "/".join(str(round(s.rate * look.total_seconds() / 60)) for look in LOOKS)
    label = f"{s.name} (SDK, {n} deploys, n={sizes})"
    rows: list[Row] = []
    if s.verdict is not None:
        rows.append(
            (
                f"verdict {s.verdict} at every look, {label}",
                share([set(r.verdicts) == {s.verdict} for r in results]),
                "%",
            )
        )
        rows.append(
            (
                f"verdict {s.verdict} at look 1, {label}",
                share([r.verdicts[0] == s.verdict for r in results]),
                "%",
            )
        )
    if s.expect is None:
        rows.append(
            (
                f"false alarms (regressed verdict), {label}",
                share([r.regressed for r in results]),
                "%",
            )
        )
        if s.verdict is None:
            rows.append(
                (
                    f"deploys with a watching finding, {label}",
                    share([r.watching for r in results]),
                    "%",
                )
            )
            rows.append(
                (
                    f"naive p95>10%/errors+50% false alarms, {label}",
                    share([r.naive for r in results]),
                    "%",
                )
            )
    else:
        rows.append((f"recall at look 1, {label}", share([r.first for r in results]), "%"))
        rows.append(
            (f"recall confirmed by the end, {label}", share([r.confirmed for r in results]), "%")
        )
        if s.expect in ("latency_regression", "error_rate_increase"):
            rows.append((f"naive rule recall, {label}", share([r.naive for r in results]), "%"))
    spans = float(np.mean([r.spans for r in results]))
    rows.append((f"spans per deploy, {s.name}", spans, "spans"))
    rows.append((f"seconds per deploy (SDK, store, 4 looks), {s.name}", seconds / n, "s"))
    return rows


def _scenario(job: tuple[int, int]) -> list[Row]:
    """One scenario's rows, on a store of its own (a worker process runs it)."""
    number, deploys = job
    s = SCENARIOS[number]
    rng = np.random.default_rng(1000 + number)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'sdk.db'}")
        migrate(engine)
        backend = EmbeddedBackend(make_sessions(engine))
        started = time.perf_counter()
        results = [_deploy(backend, f"sdk-{number}-{d}", s, rng) for d in range(deploys)]
        seconds = time.perf_counter() - started
        engine.dispose()
    return _rows(s, results, seconds)


def run(deploys: int, *, only: str | None = None, workers: int = 2) -> list[Row]:
    """Rows of (benchmark, figure, unit) for every scenario (or those whose name has ``only``),
    ``workers`` scenarios at a time; each scenario's draws depend only on its own seed."""
    jobs = [(n, deploys) for n, s in enumerate(SCENARIOS) if not only or only in s.name]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return [row for rows in pool.imap(_scenario, jobs) for row in rows]


def main() -> None:
    """``python -m benchmarks.detection_sdk [--quick] [--deploys N] [--only TEXT]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 deploys per scenario")
    parser.add_argument("--deploys", type=int, default=20, help="deploys per scenario")
    parser.add_argument("--only", help="scenarios whose name contains this text")
    parser.add_argument("--workers", type=int, default=2, help="scenarios run at once")
    args = parser.parse_args()
    deploys = 5 if args.quick else args.deploys
    for name, value, unit in run(deploys, only=args.only, workers=args.workers):
        print(f"{name:<96} {value:>8.2f} {unit}")


if __name__ == "__main__":
    main()
