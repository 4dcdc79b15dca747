"""Whether the old version ran after the deploy as before it (drift.steadiness)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from feedbot.analysis.drift import steadiness
from feedbot.spans.model import ReleaseData
from tests.unit.analysis.synth import release, routes

MIN = 30


def _old(seed: int, *, after: int, before: int, ratio: float = 1.0) -> tuple[ReleaseData, ...]:
    rng = np.random.default_rng(seed)
    then = release(rng, routes(5, before), spread=0.0)
    now = release(rng, routes(5, after, ratio=ratio), spread=0.0)
    return now, then


def test_the_same_old_version_after_the_deploy_is_steady() -> None:
    now, then = _old(1, after=600, before=3000)
    found = steadiness(now, then, MIN)
    assert found.steady, found.sentence
    assert found.groups == 5 and found.spans == (3000, 15000)
    assert 0.95 <= found.low < found.ratio < found.high <= 1.05  # type: ignore[operator]


def test_a_load_step_at_the_deploy_is_not_steady() -> None:
    now, then = _old(2, after=150, before=900, ratio=1.3)
    found = steadiness(now, then, MIN)
    assert not found.steady
    assert 1.2 < found.ratio < 1.4  # type: ignore[operator]
    assert found.sentence.startswith("the old version was 3")
    assert "slower there than before the deploy (90% CI +" in found.sentence


def test_one_route_that_moved_alone_is_named_and_not_steady() -> None:
    now, then = _old(3, after=300, before=900)
    moved = replace(now.groups[2], durations_ms=now.groups[2].durations_ms * 1.4)
    now = replace(now, groups=[*now.groups[:2], moved, *now.groups[3:]])
    found = steadiness(now, then, MIN)
    assert not found.steady
    assert [span for span, _ in found.moved] == ["GET /r2"]
    assert "; on its own: GET /r2 +" in found.sentence


def test_too_few_spans_after_the_deploy_cannot_show_steadiness() -> None:
    now, then = _old(4, after=40, before=900)
    found = steadiness(now, then, MIN)
    assert found.ratio is not None
    assert not found.steady  # the interval is wider than ±5%, whatever the estimate
    assert found.high - found.low > 0.1


def test_only_the_spans_from_before_the_cut_stand_for_before() -> None:
    """The baseline's window runs to the look: its spans after the deploy are left out."""
    now, then = _old(5, after=300, before=1200, ratio=1.3)
    rng = np.random.default_rng(6)
    later = release(rng, routes(5, 1200, ratio=1.3), spread=0.0)
    cut = datetime(2026, 1, 1, tzinfo=UTC)
    cut_ns = int(cut.timestamp()) * 1_000_000_000
    groups = []
    for old, new in zip(then.groups, later.groups, strict=True):
        # The old version's spans before the cut, then as many, 30% slower, after it.
        durations = np.concatenate([old.durations_ms, new.durations_ms])
        starts = np.concatenate(
            [cut_ns - rng.integers(1, 10**12, 1200), cut_ns + rng.integers(0, 10**12, 1200)]
        )
        groups.append(replace(old, count=2400, durations_ms=durations, starts_ns=starts))
    whole = replace(then, groups=groups)
    cut_off = steadiness(now, whole, MIN, until=cut)
    assert cut_off.spans == (1500, 6000)
    assert 1.2 < cut_off.ratio < 1.4  # type: ignore[operator]
    # Without the cut, half the "before" spans are from after the deploy: the shift is hidden.
    assert steadiness(now, whole, MIN).ratio < 1.15  # type: ignore[operator]


def test_no_group_on_both_sides_says_so() -> None:
    now, then = _old(7, after=20, before=900)
    found = steadiness(now, then, MIN)
    assert found.ratio is None and not found.steady
    assert found.sentence.startswith("no span group of the old version had enough spans")
