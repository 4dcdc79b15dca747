"""Multiplicity: Benjamini-Hochberg across span groups and checks, Bonferroni across looks (§7.6),
and the alpha-spending boundaries that let a strong finding be confirmed at its first look.

BH is valid for independent or positively dependent (PRDS) p-values; under arbitrary dependence
use ``method="by"`` (Benjamini-Yekutieli). Host offsets shared by every span group of a deploy
break independence (§7.6), which is why the policy adds confirmation and the host-spread guard.

Repeated looks (§7.6 "an alpha-spending schedule"): a spending function α(t) says how much of a
false-alarm budget α may be used by the fraction t of the schedule (Lan & DeMets 1983). Pocock's
α·ln(1 + (e − 1)·t) spends about a third of it at the first of four looks, O'Brien-Fleming's
2 − 2·Φ(z_{α/2}/√t) almost nothing early and most at the end. :func:`spending_boundary` gives
look k the increment α(t_k) − α(t_{k−1}); testing each look at its increment is valid by the
union bound whatever the correlation between the cumulative looks (conservative against the
exact group-sequential boundary, which would need that correlation and the looks' information).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from feedbot.analysis.stats.dist import normal_isf, normal_sf

FdrMethod = Literal["bh", "by"]
Spending = Literal["pocock", "obrien_fleming"]


def bh_qvalues(p_values: npt.ArrayLike, *, method: FdrMethod = "bh") -> npt.NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    q₍i₎ = min_{j ≥ i} min(1, m·p₍j₎/j), times Σ 1/i for Benjamini-Yekutieli. Equals
    ``scipy.stats.false_discovery_control``.

    Args:
        p_values: One p-value per test of the family, each in [0, 1].
        method: "bh" (independent or PRDS p-values) or "by" (any dependence).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not ((p >= 0.0) & (p <= 1.0)).all():
        raise ValueError("p_values must be a 1-D array of values in [0, 1]")
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranks = np.arange(1, m + 1, dtype=np.float64)
    scale = float((1.0 / ranks).sum()) if method == "by" else 1.0
    adjusted = np.minimum.accumulate((p[order] * m * scale / ranks)[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bh_reject(
    p_values: npt.ArrayLike, q: float, *, method: FdrMethod = "bh"
) -> npt.NDArray[np.bool_]:
    """Which hypotheses the BH step-up procedure rejects at FDR level ``q``.

    Rejecting every test whose q-value is ≤ q is the same as rejecting H₍1..k₎ for the largest k
    with p₍k₎ ≤ k·q/m.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    return bh_qvalues(p_values, method=method) <= q


def tarone_screen(p_min: npt.ArrayLike, alpha: float) -> npt.NDArray[np.bool_]:
    """Which tests could reach significance: Tarone's (1990) screen for discrete tests.

    ``p_min`` is each test's smallest attainable p given its margins (0 for continuous tests).
    K is the smallest k with #{i: p_min_i ≤ alpha/k} ≤ k, and the tests kept are those with
    p_min ≤ alpha/K; the others could not pass even alone among K and are left out of the
    family. The screen uses the margins only, which a conditional test holds fixed, so the kept
    p-values stay valid and Benjamini-Hochberg over them keeps its FDR (Gilbert 2005).
    """
    floors = np.asarray(p_min, dtype=np.float64)
    for k in range(1, floors.size + 1):
        keep = floors <= alpha / k
        if int(keep.sum()) <= k:
            return keep
    return np.ones(floors.size, dtype=np.bool_)


def bonferroni(alpha: float, looks: int) -> float:
    """Per-look level when ``alpha`` is split evenly over ``looks`` scheduled looks (§9).

    With alpha = 0.05 and the four looks (+15 min, +1 h, +4 h, +24 h) this is 0.0125.
    """
    if looks < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need 0 < alpha < 1 and looks >= 1, got {alpha}, {looks}")
    return alpha / looks


def spent(alpha: float, t: float, kind: Spending = "pocock") -> float:
    """Cumulative false-alarm budget α(t) spent by the fraction ``t`` of the looks.

    ``pocock``: α·ln(1 + (e − 1)·t) (Lan-DeMets' Pocock-type function): roughly even per look,
    so an early look keeps most of its power. ``obrien_fleming``: 2 − 2·Φ(z_{α/2}/√t) (the
    O'Brien-Fleming-type function): nearly nothing early, nearly all of α at t = 1.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    t = min(1.0, max(0.0, t))
    if t == 0.0:
        return 0.0
    if kind == "pocock":
        return alpha * math.log1p((math.e - 1.0) * t)
    if kind == "obrien_fleming":
        return min(alpha, 2.0 * normal_sf(normal_isf(alpha / 2.0) / math.sqrt(t)))
    raise ValueError(f"unknown spending function {kind!r}: expected pocock or obrien_fleming")


def spending_boundary(alpha: float, look: int, looks: int, kind: Spending = "pocock") -> float:
    """Level at which look ``look`` of ``looks`` may spend its share of ``alpha``.

    The increment α(k/K) − α((k − 1)/K) of :func:`spent` on the look-index scale (the looks are
    scheduled in advance, so the boundaries are fixed before any data). The increments add up to
    α, so testing each look at its own increment keeps P(any look crosses | no change) ≤ α by the
    union bound, whatever the correlation between looks. Pocock at α = 0.015 over 4 looks:
    0.0054, 0.0039, 0.0031, 0.0026; O'Brien-Fleming: 1·10⁻⁶, 0.0006, 0.0044, 0.0100.
    A look past the schedule gets nothing (0).
    """
    if looks < 1 or look < 1:
        raise ValueError(f"need look >= 1 and looks >= 1, got {look}, {looks}")
    if look > looks:
        return 0.0
    return spent(alpha, look / looks, kind) - spent(alpha, (look - 1) / looks, kind)
