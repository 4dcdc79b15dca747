"""feedbot.analysis.stats against scipy (where scipy has the same test) and by its properties."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sp

from feedbot.analysis import stats
from feedbot.analysis.stats import dist as stats_dist
from feedbot.analysis.stats import shift as stats_shift
from feedbot.policy import DetectionPolicy


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- distributions -------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1e-12, 1e-6, 2e-4, 0.01, 0.02425, 0.3, 0.5, 0.8, 0.975, 1 - 1e-9])
def test_normal_ppf_matches_scipy(p):
    assert stats.normal_ppf(p) == pytest.approx(sp.norm.ppf(p), rel=1e-12, abs=1e-12)


def test_binomial_and_hypergeometric_tails_match_scipy():
    rng = _rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 3000))
        p = float(rng.uniform(0.001, 0.999))
        x = int(rng.integers(0, n + 1))
        assert stats_dist.binomial_sf(x, n, p) == pytest.approx(sp.binom.sf(x - 1, n, p), rel=1e-9)
        assert stats_dist.binomial_cdf(x, n, p) == pytest.approx(sp.binom.cdf(x, n, p), rel=1e-9)
        total, good = n + 50, int(rng.integers(0, n + 50))
        ref = sp.hypergeom.sf(x - 1, total, good, n)
        assert stats_dist.hypergeom_sf(x, total, good, n) == pytest.approx(
            ref, rel=1e-9, abs=1e-300
        )


# --- Mann-Whitney ----------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(5, 7), (30, 40), (300, 200), (2000, 50)])
@pytest.mark.parametrize("alternative", ["greater", "less"])
@pytest.mark.parametrize("rounding", [None, 1])
def test_mann_whitney_asymptotic_matches_scipy(sizes, alternative, rounding):
    rng = _rng(sum(sizes))
    new, base = rng.lognormal(0.1, 0.5, sizes[0]), rng.lognormal(0.0, 0.5, sizes[1])
    if rounding is not None:  # many ties
        new, base = np.round(new, rounding), np.round(base, rounding)
    ours = stats.mann_whitney(new, base, alternative=alternative, method="asymptotic")
    ref = sp.mannwhitneyu(new, base, alternative=alternative, method="asymptotic")
    assert ours.u == ref.statistic
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (ours.n_new, ours.n_base, ours.method) == (sizes[0], sizes[1], "asymptotic")


@pytest.mark.parametrize("sizes", [(5, 7), (8, 3), (10, 12), (4, 40)])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_mann_whitney_exact_matches_scipy_without_ties(sizes, alternative):
    rng = _rng(sizes[0] * 100 + sizes[1])
    new, base = rng.normal(0.5, 1, sizes[0]), rng.normal(0, 1, sizes[1])
    ours = stats.mann_whitney(new, base, alternative=alternative, method="exact")
    ref = sp.mannwhitneyu(new, base, alternative=alternative, method="exact")
    assert ours.method == "exact"
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)


def test_mann_whitney_exact_with_ties_matches_full_enumeration():
    new, base = np.array([3.0, 3.0, 5.0, 7.0, 7.0]), np.array([1.0, 3.0, 3.0, 5.0, 2.0, 7.0])
    pooled, n1 = np.concatenate([new, base]), new.size
    ranks = sp.rankdata(pooled)
    observed = ranks[:n1].sum()
    sums = [ranks[list(c)].sum() for c in itertools.combinations(range(pooled.size), n1)]
    expected = np.mean(np.array(sums) >= observed - 1e-9)
    result = stats.mann_whitney(new, base)  # auto: small samples go exact
    assert result.method == "exact"
    assert result.p == pytest.approx(expected, rel=1e-12)


def test_mann_whitney_auto_switches_to_normal_for_large_samples():
    rng = _rng(2)
    assert stats.mann_whitney(rng.normal(size=11), rng.normal(size=500)).method == "asymptotic"


def test_mann_whitney_all_tied_is_not_a_test():
    result = stats.mann_whitney([2.0] * 40, [2.0] * 50)
    assert (result.p, result.method, result.cles) == (1.0, "all_tied", 0.5)


def test_mann_whitney_symmetry_and_range():
    rng = _rng(3)
    for _ in range(20):
        a, b = rng.lognormal(0, 0.5, 60), rng.lognormal(0.05, 0.5, 80)
        ab, ba = stats.mann_whitney(a, b), stats.mann_whitney(b, a, alternative="less")
        assert ab.p == pytest.approx(ba.p, rel=1e-12)
        assert ab.u + ba.u == a.size * b.size
        assert 0.0 <= ab.p <= 1.0 and 0.0 <= ab.cles <= 1.0


def test_mann_whitney_p_falls_as_the_shift_grows():
    rng = _rng(4)
    base, noise = rng.lognormal(0, 0.5, 500), rng.lognormal(0, 0.5, 500)
    ps = [stats.mann_whitney(noise * r, base).p for r in (0.9, 1.0, 1.05, 1.1, 1.2, 1.5)]
    assert ps == sorted(ps, reverse=True)


def test_mann_whitney_rejects_bad_samples():
    with pytest.raises(ValueError, match="new"):
        stats.mann_whitney([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        stats.mann_whitney([1.0, math.nan], [1.0])


def test_null_p_values_are_uniform_over_seeds():
    rng = _rng(5)
    ps = np.array(
        [
            stats.mann_whitney(rng.lognormal(0, 0.5, 200), rng.lognormal(0, 0.5, 200)).p
            for _ in range(400)
        ]
    )
    assert sp.kstest(ps, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09


# --- Hodges-Lehmann -------------------------------------------------------------------------


def test_hodges_lehmann_matches_brute_force_pairs():
    rng = _rng(6)
    new, base = rng.normal(0.3, 1, 40), rng.normal(0, 1, 50)
    diffs = np.sort((new[:, None] - base[None, :]).ravel())
    estimate, low, high = stats.hodges_lehmann_shift(new, base)
    k = math.floor(diffs.size / 2 - 1.959963984540054 * math.sqrt(40 * 50 * 91 / 12))
    assert estimate == pytest.approx(np.median(diffs))
    assert (low, high) == (diffs[k], diffs[diffs.size - 1 - k])


@pytest.mark.parametrize("rounding", [None, 2])
def test_hodges_lehmann_selection_equals_materialised_pairs(monkeypatch, rounding):
    rng = _rng(7)
    new, base = rng.lognormal(0.1, 0.5, 900), rng.lognormal(0, 0.5, 700)
    if rounding is not None:
        new, base = np.round(new, rounding) + 0.01, np.round(base, rounding) + 0.01
    full = stats.hodges_lehmann_ratio(new, base)
    monkeypatch.setattr(stats_shift, "PAIR_LIMIT", 1000)
    assert stats.hodges_lehmann_ratio(new, base) == full


def test_hodges_lehmann_detects_twenty_percent_on_lognormal():
    rng = _rng(8)
    new, base = rng.lognormal(0, 0.5, 2000) * 1.2, rng.lognormal(0, 0.5, 2000)
    shift = stats.hodges_lehmann_ratio(new, base)
    assert shift.low is not None and shift.high is not None
    assert shift.low <= 1.2 <= shift.high
    assert stats.mann_whitney(new, base).p < 1e-10


def test_hodges_lehmann_ci_covers_the_true_ratio():
    rng = _rng(9)
    hits = 0
    for _ in range(200):
        est = stats.hodges_lehmann_ratio(rng.lognormal(0, 0.5, 80) * 1.1, rng.lognormal(0, 0.5, 80))
        hits += est.low <= 1.1 <= est.high  # type: ignore[operator]
    assert 0.91 <= hits / 200 <= 0.99


def test_hodges_lehmann_too_small_for_a_ci_and_bad_input():
    shift = stats.hodges_lehmann_ratio([1.0, 2.0], [1.5, 2.5])
    assert (shift.low, shift.high) == (None, None)
    with pytest.raises(ValueError, match="positive"):
        stats.hodges_lehmann_ratio([0.0, 1.0], [1.0])


# --- quantiles and tails ----------------------------------------------------------------------


def test_quantile_ci_minimum_sizes_from_the_brief():
    assert [stats.min_samples_for_quantile_ci(q) for q in (0.95, 0.99, 0.999)] == [72, 368, 3688]
    x = _rng(10).lognormal(0, 0.5, 368)
    assert stats.quantile_ci(x[:367], 0.99).low is None
    est = stats.quantile_ci(x, 0.99)
    assert est.low is not None and est.high is not None
    assert est.low <= est.value <= est.high


def test_quantile_ci_covers_the_true_quantile():
    rng = _rng(11)
    truth = math.exp(0.5 * sp.norm.ppf(0.95))
    covered = [
        est.low <= truth <= est.high  # type: ignore[operator]
        for est in (stats.quantile_ci(rng.lognormal(0, 0.5, 400), 0.95) for _ in range(300))
    ]
    assert np.mean(covered) >= 0.93


def test_quantiles_defaults_and_ratio():
    x = _rng(12).lognormal(0, 0.5, 2000)
    assert [e.q for e in stats.quantiles(x)] == [0.5, 0.95, 0.99]
    ratio, low, high = stats.quantile_ratio(x * 1.3, x, 0.95)
    assert ratio == pytest.approx(1.3) and low is not None and high is not None
    assert low < 1.3 < high


def test_tail_exceedance_test_is_fisher_on_the_pooled_quantile():
    rng = _rng(13)
    new, base = rng.lognormal(0, 0.5, 1000), rng.lognormal(0, 0.5, 1200)
    new[new > np.quantile(new, 0.95)] *= 1.5
    result = stats.tail_exceedance_test(new, base, 0.95)
    table = [
        [result.exceed_new, 1000 - result.exceed_new],
        [result.exceed_base, 1200 - result.exceed_base],
    ]
    assert result.p == pytest.approx(sp.fisher_exact(table, alternative="greater").pvalue)


def test_tail_exceedance_detects_t50_at_3000():
    rng = _rng(14)
    new, base = rng.lognormal(0, 0.5, 3000), rng.lognormal(0, 0.5, 3000)
    new[new > np.quantile(new, 0.95)] *= 1.5
    assert stats.tail_exceedance_test(new, base, 0.99).p < 1e-4
    assert stats.tail_exceedance_test(base, rng.lognormal(0, 0.5, 3000), 0.99).p > 1e-3


# --- counts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table", [(7, 1000, 1, 1200), (0, 500, 3, 500), (3, 3, 0, 10), (40, 8000, 8, 8000)]
)
def test_fisher_matches_scipy(table):
    en, nn, eb, nb = table
    ref = sp.fisher_exact([[en, nn - en], [eb, nb - eb]], alternative="greater").pvalue
    assert stats.fisher_greater(en, nn, eb, nb).p == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("counts", [(12, 5000, 3, 6000), (0, 10, 5, 10), (9, 1.0, 1, 4.0)])
def test_conditional_binomial_matches_binomtest(counts):
    en, xn, eb, xb = counts
    ref = sp.binomtest(en, en + eb, xn / (xn + xb), alternative="greater").pvalue
    result = stats.conditional_binomial_greater(en, xn, eb, xb)
    assert result.p == pytest.approx(ref, rel=1e-9)
    assert result.rate_ratio == pytest.approx((en / xn) / (eb / xb))


def test_new_type_p_and_minimum_counts_from_the_brief():
    assert stats.new_type_test(7, 100, 100).p == pytest.approx(0.5**7)
    assert stats.new_type_test(3, 100, 400).p == pytest.approx(0.2**3)
    q = DetectionPolicy().looks.q_per_look
    table = {(0.5, 1): 7, (0.5, 10): 10, (0.5, 30): 12, (0.2, 1): 3, (0.2, 30): 5, (1 / 11, 30): 4}
    for (share, m), k in table.items():
        assert stats.min_count_for_new_type(share, q=q, candidates=m) == k


def test_rate_ratio_ci_is_clopper_pearson_transformed():
    ci = sp.binomtest(12, 15, 5000 / 11000).proportion_ci(0.95, method="exact")
    low, high = stats.rate_ratio_ci(12, 5000, 3, 6000)
    assert low == pytest.approx(ci.low / (1 - ci.low) * 6000 / 5000, rel=1e-6)
    assert high == pytest.approx(ci.high / (1 - ci.high) * 6000 / 5000, rel=1e-6)
    assert stats.rate_ratio_ci(4, 100, 0, 100)[1] is None


def test_reach_bounds_and_stopped_being_reached():
    assert stats.reach_upper_bound(100) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert stats.reach_upper_bound(1000) == pytest.approx(3 / 1000, rel=0.01)
    ref = sp.binomtest(2, 100).proportion_ci(0.90, method="exact").high
    assert stats.reach_upper_bound(100, hits=2) == pytest.approx(ref, rel=1e-6)
    result = stats.reach_test(0, 1000, 10, 1000)
    assert result.expected_hits == 10.0
    assert result.p_stopped == pytest.approx(0.5**10)
    assert result.p_stopped >= math.exp(-result.expected_hits)
    assert stats.reach_test(0, 300, 0, 300).p_stopped is None


# --- multiplicity --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["bh", "by"])
def test_bh_matches_scipy(method):
    p = _rng(15).uniform(size=60) ** 3
    ours = stats.bh_qvalues(p, method=method)
    np.testing.assert_allclose(ours, sp.false_discovery_control(p, method=method), rtol=1e-12)


def test_bh_reject_is_the_step_up_rule():
    rng = _rng(16)
    for _ in range(50):
        p, q = rng.uniform(size=30) ** 4, 0.0125
        order = np.sort(p)
        passing = np.nonzero(order <= np.arange(1, 31) * q / 30)[0]
        cutoff = order[passing[-1]] if passing.size else -1.0
        np.testing.assert_array_equal(stats.bh_reject(p, q), p <= cutoff)
    assert stats.bh_qvalues([]).size == 0


def test_bonferroni_over_looks():
    assert stats.bonferroni(0.05, 4) == 0.0125
    assert DetectionPolicy().looks.q_per_look == 0.0125


def test_pocock_spending_is_lan_demets_and_spends_early():
    # α·ln(1 + (e − 1)·t): at t = 1 all of α, at the first of four looks about 36% of it.
    assert stats.spent(0.015, 1.0) == pytest.approx(0.015)
    assert stats.spent(0.015, 0.25) == pytest.approx(0.015 * math.log(1 + (math.e - 1) / 4))
    bounds = [stats.spending_boundary(0.015, k, 4) for k in range(1, 5)]
    assert bounds == pytest.approx([0.00536, 0.00394, 0.00312, 0.00258], abs=1e-5)
    assert sum(bounds) == pytest.approx(0.015)
    assert bounds[0] > 0.015 / 4 > bounds[-1]  # more than an even split early, less late


def test_obrien_fleming_spending_matches_its_closed_form_and_spends_late():
    # 2 − 2Φ(z_{α/2}/√t), checked against scipy's normal distribution.
    for t in (0.25, 0.5, 0.75, 1.0):
        expected = 2 * sp.norm.sf(sp.norm.isf(0.015 / 2) / math.sqrt(t))
        assert stats.spent(0.015, t, "obrien_fleming") == pytest.approx(expected, rel=1e-6)
    bounds = [stats.spending_boundary(0.015, k, 4, "obrien_fleming") for k in range(1, 5)]
    assert bounds[0] < 1e-5 and bounds == sorted(bounds)
    assert sum(bounds) == pytest.approx(0.015)


def test_spending_boundary_edges_and_bad_input():
    assert stats.spending_boundary(0.02, 5, 4) == 0.0  # past the schedule
    assert stats.spending_boundary(0.02, 1, 1) == pytest.approx(0.02)
    assert stats.spent(0.02, 0.0) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        stats.spent(1.5, 0.5)
    with pytest.raises(ValueError, match="look"):
        stats.spending_boundary(0.02, 0, 4)
    with pytest.raises(ValueError, match="spending function"):
        stats.spent(0.02, 0.5, "linear")  # type: ignore[arg-type]


# --- power -----------------------------------------------------------------------------------


def test_latency_mde_matches_the_brief():
    # §7.7: +20% at 300 spans and +4.6% at 5k (σ = 0.5, α = 2·10⁻⁴ one-sided).
    assert stats.mwu_min_detectable_ratio(300, 300, sigma=0.5, alpha=2e-4) == pytest.approx(
        1.20, abs=0.005
    )
    assert stats.mwu_min_detectable_ratio(5000, 5000, sigma=0.5, alpha=2e-4) == pytest.approx(
        1.046, abs=0.002
    )
    assert stats.mwu_min_detectable_ratio(5000, 5000, sigma=0.5, alpha=2e-4, floor=1.1) == 1.1
    assert stats.mwu_min_detectable_ratio(2, 2, sigma=0.5, alpha=2e-4) == math.inf
    assert stats.mwu_sample_size(1.10, sigma=0.5, alpha=0.025) in (455, 456)


def test_error_rate_mde_matches_the_brief():
    for base, n, ratio in [(0.001, 1000, 12.7), (0.001, 10_000, 3.0), (0.01, 100_000, 1.15)]:
        got = stats.error_rate_min_detectable_ratio(base, n, n, alpha=0.01)
        assert got == pytest.approx(ratio, rel=0.02)


def test_robust_log_sigma():
    assert stats.robust_log_sigma(_rng(17).lognormal(0, 0.5, 20_000)) == pytest.approx(
        0.5, rel=0.03
    )


# --- host spread ----------------------------------------------------------------------------


def _cells(rng, tau, groups=10, instances=6, spans=300):
    cells = []
    offsets = rng.normal(0, tau, instances)
    for _ in range(groups):
        ids = rng.integers(0, instances, spans)
        durations = rng.lognormal(0, 0.5, spans) * np.exp(offsets[ids])
        cells.append(stats.instance_cell(durations, ids))
    return cells


def test_pooled_tau_recovers_the_host_spread():
    rng = _rng(18)
    assert stats.pooled_tau(_cells(rng, 0.05, instances=20, spans=2000)) == pytest.approx(
        0.05, abs=0.015
    )
    assert stats.pooled_tau(_cells(rng, 0.0)) < 0.03
    assert stats.pooled_tau(_cells(rng, 0.05, instances=1)) is None


def _versions(rng, tau, *, instances=3, spans=(900, 500, 330, 250, 190, 150, 120, 100, 80, 60)):
    """Two versions' cells: every group shares its version's instance offsets (sd ``tau``)."""
    out = []
    for version in ("old", "new"):
        offsets = rng.normal(0, tau, instances)
        cells = []
        for n in spans:
            ids = rng.integers(0, instances, n)
            durations = rng.lognormal(0, 0.55, n) * np.exp(offsets[ids])
            cells.append(stats.instance_cell(durations, np.array([f"{version}-{i}" for i in ids])))
        out.append(cells)
    return out


def test_tau_across_groups_recovers_the_host_spread():
    rng = _rng(19)
    many = _versions(rng, 0.05, instances=40, spans=(4000,) * 10)
    assert stats.pooled_tau_across(many) == pytest.approx(0.05, abs=0.012)
    assert stats.pooled_tau_across(_versions(rng, 0.0)) < 0.03
    assert stats.pooled_tau_across(_versions(rng, 0.05, instances=1)) is None


def test_tau_across_groups_is_less_noisy_than_per_group_with_three_instances():
    """Issue 14: 3 instances a version, a few hundred spans a group, 2% spread. Per group the
    instance medians' sampling noise (sd ≈ 0.07) swamps τ = 0.02; over all groups it does not."""
    rng = _rng(20)
    across, per_group = [], []
    for _ in range(60):
        versions = _versions(rng, 0.02)
        across.append(stats.pooled_tau_across(versions))
        per_group.append(stats.pooled_tau([*versions[0], *versions[1]]))
    assert np.percentile(across, 90) < 0.045 < np.percentile(per_group, 90)
    assert abs(np.median(across) - 0.02) < abs(np.median(per_group) - 0.02)


def test_instance_cell_labels_match_its_medians():
    ids = np.array(["b", "a", "b", "a", "c"])
    cell = stats.instance_cell([1.0, 2.0, 3.0, 4.0, 5.0], ids)
    assert cell.labels == ("a", "b", "c")
    # Each instance's median of log-durations: the geometric mean of an even pair.
    assert cell.log_medians.tolist() == pytest.approx(np.log([8**0.5, 3**0.5, 5.0]).tolist())


def test_host_floor_and_cluster_aware_p():
    assert stats.host_noise_floor(None, 3, 3) == 1.10
    assert stats.host_noise_floor(0.05, 3, 3) == pytest.approx(
        math.exp(3 * 0.05 * math.sqrt(2 / 3))
    )
    p = stats.cluster_aware_p(
        p_mwu=1e-9, ratio=1.1, sigma=0.5, n_new=3000, n_base=3000, tau=0.05, k_new=3, k_base=3
    )
    assert 1e-9 < p < 0.05
    unchanged = stats.cluster_aware_p(
        p_mwu=0.2, ratio=1.1, sigma=0.5, n_new=3000, n_base=3000, tau=None, k_new=3, k_base=3
    )
    assert unchanged == 0.2


def test_policy_defaults_come_from_the_brief():
    policy = DetectionPolicy()
    assert (policy.latency.min_samples, policy.latency.ratio_floor) == (30, 1.10)
    assert (policy.tail.p95_min_samples, policy.tail.p99_min_samples) == (200, 1000)
    assert (policy.errors.min_errors_new, policy.errors.rate_ratio_floor) == (3, 1.5)
    assert (policy.n_plus_one.min_repeats, policy.n_plus_one.min_total_ms) == (5, 50.0)
    assert policy.looks.confirm_looks == 2
    assert (policy.looks.confirm_alpha, policy.looks.confirm_spending) == (0.015, "pocock")
    assert policy.looks.lone_test_level(60) == pytest.approx(0.0125 / 60)


# --- issue 14: τ̂'s own uncertainty, Tarone's screen -----------------------------------------


@pytest.mark.parametrize("df", [1.0, 2.5, 4.0, 8.7, 40.0, 1e4])
@pytest.mark.parametrize("t", [-3.0, -0.4, 0.0, 0.5, 2.0, 3.7, 8.0, 30.0])
def test_student_t_sf_matches_scipy(t, df):
    assert stats.student_t_sf(t, df) == pytest.approx(sp.t.sf(t, df), rel=1e-9, abs=1e-300)


def test_student_t_sf_edges():
    assert stats.student_t_sf(3.0, math.inf) == stats.normal_sf(3.0)
    with pytest.raises(ValueError, match="df"):
        stats.student_t_sf(1.0, 0.0)


def _null_draw(rng, tau, instances=3, new_scale=1.0):
    """Both versions' cells (10 groups sharing each version's instance offsets, no change) and
    the raw durations of the group with 720 baseline and 330·new_scale new spans."""
    spans = (900, 500, 330, 250, 190, 150, 120, 100, 80, 60)
    versions, raw = [], []
    for version, scale in (("old", 720 / 330), ("new", new_scale)):
        offsets = rng.normal(0, tau, instances)
        cells = []
        for g, n in enumerate(spans):
            n = round(n * scale)
            ids = rng.integers(0, instances, n)
            durations = rng.lognormal(0, 0.55, n) * np.exp(offsets[ids])
            cells.append(stats.instance_cell(durations, np.array([f"{version}-{i}" for i in ids])))
            if g == 2:
                raw.append(durations)
        versions.append(cells)
    return versions, raw


def test_tau_across_reports_its_degrees_of_freedom_and_mean_square():
    rng = _rng(21)
    versions, _ = _null_draw(rng, 0.02)
    estimate = stats.tau_across(versions)
    assert estimate is not None
    assert estimate.tau == stats.pooled_tau_across(versions)
    assert estimate.dof == 4  # (3 − 1) per version
    # The mean square is τ̂² plus the offsets' sampling variance, so never below τ̂².
    assert estimate.mean_square > estimate.tau**2
    assert stats.tau_across(_null_draw(rng, 0.02, instances=1)[0]) is None


def test_cluster_aware_p_with_t_reference_is_welch_satterthwaite():
    args = {
        "p_mwu": 1e-12,
        "ratio": 1.12,
        "sigma": 0.55,
        "n_new": 330,
        "n_base": 720,
        "k_new": 3,
        "k_base": 3,
    }
    c = 1 / 3 + 1 / 3
    tau, dof, ms = 0.03, 4, 0.0012
    variance = math.pi / 3 * 0.55**2 * (1 / 330 + 1 / 720) + tau**2 * c
    nu = variance**2 * dof / (c * ms) ** 2
    expected = sp.t.sf(math.log(1.12) / math.sqrt(variance), nu)
    p_t = stats.cluster_aware_p(**args, tau=tau, tau_dof=dof, tau_mean_square=ms)
    p_normal = stats.cluster_aware_p(**args, tau=tau)
    assert p_t == pytest.approx(expected, rel=1e-9)
    assert p_t > p_normal
    # Many degrees of freedom: back to the normal; the MWU p still bounds it from below.
    many = stats.cluster_aware_p(**args, tau=tau, tau_dof=10**9, tau_mean_square=ms)
    assert many == pytest.approx(p_normal, rel=1e-4)
    loud = {**args, "p_mwu": 0.3}
    assert stats.cluster_aware_p(**loud, tau=tau, tau_dof=dof, tau_mean_square=ms) == 0.3


def test_t_reference_holds_the_level_that_the_normal_breaks_at_five_percent_spread():
    """3 pods a version, 5% host spread, no change, the fourth look (8x the new spans): host
    noise is most of the variance, τ̂ from 4 degrees of freedom is often well below τ, and the
    normal reference then rejects far more often than its level says; the t reference does not."""
    rng = _rng(22)
    level, reps = 0.01, 600
    normal, student = 0, 0
    for _ in range(reps):
        versions, (base, new) = _null_draw(rng, 0.05, new_scale=8.0)
        estimate = stats.tau_across(versions)
        assert estimate is not None
        common = {**_shift_args(new, base, instances=3), "tau": estimate.tau}
        normal += stats.cluster_aware_p(**common) <= level
        t_ref = {"tau_dof": estimate.dof, "tau_mean_square": estimate.mean_square}
        student += stats.cluster_aware_p(**common, **t_ref) <= level
    assert normal / reps > 1.8 * level
    print(f"normal {normal / reps:.4f}, t {student / reps:.4f}")
    assert student < normal
    assert student / reps <= 1.5 * level


def _shift_args(new: np.ndarray, base: np.ndarray, *, instances: int) -> dict[str, Any]:
    """cluster_aware_p's arguments for a null draw, before τ: the shift's size and the counts."""
    return {
        "p_mwu": 0.0,
        "ratio": stats.hodges_lehmann_ratio(new, base).ratio,
        "sigma": stats.robust_log_sigma(np.concatenate([new, base])),
        "n_new": new.size,
        "n_base": base.size,
        "k_new": instances,
        "k_base": instances,
    }


def test_tarone_screen_on_known_minimum_p_values():
    # K = 1: 4 tests reach 0.01; K = 2: 4 reach 0.005; K = 3: 3 reach 0.0033 ≤ 3, so K = 3.
    p_min = [0.0, 0.0, 0.5, 0.001, 0.004]
    assert stats.tarone_screen(p_min, 0.01).tolist() == [True, True, False, True, False]
    assert stats.tarone_screen([0.0] * 5, 0.01).all()
    assert stats.tarone_screen([0.2, 0.3], 0.01).tolist() == [False, False]
    assert stats.tarone_screen([], 0.01).size == 0


# --- issue 14: an upper confidence bound on τ where τ̂ has few degrees of freedom ------------


@pytest.mark.parametrize("df", [1.0, 2.0, 3.0, 4.0, 6.0, 17.5, 60.0])
@pytest.mark.parametrize("p", [0.01, 0.1, 0.25, 0.5, 0.9, 0.999])
def test_chi2_ppf_and_cdf_match_scipy(p, df):
    x = stats_dist.chi2_ppf(p, df)
    assert x == pytest.approx(sp.chi2.ppf(p, df), rel=1e-9)
    assert stats_dist.chi2_cdf(x, df) == pytest.approx(p, rel=1e-9)
    assert stats_dist.chi2_cdf(0.0, df) == 0.0
    with pytest.raises(ValueError, match="p must be"):
        stats_dist.chi2_ppf(1.0, df)


def test_tau_upper_bound_is_the_chi_square_bound_and_fades_with_instances():
    estimate = stats.TauEstimate(tau=0.0, dof=2, mean_square=0.0004, sampling=0.0005)
    assert estimate.upper(0.0) == 0.0  # off: τ̂ itself, 0 as often as the spread is small
    bound = math.sqrt(2 * 0.0004 / sp.chi2.ppf(0.1, 2) - 0.0005)
    assert estimate.upper(0.9) == pytest.approx(bound, rel=1e-9)
    assert estimate.upper(0.9) > estimate.upper(0.75) > 0.0
    # Never below τ̂, even when the chi-square bound is (a large τ̂ with much sampling noise).
    noisy = stats.TauEstimate(tau=0.05, dof=2, mean_square=0.003, sampling=0.05)
    assert noisy.upper(0.9) == 0.05
    # The same τ̂ and sampling variance, more instances: the bound comes down towards τ̂.
    excess = [
        stats.TauEstimate(0.03, dof, 0.0009 + 0.0005, 0.0005).upper(0.9) - 0.03
        for dof in (2, 4, 18, 400)
    ]
    assert excess == sorted(excess, reverse=True) and excess[-1] < 0.1 * excess[0]


def test_tau_across_reports_the_sampling_variance_it_subtracted():
    versions, _ = _null_draw(_rng(23), 0.05)
    estimate = stats.tau_across(versions)
    assert estimate is not None and estimate.sampling > 0.0
    assert estimate.tau**2 == pytest.approx(max(0.0, estimate.mean_square - estimate.sampling))


def test_the_upper_bound_holds_the_level_where_tau_hat_has_two_degrees_of_freedom():
    """2 instances a version (the CI A/A test), 10% host spread, no change: τ̂ from 2 degrees
    of freedom is 0 or near it in a third of the draws, and the normal reference with τ̂ then
    rejects several times its level; with τ's 90% upper bound in its place it does not."""
    rng = _rng(24)
    level, reps = 0.01, 400
    plain, bounded = 0, 0
    for _ in range(reps):
        versions, (base, new) = _null_draw(rng, 0.10, instances=2, new_scale=3.0)
        estimate = stats.tau_across(versions)
        assert estimate is not None and estimate.dof == 2
        common = _shift_args(new, base, instances=2)
        plain += stats.cluster_aware_p(**common, tau=estimate.tau) <= level
        bounded += stats.cluster_aware_p(**common, tau=estimate.upper(0.9)) <= level
    print(f"tau-hat {plain / reps:.4f}, 90% bound {bounded / reps:.4f}")
    assert plain / reps > 3 * level
    assert bounded / reps <= 1.5 * level


@pytest.mark.parametrize(
    ("f", "df1", "df2"), [(0.3, 4, 10), (1.0, 4, 4), (3.2, 2, 30), (8.0, 4, 14)]
)
def test_f_sf_matches_scipy(f, df1, df2):
    assert stats_dist.f_sf(f, df1, df2) == pytest.approx(sp.f.sf(f, df1, df2), rel=1e-9)
    assert stats_dist.f_sf(0.0, df1, df2) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        stats_dist.f_sf(f, 0, df2)


def test_tau_across_is_its_versions_parts_pooled():
    rng = _rng(40)
    versions, _ = _null_draw(rng, 0.05)
    parts = stats.tau_by_version(versions)
    assert [p.dof for p in parts if p is not None] == [2, 2]
    whole = stats.tau_across(versions)
    pooled = stats.combine_tau([p for p in parts if p is not None])
    assert whole is not None and pooled is not None
    assert (whole.tau, whole.dof) == pytest.approx((pooled.tau, pooled.dof), rel=1e-12)
    assert whole.mean_square == pytest.approx(pooled.mean_square, rel=1e-12)


def test_history_pools_by_degrees_of_freedom_as_a_direct_computation():
    current = stats.TauEstimate(0.01, 4, 0.0011, 0.0010)
    earlier = [
        stats.TauEstimate(0.05, 2, 0.0036, 0.0011),
        stats.TauEstimate(0.04, 4, 0.0026, 0.0009),
        stats.TauEstimate(0.0, 2, 0.0008, 0.0012),  # below its noise: τ̂ = 0, still counted
    ]
    parts = [current, *earlier]
    dof = sum(p.dof for p in parts)
    direct = sum(p.dof * (p.mean_square - p.sampling) for p in parts) / dof
    result = stats.pool_with_history(current, earlier)
    assert (result.earlier, result.changed_p, result.estimate.dof) == (3, None, 12)
    assert result.estimate.tau == pytest.approx(math.sqrt(direct), rel=1e-12)
    assert result.estimate.mean_square == pytest.approx(
        sum(p.dof * p.mean_square for p in parts) / dof, rel=1e-12
    )
    # Pooling removes the ≤ 2-df upper bound's reason: 12 degrees of freedom.
    assert stats.pool_with_history(current, []).estimate == current


def test_a_much_wider_spread_than_the_history_sets_the_history_aside():
    """The infrastructure changed: this check's mean square is far above what the history's τ̂²
    plus this check's own sampling variance predicts (one-sided F at 1%)."""
    history = [stats.TauEstimate(0.03, 4, 0.0009 + 0.001, 0.001)] * 5  # 20 df, τ = 0.03
    wide = stats.TauEstimate(0.15, 4, 0.0225 + 0.001, 0.001)
    kept = stats.pool_with_history(wide, history)
    expected = 0.0009 + 0.001
    p = sp.f.sf((0.0225 + 0.001) / expected, 4, 20)
    assert p < 0.01
    assert kept.estimate == wide and kept.earlier == 0 and kept.offered == 5
    assert kept.changed_p == pytest.approx(p, rel=1e-9)
    # A narrower spread is no reason to doubt the history; nor a moderately wider one.
    for tau in (0.0, 0.05):
        near = stats.TauEstimate(tau, 4, tau**2 + 0.001, 0.001)
        assert stats.pool_with_history(near, history).earlier == 5
    # A check with fewer spans (a larger sampling variance) is not mistaken for a wider spread.
    sparse = stats.TauEstimate(0.03, 4, 0.0009 + 0.02, 0.02)
    assert stats.pool_with_history(sparse, history).earlier == 5
