"""One contract for every trace backend: the same SDK spans give the same ReleaseData.

Each backend registers a factory in ``FACTORIES``: it receives the spans made by the real
OpenTelemetry SDK (:func:`release_spans`) and the test's ``request`` (for fixtures such as
``tmp_path`` or a loopback server), puts the spans where the backend will find them, and returns
the backend. Every test below then runs against every factory.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from sqlalchemy import delete

from feedbot.backends.aggregate import aggregate
from feedbot.backends.base import ReleaseData, SpanQuery, TraceBackend
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.backends.otlp import PROTOBUF, decode_request
from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.spans import Span

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(moment: datetime, ms: float = 0) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000 + int(ms * 1_000_000)


# SDK spans ---------------------------------------------------------------------------------------


def _tracer(service: str, version: str, instance: str, old: bool) -> tuple[Any, Any, Any]:
    memory = InMemorySpanExporter()
    environment = "deployment.environment" if old else "deployment.environment.name"
    resource = Resource.create(
        {
            "service.name": service,
            "service.version": version,
            environment: "production",
            "service.instance.id": instance,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory, provider.get_tracer("tests.contract")


def _code(old: bool, line: int) -> dict[str, Any]:
    if old:
        return {
            "code.namespace": "vault.appraisal.Appraiser",
            "code.function": "appraise",
            "code.filepath": "vault/appraisal.py",
            "code.lineno": line,
        }
    return {
        "code.function.name": "vault.appraisal.Appraiser.appraise",
        "code.file.path": "vault/appraisal.py",
        "code.line.number": line,
    }


def _request_trace(tracer: Any, start: int, i: int, old: bool) -> None:
    """GET /orders/{id} → 3 × SELECT (an N+1), 1 appraise (raises in every third trace)."""
    server = tracer.start_span(
        f"GET /orders/{i}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.route": "/orders/{id}", "http.request.method": "GET"},
    )
    inside = trace.set_span_in_context(server)
    statement = "db.statement" if old else "db.query.text"
    for n in range(3):
        db = tracer.start_span(
            "SELECT items",
            context=inside,
            kind=SpanKind.CLIENT,
            start_time=start + (n + 1) * 1_000_000,
            attributes={statement: f"SELECT * FROM items WHERE id = {i * 10 + n}"},
        )
        db.end(end_time=start + (n + 1) * 1_000_000 + 500_000 * (n + 1))
    appraise = tracer.start_span(
        "appraise", context=inside, start_time=start + 5_000_000, attributes=_code(old, 40 + i % 2)
    )
    if i % 3 == 2:
        appraise.record_exception(ValueError("no price"), timestamp=start + 6_000_000)
        appraise.set_status(Status(StatusCode.ERROR, "no price"))
        server.set_status(Status(StatusCode.ERROR))
    appraise.end(end_time=start + 7_000_000 + i * 100_000)
    server.end(end_time=start + 10_000_000 + i * 1_000_000)


def _remote_child(tracer: Any, start: int, trace_id: int) -> None:
    """A consumer span whose parent lives in another service."""
    parent = SpanContext(
        trace_id=trace_id,
        span_id=0xEEE19B7EC3C1B173,
        is_remote=True,
        trace_flags=trace.TraceFlags(1),
    )
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    tracer.start_span(
        "process order", context=context, kind=SpanKind.CONSUMER, start_time=start
    ).end(end_time=start + 3_000_000)


def release_spans(service: str, version: str, *, old: bool = False) -> list[ReadableSpan]:
    """Spans of one version from two instances, with explicit timestamps.

    Per instance: 3 request traces (see :func:`_request_trace`), 1 consumer span with a remote
    parent, and 2 spans outside the window ``[T0, T0 + 10 min)``. ``old`` uses the deprecated
    attribute names (``db.statement``, ``code.namespace``, ``deployment.environment``, …).
    """
    spans: list[ReadableSpan] = []
    for pod, offset in (("pod-a", 0), ("pod-b", 30)):
        provider, memory, tracer = _tracer(service, version, pod, old)
        for i in range(3):
            _request_trace(tracer, ns(T0 + timedelta(seconds=offset + i)), i + offset // 10, old)
        _remote_child(tracer, ns(T0 + timedelta(seconds=offset + 5)), 0x5B8E + offset)
        for outside in (T0 - timedelta(seconds=1), T0 + timedelta(minutes=10)):
            tracer.start_span("outside", start_time=ns(outside)).end(end_time=ns(outside, 1))
        provider.shutdown()
        spans += memory.get_finished_spans()
    return spans


def protobuf(spans: list[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


def json_line(spans: list[ReadableSpan]) -> str:
    """One OTLP/JSON line, as the Collector's file exporter writes it (hex ids, integer enums)."""
    document = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document, separators=(",", ":"))


def query(service: str, version: str, environment: str | None = "production") -> SpanQuery:
    return SpanQuery(
        service=service,
        version=version,
        start=T0,
        end=T0 + timedelta(minutes=10),
        environment=environment,
    )


# Backend factories ------------------------------------------------------------------------------

BackendFactory = Callable[[list[ReadableSpan], pytest.FixtureRequest], TraceBackend]


def _embedded(url_fixture: str) -> BackendFactory:
    def make(spans: list[ReadableSpan], request: pytest.FixtureRequest) -> TraceBackend:
        engine = make_engine(str(request.getfixturevalue(url_fixture)))
        backend = EmbeddedBackend(make_sessions(engine))
        backend.ingest(protobuf(spans), PROTOBUF, None)
        services = {span.resource.attributes["service.name"] for span in spans}

        def clean() -> None:
            with make_sessions(engine).begin() as session:
                session.execute(delete(Span).where(Span.service.in_(services)))
            engine.dispose()

        request.addfinalizer(clean)
        return backend

    return make


def _otlp_file(spans: list[ReadableSpan], request: pytest.FixtureRequest) -> TraceBackend:
    folder: Path = request.getfixturevalue("tmp_path")
    half = len(spans) // 2
    (folder / "a.jsonl").write_text(json_line(spans[:half]) + "\n\n")
    (folder / "b.jsonl").write_text(json_line(spans[half:]) + "\n")
    return OtlpFileBackend([str(folder / "*.jsonl")])


#: Name → factory. Add a backend here and every contract test runs against it.
FACTORIES: dict[str, BackendFactory] = {
    "embedded-sqlite": _embedded("sqlite_url"),
    "embedded-postgresql": _embedded("postgres_url"),
    "otlp-file": _otlp_file,
}


@pytest.fixture(params=sorted(FACTORIES))
def make_backend(request: pytest.FixtureRequest) -> Callable[[list[ReadableSpan]], TraceBackend]:
    if "postgresql" in request.param:
        request.applymarker(pytest.mark.postgres)
    return lambda spans: FACTORIES[request.param](spans, request)


@pytest.fixture
def service() -> str:
    return f"vault-{uuid.uuid4().hex[:8]}"


# What is compared ------------------------------------------------------------------------------


def summary(data: ReleaseData) -> dict[str, Any]:
    """Everything backends must agree on; durations to the microsecond (Zipkin's unit)."""
    groups = [
        {
            "group": (g.name, g.kind, g.count, g.errors),
            "durations": np.round(np.sort(g.durations_ms), 3).tolist(),
            "per_instance": sorted(
                (g.instance_names[i], round(float(d), 3))
                for i, d in zip(g.instances, g.durations_ms, strict=True)
            ),
            "exceptions": [(e.type, e.count, e.message) for e in g.exceptions],
            "code": list(g.code),
            "callers": list(g.callers),
        }
        for g in data.groups
    ]
    repeats = [
        (
            r.parent,
            r.statement,
            sorted(r.repeats.tolist()),
            np.round(np.sort(r.total_ms), 3).tolist(),
        )
        for r in data.repeats
    ]
    return {"groups": groups, "repeats": repeats, "traces": data.traces}


# The contract ----------------------------------------------------------------------------------


def test_backend_conforms_to_the_protocol(make_backend: Any, service: str) -> None:
    backend = make_backend(release_spans(service, "1.0.0"))
    assert isinstance(backend, TraceBackend)
    assert isinstance(backend.name, str)


@pytest.mark.parametrize("old", [False, True], ids=["semconv-new", "semconv-old"])
def test_same_release_data_as_the_spans_themselves(
    make_backend: Any, service: str, old: bool
) -> None:
    spans = release_spans(service, "1.0.0", old=old) + release_spans(service, "1.1.0")
    backend = make_backend(spans)
    rows = decode_request(
        protobuf(spans), content_type=PROTOBUF, content_encoding=None, max_bytes=2**26
    )

    for version in ("1.0.0", "1.1.0"):
        expected = aggregate(rows, query(service, version))
        assert summary(backend.collect(query(service, version))) == summary(expected)


def test_groups_exceptions_code_callers_and_repeats(make_backend: Any, service: str) -> None:
    data = make_backend(release_spans(service, "1.0.0", old=True)).collect(query(service, "1.0.0"))

    assert [(g.name, g.kind, g.count, g.errors) for g in data.groups] == [
        ("SELECT items", "CLIENT", 18, 0),
        ("GET /orders/{id}", "SERVER", 6, 2),
        ("appraise", "INTERNAL", 6, 2),
        ("process order", "CONSUMER", 2, 0),
    ]
    select, server, appraise, consumer = data.groups
    assert data.traces == 8
    assert sorted(server.instance_names) == ["pod-a", "pod-b"]
    assert select.callers == (("GET /orders/{id}", 18),)
    assert server.callers == (("(root)", 6),)
    assert consumer.callers == (("(remote)", 2),)
    (error,) = appraise.exceptions
    assert (error.type, error.count, error.message) == ("ValueError", 2, "no price")
    assert len(error.example_trace_id) == 32
    assert {(c.function, c.filepath, c.lineno) for c in appraise.code} == {
        ("vault.appraisal.Appraiser.appraise", "vault/appraisal.py", 40),
        ("vault.appraisal.Appraiser.appraise", "vault/appraisal.py", 41),
    }
    (repeat,) = data.repeats
    assert (repeat.parent, repeat.statement) == (
        "GET /orders/{id}",
        "SELECT * FROM items WHERE id = ?",
    )
    assert repeat.repeats.tolist() == [3] * 6
    np.testing.assert_allclose(repeat.total_ms, [3.0] * 6)


def test_versions_and_windows_are_kept_apart(make_backend: Any, service: str) -> None:
    backend = make_backend(release_spans(service, "1.0.0") + release_spans(service, "1.1.0"))

    assert backend.collect(query(service, "2.0.0")).groups == []
    assert backend.collect(query(service, "1.0.0", environment="staging")).groups == []
    names = {g.name for g in backend.collect(query(service, "1.1.0", environment=None)).groups}
    assert "outside" not in names
    assert sum(g.count for g in backend.collect(query(service, "1.1.0")).groups) == 32
