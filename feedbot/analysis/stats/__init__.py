"""The pure statistics feedbot's analysis is built on (numpy only; no I/O, no scipy).

One import point for ``compare.py`` and ``insights.py``; the code lives in one module per
concept. Section numbers (§) refer to shared/reference/detection-methods.md.

* ``stats_rank``: one-sided Mann-Whitney U (§7.1), exact for small samples; van Elteren's
  stratified version (instance warm-up).
* ``stats_shift``: Hodges-Lehmann ratio with a Moses CI, exact at any n without n·m memory (§7.2).
* ``stats_quantile``: p50/p95/p99 with order-statistic CIs and the exceedance tail test (§7.3).
* ``stats_counts``: Fisher / conditional binomial error tests, new exception types, reach (§7.4,
  §7.5).
* ``stats_multi``: Benjamini-Hochberg q-values, Bonferroni across looks, and alpha-spending
  boundaries (Pocock, O'Brien-Fleming) for confirmation at once (§7.6).
* ``stats_power``: minimum detectable effects and sample sizes (§7.7).
* ``stats_hosts``: the host-spread guard, τ̂, the raised floor and the cluster-aware p (§9).
* ``stats_dist``: normal, binomial and hypergeometric distribution functions.
"""

from __future__ import annotations

from feedbot.analysis.stats.counts import (
    CountTestResult,
    ReachResult,
    conditional_binomial_greater,
    fisher_greater,
    min_count_for_new_type,
    new_type_test,
    rate_ratio_ci,
    reach_test,
    reach_upper_bound,
)
from feedbot.analysis.stats.dist import (
    normal_cdf,
    normal_isf,
    normal_ppf,
    normal_sf,
    student_t_sf,
)
from feedbot.analysis.stats.hosts import (
    InstanceCell,
    PooledTau,
    TauEstimate,
    cluster_aware_p,
    combine_tau,
    host_noise_floor,
    instance_cell,
    pool_with_history,
    pooled_tau,
    pooled_tau_across,
    tau_across,
    tau_by_version,
)
from feedbot.analysis.stats.multi import (
    Spending,
    bh_qvalues,
    bh_reject,
    bonferroni,
    spending_boundary,
    spent,
    tarone_screen,
)
from feedbot.analysis.stats.power import (
    error_rate_min_detectable_ratio,
    mwu_min_detectable_ratio,
    mwu_sample_size,
    robust_log_sigma,
)
from feedbot.analysis.stats.quantile import (
    QuantileEstimate,
    TailTestResult,
    min_samples_for_quantile_ci,
    quantile_ci,
    quantile_ratio,
    quantiles,
    tail_exceedance_test,
)
from feedbot.analysis.stats.rank import MannWhitneyResult, mann_whitney, van_elteren
from feedbot.analysis.stats.shift import ShiftEstimate, hodges_lehmann_ratio, hodges_lehmann_shift

__all__ = [
    "CountTestResult",
    "InstanceCell",
    "MannWhitneyResult",
    "QuantileEstimate",
    "ReachResult",
    "ShiftEstimate",
    "Spending",
    "TailTestResult",
    "PooledTau",
    "TauEstimate",
    "bh_qvalues",
    "bh_reject",
    "bonferroni",
    "cluster_aware_p",
    "combine_tau",
    "conditional_binomial_greater",
    "error_rate_min_detectable_ratio",
    "fisher_greater",
    "hodges_lehmann_ratio",
    "hodges_lehmann_shift",
    "host_noise_floor",
    "instance_cell",
    "mann_whitney",
    "min_count_for_new_type",
    "min_samples_for_quantile_ci",
    "mwu_min_detectable_ratio",
    "mwu_sample_size",
    "new_type_test",
    "normal_cdf",
    "normal_isf",
    "normal_ppf",
    "normal_sf",
    "pooled_tau",
    "pool_with_history",
    "pooled_tau_across",
    "quantile_ci",
    "quantile_ratio",
    "quantiles",
    "rate_ratio_ci",
    "reach_test",
    "reach_upper_bound",
    "robust_log_sigma",
    "spending_boundary",
    "spent",
    "student_t_sf",
    "tail_exceedance_test",
    "tarone_screen",
    "tau_across",
    "tau_by_version",
    "van_elteren",
]
