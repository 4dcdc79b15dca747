"""Embedded-backend ingest into SQLite and PostgreSQL: spans per second, protobuf vs OTLP/JSON.

Batches of 512 spans (the SDK's default export batch) made by the real OpenTelemetry SDK, each
span with HTTP, DB and code attributes. Figures are medians of several runs; "decode" is the
pure decoding step alone, "ingest" is decode plus the bulk insert in one transaction, of spans
the store does not have yet (one batch in eight is sent twice, as exporters retry).

Ingest is measured two ways side by side, in the same run: the path ``feedbot serve`` takes
(``decode_packed``, what its decoding process returns, then ``EmbeddedBackend.store_packed``,
what its writer thread calls; both in this process here, so the hand-over between processes and
the group commit are not counted) and ``EmbeddedBackend.ingest`` (span dicts, then
``insert_spans``), which the demo and tests use.

Then the CPU each stage of the serve path spends per span (decode into columns, pack, and the
store's write: this process's share and the PostgreSQL server process's), which bounds what one
machine can ingest; and the write of a group holding a batch stored already (a retry), which
takes the staging path.

    python -m benchmarks.ingest [--quick]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._db import scratch_databases
from feedbot.backends.embedded import EmbeddedBackend, decode_packed
from feedbot.spans.otlp_http import decode_request, decode_request_columns
from feedbot.store import span_queries
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


def fresh_bodies(kind: str, n: int, *, retry_every: int = 8, seed: int = 0) -> list[bytes]:
    """``n`` bodies of one format, each with its own span ids, as a stream of exports.

    Sending one body again and again measures the store skipping spans it already has (the
    unique index answers "conflict"), not storing them. Every ``retry_every``-th body repeats
    the one before it, as an exporter that retries a batch it got no answer for. Another
    ``seed`` draws other span ids, for a second stream into the same store.
    """
    import random

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    body, _, _ = _payloads()[kind if kind != "protobuf+gzip" else "protobuf"]
    draw = random.Random(n + (seed << 32))
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


#: A row of :func:`measure`: benchmark, then spans per second on the serve path, by its writer
#: thread alone, and by ``EmbeddedBackend.ingest`` (the last two None for decoding).
Row = tuple[str, float, float | None, float | None]


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    """:func:`measure`'s figures as (benchmark, spans per second, unit), one per row (for
    ``python -m benchmarks``' table)."""
    rows: list[tuple[str, float, str]] = []
    for name, served, written, by_dicts in measure(postgres_admin, quick=quick):
        rows.append((name if written is None else f"{name}, serve path", served, "spans/s"))
        if written is not None and by_dicts is not None:
            rows.append((f"{name}, serve path's writer alone", written, "spans/s"))
            rows.append((f"{name}, EmbeddedBackend.ingest", by_dicts, "spans/s"))
    return rows


def measure(postgres_admin: str, *, quick: bool = False) -> list[Row]:
    """Decoding per format, and ingest per format and database three ways (see :data:`Row`).

    Args:
        postgres_admin: admin URL of a PostgreSQL server (a scratch database is made).
        quick: fewer batches per run.
    """
    batches = 2 if quick else 10
    payloads = _payloads()
    rows: list[Row] = []
    for name, (body, media, encoding) in payloads.items():
        decode = _rate(
            lambda b=body, m=media, e=encoding: decode_request(
                b, content_type=m, content_encoding=e, max_bytes=1 << 30
            ),
            batches,
        )
        rows.append((f"decode {name} ({len(body) // 1024} KiB/batch)", decode, None, None))
    with scratch_databases(postgres_admin) as urls:
        for database, url in (("SQLite", urls["sqlite"]), ("PostgreSQL", urls["postgresql"])):
            engine = make_engine(url)
            backend = EmbeddedBackend(make_sessions(engine))
            for name, (_, media, encoding) in payloads.items():
                rates = _ingest_rates(backend, name, media, encoding, batches)
                rows.append((f"ingest {name} into {database}", *rates))
            engine.dispose()
    return rows


def _ingest_rates(
    backend: EmbeddedBackend, kind: str, media: str, encoding: str | None, batches: int
) -> tuple[float, float, float]:
    """Spans per second of ``kind`` exports stored the serve way (``decode_packed``, what the
    decoding process returns, then ``store_packed``, what the writer thread calls), by the
    writer alone (packed beforehand), and by ``EmbeddedBackend.ingest``.

    Each way stores spans new to the store (its own span ids), one batch in eight an
    exporter's retry.
    """
    bodies = [iter(fresh_bodies(kind, batches * RUNS, seed=n)) for n in range(3)]

    def pack(body: bytes) -> span_queries.PackedSpans:
        return decode_packed(
            body, content_type=media, content_encoding=encoding, dialect=backend.dialect
        )

    def serve() -> None:
        backend.store_packed([pack(next(bodies[0]))])

    packed = iter([pack(body) for body in bodies[1]])

    def write() -> None:
        backend.store_packed([next(packed)])

    def ingest() -> None:
        backend.ingest(next(bodies[2]), media, encoding)

    return _rate(serve, batches), _rate(write, batches), _rate(ingest, batches)


def stage_cpu(postgres_admin: str, *, batches: int = 40) -> list[tuple[str, float]]:
    """CPU microseconds per protobuf span of each stage of the serve path, on PostgreSQL.

    Decoding is into columns (``decode_request_columns``) and packing a column at a time
    (``pack_columns``), as the decoding process does. The write is 8 batches a transaction (a
    group commit of 8 exporters; one in eight a retry of another in its group, written once),
    COPYed straight into ``spans``. Then the same again for groups whose first batch is stored
    already (an exporter's retry after its first try was committed): the COPY is refused and
    undone, and the staging path writes the group. The server's share is read from ``/proc`` of
    the connection's backend process (Linux, server on this machine).
    """
    from sqlalchemy import text

    bodies = fresh_bodies("protobuf", batches + 1, seed=7)
    spans = batches * BATCH
    with scratch_databases(postgres_admin) as urls:
        engine = make_engine(urls["postgresql"])
        backend = EmbeddedBackend(make_sessions(engine))
        started = time.process_time()
        columns = [
            decode_request_columns(
                b, content_type="application/x-protobuf", content_encoding=None, max_bytes=1 << 30
            )
            for b in bodies
        ]
        decoded = time.process_time() - started
        started = time.process_time()
        packed = [span_queries.pack_columns(c, "postgresql") for c in columns]
        packing = time.process_time() - started
        backend.store_packed(packed[:1])  # the pooled connection
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        server, started = _cpu(pid), time.process_time()
        for i in range(1, batches + 1, 8):
            backend.store_packed(packed[i : i + 8])
        client, server = time.process_time() - started, _cpu(pid) - server
        # Each group again, its first batch stored already (as just now), the rest new.
        again = [
            span_queries.pack_columns(c, "postgresql")
            for c in (
                decode_request_columns(
                    b,
                    content_type="application/x-protobuf",
                    content_encoding=None,
                    max_bytes=1 << 30,
                )
                for b in fresh_bodies("protobuf", batches + 1, seed=8)
            )
        ]
        staged, started = _cpu(pid), time.process_time()
        for i in range(1, batches + 1, 8):
            backend.store_packed([packed[i], *again[i + 1 : i + 8]])
        staged_client, staged = time.process_time() - started, _cpu(pid) - staged
        engine.dispose()
    per = 1e6 / spans
    return [
        ("decode into columns (decoding process)", decoded * 1e6 / len(bodies) / BATCH),
        ("pack as COPY text (decoding process)", packing * 1e6 / len(bodies) / BATCH),
        ("write: feedbot's writer thread", client * per),
        ("write: the PostgreSQL server", server * per),
        ("a retried group: the writer thread", staged_client * per),
        ("a retried group: the PostgreSQL server", staged * per),
    ]


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches, for a smoke run")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = measure(args.postgres, quick=args.quick)
    width = max(len(row[0]) for row in rows)
    print(f"medians of {RUNS} runs of {BATCH}-span batches, spans/s")
    heads = ("serve path", "its writer", "ingest()")
    print(f"{'benchmark':<{width}}  " + "  ".join(f"{h:>10}" for h in heads))
    for name, *figures in rows:
        cells = ("" if f is None else f"{f:,.0f}" for f in figures)
        print(f"{name:<{width}}  " + "  ".join(f"{c:>10}" for c in cells))
    stages = stage_cpu(args.postgres)
    print("\nCPU per protobuf span on the serve path into PostgreSQL, by stage")
    for stage, micros in stages:
        print(f"{stage:<{width}}  {micros:>10.1f} µs")
    total = sum(micros for _, micros in stages[:4])  # the retried group's rows are apart
    print(
        f"{'all stages':<{width}}  {total:>10.1f} µs: at most {2e6 / total:,.0f} spans/s on 2 cores"
    )


if __name__ == "__main__":
    main()
