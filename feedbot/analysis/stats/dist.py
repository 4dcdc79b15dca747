"""Distribution functions the tests need, in numpy and ``math`` only (no scipy).

The normal quantile uses Acklam's rational approximation refined by one Halley step against
``math.erfc``, which is accurate to about 1e-15. Binomial and hypergeometric tails are summed in
log space from one ``math.lgamma`` anchor and a vectorised recurrence on the pmf ratio, so they
neither overflow nor underflow for the counts feedbot sees (up to millions of spans).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

_SQRT2 = math.sqrt(2.0)

# Acklam's coefficients for the inverse normal CDF (central and tail regions).
_A = (
    -39.69683028665376,
    220.9460984245205,
    -275.9285104469687,
    138.3577518672690,
    -30.66479806614716,
    2.506628277459239,
)
_B = (
    -54.47609879822406,
    161.5858368580409,
    -155.6989798598866,
    66.80131188771972,
    -13.28068155288572,
)
_C = (
    -0.007784894002430293,
    -0.3223964580411365,
    -2.400758277161838,
    -2.549732539343734,
    4.374664141464968,
    2.938163982698783,
)
_D = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)


def normal_cdf(z: float) -> float:
    """Return Φ(z), the standard normal CDF, accurate in the far lower tail."""
    return 0.5 * math.erfc(-z / _SQRT2)


def normal_sf(z: float) -> float:
    """Return 1 − Φ(z), accurate in the far upper tail."""
    return 0.5 * math.erfc(z / _SQRT2)


def student_t_sf(t: float, df: float) -> float:
    """Return P(T > t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom.

    Through the regularised incomplete beta function, P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2),
    evaluated by its continued fraction (modified Lentz); ``df`` = inf gives the normal tail.
    """
    if not df > 0.0:
        raise ValueError(f"df must be positive, got {df}")
    if math.isinf(df):
        return normal_sf(t)
    two_sided = _beta_inc(df / 2.0, 0.5, df / (df + t * t))
    return 0.5 * two_sided if t >= 0.0 else 1.0 - 0.5 * two_sided


def chi2_cdf(x: float, df: float) -> float:
    """Return P(X ≤ x) for a chi-square with ``df`` (> 0) degrees of freedom.

    The regularised lower incomplete gamma P(df/2, x/2) by its power series, summed until the
    terms stop mattering (they peak near n = x/2, so a few thousand terms cover any x feedbot
    asks about: the lower quantiles of a handful of degrees of freedom).
    """
    if not df > 0.0:
        raise ValueError(f"df must be positive, got {df}")
    if x <= 0.0:
        return 0.0
    a, half = df / 2.0, x / 2.0
    term = total = 1.0 / a
    for n in range(1, 100_000):
        term *= half / (a + n)
        total += term
        if term < total * 1e-16:
            break
    return min(1.0, math.exp(a * math.log(half) - half - math.lgamma(a)) * total)


def chi2_ppf(p: float, df: float) -> float:
    """Return the ``p`` quantile of a chi-square with ``df`` degrees of freedom (bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    low, high = 0.0, max(1.0, df)
    while chi2_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if chi2_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)


def f_sf(f: float, df1: float, df2: float) -> float:
    """Return P(F > f) for Fisher's F with ``df1`` and ``df2`` (> 0) degrees of freedom.

    P(F ≤ f) = I_{df1·f/(df1·f + df2)}(df1/2, df2/2), so the upper tail is
    I_{df2/(df2 + df1·f)}(df2/2, df1/2), evaluated directly (no 1 − cdf cancellation).
    """
    if not (df1 > 0.0 and df2 > 0.0):
        raise ValueError(f"degrees of freedom must be positive, got {df1}, {df2}")
    if f <= 0.0:
        return 1.0
    return _beta_inc(df2 / 2.0, df1 / 2.0, df2 / (df2 + df1 * f))


def _beta_inc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 ≤ x ≤ 1 (Numerical Recipes' betai)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _poly(coefficients: tuple[float, ...], x: float) -> float:
    result = 0.0
    for c in coefficients:
        result = result * x + c
    return result


def normal_ppf(p: float) -> float:
    """Return Φ⁻¹(p), the standard normal quantile.

    Args:
        p: A probability; 0 and 1 give -inf and +inf.

    Raises:
        ValueError: if p is outside [0, 1].
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    if p in (0.0, 1.0):
        return -math.inf if p == 0.0 else math.inf
    if p > 0.5:
        return -normal_ppf(1.0 - p)
    if p < 0.02425:
        t = math.sqrt(-2.0 * math.log(p))
        x = _poly(_C, t) / (_poly(_D, t) * t + 1.0)
    else:
        t = (p - 0.5) ** 2
        x = (p - 0.5) * _poly(_A, t) / (_poly(_B, t) * t + 1.0)
    # One Halley step against the exact CDF removes the approximation's 1e-9 error.
    e = normal_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


def normal_isf(alpha: float) -> float:
    """Return z_{1−alpha}, the upper alpha-quantile, without computing 1 − alpha."""
    return -normal_ppf(alpha)


def _log_sum_exp(log_terms: npt.NDArray[np.float64]) -> float:
    if log_terms.size == 0:
        return -math.inf
    top = float(log_terms.max())
    if top == -math.inf:
        return -math.inf
    return top + math.log(float(np.exp(log_terms - top).sum()))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _binomial_log_pmf(ks: npt.NDArray[np.int64], n: int, p: float) -> npt.NDArray[np.float64]:
    """Log pmf of Bin(n, p) on consecutive integers ``ks`` (0 < p < 1)."""
    k0 = int(ks[0])
    first = _log_choose(n, k0) + k0 * math.log(p) + (n - k0) * math.log1p(-p)
    steps = np.log((n - ks[:-1]) / (ks[:-1] + 1.0)) + (math.log(p) - math.log1p(-p))
    return first + np.concatenate(([0.0], np.cumsum(steps)))


def binomial_sf(x: int, n: int, p: float) -> float:
    """Return P(X ≥ x) for X ~ Binomial(n, p).

    Args:
        x: The observed count; x ≤ 0 gives 1 and x > n gives 0.
        n: Number of trials, ≥ 0.
        p: Success probability in [0, 1].
    """
    if x <= 0:
        return 1.0
    if x > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    ks = np.arange(x, n + 1, dtype=np.int64)
    return min(1.0, math.exp(_log_sum_exp(_binomial_log_pmf(ks, n, p))))


def binomial_cdf(x: int, n: int, p: float) -> float:
    """Return P(X ≤ x) for X ~ Binomial(n, p), summed directly so small tails stay accurate."""
    if x < 0:
        return 0.0
    if x >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    ks = np.arange(0, x + 1, dtype=np.int64)
    return min(1.0, math.exp(_log_sum_exp(_binomial_log_pmf(ks, n, p))))


def binomial_pmf_all(n: int, p: float) -> npt.NDArray[np.float64]:
    """Return the whole pmf of Binomial(n, p) on 0..n (underflowing terms become 0)."""
    if p <= 0.0 or p >= 1.0:
        pmf = np.zeros(n + 1)
        pmf[0 if p <= 0.0 else n] = 1.0
        return pmf
    return np.exp(_binomial_log_pmf(np.arange(0, n + 1, dtype=np.int64), n, p))


def hypergeom_sf(x: int, total: int, successes: int, draws: int) -> float:
    """Return P(X ≥ x) for X ~ Hypergeometric(total, successes, draws).

    X counts successes among ``draws`` items drawn without replacement from ``total`` items of
    which ``successes`` are successes. This is the one-sided Fisher exact p-value.
    """
    low, high = max(0, draws + successes - total), min(draws, successes)
    if x <= low:
        return 1.0
    if x > high:
        return 0.0
    ks = np.arange(x, high + 1, dtype=np.int64)
    first = (
        _log_choose(successes, x)
        + _log_choose(total - successes, draws - x)
        - _log_choose(total, draws)
    )
    k = ks[:-1]
    ratio = (successes - k) * (draws - k) / ((k + 1.0) * (total - successes - draws + k + 1.0))
    log_pmf = first + np.concatenate(([0.0], np.cumsum(np.log(ratio))))
    return min(1.0, math.exp(_log_sum_exp(log_pmf)))
