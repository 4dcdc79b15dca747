"""Did the changed code run: reached, not reached, stopped, and unknown (issue #6)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from feedbot.analysis import reach
from feedbot.analysis.compare import analyse
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.model import CodeSeen, ReleaseData
from tests.unit.analysis.synth import Group, release, routes

POLICY = DetectionPolicy()
APPRAISE = Change(file="vault/appraisal.py", functions=("vault.appraisal.appraise",))
#: What notify-deploy sends for a function that opens its own span.
TRACED = replace(APPRAISE, traced=("vault.appraisal.appraise",))
OTHER = CodeSeen("vault.api.list_vaults", "/srv/app/vault/api.py", 12, 0)


def _coded(n: int, *code: CodeSeen, traces: int = 0, seed: int = 1) -> ReleaseData:
    rng = np.random.default_rng(seed)
    return release(rng, [Group("GET /vaults", n, code=code)], traces=traces)


def test_changed_function_reached_with_counts_from_either_convention() -> None:
    cand = _coded(500, CodeSeen("appraise", "/srv/app/vault/appraisal.py", 30, 420))
    found, findings = reach.code_reach([APPRAISE], cand, None, POLICY)
    assert [r.status for r in found] == ["reached"]
    assert found[0].hits == 420 and found[0].spans == ("GET /vaults",)
    assert findings[0].kind == "code_reached" and "420" in findings[0].message


def test_changed_lines_match_a_span_path_under_another_root() -> None:
    change = Change(file="vault/appraisal.py", lines=((10, 42),))
    hit = CodeSeen(None, "/srv/app/vault/appraisal.py", 41, 7)
    miss = CodeSeen(None, "/srv/app/vault/appraisal.py", 43, 9)
    found, _ = reach.code_reach([change], _coded(100, hit, miss), None, POLICY)
    assert found[0].status == "reached" and found[0].hits == 7


def test_a_traced_function_is_not_reached_only_after_enough_requests() -> None:
    many = reach.code_reach([TRACED], _coded(400, replace(OTHER, count=400)), None, POLICY)
    (found,), (finding,) = many
    assert found.status == "not_reached" and found.requests == 400
    assert found.bound == pytest.approx(3 / 400, rel=0.01)
    assert finding.kind == "code_not_reached" and finding.function == "vault.appraisal.appraise"
    few = reach.code_reach([TRACED], _coded(120, replace(OTHER, count=120)), None, POLICY)
    assert few[0][0].status == "not_yet" and few[1][0].kind == "low_traffic"


def test_traced_names_match_like_span_names_do() -> None:
    short = replace(APPRAISE, traced=("appraisal.appraise",))
    (found,), _ = reach.code_reach([short], _coded(400, replace(OTHER, count=400)), None, POLICY)
    assert found.status == "not_reached"


def test_an_untraced_helper_without_baseline_spans_is_unknown_not_missed() -> None:
    # Issue #6: other spans carry code attributes, but nothing says a span would name this
    # helper (it runs inside a traced caller), so its absence proves nothing.
    helper = Change(file="vault/appraisal.py", functions=("vault.appraisal._weigh",))
    cand = _coded(5000, replace(OTHER, count=5000))
    base = _coded(5000, replace(OTHER, count=5000), seed=2)
    found, findings = reach.code_reach([helper], cand, base, POLICY)
    assert [r.status for r in found] == ["unknown"] and findings == []
    sentence = reach.reach_sentence(found, any_code=True) or ""
    assert "No span carries the code attributes of vault.appraisal._weigh" in sentence
    assert "cannot tell whether it ran" in sentence


def test_a_file_no_span_points_into_is_unknown() -> None:
    docstring = Change(file="vault/__init__.py", lines=((1, 3),))
    cand = _coded(5000, replace(OTHER, count=5000))
    found, findings = reach.code_reach([docstring], cand, cand, POLICY)
    assert found[0].status == "unknown" and findings == []


def test_a_file_spans_point_into_can_be_not_reached() -> None:
    change = Change(file="vault/api.py", lines=((40, 50),))  # spans name the file, line 12
    found, findings = reach.code_reach(
        [change], _coded(500, replace(OTHER, count=500)), None, POLICY
    )
    assert found[0].status == "not_reached"
    assert [f.kind for f in findings] == ["code_not_reached"]


def test_unknown_when_spans_carry_no_code_attributes() -> None:
    found, findings = reach.code_reach([TRACED], _coded(5000), None, POLICY)
    assert found[0].status == "not_reached"  # traced: a span would name it had it run
    found, findings = reach.code_reach([APPRAISE], _coded(5000), None, POLICY)
    assert [r.status for r in found] == ["unknown"] and findings == []
    assert "no code.* attributes" in (reach.reach_sentence(found, any_code=False) or "")


def test_code_that_stopped_being_reached_needs_no_traced_hint() -> None:
    base = _coded(1000, CodeSeen("vault.appraisal.appraise", None, None, 60))
    cand = _coded(1000, replace(OTHER, count=1000), seed=2)
    (found,), (finding,) = reach.code_reach([APPRAISE], cand, base, POLICY)
    assert found.status == "stopped" and found.p_value is not None and found.p_value < 0.01
    assert finding.kind == "code_not_reached" and "stopped" in finding.message


def test_changed_code_in_the_analysis_summary() -> None:
    rng = np.random.default_rng(6)
    base = release(rng, routes(2, 500))
    result = analyse(release(rng, routes(2, 500)), base, changes=[APPRAISE], policy=POLICY)
    assert result.reach[0].status == "unknown"
    assert any("Changed code: unknown" in line for line in result.summary)
    assert not [f for f in result.findings if f.kind == "code_not_reached"]


def test_a_changed_function_counts_its_own_calls_not_the_other_changed_functions() -> None:
    """Line ranges of a change cover all its functions: ``deposit`` did not run in the seals."""
    change = Change(
        file="vault/deposits.py",
        functions=("vault.deposits.deposit", "vault.deposits.goblin_seal"),
        lines=((10, 80),),
    )
    deposit = CodeSeen("vault.deposits.deposit", "/srv/vault/deposits.py", 20, 213)
    seal = CodeSeen("vault.deposits.goblin_seal", "/srv/vault/deposits.py", 60, 202)
    rng = np.random.default_rng(3)
    cand = release(rng, [Group("deposit", 213, code=(deposit,)), Group("seal", 202, code=(seal,))])
    found, findings = reach.code_reach([change], cand, None, POLICY)
    assert [(r.function, r.hits, r.spans) for r in found] == [
        ("vault.deposits.deposit", 213, ("deposit",)),
        ("vault.deposits.goblin_seal", 202, ("seal",)),
    ]
    assert "vault.deposits.deposit ran in 213 spans (deposit)" in findings[0].message
