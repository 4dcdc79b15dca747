"""Detection quality of feedbot's analysis on synthetic deploys, beside a naive static rule.

Each simulated deploy has GROUPS span groups (lognormal latency, σ = 0.5, medians log-uniform on
5-200 ms), 4 instances per version whose log-latency offsets (sd = the host spread) are shared
by every group, 0.1% errors, and is analysed by :func:`feedbot.analysis.compare.analyse` at the
four scheduled looks on cumulative data (LOOKS spans per group and version), each look getting
the previous one's analysis for confirmation. For speed the ReleaseData is drawn with numpy
directly rather than through the OpenTelemetry SDK and the file backend (the CLI's functional
tests cover that path); the numbers the analysis sees are the same.

C3 (new instances 2× slower for their first 5 min, no code change) is the exception: its
exclusion is done by the trace backend, so its spans take the real path. They are written as
OTLP/JSON with span start times and ``service.instance.id`` (the four new instances start at the
deploy), posted to the embedded backend (SQLite), and read back per look with the
:class:`~feedbot.spans.model.SpanQuery` the check runner sends: the new version with the
policy's warm-up, the baseline without. The same spans are also read with no warm-up, for
contrast.

Printed per scenario: recall at the first look (a finding of the right kind on the right group,
watching or confirmed), recall by the end of the schedule (confirmed, so it made the verdict),
and the naive rule's recall ("p95 up > 10% or error rate up ≥ 50%" at any look). For no-change
deploys: the share with a `regressed` verdict at any look, the share with any watching finding,
and the naive rule's false-alarm rate.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from feedbot.analysis.compare import Analysis, analyse
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.model import (
    CodeSeen,
    ExceptionSeen,
    ReleaseData,
    RepeatedStatement,
    SpanGroupStats,
    SpanQuery,
)
from feedbot.store.db import make_engine, make_sessions, migrate

POLICY = DetectionPolicy()
GROUPS = 10
INSTANCES = 4
SIGMA = 0.5
LOOKS = (300, 1200, 2400, 4800)
TARGET = 0  # the group a scenario changes
#: ``traced``: the function opens its own span, as ``feedbot notify-deploy`` reads from the AST;
#: without it a function no baseline span named is "unknown", never "not reached" (issue #6).
CHANGE = Change(
    file="vault/appraisal.py",
    functions=("vault.appraisal.appraise",),
    traced=("vault.appraisal.appraise",),
)


@dataclass(frozen=True)
class Scenario:
    """One injected change (all fields default to "no change")."""

    name: str
    expect: str | None = None  # finding kind that counts as detected; None: no-change deploy
    spread: float = 0.02
    ratio: float = 1.0
    tail: float = 1.0
    error_rate: float = 0.001
    new_type_rate: float = 0.0
    n_plus_one: bool = False
    reach: float | None = None  # the changed function's reach rate in the new version
    looks: tuple[int, ...] = LOOKS
    base_factor: int = 1  # baseline spans per new-version span


@dataclass
class _Version:
    logs: list[np.ndarray]
    ids: list[np.ndarray]
    errors: list[np.ndarray]


def _draw(
    rng: np.random.Generator, s: Scenario, n: int, medians: np.ndarray, new: bool
) -> _Version:
    offsets = rng.normal(0.0, s.spread, INSTANCES)
    out = _Version([], [], [])
    for g, median in enumerate(medians):
        ids = rng.integers(0, INSTANCES, n).astype(np.int32)
        logs = rng.normal(np.log(median), SIGMA, n) + offsets[ids]
        rate = 0.001
        if new and g == TARGET:
            logs = logs + np.log(s.ratio)
            cut = np.quantile(logs, 0.95)
            logs = np.where(logs > cut, logs + np.log(s.tail), logs)
            rate = s.error_rate
        out.logs.append(logs)
        out.ids.append(ids)
        out.errors.append(rng.random(n) < rate)
    return out


def _release(v: _Version, n: int, s: Scenario, new: bool, rng: np.random.Generator) -> ReleaseData:
    groups = []
    for g in range(GROUPS):
        exceptions: tuple[ExceptionSeen, ...] = ()
        code: tuple[CodeSeen, ...] = (CodeSeen("vault.api.other", None, None, n),)
        if new and g == TARGET and s.new_type_rate:
            k = int(rng.binomial(n, s.new_type_rate))
            exceptions = (ExceptionSeen("KeyError", k, "x", "ab" * 16),) if k else ()
        if g == TARGET and s.reach is not None and (new or s.reach == 0.0):
            hits = int(rng.binomial(n, s.reach if new else 0.05))
            code = (*code, CodeSeen(CHANGE.functions[0], None, None, hits)) if hits else code
        groups.append(
            SpanGroupStats(
                f"GET /r{g}",
                "SERVER",
                n,
                int(v.errors[g][:n].sum()),
                np.exp(v.logs[g][:n]),
                v.ids[g][:n],
                tuple(f"h{i}" for i in range(INSTANCES)),
                exceptions,
                code,
            )
        )
    repeats = [_n_plus_one(n)] if new and s.n_plus_one else []
    return ReleaseData(groups=groups, repeats=repeats, traces=n * 2)


def _n_plus_one(n: int) -> RepeatedStatement:
    return RepeatedStatement(
        f"GET /r{TARGET}",
        "SELECT * FROM t WHERE id = ?",
        np.full(n // 3, 8, dtype=np.int32),
        np.full(n // 3, 60.0),
        "cd" * 16,
    )


def naive_alarms(cand: ReleaseData, base: ReleaseData) -> set[str]:
    """The static rule: p95 up more than 10%, or the error rate up 50% or more (per group seen
    in both versions, matched by name and kind)."""
    hits = set()
    old_groups = {(g.name, g.kind): g for g in base.groups}
    for new in cand.groups:
        old = old_groups.get((new.name, new.kind))
        if old is None or not new.count or not old.count or not len(old.durations_ms):
            continue
        if not len(new.durations_ms):
            continue
        if np.quantile(new.durations_ms, 0.95) > 1.10 * np.quantile(old.durations_ms, 0.95):
            hits.add(f"latency {new.name}")
        if new.errors / new.count >= 1.5 * max(old.errors / old.count, 1e-12) and new.errors:
            hits.add(f"errors {new.name}")
    return hits


def _found(a: Analysis, s: Scenario, *, confirmed: bool) -> bool:
    want = f"GET /r{TARGET}"
    for f in a.findings:
        if f.kind != s.expect or (confirmed and f.state != "confirmed"):
            continue
        if f.span == want or f.function == CHANGE.functions[0]:
            return True
    return False


def _deploy(rng: np.random.Generator, s: Scenario) -> tuple[bool, bool, bool, bool]:
    """One deploy over the schedule: (look-1 hit, confirmed hit, any watching, naive alarm)."""
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), GROUPS))
    full = s.looks[-1]
    new, old = (
        _draw(rng, s, full, medians, True),
        _draw(rng, s, full * s.base_factor, medians, False),
    )
    previous: Analysis | None = None
    first = confirmed = watching = naive = False
    for look, n in enumerate(s.looks, start=1):
        cand, base = _release(new, n, s, True, rng), _release(old, n * s.base_factor, s, False, rng)
        a = analyse(
            cand,
            base,
            changes=[CHANGE],
            policy=POLICY,
            look=look,
            looks=len(s.looks),
            previous=previous,
        )
        previous = a
        if s.expect is None:
            confirmed |= a.verdict == "regressed"
            watching |= bool(a.watching)
            naive |= bool(naive_alarms(cand, base))
            continue
        first |= look == 1 and _found(a, s, confirmed=False)
        confirmed |= _found(a, s, confirmed=True)
        naive |= any(h.endswith(f"/r{TARGET}") for h in naive_alarms(cand, base))
    return first, confirmed, watching, naive


SCENARIOS = (
    Scenario("no change, 2% host spread"),
    Scenario("no change, 5% host spread", spread=0.05),
    Scenario("latency +5%", "latency_regression", ratio=1.05),
    Scenario("latency +10%", "latency_regression", ratio=1.10),
    Scenario("latency +15%", "latency_regression", ratio=1.15),
    Scenario("latency +20%", "latency_regression", ratio=1.20),
    Scenario("latency +50%", "latency_regression", ratio=1.50),
    Scenario("tail only: slowest 5% x1.5", "latency_regression", tail=1.5),
    Scenario("error rate 0.1% -> 0.5%", "error_rate_increase", error_rate=0.005),
    Scenario(
        "new exception type at 1%",
        "new_error_type",
        new_type_rate=0.01,
        looks=(1000, 2000, 3000, 4000),
        base_factor=2,
    ),
    Scenario("N+1 introduced", "n_plus_one", n_plus_one=True),
    Scenario("changed code reached (5%)", "code_reached", reach=0.05),
    Scenario(
        "changed code not reached", "code_not_reached", reach=0.0, looks=(150, 300, 600, 1200)
    ),
)


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    """Rows of (benchmark, figure, unit); ``postgres_admin`` is unused (no database)."""
    deploys = 20 if quick else 200
    rows: list[tuple[str, float, str]] = []
    for s in SCENARIOS:
        rng = np.random.default_rng(SCENARIOS.index(s) + 1)
        t0 = time.perf_counter()
        results = [_deploy(rng, s) for _ in range(deploys)]
        shares = [100.0 * sum(r[i] for r in results) / deploys for i in range(4)]
        label = f"{s.name}, n={'/'.join(map(str, s.looks))}"
        if s.expect is None:
            rows.append((f"false alarms (regressed verdict), {label}", shares[1], "%"))
            rows.append((f"deploys with a watching finding, {label}", shares[2], "%"))
            rows.append((f"naive p95>10%/errors+50% false alarms, {label}", shares[3], "%"))
        else:
            rows.append((f"recall at look 1, {label}", shares[0], "%"))
            rows.append((f"recall confirmed by the end, {label}", shares[1], "%"))
            if s.expect in ("latency_regression", "error_rate_increase"):
                rows.append((f"naive rule recall, {label}", shares[3], "%"))
        rows.append(
            (f"seconds per deploy (4 looks), {s.name}", (time.perf_counter() - t0) / deploys, "s")
        )
        if s is SCENARIOS[1]:
            rows += _warmup_rows(deploys=5 if quick else 40)
    return rows


# --- C3: new instances slower while they warm up, through the embedded backend ----------------

DEPLOY = datetime(2026, 11, 24, 10, tzinfo=UTC)
#: Spans per minute per group and version; the looks at +15 min / +30 min / +1 h / +2 h then hold
#: 150 / 300 / 600 / 1,200 spans per group and version. Fewer groups than the other scenarios:
#: every span goes through OTLP/JSON decoding, SQLite and the aggregator.
RATE, C3_GROUPS = 10, 5
C3_LOOKS = (timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2))
SLOWDOWN, WARMUP = 2.0, timedelta(minutes=5)


def _otlp_json(service: str, version: str, starts_s: np.ndarray, ms: np.ndarray,
               groups: np.ndarray, ids: np.ndarray) -> bytes:  # fmt: skip
    """One OTLP/JSON export: a SERVER span per entry, one resource per instance."""
    base_ns = int(DEPLOY.timestamp()) * 1_000_000_000
    begin = base_ns + (starts_s * 1e9).astype(np.int64)
    end = begin + (ms * 1e6).astype(np.int64)
    resources = []
    for instance in range(INSTANCES):
        attributes = {"service.name": service, "service.version": version,
                      "service.instance.id": f"{version}-{instance}"}  # fmt: skip
        spans = [
            {
                "traceId": f"{i + 1:032x}",
                "spanId": f"{i + 1:016x}",
                "name": f"GET /r{g}",
                "kind": 2,
                "startTimeUnixNano": str(b),
                "endTimeUnixNano": str(e),
                "attributes": [{"key": "http.route", "value": {"stringValue": f"/r{g}"}}],
            }
            for i, g, b, e in zip(
                *(np.flatnonzero(ids == instance), groups[ids == instance]),
                begin[ids == instance],
                end[ids == instance],
                strict=True,
            )  # fmt: skip
        ]
        resource = {"attributes": [{"key": k, "value": {"stringValue": v}}
                                   for k, v in attributes.items()]}  # fmt: skip
        resources.append({"resource": resource, "scopeSpans": [{"spans": spans}]})
    return orjson.dumps({"resourceSpans": resources})


def _c3_version(
    rng: np.random.Generator, medians: np.ndarray, start_s: float, warming: bool
) -> tuple[np.ndarray, ...]:
    """Start times (s from the deploy), durations, groups and instances of one version."""
    n = RATE * int(C3_LOOKS[-1].total_seconds() // 60) - int(start_s // 60) * RATE
    starts = np.concatenate(
        [np.sort(rng.uniform(start_s, C3_LOOKS[-1].total_seconds(), n)) for _ in medians]
    )
    groups = np.repeat(np.arange(medians.size), n)
    ids = rng.integers(0, INSTANCES, starts.size)
    offsets = rng.normal(0.0, 0.02, INSTANCES)
    ms = medians[groups] * rng.lognormal(0.0, SIGMA, starts.size) * np.exp(offsets[ids])
    if warming:
        first = {i: starts[ids == i].min() for i in range(INSTANCES)}
        warm = starts < np.array([first[i] for i in ids]) + WARMUP.total_seconds()
        ms = np.where(warm, ms * SLOWDOWN, ms)
    return starts, ms, groups, ids


def _c3_deploy(backend: EmbeddedBackend, service: str, rng: np.random.Generator) -> list[int]:
    """One C3 deploy over the looks: [regressed with warm-up, watching, regressed without, spans
    left out]."""
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), C3_GROUPS))
    # The baseline's instances were serving long before the deploy: no warm-up in its spans.
    for version, start, warming in (("1.0", -900.0, False), ("1.1", 0.0, True)):
        body = _otlp_json(service, version, *_c3_version(rng, medians, start, warming))
        backend.ingest(body, "application/json", None)
    out = [0, 0, 0, 0]
    previous: dict[bool, Analysis | None] = {True: None, False: None}
    for look, after in enumerate(C3_LOOKS, start=1):
        end = DEPLOY + after
        base = backend.collect(SpanQuery(service, "1.0", DEPLOY - timedelta(hours=24), end))
        for warm in (True, False):
            query = SpanQuery(service, "1.1", DEPLOY, end, warmup=WARMUP if warm else timedelta(0))
            cand = backend.collect(query)
            a = analyse(cand, base, changes=(), policy=POLICY, look=look,
                        looks=len(C3_LOOKS), previous=previous[warm])  # fmt: skip
            previous[warm] = a
            if warm:
                out[0] |= a.verdict == "regressed"
                out[1] |= bool(a.watching)
                out[3] = a.warmup_excluded
            else:
                out[2] |= a.verdict == "regressed"
    return out


def _warmup_rows(deploys: int) -> list[tuple[str, float, str]]:
    """C3's rows: false alarms with and without the warm-up exclusion, and spans left out."""
    rng = np.random.default_rng(303)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'c3.db'}")
        migrate(engine)
        backend = EmbeddedBackend(make_sessions(engine))
        results = [_c3_deploy(backend, f"c3-{i}", rng) for i in range(deploys)]
        engine.dispose()
    share = [100.0 * sum(r[i] for r in results) / deploys for i in range(3)]
    sizes = "/".join(str(RATE * int(t.total_seconds() // 60)) for t in C3_LOOKS)
    label = f"C3 new instances 2x slower for 5 min, n={sizes}"
    return [
        (f"false alarms (regressed verdict), {label}", share[0], "%"),
        (f"deploys with a watching finding, {label}", share[1], "%"),
        (f"false alarms without warm-up exclusion, {label}", share[2], "%"),
        (
            f"spans left out as warm-up per deploy (last look), {label}",
            float(np.mean([r[3] for r in results])),
            "spans",
        ),
        (
            "seconds per deploy (4 looks, embedded backend), C3",
            (time.perf_counter() - t0) / deploys,
            "s",
        ),
    ]


if __name__ == "__main__":
    import sys

    for name, value, unit in run("", quick="--quick" in sys.argv):
        print(f"{name:<90} {value:>8.2f} {unit}")
