"""The noise-floor guard: host-to-host spread sizes the latency floor and p-value (§7.7, §9).

For host effects the unit of replication is the instance. With k_n and k_b instances and a
between-instance sd τ of log-latency, the version difference carries host noise of sd
τ·√(1/k_n + 1/k_b) however many spans are collected. τ̂ is a method-of-moments (DerSimonian-Laird
style) random-effects estimate: the variance of per-instance log-medians minus their sampling
variance (π/2)·σ̂²/n_i, pooled over span groups and both versions, floored at 0. The raw spread of
instance medians is biased upward by sampling noise and costs power for nothing (§9).

Because one instance's offset is shared by every span group it serves, :func:`pooled_tau_across`
estimates each instance's offset from all groups at once (its log-medians' deviations from each
group's centre, weighted by spans) and takes the spread of those: the sampling noise is then that
of the instance's whole traffic, not of one group's share of it. With 3 instances and a few hundred
spans per group, the per-group estimate (:func:`pooled_tau`) is dominated by that noise (issue 14).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedbot.analysis.stats.dist import chi2_ppf, f_sf, normal_sf, student_t_sf
from feedbot.analysis.stats.power import MAD_TO_SD
from feedbot.analysis.stats.rank import FloatArray, as_sample


@dataclass(frozen=True, slots=True)
class InstanceCell:
    """Per-instance summaries of one span group in one version.

    Attributes:
        log_medians: Median log-duration of each instance.
        counts: Spans per instance.
        sigma: Robust log-sd of the cell's durations (1.4826 · MAD of the logs).
    """

    log_medians: FloatArray
    counts: FloatArray
    sigma: float
    labels: tuple[str, ...] = ()


def instance_cell(durations: npt.ArrayLike, instance_ids: npt.ArrayLike) -> InstanceCell:
    """Summarise one (span group, version) cell by instance.

    Args:
        durations: Positive span durations.
        instance_ids: The ``service.instance.id`` of each span, same length; the cell's
            ``labels`` are their distinct values as text, in the order of ``log_medians``.
    """
    logs = np.log(as_sample(durations, "durations", positive=True))
    ids = np.asarray(instance_ids)
    if ids.shape != logs.shape:
        raise ValueError(f"instance_ids: expected shape {logs.shape}, got {ids.shape}")
    names, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    medians = np.array([np.median(logs[inverse == i]) for i in range(counts.size)])
    # Deviations from each instance's own median shrink when an instance has few spans, which
    # would understate the sampling variance; the cell-wide MAD avoids that and includes τ² in
    # σ̂², which is negligible against σ² (0.25 + 0.0025 at σ = 0.5, τ = 0.05).
    sigma = MAD_TO_SD * float(np.median(np.abs(logs - np.median(logs))))
    return InstanceCell(medians, counts.astype(np.float64), sigma, tuple(str(n) for n in names))


def pooled_tau(cells: Sequence[InstanceCell]) -> float | None:
    """Between-instance sd τ̂ of log-latency, pooled over cells (groups × versions).

    Each cell with k ≥ 2 instances contributes (k − 1)·(s² − mean v_i), where s² is the variance
    of its instance log-medians and v_i = (π/2)·σ̂²/n_i the sampling variance of a median under a
    normal model; the pooled estimate is floored at 0. v_i is asymptotic: with fewer than about
    30 spans per instance it is off by tens of percent and τ̂ becomes unreliable.

    Returns:
        τ̂, or None when no cell has two instances (host and version cannot be separated).
    """
    weighted, dof = 0.0, 0
    for cell in cells:
        k = cell.log_medians.size
        if k < 2:
            continue
        sampling = float(np.mean(math.pi / 2.0 * cell.sigma**2 / cell.counts))
        weighted += (k - 1) * (float(np.var(cell.log_medians, ddof=1)) - sampling)
        dof += k - 1
    if dof == 0:
        return None
    return math.sqrt(max(0.0, weighted / dof))


@dataclass(frozen=True, slots=True)
class TauEstimate:
    """τ̂ with what its uncertainty needs: the degrees of freedom and the mean square it came from.

    Attributes:
        tau: The between-instance sd, floored at 0.
        dof: Σ (instances − 1) over the versions that had two or more.
        mean_square: The pooled variance of the instance offsets before the sampling variance was
            subtracted (E = τ² + mean v_j); its chi-square spread with ``dof`` degrees of freedom
            is what makes τ̂ uncertain (Welch-Satterthwaite, :func:`cluster_aware_p`).
        sampling: The pooled sampling variance subtracted from it (mean v_j).
    """

    tau: float
    dof: int
    mean_square: float
    sampling: float = 0.0

    def upper(self, level: float) -> float:
        """A one-sided upper confidence bound on τ at ``level`` (0: τ̂ itself).

        The mean square's chi-square spread gives τ² ≤ dof·MS / χ²_dof(1 − level) − mean v_j,
        treating the sampling variance as known (it comes from thousands of spans, τ̂ from a
        handful of instances). Never below τ̂. With 2 instances a version (2 degrees of
        freedom) the 90% bound is 9.5·MS − v, with 3 (4 df) 3.8·MS − v, with 10 (18 df)
        1.7·MS − v: it guards where τ̂ is least reliable and fades as instances are added.
        Unlike τ̂, which is 0 whenever the offsets' spread falls below their sampling noise
        (a chance event of about 30% at 2 degrees of freedom when τ² is twice that noise), the
        bound is never 0.
        """
        if level <= 0.0 or self.dof <= 0:
            return self.tau
        bound = self.dof * self.mean_square / chi2_ppf(1.0 - level, self.dof) - self.sampling
        return math.sqrt(max(self.tau**2, bound))


def pooled_tau_across(versions: Sequence[Sequence[InstanceCell]]) -> float | None:
    """Between-instance sd τ̂ from instance offsets estimated over every span group at once.

    Within one version, each cell's log-medians minus the cell's span-weighted centre are the
    instances' offsets plus sampling noise. An instance's offset â_j is the span-weighted mean
    of its deviations over the cells, with sampling variance v_j = (π/2)·Σ_g n_gj·σ̂_g² / N_j²
    (N_j its spans in those cells). Each version with k ≥ 2 instances contributes
    (k − 1)·(var(â) − mean v_j); the pooled estimate is floored at 0.

    Args:
        versions: One sequence of cells per version; cells are matched by their ``labels``.

    Returns:
        τ̂, or None when no version has two instances in a cell.
    """
    estimate = tau_across(versions)
    return None if estimate is None else estimate.tau


def tau_across(versions: Sequence[Sequence[InstanceCell]]) -> TauEstimate | None:
    """:func:`pooled_tau_across` with its degrees of freedom and mean square."""
    return combine_tau([part for part in tau_by_version(versions) if part is not None])


def tau_by_version(versions: Sequence[Sequence[InstanceCell]]) -> list[TauEstimate | None]:
    """Each version's own part of :func:`tau_across` (None for a version with < 2 instances).

    A service's history keeps these apart: the baseline of one release is the new version of
    the release before, served by the same instances, and its part must be counted once.
    """
    return [_version_tau(cells) for cells in versions]


def _version_tau(cells: Sequence[InstanceCell]) -> TauEstimate | None:
    sums: dict[str, list[float]] = {}
    for cell in cells:
        if cell.log_medians.size < 2 or len(cell.labels) != cell.log_medians.size:
            continue
        centre = float(np.average(cell.log_medians, weights=cell.counts))
        for label, median, n in zip(cell.labels, cell.log_medians, cell.counts, strict=True):
            acc = sums.setdefault(label, [0.0, 0.0, 0.0])
            acc[0] += n * (float(median) - centre)
            acc[1] += n
            acc[2] += n * cell.sigma**2
    if len(sums) < 2:
        return None
    offsets = np.array([acc[0] / acc[1] for acc in sums.values()])
    sampling = float(np.mean([math.pi / 2.0 * acc[2] / acc[1] ** 2 for acc in sums.values()]))
    spread = float(np.var(offsets, ddof=1))
    return TauEstimate(math.sqrt(max(0.0, spread - sampling)), offsets.size - 1, spread, sampling)


def combine_tau(parts: Sequence[TauEstimate]) -> TauEstimate | None:
    """Pool estimates of one τ: τ̂² = Σ dof_i·(MS_i − v_i) / Σ dof_i, floored at 0.

    The pooled mean square and sampling variance are the dof-weighted means of the parts', and
    the degrees of freedom add up. None when no part has any.
    """
    dof = sum(p.dof for p in parts if p.dof > 0)
    if dof == 0:
        return None
    squares = sum(p.dof * p.mean_square for p in parts if p.dof > 0) / dof
    noise = sum(p.dof * p.sampling for p in parts if p.dof > 0) / dof
    return TauEstimate(math.sqrt(max(0.0, squares - noise)), dof, squares, noise)


@dataclass(frozen=True, slots=True)
class PooledTau:
    """τ̂ of this check pooled with the service's earlier releases (or not, and why).

    Attributes:
        estimate: What sizes the guard: the pooled estimate, or the current one alone.
        earlier: Earlier releases pooled (0: none had an estimate, or they were set aside).
        changed_p: When the earlier releases were set aside because this check's spread is
            significantly larger (the infrastructure changed), the F test's p; else None.
        offered: Earlier releases that had an estimate, pooled or not.
    """

    estimate: TauEstimate
    earlier: int = 0
    changed_p: float | None = None
    offered: int = 0


def pool_with_history(
    current: TauEstimate, earlier: Sequence[TauEstimate], *, alpha: float = 0.01
) -> PooledTau:
    """Pool ``current`` with the earlier releases' estimates unless the spread grew.

    τ is a property of the service's infrastructure, so the releases before measure it too;
    pooled (:func:`combine_tau`), the degrees of freedom add up. The guard against a changed
    infrastructure is a one-sided F test of the current mean square against what the history
    expects of it: F = MS_cur / (max(0, MS_h − v_h) + v_cur) on (dof_cur, dof_h) degrees of
    freedom (with the history's τ̂² and this check's own sampling variance, so a check with
    fewer spans than the history's is not mistaken for a wider spread). Below ``alpha`` the
    current estimate is used alone. A smaller current spread is no reason to doubt the history.
    """
    history = combine_tau(earlier)
    if history is None:
        return PooledTau(current)
    offered = sum(e.dof > 0 for e in earlier)
    expected = max(0.0, history.mean_square - history.sampling) + current.sampling
    if expected > 0.0 and current.dof > 0:
        p = f_sf(current.mean_square / expected, current.dof, history.dof)
        if p < alpha:
            return PooledTau(current, 0, p, offered)
    pooled = combine_tau([current, *earlier])
    assert pooled is not None
    return PooledTau(pooled, offered, None, offered)


def host_noise_floor(
    tau: float | None, k_new: int, k_base: int, *, floor: float = 1.10, z: float = 3.0
) -> float:
    """Latency effect floor raised by the host spread: max(floor, exp(z·τ̂·√(1/k_n + 1/k_b))).

    Args:
        tau: ``pooled_tau`` (None leaves the floor as it is).
        k_new: Instances serving the new version.
        k_base: Instances serving the baseline.
        floor: The policy's base floor on the HL ratio (1.10).
        z: How many host-noise sds the shift must clear (3 in §9).
    """
    if tau is None or k_new < 1 or k_base < 1:
        return floor
    return max(floor, math.exp(z * tau * math.sqrt(1.0 / k_new + 1.0 / k_base)))


def cluster_aware_p(
    *,
    p_mwu: float,
    ratio: float,
    sigma: float,
    n_new: int,
    n_base: int,
    tau: float | None,
    k_new: int,
    k_base: int,
    tau_dof: int = 0,
    tau_mean_square: float | None = None,
) -> float:
    """Latency p-value that also allows for host noise (§9).

    p = max(p_MWU, P(T_ν > ln r̂ / √V)), V = SE²_HL + τ̂²·c, SE²_HL = (π/3)·σ̂²·(1/n_b + 1/n_n),
    c = 1/k_n + 1/k_b. With ``tau_dof`` and ``tau_mean_square`` (:class:`TauEstimate`), T has
    the Welch-Satterthwaite degrees of freedom ν = V²·dof / (c·MS)²: τ̂ comes from a handful of
    instances (4 degrees of freedom with 3 pods a version), so when host noise is a large part
    of V the ratio is referred to a t distribution rather than the normal, as for any variance
    estimated from few clusters. Without them (or with ν huge) T is normal. Without τ̂ (or with
    no instance in a version) p_MWU is returned unchanged.
    """
    if tau is None or k_new < 1 or k_base < 1:
        return p_mwu
    c = 1.0 / k_new + 1.0 / k_base
    variance = math.pi / 3.0 * sigma**2 * (1.0 / n_new + 1.0 / n_base) + tau**2 * c
    if variance <= 0.0:
        return p_mwu
    z = math.log(ratio) / math.sqrt(variance)
    if tau_dof <= 0 or not tau_mean_square:
        return max(p_mwu, normal_sf(z))
    nu = variance**2 * tau_dof / (c * tau_mean_square) ** 2
    return max(p_mwu, student_t_sf(z, nu))
