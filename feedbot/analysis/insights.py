"""Insights beyond the per-group tests: N+1 queries and bottlenecks.

Whether the changed code ran is :mod:`feedbot.analysis.reach`.

* **N+1** (anchors.md, Sentry's detector): the same normalised statement repeated ≥ 5 times,
  totalling ≥ 50 ms, under one parent in a trace; reported when new in this version or worse
  than the baseline.
* **Bottleneck**: which child group owns most of a parent's time, estimated from per-group
  aggregates (see :func:`bottlenecks` for the approximation).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from feedbot.analysis import stats
from feedbot.analysis.findings import Finding, Measure, percent
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData, RepeatedStatement, SpanGroupStats

#: Digma's bottleneck rule: a child owning at least 30% of its parent's time.
BOTTLENECK_SHARE = 0.30
#: "Worse than baseline" for N+1: the share of parent requests with the pattern grew this much.
N_PLUS_ONE_WORSE = 1.5


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
