"""Spans from the real OpenTelemetry SDK and exporter, over HTTP, into the embedded backend."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine, delete, select

from feedbot.backends.base import TraceBackend
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.clock import FixedClock
from feedbot.spans.model import SpanQuery
from feedbot.store.db import make_sessions
from feedbot.store.spans import Span
from feedbot.web.otlp import otlp_router
from tests.fakes.sdk_spans import recording
from tests.servers import AppServer

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MAX_BODY = 64 * 1024


def ns(moment: datetime, ms: float = 0) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9 + int(
        ms * 1_000_000
    )


def Server(backend: EmbeddedBackend) -> AppServer:
    """uvicorn on loopback serving the OTLP router."""
    app = FastAPI()
    app.include_router(otlp_router(backend, max_body_bytes=MAX_BODY))
    return AppServer(app)


@pytest.fixture
def backend(engine: Engine) -> EmbeddedBackend:
    return EmbeddedBackend(make_sessions(engine))


@pytest.fixture
def server(backend: EmbeddedBackend) -> Iterator[AppServer]:
    with Server(backend) as running:
        yield running


@pytest.fixture
def service(engine: Engine) -> Iterator[str]:
    """A service name no other test uses; its spans are deleted afterwards."""
    name = f"checkout-{uuid.uuid4().hex[:8]}"
    yield name
    with make_sessions(engine).begin() as session:
        session.execute(delete(Span).where(Span.service.startswith(name)))


def sdk_spans(service: str, version: str, environment: str = "production") -> list[ReadableSpan]:
    """Spans recorded by the real SDK with explicit timestamps.

    Per version: 3 ``GET /orders/{id}`` (10, 20, 30 ms, the 30 ms one an error), 3 DB calls
    (2 ms each), 1 ``charge`` that raised; plus one span after the window and one before.
    """
    resource = {
        "service.name": service,
        "service.version": version,
        "deployment.environment": environment,
    }
    with recording(resource, "tests.embedded") as (tracer, spans):
        for i, ms in enumerate((10, 20, 30)):
            start = ns(T0 + timedelta(seconds=i))
            server = tracer.start_span(
                f"GET /orders/{i}",
                kind=SpanKind.SERVER,
                start_time=start,
                attributes={"http.route": "/orders/{id}", "http.request.method": "GET"},
            )
            db = tracer.start_span(
                "SELECT orders",
                kind=SpanKind.CLIENT,
                start_time=start + 1_000_000,
                attributes={"db.system": "postgresql", "db.statement": "SELECT * FROM orders"},
            )
            db.end(end_time=start + 3_000_000)
            if ms == 30:
                server.set_status(Status(StatusCode.ERROR))
            server.end(end_time=start + ms * 1_000_000)
        charge = tracer.start_span("charge", start_time=ns(T0, 500))
        charge.record_exception(ValueError("card declined"), timestamp=ns(T0, 501))
        charge.set_status(Status(StatusCode.ERROR, "card declined"))
        charge.end(end_time=ns(T0, 505))
        for outside in (T0 - timedelta(seconds=1), T0 + timedelta(minutes=10)):
            tracer.start_span("outside", start_time=ns(outside)).end(end_time=ns(outside, 1))
    return spans


def export(url: str, spans: list[ReadableSpan], compression: Compression) -> SpanExportResult:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def query(service: str, version: str, environment: str | None = "production") -> SpanQuery:
    return SpanQuery(
        service=service,
        version=version,
        start=T0,
        end=T0 + timedelta(minutes=10),
        environment=environment,
    )


def test_backend_conforms_to_the_protocol(backend: EmbeddedBackend) -> None:
    assert isinstance(backend, TraceBackend)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_sdk_export_groups_counts_errors_and_durations(
    server: AppServer, backend: EmbeddedBackend, service: str, compression: Compression
) -> None:
    assert export(server.url, sdk_spans(service, "1.0.0"), compression) is SpanExportResult.SUCCESS
    assert export(server.url, sdk_spans(service, "1.1.0"), compression) is SpanExportResult.SUCCESS
    export(server.url, sdk_spans(service, "1.0.0", environment="staging"), compression)

    for version in ("1.0.0", "1.1.0"):
        stats = backend.collect(query(service, version)).groups
        assert [(s.name, s.kind, s.count, s.errors) for s in stats] == [
            ("GET /orders/{id}", "SERVER", 3, 1),
            ("postgresql: SELECT * FROM orders", "CLIENT", 3, 0),  # by statement
            ("charge", "INTERNAL", 1, 1),
        ]
        np.testing.assert_allclose(np.sort(stats[0].durations_ms), [10.0, 20.0, 30.0])
        np.testing.assert_allclose(stats[1].durations_ms, [2.0, 2.0, 2.0])
        np.testing.assert_allclose(stats[2].durations_ms, [5.0])
        assert stats[0].durations_ms.dtype == np.float64

    all_environments = backend.collect(query(service, "1.0.0", environment=None)).groups
    assert [s.count for s in all_environments] == [6, 6, 2]
    assert backend.collect(query(service, "9.9.9")).groups == []


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_an_exporter_retry_is_stored_once(
    server: AppServer,
    backend: EmbeddedBackend,
    engine: Engine,
    service: str,
    compression: Compression,
) -> None:
    # The exporter resends a batch it got no answer for: the very same spans, ids and all.
    batch = sdk_spans(service, "1.0.0")
    assert export(server.url, batch, compression) is SpanExportResult.SUCCESS
    once = [(s.name, s.count) for s in backend.collect(query(service, "1.0.0")).groups]
    for _ in range(2):
        assert export(server.url, batch, compression) is SpanExportResult.SUCCESS
    assert [(s.name, s.count) for s in backend.collect(query(service, "1.0.0")).groups] == once
    # A batch mixing a resent span with a new one stores only the new one.
    fresh = sdk_spans(service, "1.0.0")
    assert export(server.url, [batch[0], fresh[0]], compression) is SpanExportResult.SUCCESS

    with make_sessions(engine)() as session:
        stored = session.scalars(select(Span.span_id).where(Span.service == service)).all()
    assert len(stored) == len(set(stored)) == len(batch) + 1


def test_attributes_and_exception_events_are_stored(
    server: AppServer, engine: Engine, service: str
) -> None:
    export(server.url, sdk_spans(service, "1.0.0"), Compression.NoCompression)

    with make_sessions(engine)() as session:
        rows = session.scalars(select(Span).where(Span.service == service)).all()
    by_name = {row.name: row for row in rows}
    assert len(rows) == 9
    db, charge = by_name["SELECT orders"], by_name["charge"]
    assert db.attributes["db.statement"] == "SELECT * FROM orders"
    assert db.parent_span_id is None and len(db.trace_id) == 32 and len(db.span_id) == 16
    assert (charge.environment, charge.version, charge.is_error) == ("production", "1.0.0", True)
    (event,) = charge.events
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "card declined"
    assert by_name["GET /orders/0"].route == "/orders/{id}"


def otlp_json(
    service: str, trace_id: str = "5B8EFFF798038103D269B633813FC60C"
) -> dict[str, object]:
    attributes = [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.version", "value": {"stringValue": "2.0.0"}},
        {"key": "deployment.environment.name", "value": {"stringValue": "production"}},
    ]
    spans = [
        {
            "traceId": trace_id,
            "spanId": f"{i:016x}",
            "name": "GET /cart",
            "kind": 2,
            "startTimeUnixNano": str(ns(T0, i)),
            "endTimeUnixNano": str(ns(T0, i + 4)),
            "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}}],
            "status": {"code": 2} if i == 0 else {},
        }
        for i in range(4)
    ]
    return {
        "resourceSpans": [
            {"resource": {"attributes": attributes}, "scopeSpans": [{"spans": spans}]}
        ]
    }


@pytest.mark.parametrize("gzipped", [False, True])
def test_otlp_json_over_http(
    server: AppServer, backend: EmbeddedBackend, service: str, gzipped: bool
) -> None:
    body = json.dumps(otlp_json(service)).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/v1/traces", content=body, headers=headers)

    assert (response.status_code, response.json()) == (200, {})
    assert response.headers["content-type"] == "application/json"
    (group,) = backend.collect(query(service, "2.0.0")).groups
    assert (group.name, group.kind, group.count, group.errors) == ("/cart", "SERVER", 4, 1)
    np.testing.assert_allclose(group.durations_ms, [4.0] * 4)


def test_protobuf_answer_is_an_empty_export_response(server: AppServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.post(
            "/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"}
        )
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-type"] == "application/x-protobuf"


def post(server: AppServer, **kwargs: object) -> httpx.Response:
    with httpx.Client(base_url=server.url) as client:
        return client.post("/v1/traces", **kwargs)  # type: ignore[arg-type]


def chunks(total: int) -> Callable[[], Iterator[bytes]]:
    def stream() -> Iterator[bytes]:
        for _ in range(total // 8192 + 1):
            yield b" " * 8192

    return stream


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        (
            {"content": b"x" * (MAX_BODY + 1), "headers": {"Content-Type": "application/json"}},
            413,
            f"body: {MAX_BODY + 1} bytes is over the limit of {MAX_BODY}",
        ),
        (
            {"content": "stream", "headers": {"Content-Type": "application/json"}},
            413,
            f"body: over the limit of {MAX_BODY} bytes",
        ),
        (
            {
                "content": gzip.compress(b" " * (4 * MAX_BODY + 1)),
                "headers": {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            },
            413,
            f"body: over the limit of {4 * MAX_BODY} bytes decompressed",
        ),
        (
            {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
            415,
            "Content-Type: text/plain is not supported; "
            "send application/x-protobuf or application/json",
        ),
        (
            {
                "content": b'{"resourceSpans": [{"scopeSpans": 3}]}',
                "headers": {"Content-Type": "application/json"},
            },
            400,
            "resourceSpans[0].scopeSpans: expected a list",
        ),
        (
            {"content": b"\xff\xff\xff", "headers": {"Content-Type": "application/x-protobuf"}},
            400,
            None,
        ),
    ],
    ids=["declared-413", "streamed-413", "gzip-bomb-413", "415", "json-400", "protobuf-400"],
)
def test_rejections_over_http(
    server: AppServer, kwargs: dict[str, object], status: int, error: str | None
) -> None:
    if kwargs["content"] == "stream":
        kwargs = {**kwargs, "content": chunks(MAX_BODY + 1)()}
    response = post(server, **kwargs)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    if error is not None:
        assert response.json() == {"error": error}
    else:
        assert response.json()["error"].startswith("body: not an ExportTraceServiceRequest")


def test_prune_deletes_spans_received_before_the_cutoff(engine: Engine, service: str) -> None:
    old = EmbeddedBackend(make_sessions(engine), clock=FixedClock(datetime(2001, 1, 1, tzinfo=UTC)))
    new = EmbeddedBackend(make_sessions(engine), clock=FixedClock(datetime(2001, 1, 3, tzinfo=UTC)))
    body = json.dumps(otlp_json(service)).encode()
    later = json.dumps(otlp_json(service, trace_id="6C9F" + "0" * 28)).encode()
    assert old.ingest(body, "application/json", None) == 4
    assert new.ingest(later, "application/json", "identity") == 4

    assert old.prune(datetime(2001, 1, 2, tzinfo=UTC)) == 4
    (group,) = old.collect(query(service, "2.0.0")).groups
    assert group.count == 4
