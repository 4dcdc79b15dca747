"""Sampled stores give the verdicts of the full data: the issue's failing deploy, through the
loopback Jaeger, Zipkin and Tempo, with spans made by the real OpenTelemetry SDK.

The deploy is 90 minutes old; one route with 12% of the traffic got 30% slower, another raises
a new exception type on 2% of its requests. The baseline version served the three hours before
the deploy and its query window reaches back a day and up to now, as ``report`` asks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from feedbot.analysis.compare import Analysis, analyse
from feedbot.backends.http import RetryPolicy
from feedbot.backends.jaeger import JaegerBackend
from feedbot.backends.sampling import SearchBudget
from feedbot.backends.tempo import TempoBackend
from feedbot.backends.zipkin import ZipkinBackend
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import SpanQuery
from tests.fakes.sdk_service import (
    DEPLOY,
    ERROR_ROUTE,
    NEW_ERROR,
    ROUTES,
    SERVICE,
    SLOW_ROUTE,
    Deploy,
    deploy_spans,
)
from tests.fakes.sdk_spans import otlp_document, zipkin_spans
from tests.fakes.tempo_server import TempoServer
from tests.fakes.trace_servers import FakeJaeger, FakeZipkin

NO_WAIT = RetryPolicy(sleep=lambda _: None)
DEPLOYED = Deploy(seed=3)
CANDIDATE = SpanQuery(SERVICE, "1.1", DEPLOY, DEPLOYED.now, "production")
BASELINE = SpanQuery(SERVICE, "1.0", DEPLOY - timedelta(days=1), DEPLOYED.now, "production")
#: Operations the stores list: each route's SERVER span and the one DB span name.
OPERATIONS = len(ROUTES) + 1


@pytest.fixture(scope="module")
def spans() -> list[Any]:
    return deploy_spans(DEPLOYED)


def _jaeger(stack: ExitStack, spans: list[Any]) -> tuple[JaegerBackend, FakeJaeger]:
    fake = stack.enter_context(FakeJaeger())
    fake.add_otlp(otlp_document(spans))
    return JaegerBackend(stack.enter_context(fake.client(timeout=30)), retry=NO_WAIT), fake


def _zipkin(stack: ExitStack, spans: list[Any]) -> tuple[ZipkinBackend, FakeZipkin]:
    fake = stack.enter_context(FakeZipkin())
    fake.add_spans(zipkin_spans(spans))
    return ZipkinBackend(stack.enter_context(fake.client(timeout=30)), retry=NO_WAIT), fake


def _tempo(stack: ExitStack, spans: list[Any]) -> tuple[TempoBackend, TempoServer]:
    server = stack.enter_context(TempoServer([encode_spans(spans)]))
    http = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
    return TempoBackend(http, retry=NO_WAIT), server


STORES: dict[str, Callable[[ExitStack, list[Any]], tuple[Any, Any]]] = {
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "tempo": _tempo,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, spans: list[Any]) -> Iterator[tuple[str, Any, Any]]:
    with ExitStack() as stack:
        backend, server = STORES[request.param](stack, spans)
        yield request.param, backend, server


def _found(analysis: Analysis, kind: str, span: str) -> list[Any]:
    return [f for f in analysis.findings if f.kind == kind and f.span == span]


def test_the_issues_failing_deploy_is_found_and_the_report_says_what_it_saw(
    store: tuple[str, Any, Any], spans: list[Any]
) -> None:
    name, backend, _ = store
    candidate = backend.collect(CANDIDATE)
    asked = backend.api.requests
    baseline = backend.collect(BASELINE)
    analysis = analyse(
        candidate, baseline, changes=(), policy=DetectionPolicy(), look=1, looks=1, final=True
    )

    assert analysis.verdict == "regressed"
    assert _found(analysis, "latency_regression", SLOW_ROUTE)
    (new_type,) = _found(analysis, "new_error_type", ERROR_ROUTE)
    assert new_type.exception_type == NEW_ERROR and new_type.state == "confirmed"

    # The report says how much it saw: traces, of about how many, in how many requests.
    saw = re.compile(
        rf"{name}: ([\d,]+) of about ([\d,]+) traces searched in (\d+) requests \(stratified "
        rf"over {OPERATIONS} operations, (\d+) error traces fetched"
    )
    match = saw.match(candidate.notes[0])
    assert match, candidate.notes
    sampled, about, requests = (int(g.replace(",", "")) for g in match.groups()[:3])
    assert sampled == candidate.traces == candidate.sampled_traces
    assert requests == asked
    # What a check costs is bounded by the plan's searches: Tempo's spansets carry the spans,
    # so it reads no trace by id either.
    budget = SearchBudget.from_policy()
    # A version that served part of its window costs a few more requests to locate.
    assert asked <= budget.max_requests(OPERATIONS, CANDIDATE.end - CANDIDATE.start)
    bound = budget.max_requests(OPERATIONS, BASELINE.end - BASELINE.start)
    assert backend.api.requests - asked <= bound
    new_traces = sum(
        1 for s in spans if s.parent is None and s.resource.attributes["service.version"] == "1.1"
    )
    if name != "tempo":  # newest-first stores: counts estimated from the answers' density
        assert abs(about - new_traces) < 0.15 * new_traces
        route = next(g for g in candidate.groups if g.name == SLOW_ROUTE)
        assert 0.12 * 0.8 * new_traces < route.count < 0.12 * 1.2 * new_traces


def test_slices_lie_where_the_baseline_served(spans: list[Any]) -> None:
    with ExitStack() as stack:
        backend, fake = _jaeger(stack, spans)
        backend.collect(BASELINE)
    sliced = [c for c in fake.requests("/api/v3/traces") if c.param("query.num_traces") != "1"]
    starts = sorted(str(c.param("query.start_time_min")) for c in sliced[1:])
    ends = sorted(str(c.param("query.start_time_max")) for c in sliced[1:])
    # Served from three hours before the deploy to two minutes after it; the day before and the
    # 88 minutes after are not searched (a 90-minute resolution on a 25.5-hour window).
    assert starts[0] >= (DEPLOY - timedelta(hours=4, minutes=30)).strftime("%Y-%m-%dT%H:%M")
    assert ends[-1] <= (DEPLOY + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S")
