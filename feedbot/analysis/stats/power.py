"""Power and minimum detectable effects, for honest "inconclusive" answers (§7.4, §7.7).

All formulas are large-sample normal approximations. For latency the model is lognormal with
log-sd σ and a multiplicative shift r, so P(new > base) = Φ(ln r/(σ√2)) and Noether's formula
gives the Mann-Whitney power. The error-rate MDE uses the two-proportion formula, which the brief
shows is optimistic against the exact test actually used (§7.4); treat it as a lower bound.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from feedbot.analysis.stats.dist import normal_cdf, normal_isf, normal_ppf
from feedbot.analysis.stats.rank import as_sample

#: 1/Φ⁻¹(3/4): scales a median absolute deviation to a normal standard deviation.
MAD_TO_SD = 1.482602218505602


def robust_log_sigma(durations: npt.ArrayLike) -> float:
    """Robust log-sd of durations: 1.4826 · MAD of log(duration). Durations must be positive."""
    logs = np.log(as_sample(durations, "durations", positive=True))
    return MAD_TO_SD * float(np.median(np.abs(logs - np.median(logs))))


def mwu_min_detectable_ratio(
    n_new: int,
    n_base: int,
    *,
    sigma: float,
    alpha: float,
    power: float = 0.80,
    floor: float = 1.0,
) -> float:
    """Smallest multiplicative shift the one-sided Mann-Whitney test detects with ``power``.

    r_min = exp(σ√2 · Φ⁻¹(½ + (z_{1−α} + z_{power})/√(12·c(1−c)·N))), c = n_new/N (Noether,
    §7.7). Pass the level actually tested (the policy's per-test level after BH, ≈2·10⁻⁴), not
    0.05, and the effect floor, since the verdict also needs r̂ ≥ floor.

    Args:
        n_new: New-version spans.
        n_base: Baseline spans.
        sigma: Log-sd of durations (``robust_log_sigma``).
        alpha: One-sided per-test level.
        power: Target power.
        floor: The effect floor; the result is never below it.

    Returns:
        max(floor, r_min); inf when no shift reaches the power at these sample sizes.
    """
    total = n_new + n_base
    if n_new <= 0 or n_base <= 0:
        return math.inf
    c = n_new / total
    share = 0.5 + (normal_isf(alpha) + normal_ppf(power)) / math.sqrt(12.0 * c * (1 - c) * total)
    if share >= 1.0:
        return math.inf
    return max(floor, math.exp(sigma * math.sqrt(2.0) * normal_ppf(share)))


def mwu_sample_size(ratio: float, *, sigma: float, alpha: float, power: float = 0.80) -> int:
    """Spans per version (equal split) for the one-sided Mann-Whitney test to detect ``ratio``.

    Noether: N = (z_{1−α} + z_{power})² / (12·c(1−c)·(P − ½)²) with c = ½ and
    P = Φ(ln r/(σ√2)). For α = 0.025 (0.05 two-sided), r = 1.10, σ = 0.5 this is 455.
    """
    if ratio <= 1.0:
        raise ValueError(f"ratio must be above 1, got {ratio}")
    excess = normal_cdf(math.log(ratio) / (sigma * math.sqrt(2.0))) - 0.5
    total = (normal_isf(alpha) + normal_ppf(power)) ** 2 / (3.0 * excess**2)
    return math.ceil(total / 2.0)


def error_rate_min_detectable_ratio(
    base_rate: float, n_new: int, n_base: int, *, alpha: float, power: float = 0.80
) -> float:
    """Smallest error-rate ratio new/base a one-sided two-proportion test detects (§7.4).

    Solves p₂ − p₁ = z_{1−α}·√(p̄q̄(1/n_b + 1/n_n)) + z_{power}·√(p₁q₁/n_b + p₂q₂/n_n) by
    bisection. At base 0.1%, α = 0.01, n = 1,000 per version this gives ×12.7. Returns inf when
    even a rate of 1 would not be detected.
    """
    if not 0.0 < base_rate < 1.0:
        raise ValueError(f"base_rate must be in (0, 1), got {base_rate}")
    za, zb = normal_isf(alpha), normal_ppf(power)

    def gap(p2: float) -> float:
        pooled = (base_rate * n_base + p2 * n_new) / (n_base + n_new)
        null_sd = math.sqrt(pooled * (1 - pooled) * (1 / n_base + 1 / n_new))
        alt_sd = math.sqrt(base_rate * (1 - base_rate) / n_base + p2 * (1 - p2) / n_new)
        return (p2 - base_rate) - za * null_sd - zb * alt_sd

    lo, hi = base_rate, 1.0
    if gap(hi) < 0.0:
        return math.inf
    for _ in range(80):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if gap(mid) < 0.0 else (lo, mid)
    return hi / base_rate
