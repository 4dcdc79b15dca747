"""Span groups on traces of stock auto-instrumentation: SQLAlchemy's ``SELECT <db>`` spans are
compared per statement, and HTTP client spans without ``http.route`` per templated URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from feedbot.analysis.compare import Analysis, analyse
from feedbot.policy import DetectionPolicy
from feedbot.spans.aggregate import Aggregator, aggregate
from feedbot.spans.aggregate_columns import fold
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp import decode_protobuf
from feedbot.spans.otlp_arrow import BlockReader
from feedbot.spans.otlp_scan import Scanner
from tests.fakes.sdk_spans import json_line, protobuf

REQUESTS = 60
ITEMS = 40  # the N of version 2's N+1


def provider(version: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "vault", "service.version": version})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def vault_spans(db: Path, version: str) -> list[ReadableSpan]:
    """Requests of an app on sqlite through instrumented SQLAlchemy; version 2 adds an N+1."""
    tracer_provider, exporter = provider(version)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, name TEXT, owner TEXT)"
        )
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("INSERT OR IGNORE INTO accounts VALUES (1, 'a', 'o')")
    SQLAlchemyInstrumentor().instrument(
        engine=engine, tracer_provider=tracer_provider, skip_dep_check=True
    )
    tracer = tracer_provider.get_tracer("vault")
    route = {"http.route": "/accounts/{account_id}", "http.request.method": "GET"}
    try:
        for number in range(REQUESTS):
            with (
                tracer.start_as_current_span("GET /accounts/{id}", kind=SpanKind.SERVER) as span,
                engine.connect() as connection,
            ):
                span.set_attributes(route)
                connection.execute(
                    sa.text("SELECT id, name, owner FROM accounts WHERE id = :id"),
                    {"id": number % 3 + 1},
                ).all()
                for item in range(ITEMS if version == "2" else 0):
                    connection.execute(
                        sa.text("SELECT id FROM items WHERE id = :id"), {"id": item}
                    ).all()
    finally:
        SQLAlchemyInstrumentor().uninstrument()
        engine.dispose()
    return list(exporter.get_finished_spans())


def collected(spans: list[ReadableSpan]) -> ReleaseData:
    return aggregate(decode_protobuf(protobuf(spans)))


def window(spans: list[ReadableSpan], version: str) -> SpanQuery:
    start = min(s.start_time or 0 for s in spans) // 1000
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start)
    return SpanQuery("vault", version, moment, moment + timedelta(hours=1), environment=None)


def names(data: ReleaseData) -> dict[str, int]:
    return {g.name: g.count for g in data.groups}


def compare(baseline: ReleaseData, candidate: ReleaseData) -> Analysis:
    return analyse(candidate, baseline, changes=(), policy=DetectionPolicy())


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ReadableSpan], ...]:
    db = tmp_path_factory.mktemp("vault-run") / "vault.db"
    return vault_spans(db, "1"), vault_spans(db, "2")


def test_an_n_plus_one_is_a_new_statement_group_not_a_faster_select(
    vault: tuple[list[ReadableSpan], ...],
) -> None:
    v1, v2 = vault
    # The instrumentation names every query after the operation and the sqlite file's path.
    queries = {s.name for s in v2 if s.name.startswith("SELECT ")}
    assert len(queries) == 1 and "vault-run" in queries.pop()
    old, new = collected(v1), collected(v2)
    account = "vault.db: SELECT … FROM accounts WHERE id = ?"
    items = "vault.db: SELECT id FROM items WHERE id = ?"
    assert names(old)[account] == REQUESTS and items not in names(old)
    assert names(new)[account] == REQUESTS and names(new)[items] == REQUESTS * ITEMS
    assert not any("vault-run" in name for name in names(new))  # no temporary path
    result = compare(old, new)
    assert result.verdict != "improved"
    by_span = {g.span: g for g in result.groups}
    assert by_span[items].status == "new" and by_span[items].baseline is None
    assert by_span[account].status == "tested"
    assert any(f.kind == "new_operation" and f.span == items for f in result.findings)
    # The N+1 detector still sees the statement repeated under the request (sqlite's 40 fast
    # queries stay under Sentry's 50 ms floor, so it reports no N+1 here).
    (repeat,) = new.repeats
    assert repeat.parent == "GET /accounts/{account_id}" and "items" in repeat.statement
    assert int(repeat.repeats.min()) == ITEMS


def test_every_reader_groups_the_instrumented_app_alike(
    vault: tuple[list[ReadableSpan], ...],
) -> None:
    spans = vault[1]
    query = window(spans, "2")
    rows = aggregate(decode_protobuf(protobuf(spans)), query)
    scanned = Aggregator()
    Scanner.of(scanned, query).scan(json_line(spans).encode())
    columns = Aggregator()
    for target, found in BlockReader(Scanner.of(columns, query)).decode_block(
        (json_line(spans) + "\n").encode()
    )[0]:
        fold(target, found)
    for other in (scanned.result(), columns.result()):
        assert other.groups == rows.groups and other.repeats == rows.repeats


class Clients(BaseHTTPRequestHandler):
    """``/clients/<id>`` takes ``slow`` seconds, ``/health`` none."""

    slow = 0.0

    def do_GET(self) -> None:
        if self.path.startswith("/clients/"):
            time.sleep(self.slow)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def clients_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Clients)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client_spans(base: str, version: str, slow: float) -> list[ReadableSpan]:
    """Real httpx client spans (named ``GET``, no ``http.route``) to a URL per client id."""
    tracer_provider, exporter = provider(version)
    Clients.slow = slow
    HTTPXClientInstrumentor().instrument(tracer_provider=tracer_provider)
    try:
        with httpx.Client() as client:
            for number in range(40):
                client.get(f"{base}/clients/8f3a{number:04x}c0ffee{number}")
                client.get(f"{base}/health?probe={number}")
    finally:
        HTTPXClientInstrumentor().uninstrument()
    return list(exporter.get_finished_spans())


def test_ids_in_urls_are_templated_and_a_route_regression_is_found(clients_server: str) -> None:
    v1 = client_spans(clients_server, "1", 0.002)
    v2 = client_spans(clients_server, "2", 0.03)
    assert {s.name for s in v1} == {"GET"}
    old, new = collected(v1), collected(v2)
    # 127.0.0.1:<port>: an address, written {ip}, so the group is the same for every pod.
    route, health = "GET {ip}/clients/{id}", "GET {ip}/health"
    assert names(old) == {route: 40, health: 40} == names(new)
    result = compare(old, new)
    assert result.verdict == "regressed"
    regressed = {f.span for f in result.findings if f.counts_toward == "regressed"}
    # (/health is not asserted on: its sub-millisecond timings on a shared machine are noise.)
    assert route in regressed
