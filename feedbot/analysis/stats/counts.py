"""Exact tests on counts: error rates, new exception types, changed code reached (§7.4, §7.5).

Every test here conditions on the total count, so it is exact for any sample size and needs no
normal approximation; none uses mid-p (the brief keeps mid-p for ranking only, never verdicts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from feedbot.analysis.stats.dist import binomial_cdf, binomial_sf, hypergeom_sf


@dataclass(frozen=True, slots=True)
class CountTestResult:
    """How a count verdict was reached.

    Attributes:
        events_new: Events (errors, exceptions of one type) in the new version.
        exposure_new: New-version exposure (spans or requests).
        events_base: Events in the baseline.
        exposure_base: Baseline exposure.
        p: One-sided p-value that the new version's rate is higher.
        test: "fisher", "conditional_binomial" or "new_type".
    """

    events_new: int
    exposure_new: float
    events_base: int
    exposure_base: float
    p: float
    test: str

    @property
    def rate_new(self) -> float:
        """Events per unit of exposure in the new version."""
        return self.events_new / self.exposure_new

    @property
    def rate_base(self) -> float:
        """Events per unit of exposure in the baseline."""
        return self.events_base / self.exposure_base

    @property
    def rate_ratio(self) -> float:
        """rate_new / rate_base; inf when the baseline had none and the new version some."""
        if self.events_base == 0:
            return math.inf if self.events_new else 1.0
        return self.rate_new / self.rate_base


@dataclass(frozen=True, slots=True)
class ReachResult:
    """Whether changed code ran, from hit counts on the spans mapped to it.

    Attributes:
        hits_new: Requests in the new version that reached the code.
        n_new: Requests in the new version that could have reached it.
        hits_base: The same in the baseline (0 when the code is new).
        n_base: Baseline requests.
        upper_bound: Upper confidence bound on the new version's reach rate.
        expected_hits: Hits expected in the new version at the baseline's rate (None if n_base=0).
        p_stopped: Exact conditional p that the new version reaches it less often (None when
            the baseline never reached it).
    """

    hits_new: int
    n_new: int
    hits_base: int
    n_base: int
    upper_bound: float
    expected_hits: float | None
    p_stopped: float | None


def fisher_greater(events_new: int, n_new: int, events_base: int, n_base: int) -> CountTestResult:
    """One-sided Fisher exact test that the new version's event proportion is higher.

    Conditions on the total events m: X_new ~ Hypergeometric(N, m, n_new), p = P(X_new ≥ obs).
    Assumes independent spans (each either has the event or not).

    Args:
        events_new: Spans with an error in the new version.
        n_new: Spans in the new version.
        events_base: Spans with an error in the baseline.
        n_base: Spans in the baseline.
    """
    _check_counts(events_new, n_new, events_base, n_base)
    if events_new > n_new or events_base > n_base:
        raise ValueError(f"more events than spans: {events_new}/{n_new}, {events_base}/{n_base}")
    p = hypergeom_sf(events_new, n_new + n_base, events_new + events_base, n_new)
    return CountTestResult(events_new, n_new, events_base, n_base, p, "fisher")


def conditional_binomial_greater(
    events_new: int, exposure_new: float, events_base: int, exposure_base: float
) -> CountTestResult:
    """Exact conditional (Poisson) test that the new version's event rate is higher.

    Given m events in all, X_new ~ Bin(m, s) with s = exposure_new/(exposure_new +
    exposure_base) under equal rates; p = P(X_new ≥ obs). It needs only the two counts and the
    exposure share, so it is robust to traffic that varies over time (Netflix's counting-process
    test, §2). Assumes Poisson events with rates proportional across versions.
    """
    _check_counts(events_new, exposure_new, events_base, exposure_base)
    share = exposure_new / (exposure_new + exposure_base)
    p = binomial_sf(events_new, events_new + events_base, share)
    return CountTestResult(
        events_new, exposure_new, events_base, exposure_base, p, "conditional_binomial"
    )


def new_type_test(count_new: int, exposure_new: float, exposure_base: float) -> CountTestResult:
    """Exact test for an exception type seen only in the new version (§7.5).

    Under "it existed at the same per-span rate", all k occurrences land in the new version with
    probability p = s^k, s = exposure_new/(exposure_new + exposure_base). This is the
    conditional binomial test with no baseline events. Use it in its own BH family.
    """
    p = conditional_binomial_greater(count_new, exposure_new, 0, exposure_base).p
    return CountTestResult(count_new, exposure_new, 0, exposure_base, p, "new_type")


def min_count_for_new_type(share_new: float, *, q: float, candidates: int = 1) -> int:
    """Occurrences a lone new type needs to pass BH at q among ``candidates`` types (§7.5).

    k ≥ ln(q/m)/ln(s): 7 at s = 0.5 with one candidate and q = 0.0125, 3 at s = 0.2.
    """
    if not 0.0 < share_new < 1.0:
        raise ValueError(f"share_new must be in (0, 1), got {share_new}")
    return math.ceil(math.log(q / candidates) / math.log(share_new) - 1e-12)


def rate_ratio_ci(
    events_new: int,
    exposure_new: float,
    events_base: int,
    exposure_base: float,
    *,
    level: float = 0.95,
) -> tuple[float | None, float | None]:
    """Exact conditional CI for the rate ratio new/base (Clopper-Pearson, transformed).

    Given m events, X_new ~ Bin(m, π) with π = R·e_n/(R·e_n + e_b); the Clopper-Pearson limits
    for π map to R = π·e_b/((1 − π)·e_n). Coverage is at least ``level``.

    Returns:
        (low, high); low is 0 when events_new = 0, high is None when it is unbounded
        (no baseline events) and both are None when there are no events at all.
    """
    _check_counts(events_new, exposure_new, events_base, exposure_base)
    m, alpha = events_new + events_base, (1.0 - level) / 2.0
    if m == 0:
        return None, None
    low = 0.0 if events_new == 0 else _solve(lambda pi: binomial_sf(events_new, m, pi), alpha)
    high = None if events_base == 0 else _solve(lambda pi: -binomial_cdf(events_new, m, pi), -alpha)
    scale = exposure_base / exposure_new

    def to_ratio(pi: float) -> float:
        return pi / (1.0 - pi) * scale

    return to_ratio(low), None if high is None else to_ratio(high)


def _solve(increasing: Callable[[float], float], target: float) -> float:
    """The π in (0, 1) where the increasing function reaches ``target``, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if increasing(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def reach_upper_bound(n: int, *, hits: int = 0, level: float = 0.95) -> float:
    """One-sided upper confidence bound on a reach rate from ``hits`` among ``n`` requests.

    With no hits this is 1 − (1 − level)^{1/n} ≈ 3/n at 95% (the rule of three); otherwise the
    Clopper-Pearson upper limit. Assumes independent requests with a constant reach rate.
    """
    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n > 0, got hits={hits}, n={n}")
    if hits == 0:
        return -math.expm1(math.log(1.0 - level) / n)
    if hits == n:
        return 1.0
    return _solve(lambda pi: -binomial_cdf(hits, n, pi), -(1.0 - level))


def reach_test(
    hits_new: int, n_new: int, hits_base: int, n_base: int, *, level: float = 0.95
) -> ReachResult:
    """Reach of changed code in the new version, against the baseline's reach (§7.5).

    The "stopped being reached" p-value is the exact conditional one, P(Bin(m, s) ≤ hits_new)
    with m = hits_new + hits_base and s = n_new/(n_new + n_base); for hits_new = 0 it is
    (1 − s)^m, which is never below the brief's e^{−λ} (λ = expected hits), because it also
    allows for the uncertainty in the baseline's rate.
    """
    bound = reach_upper_bound(n_new, hits=hits_new, level=level)
    if n_base <= 0:
        return ReachResult(hits_new, n_new, hits_base, n_base, bound, None, None)
    expected = hits_base / n_base * n_new
    m, share = hits_new + hits_base, n_new / (n_new + n_base)
    p = binomial_cdf(hits_new, m, share) if hits_base else None
    return ReachResult(hits_new, n_new, hits_base, n_base, bound, expected, p)


def _check_counts(events_new: int, n_new: float, events_base: int, n_base: float) -> None:
    if n_new <= 0 or n_base <= 0 or events_new < 0 or events_base < 0:
        raise ValueError(
            f"need positive exposures and non-negative counts, got events_new={events_new}, "
            f"n_new={n_new}, events_base={events_base}, n_base={n_base}"
        )
