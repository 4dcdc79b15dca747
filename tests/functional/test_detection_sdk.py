"""``benchmarks.detection_sdk`` runs its scenarios through the real path and reads them right."""

from __future__ import annotations

import numpy as np

from benchmarks import detection_sdk
from benchmarks.detection_sdk import SCENARIOS, Scenario


def _scenario(text: str) -> int:
    return next(n for n, s in enumerate(SCENARIOS) if text in s.name)


def _rows(text: str) -> dict[str, float]:
    return {
        name.split(",")[0]: value
        for name, value, _ in detection_sdk._scenario((_scenario(text), 1))
    }


def test_a_version_that_never_serves_is_not_running_at_every_look() -> None:
    rows = _rows("never serving")
    assert rows["verdict not_running at every look"] == 100.0
    assert rows["false alarms (regressed verdict)"] == 0.0
    assert rows["spans per deploy"] > 1000  # the baseline's spans went through the store


def test_three_requests_a_route_are_insufficient_data() -> None:
    rows = _rows("too little traffic")
    assert rows["verdict insufficient_data at look 1"] == 100.0
    assert rows["false alarms (regressed verdict)"] == 0.0


def test_rolling_deploys_split_the_rollout_between_versions() -> None:
    s = next(s for s in SCENARIOS if s.rolling and s.expect is None)
    medians = np.full(detection_sdk.GROUPS, 20.0)
    rng = np.random.default_rng(7)
    new = detection_sdk._requests(rng, s, medians, True)
    old = detection_sdk._requests(rng, s, medians, False)
    rollout = detection_sdk.ROLLOUT.total_seconds()
    during = np.count_nonzero(new.starts < rollout)
    after = np.count_nonzero((new.starts >= rollout) & (new.starts < 2 * rollout))
    assert 0.4 < during / after < 0.6  # half the traffic while both serve
    assert np.count_nonzero((old.starts >= 0) & (old.starts < rollout)) > 0.4 * after
    plain = detection_sdk._requests(rng, Scenario("x"), medians, False)
    assert np.all(plain.starts < 0)


def test_a_tail_regression_slows_only_the_changed_routes_slowest_twentieth() -> None:
    medians = np.full(detection_sdk.GROUPS, 20.0)
    tail = next(s for s in SCENARIOS if s.tail != 1.0)
    plain = detection_sdk._requests(np.random.default_rng(3), Scenario("x"), medians, True)
    slow = detection_sdk._requests(np.random.default_rng(3), tail, medians, True)
    changed = ~np.isclose(slow.ms, plain.ms)
    target = plain.routes == detection_sdk.TARGET
    assert not changed[~target].any()
    assert 0.04 < np.count_nonzero(changed) / np.count_nonzero(target) < 0.06
    assert np.allclose(slow.ms[changed], plain.ms[changed] * tail.tail)
    assert plain.ms[changed].min() >= np.quantile(plain.ms[target], 0.94)


def test_an_error_rise_fails_the_changed_routes_requests_more_often() -> None:
    rise = next(s for s in SCENARIOS if s.error_rate >= 0.02)
    rng = np.random.default_rng(5)
    r = detection_sdk._requests(rng, rise, np.full(detection_sdk.GROUPS, 20.0), True)
    target = r.routes == detection_sdk.TARGET
    assert 0.015 < r.errors[target].mean() < 0.025
    assert r.errors[~target].mean() < 0.003
