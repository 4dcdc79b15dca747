"""Jaeger api_v3: fixtures, request parameters, filtering, sampling and failures, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from feedbot.backends.base import TraceBackend
from feedbot.backends.jaeger import SEARCH, JaegerBackend, rfc3339
from feedbot.backends.sampling import SearchBudget
from feedbot.errors import BackendResponseError, BackendUnavailable
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import SpanQuery
from tests.conftest import upstream_files
from tests.fakes.sdk_spans import otlp_document, shop_spans
from tests.fakes.trace_servers import FakeJaeger, parse_rfc3339
from tests.search_backends import search_backend, trace_links, wrong_shape_error

#: The shop's DB spans are grouped by their normalised statement, not "SELECT shop".
STATEMENT = "SELECT * FROM items WHERE order_id = ?"

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
QUERY = SpanQuery(
    service="checkout",
    version="1.4.2",
    start=T0,
    end=T0 + timedelta(hours=1),
    environment="production",
)
SNAPSHOTS = "jaeger/api-v3-snapshots"
STORAGE = "jaeger/otlp-storage-integration"


@pytest.fixture
def fake() -> Iterator[FakeJaeger]:
    with FakeJaeger() as server:
        yield server


def backend(fake: FakeJaeger, sleeps: list[float] | None = None, **options: Any) -> JaegerBackend:
    return search_backend(JaegerBackend, fake, sleeps, **options)


@pytest.fixture
def jaeger(fake: FakeJaeger) -> Iterator[JaegerBackend]:
    made = backend(fake)
    yield made
    made.api.client.close()


def test_is_a_trace_backend(jaeger: JaegerBackend) -> None:
    assert isinstance(jaeger, TraceBackend)
    assert jaeger.name == "jaeger"


@pytest.mark.parametrize("name", ["FindTraces.json", "GetTrace.json"])
def test_recorded_answers_parse(
    jaeger: JaegerBackend, fake: FakeJaeger, name: str, fixtures_dir: Path
) -> None:
    fake.replay(SEARCH, fixtures_dir / SNAPSHOTS / name)
    rows = jaeger.find_traces(QUERY, QUERY.start, QUERY.end, limit=10)
    assert [(r["trace_id"], r["span_id"], r["name"], r["kind"], r["is_error"]) for r in rows] == [
        ("00000000000000000000000000000001", "0000000000000002", "foobar", "SERVER", True)
    ]
    # No resource, no times: it belongs to no service's window, so collect keeps nothing.
    assert jaeger.collect(QUERY).groups == []


@pytest.mark.parametrize("name", upstream_files(STORAGE, "*_trace.json"))
def test_storage_fixtures_are_found_by_service_and_window(
    fake: FakeJaeger, name: str, fixtures_dir: Path
) -> None:
    document = json.loads((fixtures_dir / STORAGE / name).read_text())
    fake.add_otlp(document)
    expected = [
        span for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]
    ]
    first = min(int(s["startTimeUnixNano"]) for s in expected)
    service = next(
        a["value"]["stringValue"]
        for a in document["resourceSpans"][0]["resource"]["attributes"]
        if a["key"] == "service.name"
    )
    start = datetime.fromtimestamp(first // 10**9, UTC)
    query = SpanQuery(service=service, version="", start=start, end=start + timedelta(hours=1))
    jaeger = backend(fake, filter_version=False)  # the fixtures carry no service.version
    with jaeger.api.client:
        rows = jaeger.find_traces(query, query.start, query.end, limit=100)
    assert sorted(r["span_id"] for r in rows) == sorted(s["spanId"] for s in expected)
    assert {r["start_ns"] for r in rows} <= {int(s["startTimeUnixNano"]) for s in expected}


def test_search_parameters(jaeger: JaegerBackend, fake: FakeJaeger) -> None:
    query = SpanQuery(
        service="checkout",
        version="1.4.2",
        start=datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC),
        end=datetime(2026, 11, 24, 10, 30, tzinfo=UTC),
        span_name="GET /orders/{id}",
    )
    jaeger.find_traces(query, query.start, query.end, limit=37)
    (call,) = fake.requests(SEARCH)
    assert call.params == {
        "query.service_name": ["checkout"],
        "query.start_time_min": ["2026-11-24T10:00:00.123456000Z"],
        "query.start_time_max": ["2026-11-24T10:30:00.000000000Z"],
        "query.num_traces": ["37"],
        "query.operation_name": ["GET /orders/{id}"],
        "query.attributes": ['{"service.version": "1.4.2"}'],
    }


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000000000Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (1_764_000_000_123_456_789, "2025-11-24T16:00:00.123456789Z"),
        (to_ns(T0), "2026-11-24T10:00:00.000000000Z"),
    ],
)
def test_rfc3339_keeps_nanoseconds(ns: int, text: str) -> None:
    assert rfc3339(ns) == text
    assert parse_rfc3339(text) == ns


def test_collect_keeps_the_version_environment_and_window(
    jaeger: JaegerBackend, fake: FakeJaeger
) -> None:
    start = to_ns(T0)
    fake.add_otlp(otlp_document(shop_spans(version="1.4.2", start_ns=start, count=4, errors=[2])))
    fake.add_otlp(otlp_document(shop_spans(version="1.4.1", start_ns=start + 10**9, count=3)))
    fake.add_otlp(
        otlp_document(
            shop_spans(version="1.4.2", start_ns=start + 2 * 10**9, count=2, environment="staging")
        )
    )
    # Outside the window (an hour later): never counted.
    fake.add_otlp(
        otlp_document(shop_spans(version="1.4.2", start_ns=start + 3600 * 10**9, count=1))
    )
    data = jaeger.collect(QUERY)
    groups = {g.name: g for g in data.groups}
    assert set(groups) == {"GET /orders/{id}", STATEMENT, "price order", "POST"}
    server = groups["GET /orders/{id}"]
    assert (server.kind, server.count, server.errors) == ("SERVER", 4, 1)
    assert server.durations_ms.tolist() == [9.0, 9.25, 9.5, 9.75]
    assert [(e.type, e.count, e.message) for e in server.exceptions] == [
        ("KeyError", 1, "'item 2'")
    ]
    assert server.code[0].function == "shop.views.order" and server.code[0].lineno == 42
    assert groups[STATEMENT].callers == (("GET /orders/{id}", 8),)
    assert data.traces == 4 and data.sampled_traces is None
    assert data.notes == ("jaeger: all 4 traces of this version found in 1 request",)
    assert [r.statement for r in data.repeats] == ["SELECT * FROM items WHERE order_id = ?"]


def test_old_attribute_names_and_servers_that_ignore_attributes(fake: FakeJaeger) -> None:
    start = to_ns(T0)
    fake.add_otlp(
        otlp_document(shop_spans(version="1.4.2", start_ns=start, count=3, old_names=True))
    )
    fake.add_otlp(otlp_document(shop_spans(version="1.4.1", start_ns=start, count=5)))
    # A server before 2.19 ignores query.attributes: the filtering here still holds.
    jaeger = backend(fake, filter_version=False)
    with jaeger.api.client:
        data = jaeger.collect(QUERY)
    assert "query.attributes" not in fake.requests(SEARCH)[0].params
    server = next(g for g in data.groups if g.kind == "SERVER")
    assert (server.name, server.count) == ("GET /orders/{id}", 3)
    assert server.code[0].function == "shop.views.order"
    assert [r.statement for r in data.repeats] == ["SELECT * FROM items WHERE order_id = ?"]


def test_sampling_slices_where_the_version_served_and_says_so(fake: FakeJaeger) -> None:
    # 20 traces, one every 3 minutes, from 10:00 to 10:57 in a window that runs to 12:00.
    spans = shop_spans(version="1.4.2", start_ns=to_ns(T0), count=20, step_ns=180 * 10**9)
    fake.add_otlp(otlp_document(spans))
    budget = SearchBudget(per_operation=8, slices=4, locate_limit=4)
    jaeger = backend(fake, budget=budget)
    with jaeger.api.client:
        data = jaeger.collect(replace(QUERY, end=T0 + timedelta(hours=2)))
    calls = fake.requests(SEARCH)
    sliced = [c for c in calls if c.param("query.num_traces") == "2"]
    starts = sorted({c.param("query.start_time_min")[11:16] for c in sliced})  # type: ignore[index]
    # Four slices of the hour the version served, none in the empty hour after it.
    assert starts == ["10:00", "10:14", "10:28", "10:42"]
    assert max(c.param("query.start_time_max") for c in sliced) < "2026-11-24T10:58"  # type: ignore[type-var]
    assert len(calls) + 1 <= budget.max_requests(4)  # the operations are one more request
    assert data.sampled_traces == data.traces < 20
    server = next(g for g in data.groups if g.kind == "SERVER")
    # Counts are estimated from each answer's density: about the 20 there are.
    assert 14 <= server.count <= 28 and len(server.durations_ms) == data.traces
    (note,) = data.notes
    assert note.startswith(f"jaeger: {data.traces} of about ")
    assert note.endswith("span counts are estimates (jaeger has no exact counts)")


def test_a_trace_in_two_slices_is_counted_once(fake: FakeJaeger) -> None:
    # The trace starts in the first slice and its DB spans in later ones: each slice finds it.
    fake.add_otlp(otlp_document(shop_spans(version="1.4.2", start_ns=to_ns(T0), count=1)))
    jaeger = backend(fake, budget=SearchBudget(slices=4, locate_limit=1))
    with jaeger.api.client:
        data = jaeger.collect(QUERY)
    assert len(fake.requests(SEARCH)) > 4
    assert {g.name: g.count for g in data.groups}[STATEMENT] == 2
    assert data.traces == 1


def test_404_means_no_traces(jaeger: JaegerBackend, fake: FakeJaeger) -> None:
    data = jaeger.collect(QUERY)
    assert data.groups == [] and data.traces == 0
    assert len(fake.requests(SEARCH)) == 1  # nothing anywhere in the window: no more asked


def test_streamed_answers_of_jaeger_1(jaeger: JaegerBackend, fake: FakeJaeger) -> None:
    document = otlp_document(shop_spans(version="1.4.2", start_ns=to_ns(T0), count=2))
    lines = [
        json.dumps({"result": {"resourceSpans": [rs]}}) for rs in document["resourceSpans"]
    ] + [json.dumps({"error": {"httpCode": 404, "message": "No traces found"}})]
    fake.fail_next(SEARCH, status=200, body="\n".join(lines).encode())
    rows = jaeger.find_traces(QUERY, QUERY.start, QUERY.end, limit=10)
    assert len(rows) == 2 * 6


def test_400_names_the_backend_path_and_message(jaeger: JaegerBackend, fake: FakeJaeger) -> None:
    with pytest.raises(BackendResponseError) as raised:
        jaeger.collect(SpanQuery(service="", version="1", start=T0, end=T0 + timedelta(hours=1)))
    assert str(raised.value) == (
        "jaeger: GET /api/v3/traces answered 400: service name must be specified"
    )


def test_429_and_500_are_retried(fake: FakeJaeger) -> None:
    sleeps: list[float] = []
    fake.fail_next(SEARCH, status=429, retry_after="2")
    fake.fail_next(SEARCH, status=500)
    jaeger = backend(fake, sleeps, slices=1)
    with jaeger.api.client:
        assert jaeger.collect(QUERY).groups == []
    assert sleeps == [2.0, 0.5]
    assert jaeger.api.requests == 3


def test_500_until_the_end_is_unavailable(fake: FakeJaeger) -> None:
    fake.fail_next(SEARCH, status=500, times=99)
    jaeger = backend(fake)
    with jaeger.api.client, pytest.raises(BackendUnavailable) as raised:
        jaeger.collect(QUERY)
    assert str(raised.value) == (
        "jaeger: GET /api/v3/traces failed after 4 attempts: 500: injected failure 500"
    )
    assert len(fake.requests(SEARCH)) == 4


def test_slow_answers_time_out(fake: FakeJaeger) -> None:
    fake.fail_next(SEARCH, status=200, delay=1.0, times=4)
    jaeger = backend(fake, timeout=0.05)
    with jaeger.api.client, pytest.raises(BackendUnavailable, match="ReadTimeout"):
        jaeger.collect(QUERY)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>502 Bad Gateway</html>", "with a body that is not JSON"),
        (b"[1, 2]", "body: expected {'result'}"),
        (b'{"data": []}', "body: expected {'result'}"),
        (b'{"result": []}', "result: expected an OTLP/JSON object"),
        (b'{"result": {"resourceSpans": "x"}}', "result: resourceSpans: expected a list"),
        (
            b'{"result": {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}}',
            "traceId: expected 32 hex characters",
        ),
        (b'{"error": {"httpCode": 500, "message": "db down"}}', "error: {'httpCode': 500"),
    ],
)
def test_answers_in_the_wrong_shape(
    jaeger: JaegerBackend, fake: FakeJaeger, body: bytes, problem: str
) -> None:
    message = wrong_shape_error(jaeger, fake, SEARCH, body, QUERY)
    assert message.startswith("jaeger: GET /api/v3/traces")
    assert problem in message


def test_trace_links(fake: FakeJaeger) -> None:
    unlinked, linked = trace_links(
        JaegerBackend, fake, ui_url="https://jaeger.example/ui/", trace_id="4bf92f3577b34da6"
    )
    assert unlinked is None
    assert linked == "https://jaeger.example/ui/trace/4bf92f3577b34da6"
