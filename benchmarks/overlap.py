"""The comparison window on rolling deploys, and when a before/after look nets every route's shift.

The deploys of :mod:`benchmarks.detection_sdk` (SDK spans, OTLP into the embedded store, 5 routes,
4 instances a version, looks at +30 min, +1 h, +2 h, +4 h) with its rolling rollout: for 30 min
after the deploy each request goes to either version, then the new one serves alone. Each deploy
is read the way a check reads it (:func:`feedbot.checks.pipeline.collect`) and analysed at every
look, seven times: both versions over their overlap whenever it holds enough to test
(``SERVING_SHARE`` 0, the rule before); as a check does (the overlap while it covers half of the
new version's serving time in the look, :mod:`feedbot.checks.concurrent`, before/after later)
with ``latency.before_after_correction`` off (the default before), auto (the default: netted
only when the whole service's requests per minute moved with the shift) and on; and through a
view of the store that cannot say where each version served, so every look is before/after
(the baseline is the old version's spans from a day before the deploy up to the look), with the
correction off, auto and on. Scenarios:

- load +30% at the deploy moment: 30% more requests and every request of both versions 30%
  slower from then on, no code change (a busier hour): false alarms;
- the same an hour after the deploy, once the rollout is over: false alarms;
- no change at all: false alarms;
- +20% on one route of the new version, same load: recall, at the first look and confirmed;
- +20% on every route of the new version, same load (a dependency bump, a logging or GC
  change): a release-wide regression, to be found (regressed) at the looks after the rollout;
- the same from a closed-loop load generator: a slower release serves fewer requests (each
  client waits for its answer), so the service's requests per minute fall by 1/1.2.

    python -m benchmarks.overlap [--deploys N] [--only TEXT]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.detection import CHANGE, POLICY, TARGET
from benchmarks.detection_sdk import (
    DEPLOY,
    GROUPS,
    LOOKS,
    Requests,
    Scenario,
    _export,
    _requests,
)
from feedbot.analysis import drift
from feedbot.analysis.report import ReportContext
from feedbot.backends.base import TraceBackend, Traffic
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks import concurrent, pipeline
from feedbot.policy import Correction, DetectionPolicy
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store.db import make_engine, make_sessions, migrate

BASELINE_WINDOW = timedelta(hours=24)
#: ``latency.before_after_correction``'s settings, as the columns read them.
CORRECTIONS: tuple[Correction, ...] = ("off", "auto", "on")
POLICIES = {
    c: replace(POLICY, latency=replace(POLICY.latency, before_after_correction=c))
    for c in CORRECTIONS
}
#: The table's columns: the overlap whenever testable; a check's reading, then before/after
#: only, each with the correction off, auto and on; last, a check's reading (auto) before the
#: steady old version's past could stand in for the overlap
#: (:func:`feedbot.analysis.drift.steadiness` never holding).
HEADS = (
    "overlap always",
    *(f"check: {c}" for c in CORRECTIONS),
    *(f"b/a only: {c}" for c in CORRECTIONS),
    "auto, no past",
)
READINGS = len(HEADS)
LOAD = 1.3
RELEASE = 1.2


@dataclass(frozen=True)
class Case:
    """A rolling deploy; ``load`` multiplies every duration from the deploy on, both versions,
    and the requests; ``release`` every duration of the new version (a release-wide change),
    and with ``closed`` divides its requests too (clients that wait for each answer)."""

    name: str
    scenario: Scenario
    load: float = 1.0
    load_from: timedelta = timedelta(0)  # when the load changes, from the deploy
    release: float = 1.0
    closed: bool = False


CASES = (
    Case("load +30% at the deploy, no code change", Scenario("load", rolling=True), LOAD),
    Case(
        "load +30% an hour after the deploy (rollout over)",
        Scenario("later load", rolling=True),
        LOAD,
        timedelta(hours=1),
    ),
    Case("no change", Scenario("no change", rolling=True)),
    Case(
        "latency +20% on one route",
        Scenario("+20%", "latency_regression", ratio=1.2, rolling=True),
    ),
    Case(
        "release-wide +20% on every route, same load",
        Scenario("release-wide", rolling=True),
        release=RELEASE,
    ),
    Case(
        "release-wide +20%, closed loop (fewer requests)",
        Scenario("release-wide, closed loop", rolling=True),
        release=RELEASE,
        closed=True,
    ),
)


class BeforeAfter:
    """The store seen without :class:`~feedbot.backends.base.ServingTimes`: before/after only
    (it still counts the service's requests, :class:`~feedbot.backends.base.RequestCounter`)."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.name = backend.name
        self._backend = backend

    def collect(self, query: SpanQuery) -> ReleaseData:
        return self._backend.collect(query)

    def traffic(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> Traffic | None:
        return self._backend.traffic(service, start, end, environment)

    def close(self) -> None:
        self._backend.close()


@dataclass
class Outcome:
    regressed: bool = False  # verdict regressed at any look
    later: bool = False  # ... at a look after the first (past the rollout)
    first: bool = False  # the change found at look 1 (watching or confirmed)
    confirmed: bool = False  # ... confirmed by the last look
    overlap_looks: int = 0  # looks compared over the overlap
    collect_s: float = 0.0  # the store's reads at all looks (pipeline.collect)


def _plan(
    service: str,
    after: timedelta,
    look: int,
    held: tuple[str, ...],
    policy: DetectionPolicy = POLICY,
) -> pipeline.Plan:
    end = DEPLOY + after
    context = ReportContext(
        service=service,
        version="1.1",
        baseline_version="1.0",
        environment="production",
        candidate_window=(DEPLOY, end),
        baseline_window=(DEPLOY - BASELINE_WINDOW, end),
    )
    return pipeline.Plan(
        context=context, changes=[CHANGE], policy=policy, look=look, looks=len(LOOKS), held=held
    )


@contextmanager
def _serving_share(share: float | None, *, steady: bool = True) -> Iterator[None]:
    """The overlap rule with ``share`` of the serving time (None: as it is), and without the
    steady old version's past (``steady`` False: its interval can never fit), then back."""
    saved, within = concurrent.SERVING_SHARE, drift.STEADY_WITHIN
    concurrent.SERVING_SHARE = saved if share is None else share
    drift.STEADY_WITHIN = within if steady else 0.0
    try:
        yield
    finally:
        concurrent.SERVING_SHARE, drift.STEADY_WITHIN = saved, within


def _looks(
    backend: TraceBackend,
    service: str,
    expect: str | None,
    *,
    share: float | None = None,
    policy: DetectionPolicy = POLICY,
    steady: bool = True,
) -> Outcome:
    with _serving_share(share, steady=steady):
        return _read(backend, service, expect, policy=policy)


def _read(
    backend: TraceBackend,
    service: str,
    expect: str | None,
    *,
    policy: DetectionPolicy = POLICY,
) -> Outcome:
    out, held = Outcome(), tuple[str, ...]()
    for look, after in enumerate(LOOKS, start=1):
        plan = _plan(service, after, look, held, policy)
        started = time.perf_counter()
        collected = pipeline.collect(backend, plan)
        out.collect_s += time.perf_counter() - started
        done = pipeline.analyse(plan, collected)
        a = done.analysis
        held = tuple(f.key for f in a.findings if f.tested)  # as the check recorder keeps them
        found = [f for f in a.findings if f.kind == expect and f.span == f"GET /r{TARGET}"]
        out.first |= look == 1 and bool(found)
        out.confirmed |= any(f.state == "confirmed" for f in found)
        out.regressed |= a.verdict == "regressed"
        out.later |= look > 1 and a.verdict == "regressed"
        comparison = collected.comparison
        out.overlap_looks += comparison is not None and comparison.kind == "overlap"
    return out


def _deploy(
    backend: EmbeddedBackend, service: str, case: Case, rng: np.random.Generator
) -> tuple[Outcome, ...]:
    s = case.scenario
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), GROUPS))
    for version, new in (("1.0", False), ("1.1", True)):
        r = _requests(rng, s, medians, new)
        since = case.load_from.total_seconds()
        later = r.starts >= since
        r = replace(r, ms=np.where(later, r.ms * case.load, r.ms))
        r = _busier(rng, r, case.load, since)
        if new:
            r = replace(r, ms=r.ms * case.release)
            if case.closed:
                r = _thinned(rng, r, 1.0 / case.release)
        _export(backend, service, version, r, s, new)
    view = BeforeAfter(backend)
    return (
        _looks(backend, service, s.expect, share=0.0),
        *(_looks(backend, service, s.expect, policy=POLICIES[c]) for c in CORRECTIONS),
        *(_looks(view, service, s.expect, policy=POLICIES[c]) for c in CORRECTIONS),
        _looks(backend, service, s.expect, policy=POLICIES["auto"], steady=False),
    )


def _thinned(rng: np.random.Generator, r: Requests, keep: float) -> Requests:
    """``keep`` of the requests, drawn at random (a closed loop: fewer answers per minute)."""
    kept = rng.random(r.starts.size) < keep
    return Requests(**{f.name: getattr(r, f.name)[kept] for f in fields(r)})


def _busier(rng: np.random.Generator, r: Requests, load: float, since: float) -> Requests:
    """``load``x the requests from ``since`` on: a busier hour brings more requests, not only
    slower ones (each extra one a copy of a later request, a second later at most, its time
    varied by 10%), so the requests per minute tell a load change from a slower release."""
    if load <= 1.0:
        return r
    later = np.flatnonzero(r.starts >= since)
    extra = later[rng.random(later.size) < load - 1.0]
    index = np.concatenate([np.arange(r.starts.size), extra])
    columns = {f.name: getattr(r, f.name)[index] for f in fields(r)}
    n = r.starts.size
    columns["starts"] = columns["starts"].astype(np.float64)
    columns["starts"][n:] += rng.uniform(0.0, 1.0, extra.size)
    columns["ms"] = columns["ms"].astype(np.float64)
    columns["ms"][n:] *= np.exp(rng.normal(0.0, 0.1, extra.size))
    order = np.argsort(columns["starts"], kind="stable")
    return Requests(**{name: values[order] for name, values in columns.items()})


def run(deploys: int, only: str | None = None) -> list[tuple[str, ...]]:
    """Rows of (case, figure, then one cell per column of :data:`HEADS`) for every case (or
    those whose name has ``only``)."""
    rows: list[tuple[str, ...]] = []
    for number, case in enumerate(CASES):
        if only and only not in case.name:
            continue
        rng = np.random.default_rng(2000 + number)
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'overlap.db'}")
            migrate(engine)
            backend = EmbeddedBackend(make_sessions(engine))
            started = time.perf_counter()
            pairs = [_deploy(backend, f"ov-{number}-{d}", case, rng) for d in range(deploys)]
            seconds = time.perf_counter() - started
            engine.dispose()
        label = f"{case.name} ({deploys} deploys)"

        def share(flag: str, pairs: Sequence[tuple[Outcome, ...]] = pairs) -> tuple[str, ...]:
            return tuple(
                f"{100.0 * sum(bool(getattr(p[i], flag)) for p in pairs) / deploys:.0f}%"
                for i in range(READINGS)
            )

        if case.scenario.expect is None:
            rows.append((label, "regressed at any look", *share("regressed")))
            rows.append((label, "regressed at a later look (2-4)", *share("later")))
        else:
            rows.append((label, "found at look 1", *share("first")))
            rows.append((label, "confirmed by the end", *share("confirmed")))
        overlap = [
            f"{sum(p[i].overlap_looks for p in pairs) / (deploys * len(LOOKS)):.0%}"
            for i in range(READINGS)
        ]
        rows.append((label, "looks using the overlap", *overlap))
        reads = [statistics.median(p[i].collect_s for p in pairs) for i in range(READINGS)]
        rows.append((label, "store reads, s per deploy (median)", *(f"{r:.2f}" for r in reads)))
        rows.append(
            (
                label,
                f"seconds per deploy ({READINGS} readings)",
                f"{seconds / deploys:.1f}",
                *([""] * (READINGS - 1)),
            )
        )
    return rows


def main() -> None:
    """``python -m benchmarks.overlap [--deploys N] [--only TEXT]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=20, help="deploys per case")
    parser.add_argument("--only", help="cases whose name contains this text")
    args = parser.parse_args()
    print(f"{'case':<62} {'figure':<34} " + " ".join(f"{h:>14}" for h in HEADS))
    for case, figure, *cells in run(args.deploys, args.only):
        print(f"{case:<62} {figure:<34} " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
