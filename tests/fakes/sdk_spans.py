"""Spans made by the real OpenTelemetry SDK for tests, and what each trace store keeps of them.

Three releases, each built with explicit timestamps and a resource carrying ``service.version``:

- :func:`release_spans`: the contract suite's release (two instances; request traces with an
  N+1 and an exception, a consumer span with a remote parent, spans outside the window
  :func:`query` asks about; ``old`` switches to the deprecated attribute names);
- :func:`shop_spans`: a shop calling a second service (``payments``) in the same traces;
- :func:`sdk_release`: an ``ExportTraceServiceRequest`` with both ``code.*`` generations.

And the conversions to what the backends store: OTLP protobuf (:func:`protobuf`), OTLP/JSON as
the Collector's file exporter writes it (:func:`otlp_document`, :func:`json_line`), Zipkin v2
JSON as the Collector's ``zipkin`` exporter writes it (:func:`zipkin_spans`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)

from feedbot.spans.model import SpanQuery

JSONDict = dict[str, Any]
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(moment: datetime, ms: float = 0) -> int:
    """Nanoseconds since the epoch of ``moment`` plus ``ms`` milliseconds."""
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000 + int(ms * 1_000_000)


# The contract suite's release -------------------------------------------------------------------


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


@dataclass(frozen=True)
class Variant:
    """How one version's request traces look (the defaults are the contract suite's release).

    Attributes:
        traces: request traces per instance.
        slow_ms: added to every ``appraise`` span.
        error: what ``appraise`` raises in every third trace.
        repeats: ``SELECT items`` spans per request (the N+1).
    """

    traces: int = 3
    slow_ms: float = 0.0
    error: type[Exception] = ValueError
    repeats: int = 3


def _request_trace(tracer: Any, start: int, i: int, old: bool, variant: Variant) -> None:
    """GET /orders/{id} → SELECTs (an N+1), 1 appraise (raises in every third trace)."""
    server = tracer.start_span(
        f"GET /orders/{i}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.route": "/orders/{id}", "http.request.method": "GET"},
    )
    inside = set_span_in_context(server)
    statement = "db.statement" if old else "db.query.text"
    for n in range(variant.repeats):
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
        appraise.record_exception(variant.error("no price"), timestamp=start + 6_000_000)
        appraise.set_status(Status(StatusCode.ERROR, "no price"))
        server.set_status(Status(StatusCode.ERROR))
    appraise.end(end_time=start + 7_000_000 + i * 100_000 + int(variant.slow_ms * 1_000_000))
    server.end(end_time=start + 10_000_000 + i * 1_000_000 + int(variant.slow_ms * 1_000_000))


def _remote_child(tracer: Any, start: int, trace_id: int) -> None:
    """A consumer span whose parent lives in another service."""
    parent = SpanContext(
        trace_id=trace_id,
        span_id=0xEEE19B7EC3C1B173,
        is_remote=True,
        trace_flags=trace.TraceFlags(1),
    )
    context = set_span_in_context(NonRecordingSpan(parent))
    tracer.start_span(
        "process order", context=context, kind=SpanKind.CONSUMER, start_time=start
    ).end(end_time=start + 3_000_000)


def release_spans(
    service: str, version: str, *, old: bool = False, variant: Variant = Variant()
) -> list[ReadableSpan]:
    """Spans of one version from two instances, with explicit timestamps.

    Per instance: ``variant.traces`` request traces (see :func:`_request_trace`; at most 25), 1
    consumer span with a remote parent, and 2 spans outside the window ``[T0, T0 + 10 min)``.
    ``old`` uses the deprecated attribute names (``db.statement``, ``code.namespace``,
    ``deployment.environment``, …).
    """
    environment = "deployment.environment" if old else "deployment.environment.name"
    spans: list[ReadableSpan] = []
    for pod, offset in (("pod-a", 0), ("pod-b", 30)):
        resource = {"service.name": service, "service.version": version, environment: "production"}

        def build(tracer: Any, offset: int = offset) -> None:
            for i in range(variant.traces):
                start = ns(T0 + timedelta(seconds=offset + i))
                _request_trace(tracer, start, i + offset // 10, old, variant)
            _remote_child(tracer, ns(T0 + timedelta(seconds=offset + 5)), 0x5B8E + offset)
            for outside in (T0 - timedelta(seconds=1), T0 + timedelta(minutes=10)):
                tracer.start_span("outside", start_time=ns(outside)).end(end_time=ns(outside, 1))

        spans += sdk_spans({**resource, "service.instance.id": pod}, build)
    return spans


def protobuf(spans: list[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


def json_line(spans: Sequence[ReadableSpan]) -> str:
    """One OTLP/JSON line, as the Collector's file exporter writes it (hex ids, integer enums)."""
    return json.dumps(otlp_document(spans), separators=(",", ":"))


def query(service: str, version: str, environment: str | None = "production") -> SpanQuery:
    return SpanQuery(
        service=service,
        version=version,
        start=T0,
        end=T0 + timedelta(minutes=10),
        environment=environment,
    )


# A shop and its payments service ---------------------------------------------------------------


@contextmanager
def recording(
    resource: dict[str, Any], scope: str = "tests"
) -> Iterator[tuple[Any, list[ReadableSpan]]]:
    """A tracer of the real OpenTelemetry SDK for ``resource``, and the list its finished spans
    are put in when the block ends (the provider shut down, so every span is exported)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans: list[ReadableSpan] = []
    try:
        yield provider.get_tracer(scope, "1.0"), spans
    finally:
        provider.shutdown()
        spans += exporter.get_finished_spans()


def sdk_spans(resource: dict[str, Any], build: Callable[[Any], None]) -> list[ReadableSpan]:
    """Spans made by the real OpenTelemetry SDK: ``build(tracer)`` starts and ends them."""
    with recording(resource, "tests.shop") as (tracer, spans):
        build(tracer)
    return spans


def shop_spans(
    *,
    version: str,
    start_ns: int,
    count: int,
    service: str = "checkout",
    environment: str = "production",
    errors: Sequence[int] = (),
    step_ns: int = 60_000_000_000,
    old_names: bool = False,
) -> list[Any]:
    """``count`` traces of a small shop, one every ``step_ns``, made by the SDK.

    Each trace: a SERVER span ``GET /orders/{id}`` with code attributes, two DB CLIENT spans
    running the same statement under it (an N+1 candidate), an INTERNAL span, and a CLIENT call
    to another service (``payments``, whose SERVER span is in the same trace). Traces whose index
    is in ``errors`` fail with a ``KeyError`` exception event. ``old_names`` uses the deprecated
    attribute names (``deployment.environment``, ``code.function``/``code.namespace``,
    ``db.statement``, ``http.method``). All durations are whole microseconds.
    """
    env_key = "deployment.environment" if old_names else "deployment.environment.name"
    code = (
        {"code.function": "order", "code.namespace": "shop.views", "code.lineno": 42}
        if old_names
        else {"code.function.name": "shop.views.order", "code.line.number": 42}
    )
    statement_key = "db.statement" if old_names else "db.query.text"
    method_key = "http.method" if old_names else "http.request.method"
    resource = {"service.name": service, "service.version": version, env_key: environment}
    children: list[tuple[Any, int]] = []

    def build(tracer: Any) -> None:
        for i in range(count):
            begin = start_ns + i * step_ns
            server = tracer.start_span(
                "GET /orders/{id}",
                kind=SpanKind.SERVER,
                start_time=begin,
                attributes={"http.route": "/orders/{id}", method_key: "GET", **code},
            )
            context = set_span_in_context(server)
            for j in range(2):
                db = tracer.start_span(
                    "SELECT shop",
                    kind=SpanKind.CLIENT,
                    context=context,
                    start_time=begin + (j + 1) * 1_000_000,
                    attributes={statement_key: f"SELECT * FROM items WHERE order_id = {i}"},
                )
                db.end(begin + (j + 1) * 1_000_000 + (300 + 10 * i) * 1000)
            internal = tracer.start_span(
                "price order", context=context, start_time=begin + 3_000_000
            )
            internal.end(begin + 4_500_000)
            call = tracer.start_span(
                "POST", kind=SpanKind.CLIENT, context=context, start_time=begin + 5_000_000
            )
            call.end(begin + 8_000_000)
            children.append((call, begin))
            if i in errors:
                server.add_event(
                    "exception",
                    {"exception.type": "KeyError", "exception.message": f"'item {i}'"},
                    timestamp=begin + 8_500_000,
                )
                server.set_status(Status(StatusCode.ERROR, "KeyError"))
            server.end(begin + (9_000 + 250 * i) * 1000)

    spans = sdk_spans(resource, build)
    spans += sdk_spans(
        {"service.name": "payments", "service.version": "7.0", env_key: environment},
        lambda tracer: _payments(tracer, children),
    )
    return spans


def _payments(tracer: Any, callers: list[tuple[Any, int]]) -> None:
    for call, begin in callers:
        span = tracer.start_span(
            "POST /charge",
            kind=SpanKind.SERVER,
            context=set_span_in_context(call),
            start_time=begin + 5_500_000,
            attributes={"http.route": "/charge", "http.request.method": "POST"},
        )
        span.end(begin + 7_500_000)


# An export request with both code.* generations ---------------------------------------------------


def sdk_release(
    *,
    service: str = "checkout",
    version: str = "1.4.2",
    start_ns: int = 1_764_000_000_000_000_000,
    traces: int = 6,
    resource: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    """A release's traces made by the OpenTelemetry SDK with explicit timestamps.

    Each trace: a SERVER ``GET /orders/{id}`` span (every third one an error with an exception
    event), an INTERNAL ``load`` span with new-generation ``code.*`` attributes, three CLIENT
    ``SELECT`` spans under it with one statement and different literals (an N+1), and an INTERNAL
    ``render`` span with old-generation ``code.*`` attributes. Traces
    alternate between two instances and are a second apart.
    """
    finished = []
    for instance in ("pod-a", "pod-b"):
        attributes = {
            "service.name": service,
            "service.version": version,
            "deployment.environment.name": "production",
            "service.instance.id": instance,
            **(resource or {}),
        }

        def build(tracer: Any, second: bool = instance == "pod-b") -> None:
            for i in range(traces):
                if i % 2 == second:
                    _sdk_trace(tracer, start_ns + i * 1_000_000_000, i)

        finished += sdk_spans(attributes, build)
    return encode_spans(finished)


def _sdk_trace(tracer: Any, begin: int, i: int) -> None:
    ms = 1_000_000
    server = tracer.start_span(
        "GET /orders/{id}",
        kind=SpanKind.SERVER,
        start_time=begin,
        attributes={"http.route": "/orders/{id}", "http.request.method": "GET"},
    )
    context = set_span_in_context(server)
    load = tracer.start_span(
        "load",
        context=context,
        start_time=begin + ms,
        attributes={
            "code.function.name": "shop.orders.Repository.load",
            "code.file.path": "shop/orders.py",
            "code.line.number": 42,
        },
    )
    inner = set_span_in_context(load)
    for n in range(3):
        db = tracer.start_span(
            "SELECT shop.items",
            kind=SpanKind.CLIENT,
            context=inner,
            start_time=begin + (2 + n) * ms,
            attributes={"db.query.text": f"SELECT * FROM items WHERE id = {i * 10 + n}"},
        )
        db.end(end_time=begin + (3 + n) * ms + i * 100_000)
    load.end(end_time=begin + 6 * ms)
    render = tracer.start_span(
        "render",
        context=context,
        start_time=begin + 6 * ms,
        attributes={
            "code.function": "render",
            "code.namespace": "shop.views",
            "code.filepath": "shop/views.py",
            "code.lineno": 7,
        },
    )
    render.end(end_time=begin + (7 + i) * ms)
    if i % 3 == 0:
        server.record_exception(KeyError("order"), timestamp=begin + 7 * ms)
        server.set_status(Status(StatusCode.ERROR, "order missing"))
    server.end(end_time=begin + (10 + 3 * i) * ms)


# What the trace stores keep ----------------------------------------------------------------------


def otlp_document(spans: Sequence[Any]) -> JSONDict:
    """OTLP/JSON (``TracesData``) of OpenTelemetry SDK ``ReadableSpan``s: hex ids, int enums."""
    document = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def _tag(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


def zipkin_spans(spans: Sequence[Any]) -> list[JSONDict]:
    """Zipkin v2 JSON of SDK spans, as the Collector's ``zipkin`` exporter writes them.

    Resource attributes other than ``service.name`` go into every span's tags; INTERNAL spans
    have no ``kind`` and a ``span.kind=internal`` tag; ERROR status is ``error=true`` plus
    ``otel.status_code``; events are annotations ``name|{json}|dropped``.
    """
    return [_zipkin_span(span) for span in spans]


def _zipkin_span(span: Any) -> JSONDict:
    resource = dict(span.resource.attributes)
    tags = {k: _tag(v) for k, v in resource.items() if k != "service.name"}
    tags.update({k: _tag(v) for k, v in (span.attributes or {}).items()})
    tags["otel.library.name"] = span.instrumentation_scope.name
    kind = span.kind.name
    if kind == "INTERNAL":
        tags["span.kind"] = "internal"
    status = span.status.status_code.name
    if status != "UNSET":
        tags["otel.status_code"] = f"STATUS_CODE_{status}"
    if status == "ERROR":
        tags["error"] = "true"
    out: JSONDict = {
        "traceId": format(span.context.trace_id, "032x"),
        "id": format(span.context.span_id, "016x"),
        "name": span.name,
        "timestamp": span.start_time // 1000,
        "duration": max(1, (span.end_time - span.start_time) // 1000),
        "localEndpoint": {"serviceName": resource.get("service.name", "")},
        "tags": tags,
    }
    if kind != "INTERNAL":
        out["kind"] = kind
    if span.parent is not None:
        out["parentId"] = format(span.parent.span_id, "016x")
    annotations = [_annotation(event) for event in span.events]
    if annotations:
        out["annotations"] = annotations
    return out


def _annotation(event: Any) -> JSONDict:
    attributes = dict(event.attributes or {})
    value = event.name
    if attributes:
        value = f"{event.name}|{json.dumps(attributes, separators=(',', ':'))}|0"
    return {"timestamp": event.timestamp // 1000, "value": value}
