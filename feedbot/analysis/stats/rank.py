"""Rank statistics for latency: the one-sided Mann-Whitney U test (detection-methods.md §7.1).

The normal approximation with tie and continuity correction matches
``scipy.stats.mannwhitneyu(method="asymptotic")`` exactly. For small samples the brief (§8, §9)
asks for an exact permutation test; ``method="auto"`` uses it when the smaller sample has at most
``EXACT_MAX_SMALL`` values and the pooled sample at most ``EXACT_MAX_TOTAL``. The exact
distribution is conditional on the observed ties, so it stays exact with tied values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from feedbot.analysis.stats.dist import normal_sf

Alternative = Literal["greater", "less"]
Method = Literal["auto", "asymptotic", "exact"]

#: ``method="auto"`` goes exact when the smaller sample has at most this many values (§9).
EXACT_MAX_SMALL = 10
#: ...and the pooled sample has at most this many, which bounds the exact test's cost.
EXACT_MAX_TOTAL = 400
_EXACT_LIMIT_SMALL = 50
_EXACT_LIMIT_TOTAL = 2_000

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class MannWhitneyResult:
    """How a Mann-Whitney verdict was reached.

    Attributes:
        u: U of the new sample, #(new > base) + ½·#(ties).
        z: Continuity-corrected normal score in the direction of ``alternative``'s rejection
            (large and positive when the new version looks slower for "greater").
        p: One-sided p-value.
        n_new: New-version sample size.
        n_base: Baseline sample size.
        alternative: "greater" (new stochastically larger) or "less".
        method: "asymptotic", "exact", or "all_tied" (no test possible; p = 1).
    """

    u: float
    z: float
    p: float
    n_new: int
    n_base: int
    alternative: Alternative
    method: str

    @property
    def cles(self) -> float:
        """Common-language effect size: P(new > base) + ½·P(tie)."""
        return self.u / (self.n_new * self.n_base)


def as_sample(values: npt.ArrayLike, name: str, *, positive: bool = False) -> FloatArray:
    """Return ``values`` as a finite, non-empty 1-D float array, or raise ValueError."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sample, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: sample contains NaN or infinite values")
    if positive and not (x > 0).all():
        raise ValueError(f"{name}: durations must be strictly positive to take logs")
    return x


def midranks(pooled: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the midranks (1-based, ties averaged) of ``pooled`` and its tie-group sizes."""
    _, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    sizes = counts.astype(np.float64)
    return (np.cumsum(sizes) - (sizes - 1.0) / 2.0)[inverse], sizes


def u_sigma(n_new: int, n_base: int, tie_sizes: FloatArray) -> float:
    """Return the tie-corrected standard deviation of U under no difference."""
    total = n_new + n_base
    ties = float((tie_sizes**3 - tie_sizes).sum()) / (total * (total - 1)) if total > 1 else 0.0
    variance = n_new * n_base / 12.0 * ((total + 1) - ties)
    return math.sqrt(variance) if variance > 0 else 0.0


def mann_whitney(
    new: npt.ArrayLike,
    base: npt.ArrayLike,
    *,
    alternative: Alternative = "greater",
    method: Method = "auto",
) -> MannWhitneyResult:
    """One-sided Mann-Whitney U test of the new version against the baseline.

    Assumes independent observations within and between the samples. Spans of one instance share
    its host offset, so at large n this test detects host noise as well as code (§7.7): pair it
    with an effect floor and the cluster-aware p-value in ``stats_hosts``.

    Args:
        new: New-version values (e.g. durations).
        base: Baseline values.
        alternative: "greater" tests new stochastically larger (slower); "less" the reverse.
        method: "asymptotic" (tie- and continuity-corrected normal), "exact" (permutation
            distribution given the ties), or "auto" (exact only for small samples).

    Returns:
        The statistic, z, p and sample sizes.
    """
    x, y = as_sample(new, "new"), as_sample(base, "base")
    n1, n2 = x.size, y.size
    ranks, ties = midranks(np.concatenate([x, y]))
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    sigma = u_sigma(n1, n2, ties)
    if sigma == 0.0:
        return MannWhitneyResult(u, 0.0, 1.0, n1, n2, alternative, "all_tied")
    sign = 1.0 if alternative == "greater" else -1.0
    z = sign * (u - n1 * n2 / 2.0) / sigma - 0.5 / sigma
    if _wants_exact(method, n1, n2):
        p = _exact_p(ranks, n1, u, alternative)
        return MannWhitneyResult(u, z, p, n1, n2, alternative, "exact")
    return MannWhitneyResult(u, z, normal_sf(z), n1, n2, alternative, "asymptotic")


def _wants_exact(method: Method, n1: int, n2: int) -> bool:
    if method == "asymptotic":
        return False
    if method == "auto":
        return min(n1, n2) <= EXACT_MAX_SMALL and n1 + n2 <= EXACT_MAX_TOTAL
    if min(n1, n2) > _EXACT_LIMIT_SMALL or n1 + n2 > _EXACT_LIMIT_TOTAL:
        raise ValueError(
            f"exact Mann-Whitney needs min(n) <= {_EXACT_LIMIT_SMALL} and "
            f"N <= {_EXACT_LIMIT_TOTAL}, got n_new={n1}, n_base={n2}"
        )
    return True


def _exact_p(ranks: FloatArray, n1: int, u: float, alternative: Alternative) -> float:
    """P-value from the permutation distribution of the smaller sample's rank sum.

    Doubled midranks are integers, so a subset-sum count over them (k items, sum s) gives the
    exact conditional distribution in O(N·k·S) without enumerating the C(N, k) subsets.
    """
    n2 = ranks.size - n1
    small_is_new = n1 <= n2
    k = n1 if small_is_new else n2
    doubled = np.rint(2.0 * ranks).astype(np.int64)
    counts = _subset_sum_counts(doubled, k)
    dist = counts / counts.sum()
    # Doubled U of the smaller sample: 2·R − k(k+1); index the distribution by 2·R.
    u_small = u if small_is_new else n1 * n2 - u
    observed = int(round(2.0 * u_small)) + k * (k + 1)
    upper_tail = small_is_new == (alternative == "greater")
    tail = dist[observed:] if upper_tail else dist[: observed + 1]
    return float(min(1.0, tail.sum()))


def _subset_sum_counts(values: npt.NDArray[np.int64], k: int) -> FloatArray:
    """Number of k-subsets of ``values`` with each total (index = total)."""
    top = int(np.sort(values)[-k:].sum())
    table: FloatArray = np.zeros((k + 1, top + 1))
    table[0, 0] = 1.0
    for v in values.tolist():
        table[1:, v:] += table[:-1, : top + 1 - v].copy()
    counts: FloatArray = table[k]
    return counts


def van_elteren(strata: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]]) -> tuple[float, float]:
    """One-sided stratified rank test (van Elteren): is the first sample of each stratum larger?

    Each stratum's U (tie-corrected) is weighted by 1/(N+1), which makes strata of different
    sizes count alike per observation; the weighted sum is referred to the normal. Strata with
    an empty sample are skipped.

    Args:
        strata: (first, second) samples per stratum, e.g. an instance's early and later spans
            of one span group.

    Returns:
        (z, one-sided p); (0.0, 1.0) when no stratum can be ranked.
    """
    centred, variance = 0.0, 0.0
    for first, second in strata:
        x, y = np.asarray(first, np.float64), np.asarray(second, np.float64)
        n1, n2 = x.size, y.size
        if n1 == 0 or n2 == 0:
            continue
        ranks, ties = midranks(np.concatenate([x, y]))
        weight = 1.0 / (n1 + n2 + 1)
        u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
        centred += weight * (u - n1 * n2 / 2.0)
        variance += weight**2 * u_sigma(n1, n2, ties) ** 2
    if variance <= 0.0:
        return 0.0, 1.0
    z = centred / math.sqrt(variance)
    return z, normal_sf(z)
