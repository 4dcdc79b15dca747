"""Attribute contrast on hand-built span groups: the value named, and when none is."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from feedbot.analysis.contrast import causes
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import ReleaseData, SpanGroupStats

ROUTE = "GET /items/{id}"
TENANTS = ("acme", "globex", "initech", "umbrella")
POLICY = DetectionPolicy()


def release(
    rng: np.random.Generator,
    *,
    n: int = 2_000,
    slow: dict[str, float] | None = None,
    failing: dict[str, float] | None = None,
    error_rate: float = 0.002,
    instances: tuple[str, ...] = ("a", "b"),
    weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25),
) -> ReleaseData:
    """One version of ROUTE: log-normal 20 ms spans of four tenants, some slower or failing."""
    tenant = rng.choice(len(TENANTS), n, p=weights)
    instance = rng.integers(0, len(instances), n).astype(np.int32)
    factor = np.array([(slow or {}).get(t, 1.0) for t in TENANTS])[tenant]
    durations = 20.0 * np.exp(rng.normal(0.0, 0.5, n)) * factor
    rates = np.array([(failing or {}).get(t, error_rate) for t in TENANTS])[tenant]
    errored = rng.random(n) < rates
    group = SpanGroupStats(
        name=ROUTE,
        kind="SERVER",
        count=n,
        errors=int(errored.sum()),
        durations_ms=durations,
        instances=instance,
        instance_names=instances,
        errored=errored,
        labels=tenant.astype(np.int32),
        label_sets=tuple((("tenant.id", t),) for t in TENANTS),
    )
    return ReleaseData(groups=[group])


def latency(new: ReleaseData, old: ReleaseData) -> list[str]:
    return [c.name for c in causes(new, old, slower=[ROUTE], erroring=[], policy=POLICY)]


def errors(new: ReleaseData, old: ReleaseData) -> list[str]:
    return [c.name for c in causes(new, old, slower=[], erroring=[ROUTE], policy=POLICY)]


def test_the_one_slower_tenant_is_named_with_its_share() -> None:
    rng = np.random.default_rng(1)
    old, new = release(rng), release(rng, slow={"globex": 2.0})
    (cause,) = causes(new, old, slower=[ROUTE], erroring=[], policy=POLICY)
    assert cause.name == "tenant.id=globex" and cause.kind == "attribute"
    assert cause.explains == "latency" and 0.8 <= cause.share <= 1.0
    assert cause.candidate is not None and cause.baseline is not None
    assert 1.7 < cause.candidate / cause.baseline < 2.3
    assert 400 < cause.n_candidate < 600 and "globex" in cause.detail


def test_a_tenant_slow_before_and_after_is_not_named() -> None:
    rng = np.random.default_rng(2)
    old = release(rng, slow={"acme": 3.0})
    new = release(rng, slow={"acme": 3.0, "initech": 1.05})
    assert latency(new, old) == []


def test_a_uniform_slowdown_names_no_value_even_a_dominant_one() -> None:
    rng = np.random.default_rng(3)
    weights = (0.7, 0.1, 0.1, 0.1)
    old = release(rng, weights=weights)
    new = release(rng, weights=weights, slow=dict.fromkeys(TENANTS, 1.5))
    assert latency(new, old) == []


def test_a_value_that_every_new_span_has_is_not_named() -> None:
    rng = np.random.default_rng(4)
    old = release(rng, instances=("old-1", "old-2"))
    new = release(rng, instances=("new-1",), slow=dict.fromkeys(TENANTS, 2.0))
    assert latency(new, old) == []


def test_the_failing_tenant_is_named_and_shares_stay_within_one() -> None:
    rng = np.random.default_rng(5)
    old, new = release(rng), release(rng, failing={"umbrella": 0.2})
    (cause,) = causes(new, old, slower=[], erroring=[ROUTE], policy=POLICY)
    assert cause.name == "tenant.id=umbrella" and cause.explains == "errors"
    assert 0.9 <= cause.share <= 1.0
    assert cause.candidate is not None and 0.15 < cause.candidate < 0.25


def test_errors_rising_everywhere_name_no_value() -> None:
    rng = np.random.default_rng(6)
    weights = (0.7, 0.1, 0.1, 0.1)
    old = release(rng, weights=weights)
    new = release(rng, weights=weights, error_rate=0.05)
    assert errors(new, old) == []


def test_without_error_flags_errors_are_not_contrasted() -> None:
    rng = np.random.default_rng(7)
    old, new = release(rng), release(rng, failing={"acme": 0.3})
    bare = ReleaseData(groups=[_without_errored(new.groups[0])])
    assert errors(bare, old) == []
    assert errors(new, old) == ["tenant.id=acme"]


def _without_errored(group: SpanGroupStats) -> SpanGroupStats:
    return replace(group, errored=np.zeros(0, np.bool_))


@pytest.mark.parametrize("seed", range(20))
def test_no_change_names_nothing(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    old, new = release(rng), release(rng)
    found = causes(new, old, slower=[ROUTE], erroring=[ROUTE], policy=POLICY)
    assert found == []


def test_a_slow_new_instance_is_named_once() -> None:
    rng = np.random.default_rng(8)
    old = release(rng, instances=("old-1", "old-2", "old-3"))
    new = release(rng, instances=("new-1", "new-2", "new-3"))
    group = new.groups[0]
    slow = group.durations_ms * np.where(group.instances == 2, 2.0, 1.0)
    new = ReleaseData(groups=[replace(group, durations_ms=slow)])
    assert latency(new, old) == ["instance=new-3"]


def test_a_tenant_and_the_region_it_lives_in_are_told_once() -> None:
    rng = np.random.default_rng(9)
    old, new = release(rng), release(rng, slow={"acme": 2.5})
    # acme and globex live in eu; the region is a second label on their spans.
    sets = tuple(
        (("region", "eu" if t in ("acme", "globex") else "us"), ("tenant.id", t)) for t in TENANTS
    )
    old = ReleaseData(groups=[replace(old.groups[0], label_sets=sets)])
    new = ReleaseData(groups=[replace(new.groups[0], label_sets=sets)])
    (cause,) = causes(new, old, slower=[ROUTE], erroring=[], policy=POLICY)
    assert cause.name == "tenant.id=acme" and "region=eu" in cause.detail
