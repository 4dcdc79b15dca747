"""False alarms and power of the proposed policy on simulated deploys, and the cost of MWU + HL.

Each simulated deploy has several span groups with lognormal latency (σ = 0.5, group medians
log-uniform on 5-200 ms), 3 instances per version whose log-latency offsets (sd = the host
spread) are shared by every group, and a 0.1% error rate. One look is analysed the way §9 of
detection-methods.md proposes: one-sided Mann-Whitney made cluster-aware with the pooled τ̂,
HL ratio above the host-raised floor and Δmedian ≥ 1 ms; exceedance tests on p95/p99 with a
quantile ratio ≥ 1.2; the exact conditional error test with its floors; BH at q/looks over all
tests of the deploy. Rates are per deploy (≥ 1 finding), at one look, before confirmation. The
rows marked "issue 14" estimate τ̂ from instance offsets over all groups, refer the latency z to a
t with τ̂'s Welch-Satterthwaite degrees of freedom, and screen out error tests whose totals allow
no significant split (Tarone): the policy's default Tarone screen with its
``host_guard.satterthwaite`` switch on. Improvements are not tested here at all.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from feedbot.analysis import stats
from feedbot.policy import DetectionPolicy

POLICY = DetectionPolicy()
SIGMA = 0.5
INSTANCES = 3  # per version: 6 instances in all


@dataclass(frozen=True)
class Scenario:
    n: int
    spread: float
    groups: int = 10
    shift: float = 1.0  # latency ratio injected into group 0
    error_rate_new: float = 0.001  # error rate of group 0 in the new version
    guard: bool = True  # False: naive MWU + BH, no floors
    #: Issue 14's choices: τ̂ from instance offsets over all groups, the latency z referred to a
    #: t with τ̂'s degrees of freedom (Welch-Satterthwaite), Tarone's screen on the error tests.
    t_ref: bool = False


@dataclass(frozen=True)
class _Cell:
    durations: np.ndarray
    instances: np.ndarray
    errors: int


def _cell(
    rng: np.random.Generator,
    n: int,
    median: float,
    offsets: np.ndarray,
    ratio: float,
    error_rate: float,
) -> _Cell:
    ids = rng.integers(0, offsets.size, n)
    durations = median * ratio * rng.lognormal(0.0, SIGMA, n) * np.exp(offsets[ids])
    return _Cell(durations, ids, int(rng.binomial(n, error_rate)))


def _latency_p(
    new: _Cell, base: _Cell, tau: float | None, s: Scenario, spread: stats.TauEstimate | None = None
) -> tuple[float, bool]:
    """The latency p-value and whether the effect clears its floors."""
    test = stats.mann_whitney(new.durations, base.durations)
    if not s.guard:
        return test.p, True
    shift = stats.hodges_lehmann_ratio(new.durations, base.durations)
    sigma = stats.robust_log_sigma(np.concatenate([new.durations, base.durations]))
    p = stats.cluster_aware_p(
        p_mwu=test.p,
        ratio=shift.ratio,
        sigma=sigma,
        n_new=s.n,
        n_base=s.n,
        tau=tau,
        k_new=INSTANCES,
        k_base=INSTANCES,
        tau_dof=spread.dof if spread is not None else 0,
        tau_mean_square=spread.mean_square if spread is not None else None,
    )
    floor = stats.host_noise_floor(
        tau, INSTANCES, INSTANCES, floor=POLICY.latency.ratio_floor, z=POLICY.host_guard.z
    )
    delta_ms = float(np.median(new.durations) - np.median(base.durations))
    return p, shift.ratio >= floor and delta_ms >= POLICY.latency.min_delta_median_ms


def _tail_tests(new: _Cell, base: _Cell, n: int) -> list[tuple[float, bool]]:
    out = []
    for q, minimum in ((0.95, POLICY.tail.p95_min_samples), (0.99, POLICY.tail.p99_min_samples)):
        if n >= minimum:
            p = stats.tail_exceedance_test(new.durations, base.durations, q).p
            ratio = float(np.quantile(new.durations, q) / np.quantile(base.durations, q))
            out.append((p, ratio >= POLICY.tail.ratio_floor))
    return out


def _error_test(new: _Cell, base: _Cell, n: int) -> tuple[float, bool, float]:
    """p, whether the effect clears its floors, and the smallest p these totals allow."""
    result = stats.conditional_binomial_greater(new.errors, n, base.errors, n)
    p_min = stats.conditional_binomial_greater(new.errors + base.errors, n, 0, n).p
    rules = POLICY.errors
    passes = (
        new.errors >= rules.min_errors_new
        and result.rate_ratio >= rules.rate_ratio_floor
        and result.rate_new - result.rate_base >= rules.min_rate_increase
    )
    return result.p, passes, p_min


def _deploy(rng: np.random.Generator, s: Scenario) -> tuple[bool, bool]:
    """Simulate and analyse one deploy: (any finding, a latency finding on group 0)."""
    offsets_new, offsets_base = (rng.normal(0.0, s.spread, INSTANCES) for _ in range(2))
    medians = np.exp(rng.uniform(np.log(5.0), np.log(200.0), s.groups))
    pairs = [
        (
            _cell(
                rng,
                s.n,
                m,
                offsets_new,
                s.shift if g == 0 else 1.0,
                s.error_rate_new if g == 0 else 0.001,
            ),
            _cell(rng, s.n, m, offsets_base, 1.0, 0.001),
        )
        for g, m in enumerate(medians)
    ]
    cells = [stats.instance_cell(c.durations, c.instances) for pair in pairs for c in pair]
    tau = stats.pooled_tau(cells)
    spread = None
    if s.t_ref:
        labelled = [
            [stats.instance_cell(c.durations, c.instances.astype(np.str_)) for c in version]
            for version in zip(*pairs, strict=True)
        ]
        spread = stats.tau_across(labelled)
        tau = spread.tau if spread is not None else None
    tests: list[tuple[int, str, float, bool]] = []
    floors: list[float] = []
    for g, (new, base) in enumerate(pairs):
        tests.append((g, "latency", *_latency_p(new, base, tau, s, spread)))
        floors.append(0.0)
        if s.guard:
            tests += [(g, "tail", p, ok) for p, ok in _tail_tests(new, base, s.n)]
            floors += [0.0] * (len(tests) - len(floors))
            p, ok, p_min = _error_test(new, base, s.n)
            tests.append((g, "errors", p, ok))
            floors.append(p_min)
    if s.t_ref:
        keep = stats.tarone_screen(floors, POLICY.looks.q_per_look)
        tests = [t for t, kept in zip(tests, keep.tolist(), strict=True) if kept]
    rejected = stats.bh_reject([t[2] for t in tests], POLICY.looks.q_per_look)
    found = [t for t, r in zip(tests, rejected, strict=True) if r and t[3]]
    return bool(found), any(t[0] == 0 and t[1] == "latency" for t in found)


def _rate(s: Scenario, deploys: int, seed: int, *, detect: bool) -> float:
    rng = np.random.default_rng(seed)
    hits = sum(_deploy(rng, s)[1 if detect else 0] for _ in range(deploys))
    return 100.0 * hits / deploys


def _timing(repeats: int) -> float:
    rng = np.random.default_rng(0)
    new, base = rng.lognormal(0.05, SIGMA, 50_000), rng.lognormal(0.0, SIGMA, 50_000)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats.mann_whitney(new, base)
        stats.hodges_lehmann_ratio(new, base)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    """Rows of (benchmark, figure, unit); ``postgres_admin`` is unused."""
    deploys = 40 if quick else 300
    alarms = [
        ("no host spread", Scenario(3000, 0.0)),
        ("2% host spread", Scenario(3000, 0.02)),
        ("5% host spread", Scenario(3000, 0.05)),
        (
            "2% host spread, issue 14 (tau across groups, t for tau, Tarone)",
            Scenario(3000, 0.02, t_ref=True),
        ),
        (
            "5% host spread, issue 14 (tau across groups, t for tau, Tarone)",
            Scenario(3000, 0.05, t_ref=True),
        ),
        ("2% host spread, naive MWU+BH", Scenario(3000, 0.02, guard=False)),
    ]
    rows = [
        (
            f"false-alarm rate, no change, n=3000, {label}, 10 groups, one look",
            _rate(s, deploys, 1, detect=False),
            "%",
        )
        for label, s in alarms
    ]
    power = [
        ("+20%, n=300", Scenario(300, 0.02, shift=1.2)),
        ("+20%, n=300, issue 14", Scenario(300, 0.02, shift=1.2, t_ref=True)),
        ("+20%, n=1000", Scenario(1000, 0.02, shift=1.2)),
        ("+10%, n=3000", Scenario(3000, 0.02, shift=1.1)),
        ("+50%, n=100", Scenario(100, 0.02, shift=1.5)),
    ]
    rows += [
        (
            f"detection power, {label}, 2% host spread, one look",
            _rate(s, deploys, 2, detect=True),
            "%",
        )
        for label, s in power
    ]
    rows.append(("Mann-Whitney + Hodges-Lehmann, n=50k per side, median", _timing(5), "ms"))
    return rows


if __name__ == "__main__":
    for name, value, unit in run("", quick=True):
        print(f"{name:<80} {value:>8.1f} {unit}")
