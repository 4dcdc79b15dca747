"""Attribute contrast: which attribute values the slow or failing spans share (as BubbleUp does).

Honeycomb's BubbleUp sets a selection (the slow part of a heat map) against the baseline (the
rest) and ranks every attribute by how differently its values are spread. Here the selection is
what the new version added: for a group that got slower, the time its spans take beyond what the
same kind of span took before; for a group whose errors rose, the errors beyond the baseline's
rate. Each span carries its labels (:mod:`feedbot.spans.labels`) and its instance.

For each key and each value ``v`` of it in the new version, the *reference* is the baseline's
spans with ``v`` when there are enough of them, else all the baseline's spans (values that only
the new version has, such as its new instances). Then:

* latency: the added time of ``v``'s spans is their count times the mean difference of the
  5th…95th percentiles between the new spans and the reference (robust to a few outliers, yet it
  sees a slowdown of part of the spans); ``share`` is ``v``'s positive added time over the sum of
  every value's positive added time, so shares of one key sum to at most 1;
* errors: the added errors of ``v`` are its errors less its spans times the reference rate; the
  share is taken the same way, and contrasted with ``v``'s share of the traffic.

A value is named only when (1) its share is at least :data:`MIN_SHARE`; (2) it has enough spans
and so have the others (a value carried by every new span says no more than "the new
version"); (3) the others are not slower (or failing) the same way: their own change is at most
half of ``v``'s, or, for errors, ``v`` carries clearly more of the added errors than of the
traffic; (4) a one-sided test that ``v`` changed more than the rest passes at
:data:`ALPHA` divided by the keys tried (Bonferroni): Mann-Whitney on durations relative to
each span's reference median, Fisher's exact test on errors; and (5) for latency, ``v``'s
median moved past the policy's latency floor and past three times the baseline's spread between
values of the key (the host-noise guard, for instances). Values named on the same spans under
another key (``tenant=acme`` and ``region=eu`` when acme is all of eu's slow traffic) are told
once, as the value whose spans are slowed most, the other in its ``detail``. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from feedbot.analysis.findings import Cause, pval
from feedbot.analysis.stats.counts import fisher_greater
from feedbot.analysis.stats.rank import mann_whitney
from feedbot.policy import DetectionPolicy
from feedbot.spans.labels import MISSING, OTHER, label_columns
from feedbot.spans.model import ReleaseData, SpanGroupStats

#: Part of the added time (or errors) a value must carry to be named.
MIN_SHARE = 0.6
#: A value's share of the added errors must exceed its share of the traffic by this much.
MIN_ERROR_EXCESS = 0.25
#: Family-wise level of the contrast tests of one group, split over the keys tried.
ALPHA = 0.01
#: The others' change may be at most this part of the named value's.
REST_PART = 0.5
#: Of two causes on the same spans, the less concentrated one is told if it explains this
#: much more of the change.
OVERLAP_MARGIN = 0.15
#: Key under which the span's instance (``service.instance.id``, else ``host.name``) is told.
INSTANCE = "instance"
_PERCENTILES = np.linspace(0.05, 0.95, 19)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Side:
    """One version's spans of a group, with a value per span for each key."""

    durations: FloatArray
    errored: BoolArray
    columns: dict[str, npt.NDArray[np.object_]]


def causes(
    candidate: ReleaseData,
    baseline: ReleaseData,
    *,
    slower: Collection[str],
    erroring: Collection[str],
    policy: DetectionPolicy,
) -> list[Cause]:
    """Attribute values behind the change of each group (see the module docstring).

    Args:
        candidate: The new version's spans.
        baseline: The baseline's spans.
        slower: Groups with a latency regression.
        erroring: Groups whose error rate rose or that raised a new exception type.
        policy: Thresholds (the minimum sample, the latency floor, the minimum errors).
    """
    found: list[Cause] = []
    for name in slower:
        pair = _pair(candidate, baseline, name)
        if pair is not None:
            found += _named(name, *pair, "latency", policy)
    for name in erroring:
        pair = _pair(candidate, baseline, name)
        if pair is not None:
            found += _named(name, *pair, "errors", policy)
    return found


def _pair(candidate: ReleaseData, baseline: ReleaseData, name: str) -> tuple[_Side, _Side] | None:
    new, old = _group(candidate, name), _group(baseline, name)
    if new is None or old is None:
        return None
    return _side(new), _side(old)


def _group(data: ReleaseData, name: str) -> SpanGroupStats | None:
    groups = [g for g in data.groups if g.name == name and len(g.durations_ms)]
    return max(groups, key=lambda g: g.count) if groups else None


def _side(group: SpanGroupStats) -> _Side:
    """The group's spans with a value per key (keys whose values all spans lack are left out)."""
    n = len(group.durations_ms)
    columns: dict[str, npt.NDArray[np.object_]] = {}
    if len(group.instances) == n and len(group.instance_names) > 1:
        columns[INSTANCE] = np.array(group.instance_names, dtype=object)[group.instances]
    if len(group.labels) == n:
        for key, (values, codes) in label_columns(group.label_sets, group.labels).items():
            columns[key] = np.array(values, dtype=object)[codes]
    errored = group.errored if len(group.errored) == n else np.zeros(0, np.bool_)
    return _Side(group.durations_ms, errored, columns)


def _named(
    span: str, new: _Side, old: _Side, explains: str, policy: DetectionPolicy
) -> list[Cause]:
    """The values named for one group: per key at most one, then told once across keys."""
    if explains == "errors" and (not len(new.errored) or not len(old.errored)):
        return []
    keys = [k for k in new.columns if len(set(new.columns[k].tolist()) - {MISSING, OTHER})]
    alpha = ALPHA / max(1, len(keys))
    tried = _latency if explains == "latency" else _errors
    hits = [(key, tried(span, key, new, old, alpha, policy)) for key in keys]
    found: list[tuple[Cause, BoolArray, float]] = []
    # Strongest first; a weaker one on other spans must hold without the stronger's spans
    # (an instance whose share is a region's slowdown plus its host offset does not).
    for key, hit in sorted(
        ((k, h) for k, h in hits if h is not None), key=lambda kh: -kh[1][0].share
    ):
        apart = [f[1] for f in found if _overlap(f[1], hit[1]) < MIN_SHARE]
        if (
            apart
            and tried(span, key, _without(new, np.logical_or.reduce(apart)), old, alpha, policy)
            is None
        ):
            continue
        found.append(hit)
    return _told_once(found)


def _without(side: _Side, drop: BoolArray) -> _Side:
    """``side`` without the spans marked in ``drop``."""
    keep = ~drop
    errored = side.errored[keep] if len(side.errored) else side.errored
    columns = {key: values[keep] for key, values in side.columns.items()}
    return _Side(side.durations[keep], errored, columns)


def _references(
    key: str, new: _Side, old: _Side, minimum: int
) -> Iterator[tuple[str, BoolArray, BoolArray]]:
    """Per value of ``key`` in the new version: its new spans and its reference spans."""
    values = new.columns[key]
    before = old.columns.get(key)
    everything = np.ones(len(old.durations), np.bool_)
    for value in sorted(set(values.tolist()), key=str):
        mine = values == value
        ref = everything if before is None else before == value
        if value in (MISSING, OTHER) or np.count_nonzero(ref) < minimum:
            ref = everything
        yield value, mine, ref


def _shift(new: FloatArray, ref: FloatArray) -> float:
    """Mean difference of the 5th…95th percentiles (ms), 0 when either side is empty."""
    if not len(new) or not len(ref):
        return 0.0
    return float(np.mean(np.quantile(new, _PERCENTILES) - np.quantile(ref, _PERCENTILES)))


def _latency(
    span: str, key: str, new: _Side, old: _Side, alpha: float, policy: DetectionPolicy
) -> tuple[Cause, BoolArray, float] | None:
    """The value of ``key`` that carries the added time of ``span``, if one does."""
    minimum = policy.latency.min_samples
    rows = list(_references(key, new, old, minimum))
    added = {
        v: np.count_nonzero(m) * _shift(new.durations[m], old.durations[r]) for v, m, r in rows
    }
    total = sum(max(0.0, a) for a in added.values())
    if total <= 0:
        return None
    value, mine, ref = max(rows, key=lambda row: added[row[0]])
    share = max(0.0, added[value]) / total
    rest = ~mine
    if value in (MISSING, OTHER) or share < MIN_SHARE:
        return None
    if np.count_nonzero(mine) < minimum or np.count_nonzero(rest) < minimum:
        return None
    # Each new span relative to its own value's reference median: "slower than it was".
    scale = np.ones(len(new.durations))
    for _, m, r in rows:
        scale[m] = max(float(np.median(old.durations[r])), 1e-9)
    relative = new.durations / scale
    ratio, rest_ratio = float(np.median(relative[mine])), float(np.median(relative[rest]))
    before = float(np.median(old.durations[ref]))
    # One value against the mean of the others: sd τ·√(1 + 1/k) for k other values.
    others = len(set(new.columns[key][rest].tolist()) - {MISSING, OTHER})
    spread = _spread(key, old, new, value, minimum) * math.sqrt(1.0 + 1.0 / max(1, others))
    if not _past_floor(ratio / max(rest_ratio, 1.0), before, policy, spread):
        return None
    if rest_ratio - 1.0 > REST_PART * (ratio - 1.0):
        return None
    p = mann_whitney(relative[mine], relative[rest], method="asymptotic").p
    if p >= alpha:
        return None
    n_mine = int(np.count_nonzero(mine))
    after = float(np.median(new.durations[mine]))
    detail = (
        f"{n_mine} of {len(new.durations)} new spans have {key}={value}: their median went "
        f"{before:.1f} → {after:.1f} ms ({ratio:.2f}×) while the others' moved {rest_ratio:.2f}×; "
        f"they carry {share:.0%} of the added time (one-sided Mann-Whitney on durations "
        f"relative to the baseline, p={pval(p)})."
    )
    name, n_ref = f"{key}={value}", int(np.count_nonzero(ref))
    cause = Cause(span, "attribute", name, "latency", share, before, after, n_ref, n_mine, detail)
    return cause, mine, added[value] / n_mine


def _past_floor(ratio: float, before: float, policy: DetectionPolicy, spread: float) -> bool:
    """Whether a median ratio is a slowdown the policy would call one, beyond value noise."""
    floor = max(policy.latency.ratio_floor, math.exp(policy.host_guard.z * spread))
    return ratio >= floor and before * (ratio - 1.0) >= policy.latency.min_delta_median_ms


def _spread(key: str, old: _Side, new: _Side, value: str, minimum: int) -> float:
    """Pooled sd of log-medians between values of ``key`` within each version, ``value`` aside.

    The host-noise guard: instances (or any values) differ by this much without a cause.
    """
    deviations: list[float] = []
    dof = 0
    for side, aside in ((old, None), (new, value)):
        values = side.columns.get(key)
        if values is None:
            continue
        medians = np.array(
            [
                math.log(max(float(np.median(side.durations[values == v])), 1e-9))
                for v in set(values.tolist()) - {MISSING, OTHER, aside}
                if np.count_nonzero(values == v) >= minimum
            ]
        )
        if len(medians) > 1:
            deviations += (medians - medians.mean()).tolist()
            dof += len(medians) - 1
    return math.sqrt(sum(d * d for d in deviations) / dof) if dof else 0.0


def _errors(
    span: str, key: str, new: _Side, old: _Side, alpha: float, policy: DetectionPolicy
) -> tuple[Cause, BoolArray, float] | None:
    """The value of ``key`` that carries the added errors of ``span``, if one does."""
    minimum = policy.latency.min_samples
    rows = list(_references(key, new, old, minimum))
    added = {
        v: np.count_nonzero(new.errored[m]) - np.count_nonzero(m) * _rate(old.errored[r])
        for v, m, r in rows
    }
    total = sum(max(0.0, a) for a in added.values())
    if total <= 0:
        return None
    value, mine, ref = max(rows, key=lambda row: added[row[0]])
    share, traffic = max(0.0, added[value]) / total, np.count_nonzero(mine) / len(mine)
    n_mine, n_rest = int(np.count_nonzero(mine)), int(np.count_nonzero(~mine))
    failed = int(np.count_nonzero(new.errored[mine]))
    if value in (MISSING, OTHER) or share < MIN_SHARE or share < traffic + MIN_ERROR_EXCESS:
        return None
    if min(n_mine, n_rest) < minimum or failed < policy.errors.min_errors_new:
        return None
    p_rest = fisher_greater(failed, n_mine, int(np.count_nonzero(new.errored[~mine])), n_rest).p
    p_before = fisher_greater(
        failed, n_mine, int(np.count_nonzero(old.errored[ref])), int(np.count_nonzero(ref))
    ).p
    p = max(p_rest, p_before)
    if p >= alpha:
        return None
    before, after = _rate(old.errored[ref]), failed / n_mine
    detail = (
        f"{n_mine} of {len(mine)} new spans ({traffic:.0%}) have {key}={value} and carry "
        f"{share:.0%} of the added errors: {before:.1%} → {after:.1%} failed, the others "
        f"{_rate(new.errored[~mine]):.1%} (one-sided Fisher exact, p={pval(p)})."
    )
    name, n_ref = f"{key}={value}", int(np.count_nonzero(ref))
    cause = Cause(span, "attribute", name, "errors", share, before, after, n_ref, n_mine, detail)
    return cause, mine, after - before


def _rate(errored: BoolArray) -> float:
    return float(np.count_nonzero(errored)) / len(errored) if len(errored) else 0.0


def _told_once(found: list[tuple[Cause, BoolArray, float]]) -> list[Cause]:
    """Causes whose spans mostly coincide are told once.

    The one whose spans changed most, unless another explains clearly more (a region whose two
    tenants both got slower, rather than the larger tenant); the other goes into its detail.
    """
    kept: list[tuple[Cause, BoolArray]] = []
    for cause, mine, _ in sorted(found, key=lambda hit: (-hit[2], hit[0].name)):
        same = next((k for k in kept if _overlap(k[1], mine) >= MIN_SHARE), None)
        if same is None:
            kept.append((cause, mine))
            continue
        told, other = (cause, mine), same[0]
        if cause.share <= same[0].share + OVERLAP_MARGIN:
            told, other = same, cause
        detail = f"{told[0].detail} Most of them also have {other.name}."
        kept[kept.index(same)] = (replace(told[0], detail=detail), told[1])
    return [cause for cause, _ in kept]


def _overlap(kept: BoolArray, mine: BoolArray) -> float:
    """The part of the smaller of two sets of spans that the other holds too."""
    smaller = min(int(np.count_nonzero(kept)), int(np.count_nonzero(mine)))
    return float(np.count_nonzero(kept & mine)) / max(1, smaller)
