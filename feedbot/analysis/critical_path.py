"""Critical-path attribution: which operation accounts for a group's added time, trace by trace.

The span engine walks the critical path of a sample of each group's spans the way Jaeger UI does
(:mod:`feedbot.spans.critical`): per span, its own time and, per descendant group, the exclusive
time that group spent on the span's critical path. Those parts add up to the span's duration, so
comparing their per-request means between the two versions splits a group's change exactly:

* ``added`` of a part is its mean per request in the new version minus in the baseline (0 when
  it did not run); for an improvement, the time it saved;
* a part's ``share`` is its added time over the sum of the positive added times of all the
  parts, so shares never exceed 100% and add up to at most 100%;
* descendants are counted by their own time, not their children's, so the part named is where
  the time is actually spent however deep it lies (the route's handler's child rather than the
  handler): the recursion into the child that explains most is done by the walk.

A part is named only with evidence (a no-change deploy must not get a cause): at least
:data:`MIN_SPANS` sampled spans in each version, a one-sided Mann-Whitney test of its
per-request times at p ≤ :data:`LEVEL`, a share of at least :data:`MIN_SHARE`
(:mod:`feedbot.analysis.attribution` then keeps those of at least its own ``MIN_SHARE``), and
an added time of at least :data:`MIN_ADDED_MS` and :data:`MIN_ADDED_PART` of the group's mean
baseline time: instances differ by a few percent, which at a few hundred requests the test
alone would call a change.
What it is: the span's own code (``self``), a group that did not run in the baseline
(``new_child``), a group now called at least :data:`MORE_CALLS` times as often per request
(``repeat``, an N+1 growing), else a ``child``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedbot.analysis.findings import Cause, CauseKind, pval
from feedbot.analysis.stats import mann_whitney
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import CriticalPath, ReleaseData, SpanGroupStats

#: Sampled spans each version needs before any cause of a group is named.
MIN_SPANS = 30
#: One-sided Mann-Whitney level for a part's per-request critical-path time.
LEVEL = 1e-3
#: Smallest share of the added time a named part explains.
MIN_SHARE = 0.2
#: Smallest added time named: in ms, and as a part of the group's mean baseline time.
MIN_ADDED_MS = 0.5
MIN_ADDED_PART = 0.05
#: Calls per request grown this many times (and to at least 2): the cause is a repeat.
MORE_CALLS = 1.5
SELF = ("", "")


@dataclass(frozen=True)
class Part:
    """One part of a group's critical path in both versions, per sampled request."""

    key: tuple[str, str]  # (name, kind) of the descendant group; SELF for the span's own code
    new: npt.NDArray[np.float64]
    base: npt.NDArray[np.float64]
    calls_new: float
    calls_base: float
    ran_before: bool

    @property
    def added(self) -> float:
        """Mean ms per request, new minus baseline."""
        return float(self.new.mean() - self.base.mean())


def causes(
    candidate: ReleaseData, baseline: ReleaseData, spans: Sequence[str], policy: DetectionPolicy
) -> list[Cause]:
    """Causes of the latency change of each group in ``spans``, from its critical paths.

    Args:
        candidate: The new version's spans.
        baseline: The baseline's spans.
        spans: Groups that changed; slower ones unless their median fell (then the time saved).
        policy: Thresholds (unused: the evidence rule is this module's own).

    Returns:
        The named parts of each group, strongest first; none where the evidence is short.
    """
    old = {(g.name, g.kind): g for g in baseline.groups}
    out: list[Cause] = []
    for name in spans:
        for group in (g for g in candidate.groups if g.name == name):
            before = old.get((group.name, group.kind))
            if before is not None:
                out += group_causes(group, before)
    return out


def group_causes(new: SpanGroupStats, old: SpanGroupStats) -> list[Cause]:
    """The named parts of one group's change (see the module docstring)."""
    a, b = new.critical_path, old.critical_path
    if a is None or b is None or len(a.own_ms) < MIN_SPANS or len(b.own_ms) < MIN_SPANS:
        return []
    parts = _parts(a, b)
    slower = float(np.median(a.own_ms + a.child_ms.sum(axis=1))) >= float(
        np.median(b.own_ms + b.child_ms.sum(axis=1))
    )
    sign = 1.0 if slower else -1.0
    total = sum(max(sign * p.added, 0.0) for p in parts)
    if total <= 0:
        return []
    floor = max(MIN_ADDED_MS, MIN_ADDED_PART * float((b.own_ms + b.child_ms.sum(axis=1)).mean()))
    found = []
    for part in parts:
        share = sign * part.added / total
        if share < MIN_SHARE or sign * part.added < floor:
            continue
        test = mann_whitney(part.new, part.base, alternative="greater" if slower else "less")
        if test.p <= LEVEL:
            found.append(_cause(new, part, share, test.p, slower, (a, b)))
    return sorted(found, key=lambda c: -c.share)


def _parts(a: CriticalPath, b: CriticalPath) -> list[Part]:
    """The span's own time and every descendant group seen in either version."""
    index_a = {key: i for i, key in enumerate(a.children)}
    index_b = {key: i for i, key in enumerate(b.children)}
    parts = [Part(SELF, a.own_ms, b.own_ms, 0.0, 0.0, True)]
    for key in sorted({*index_a, *index_b}):
        new, calls_new = _column(a, index_a.get(key))
        base, calls_base = _column(b, index_b.get(key))
        parts.append(Part(key, new, base, calls_new, calls_base, calls_base > 0))
    return parts


def _column(path: CriticalPath, i: int | None) -> tuple[npt.NDArray[np.float64], float]:
    """One descendant's ms per sampled request (zeros when absent) and its mean calls."""
    if i is None:
        return np.zeros(len(path.own_ms)), 0.0
    return path.child_ms[:, i], float(path.calls[:, i].mean())


def _kind(part: Part) -> CauseKind:
    if part.key == SELF:
        return "self"
    if not part.ran_before:
        return "new_child"
    if part.calls_new >= max(2.0, MORE_CALLS * part.calls_base):
        return "repeat"
    return "child"


def _cause(
    group: SpanGroupStats,
    part: Part,
    share: float,
    p: float,
    slower: bool,
    paths: tuple[CriticalPath, CriticalPath],
) -> Cause:
    kind = _kind(part)
    name = group.name if part.key == SELF else part.key[0]
    new, base = float(part.new.mean()), float(part.base.mean())
    return Cause(
        span=group.name,
        kind=kind,
        name=name,
        explains="latency",
        share=min(share, 1.0),
        baseline=base if part.ran_before else None,
        candidate=new,
        n_baseline=len(part.base),
        n_candidate=len(part.new),
        detail=_detail(group.name, name, kind, part, slower, p, paths),
    )


def _detail(
    span: str,
    name: str,
    kind: CauseKind,
    part: Part,
    slower: bool,
    p: float,
    paths: tuple[CriticalPath, CriticalPath],
) -> str:
    what = f"{span}'s own code" if kind == "self" else name
    new, base = float(part.new.mean()), float(part.base.mean())
    before = (
        f"{base:.1f} ms in {len(part.base)} baseline requests"
        if part.ran_before
        else f"did not run in {len(part.base)} baseline requests"
    )
    calls = (
        f" ({part.calls_base:.1f} → {part.calls_new:.1f} calls per request)"
        if kind == "repeat"
        else ""
    )
    sampled = ", a sample of the spans" if any(p.spans > len(p.own_ms) for p in paths) else ""
    direction = "longer" if slower else "shorter"
    return (
        f"On the critical path of each {span} request, {what} took {new:.1f} ms on average in "
        f"{len(part.new)} new requests and {before}{calls}: the critical path walked trace by "
        f"trace{sampled}, per-request times {direction} by one-sided Mann-Whitney, p={pval(p)}."
    )
