"""Recall and false alarms in a service with many routes, for each detection choice side by side.

Issue 14's setting: a service with 13 routes whose traffic shares run from 31% to 0.8%; the
changed route (``GET /r2``) has 12% of the requests, about 330 new spans at the first look
against 720 baseline spans. Latency is log-normal (σ = 0.55) with route medians log-uniform on
5-200 ms; 3 or 4 instances (pods) a version, each with a log-latency offset of sd 2% or 5%
(the host spread) shared by every route; 0.2% of requests fail with four exception types spread
over the routes (as in :mod:`benchmarks.new_types`). Warm-up exclusion is off. The looks are at
+30 min, +1 h, +2 h and +4 h (the schedule's four looks, compressed as in
:mod:`benchmarks.detection_sdk`): 330 / 660 / 1,320 / 2,640 new spans on the changed route
against its 720 baseline spans from the 65 minutes before the deploy.

Every span is made by the real OpenTelemetry SDK (one ``TracerProvider`` per pod), exported as
OTLP protobuf into the embedded store and read back with the check's queries, once per deploy
and look. Each *choice* (a ``DetectionPolicy``) then analyses the same ReleaseData, so the
choices are compared on the same deploys (paired). Per cell (pods × spread) and choice:

* recall at look 1: a latency regression on the changed route at the first look, watching or
  confirmed; ``conf@1``: confirmed at the first look (it makes the verdict then);
* recall by the end: confirmed at some look of the four;
* false alarms: no-change deploys with any alarm-level finding at any look (what
  ``feedbot.digest.blocks.is_alarm`` broadcasts: a confirmed regression, or a new exception
  type whose test passed); ``watch``: no-change deploys with a watching finding.

The "history K" choices are the default policy with the host spread pooled from K earlier
no-change releases of the same service (``host_guard.history_checks``): each with the same pods
count and spread on fresh pods, the newest one's new version being the deploy's baseline on the
same pods (so it is counted once), their last check's τ̂ drawn directly (:func:`_history`), from a
generator of their own so that the deploys are those the other choices see.

``--explain`` also prints, for main's policy before the confirmation boundary ("main x20 + CI")
at look 1 on the +20% deploys, which gate the changed route's latency test failed (see
:func:`explain`), to show where the power went.

    python -m benchmarks.detection_many [--quick] [--deploys N] [--workers N] [--explain]
        [--sdk] [--only CELL-TEXT] [--choices NAME,NAME] [--alarms]

``--quick`` compares "main x20 + CI" with the default; ``--choices`` picks others.

``--sdk`` sends every span through the SDK and the store (about 10 s a deploy); without it the
same requests become ReleaseData directly (the groups, durations, pods and exception counts the
store returns), which is what the analysis reads. ``--quick`` (25 deploys a cell, two choices)
takes about 2 minutes on two cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind, Status, StatusCode

from feedbot.analysis import detectors, stats
from feedbot.analysis.compare import Analysis, analyse
from feedbot.analysis.detectors import Pair, TauHistory, TauRecord, tau_history
from feedbot.analysis.look import host_spread
from feedbot.analysis.report import finding_json
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.digest.blocks import is_alarm
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ExceptionSeen, ReleaseData, SpanGroupStats, SpanQuery
from feedbot.store.db import make_engine, make_sessions, migrate
from tests.fakes.sdk_spans import recording

#: Traffic shares of the 13 routes (a long tail, as a real service's); route 2 is changed.
SHARES = np.array(
    [0.31, 0.18, 0.12, 0.09, 0.07, 0.055, 0.045, 0.035, 0.03, 0.022, 0.015, 0.012, 0.008]
)
TARGET = 2
SIGMA = 0.55
#: Requests per minute to the whole service: 11 a minute (330 in 30 min) on the changed route.
RATE = 11.0 / SHARES[TARGET]
DEPLOY = datetime(2026, 11, 24, 10, tzinfo=UTC)
LOOKS = (timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2), timedelta(hours=4))
#: The previous version served this long before the deploy: 720 spans on the changed route.
BASELINE_SPAN = timedelta(minutes=65)
ERROR_RATE = 0.002
ERROR_TYPES: tuple[type[Exception], ...] = (
    TimeoutError,
    ConnectionResetError,
    ValueError,
    PermissionError,
)
ERROR_MIX = np.array([0.55, 0.3, 0.15])
BATCH = 2_000


def _policy(
    *, across: bool = True, guard: bool = True, t_ref: bool = False, **looks: object
) -> DetectionPolicy:
    """A choice; unless said otherwise, main's before issue 14's families and t reference."""
    base = DetectionPolicy()
    looks = {"improvements_apart": False, "screen_discrete": False, **looks}
    return replace(
        base,
        looks=replace(base.looks, **looks),  # type: ignore[arg-type]
        host_guard=replace(
            base.host_guard, across_groups=across, enabled=guard, satterthwaite=t_ref
        ),
    )


def _upper(level: float, *, t_ref: bool = False) -> DetectionPolicy:
    """The default with τ replaced by its upper confidence bound at ``level`` (0: τ̂) at any
    number of pods (the default bounds it only at 2 a version, 2 degrees of freedom)."""
    base = DetectionPolicy()
    guard = replace(base.host_guard, tau_upper=level, tau_upper_max_dof=10**6, satterthwaite=t_ref)
    return replace(base, host_guard=guard)


#: What main did before issue 14: τ̂ per group, then pooled; confirmation at once only 100x
#: below the level (with the effect's CI above the floor).
TODAY = _policy(across=False, overwhelming_factor=100.0, confirm_alpha=0.0)
#: Main before the spending boundary: τ̂ across groups; confirmation at once 20x below the level
#: with the effect's CI above the floor (the §9 "overwhelming" rule).
MAIN = _policy(overwhelming_factor=20.0, confirm_alpha=0.0)
#: The choices compared. "today" is main before issue 14, "main x20 + CI" main before the
#: confirmation boundary; the diagnostic ones switch one factor off to measure what it costs;
#: the others are candidate changes ("Pocock 3%": confirmation at once within a 3% budget spent
#: over the looks with Pocock's function). "main" is the default before issue 14's three
#: choices: improvements in a BH family of their own ("+ improvements apart", off by
#: default), Tarone's screen of error tests that cannot pass ("+ Tarone screen", on) and a t
#: reference for τ̂'s degrees of freedom ("+ t for tau", off); "default" is
#: ``DetectionPolicy()``: Pocock 1.5% with Tarone's screen.
CHOICES: dict[str, DetectionPolicy] = {
    "today": TODAY,
    "today + no look split (q=0.05 each look)": _policy(
        across=False, fdr_q=0.2, overwhelming_factor=100.0, confirm_alpha=0.0
    ),
    "today + confirm at once x1": _policy(across=False, overwhelming_factor=1.0, confirm_alpha=0.0),
    "today + no host guard": _policy(guard=False, overwhelming_factor=100.0, confirm_alpha=0.0),
    "tau across groups": _policy(overwhelming_factor=100.0, confirm_alpha=0.0),
    "main x20 + CI": MAIN,
    "O'Brien-Fleming 1.5%": _policy(confirm_spending="obrien_fleming"),
    "Pocock 0.75%": _policy(confirm_alpha=0.0075),
    "Pocock 3%": _policy(confirm_alpha=0.03),
    "main": _policy(),
    "+ improvements apart": _policy(improvements_apart=True),
    "+ Tarone screen": _policy(screen_discrete=True),
    "+ t for tau": _policy(t_ref=True),
    "apart + Tarone": _policy(improvements_apart=True, screen_discrete=True),
    "default": DetectionPolicy(),
    "tau bound 50%": _upper(0.5),
    "tau bound 75%": _upper(0.75),
    "tau bound 90%": _upper(0.9),
    "tau bound 75% + t": _upper(0.75, t_ref=True),
    "history 5": DetectionPolicy(),
    "history 10": DetectionPolicy(),
}
#: Choices that pool τ̂ with this many earlier no-change releases of the service (the
#: default policy, ``host_guard.history_checks``), drawn per deploy (see :func:`_history`).
HISTORY: dict[str, int] = {"history 5": 5, "history 10": 10}


@dataclass(frozen=True)
class Cell:
    """One setting: pods a version, host spread, and the changed route's latency ratio."""

    pods: int
    spread: float
    ratio: float

    @property
    def name(self) -> str:
        change = "no change" if self.ratio == 1.0 else f"+{round(100 * (self.ratio - 1))}%"
        return f"{change}, {self.pods} pods, {self.spread:.0%} spread"


CELLS = tuple(
    Cell(pods, spread, ratio) for ratio in (1.2, 1.0) for pods in (3, 4) for spread in (0.02, 0.05)
)


def _requests(
    rng: np.random.Generator,
    cell: Cell,
    medians: np.ndarray,
    new: bool,
    offsets: np.ndarray | None = None,
    ratio: float | None = None,
) -> dict[str, np.ndarray]:
    """One version's requests: start (s from the deploy), route, pod, ms, error type (-1: none),
    and its pods' log-latency offsets (drawn unless given: the same pods serving again)."""
    seconds = (LOOKS[-1] if new else BASELINE_SPAN).total_seconds()
    n = rng.poisson(RATE * seconds / 60)
    start = rng.uniform(0.0, seconds, n) - (0.0 if new else seconds)
    route = rng.choice(SHARES.size, n, p=SHARES / SHARES.sum())
    pod = rng.integers(0, cell.pods, n)
    if offsets is None:
        offsets = rng.normal(0.0, cell.spread, cell.pods)
    logs = np.log(medians[route]) + rng.standard_normal(n) * SIGMA + offsets[pod]
    if new:
        change = cell.ratio if ratio is None else ratio
        logs += np.where(route == TARGET, np.log(change), 0.0)
    picked = np.searchsorted(np.cumsum(ERROR_MIX), rng.random(n) * ERROR_MIX.sum(), side="right")
    kind = (np.minimum(picked, ERROR_MIX.size - 1) + route) % len(ERROR_TYPES)
    kind = np.where(rng.random(n) < ERROR_RATE, kind, -1)
    out = {"start": start, "route": route, "pod": pod, "ms": np.exp(logs), "error": kind}
    return {**out, "offsets": offsets}


def _ns(seconds: float) -> int:
    return int((DEPLOY.timestamp() + seconds) * 1e9)


def _export(backend: EmbeddedBackend, service: str, version: str, r: dict[str, np.ndarray]) -> None:
    """Make a version's SERVER spans with the SDK, one provider per pod; ingest them as OTLP."""
    for pod in np.unique(r["pod"]).tolist():
        resource = {
            "service.name": service,
            "service.version": version,
            "service.instance.id": f"{version}-{pod}",
            "deployment.environment.name": "production",
        }
        with recording(resource, "benchmarks.detection_many") as (tracer, finished):
            for i in np.flatnonzero(r["pod"] == pod).tolist():
                route, start = int(r["route"][i]), _ns(float(r["start"][i]))
                span = tracer.start_span(
                    f"GET /r{route}",
                    kind=SpanKind.SERVER,
                    start_time=start,
                    attributes={"http.route": f"/r{route}", "http.request.method": "GET"},
                )
                if r["error"][i] >= 0:
                    span.record_exception(
                        ERROR_TYPES[int(r["error"][i])]("upstream"), timestamp=start
                    )
                    span.set_status(Status(StatusCode.ERROR))
                span.end(end_time=start + int(float(r["ms"][i]) * 1e6))
        for at in range(0, len(finished), BATCH):
            body = encode_spans(finished[at : at + BATCH]).SerializeToString()
            backend.ingest(body, "application/x-protobuf", None)


def _direct(r: dict[str, np.ndarray], version: str, upto: float | None) -> ReleaseData:
    """The ReleaseData the store returns for these requests (started before ``upto``), drawn
    directly: the same groups, durations, pods and exception counts, without the SDK."""
    keep = np.ones(r["start"].size, bool) if upto is None else r["start"] < upto
    groups = []
    for g in range(SHARES.size):
        mine = keep & (r["route"] == g)
        errors = r["error"][mine]
        seen = tuple(
            ExceptionSeen(ERROR_TYPES[k].__name__, int((errors == k).sum()), "upstream", "ab" * 16)
            for k in range(len(ERROR_TYPES))
            if (errors == k).any()
        )
        groups.append(
            SpanGroupStats(
                f"GET /r{g}",
                "SERVER",
                int(mine.sum()),
                int((errors >= 0).sum()),
                r["ms"][mine],
                r["pod"][mine].astype(np.int32),
                tuple(f"{version}-{i}" for i in range(int(r["pod"].max()) + 1)),
                seen,
                callers=(("(root)", int(mine.sum())),),
            )
        )
    return ReleaseData(groups=groups, traces=int(keep.sum()))


@dataclass(frozen=True)
class Drawn:
    """One deploy's four looks, and what its service's earlier releases need to share."""

    looks: list[tuple[ReleaseData, ReleaseData]]
    medians: np.ndarray
    base_offsets: np.ndarray


def _direct_looks(rng: np.random.Generator, cell: Cell) -> Drawn:
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), SHARES.size))
    old, new = (_requests(rng, cell, medians, new) for new in (False, True))
    base = _direct(old, "1.0", None)
    looks = [(_direct(new, "1.1", after.total_seconds()), base) for after in LOOKS]
    return Drawn(looks, medians, old["offsets"])


def _history(rng: np.random.Generator, cell: Cell, drawn: Drawn, releases: int) -> list[TauRecord]:
    """The τ̂ that the last checks (+4 h) of ``releases`` earlier no-change releases recorded.

    Release j compared version 0.j with 0.(j−1) on fresh pods of the same spread; the newest
    one's new version is this deploy's baseline 1.0, served by the same pods (its offsets), as
    in a real service, so :func:`tau_history` counts those pods once. Drawn directly (no SDK).
    Newest first, as the store returns them.
    """
    names = [f"0.{j}" for j in range(releases)] + ["1.0"]
    offsets = [rng.normal(0.0, cell.spread, cell.pods) for _ in range(releases)]
    offsets.append(drawn.base_offsets)
    policy = DetectionPolicy()
    records = []
    for j in range(1, releases + 1):
        old = _requests(rng, cell, drawn.medians, False, offsets[j - 1])
        new = _requests(rng, cell, drawn.medians, True, offsets[j], ratio=1.0)
        cand, base = _direct(new, names[j], None), _direct(old, names[j - 1], None)
        pairs = {g.name: g for g in base.groups}
        hosts = host_spread([Pair(g.name, g.kind, g, pairs[g.name]) for g in cand.groups], policy)
        parts = tuple(
            (name, part)
            for name, part in zip((names[j], names[j - 1]), hosts.parts, strict=True)
            if part is not None
        )
        records.append(TauRecord(names[j], parts))
    return records[::-1]


@dataclass
class Outcome:
    """What one deploy's four looks said under one choice."""

    first: bool = False  # latency regression on the changed route at look 1, any state
    first_confirmed: bool = False  # ... confirmed at look 1
    confirmed: bool = False  # ... confirmed at some look
    alarm: bool = False  # any alarm-level finding at any look
    watching: bool = False  # any watching finding at any look
    alarms: set[str] = field(default_factory=set)  # the alarm-level findings' kinds
    set_aside: bool = False  # the history was set aside at some look (the F test)


@dataclass
class Deploy:
    """One deploy's outcome per choice, and (for today) why look 1 missed, if it did."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    gate: str = ""


def _hit(a: Analysis, *, confirmed: bool) -> bool:
    return any(
        f.kind == "latency_regression"
        and f.span == f"GET /r{TARGET}"
        and (f.state == "confirmed" or not confirmed)
        for f in a.findings
    )


def _score(
    looks: list[tuple[ReleaseData, ReleaseData]],
    policy: DetectionPolicy,
    history: TauHistory | None = None,
) -> Outcome:
    out, previous = Outcome(), None
    for look, (cand, base) in enumerate(looks, start=1):
        a = analyse(
            cand,
            base,
            changes=(),
            policy=policy,
            look=look,
            looks=len(looks),
            previous=previous,
            tau_history=history,
        )
        previous = a
        if look == 1:
            out.first = _hit(a, confirmed=False)
            out.first_confirmed = _hit(a, confirmed=True)
        out.confirmed |= _hit(a, confirmed=True)
        alarms = {f.kind for f in a.findings if is_alarm(finding_json(f))}
        out.alarm |= bool(alarms)
        out.alarms |= alarms
        out.set_aside |= any(line.startswith("This check's instances") for line in a.summary)
        out.watching |= bool(a.watching)
    return out


def explain(cand: ReleaseData, base: ReleaseData, policy: DetectionPolicy) -> str:
    """Which gate the changed route's latency test fails at this look, first failing first.

    ``floor``: r̂ below the floor the host spread raised; ``level``: p above what a lone
    finding needs (q/m) with the host term; ``level (host term)``: it would pass without the
    host term in p; ``overwhelming p``: found, but p not ``overwhelming_factor`` times below
    the threshold; ``overwhelming CI``: found, p small enough, but the r̂ CI reaches below the
    floor; ``confirmed``: none.
    """
    pairs = {g.name: g for g in base.groups}
    new = next(g for g in cand.groups if g.name == f"GET /r{TARGET}")
    pair = Pair(new.name, new.kind, new, pairs[new.name])
    all_pairs = [Pair(g.name, g.kind, g, pairs.get(g.name)) for g in cand.groups]
    hosts = host_spread(all_pairs, policy)
    floor = detectors.latency_floor(pair, policy, hosts)
    cand_up = detectors.latency_candidates(pair, policy, hosts, floor)[0]
    m = _family_size(all_pairs, policy)
    threshold = stats.bonferroni(policy.looks.fdr_q, len(LOOKS)) / m
    plain = replace(hosts, tau=None)
    p_plain = detectors.latency_candidates(pair, policy, plain, floor)[0].p
    if not cand_up.passes:
        return "floor" if floor > policy.latency.ratio_floor else "base floor 1.10"
    if cand_up.p > threshold:
        return "level (host term)" if p_plain <= threshold else "level"
    if cand_up.p > threshold / policy.looks.overwhelming_factor:
        return "overwhelming p"
    return "confirmed" if cand_up.strong else "overwhelming CI"


def _family_size(pairs: list[Pair], policy: DetectionPolicy) -> int:
    from feedbot.analysis.look import LookTests

    run = LookTests(policy, 0.0125, host_spread(pairs, policy))
    family = []
    for pair in pairs:
        if pair.new is not None and pair.base is not None:
            family += run._group_candidates(pair)
    return len(family)


def _sdk_looks(
    backend: EmbeddedBackend, service: str, cell: Cell, rng: np.random.Generator
) -> Drawn:
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), SHARES.size))
    old = _requests(rng, cell, medians, False)
    _export(backend, service, "1.0", old)
    _export(backend, service, "1.1", _requests(rng, cell, medians, True))
    base = backend.collect(
        SpanQuery(service, "1.0", DEPLOY - timedelta(hours=24), DEPLOY, environment="production")
    )
    looks = [
        (
            backend.collect(
                SpanQuery(service, "1.1", DEPLOY, DEPLOY + after, environment="production")
            ),
            base,
        )
        for after in LOOKS
    ]
    return Drawn(looks, medians, old["offsets"])


def _deploy(
    drawn: Drawn, cell: Cell, choices: dict[str, DetectionPolicy], rng: np.random.Generator
) -> Deploy:
    """Every choice on the same deploy; the history choices also on the same earlier releases
    (drawn from their own generator, so the deploys are those the other choices see without)."""
    most = max((HISTORY.get(name, 0) for name in choices), default=0)
    records = _history(rng, cell, drawn, most) if most else []
    out = Deploy(
        {
            name: _score(
                drawn.looks,
                policy,
                tau_history("many", records[: HISTORY[name]], {"1.0", "1.1"})
                if name in HISTORY
                else None,
            )
            for name, policy in choices.items()
        }
    )
    if cell.ratio != 1.0:
        out.gate = explain(*drawn.looks[0], MAIN)
    return out


def _cell(job: tuple[int, int, int, tuple[str, ...], bool]) -> tuple[Cell, list[Deploy]]:
    number, deploys, seed, names, sdk = job
    cell = CELLS[number]
    choices = {name: CHOICES[name] for name in names}
    rng = np.random.default_rng(seed + number)
    earlier = [np.random.default_rng([seed, number, d]) for d in range(deploys)]
    if not sdk:
        draws = [_direct_looks(rng, cell) for _ in range(deploys)]
        return cell, [_deploy(d, cell, choices, h) for d, h in zip(draws, earlier, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'many.db'}")
        migrate(engine)
        backend = EmbeddedBackend(make_sessions(engine))
        results = [
            _deploy(_sdk_looks(backend, f"many-{number}-{d}", cell, rng), cell, choices, h)
            for d, h in enumerate(earlier)
        ]
        engine.dispose()
    return cell, results


def _pct(flags: list[bool]) -> str:
    n, hits = len(flags), sum(flags)
    if hits == 0:
        return f"0/{n} (≤{100 * (1 - 0.05 ** (1 / n)):.0f}%)"
    return f"{hits}/{n} ({100 * hits / n:.0f}%)"


def table(results: list[tuple[Cell, list[Deploy]]], names: tuple[str, ...]) -> list[str]:
    """One row per choice and pod/spread setting: recall beside false alarms."""
    by = {(c.pods, c.spread, c.ratio): d for c, d in results}
    head = ("choice", "pods", "spread", "found@1", "conf@1", "conf by end", "false alarms", "watch")
    rows = [head]
    for name in names:
        for pods in (3, 4):
            for spread in (0.02, 0.05):
                hit = [d.outcomes[name] for d in by.get((pods, spread, 1.2), [])]
                null = [d.outcomes[name] for d in by.get((pods, spread, 1.0), [])]
                rows.append(
                    (
                        name,
                        str(pods),
                        f"{spread:.0%}",
                        _pct([o.first for o in hit]) if hit else "-",
                        _pct([o.first_confirmed for o in hit]) if hit else "-",
                        _pct([o.confirmed for o in hit]) if hit else "-",
                        _pct([o.alarm for o in null]) if null else "-",
                        _pct([o.watching for o in null]) if null else "-",
                    )
                )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def alarm_kinds(results: list[tuple[Cell, list[Deploy]]], names: tuple[str, ...]) -> list[str]:
    """Per no-change cell and choice: the kinds of the alarms raised, and in how many deploys
    the history was set aside (the infrastructure looked changed: a false switch here)."""
    lines = []
    for cell, deploys in results:
        if cell.ratio != 1.0:
            continue
        for name in names:
            counts: dict[str, int] = {}
            for d in deploys:
                for kind in d.outcomes[name].alarms:
                    counts[kind] = counts.get(kind, 0) + 1
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            aside = sum(d.outcomes[name].set_aside for d in deploys)
            lines.append(f"{cell.name}, {name}: alarms {kinds}; history set aside in {aside}")
    return lines


def gates(results: list[tuple[Cell, list[Deploy]]]) -> list[str]:
    """Today's policy at look 1 on the +20% deploys: how many stopped at each gate."""
    lines = []
    for cell, deploys in results:
        if cell.ratio == 1.0:
            continue
        counts: dict[str, int] = {}
        for d in deploys:
            counts[d.gate] = counts.get(d.gate, 0) + 1
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append(f"{cell.name}: {parts}")
    return lines


def main() -> None:
    """``python -m benchmarks.detection_many [--quick] [--deploys N] [--workers N]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="25 deploys per cell, main x20 + CI against the default",
    )
    parser.add_argument("--deploys", type=int, default=100, help="deploys per cell")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=1400, help="another seed, other deploys")
    parser.add_argument("--choices", help="comma-separated choice names (default: all)")
    parser.add_argument("--sdk", action="store_true", help="spans through the SDK and the store")
    parser.add_argument("--only", help="cells whose name contains this text (e.g. '3 pods')")
    parser.add_argument(
        "--explain", action="store_true", help="print main x20 + CI's gates at look 1"
    )
    parser.add_argument(
        "--alarms",
        action="store_true",
        help="print the no-change alarms' kinds, and how often the history was set aside",
    )
    args = parser.parse_args()
    deploys = 25 if args.quick else args.deploys
    default = ("main x20 + CI", "default") if args.quick else tuple(CHOICES)
    names = tuple(args.choices.split(",")) if args.choices else default
    jobs = [
        (n, deploys, args.seed, names, args.sdk)
        for n, cell in enumerate(CELLS)
        if not args.only or args.only in cell.name
    ]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = list(pool.imap(_cell, jobs))
    print("\n".join(table(results, names)))
    print(
        "(found@1: a latency regression on the changed route at look 1, watching or confirmed; "
        "conf@1: confirmed then; false alarms: no-change deploys with an alarm-level finding at "
        "any of the 4 looks; ≤x% is the 95% upper bound at 0 hits)"
    )
    if args.explain:
        print("\n".join(gates(results)))
    if args.alarms:
        print("\n".join(alarm_kinds(results, names)))


if __name__ == "__main__":
    main()
