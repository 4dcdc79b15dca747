"""Insights beyond the per-group tests: did the changed code run, N+1 queries, bottlenecks.

* **Changed code reached** (§7.5): the release's changed functions and files + line ranges are
  matched against the spans' ``code.*`` attributes (both semantic-convention generations are
  folded into :class:`~feedbot.backends.base.CodeSeen` by the backend). "Not reached" is claimed
  only with enough requests (rule of three: the reach rate is below ≈3/N), and "stopped being
  reached" only when the exact conditional test against the baseline's reach says so.
* **N+1** (anchors.md, Sentry's detector): the same normalised statement repeated ≥ 5 times,
  totalling ≥ 50 ms, under one parent in a trace; reported when new in this version or worse
  than the baseline.
* **Bottleneck**: which child group owns most of a parent's time, estimated from per-group
  aggregates (see :func:`bottlenecks` for the approximation).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from feedbot.analysis import stats
from feedbot.analysis.findings import Effect, Finding, Measure, percent
from feedbot.analysis.policy import DetectionPolicy
from feedbot.backends.base import CodeSeen, ReleaseData, RepeatedStatement, SpanGroupStats
from feedbot.releases.event import Change

ReachStatus = Literal["reached", "not_reached", "stopped", "not_yet", "unknown"]
#: Digma's bottleneck rule: a child owning at least 30% of its parent's time.
BOTTLENECK_SHARE = 0.30
#: "Worse than baseline" for N+1: the share of parent requests with the pattern grew this much.
N_PLUS_ONE_WORSE = 1.5


@dataclass(frozen=True, slots=True)
class CodeReach:
    """Whether one changed function (or file) ran in the new version.

    Attributes:
        function: The changed function, None for a file-level change.
        file: The changed file.
        status: reached | not_reached | stopped | not_yet | unknown (no code attributes).
        hits: Spans in the new version that ran it.
        requests: Requests that could have reached it (its routes' traffic, else the service's).
        hits_base: Spans in the baseline that ran it.
        spans: Groups where it ran.
        bound: 95% upper bound on the reach rate when it was not reached.
        p_value: The "stopped being reached" p-value, when tested.
    """

    function: str | None
    file: str | None
    status: ReachStatus
    hits: int
    requests: int
    hits_base: int = 0
    spans: tuple[str, ...] = ()
    bound: float | None = None
    p_value: float | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    function: str | None
    file: str | None
    lines: tuple[tuple[int, int], ...]


def code_reach(
    changes: Sequence[Change],
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    policy: DetectionPolicy,
) -> tuple[tuple[CodeReach, ...], list[Finding]]:
    """Match each changed function (or file + lines) against both versions' code attributes.

    Args:
        changes: The release's changes.
        candidate: The new version's spans.
        baseline: The baseline's spans, if any.
        policy: ``reach`` thresholds and switch.

    Returns:
        One :class:`CodeReach` per target, and the findings to report.
    """
    if not policy.reach.enabled:
        return (), []
    targets = [t for change in changes for t in _targets(change)]
    known = any(g.code for g in candidate.groups)
    results = tuple(_reach(t, candidate, baseline, policy, known=known) for t in targets)
    return results, [f for r in results if (f := _reach_finding(r, policy)) is not None]


def _targets(change: Change) -> list[_Target]:
    if change.functions:
        return [_Target(f, change.file, change.lines) for f in change.functions]
    return [_Target(None, change.file, change.lines)] if change.file else []


def _norm_function(name: str) -> str:
    return name.replace("::", ".").replace(":", ".").replace("/", ".").strip(".")


def _norm_path(path: str) -> str:
    return path.replace("\\", "/").removeprefix("./").strip("/")


def _same_function(wanted: str, seen: str) -> bool:
    """Qualified names match when equal or one is a dotted suffix of the other."""
    w, s = _norm_function(wanted), _norm_function(seen)
    return w == s or s.endswith("." + w) or w.endswith("." + s)


def _same_file(wanted: str, seen: str) -> bool:
    """Repository paths match span paths that are absolute or relative to another root."""
    w, s = _norm_path(wanted), _norm_path(seen)
    return w == s or s.endswith("/" + w) or w.endswith("/" + s)


def matches(target: _Target, seen: CodeSeen) -> bool:
    """Whether a code location recorded on spans belongs to a changed function or lines."""
    if target.function and seen.function and _same_function(target.function, seen.function):
        return True
    if not (target.file and seen.filepath and _same_file(target.file, seen.filepath)):
        return False
    if not target.lines:
        return target.function is None
    return seen.lineno is not None and any(lo <= seen.lineno <= hi for lo, hi in target.lines)


def _hits(target: _Target, data: ReleaseData | None) -> dict[str, int]:
    """Spans that ran the target, per group name."""
    out: dict[str, int] = {}
    for group in data.groups if data is not None else ():
        count = sum(seen.count for seen in group.code if matches(target, seen))
        if count:
            out[group.name] = out.get(group.name, 0) + count
    return out


def requests(data: ReleaseData) -> int:
    """Requests a release served: traces when known, else entry spans, else the busiest group."""
    if data.traces > 0:
        return data.traces
    entries = sum(
        n for g in data.groups for caller, n in g.callers if caller in ("(root)", "(remote)")
    )
    return entries or max((g.count for g in data.groups), default=0)


def _route_traffic(names: Collection[str], data: ReleaseData | None) -> int:
    return sum(g.count for g in data.groups if g.name in names) if data is not None else 0


def _reach(
    target: _Target,
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    policy: DetectionPolicy,
    *,
    known: bool,
) -> CodeReach:
    new, base = _hits(target, candidate), _hits(target, baseline)
    hits, hits_base = sum(new.values()), sum(base.values())
    if hits:
        traffic = _route_traffic(new, candidate) or requests(candidate)
        return CodeReach(
            target.function, target.file, "reached", hits, traffic, hits_base, tuple(new)
        )
    if not known:
        return CodeReach(target.function, target.file, "unknown", 0, requests(candidate), hits_base)
    n_new = _route_traffic(base, candidate) or requests(candidate)
    if n_new <= 0:
        return CodeReach(target.function, target.file, "not_yet", 0, 0, hits_base)
    n_base = _route_traffic(base, baseline) or (requests(baseline) if baseline else 0)
    test = stats.reach_test(0, n_new, hits_base, n_base, level=policy.reach.bound_level)
    if test.p_stopped is not None and test.p_stopped < policy.reach.stopped_alpha:
        status: ReachStatus = "stopped"
    else:
        status = "not_reached" if n_new >= policy.reach.min_requests else "not_yet"
    return CodeReach(
        target.function,
        target.file,
        status,
        0,
        n_new,
        hits_base,
        (),
        test.upper_bound,
        test.p_stopped,
    )


def _reach_finding(reach: CodeReach, policy: DetectionPolicy) -> Finding | None:
    if reach.status == "unknown":
        return None
    name = reach.function or reach.file or "changed code"
    bound = f"reach rate below {reach.bound:.2%} (95% bound)" if reach.bound is not None else ""
    where = ", ".join(reach.spans[:3]) + (" and more" if len(reach.spans) > 3 else "")
    texts: dict[ReachStatus, tuple[str, str]] = {
        "reached": (f"{name} ran in {reach.hits} spans ({where})", "match on code.* attributes"),
        "stopped": (
            f"{name} stopped being reached: 0 of {reach.requests} requests ran it, the baseline "
            f"ran it {reach.hits_base} times; {bound}; p={reach.p_value or 0:.2g}",
            "exact conditional test against the baseline's reach",
        ),
        "not_reached": (
            f"{name} has not run in {reach.requests} requests: {bound}",
            "rule of three (exact bound)",
        ),
        "not_yet": (
            f"{name} has not run yet in {reach.requests} requests; feedbot says 'not reached' "
            f"only after {policy.reach.min_requests}",
            "rule of three",
        ),
    }
    message, method = texts[reach.status]
    missed = reach.status in ("stopped", "not_reached")
    return Finding(
        kind="code_reached"
        if reach.status == "reached"
        else "code_not_reached"
        if missed
        else "low_traffic",
        severity="medium" if missed else "info",
        message=message,
        function=reach.function,
        file=reach.file,
        baseline=Measure(0, float(reach.hits_base), "count"),
        candidate=Measure(reach.requests, float(reach.hits), "count"),
        change=Effect(None, 0.0, reach.bound) if missed else None,
        p_value=reach.p_value if reach.status == "stopped" else None,
        method=method,
    )


def reach_sentence(reach: Sequence[CodeReach]) -> str | None:
    """One sentence on the changed code for the summary, None when the release listed none."""
    if not reach:
        return None
    if all(r.status == "unknown" for r in reach):
        return (
            "Changed code: unknown; the spans carry no code.* attributes "
            "(code.function.name / code.file.path, or code.function / code.filepath) to match."
        )
    counts = {
        s: sum(r.status == s for r in reach)
        for s in ("reached", "not_reached", "stopped", "not_yet")
    }
    return (
        "Changed code: "
        + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
        + "."
    )


def _qualifying(repeat: RepeatedStatement | None, policy: DetectionPolicy) -> np.ndarray:
    """Per-trace repeat counts of the traces where the pattern meets Sentry's thresholds."""
    if repeat is None:
        return np.empty(0, dtype=np.int32)
    rules = policy.n_plus_one
    keep = (repeat.repeats >= rules.min_repeats) & (repeat.total_ms >= rules.min_total_ms)
    return np.asarray(repeat.repeats[keep])


def _parent_counts(data: ReleaseData | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for group in data.groups if data is not None else ():
        out[group.name] = out.get(group.name, 0) + group.count
    return out


def n_plus_one(
    candidate: ReleaseData, baseline: ReleaseData | None, policy: DetectionPolicy
) -> list[Finding]:
    """N+1 patterns that are new in this version or worse than in the baseline.

    Worse means a larger share of the parent's requests show the pattern (ratio ≥ 1.5 and a
    one-sided Fisher p at most the look's q), or a median repeat count at least 1.5× higher.
    Findings follow the two-look rule like tests do; they do not make the verdict by themselves.
    """
    if not policy.n_plus_one.enabled:
        return []
    base = {(r.parent, r.statement): r for r in baseline.repeats} if baseline is not None else {}
    parents_new, parents_base = _parent_counts(candidate), _parent_counts(baseline)
    out = []
    for repeat in candidate.repeats:
        new = _qualifying(repeat, policy)
        if new.size == 0:
            continue
        old = _qualifying(base.get((repeat.parent, repeat.statement)), policy)
        n_new = max(parents_new.get(repeat.parent, 0), new.size)
        n_base = max(parents_base.get(repeat.parent, 0), old.size)
        why = _n_plus_one_why(new, n_new, old, n_base, policy.looks.q_per_look)
        if why is not None:
            out.append(_n_plus_one_finding(repeat, new, n_new, old, n_base, why, policy))
    return out


def _n_plus_one_why(
    new: np.ndarray, n_new: int, old: np.ndarray, n_base: int, level: float
) -> str | None:
    if old.size == 0:
        return "new in this version"
    share_ratio = (new.size / n_new) / (old.size / n_base)
    p = stats.fisher_greater(new.size, n_new, old.size, n_base).p
    if share_ratio >= N_PLUS_ONE_WORSE and p <= level:
        return f"in {percent(share_ratio)} more requests than the baseline (Fisher p={p:.2g})"
    if float(np.median(new)) >= N_PLUS_ONE_WORSE * float(np.median(old)):
        return f"median repeats {np.median(old):.0f} → {np.median(new):.0f} per request"
    return None


def _n_plus_one_finding(
    repeat: RepeatedStatement,
    new: np.ndarray,
    n_new: int,
    old: np.ndarray,
    n_base: int,
    why: str,
    policy: DetectionPolicy,
) -> Finding:
    median = float(np.median(new))
    rules = policy.n_plus_one
    return Finding(
        kind="n_plus_one",
        severity="medium",
        message=(
            f"{repeat.parent} runs one statement {median:.0f} times per request (median) in "
            f"{new.size} of {n_new} requests, {why}: {repeat.statement[:120]}"
        ),
        span=repeat.parent,
        statement=repeat.statement,
        baseline=Measure(n_base, float(np.median(old)) if old.size else 0.0, "repeats"),
        candidate=Measure(n_new, median, "repeats"),
        method=(
            f"same normalised statement ≥ {rules.min_repeats} times under one parent, "
            f"≥ {rules.min_total_ms:g} ms in total (Sentry's N+1 rule)"
        ),
        example_trace_ids=(repeat.example_trace_id,) if repeat.example_trace_id else (),
        tested=True,
    )


def _children(data: ReleaseData, parent: str) -> list[tuple[SpanGroupStats, int]]:
    return [(g, n) for g in data.groups for caller, n in g.callers if caller == parent and n > 0]


def _time_per_request(child: SpanGroupStats, calls: int, parent_count: int) -> float:
    """Mean ms a child adds to one parent request: calls per request × the child's mean."""
    if child.durations_ms.size == 0 or parent_count <= 0:
        return 0.0
    return calls / parent_count * float(np.mean(child.durations_ms))


def bottlenecks(
    candidate: ReleaseData, baseline: ReleaseData | None, regressed: Collection[str]
) -> list[Finding]:
    """The child group that owns most of each slowed-down parent's extra time.

    Approximation: without per-trace timelines, a child's time per parent request is estimated
    as (calls from this parent ÷ parent spans) × the child's mean duration over all its callers.
    Children that run concurrently can add up to more than the parent, and a child shared by
    several parents is charged its overall mean. For parents with a latency regression the child
    with the largest increase is named with its share of the parent's mean increase; for other
    parents, a child is named when it now owns ≥ 30% of the parent's mean time (Digma's rule)
    and did not before.
    """
    base_groups = {g.name: g for g in baseline.groups} if baseline is not None else {}
    out = []
    for parent in candidate.groups:
        old = base_groups.get(parent.name)
        if parent.durations_ms.size == 0 or old is None or old.durations_ms.size == 0:
            continue
        found = _bottleneck(candidate, baseline, parent, old, parent.name in regressed)
        if found is not None:
            out.append(found)
    return out


def _bottleneck(
    candidate: ReleaseData,
    baseline: ReleaseData | None,
    parent: SpanGroupStats,
    old: SpanGroupStats,
    slowed: bool,
) -> Finding | None:
    before = (
        {c.name: _time_per_request(c, n, old.count) for c, n in _children(baseline, old.name)}
        if baseline
        else {}
    )
    rows = [
        (c.name, _time_per_request(c, n, parent.count))
        for c, n in _children(candidate, parent.name)
    ]
    if not rows:
        return None
    mean_new, mean_old = float(np.mean(parent.durations_ms)), float(np.mean(old.durations_ms))
    if slowed:
        name, now = max(rows, key=lambda r: r[1] - before.get(r[0], 0.0))
        grew, total = now - before.get(name, 0.0), mean_new - mean_old
        if grew <= 0 or total <= 0:
            return None
        text = (
            f"+{grew:.1f} ms of the +{total:.1f} ms mean increase ({min(grew / total, 9.99):.0%})"
        )
    else:
        name, now = max(rows, key=lambda r: r[1])
        share, share_old = now / mean_new, before.get(name, 0.0) / mean_old
        if share < BOTTLENECK_SHARE or share_old >= BOTTLENECK_SHARE:
            return None
        text = f"{share:.0%} of its mean time, up from {share_old:.0%}"
    return Finding(
        kind="bottleneck",
        severity="medium" if slowed else "info",
        message=f"In {parent.name}, {name} owns {text}: {now:.1f} ms per request",
        span=parent.name,
        baseline=Measure(old.count, before.get(name, 0.0), "ms_per_request"),
        candidate=Measure(parent.count, now, "ms_per_request"),
        method="calls per parent request × child mean duration (group aggregates, not per trace)",
    )
