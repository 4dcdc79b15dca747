"""N+1 queries and bottlenecks (whether the changed code ran: test_reach.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from feedbot.analysis import insights
from feedbot.analysis.compare import analyse
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import CriticalPath, ReleaseData, RepeatedStatement, SpanGroupStats
from tests.unit.analysis.synth import release, routes

POLICY = DetectionPolicy()


def _repeats(parent: str, per_trace: int, ms: float, traces: int) -> RepeatedStatement:
    return RepeatedStatement(
        parent=parent,
        statement="SELECT * FROM vaults WHERE id = ?",
        repeats=np.full(traces, per_trace, dtype=np.int32),
        total_ms=np.full(traces, ms),
        example_trace_id="cd" * 16,
    )


def test_n_plus_one_new_in_candidate_is_watched_then_confirmed() -> None:
    rng = np.random.default_rng(4)
    base = release(rng, routes(2, 400), repeats=[_repeats("GET /r0", 2, 4.0, 400)])
    cand = release(rng, routes(2, 400), repeats=[_repeats("GET /r0", 12, 80.0, 300)])
    first = analyse(cand, base, changes=(), policy=POLICY)
    (finding,) = [f for f in first.findings if f.kind == "n_plus_one"]
    assert finding.state == "suspected" and finding.span == "GET /r0"
    assert finding.statement and finding.example_trace_ids == ("cd" * 16,)
    assert "12 times" in finding.message and "300 of 400" in finding.message
    second = analyse(cand, base, changes=(), policy=POLICY, look=2, previous=first)
    assert [f.state for f in second.findings if f.kind == "n_plus_one"] == ["confirmed"]


def test_n_plus_one_below_sentry_thresholds_or_unchanged_is_quiet() -> None:
    rng = np.random.default_rng(5)
    base = release(rng, routes(1, 400), repeats=[_repeats("GET /r0", 8, 60.0, 100)])
    small = release(rng, routes(1, 400), repeats=[_repeats("GET /r0", 4, 90.0, 300)])
    fast = release(rng, routes(1, 400), repeats=[_repeats("GET /r0", 9, 20.0, 300)])
    same = release(rng, routes(1, 400), repeats=[_repeats("GET /r0", 8, 60.0, 110)])
    for cand in (small, fast, same):
        assert insights.n_plus_one(cand, base, POLICY) == []


def _paths(child_ms: float, other_ms: float, seed: int) -> ReleaseData:
    """GET /vaults with two children, as critical paths: SELECT vaults and GET rates."""
    rng = np.random.default_rng(seed)
    n = 400
    child = rng.lognormal(np.log(child_ms), 0.3, n)
    other = rng.lognormal(np.log(other_ms), 0.3, n)
    own = rng.lognormal(np.log(5.0), 0.3, n)
    path = CriticalPath(
        spans=n,
        children=(("GET rates", "CLIENT"), ("SELECT vaults", "CLIENT")),
        own_ms=own,
        child_ms=np.stack([other, child], axis=1),
        calls=np.ones((n, 2), np.int32),
    )
    parent = SpanGroupStats("GET /vaults", "SERVER", n, 0, own + child + other, critical_path=path)
    return ReleaseData(groups=[parent], traces=n)


def test_a_child_taking_most_of_an_unchanged_parents_time_is_a_bottleneck() -> None:
    base, cand = _paths(5.0, 20.0, 1), _paths(20.0, 5.0, 2)
    (finding,) = insights.bottlenecks(cand, base, regressed=())
    assert finding.span == "GET /vaults" and finding.severity == "info"
    shares = []
    for data in (cand, base):
        path = data.groups[0].critical_path
        assert path is not None
        shares.append(path.child_ms[:, 1].mean() / data.groups[0].durations_ms.mean())
    assert shares[0] > 0.6 and shares[1] < 0.2  # shares of the critical path, not group means
    text = f"SELECT vaults now takes {shares[0]:.0%} of its time, up from {shares[1]:.0%}"
    assert text in finding.message
    assert finding.candidate is not None and finding.candidate.value == pytest.approx(20, rel=0.1)


def test_a_slowed_parent_gets_causes_not_a_bottleneck() -> None:
    base, cand = _paths(5.0, 20.0, 1), _paths(20.0, 5.0, 2)
    assert insights.bottlenecks(cand, base, regressed=("GET /vaults",)) == []


def test_no_bottleneck_without_critical_paths_or_when_the_share_did_not_move() -> None:
    base, cand = _paths(20.0, 5.0, 3), _paths(20.0, 5.0, 4)
    assert insights.bottlenecks(cand, base, regressed=()) == []
    bare = ReleaseData(groups=[replace(g, critical_path=None) for g in cand.groups])
    assert insights.bottlenecks(bare, _paths(5.0, 20.0, 1), regressed=()) == []
