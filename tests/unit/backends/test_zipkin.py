"""Zipkin v2: fixtures, unit conversions, tags, annotations, sampling and failures, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from feedbot.backends.base import TraceBackend
from feedbot.backends.sampling import SearchBudget
from feedbot.backends.zipkin import SEARCH, ZipkinBackend, parse_annotation, zipkin_row
from feedbot.errors import BackendResponseError, BackendUnavailable
from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import SpanQuery
from tests.conftest import upstream_files
from tests.fakes.sdk_spans import shop_spans, zipkin_spans
from tests.fakes.trace_servers import FakeZipkin
from tests.search_backends import search_backend, trace_links, wrong_shape_error

#: The shop's DB spans are grouped by their normalised statement, not "SELECT shop".
STATEMENT = "SELECT * FROM items WHERE order_id = ?"

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
QUERY = SpanQuery(
    service="Checkout",
    version="1.4.2",
    start=T0,
    end=T0 + timedelta(hours=1),
    environment="production",
)
FILES = upstream_files("zipkin", "*/*.json")


def load(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    return document if isinstance(document, list) else [document]


@pytest.fixture
def fake() -> Iterator[FakeZipkin]:
    with FakeZipkin() as server:
        yield server


def backend(fake: FakeZipkin, sleeps: list[float] | None = None, **options: Any) -> ZipkinBackend:
    return search_backend(ZipkinBackend, fake, sleeps, **options)


@pytest.fixture
def zipkin(fake: FakeZipkin) -> Iterator[ZipkinBackend]:
    made = backend(fake)
    yield made
    made.api.client.close()


def test_is_a_trace_backend(zipkin: ZipkinBackend) -> None:
    assert isinstance(zipkin, TraceBackend)
    assert zipkin.name == "zipkin"


@pytest.mark.parametrize("name", FILES)
def test_every_fixture_is_served_and_parsed(
    fake: FakeZipkin, name: str, fixtures_dir: Path
) -> None:
    spans = load(fixtures_dir / "zipkin" / name)
    fake.add_spans(spans)
    first = min(s["timestamp"] for s in spans if "timestamp" in s)
    service = spans[0]["localEndpoint"].get("serviceName", "")  # envoy.json has none
    start = datetime.fromtimestamp(first // 10**6, UTC)
    query = SpanQuery(service=service, version="", start=start, end=start + timedelta(hours=1))
    zipkin = backend(fake, filter_version=False)
    with zipkin.api.client:
        rows = zipkin.find_traces(query, query.start, query.end, limit=10)
    assert sorted(r["span_id"] for r in rows) == sorted(s["id"] for s in spans)
    for row, span in zip(
        sorted(rows, key=lambda r: r["span_id"]), sorted(spans, key=lambda s: s["id"]), strict=True
    ):
        assert row["start_ns"] == span.get("timestamp", 0) * 1000
        assert row["duration_ns"] == span.get("duration", 0) * 1000
        assert row["kind"] == span.get("kind", "INTERNAL")
        assert row["is_error"] == ("error" in span.get("tags", {}))
        assert row["parent_span_id"] == span.get("parentId")


def test_fixture_details(fixtures_dir: Path) -> None:
    zipkin = fixtures_dir / "zipkin"
    (client,) = [zipkin_row(s) for s in load(zipkin / "benchmarks/zipkin2-client.json")]
    assert client["trace_id"] == "4d1e00c0db9010db86154a4ba6e91385"
    assert (client["service"], client["name"], client["kind"]) == ("frontend", "get", "CLIENT")
    assert client["start_ns"] == 1_472_470_996_199_000_000
    assert client["duration_ns"] == 207_000_000
    assert client["attributes"] == {"http.path": "/api", "clnt/finagle.version": "6.45.0"}
    db = [zipkin_row(s) for s in load(zipkin / "zipkin-lens-testdata/simple-db-p6.json")]
    insert = next(r for r in db if r["span_id"] == "5d532ef6fed52445")
    # Brave's sql.query is read as the statement, so N+1 detection sees it.
    assert insert["attributes"]["db.statement"].startswith("insert into revinfo")
    server = next(r for r in db if r["kind"] == "SERVER")
    assert (server["method"], server["parent_span_id"]) == ("POST", None)


def test_resource_tags_and_both_attribute_generations() -> None:
    new = zipkin_row(
        {
            "traceId": "ABC",
            "id": "1",
            "name": "get /x",
            "kind": "SERVER",
            "timestamp": 1_700_000_000_000_001,
            "duration": 2,
            "localEndpoint": {"serviceName": "checkout"},
            "tags": {
                "service.version": "1.4.2",
                "deployment.environment.name": "production",
                "service.instance.id": "pod-1",
                "http.route": "/x",
                "http.request.method": "get",
                "code.function.name": "shop.x",
                "code.line.number": "42",
                "db.query.text": "SELECT 1",
                "otel.status_code": "STATUS_CODE_ERROR",
            },
        }
    )
    assert (new["trace_id"], new["span_id"]) == ("0000000000000abc", "0000000000000001")
    assert (new["version"], new["environment"], new["instance"]) == ("1.4.2", "production", "pod-1")
    assert (new["route"], new["method"], new["is_error"]) == ("/x", "GET", True)
    assert (new["start_ns"], new["duration_ns"]) == (1_700_000_000_000_001_000, 2000)
    assert new["attributes"]["code.line.number"] == 42
    assert "service.version" not in new["attributes"]
    old = zipkin_row(
        {
            "traceId": "a" * 32,
            "id": "b" * 16,
            "localEndpoint": {"serviceName": "checkout"},
            "tags": {
                "deployment.environment": "staging",
                "host.name": "h1",
                "http.method": "POST",
                "code.function": "x",
                "code.namespace": "shop",
                "code.lineno": "7",
                "db.statement": "SELECT 2",
                "span.kind": "internal",
            },
        }
    )
    assert (old["environment"], old["instance"], old["method"]) == ("staging", "h1", "POST")
    assert (old["kind"], old["version"], old["is_error"], old["start_ns"]) == (
        "INTERNAL",
        None,
        False,
        0,
    )
    assert old["attributes"]["code.lineno"] == 7


@pytest.mark.parametrize(
    ("value", "name", "attributes"),
    [
        (
            'exception|{"exception.message":"a|b","exception.type":"KeyError"}|0',
            "exception",
            {"exception.message": "a|b", "exception.type": "KeyError"},
        ),
        (
            '{"exception": {"exception.type": "ValueError"}}',
            "exception",
            {"exception.type": "ValueError"},
        ),
        ("db.client.operation.exception|{}|2", "db.client.operation.exception", {}),
        ("wr", "wr", {}),
        ("a|b", "a|b", {}),
        ("{not json", "{not json", {}),
    ],
)
def test_parse_annotation(value: str, name: str, attributes: dict[str, Any]) -> None:
    assert parse_annotation(value) == (name, attributes)


def test_exception_annotations_become_events() -> None:
    row = zipkin_row(
        {
            "traceId": "a" * 16,
            "id": "b" * 16,
            "tags": {"error": ""},
            "annotations": [
                {"timestamp": 5, "value": "sr"},
                {"timestamp": 6, "value": 'exception|{"exception.type":"KeyError"}|0'},
            ],
        }
    )
    assert row["is_error"] is True
    assert row["events"] == [
        {"name": "exception", "time_ns": 6000, "attributes": {"exception.type": "KeyError"}}
    ]
    assert row["service"] == "unknown_service"


def test_search_parameters_in_milliseconds_and_lower_case(
    zipkin: ZipkinBackend, fake: FakeZipkin
) -> None:
    query = SpanQuery(
        service="Checkout",
        version="1.4.2",
        start=datetime(2026, 11, 24, 10, 0, 0, 250_500, tzinfo=UTC),
        end=datetime(2026, 11, 24, 10, 30, 0, 500, tzinfo=UTC),
        span_name="GET /Orders",
    )
    zipkin.find_traces(query, query.start, query.end, limit=25)
    (call,) = fake.requests(SEARCH)
    end_ms = to_ns(query.end) // 10**6 + 1  # rounded up to cover the last 500 µs
    assert call.params == {
        "serviceName": ["checkout"],
        "endTs": [str(end_ms)],
        "lookback": [str(end_ms - to_ns(query.start) // 10**6)],
        "limit": ["25"],
        "spanName": ["get /orders"],
        "annotationQuery": ["service.version=1.4.2"],
    }


def test_collect_keeps_the_version_environment_and_window(
    zipkin: ZipkinBackend, fake: FakeZipkin
) -> None:
    start = to_ns(T0)
    fake.add_spans(zipkin_spans(shop_spans(version="1.4.2", start_ns=start, count=4, errors=[2])))
    fake.add_spans(zipkin_spans(shop_spans(version="1.4.1", start_ns=start, count=3)))
    fake.add_spans(
        zipkin_spans(shop_spans(version="1.4.2", start_ns=start, count=2, environment="staging"))
    )
    fake.add_spans(zipkin_spans(shop_spans(version="1.4.2", start_ns=start - 10**9, count=1)))
    data = zipkin.collect(QUERY)
    groups = {g.name: g for g in data.groups}
    assert set(groups) == {"GET /orders/{id}", STATEMENT, "price order", "post"}
    server = groups["GET /orders/{id}"]
    assert (server.kind, server.count, server.errors) == ("SERVER", 4, 1)
    assert server.durations_ms.tolist() == [9.0, 9.25, 9.5, 9.75]
    assert [(e.type, e.count, e.message) for e in server.exceptions] == [
        ("KeyError", 1, "'item 2'")
    ]
    assert server.code[0].function == "shop.views.order" and server.code[0].lineno == 42
    assert groups[STATEMENT].callers == (("GET /orders/{id}", 8),)
    assert data.traces == 4 and data.sampled_traces is None


def test_old_names_without_the_version_filter(fake: FakeZipkin) -> None:
    start = to_ns(T0)
    fake.add_spans(
        zipkin_spans(shop_spans(version="1.4.2", start_ns=start, count=3, old_names=True))
    )
    fake.add_spans(zipkin_spans(shop_spans(version="1.4.1", start_ns=start, count=5)))
    zipkin = backend(fake, filter_version=False)
    with zipkin.api.client:
        data = zipkin.collect(QUERY)
    server = next(g for g in data.groups if g.kind == "SERVER")
    assert (server.name, server.count) == ("GET /orders/{id}", 3)
    assert server.code[0].function == "shop.views.order"
    assert [r.statement for r in data.repeats] == ["SELECT * FROM items WHERE order_id = ?"]


def test_sampling_note(fake: FakeZipkin) -> None:
    fake.add_spans(
        zipkin_spans(shop_spans(version="1.4.2", start_ns=to_ns(T0), count=12, step_ns=300 * 10**9))
    )
    zipkin = backend(fake, budget=SearchBudget(per_operation=6, slices=2, locate_limit=4))
    with zipkin.api.client:
        data = zipkin.collect(QUERY)
    searches = fake.requests(SEARCH)
    assert searches[0].param("limit") == "4"  # where the version served
    # Each slice: the whole service (3 traces), then each operation the answers did not fill;
    # every trace holds every operation here, so none is searched alone.
    limits = {
        c.param("limit") for c in searches[1:] if "error" not in str(c.param("annotationQuery"))
    }
    assert limits == {"1", "3"}  # one-trace probes for the edges, 3 a slice
    assert not any(c.param("spanName") for c in searches)
    assert data.sampled_traces == data.traces < 12
    (note,) = data.notes
    assert note.startswith(f"zipkin: {data.traces} of about ")
    assert f"in {zipkin.api.requests} requests (stratified over 4 operations, " in note
    assert note.endswith("span counts are estimates (zipkin has no exact counts)")


def test_no_traces(zipkin: ZipkinBackend) -> None:
    data = zipkin.collect(QUERY)
    assert data.groups == [] and data.traces == 0


def test_400_is_a_response_error(zipkin: ZipkinBackend, fake: FakeZipkin) -> None:
    fake.fail_next(SEARCH, status=400, body=b"endTs should be positive", content_type="text/plain")
    with pytest.raises(BackendResponseError) as raised:
        zipkin.collect(QUERY)
    assert str(raised.value) == "zipkin: GET /api/v2/traces answered 400: endTs should be positive"


def test_retries_then_unavailable(fake: FakeZipkin) -> None:
    sleeps: list[float] = []
    fake.fail_next(SEARCH, status=429, retry_after="1")
    fake.fail_next(SEARCH, status=502, times=3)
    zipkin = backend(fake, sleeps, slices=1)
    with zipkin.api.client, pytest.raises(BackendUnavailable, match="after 4 attempts: 502"):
        zipkin.collect(QUERY)
    assert sleeps == [1.0, 0.5, 1.0]


def test_slow_answers_time_out(fake: FakeZipkin) -> None:
    fake.fail_next(SEARCH, status=200, delay=1.0, times=4)
    zipkin = backend(fake, timeout=0.05)
    with zipkin.api.client, pytest.raises(BackendUnavailable, match="ReadTimeout"):
        zipkin.collect(QUERY)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html></html>", "with a body that is not JSON"),
        (b'{"traces": []}', "body: expected a list of traces"),
        (b"[{}]", "[0]: expected a list of spans"),
        (b"[[1]]", "[0][0]: expected a span object"),
        (b'[[{"traceId": "xyz", "id": "1"}]]', "[0][0].traceId: expected up to 32 hex characters"),
        (
            b'[[{"traceId": "1", "id": "1", "timestamp": "soon"}]]',
            "[0][0].timestamp: expected micro",
        ),
        (b'[[{"traceId": "1", "id": "1", "duration": -5}]]', "[0][0].duration: expected micro"),
        (b'[[{"traceId": "1", "id": "1", "kind": "SRV"}]]', "[0][0].kind: 'SRV' is not a Zipkin"),
        (b'[[{"traceId": "1", "id": "1", "tags": []}]]', "[0][0].tags: expected an object"),
        (b'[[{"traceId": "1", "id": "1", "annotations": [{}]}]]', "annotations[0].value: expected"),
    ],
)
def test_answers_in_the_wrong_shape(
    zipkin: ZipkinBackend, fake: FakeZipkin, body: bytes, problem: str
) -> None:
    message = wrong_shape_error(zipkin, fake, SEARCH, body, QUERY)
    assert message.startswith("zipkin: GET /api/v2/traces")
    assert problem in message


def test_trace_links(fake: FakeZipkin) -> None:
    unlinked, linked = trace_links(
        ZipkinBackend, fake, ui_url="https://zipkin.example/zipkin/", trace_id="4bf92f3577b34da6"
    )
    assert unlinked is None
    assert linked == "https://zipkin.example/zipkin/traces/4bf92f3577b34da6"
