"""Embedded-backend ingest into SQLite and PostgreSQL: spans per second, protobuf vs OTLP/JSON.

Batches of 512 spans (the SDK's default export batch) made by the real OpenTelemetry SDK, each
span with HTTP, DB and code attributes. Figures are medians of several runs; "decode" is the
pure decoding step alone, "ingest" is decode plus the bulk insert in one transaction, of spans
the store does not have yet (one batch in eight is sent twice, as exporters retry).

    python -m benchmarks.ingest [--quick]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks._db import scratch_databases
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.spans.otlp_http import decode_request
from feedbot.store.db import make_engine, make_sessions

BATCH = 512
RUNS = 5


def _payloads() -> dict[str, tuple[bytes, str, str | None]]:
    """One batch as protobuf, OTLP/JSON, and gzip-compressed protobuf."""
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench", "service.version": "1.0.0"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(BATCH):
        attributes = {
            "http.route": "/orders/{id}",
            "http.request.method": "GET",
            "db.statement": f"SELECT * FROM orders WHERE id = {i}",
            "code.function.name": "shop.orders.load",
            "code.line.number": 42,
        }
        tracer.start_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=attributes).end()
    provider.shutdown()
    message = encode_spans(memory.get_finished_spans())
    document: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    proto = message.SerializeToString()
    return {
        "protobuf": (proto, "application/x-protobuf", None),
        "protobuf+gzip": (gzip.compress(proto), "application/x-protobuf", "gzip"),
        "json": (json.dumps(document).encode(), "application/json", None),
    }


def fresh_bodies(kind: str, n: int, *, retry_every: int = 8) -> list[bytes]:
    """``n`` bodies of one format, each with its own span ids, as a stream of exports.

    Sending one body again and again measures the store skipping spans it already has (the
    unique index answers "conflict"), not storing them. Every ``retry_every``-th body repeats
    the one before it, as an exporter that retries a batch it got no answer for.
    """
    import random

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    body, _, _ = _payloads()[kind if kind != "protobuf+gzip" else "protobuf"]
    draw = random.Random(n)
    bodies: list[bytes] = []
    if kind == "json":
        document = json.loads(body)
        spans = [
            span
            for resource_spans in document["resourceSpans"]
            for scope_spans in resource_spans["scopeSpans"]
            for span in scope_spans["spans"]
        ]
        for i in range(n):
            if i % retry_every == retry_every - 1:
                bodies.append(bodies[-1])
                continue
            for span in spans:
                span["spanId"] = draw.randbytes(8).hex()
            bodies.append(json.dumps(document).encode())
        return bodies
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    for i in range(n):
        if i % retry_every == retry_every - 1:
            bodies.append(bodies[-1])
            continue
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.span_id = draw.randbytes(8)
        raw = message.SerializeToString()
        bodies.append(gzip.compress(raw) if kind == "protobuf+gzip" else raw)
    return bodies


def _rate(action: Callable[[], object], batches: int) -> float:
    """Median spans per second of ``batches`` calls of ``action``, over ``RUNS`` runs."""
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(batches):
            action()
        rates.append(batches * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    """Rows of (benchmark, spans per second, unit): decode per format, ingest per database.

    Args:
        postgres_admin: admin URL of a PostgreSQL server (a scratch database is made).
        quick: fewer batches per run.
    """
    batches = 2 if quick else 10
    payloads = _payloads()
    rows: list[tuple[str, float, str]] = []
    for name, (body, media, encoding) in payloads.items():
        decode = _rate(
            lambda b=body, m=media, e=encoding: decode_request(
                b, content_type=m, content_encoding=e, max_bytes=1 << 30
            ),
            batches,
        )
        rows.append((f"decode {name} ({len(body) // 1024} KiB/batch)", decode, "spans/s"))
    with scratch_databases(postgres_admin) as urls:
        for database, url in (("SQLite", urls["sqlite"]), ("PostgreSQL", urls["postgresql"])):
            engine = make_engine(url)
            backend = EmbeddedBackend(make_sessions(engine))
            for name, (_, media, encoding) in payloads.items():
                # Spans new to the store each time, one batch in eight an exporter's retry.
                fresh = iter(fresh_bodies(name, batches * RUNS))
                ingest = _rate(
                    lambda m=media, e=encoding, f=backend.ingest, b=fresh: f(next(b), m, e),
                    batches,
                )
                rows.append((f"ingest {name} into {database}", ingest, "spans/s"))
            engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches, for a smoke run")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = run(args.postgres, quick=args.quick)
    width = max(len(row[0]) for row in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  unit  ({RUNS} runs of {BATCH}-span batches)")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10,.0f}  {unit}")


if __name__ == "__main__":
    main()
