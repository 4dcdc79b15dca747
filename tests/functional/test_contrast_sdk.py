"""Attribute contrast on spans made by the real OpenTelemetry SDK, read back through OTLP
protobuf and the aggregator: one tenant, instance or peer changes and is named; with no change,
nothing is; and the analysis hands the cause to the report."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.contrast import (
    ROUTE,
    SCENARIOS,
    Scenario,
    _requests,
    collect,
    release_spans,
)
from feedbot.analysis.compare import analyse
from feedbot.analysis.contrast import causes
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData

POLICY = DetectionPolicy()


def versions(s: Scenario, value: int, seed: int) -> tuple[ReleaseData, ReleaseData]:
    rng = np.random.default_rng(seed)
    old = collect(release_spans("1.0", _requests(rng, s, False, value)), "1.0", False)
    new = collect(release_spans("1.1", _requests(rng, s, True, value)), "1.1", True)
    return new, old


def scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


@pytest.mark.parametrize(
    ("name", "value", "want", "explains"),
    [
        ("one tenant 1.5x slower", 3, "tenant.id=umbrella", "latency"),
        ("one instance 2x slower", 1, "instance=1.1-1", "latency"),
        ("one peer 2x slower", 2, "peer.service=pricing", "latency"),
        ("one tenant fails 5% (0.2% before)", 1, "tenant.id=globex", "errors"),
    ],
)
def test_the_changed_value_is_named_from_sdk_spans(
    name: str, value: int, want: str, explains: str
) -> None:
    new, old = versions(scenario(name), value, seed=value)
    group = next(g for g in new.groups if g.name == ROUTE)
    assert len(group.labels) == len(group.durations_ms) == len(group.errored)
    found = causes(new, old, slower=[ROUTE], erroring=[ROUTE], policy=POLICY)
    assert [(c.name, c.explains) for c in found] == [(want, explains)]
    assert 0.6 <= found[0].share <= 1.0


def test_a_tenant_is_told_rather_than_its_region() -> None:
    new, old = versions(scenario("one tenant 2x slower"), 0, seed=7)
    (cause,) = causes(new, old, slower=[ROUTE], erroring=[], policy=POLICY)
    assert cause.name == "tenant.id=acme" and "app.region=eu" in cause.detail


@pytest.mark.parametrize("seed", range(3))
def test_no_change_names_no_value(seed: int) -> None:
    new, old = versions(scenario("no change"), 0, seed=seed)
    assert causes(new, old, slower=[ROUTE], erroring=[ROUTE], policy=POLICY) == []


def test_the_analysis_reports_the_slower_tenant() -> None:
    new, old = versions(scenario("one tenant 2x slower"), 2, seed=11)
    analysis = analyse(new, old, changes=[], policy=POLICY)
    assert any(f.kind == "latency_regression" and f.span == ROUTE for f in analysis.findings)
    attributes = [c for c in analysis.causes if c.kind == "attribute"]
    assert [(c.span, c.name) for c in attributes] == [(ROUTE, "tenant.id=initech")]
