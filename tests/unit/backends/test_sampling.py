"""The search planner's pure parts: the budget from the policy, density estimates, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedbot.analysis.stats.power import mwu_sample_size as analysis_sample_size
from feedbot.backends.sampling import (
    Probe,
    SearchBudget,
    _density,
    locate,
    mwu_sample_size,
    note,
)
from feedbot.policy import DetectionPolicy, LookPolicy
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import SpanQuery
from feedbot.spans.rows import SpanRow

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("ratio", [1.1, 1.15, 1.3, 2.0])
@pytest.mark.parametrize("alpha", [0.025, 3e-4])
def test_the_sample_size_is_the_analysis_one(ratio: float, alpha: float) -> None:
    mine = mwu_sample_size(ratio, sigma=0.5, alpha=alpha, power=0.8)
    assert mine == analysis_sample_size(ratio, sigma=0.5, alpha=alpha, power=0.8)


def test_the_budget_follows_the_policy() -> None:
    assert SearchBudget.from_policy().per_operation == 494
    stricter = DetectionPolicy(looks=LookPolicy(fdr_q=0.01))
    assert SearchBudget.from_policy(stricter).per_operation > 494
    assert SearchBudget.from_policy(ratio=2.0).per_operation == 200  # the p95 minimum
    assert SearchBudget().max_requests(13) == 71


def test_density_of_a_newest_first_answer() -> None:
    minute = 60 * 10**9
    # 11 traces in the last 10 minutes of a 60-minute slice: about 60.
    starts = [60 * minute - i * minute for i in range(11)]
    assert _density(starts, 11, 11, 0, 60 * minute) == pytest.approx(60.0, rel=0.05)
    # Not full: the answer is every trace there is.
    assert _density(starts, 11, 12, 0, 60 * minute) == 11


def _row(start: datetime) -> SpanRow:
    return SpanRow(  # type: ignore[typeddict-item]
        trace_id=f"{to_ns(start):032x}",
        span_id="1" * 16,
        parent_span_id=None,
        service="shop",
        version="1.1",
        environment=None,
        name="GET /",
        kind="SERVER",
        start_ns=to_ns(start),
    )


def test_locate_keeps_every_span_and_drops_the_empty_hours() -> None:
    served = [T0 + timedelta(hours=5, minutes=m) for m in range(0, 90, 3)]
    asked: list[Probe] = []

    def find(probe: Probe) -> list[SpanRow]:  # newest first, like Jaeger
        asked.append(probe)
        found = [_row(t) for t in served if probe.start <= t < probe.end]
        return sorted(found, key=lambda r: -r["start_ns"])[: probe.limit]

    query = SpanQuery("shop", "1.1", T0, T0 + timedelta(hours=24))
    located = locate(find, query, SearchBudget(locate_limit=5))
    assert located is not None and not located.complete
    start, end = located.window
    assert start <= served[0] and end > served[-1]
    assert end - start < timedelta(hours=4)  # of a 24-hour window
    assert len(asked) <= 2 + 2 * SearchBudget().locate_steps


def test_the_note_says_what_was_seen() -> None:
    figures = {"sampled": 1240, "estimated": 9800, "operations": 13, "errors": 40}
    line = note("jaeger", {**figures, "capped": 0, "full": 3}, 12)
    assert line == (
        "jaeger: 1,240 of about 9,800 traces searched in 12 requests (stratified over 13 "
        "operations, 40 error traces fetched); span counts are estimates (jaeger has no exact "
        "counts)"
    )
    assert (
        note("zipkin", {"sampled": 0}, 1) == "zipkin: no traces of this version found (1 request)"
    )


def test_a_services_own_policy_sets_its_budget() -> None:
    from feedbot.backends import budgets
    from feedbot.config import settings_from_mapping

    services = {
        "coarse": {"detectors": {"latency": {"ratio_floor": 1.3}}},
        "tails": {"detectors": {"tail": {"p95_min_samples": 800}}},
        "strict": {"detectors": {"latency": {"min_samples": 600}}},
        "plain": {"channel": "#plain"},
    }
    budget = budgets(settings_from_mapping({"services": services}, {}))
    assert budget("plain") is None and budget("unknown") is None
    # +30% is the smallest shift "coarse" reports: the p95 minimum is then what binds.
    assert budget("coarse") == SearchBudget(per_operation=200)
    assert budget("tails") == SearchBudget(per_operation=800)
    assert budget("strict") == SearchBudget(per_operation=600)


def test_a_search_store_asks_each_service_its_own_budget() -> None:
    from feedbot.backends import build_backend, unwrapped
    from feedbot.config import settings_from_mapping
    from tests.fakes.sdk_spans import T0 as SDK_T0
    from tests.fakes.sdk_spans import Variant, otlp_document, release_spans
    from tests.fakes.trace_servers import FakeJaeger

    with FakeJaeger() as jaeger:
        many = Variant(traces=25)  # 50 traces: more than the first search's 20
        spans = release_spans("tails", "1.0", variant=many)
        spans += release_spans("plain", "1.0", variant=many)
        jaeger.add_otlp(otlp_document(spans))
        raw = {
            "traces": {"backend": "jaeger", "url": jaeger.base_url},
            "services": {"tails": {"detectors": {"tail": {"p95_min_samples": 800}}}},
        }
        backend = unwrapped(build_backend(settings_from_mapping(raw, {}), None))  # type: ignore[arg-type]
        window = (SDK_T0, SDK_T0 + timedelta(minutes=10))
        asked = {}
        for service in ("tails", "plain"):
            before = len(jaeger.requests("/api/v3/traces"))
            backend.collect(SpanQuery(service, "1.0", *window, "production"))
            calls = jaeger.requests("/api/v3/traces")[before:]
            asked[service] = {int(str(c.param("query.num_traces"))) for c in calls}
        backend.api.client.close()  # type: ignore[attr-defined]
    assert max(asked["tails"]) == 200  # 800 over 4 slices
    assert max(asked["plain"]) == 124  # 494 over 4 slices


def test_a_short_load_test_in_a_day_long_window_is_located_to_the_second() -> None:
    # 15 seconds of traffic, 100 traces a second, ending 20 minutes into a 24-hour window:
    # slices cut to 1/16 of the window (90 minutes) would spread the count over time the
    # version never served, and the density estimate would multiply it.
    served = [T0 + timedelta(minutes=5, milliseconds=10 * i) for i in range(1500)]
    asked: list[Probe] = []

    def find(probe: Probe) -> list[SpanRow]:  # newest first, like Jaeger
        asked.append(probe)
        found = [_row(t) for t in served if probe.start <= t < probe.end]
        return sorted(found, key=lambda r: -r["start_ns"])[: probe.limit]

    window = timedelta(hours=24)
    query = SpanQuery(
        "shop", "1.1", T0 - window + timedelta(minutes=20), T0 + timedelta(minutes=20)
    )
    located = locate(find, query, SearchBudget())
    assert located is not None
    start, end = located.window
    assert start <= served[0] and end > served[-1]
    assert end - start < timedelta(seconds=15 + 2)
    assert len(asked) <= SearchBudget().locate_requests(window)
    # A version serving the whole window costs what it did.
    assert SearchBudget().locate_requests() == 10
    assert SearchBudget().locate_requests(window) == 36


def test_a_store_answering_with_other_versions_never_cuts_a_span_off() -> None:
    # Zipkin without a version filter answers a one-trace search with the newest trace of the
    # service, whatever its version: an answer holding none of this version's spans is not
    # "nothing there", and the located window still holds every span of the version.
    ours = [T0 + timedelta(seconds=20, milliseconds=700 * i) for i in range(50)]
    theirs = [T0 + timedelta(seconds=5, milliseconds=700 * i + 350) for i in range(80)]
    rows = [_row(t) for t in ours] + [{**_row(t), "version": "1.0"} for t in theirs]

    def find(probe: Probe) -> list[SpanRow]:  # newest first, any version
        lo, hi = to_ns(probe.start), to_ns(probe.end)
        found = [r for r in rows if lo <= r["start_ns"] < hi]
        return sorted(found, key=lambda r: -r["start_ns"])[: probe.limit]  # type: ignore[return-value]

    query = SpanQuery("shop", "1.1", T0, T0 + timedelta(minutes=10))
    located = locate(find, query, SearchBudget())
    assert located is not None
    start, end = located.window
    assert start <= ours[0] and end > ours[-1]
