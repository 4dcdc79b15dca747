"""The release analysis on synthetic releases: lognormal latency, 4 instances per version."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from feedbot.analysis.compare import analyse, confirm_boundary
from feedbot.policy import DetectionPolicy, LatencyPolicy
from feedbot.spans.model import ExceptionSeen, ReleaseData
from tests.unit.analysis.synth import Group, release, routes

POLICY = DetectionPolicy()


def run(cand: ReleaseData, base: ReleaseData | None, **kw: object):  # type: ignore[no-untyped-def]
    return analyse(cand, base, changes=(), policy=POLICY, **kw)  # type: ignore[arg-type]


def shifted(n: int, group: int, **change: object) -> list[Group]:
    specs = routes(10, n)
    specs[group] = replace(specs[group], **change)  # type: ignore[arg-type]
    return specs


@pytest.mark.parametrize("spread", [0.02, 0.05])
def test_no_change_stays_neutral_at_realistic_host_spread(spread: float) -> None:
    verdicts = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        base = release(rng, routes(10, 1000), spread=spread)
        cand = release(rng, routes(10, 1000), spread=spread)
        first = run(cand, base)
        verdicts.append(run(cand, base, look=2, previous=first).verdict)
    assert verdicts.count("regressed") == 0
    assert set(verdicts) <= {"neutral", "improved"}


def test_thirty_percent_slower_group_is_a_confirmed_regression_with_its_numbers() -> None:
    rng = np.random.default_rng(7)
    base = release(rng, routes(10, 2000))
    cand = release(rng, shifted(2000, 3, ratio=1.3))
    result = run(cand, base)
    assert result.verdict == "regressed"
    (finding,) = [f for f in result.findings if f.kind == "latency_regression"]
    assert finding.span == "GET /r3" and finding.state == "confirmed"
    assert finding.change is not None and finding.change.low is not None
    assert finding.change.low < 1.3 < (finding.change.high or 0)
    assert 1.22 < (finding.change.ratio or 0) < 1.38
    assert finding.q_value is not None and finding.p_value is not None
    assert finding.p_value <= finding.q_value <= result.q_level
    assert finding.baseline is not None and finding.candidate is not None
    assert finding.baseline.n == 2000 and finding.candidate.n == 2000
    assert "Mann-Whitney" in (finding.method or "")
    assert "p=" in finding.message and "q=" in finding.message
    (row,) = [g for g in result.groups if g.span == "GET /r3"]
    assert row.candidate is not None and row.baseline is not None
    assert row.candidate.p50_ms == pytest.approx(1.3 * (row.baseline.p50_ms or 0), rel=0.08)


def test_faster_group_is_an_improvement() -> None:
    rng = np.random.default_rng(8)
    base = release(rng, routes(10, 2000))
    result = run(release(rng, shifted(2000, 5, ratio=0.7)), base)
    assert result.verdict == "improved"
    assert [f.kind for f in result.findings if f.counts_toward] == ["latency_improvement"]


def test_error_rate_rise_is_found_by_the_exact_test() -> None:
    rng = np.random.default_rng(9)
    base = release(rng, routes(5, 5000))
    result = run(release(rng, shifted(5000, 1, error_rate=0.02)), base)
    (finding,) = [f for f in result.findings if f.kind == "error_rate_increase"]
    assert finding.span == "GET /r1" and "Fisher" in (finding.method or "")
    assert finding.candidate is not None and finding.candidate.value == pytest.approx(
        0.02, rel=0.25
    )
    assert result.verdict == "regressed"


def _with_exception(data: ReleaseData, name: str, seen: ExceptionSeen) -> ReleaseData:
    groups = [replace(g, exceptions=(seen,)) if g.name == name else g for g in data.groups]
    return replace(data, groups=groups)


def test_new_exception_type_at_one_percent_counts_toward_regressed() -> None:
    rng = np.random.default_rng(10)
    base = release(rng, routes(5, 4000), spread=0.0)
    cand = release(rng, routes(5, 2000), spread=0.0)
    cand = _with_exception(cand, "GET /r2", ExceptionSeen("KeyError", 20, "'vault'", "ab" * 16))
    result = run(cand, base)
    (finding,) = [f for f in result.findings if f.kind == "new_error_type"]
    assert finding.exception_type == "KeyError" and finding.severity == "high"
    assert finding.example_trace_ids == ("ab" * 16,)
    assert "1.00%" in finding.message and finding.p_value == pytest.approx((1 / 3) ** 20)
    assert finding.counts_toward == "regressed" and result.verdict == "regressed"


def test_rare_new_exception_type_is_reported_as_a_fact_only() -> None:
    rng = np.random.default_rng(11)
    base = release(rng, routes(5, 2000), spread=0.0)
    cand = _with_exception(
        release(rng, routes(5, 2000), spread=0.0), "GET /r2", ExceptionSeen("OSError", 2)
    )
    result = run(cand, base)
    (fact,) = [f for f in result.findings if f.kind == "new_error_type"]
    assert fact.counts_toward is None and fact.p_value == pytest.approx(0.25)
    assert fact.severity == "info" and not fact.tested  # a low-key fact, not an alarm
    assert "not significant at q=0.0125: with s=0.50 it would take 7 occurrences" in fact.message
    assert result.verdict == "neutral"


@pytest.mark.parametrize(("n_new", "n_base"), [(656, 631), (2000, 400)])
def test_a_new_type_is_tested_whatever_the_two_sizes(n_new: int, n_base: int) -> None:
    rng = np.random.default_rng(14)
    base = release(rng, routes(3, n_base), spread=0.0)
    cand = _with_exception(
        release(rng, routes(3, n_new), spread=0.0), "GET /r1", ExceptionSeen("KeyError", 30)
    )
    result = run(cand, base)
    (finding,) = [f for f in result.findings if f.kind == "new_error_type"]
    s = n_new / (n_new + n_base)
    assert finding.tested and finding.p_value == pytest.approx(s**30)
    assert finding.severity == "high" and "not tested" not in finding.message


def test_a_short_baseline_needs_more_occurrences_and_says_how_many() -> None:
    rng = np.random.default_rng(15)
    base = release(rng, routes(3, 400), spread=0.0)
    cand = _with_exception(
        release(rng, routes(3, 2000), spread=0.0), "GET /r1", ExceptionSeen("KeyError", 10)
    )
    (fact,) = [f for f in run(cand, base).findings if f.kind == "new_error_type"]
    assert fact.p_value == pytest.approx((2000 / 2400) ** 10) and fact.severity == "info"
    assert "with s=0.83 it would take 25 occurrences" in fact.message


def test_no_candidate_spans_is_not_running() -> None:
    rng = np.random.default_rng(12)
    result = run(ReleaseData(groups=[]), release(rng, routes(3, 500)))
    assert result.verdict == "not_running"
    assert {g.status for g in result.groups} == {"gone"}


def test_too_little_traffic_is_insufficient_data_with_an_mde_never_below_the_floor() -> None:
    rng = np.random.default_rng(13)
    result = run(release(rng, routes(4, 25)), release(rng, routes(4, 25)))
    assert result.verdict == "insufficient_data"
    low = [f for f in result.findings if f.kind == "low_traffic"]
    assert len(low) == 4
    for finding in low:
        assert finding.change is not None and finding.change.floor is not None
        assert finding.change.mde is None or finding.change.mde >= finding.change.floor
        assert "spans per version" in finding.message


def test_mde_of_a_busy_group_is_clipped_at_the_floor() -> None:
    rng = np.random.default_rng(14)
    result = run(release(rng, routes(2, 20000)), release(rng, routes(2, 20000)))
    assert result.verdict == "neutral"
    for row in result.groups:
        assert row.mde is not None and row.mde >= POLICY.latency.ratio_floor


def test_a_finding_is_suspected_first_and_confirmed_at_the_next_look() -> None:
    # A +20% draw whose q passes the look's level (0.0125) but not its confirmation boundary
    # (0.0054 at look 1 of 4): most +20% shifts at 300 spans are confirmed at once.
    rng = np.random.default_rng(5)
    base = release(rng, routes(10, 300))
    cand = release(rng, shifted(300, 4, ratio=1.2))
    first = run(cand, base)
    watching = [f for f in first.watching if f.kind == "latency_regression"]
    assert [f.span for f in watching] == ["GET /r4"]
    assert watching[0].q_value is not None
    assert confirm_boundary(POLICY, 1, 4) < watching[0].q_value <= first.q_level
    assert first.verdict == "neutral"
    second = run(cand, base, look=2, previous=first)
    assert second.verdict == "regressed"
    assert [f.state for f in second.findings if f.kind == "latency_regression"] == ["confirmed"]


def test_a_final_look_of_one_decides_at_once_at_the_whole_fdr() -> None:
    rng = np.random.default_rng(5)
    base = release(rng, routes(10, 300))
    cand = release(rng, shifted(300, 4, ratio=1.2))  # watched, not confirmed, at look 1 of 4
    scheduled = run(cand, base)
    assert scheduled.verdict == "neutral" and scheduled.watching  # same data: watched at 1 of 4
    once = run(cand, base, look=1, looks=1, final=True)
    assert once.verdict == "regressed" and once.final and once.q_level == POLICY.looks.fdr_q
    assert not once.watching
    (finding,) = [f for f in once.findings if f.kind == "latency_regression"]
    assert finding.span == "GET /r4" and finding.state == "confirmed"
    assert any("passed at this final look" in line for line in once.summary)


def test_a_final_look_keeps_what_fails_its_floor_out_of_the_verdict() -> None:
    # A one-shot look tests the regressions at the whole FDR (5%), so a no-change deploy may
    # regress now and then by design (1 of these 12 does since improvements have a family of
    # their own); what fails its floor never makes the verdict.
    verdicts = []
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        base = release(rng, routes(10, 300), spread=0.02)
        cand = release(rng, routes(10, 300), spread=0.02)
        once = run(cand, base, look=1, looks=1, final=True)
        verdicts.append(once.verdict)
        for f in once.findings:
            if f.state == "confirmed" and f.counts_toward == "regressed" and f.change:
                assert f.change.ratio is not None and f.change.floor is not None
                assert f.change.ratio >= f.change.floor
    assert "regressed" not in verdicts


def test_new_and_gone_operations() -> None:
    rng = np.random.default_rng(15)
    base = release(rng, [*routes(2, 500), Group("GET /old", 300)])
    cand = release(rng, [*routes(2, 500), Group("GET /new", 40)])
    kinds = {f.kind: f for f in run(cand, base).findings}
    assert kinds["new_operation"].span == "GET /new"
    assert kinds["operation_gone"].span == "GET /old"


def test_rarely_used_operation_is_not_called_gone() -> None:
    rng = np.random.default_rng(16)
    base = release(rng, [*routes(2, 500), Group("GET /rare", 2)])
    cand = release(rng, routes(2, 500))
    assert "operation_gone" not in {f.kind for f in run(cand, base).findings}


def test_a_detector_can_be_switched_off() -> None:
    rng = np.random.default_rng(7)
    base = release(rng, routes(10, 2000))
    cand = release(rng, shifted(2000, 3, ratio=1.3))
    policy = replace(POLICY, latency=LatencyPolicy(enabled=False))
    result = analyse(cand, base, changes=(), policy=policy)
    assert "Mann-Whitney" not in " ".join(f.method or "" for f in result.findings)


def test_every_tested_finding_names_method_samples_effect_p_and_q() -> None:
    rng = np.random.default_rng(7)
    base = release(rng, routes(10, 2000))
    result = run(release(rng, shifted(2000, 3, ratio=1.3, error_rate=0.03)), base)
    tested = [f for f in result.findings if f.counts_toward]
    assert len(tested) >= 2
    for f in tested:
        assert f.method and f.baseline and f.candidate and f.change
        assert f.p_value is not None and f.q_value is not None and math.isfinite(f.p_value)


def test_messages_give_sample_sizes_baseline_then_new_like_every_other_pair() -> None:
    rng = np.random.default_rng(7)
    result = run(release(rng, shifted(1200, 3, ratio=1.3)), release(rng, routes(10, 2000)))
    (slower,) = [f for f in result.findings if f.kind == "latency_regression"]
    assert "n = 2000 → 1200 spans" in slower.message, slower.message
    few = run(release(rng, routes(4, 20)), release(rng, routes(4, 25)))
    low = [f.message for f in few.findings if f.kind == "low_traffic"]
    assert low and all(": n = 25 → 20 spans, below" in m for m in low), low


def test_a_p_value_of_zero_is_kept_by_the_de_duplication() -> None:
    rng = np.random.default_rng(16)
    base = release(rng, routes(3, 3000), spread=0.0)
    specs = routes(3, 3000)
    specs[1] = replace(specs[1], ratio=3.75)
    cand = release(rng, specs, spread=0.0)
    # The normal reference, the default (the t one for τ̂ keeps p above 0 at any shift).
    normal = replace(POLICY, host_guard=replace(POLICY.host_guard, satterthwaite=False))
    found = analyse(cand, base, changes=(), policy=normal).findings
    (finding,) = [f for f in found if f.kind == "latency_regression"]
    assert finding.p_value == 0.0  # the Mann-Whitney test underflows at +275%
    assert finding.method is not None and finding.method.startswith("one-sided Mann-Whitney")


def test_host_spread_is_estimated_over_all_groups_and_named_in_the_method() -> None:
    rng = np.random.default_rng(21)
    # Below the 200 spans of a p95 test, so the Mann-Whitney finding is the group's only one.
    base = release(rng, routes(10, 150), instances=3, spread=0.05)
    cand = release(rng, shifted(150, 2, ratio=1.5), instances=3, spread=0.05)
    result = run(cand, base)
    assert any("over all its span groups" in line for line in result.summary)
    (finding,) = [f for f in result.findings if f.kind == "latency_regression"]
    assert "cluster-aware with τ̂ = " in (finding.method or "")
    assert "instance offsets over all groups" in (finding.method or "")
    assert "df for τ̂" not in (finding.method or "")
    t_ref = replace(POLICY, host_guard=replace(POLICY.host_guard, satterthwaite=True))
    found = analyse(cand, base, changes=(), policy=t_ref).findings
    (student,) = [f for f in found if f.kind == "latency_regression"]
    assert "instance offsets over all groups, t with 4 df for τ̂" in (student.method or "")
    assert (student.p_value or 0) > (finding.p_value or 0)
    per_group = replace(POLICY, host_guard=replace(POLICY.host_guard, across_groups=False))
    before = analyse(cand, base, changes=(), policy=per_group)
    assert any("pooled over groups and versions" in line for line in before.summary)


def test_with_two_instances_a_version_the_floor_and_p_use_the_upper_bound_of_tau() -> None:
    """τ̂ from 2 instances a version has 2 degrees of freedom: the guard uses its 90% upper
    bound (host_guard.tau_upper), says so, and names both in the method; from 3 instances on
    (4 degrees of freedom) it keeps τ̂ (host_guard.tau_upper_max_dof)."""
    rng = np.random.default_rng(31)
    base = release(rng, routes(10, 150), instances=2, spread=0.05)
    cand = release(rng, shifted(150, 2, ratio=1.8), instances=2, spread=0.05)
    result = run(cand, base)
    (sentence,) = [line for line in result.summary if "Between-instance spread" in line]
    assert "from 2 degrees of freedom" in sentence and "90% upper confidence bound" in sentence
    (finding,) = [f for f in result.findings if f.kind == "latency_regression"]
    assert "the upper bound of τ̂ = " in (finding.method or "") and "2 df" in (finding.method or "")
    plain = replace(POLICY, host_guard=replace(POLICY.host_guard, tau_upper=0.0))
    before = analyse(cand, base, changes=(), policy=plain)
    (unbounded,) = [f for f in before.findings if f.kind == "latency_regression"]
    assert (finding.p_value or 0) > (unbounded.p_value or 0)
    assert (finding.change.floor or 0) >= (unbounded.change.floor or 0)
    three = release(rng, routes(10, 150), instances=3, spread=0.05)
    later = run(release(rng, routes(10, 150), instances=3, spread=0.05), three)
    assert not any("upper confidence bound" in line for line in later.summary)


def test_confirmation_at_once_follows_the_spending_boundary() -> None:
    """A +20% finding at 300 spans with q between level/20 and the look's Pocock boundary is
    confirmed at its first look; the §9 rule (20x below the level, CI above the floor), the
    two-look rule alone and O'Brien-Fleming's spending (10⁻⁶ at look 1) all watch it."""
    rng = np.random.default_rng(0)
    base = release(rng, routes(10, 300))
    cand = release(rng, shifted(300, 4, ratio=1.2))
    now = run(cand, base)
    (finding,) = [f for f in now.findings if f.kind == "latency_regression"]
    assert finding.state == "confirmed" and finding.q_value is not None
    assert now.verdict == "regressed"
    boundary = confirm_boundary(POLICY, 1, 4)
    assert now.q_level / 20 < finding.q_value <= boundary < now.q_level
    assert any(f"q ≤ {boundary:.2g}" in line and "Pocock" in line for line in now.summary)
    for looks in (
        replace(POLICY.looks, confirm_alpha=0.0, overwhelming_factor=20.0),
        replace(POLICY.looks, confirm_alpha=0.0),
        replace(POLICY.looks, confirm_spending="obrien_fleming"),
    ):
        other = analyse(cand, base, changes=(), policy=replace(POLICY, looks=looks))
        states = [f.state for f in other.findings if f.kind == "latency_regression"]
        assert states == ["suspected"], looks
        assert other.verdict == "neutral"


def test_the_confirmation_boundary_spends_its_budget_over_the_looks() -> None:
    bounds = [confirm_boundary(POLICY, k, 4) for k in range(1, 5)]
    assert sum(bounds) == pytest.approx(POLICY.looks.confirm_alpha)
    assert bounds == sorted(bounds, reverse=True)  # Pocock: the early looks get the most
    assert all(b <= POLICY.looks.q_per_look for b in bounds)
    assert confirm_boundary(POLICY, 5, 4) == 0.0  # past the schedule: two looks needed
    off = replace(POLICY, looks=replace(POLICY.looks, confirm_alpha=0.0))
    assert confirm_boundary(off, 1, 4) == 0.0
    # A one-look schedule may spend all of it, but never more than the look's level.
    assert confirm_boundary(POLICY, 1, 1) == pytest.approx(POLICY.looks.confirm_alpha)


def test_no_change_is_not_confirmed_at_once_over_four_looks() -> None:
    """No-change deploys with 13 routes and 3 pods: the boundary's budget over four cumulative
    looks must not turn watching findings into alarms (the benchmark measures the rate)."""
    verdicts = []
    for seed in range(8):
        rng = np.random.default_rng(300 + seed)
        base = release(rng, routes(13, 700), instances=3, spread=0.02)
        sizes = (300, 600, 1200, 2400)
        previous = None
        for look, n in enumerate(sizes, start=1):
            cand = release(np.random.default_rng(400 + seed), routes(13, n), instances=3)
            previous = run(cand, base, look=look, previous=previous)
            verdicts.append(previous.verdict)
    assert "regressed" not in verdicts


def test_a_sub_millisecond_tail_is_not_an_alarm_however_large_its_ratio() -> None:
    # A driver's `connect` span: p95 0.2 → 0.5 ms in 500 spans each. The tail test sees it
    # (2.5×), but a few tenths of a millisecond are not worth an alarm, as for the median.
    from feedbot.analysis.detectors import Pair, tail_candidates
    from feedbot.spans.model import SpanGroupStats

    rng = np.random.default_rng(7)

    def group(tail_ms: float) -> SpanGroupStats:
        durations = np.where(rng.random(500) < 0.9, 0.1, tail_ms) * rng.uniform(0.9, 1.1, 500)
        return SpanGroupStats("connect", "INTERNAL", 500, 0, durations_ms=durations)

    small = tail_candidates(Pair("connect", "INTERNAL", group(0.5), group(0.2)), DetectionPolicy())
    big = tail_candidates(Pair("connect", "INTERNAL", group(5.0), group(2.0)), DetectionPolicy())
    assert small and all(c.p < 1e-3 for c in small)  # the test does see it ...
    assert not any(c.passes for c in small)  # ... and it fails the absolute floor
    assert any(c.passes for c in big)  # the same shape at 2 → 5 ms passes


def test_improvements_and_dead_error_tests_do_not_dilute_the_regression_family() -> None:
    """Issue 14: the family that can alarm holds the regression tests only, and error-rate tests
    whose errors are too few for any split to pass are screened out (Tarone). A lone +20% at 300
    spans then needs p ≤ q/m over the regression tests alone, so its q shrinks accordingly."""
    rng = np.random.default_rng(0)
    base = release(rng, routes(10, 300, error_rate=0.01))
    cand = release(rng, shifted(300, 4, ratio=1.2, error_rate=0.01))
    apart = replace(POLICY, looks=replace(POLICY.looks, improvements_apart=True))
    now = analyse(cand, base, changes=(), policy=apart)
    together = replace(
        POLICY, looks=replace(POLICY.looks, improvements_apart=False, screen_discrete=False)
    )
    before = analyse(cand, base, changes=(), policy=together)
    (mine,) = [f for f in now.findings if f.kind == "latency_regression"]
    (theirs,) = [f for f in before.findings if f.kind == "latency_regression"]
    assert mine.p_value == theirs.p_value
    assert mine.q_value is not None and theirs.q_value is not None
    (levels,) = [line for line in now.summary if "Benjamini-Hochberg" in line]
    (old_levels,) = [line for line in before.summary if "Benjamini-Hochberg" in line]
    counts = re.match(r"(\d+) regression tests .* (\d+) improvement tests in their own", levels)
    screened = re.search(r"; (\d+) error-rate tests left out .*Tarone's screen", levels)
    everything = re.match(r"(\d+) latency, tail and error-rate tests in one", old_levels)
    assert counts and screened and everything and "Tarone" not in old_levels
    alarms, better, dead = (int(counts[1]), int(counts[2]), int(screened[1]))
    # Ten latency regressions and ten p95 tails can alarm; ten latency improvements cannot.
    assert alarms >= 20 and better >= 10 and dead >= 1
    assert alarms + better + dead == int(everything[1])
    assert f"p ≤ {now.q_level / alarms:.2g}" in levels
    assert mine.q_value < theirs.q_value


def test_an_error_rise_that_could_pass_stays_in_the_family() -> None:
    rng = np.random.default_rng(3)
    base = release(rng, routes(10, 3000, error_rate=0.002))
    cand = release(rng, shifted(3000, 5, error_rate=0.03))
    result = run(cand, base)
    assert result.verdict == "regressed"
    assert any(
        f.kind == "error_rate_increase" and f.span == "GET /r5" and f.state == "confirmed"
        for f in result.findings
    )


def test_the_host_spread_is_assumed_only_for_spans_that_name_their_one_instance() -> None:
    # One named instance a version: τ̂ cannot be estimated, the policy's spread is assumed.
    # Spans naming no instance (a store that dropped the resource): how many hosts served
    # them is not known, so nothing is assumed and the summary says the spread is unknown.
    rng = np.random.default_rng(7)
    base = release(rng, routes(10, 600), instances=1)
    cand = release(rng, routes(10, 600), instances=1)
    named = " ".join(run(cand, base).summary)
    assert "Host spread assumed" in named

    def anonymous(data: ReleaseData) -> ReleaseData:
        groups = [
            replace(g, instances=np.zeros(0, np.int32), instance_names=()) for g in data.groups
        ]
        return replace(data, groups=groups)

    unnamed = " ".join(run(anonymous(cand), anonymous(base)).summary)
    assert "Host spread assumed" not in unnamed and "Host spread unknown" in unnamed


def test_the_host_spread_pools_the_service_history_and_says_where_it_came_from() -> None:
    """With the service's earlier releases' τ̂ (a store), the guard pools them with this check's
    and the summary says so in words; a check whose instances differ far more than the history
    predicts uses its own τ̂ and says why; a history without estimates says that too."""
    from feedbot.analysis.detectors import TauHistory
    from feedbot.analysis.stats import TauEstimate

    rng = np.random.default_rng(41)
    base = release(rng, routes(10, 150), instances=3, spread=0.05)
    cand = release(rng, routes(10, 150), instances=3, spread=0.05)
    alone = run(cand, base)
    earlier = tuple(TauEstimate(0.05, 4, 0.0025 + 0.0004, 0.0004) for _ in range(6))
    pooled = run(cand, base, tau_history=TauHistory("checkout", earlier))
    (said,) = [line for line in pooled.summary if "Between-instance spread" in line]
    assert "from this check and the 6 earlier releases of checkout: τ = " in said
    assert "from 28 degrees of freedom" in said  # 4 of this check's, 4 of each release's
    tau = float(re.search(r"τ = ([0-9.]+)", said).group(1))  # type: ignore[union-attr]
    own = alone.host_tau
    assert [p.dof for p in own if p is not None] == [2, 2]
    parts = [*(p for p in own if p is not None), *earlier]
    direct = sum(p.dof * (p.mean_square - p.sampling) for p in parts) / 28
    assert tau == pytest.approx(math.sqrt(max(0.0, direct)), abs=5e-4)
    assert pooled.host_tau == own  # what is recorded is this check's own, never the pool
    shifted_pooled = run(release(rng, shifted(150, 2, ratio=1.5), instances=3, spread=0.05), base,
                         tau_history=TauHistory("checkout", earlier))  # fmt: skip
    (finding,) = [f for f in shifted_pooled.findings if f.kind == "latency_regression"]
    assert "(instance offsets over all groups, with 6 earlier releases', 28 df)" in (
        finding.method or ""
    )
    # A history of near-identical pods against this check's 5%: the spread grew, checked alone.
    tight = tuple(TauEstimate(0.0, 4, 0.00001, 0.00001) for _ in range(6))
    wide = release(rng, routes(10, 150), instances=3, spread=0.4)
    changed = run(release(rng, routes(10, 150), instances=3, spread=0.4), wide,
                  tau_history=TauHistory("checkout", tight))  # fmt: skip
    (said,) = [line for line in changed.summary if "Between-instance spread" in line]
    assert said.startswith("This check's instances differ more than those of the 6 earlier")
    assert "measured from this check alone" in said
    empty = run(cand, base, tau_history=TauHistory("checkout"))
    (said,) = [line for line in empty.summary if "Between-instance spread" in line]
    assert said.startswith("No earlier release of checkout in the last 30 days")


def test_a_history_counts_each_version_s_instances_once() -> None:
    """The baseline of one release is the new version of the release before: the same pods."""
    from feedbot.analysis.detectors import TauRecord, tau_history
    from feedbot.analysis.stats import TauEstimate

    def est(dof: int) -> TauEstimate:
        return TauEstimate(0.05, dof, 0.003, 0.0005)

    records = [
        TauRecord("1.3", (("1.3", est(2)), ("1.2", est(3)))),  # 1.3 is this check's baseline
        TauRecord("1.2", (("1.2", est(5)), ("1.1", est(6)))),  # 1.2 counted by the newer one
        TauRecord("1.1", (("1.1", est(7)),)),  # nothing left: dropped
    ]
    history = tau_history("checkout", records, {"1.4", "1.3"})
    assert [e.dof for e in history.estimates] == [3, 6]
