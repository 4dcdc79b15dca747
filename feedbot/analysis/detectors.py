"""Per-group tests: latency shift, tail latency, error rate and new exception types (§7, §9).

Each function turns one span group's two versions into :class:`Candidate` findings carrying the
test's p-value and whether the effect clears its floor. ``compare`` then applies
Benjamini-Hochberg across each family and keeps the candidates that pass both. Section numbers
(§) refer to shared/reference/detection-methods.md. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedbot.analysis import stats
from feedbot.analysis.findings import Effect, Finding, Measure, percent, pval
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import SpanGroupStats

#: Durations at or below zero (clock resolution) are raised to 1 µs so their logs exist.
MIN_DURATION_MS = 1e-3
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A finding before multiplicity control.

    Attributes:
        finding: The finding as it would be reported (q_value still None).
        p: Its one-sided p-value.
        passes: Whether the effect clears the policy's floors.
        strong: Whether the effect's CI clears the floor (the optional §9 "overwhelming" rule,
            ``looks.overwhelming_factor``, needs it).
        p_min: The smallest p the test could give with these margins (a discrete test
            conditioned on its totals; 0 for the continuous ones), for Tarone's screen.
    """

    finding: Finding
    p: float
    passes: bool
    strong: bool
    p_min: float = 0.0


@dataclass(frozen=True, slots=True)
class Pair:
    """One span group in both versions (either side None when the group is missing there).

    ``scale``: what the latency tests multiply the baseline's durations by (1: as measured;
    the global shift of untouched groups in a before/after look, :mod:`feedbot.analysis.drift`).
    """

    span: str
    kind: str
    new: SpanGroupStats | None
    base: SpanGroupStats | None
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class HostSpread:
    """The pooled between-instance sd τ̂, whether the guard applies (§9), whether τ̂ came
    from instance offsets estimated over all groups at once, and (when the latency p allows for
    τ̂'s own uncertainty) its degrees of freedom and mean square (0 and None: it does not).
    ``assumed``: τ̂ could not be estimated and ``tau`` is the policy's assumed spread.
    ``measured``: τ̂ itself when ``tau`` is its upper confidence bound
    (``host_guard.tau_upper``), None when ``tau`` is τ̂; ``dof_tau``: τ̂'s degrees of freedom.
    ``parts``: this check's own estimate per version (new, baseline), for the service's
    history; ``earlier``: earlier releases pooled into τ̂ (``host_guard.history_checks``);
    ``changed_p``: the F test's p when they were set aside because this check's spread is
    significantly larger; ``history``: what the store offered (None without a store)."""

    tau: float | None
    enabled: bool
    across: bool = False
    dof: int = 0
    mean_square: float | None = None
    assumed: bool = False
    measured: float | None = None
    dof_tau: int = 0
    parts: tuple[stats.TauEstimate | None, ...] = ()
    earlier: int = 0
    changed_p: float | None = None
    history: TauHistory | None = None


@dataclass(frozen=True, slots=True)
class TauHistory:
    """The service's earlier releases' τ̂, for the guard to pool with this check's (§7.7).

    Attributes:
        service: Whose releases, for the report's words.
        estimates: One per earlier release (its latest check; newest first), each from the
            versions this check and the newer releases did not already count: the baseline of
            one release is the new version of the one before, served by the same instances.
    """

    service: str
    estimates: tuple[stats.TauEstimate, ...] = ()


@dataclass(frozen=True, slots=True)
class TauRecord:
    """What one earlier release's latest check measured: τ̂ per version it compared."""

    release: str
    parts: tuple[tuple[str, stats.TauEstimate], ...]


def tau_history(service: str, records: Sequence[TauRecord], counted: Collection[str]) -> TauHistory:
    """The history for a check that already counts the ``counted`` versions' instances.

    Records are newest first; each contributes the versions no newer record (nor this check)
    counted, so instances serving two consecutive checks (the baseline of one, the new version
    of the one before) are counted once. Records left with nothing are dropped.
    """
    seen = set(counted)
    estimates = []
    for record in records:
        fresh = [est for version, est in record.parts if version not in seen]
        seen.update(version for version, _ in record.parts)
        pooled = stats.combine_tau(fresh)
        if pooled is not None:
            estimates.append(pooled)
    return TauHistory(service, tuple(estimates))


def durations(group: SpanGroupStats) -> FloatArray:
    """The group's durations, raised to ``MIN_DURATION_MS`` so that logs exist."""
    return np.maximum(np.asarray(group.durations_ms, dtype=np.float64), MIN_DURATION_MS)


def base_durations(pair: Pair) -> FloatArray:
    """The baseline's durations as the latency tests compare them: × ``pair.scale``."""
    assert pair.base is not None
    return durations(pair.base) * pair.scale


def net_note(pair: Pair) -> str:
    """How the baseline was scaled, for a latency message ("" when it was not)."""
    if pair.scale == 1.0:
        return ""
    return (
        f", net of the {percent(pair.scale)} every untouched route moved (baseline "
        f"× {pair.scale:.2f})"
    )


def instance_count(group: SpanGroupStats) -> int:
    """Distinct instances that served the group's spans (0 when spans did not say)."""
    if group.instances.size == 0:
        return 0
    return int(np.unique(group.instances).size)


def latency_floor(pair: Pair, policy: DetectionPolicy, hosts: HostSpread) -> float:
    """The HL-ratio floor, raised by the host spread when the guard is on (§9)."""
    base_floor = policy.latency.ratio_floor
    if not hosts.enabled or pair.new is None or pair.base is None:
        return base_floor
    k_new, k_base = _instances(pair.new, hosts), _instances(pair.base, hosts)
    return stats.host_noise_floor(hosts.tau, k_new, k_base, floor=base_floor, z=policy.host_guard.z)


def _instances(group: SpanGroupStats, hosts: HostSpread) -> int:
    """Instances serving ``group``; with an assumed spread, spans that name none count as one."""
    count = instance_count(group)
    return max(1, count) if hosts.assumed else count


def latency_candidates(
    pair: Pair, policy: DetectionPolicy, hosts: HostSpread, floor: float
) -> list[Candidate]:
    """One-sided Mann-Whitney both ways with the HL ratio and its CI (§7.1, §7.2, §9).

    The p-value is made cluster-aware with τ̂ when the guard is on; a regression needs
    r̂ ≥ floor and Δmedian ≥ ``min_delta_median_ms``, an improvement the mirror image.
    """
    assert pair.new is not None and pair.base is not None
    x, y = durations(pair.new), base_durations(pair)
    shift = stats.hodges_lehmann_ratio(x, y, level=policy.latency.ci_level)
    sigma = stats.robust_log_sigma(np.concatenate([x, y]))
    delta = float(np.median(x) - np.median(y))
    out = []
    for slower in (True, False):
        test = stats.mann_whitney(x, y, alternative="greater" if slower else "less")
        ratio = shift.ratio if slower else 1.0 / shift.ratio
        p = _cluster_p(test.p, ratio, sigma, pair, hosts)
        passes = (
            ratio >= floor and (delta if slower else -delta) >= policy.latency.min_delta_median_ms
        )
        ci_end = shift.low if slower else (None if shift.high is None else 1.0 / shift.high)
        strong = ci_end is not None and ci_end > floor
        out.append(
            Candidate(
                _latency_finding(pair, shift, floor, slower, _method(test.method, hosts)),
                p,
                passes,
                strong,
            )
        )
    return out


def _method(test: str, hosts: HostSpread) -> str:
    """The latency test as the finding names it, with how host spread entered its p."""
    method = f"one-sided Mann-Whitney ({test}) + Hodges-Lehmann ratio"
    if not hosts.enabled or hosts.tau is None:
        return method
    if hosts.assumed:
        return f"{method}, p cluster-aware with an assumed host spread τ = {hosts.tau:.3f}"
    where = "instance offsets over all groups" if hosts.across else "per group, pooled"
    if hosts.earlier:
        where += f", with {hosts.earlier} earlier releases', {hosts.dof_tau} df"
    t_ref = f", t with {hosts.dof} df for τ̂" if hosts.dof else ""
    if hosts.measured is not None:
        return (
            f"{method}, p cluster-aware with τ = {hosts.tau:.3f}, the upper bound of τ̂ = "
            f"{hosts.measured:.3f} ({where}, {hosts.dof_tau} df{t_ref})"
        )
    return f"{method}, p cluster-aware with τ̂ = {hosts.tau:.3f} ({where}{t_ref})"


def _cluster_p(p_mwu: float, ratio: float, sigma: float, pair: Pair, hosts: HostSpread) -> float:
    assert pair.new is not None and pair.base is not None
    if not hosts.enabled:
        return p_mwu
    return stats.cluster_aware_p(
        p_mwu=p_mwu,
        ratio=ratio,
        sigma=sigma,
        n_new=pair.new.durations_ms.size,
        n_base=pair.base.durations_ms.size,
        tau=hosts.tau,
        k_new=_instances(pair.new, hosts),
        k_base=_instances(pair.base, hosts),
        tau_dof=hosts.dof,
        tau_mean_square=hosts.mean_square,
    )


def _latency_finding(
    pair: Pair, shift: stats.ShiftEstimate, floor: float, slower: bool, method: str
) -> Finding:
    assert pair.new is not None and pair.base is not None
    x, y = pair.new.durations_ms, pair.base.durations_ms
    new_p50, base_p50 = float(np.median(x)), float(np.median(y))
    ci = f"{shift.level:.0%} CI {percent(shift.low)} to {percent(shift.high)}"
    message = (
        f"{pair.span} got {'slower' if slower else 'faster'}: p50 {base_p50:.1f} ms → "
        f"{new_p50:.1f} ms, shift {percent(shift.ratio)} ({ci}), n = {y.size} → {x.size} spans"
        f"{net_note(pair)}"
    )
    return Finding(
        kind="latency_regression" if slower else "latency_improvement",
        severity="high" if slower else "low",
        message=message,
        span=pair.span,
        baseline=Measure(y.size, base_p50, "p50_ms"),
        candidate=Measure(x.size, new_p50, "p50_ms"),
        change=Effect(
            shift.ratio, shift.low, shift.high, shift.level, floor if slower else 1 / floor
        ),
        method=method,
        counts_toward="regressed" if slower else "improved",
        tested=True,
    )


def tail_candidates(pair: Pair, policy: DetectionPolicy) -> list[Candidate]:
    """Exceedance tests on the pooled p95 (n ≥ 200) and p99 (n ≥ 1,000), regressions only (§7.3).

    The quantile ratio must reach ``tail.ratio_floor`` and the quantile grow by at least
    ``latency.min_delta_median_ms``; its CI is the conservative distribution-free one of
    ``stats.quantile_ratio``.
    """
    assert pair.new is not None and pair.base is not None
    x, y = durations(pair.new), base_durations(pair)
    raw = durations(pair.base)
    out = []
    for q, minimum in ((0.95, policy.tail.p95_min_samples), (0.99, policy.tail.p99_min_samples)):
        if min(x.size, y.size) < minimum:
            continue
        test = stats.tail_exceedance_test(x, y, q)
        ratio, low, high = stats.quantile_ratio(x, y, q, level=policy.tail.ci_level)
        floor = policy.tail.ratio_floor
        label = f"p{round(q * 100)}_ms"
        base_q, new_q = float(np.quantile(raw, q)), float(np.quantile(x, q))
        finding = Finding(
            kind="latency_regression",
            severity="high",
            message=(
                f"{pair.span} tail got slower: {label[:3]} {base_q:.1f} ms → {new_q:.1f} ms "
                f"({percent(ratio)}); above the pooled {label[:3]}: {test.exceed_base}/{y.size} → "
                f"{test.exceed_new}/{x.size} spans{net_note(pair)}"
            ),
            span=pair.span,
            baseline=Measure(y.size, base_q, label),
            candidate=Measure(x.size, new_q, label),
            change=Effect(ratio, low, high, policy.tail.ci_level, floor),
            method=f"exceedance of pooled {label[:3]}, one-sided Fisher exact",
            counts_toward="regressed",
            tested=True,
        )
        # As for the median: a tail a few tenths of a millisecond longer is not worth an alarm.
        net_q = float(np.quantile(y, q))
        big = ratio >= floor and new_q - net_q >= policy.latency.min_delta_median_ms
        out.append(Candidate(finding, test.p, big, big and low is not None and low > floor))
    return out


def error_candidates(pair: Pair, policy: DetectionPolicy) -> list[Candidate]:
    """One-sided Fisher exact tests of the error proportion, both ways (§7.4).

    A pair enters the family only when the two versions have at least ``min_errors_new``
    errors together: the test conditions on that total, so screening on it keeps p valid. A
    finding also needs that many errors on its own side, the ratio floor and the absolute floor.
    """
    assert pair.new is not None and pair.base is not None
    e_new, n_new, e_base, n_base = (
        pair.new.errors,
        pair.new.count,
        pair.base.errors,
        pair.base.count,
    )
    rules = policy.errors
    if e_new + e_base < rules.min_errors_new or n_new <= 0 or n_base <= 0:
        return []
    rate_new, rate_base = e_new / n_new, e_base / n_base
    low, high = stats.rate_ratio_ci(e_new, n_new, e_base, n_base)
    ratio = math.inf if e_base == 0 else rate_new / rate_base
    up = stats.fisher_greater(e_new, n_new, e_base, n_base)
    down = stats.fisher_greater(e_base, n_base, e_new, n_new)
    up_passes = (
        e_new >= rules.min_errors_new
        and ratio >= rules.rate_ratio_floor
        and rate_new - rate_base >= rules.min_rate_increase
    )
    down_passes = (
        e_base >= rules.min_errors_new
        and ratio <= 1.0 / rules.rate_ratio_floor
        and rate_base - rate_new >= rules.min_rate_increase
    )
    effect = Effect(None if math.isinf(ratio) else ratio, low, high, 0.95)
    # Conditioned on the total, the most extreme table puts every error on one side.
    total = e_new + e_base
    return [
        Candidate(
            _error_finding(pair, effect, True, rules.rate_ratio_floor),
            up.p,
            up_passes,
            low is not None and low > rules.rate_ratio_floor,
            stats.fisher_greater(total, n_new, 0, n_base).p,
        ),
        Candidate(
            _error_finding(pair, effect, False, rules.rate_ratio_floor),
            down.p,
            down_passes,
            high is not None and high < 1.0 / rules.rate_ratio_floor,
            stats.fisher_greater(total, n_base, 0, n_new).p,
        ),
    ]


def _error_finding(pair: Pair, effect: Effect, up: bool, floor: float) -> Finding:
    assert pair.new is not None and pair.base is not None
    new, base = pair.new, pair.base
    message = (
        f"{pair.span} error rate {'rose' if up else 'fell'}: {base.errors}/{base.count} "
        f"({base.errors / base.count:.2%}) → {new.errors}/{new.count} "
        f"({new.errors / new.count:.2%}), ratio {percent(effect.ratio)}"
    )
    return Finding(
        kind="error_rate_increase" if up else "error_rate_decrease",
        severity="high" if up else "low",
        message=message,
        span=pair.span,
        baseline=Measure(base.count, base.errors / base.count, "error_rate"),
        candidate=Measure(new.count, new.errors / new.count, "error_rate"),
        change=Effect(effect.ratio, effect.low, effect.high, 0.95, floor if up else 1 / floor),
        method="one-sided Fisher exact test on error spans",
        counts_toward="regressed" if up else "improved",
        tested=True,
    )


def new_type_candidates(pair: Pair, policy: DetectionPolicy) -> list[Candidate]:
    """Exception types on the new version's spans of a group that its baseline never raised.

    Each is tested with p = s^k (§7.5), s = n_new / (n_new + n_base) the new version's share of
    the group's spans, whatever the two sizes are: a short baseline only makes s larger, so k
    must be larger to pass. A group absent from the baseline cannot be tested (s = 1): p = 1,
    a fact. Whether the service raised the type elsewhere is decided by the caller.
    """
    assert pair.new is not None
    in_base = {e.type for e in pair.base.exceptions} if pair.base is not None else set()
    n_new = pair.new.count
    n_base = pair.base.count if pair.base is not None else 0
    out = []
    for seen in pair.new.exceptions:
        if seen.type in in_base or seen.count <= 0:
            continue
        testable = n_base > 0
        p = stats.new_type_test(seen.count, n_new, n_base).p if testable else 1.0
        where = (
            f"never in the baseline's {n_base} spans of this operation"
            if testable
            else "not tested: the operation has no baseline spans"
        )
        finding = Finding(
            kind="new_error_type",
            severity="info",
            message=(
                f"{pair.span} raised {seen.type} {seen.count} times ({seen.count / n_new:.2%} of "
                f"{n_new} spans), {where}, nor anywhere in the service's baseline or history"
                + (f": {seen.message}" if seen.message else "")
            ),
            span=pair.span,
            exception_type=seen.type,
            baseline=Measure(n_base, 0.0, "count"),
            candidate=Measure(n_new, float(seen.count), "count"),
            method="p = s^k, s = new spans / all spans (own BH family)" if testable else "fact",
            example_trace_ids=(seen.example_trace_id,) if seen.example_trace_id else (),
            counts_toward="regressed",
            tested=testable,
        )
        low = stats.rate_ratio_ci(seen.count, n_new, 0, n_base)[0] if testable else None
        strong = low is not None and low > policy.errors.rate_ratio_floor
        out.append(Candidate(finding, p, testable, strong))
    return out


def share_new(finding: Finding) -> float | None:
    """s = n_new / (n_new + n_base) of a new-type finding, None when it has no baseline."""
    if finding.candidate is None or finding.baseline is None or finding.baseline.n <= 0:
        return None
    return finding.candidate.n / (finding.candidate.n + finding.baseline.n)


def describe_test(finding: Finding, p: float, q: float) -> str:
    """The finding's message with its test, p and q appended."""
    return f"{finding.message}; {finding.method}, p={pval(p)}, q={pval(q)}"
