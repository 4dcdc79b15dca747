"""Insights beyond the per-group tests: N+1 queries and bottlenecks.

Whether the changed code ran is :mod:`feedbot.analysis.reach`.

* **N+1** (anchors.md, Sentry's detector): the same normalised statement repeated ≥ 5 times,
  totalling ≥ 50 ms, under one parent in a trace; reported when new in this version or worse
  than the baseline.
* **Bottleneck**: a child group that now owns most of a parent's time on its critical path,
  where the parent did not slow down (a slowed parent gets causes instead:
  :mod:`feedbot.analysis.critical_path`).

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
#: Sampled parent spans each version needs, and the test level of the child's growth.
BOTTLENECK_MIN_SPANS = 30
BOTTLENECK_LEVEL = 1e-3
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


def bottlenecks(
    candidate: ReleaseData, baseline: ReleaseData | None, regressed: Collection[str]
) -> list[Finding]:
    """Children that now own a large share of a parent's time, which did not slow down.

    From the critical paths walked trace by trace (:class:`~feedbot.spans.model.CriticalPath`):
    a descendant group's share of the parent's time is its mean exclusive time on the parent's
    critical path over the parent's mean duration, so the shares of one parent add up to at
    most 100%. Named when it is now ≥ 30% (Digma's rule), was below before, and its time per
    request grew (one-sided Mann-Whitney at p ≤ 0.001). Parents in ``regressed`` get causes
    instead (:mod:`feedbot.analysis.critical_path`); groups without critical paths (a backend
    that aggregates in SQL) get nothing rather than a guess from group means.
    """
    if baseline is None:
        return []
    base_groups = {(g.name, g.kind): g for g in baseline.groups}
    out = []
    for parent in candidate.groups:
        old = base_groups.get((parent.name, parent.kind))
        if parent.name in regressed or old is None:
            continue
        found = _bottleneck(parent, old)
        if found is not None:
            out.append(found)
    return out


def _bottleneck(parent: SpanGroupStats, old: SpanGroupStats) -> Finding | None:
    new_path, old_path = parent.critical_path, old.critical_path
    if new_path is None or old_path is None:
        return None
    if min(len(new_path.own_ms), len(old_path.own_ms)) < BOTTLENECK_MIN_SPANS:
        return None
    total_new = float(new_path.own_ms.mean() + new_path.child_ms.sum(axis=1).mean())
    total_old = float(old_path.own_ms.mean() + old_path.child_ms.sum(axis=1).mean())
    if total_new <= 0 or total_old <= 0:
        return None
    before = {k: old_path.child_ms[:, i] for i, k in enumerate(old_path.children)}
    i = int(np.argmax(new_path.child_ms.mean(axis=0)))
    key = new_path.children[i]
    now = new_path.child_ms[:, i]
    then = before.get(key, np.zeros(len(old_path.own_ms)))
    share, share_old = float(now.mean()) / total_new, float(then.mean()) / total_old
    if share < BOTTLENECK_SHARE or share_old >= BOTTLENECK_SHARE:
        return None
    if stats.mann_whitney(now, then, alternative="greater").p > BOTTLENECK_LEVEL:
        return None
    return Finding(
        kind="bottleneck",
        severity="info",
        message=(
            f"In {parent.name}, {key[0]} now takes {share:.0%} of its time, up from "
            f"{share_old:.0%}: {now.mean():.1f} ms per request"
        ),
        span=parent.name,
        baseline=Measure(len(then), float(then.mean()), "ms_per_request"),
        candidate=Measure(len(now), float(now.mean()), "ms_per_request"),
        method="time on each span's critical path, walked trace by trace (a sample of spans)",
    )
