"""The shift of span groups the release did not touch (§8 difference-in-differences)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from feedbot.analysis.compare import Analysis, _pairs, analyse
from feedbot.analysis.drift import LOAD_STEP, ServiceLoad, global_shift, load_gate
from feedbot.analysis.report import ReportContext, to_json
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.model import CodeSeen, ReleaseData
from tests.unit.analysis.synth import Group, release, routes

_DEFAULT = DetectionPolicy()
#: The correction on whatever the load did (auto by default: only when the load moved too).
POLICY = replace(_DEFAULT, latency=replace(_DEFAULT.latency, before_after_correction="on"))
OFF = replace(_DEFAULT, latency=replace(_DEFAULT.latency, before_after_correction="off"))
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


def _by_default(load: ServiceLoad | None) -> Analysis:
    """A before/after look, every route 30% slower, under the default policy and ``load``."""
    new, base = _versions(1.3)
    return analyse(
        new,
        base,
        changes=[CHANGE],
        policy=_DEFAULT,
        final=True,
        window="before_after",
        service_load=load,
    )


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


def test_off_the_shift_is_reported_not_applied() -> None:
    new, base = _versions(1.3)
    a = analyse(new, base, changes=[CHANGE], policy=OFF, final=True, window="before_after")
    assert a.global_shift is not None and a.global_shift.ratio is not None
    assert not a.global_shift.applied and a.verdict == "regressed"
    assert "latency.before_after_correction is off" in a.global_shift.sentence


def test_by_default_a_shift_is_netted_when_the_service_got_busier_in_step() -> None:
    # 30% slower on every route, 30% more requests/min over the whole service: a busier hour.
    busier = ServiceLoad((300.25, 390.5))
    a = _by_default(busier)
    shift = a.global_shift
    assert shift is not None and shift.applied and a.verdict != "regressed"
    assert shift.service_load == busier
    assert shift.sentence.startswith("Every route was 3"), shift.sentence
    assert (
        "also those this release did not touch, and the service served 30% more requests/min "
        "(300 → 390, every version together): a change of load, so the routes are "
        "compared net of that"
    ) in shift.sentence
    doc = to_json(a, ReportContext("shop", "1.1", "1.0", None, (_T, _T)))
    assert doc["global_shift"]["service_requests_per_minute"] == {
        "before": 300.25,
        "after": 390.5,
        "counted": "requests",
        "unknown": None,
    }


@pytest.mark.parametrize(
    ("load", "words"),
    [
        (ServiceLoad((300.25, 296.0)), "but the load did not change (300 → 296 requests/min, -1%"),
        # Under the step: +6% is not read as a busier time.
        (ServiceLoad((300.0, 318.0)), "but the load did not change (300 → 318 requests/min, +6%"),
        # A closed loop: clients that wait for slower answers send fewer requests.
        (ServiceLoad((300.0, 231.0)), "while the service served 23% fewer requests/min"),
        (ServiceLoad(None, unknown="the jaeger backend cannot count"), "but the jaeger backend "),
        (None, "but the service's load is not known"),
    ],
    ids=["same", "under-the-step", "closed-loop", "cannot-count", "unknown"],
)
def test_by_default_a_release_wide_slowdown_under_the_same_load_is_the_releases(
    load: ServiceLoad | None, words: str
) -> None:
    a = _by_default(load)
    shift = a.global_shift
    assert shift is not None and not shift.applied and shift.factors == ()
    assert a.verdict == "regressed"
    assert words in shift.sentence, shift.sentence
    assert "so this is counted as the release's: the routes are compared as measured." in (
        shift.sentence
    )


def test_the_load_gate_on_real_numbers() -> None:
    # A slower look nets with more requests, a faster one with fewer; the step is 10%.
    assert LOAD_STEP == 0.10
    assert load_gate(1.30, ServiceLoad((300.0, 391.0)))[0]
    assert load_gate(1.12, ServiceLoad((300.0, 331.0)))[0]
    assert not load_gate(1.12, ServiceLoad((300.0, 329.0)))[0]
    assert not load_gate(1.20, ServiceLoad((300.0, 250.0)))[0]
    assert load_gate(0.80, ServiceLoad((300.0, 240.0)))[0]
    assert not load_gate(0.80, ServiceLoad((300.0, 360.0)))[0]
    quiet, words = load_gate(0.80, ServiceLoad((300.0, 240.0)))
    assert "and the service served 20% fewer requests/min (300 → 240" in words
    # Counted in spans where the service has no SERVER or CONSUMER span: said so.
    _, words = load_gate(1.3, ServiceLoad((1200.0, 1560.0), counted="spans"))
    assert "30% more spans/min (1,200 → 1,560, every version together)" in words
    # No rate before the deploy (nothing to divide): not gated on.
    assert not load_gate(1.3, ServiceLoad((0.0, 391.0)))[0]
    # On nets whatever the load did; off never does.
    new, base = _versions(1.3)
    same = ServiceLoad((300.0, 300.0))
    for policy, applied in ((POLICY, True), (OFF, False), (_DEFAULT, False)):
        shift = global_shift(
            _pairs(new, base), [CHANGE], new, base, policy, window="before_after", service_load=same
        )
        assert shift.applied is applied
    # The overlap never nets, and carries no service-wide rates.
    shift = global_shift(
        _pairs(new, base), [CHANGE], new, base, _DEFAULT, window="overlap", service_load=same
    )
    assert not shift.applied and shift.service_load is None


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
