"""The comparison window on rolling deploys: both versions while both served, against before/after.

The deploys of :mod:`benchmarks.detection_sdk` (SDK spans, OTLP into the embedded store, 5 routes,
4 instances a version, looks at +30 min, +1 h, +2 h, +4 h) with its rolling rollout: for 30 min
after the deploy each request goes to either version, then the new one serves alone. Each deploy
is read the way a check reads it (:func:`feedbot.checks.pipeline.collect`) and analysed at every
look, five times: by the store as it is under two rules, both versions over their overlap
whenever it holds enough to test (``SERVING_SHARE`` 0, the rule before) and only while it also
covers half of the new version's serving time in the look (:mod:`feedbot.checks.concurrent`,
what a check does); through a view of the store that cannot say where each version served, so
the baseline is the old version's spans from a day before the deploy up to the look
(before/after, the only window before the overlap existed), once netted of the shift of the
routes the release did not touch (``latency.before_after_correction``, off by default) and once as
measured (the default); and, not what a check does, the new
version over its whole window against the old version over the overlap only. Scenarios:

- load +30% at the deploy moment: 30% more requests and every request of both versions 30%
  slower from then on, no code change (a busier hour): false alarms;
- the same an hour after the deploy, once the rollout is over: false alarms;
- no change at all: false alarms;
- +20% on one route of the new version, same load: recall, at the first look and confirmed.

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
from datetime import timedelta
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
from feedbot.backends.base import TraceBackend
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.checks import concurrent, pipeline
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store.db import make_engine, make_sessions, migrate

BASELINE_WINDOW = timedelta(hours=24)
#: Readings of each deploy, the table's columns: the overlap whenever testable, the overlap
#: while it is most of the look (what a check does), before/after netted of the untouched
#: routes' shift (``latency.before_after_correction``, opt-in), before/after as measured (the
#: default),
#: new whole vs old overlap, and the overlap rule before the steady old version's past could stand
#: in for it (:func:`feedbot.analysis.drift.steadiness` never holding).
READINGS = 6
AS_MEASURED = replace(POLICY, latency=replace(POLICY.latency, before_after_correction=False))
NETTED = replace(POLICY, latency=replace(POLICY.latency, before_after_correction=True))
LOAD = 1.3


@dataclass(frozen=True)
class Case:
    """A rolling deploy; ``load`` multiplies every duration from the deploy on, both versions."""

    name: str
    scenario: Scenario
    load: float = 1.0
    load_from: timedelta = timedelta(0)  # when the load changes, from the deploy


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
)


class BeforeAfter:
    """The store seen without :class:`~feedbot.backends.base.ServingTimes`: before/after only."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.name = backend.name
        self._backend = backend

    def collect(self, query: SpanQuery) -> ReleaseData:
        return self._backend.collect(query)

    def close(self) -> None:
        self._backend.close()


@dataclass
class Outcome:
    regressed: bool = False  # verdict regressed at any look
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


def _hybrid(backend: EmbeddedBackend, plan: pipeline.Plan) -> pipeline.Collected:
    """Not what a check does: the new version over its whole window against the old version
    over the overlap only (where the overlap holds enough), to measure that variant."""
    collected = pipeline.collect(backend, plan)
    comparison = collected.comparison
    if comparison is None or comparison.window is None:
        return collected
    candidate = backend.collect(plan.candidate_query())
    return replace(collected, candidate=candidate, comparison=replace(comparison, window=None))


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
    hybrid: bool = False,
    share: float | None = None,
    policy: DetectionPolicy = POLICY,
    steady: bool = True,
) -> Outcome:
    with _serving_share(share, steady=steady):
        return _read(backend, service, expect, hybrid=hybrid, policy=policy)


def _read(
    backend: TraceBackend,
    service: str,
    expect: str | None,
    *,
    hybrid: bool,
    policy: DetectionPolicy = POLICY,
) -> Outcome:
    out, held = Outcome(), tuple[str, ...]()
    for look, after in enumerate(LOOKS, start=1):
        plan = _plan(service, after, look, held, policy)
        started = time.perf_counter()
        if hybrid:
            assert isinstance(backend, EmbeddedBackend)
            collected = _hybrid(backend, plan)
        else:
            collected = pipeline.collect(backend, plan)
        out.collect_s += time.perf_counter() - started
        done = pipeline.analyse(plan, collected)
        a = done.analysis
        held = tuple(f.key for f in a.findings if f.tested)  # as the check recorder keeps them
        found = [f for f in a.findings if f.kind == expect and f.span == f"GET /r{TARGET}"]
        out.first |= look == 1 and bool(found)
        out.confirmed |= any(f.state == "confirmed" for f in found)
        out.regressed |= a.verdict == "regressed"
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
        _export(backend, service, version, r, s, new)
    return (
        _looks(backend, service, s.expect, share=0.0),
        _looks(backend, service, s.expect),
        _looks(BeforeAfter(backend), service, s.expect, policy=NETTED),
        _looks(BeforeAfter(backend), service, s.expect, policy=AS_MEASURED),
        _looks(backend, service, s.expect, hybrid=True, share=0.0),
        _looks(backend, service, s.expect, steady=False),
    )


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
    """Rows of (case, figure, overlap whenever testable, overlap while it is most of the look,
    before/after, new whole window vs old overlap) for every case (or those whose name has
    ``only``)."""
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
                *[""] * (READINGS - 1),
            )
        )
    return rows


def main() -> None:
    """``python -m benchmarks.overlap [--deploys N] [--only TEXT]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=20, help="deploys per case")
    parser.add_argument("--only", help="cases whose name contains this text")
    args = parser.parse_args()
    heads = (
        "overlap always",
        "ov: most of look",
        "b/a net",
        "b/a as measured",
        "new all/old ov",
        "ov, no past",
    )
    print(f"{'case':<52} {'figure':<32} " + " ".join(f"{h:>16}" for h in heads))
    for case, figure, *cells in run(args.deploys, args.only):
        print(f"{case:<52} {figure:<32} " + " ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
