"""One per-function computation for the code history and the pull-request preview: the
same spans give the same numbers in both."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from feedbot.analysis.footprint import footprints as preview_footprints
from feedbot.releases.event import Change
from feedbot.spans.footprint import OWN_SHARE, footprints, function_footprint
from feedbot.spans.model import CodeSeen, ExceptionSeen, ReleaseData, SpanGroupStats

APPRAISE = "vault.appraisal.Appraiser.appraise"
FILE = "vault/appraisal.py"


def _group(
    name: str,
    durations: list[float],
    *,
    errors: int,
    appraise: int,
    raised: int = 0,
    caller: str = "(root)",
) -> SpanGroupStats:
    """A group of ``len(durations)`` spans, ``appraise`` of which named the function."""
    return SpanGroupStats(
        name=name,
        kind="SERVER" if caller == "(root)" else "INTERNAL",
        count=len(durations),
        errors=errors,
        durations_ms=np.array(durations, dtype=np.float64),
        exceptions=(ExceptionSeen("KeyError", raised),) if raised else (),
        code=(CodeSeen(APPRAISE, FILE, 30, appraise),),
        callers=((caller, len(durations)),),
    )


#: The function's own group (every span names it) and one it shares: 5 of 20 spans.
OWN = _group("appraise", [10.0] * 9 + [30.0], errors=2, appraise=10, raised=2, caller="GET /v")
SHARED = _group("render", [100.0] * 20, errors=8, appraise=5, raised=8, caller="GET /v")


def test_what_adds_up_is_apportioned_by_the_functions_share_of_each_group() -> None:
    got = function_footprint([(OWN, 10), (SHARED, 5)], APPRAISE)
    assert got.calls == 15
    assert got.errors == 2 + 8 * 5 // 20  # the shared group's errors, a quarter of them
    assert got.error_rate == pytest.approx(4 / 15)
    assert got.exceptions == (("KeyError", 4),)
    assert got.callers == (("GET /v", 15),)


def test_latency_is_only_that_of_the_groups_the_function_owns() -> None:
    got = function_footprint([(OWN, 10), (SHARED, 5)], APPRAISE)
    assert got.p50_ms == 10.0
    assert got.p95_ms == pytest.approx(float(np.percentile(OWN.durations_ms, 95)), abs=0.001)
    assert OWN_SHARE == 0.9


def test_a_function_owning_no_group_has_no_latency_rather_than_anothers() -> None:
    got = function_footprint([(SHARED, 5)], APPRAISE)
    assert (got.calls, got.errors) == (5, 2)
    assert (got.p50_ms, got.p95_ms) == (None, None)


def test_the_history_row_of_a_function_is_its_function_footprint() -> None:
    data = ReleaseData(groups=[OWN, SHARED])
    [row] = [f for f in footprints(data) if f.kind == "function"]
    assert row == function_footprint([(OWN, 10), (SHARED, 5)], APPRAISE, file=FILE)


def test_the_preview_judges_ownership_per_version_not_on_their_summed_spans() -> None:
    # Two versions served in the window, each with a "render" group of 50 spans, 30 of which
    # named the function: 60% of each, so neither is its own, although 60 >= 90% of 50.
    v1 = _group("render", [5.0] * 50, errors=10, appraise=30)
    v2 = _group("render", [7.0] * 50, errors=10, appraise=30)
    change = Change(file=FILE, functions=(APPRAISE,))
    [found] = preview_footprints([change], ReleaseData(groups=[v1, v2]), window=timedelta(days=1))
    assert found.calls == 60 and found.usage == "used"
    assert found.p95_ms is None
    assert found.error_rate == pytest.approx(12 / 60)  # 60% of each version's 10 errors
    assert found.routes == ("render",)


def test_the_preview_says_what_the_history_says_of_the_same_spans() -> None:
    data = ReleaseData(groups=[OWN, SHARED])
    [row] = [f for f in footprints(data) if f.kind == "function"]
    change = Change(file=FILE, functions=(APPRAISE,))
    [found] = preview_footprints([change], data, window=timedelta(days=1))
    assert (found.calls, found.errors, found.p50_ms, found.p95_ms) == (
        row.calls,
        row.errors,
        row.p50_ms,
        row.p95_ms,
    )
    assert found.exceptions == row.exceptions
