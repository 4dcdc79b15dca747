"""The shift of span groups the release did not touch (§8 difference-in-differences)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from feedbot.analysis.compare import _pairs, analyse
from feedbot.analysis.drift import global_shift
from feedbot.analysis.report import ReportContext, to_json
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.model import CodeSeen, ReleaseData
from tests.unit.analysis.synth import Group, release, routes

_DEFAULT = DetectionPolicy()
#: The correction on (off by default).
POLICY = replace(_DEFAULT, latency=replace(_DEFAULT.latency, before_after_correction=True))
CHANGE = Change(file="shop/orders.py", functions=("shop.orders.get",))
_T = datetime(2026, 1, 1, tzinfo=UTC)
RAN = (CodeSeen("shop.orders.get", "shop/orders.py", 10, 400),)


def _versions(
    ratio: float, *, k: int = 5, changed: float = 1.0, seed: int = 3
) -> tuple[ReleaseData, ReleaseData]:
    """k routes; the new version ``ratio``× slower on all, GET /r0 ``changed``× more; GET /r0
    runs the changed function, calls ``load order`` (INTERNAL) and a CLIENT query."""
    rng = np.random.default_rng(seed)
    inner = [
        Group("load order", 400, median_ms=8.0, kind="INTERNAL", callers=(("GET /r0", 400),)),
        Group("SELECT orders", 400, median_ms=2.0, kind="CLIENT", callers=(("load order", 400),)),
    ]
    base = [*routes(k, 400), *inner]
    base[0] = replace(base[0], code=RAN)
    new = [replace(g, ratio=ratio) for g in base]
    new[0] = replace(new[0], ratio=ratio * changed)
    new[-1] = replace(new[-1], ratio=1.0)  # the database did not get slower
    return release(rng, new), release(rng, base)


def test_the_changed_route_and_all_it_calls_are_left_out_and_so_are_client_spans() -> None:
    new, base = _versions(1.3)
    shift = global_shift(_pairs(new, base), [CHANGE], new, base, POLICY, window="before_after")
    assert shift.basis == "untouched"
    assert {span for span, _ in shift.groups} == {f"GET /r{i}" for i in range(1, 5)}
    assert shift.ratio is not None and abs(shift.ratio - 1.3) < 0.05
    assert shift.applied and shift.p_value is not None and shift.p_value < 0.05
    factors = dict(shift.factors)
    # CLIENT spans wait on another system: compared as measured.
    assert "SELECT orders" not in factors and shift.factor("SELECT orders") == 1.0
    assert abs(factors["load order"] - 1.3) < 0.05
    # A group is never netted by its own shift: its factor leaves it out.
    others = [r for span, r in shift.groups if span != "GET /r1"]
    assert factors["GET /r1"] == float(np.exp(np.median(np.log(others))))


def test_a_real_regression_on_the_changed_route_survives_the_correction() -> None:
    new, base = _versions(1.3, changed=1.5)
    a = analyse(new, base, changes=[CHANGE], policy=POLICY, final=True, window="before_after")
    slowed = {f.span for f in a.findings if f.kind == "latency_regression" and f.tested}
    assert slowed == {"GET /r0"}
    assert a.global_shift is not None and a.global_shift.applied


def test_the_same_look_without_the_window_kind_or_in_the_overlap_is_not_corrected() -> None:
    new, base = _versions(1.3)
    for window in (None, "overlap"):
        a = analyse(new, base, changes=[CHANGE], policy=POLICY, final=True, window=window)
        assert a.global_shift is not None and not a.global_shift.applied
        assert a.verdict == "regressed"
    overlap = analyse(new, base, changes=[CHANGE], policy=POLICY, final=True, window="overlap")
    assert overlap.global_shift is not None
    assert "both versions served at the same time" in overlap.global_shift.sentence


def test_by_default_the_shift_is_reported_not_applied() -> None:
    new, base = _versions(1.3)
    a = analyse(new, base, changes=[CHANGE], policy=_DEFAULT, final=True, window="before_after")
    assert a.global_shift is not None and a.global_shift.ratio is not None
    assert not a.global_shift.applied and a.verdict == "regressed"
    assert "latency.before_after_correction is off" in a.global_shift.sentence


def test_too_few_untouched_groups_leave_latency_as_measured_and_say_why() -> None:
    new, base = _versions(1.3, k=3)  # GET /r0 changed: two untouched routes
    a = analyse(new, base, changes=[CHANGE], policy=POLICY, final=True, window="before_after")
    shift = a.global_shift
    assert shift is not None and shift.ratio is None and not shift.applied
    assert "2 span group(s) the release did not touch" in shift.sentence
    assert "3 are needed" in shift.sentence
    doc = to_json(a, ReportContext("shop", "1.1", "1.0", None, (_T, _T)))
    assert doc["global_shift"]["applied"] is False and doc["global_shift"]["ratio"] is None


def test_a_shift_within_noise_is_not_applied() -> None:
    new, base = _versions(1.0, seed=5)
    a = analyse(new, base, changes=[CHANGE], policy=POLICY, final=True, window="before_after")
    shift = a.global_shift
    assert shift is not None and shift.ratio is not None and abs(shift.ratio - 1.0) < 0.1
    assert shift.p_value is not None and shift.p_value > 0.05 and not shift.applied
    # Within noise the words do not say every route moved.
    assert shift.sentence.startswith("Routes this release did not touch"), shift.sentence
    assert "within noise" in shift.sentence
    assert a.verdict == "neutral"
