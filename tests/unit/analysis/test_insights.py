"""Did the changed code run, N+1 queries, and bottlenecks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from feedbot.analysis import insights
from feedbot.analysis.compare import analyse
from feedbot.analysis.policy import DetectionPolicy
from feedbot.backends.base import CodeSeen, ReleaseData, RepeatedStatement, SpanGroupStats
from feedbot.releases.event import Change
from tests.unit.analysis.synth import Group, release, routes

POLICY = DetectionPolicy()
APPRAISE = Change(file="vault/appraisal.py", functions=("vault.appraisal.appraise",))
OTHER = CodeSeen("vault.api.list_vaults", "/srv/app/vault/api.py", 12, 0)


def _coded(n: int, *code: CodeSeen, traces: int = 0, seed: int = 1) -> ReleaseData:
    rng = np.random.default_rng(seed)
    data = release(rng, [Group("GET /vaults", n, code=code)], traces=traces)
    return data


def test_changed_function_reached_with_counts_from_either_convention() -> None:
    cand = _coded(500, CodeSeen("appraise", "/srv/app/vault/appraisal.py", 30, 420))
    reach, findings = insights.code_reach([APPRAISE], cand, None, POLICY)
    assert [r.status for r in reach] == ["reached"]
    assert reach[0].hits == 420 and reach[0].spans == ("GET /vaults",)
    assert findings[0].kind == "code_reached" and "420" in findings[0].message


def test_changed_lines_match_a_span_path_under_another_root() -> None:
    change = Change(file="vault/appraisal.py", lines=((10, 42),))
    hit = CodeSeen(None, "/srv/app/vault/appraisal.py", 41, 7)
    miss = CodeSeen(None, "/srv/app/vault/appraisal.py", 43, 9)
    reach, _ = insights.code_reach([change], _coded(100, hit, miss), None, POLICY)
    assert reach[0].status == "reached" and reach[0].hits == 7


def test_not_reached_is_claimed_only_after_enough_requests() -> None:
    many = insights.code_reach([APPRAISE], _coded(400, replace(OTHER, count=400)), None, POLICY)
    (reach,), (finding,) = many
    assert reach.status == "not_reached" and reach.requests == 400
    assert reach.bound == pytest.approx(3 / 400, rel=0.01)
    assert finding.kind == "code_not_reached" and finding.function == "vault.appraisal.appraise"
    few = insights.code_reach([APPRAISE], _coded(120, replace(OTHER, count=120)), None, POLICY)
    assert few[0][0].status == "not_yet" and few[1][0].kind == "low_traffic"


def test_unknown_when_spans_carry_no_code_attributes() -> None:
    reach, findings = insights.code_reach([APPRAISE], _coded(5000), None, POLICY)
    assert [r.status for r in reach] == ["unknown"] and findings == []
    assert "unknown" in (insights.reach_sentence(reach) or "")


def test_code_that_stopped_being_reached() -> None:
    base = _coded(1000, CodeSeen("vault.appraisal.appraise", None, None, 60))
    cand = _coded(1000, replace(OTHER, count=1000), seed=2)
    (reach,), (finding,) = insights.code_reach([APPRAISE], cand, base, POLICY)
    assert reach.status == "stopped" and reach.p_value is not None and reach.p_value < 0.01
    assert finding.kind == "code_not_reached" and "stopped" in finding.message


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


def test_changed_code_in_the_analysis_summary() -> None:
    rng = np.random.default_rng(6)
    base = release(rng, routes(2, 500))
    result = analyse(release(rng, routes(2, 500)), base, changes=[APPRAISE], policy=POLICY)
    assert result.reach[0].status == "unknown"
    assert any("Changed code: unknown" in line for line in result.summary)
