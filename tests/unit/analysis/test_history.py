"""Exception history (types of the last versions count as seen) and the warm-up note."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from feedbot.analysis.compare import Analysis, analyse
from feedbot.analysis.findings import KnownException
from feedbot.analysis.report import ReportContext, to_json
from feedbot.digest.text import report_text
from feedbot.policy import DetectionPolicy, with_overrides
from feedbot.spans.model import ExceptionSeen, ReleaseData
from tests.unit.analysis.synth import release, routes

POLICY = DetectionPolicy()
SEEN = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
CONTEXT = ReportContext(
    service="vault-service",
    version="1.4.2",
    baseline_version="1.4.1",
    environment="production",
    candidate_window=(SEEN, SEEN + timedelta(hours=1)),
)


def _pair(seed: int = 3) -> tuple[ReleaseData, ReleaseData]:
    """A baseline without exceptions, and a candidate whose GET /r1 raises KeyError 40 times."""
    rng = np.random.default_rng(seed)
    base = release(rng, routes(3, 2000))
    cand = release(rng, routes(3, 2000))
    groups = [
        replace(g, exceptions=(ExceptionSeen("KeyError", 40, "x", "ab" * 16),))
        if g.name == "GET /r1"
        else g
        for g in cand.groups
    ]
    return replace(cand, groups=groups), base


def _new_types(result: Analysis) -> list[str]:
    return [f.exception_type or "" for f in result.findings if f.kind == "new_error_type"]


def test_a_type_absent_from_the_baseline_is_new_without_history() -> None:
    cand, base = _pair()
    assert _new_types(analyse(cand, base, changes=(), policy=POLICY)) == ["KeyError"]


def test_a_type_an_earlier_version_raised_on_the_group_is_not_new() -> None:
    cand, base = _pair()
    known = [KnownException("GET /r1", "KeyError", "1.3.0", SEEN)]
    result = analyse(cand, base, changes=(), policy=POLICY, known_exceptions=known)
    assert _new_types(result) == []
    (line,) = [s for s in result.summary if "raised by earlier versions" in s]
    assert "KeyError on GET /r1 in 1.3.0 (last seen 2026-11-22 09:30 UTC)" in line
    assert "3 versions / 7 days" in line


def test_history_of_another_type_does_not_hide_a_new_one() -> None:
    cand, base = _pair()
    known = [KnownException("GET /r1", "ValueError", "1.3.0")]
    result = analyse(cand, base, changes=(), policy=POLICY, known_exceptions=known)
    assert _new_types(result) == ["KeyError"]
    assert not [s for s in result.summary if "raised by earlier versions" in s]


def test_a_type_an_earlier_version_raised_on_another_group_is_not_new_to_the_service() -> None:
    cand, base = _pair()
    known = [KnownException("GET /r0", "KeyError", "1.3.0")]
    result = analyse(cand, base, changes=(), policy=POLICY, known_exceptions=known)
    assert _new_types(result) == []
    (line,) = [s for s in result.summary if "raised by earlier versions" in s]
    assert "KeyError on GET /r0 in 1.3.0" in line


def test_a_type_the_baseline_raised_on_another_group_is_not_new_to_the_service() -> None:
    cand, base = _pair()
    raised = ExceptionSeen("KeyError", 3, "x")
    base = replace(
        base,
        groups=[
            replace(g, exceptions=(raised,)) if g.name == "GET /r2" else g for g in base.groups
        ],
    )
    result = analyse(cand, base, changes=(), policy=POLICY)
    assert _new_types(result) == []
    (line,) = [s for s in result.summary if "other operations of the baseline" in s]
    assert "KeyError on GET /r1 (in the baseline on GET /r2)" in line
    assert result.verdict == "neutral"


def _warmed(cand: ReleaseData, early: int, slow: float) -> ReleaseData:
    """``cand`` with each instance's first ``early`` spans per group marked early, ×``slow``."""
    groups = []
    for g in cand.groups:
        marks = np.zeros(g.durations_ms.size, dtype=bool)
        for index in range(len(g.instance_names)):
            marks[np.flatnonzero(g.instances == index)[:early]] = True
        durations = np.where(marks, g.durations_ms * slow, g.durations_ms)
        groups.append(replace(g, durations_ms=durations, early=marks))
    return replace(cand, groups=groups)


def test_spans_left_out_as_warm_up_are_stated_in_json_and_text() -> None:
    rng = np.random.default_rng(5)
    base, cand = release(rng, routes(3, 2000)), release(rng, routes(3, 2000))
    policy = with_overrides(POLICY, {"latency": {"warmup": "3m"}})
    # 4 instances × 3 groups × 25 early spans, 3× slower than the rest.
    result = analyse(_warmed(cand, 25, 3.0), base, changes=(), policy=policy)
    assert result.warmup_excluded == 300
    note = "Warm-up: 300 spans from the first 3m of 4 of 4 new instance(s)"
    assert any(s.startswith(note) for s in result.summary), result.summary
    doc = to_json(result, CONTEXT)
    assert doc["warmup_excluded"] == 300 and any(n.startswith(note) for n in doc["notes"])
    assert note in report_text(doc)
    assert result.verdict == "neutral" and not result.findings  # a note, no alarm


def test_no_warm_up_note_when_nothing_was_left_out() -> None:
    cand, base = _pair()
    result = analyse(cand, base, changes=(), policy=POLICY)
    assert result.warmup_excluded == 0
    assert not [s for s in result.summary if s.startswith("Warm-up")]
