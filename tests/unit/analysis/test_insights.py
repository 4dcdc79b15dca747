"""N+1 queries and bottlenecks (whether the changed code ran: test_reach.py)."""

from __future__ import annotations

import numpy as np
import pytest

from feedbot.analysis import insights
from feedbot.analysis.compare import analyse
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData, RepeatedStatement, SpanGroupStats
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


def _parent_child(child_ms: float, seed: int) -> ReleaseData:
    rng = np.random.default_rng(seed)
    n = 1000
    child = rng.lognormal(np.log(child_ms), 0.3, n)
    other = rng.lognormal(np.log(10.0), 0.3, n)
    parent = child + other + 5.0
    ids = rng.integers(0, 4, n).astype(np.int32)

    def group(
        name: str, kind: str, d: np.ndarray, callers: tuple[tuple[str, int], ...]
    ) -> SpanGroupStats:
        return SpanGroupStats(name, kind, n, 0, d, ids, ("a", "b", "c", "d"), callers=callers)

    return ReleaseData(
        groups=[
            group("GET /vaults", "SERVER", parent, (("(root)", n),)),
            group("SELECT vaults", "CLIENT", child, (("GET /vaults", n),)),
            group("GET rates", "CLIENT", other, (("GET /vaults", n),)),
        ],
        traces=n,
    )


def test_bottleneck_names_the_child_that_owns_the_slowdown() -> None:
    base, cand = _parent_child(10.0, 1), _parent_child(40.0, 2)
    result = analyse(cand, base, changes=(), policy=POLICY)
    (finding,) = [f for f in result.findings if f.kind == "bottleneck"]
    assert finding.span == "GET /vaults" and "SELECT vaults" in finding.message
    assert finding.candidate is not None and finding.candidate.value == pytest.approx(43, rel=0.1)
