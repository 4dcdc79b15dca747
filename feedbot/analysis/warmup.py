"""Instance warm-up from evidence: leave a new instance's first minutes out only if slower.

The span engine marks, per duration, a span that started within ``latency.warmup`` of its
instance's first span (:attr:`~feedbot.spans.model.SpanGroupStats.early`). Here each instance's
early spans are tested against its later spans of the same span groups, pooled over the groups with
van Elteren's stratified rank test (one-sided: early slower), at ``warmup_alpha`` split over the
instances tested, and the pooled ratio (per group, early median over later median; their geometric
mean) must also reach the latency floor. An instance with fewer than ``warmup_min_spans`` early or
later spans is not tested and nothing of it is left out: a 79-second load test or a look two
minutes after the deploy keeps every span. A group never loses its warm-up spans when that would
leave it below ``latency.min_samples``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from feedbot.analysis import stats
from feedbot.durations import format_duration
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData, SpanGroupStats

#: Groups named in the "kept" note; the rest are counted.
NAMED_GROUPS = 3


@dataclass(frozen=True, slots=True)
class Evidence:
    """One instance's early spans against its later ones.

    Attributes:
        instance: The instance (``service.instance.id``, else ``host.name``).
        early: Its spans in the warm-up window that had a duration, over all groups.
        late: Its later spans in groups where it had early ones.
        ratio: Early over later medians, geometric mean over the groups (None: untested).
        p: One-sided p of the stratified rank test (None: not tested, too few spans).
        slower: Whether its warm-up is left out.
    """

    instance: str
    early: int
    late: int
    ratio: float | None = None
    p: float | None = None
    slower: bool = False


@dataclass(frozen=True, slots=True)
class Warmup:
    """The new version's data with the warm-up left out, and what was said about it.

    Attributes:
        data: The candidate's data; groups carry ``warmup_excluded``.
        excluded: Durations left out in all.
        evidence: Per instance with early spans, what the test found.
        notes: One sentence each, for the report.
    """

    data: ReleaseData
    excluded: int = 0
    evidence: tuple[Evidence, ...] = ()
    notes: tuple[str, ...] = ()


def leave_out(candidate: ReleaseData, policy: DetectionPolicy) -> Warmup:
    """Test each new instance's first minutes and leave them out of latency where slower.

    Args:
        candidate: The new version's spans, ``early`` marked by the backend.
        policy: ``latency.warmup``, ``warmup_alpha``, ``warmup_min_spans``, ``min_samples``
            and ``ratio_floor``.

    Returns:
        The data to analyse and the notes that say what was left out, and why or why not.
    """
    latency = policy.latency
    if latency.warmup.total_seconds() <= 0 or not any(g.early.size for g in candidate.groups):
        return Warmup(candidate)
    strata = _strata(candidate.groups)
    window = format_duration(latency.warmup)
    if not strata:
        return Warmup(candidate, notes=(_no_instances(window),))
    evidence = _evidence(strata, policy)
    slow = {e.instance for e in evidence if e.slower}
    groups, kept = [], []
    for group in candidate.groups:
        out, held = _apply(group, slow, latency.min_samples)
        groups.append(out)
        if held:
            kept.append((group, held))
    excluded = sum(g.warmup_excluded for g in groups)
    notes = (*_test_notes(evidence, excluded, window, policy), *_kept_notes(kept, policy))
    return Warmup(replace(candidate, groups=groups), excluded, tuple(evidence), notes)


_Strata = dict[str, list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]]


def _strata(groups: list[SpanGroupStats]) -> _Strata:
    """Per instance, (early, later) durations of each group where it had early spans."""
    out: _Strata = {}
    for group in groups:
        if not group.early.size or group.instances.size != group.durations_ms.size:
            continue
        for index, name in enumerate(group.instance_names):
            mine = group.instances == index
            early = group.durations_ms[mine & group.early]
            if early.size:
                out.setdefault(name, []).append((early, group.durations_ms[mine & ~group.early]))
    return out


def _evidence(strata: _Strata, policy: DetectionPolicy) -> list[Evidence]:
    latency = policy.latency
    counts = {
        name: (sum(e.size for e, _ in cells), sum(lt.size for _, lt in cells))
        for name, cells in strata.items()
    }
    testable = [n for n, (e, lt) in counts.items() if min(e, lt) >= latency.warmup_min_spans]
    level = latency.warmup_alpha / max(1, len(testable))
    out = []
    for name in sorted(strata):
        early, late = counts[name]
        if name not in testable:
            out.append(Evidence(name, early, late))
            continue
        _, p = stats.van_elteren(strata[name])
        ratio = _ratio(strata[name])
        slower = p <= level and ratio >= latency.ratio_floor
        out.append(Evidence(name, early, late, ratio, p, slower))
    return out


def _ratio(cells: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]) -> float:
    """Per group, early median over later median; their geometric mean weighted by early spans.

    A cold start that triples one operation and leaves another alone reads as √3, not as
    whichever operation has more spans (1.0 when no group has a positive median).
    """
    logs, weights = [], []
    for early, late in cells:
        if early.size and late.size and np.median(early) > 0 and np.median(late) > 0:
            logs.append(float(np.log(np.median(early) / np.median(late))))
            weights.append(early.size)
    return float(np.exp(np.average(logs, weights=weights))) if logs else 1.0


def _apply(group: SpanGroupStats, slow: set[str], min_samples: int) -> tuple[SpanGroupStats, int]:
    """The group without its slow instances' early durations, and how many it kept instead.

    A group keeps them when leaving them out would put it below ``min_samples``.
    """
    if not slow or not group.early.size or group.instances.size != group.durations_ms.size:
        return group, 0
    codes = [i for i, name in enumerate(group.instance_names) if name in slow]
    drop = group.early & np.isin(group.instances, codes)
    dropped = int(np.count_nonzero(drop))
    if not dropped:
        return group, 0
    if group.durations_ms.size - dropped < min_samples:
        return group, dropped
    keep = ~drop
    return replace(
        group,
        durations_ms=group.durations_ms[keep],
        instances=group.instances[keep],
        early=group.early[keep],
        errored=group.errored[keep] if group.errored.size else group.errored,
        labels=group.labels[keep] if group.labels.size else group.labels,
        starts_ns=group.starts_ns[keep] if group.starts_ns.size else group.starts_ns,
        warmup_excluded=dropped,
    ), 0


def _no_instances(window: str) -> str:
    return (
        f"Warm-up not checked: no span says which instance served it (service.instance.id or "
        f"host.name), so no instance's first {window} can be told apart; no span left out."
    )


def _test_notes(
    evidence: list[Evidence], excluded: int, window: str, policy: DetectionPolicy
) -> list[str]:
    slow = [e for e in evidence if e.slower]
    tested = [e for e in evidence if e.p is not None and not e.slower]
    untested = [e for e in evidence if e.p is None]
    notes = []
    if slow and excluded:
        notes.append(
            f"Warm-up: {excluded} spans from the first {window} of {len(slow)} of "
            f"{len(evidence)} new instance(s) ({_names(slow)}) left out of latency: they were "
            f"{_ratios(slow)} slower than the same instances' later spans of the same "
            f"operations ({_early_late(slow)}, stratified rank test {_ps(slow)}); still "
            "counted in spans and errors."
        )
    if tested:
        notes.append(
            f"Warm-up: the first {window} of {len(tested)} new instance(s) were not slower than "
            f"their later spans ({_ratios(tested)}, {_ps(tested)}; {_early_late(tested)}), so "
            "none of their spans were left out."
        )
    if untested:
        needed = policy.latency.warmup_min_spans
        notes.append(
            f"Warm-up not tested on {len(untested)} new instance(s): {_early_late(untested)}, "
            f"and the test needs {needed} of each, so nothing of their first {window} was left "
            "out."
        )
    return notes


def _kept_notes(kept: list[tuple[SpanGroupStats, int]], policy: DetectionPolicy) -> list[str]:
    if not kept:
        return []
    need = policy.latency.min_samples
    named = [
        f"{g.name} ({held} of {g.durations_ms.size} timed spans; {g.durations_ms.size - held} "
        "would remain)"
        for g, held in kept[:NAMED_GROUPS]
    ]
    more = f" and {len(kept) - NAMED_GROUPS} more group(s)" if len(kept) > NAMED_GROUPS else ""
    return [
        "Warm-up spans kept in latency where leaving them out would put a group below the "
        f"{need} spans a latency verdict needs: {'; '.join(named)}{more}."
    ]


def _names(evidence: list[Evidence]) -> str:
    shown = ", ".join(e.instance for e in evidence[:NAMED_GROUPS])
    more = len(evidence) - NAMED_GROUPS
    return shown + (f" and {more} more" if more > 0 else "")


def _ratios(evidence: list[Evidence]) -> str:
    values = sorted(e.ratio for e in evidence if e.ratio is not None)
    if not values:
        return "?"
    if values[0] == values[-1] or len(values) == 1:
        return f"{values[0]:.2f}×"
    return f"{values[0]:.2f}× to {values[-1]:.2f}×"


def _ps(evidence: list[Evidence]) -> str:
    """The p-values of ``evidence``: the largest of slow instances, the smallest of others."""
    values = [e.p for e in evidence if e.p is not None]
    if len(values) == 1:
        return f"p = {values[0]:.2g}"
    if evidence[0].slower:
        return f"p ≤ {max(values):.2g}"
    return f"p ≥ {min(values):.2g}"


def _early_late(evidence: list[Evidence]) -> str:
    early, late = sum(e.early for e in evidence), sum(e.late for e in evidence)
    return f"{early} early vs {late} later spans"
