"""Multiplicity: Benjamini-Hochberg across span groups and checks, Bonferroni across looks (§7.6).

BH is valid for independent or positively dependent (PRDS) p-values; under arbitrary dependence
use ``method="by"`` (Benjamini-Yekutieli). Host offsets shared by every span group of a deploy
break independence (§7.6), which is why the policy adds confirmation and the host-spread guard.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

FdrMethod = Literal["bh", "by"]


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


def bonferroni(alpha: float, looks: int) -> float:
    """Per-look level when ``alpha`` is split evenly over ``looks`` scheduled looks (§9).

    With alpha = 0.05 and the four looks (+15 min, +1 h, +4 h, +24 h) this is 0.0125.
    """
    if looks < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need 0 < alpha < 1 and looks >= 1, got {alpha}, {looks}")
    return alpha / looks
