"""Warm-up from evidence: an instance's first minutes are left out only when really slower."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from feedbot.analysis import stats
from feedbot.analysis.compare import analyse
from feedbot.analysis.warmup import leave_out
from feedbot.policy import DetectionPolicy, with_overrides
from feedbot.spans.model import ReleaseData
from tests.unit.analysis.synth import release, routes

POLICY = with_overrides(DetectionPolicy(), {"latency": {"warmup": "5m"}})


def _marked(cand: ReleaseData, early: int, slow: dict[int, float]) -> ReleaseData:
    """Each instance's first ``early`` spans per group marked early, × ``slow[instance]``."""
    groups = []
    for g in cand.groups:
        marks = np.zeros(g.durations_ms.size, dtype=bool)
        factor = np.ones(g.durations_ms.size)
        for index in range(len(g.instance_names)):
            first = np.flatnonzero(g.instances == index)[:early]
            marks[first] = True
            factor[first] = slow.get(index, 1.0)
        groups.append(replace(g, durations_ms=g.durations_ms * factor, early=marks))
    return replace(cand, groups=groups)


def test_only_the_instance_whose_first_minutes_are_slower_loses_them() -> None:
    rng = np.random.default_rng(11)
    cand = _marked(release(rng, routes(3, 600), instances=3), 30, {1: 3.0})
    warm = leave_out(cand, POLICY)
    assert warm.excluded == 90  # 30 early spans of host-1 in each of the 3 groups
    assert [e.instance for e in warm.evidence if e.slower] == ["host-1"]
    (slow,) = [e for e in warm.evidence if e.slower]
    assert slow.ratio is not None and 2.5 < slow.ratio < 3.5
    for before, after in zip(cand.groups, warm.data.groups, strict=True):
        assert after.durations_ms.size == before.durations_ms.size - 30
        assert after.warmup_excluded == 30 and after.count == before.count
    assert warm.notes[0].startswith("Warm-up: 90 spans from the first 5m of 1 of 3 new instance")
    assert "(host-1)" in warm.notes[0] and "slower than the same instances' later" in warm.notes[0]


@pytest.mark.parametrize("seed", range(5))
def test_a_warm_up_like_the_rest_is_kept(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cand = _marked(release(rng, routes(4, 800), instances=4), 60, {})
    warm = leave_out(cand, POLICY)
    assert warm.excluded == 0 and warm.data == cand
    assert not any(e.slower for e in warm.evidence)
    assert any("were not slower than their later spans" in n for n in warm.notes), warm.notes


def test_all_spans_early_is_no_evidence_and_nothing_is_left_out() -> None:
    """A 79-second load test: every span is in its instance's first 5 minutes."""
    rng = np.random.default_rng(2)
    cand = _marked(release(rng, routes(2, 200), instances=2), 10_000, {0: 3.0, 1: 3.0})
    warm = leave_out(cand, POLICY)
    assert warm.excluded == 0
    (note,) = warm.notes
    assert note.startswith("Warm-up not tested on 2 new instance(s): 400 early vs 0 later spans")


def test_a_group_that_would_drop_below_min_samples_keeps_its_warm_up() -> None:
    rng = np.random.default_rng(4)
    big, small = release(rng, routes(1, 900), instances=2), release(rng, routes(1, 40))
    small = replace(small, groups=[replace(g, name="GET /few") for g in small.groups])
    cand = replace(big, groups=[*big.groups, *small.groups])
    cand = _marked(cand, 15, {0: 3.0, 1: 3.0})
    warm = leave_out(cand, POLICY)
    by_name = {g.name: g for g in warm.data.groups}
    assert by_name["GET /r0"].warmup_excluded == 30
    # GET /few: 40 spans on 4 instances, the two slow ones' early spans would leave < 30.
    few = by_name["GET /few"]
    assert few.warmup_excluded == 0 and few.durations_ms.size == 40
    kept = [n for n in warm.notes if n.startswith("Warm-up spans kept")]
    assert kept and "GET /few" in kept[0] and "below the 30 spans" in kept[0], warm.notes


def test_spans_without_an_instance_are_never_early_and_the_note_says_why() -> None:
    rng = np.random.default_rng(5)
    cand = release(rng, routes(2, 300), instances=1)
    bare = [
        replace(g, instances=g.instances[:0], instance_names=(), early=np.zeros(300, bool))
        for g in cand.groups
    ]
    warm = leave_out(replace(cand, groups=bare), POLICY)
    assert warm.excluded == 0 and "no span says which instance" in warm.notes[0]


def test_low_traffic_message_cites_the_table_counts_and_where_the_rest_went() -> None:
    rng = np.random.default_rng(8)
    base = release(rng, routes(1, 1240))
    cand = release(rng, routes(1, 25), instances=2)
    cand = replace(cand, groups=[replace(g, untimed=3, count=g.count + 3) for g in cand.groups])
    result = analyse(cand, base, changes=(), policy=POLICY)
    (row,) = result.groups
    assert row.candidate is not None and row.baseline is not None
    (low,) = [f.message for f in result.findings if f.kind == "low_traffic"]
    table = f"{row.baseline.count} → {row.candidate.count} spans"
    assert low.startswith(f"GET /r0: n = {table} (timed: 1240 → 25; 3 new without an end time)")


def test_van_elteren_finds_a_shift_pooled_over_strata_and_not_without_one() -> None:
    rng = np.random.default_rng(1)
    slow = [(rng.lognormal(m + 0.3, 0.5, 15), rng.lognormal(m, 0.5, 40)) for m in (1, 3, 5)]
    same = [(rng.lognormal(m, 0.5, 15), rng.lognormal(m, 0.5, 40)) for m in (1, 3, 5)]
    assert stats.van_elteren(slow)[1] < 0.01
    assert stats.van_elteren(same)[1] > 0.01
    assert stats.van_elteren([(np.ones(3), np.empty(0))]) == (0.0, 1.0)
