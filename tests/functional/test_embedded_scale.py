"""The embedded store's check read as columns, and its prune in bounded batches, on both databases.

Spans come from the real OpenTelemetry SDK, stored through ``EmbeddedBackend.ingest`` as an
exporter sends them. The columnar read (attributes extracted in SQL, folded with numpy) must give
the same answer as reading every row, and fall back to the rows for a span it cannot read alike.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from sqlalchemy import Engine, delete, event, func, literal_column, select, update

from feedbot.backends import embedded
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.clock import FixedClock
from feedbot.spans import aggregate_columns
from feedbot.spans.model import SpanQuery
from feedbot.spans.otlp import PROTOBUF
from feedbot.spans.stored_columns import ITEM_SEP, PART_SEP, WANTED_KEYS
from feedbot.store import span_queries
from feedbot.store.db import make_sessions
from feedbot.store.spans import Span
from tests.fakes.sdk_spans import protobuf, recording

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _ns(seconds: float) -> int:
    return int(((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() + seconds) * 1e9)


@pytest.fixture
def service(engine: Engine) -> Iterator[str]:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    yield name
    with make_sessions(engine).begin() as session:
        session.execute(delete(Span).where(Span.service.startswith(name)))


def _spans(service: str, odd: dict[str, Any] | None = None) -> list[ReadableSpan]:
    """Request traces of two instances: routes, raw URLs, both statement and code generations,
    label-like attributes of each type, exceptions, and ``error.type`` without an event."""
    spans: list[ReadableSpan] = []
    for pod in ("pod-a", "pod-b"):
        resource = {
            "service.name": service,
            "service.version": "2.0.0",
            "deployment.environment.name": "production",
            "service.instance.id": pod,
        }
        with recording(resource, "tests.scale") as (tracer, finished):
            for i in range(12):
                start = _ns(i + (30 if pod == "pod-b" else 0))
                server = tracer.start_span(
                    "GET /orders/{id}",
                    kind=SpanKind.SERVER,
                    start_time=start,
                    attributes={
                        "http.route": "/orders/{id}",
                        "http.request.method": "GET",
                        "tenant.id": f"t{i % 3}",
                        "region": i % 2,
                        "feature_flag.variant": i % 2 == 0,
                        "cloud.region": 1.5,  # a float: no label
                        "user.id": f"u{i}",
                        **(odd or {}),
                    },
                )
                inside = set_span_in_context(server)
                for n in range(3):
                    key = "db.statement" if i % 2 else "db.query.text"
                    tracer.start_span(
                        "SELECT items",
                        context=inside,
                        kind=SpanKind.CLIENT,
                        start_time=start + (n + 1) * 1_000_000,
                        attributes={
                            key: f"SELECT * FROM items WHERE id = {i * 10 + n}",
                            "db.name": "shop",
                        },
                    ).end(end_time=start + (n + 2) * 1_000_000)
                tracer.start_span(
                    "GET",
                    context=inside,
                    kind=SpanKind.CLIENT,
                    start_time=start + 5_000_000,
                    attributes={
                        "url.full": f"http://10.0.0.{i}:8080/prices/{i * 7919}?q=1",
                        "http.request.method": "GET",
                    },
                ).end(end_time=start + 6_000_000 + i * 100_000)
                code = (
                    {
                        "code.namespace": "shop.Pricer",
                        "code.function": "price",
                        "code.lineno": 40 + i % 2,
                    }
                    if i % 2
                    else {"code.function.name": "shop.Pricer.price", "code.file.path": "shop.py"}
                )
                work = tracer.start_span(
                    "price", context=inside, start_time=start + 7_000_000, attributes=code
                )
                if i % 4 == 1:
                    work.record_exception(KeyError("no price"), timestamp=start + 7_500_000)
                    work.set_status(Status(StatusCode.ERROR))
                elif i % 4 == 3:
                    work.set_attribute("error.type", "TimeoutError")
                    work.set_status(Status(StatusCode.ERROR))
                work.end(end_time=start + 8_000_000 + i * 200_000)
                server.end(end_time=start + 10_000_000 + i * 1_000_000)
        spans += finished
    return spans


def same(a: Any, b: Any) -> bool:
    """Equal in every field, arrays too (a dataclass's ``==`` leaves its arrays out)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def _query(service: str) -> SpanQuery:
    return SpanQuery(
        service=service,
        version="2.0.0",
        start=T0,
        end=T0 + timedelta(minutes=10),
        environment="production",
    )


def test_a_check_read_as_columns_answers_as_the_rows_do(
    engine: Engine, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = EmbeddedBackend(make_sessions(engine))
    assert backend.ingest(protobuf(_spans(service)), PROTOBUF, None) == 2 * 12 * 6
    expected = backend.collect_rows(_query(service))
    monkeypatch.setattr(embedded, "COLUMN_BATCH", 50)  # several batches, traces across them

    def no_rows(query: SpanQuery) -> None:
        raise AssertionError("fell back to the rows")

    monkeypatch.setattr(backend, "collect_rows", no_rows)
    found = backend.collect(_query(service))
    assert same(found, expected)
    warm = replace(_query(service), warmup=timedelta(seconds=4))
    warmed = backend.collect(warm)
    assert same(warmed, EmbeddedBackend.collect_rows(backend, warm))
    assert not same(warmed, found)  # the warm-up left some durations out
    labels = {group.name: group for group in found.groups}
    assert "shop: SELECT * FROM items WHERE id = ?" in labels
    assert "GET {ip}/prices/{id}" in labels, sorted(labels)
    assert sum(group.count for group in found.groups) == 2 * 12 * 6
    server = labels["GET /orders/{id}"]
    keys = {key for labels_ in server.label_sets for key, _ in labels_}
    assert {"tenant.id", "region", "feature_flag.variant"} <= keys
    assert "cloud.region" not in keys and "user.id" not in keys


@pytest.mark.parametrize("enabled", [True, False])
def test_a_check_pauses_the_garbage_collector_and_leaves_it_as_it_found_it(
    engine: Engine, service: str, enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = EmbeddedBackend(make_sessions(engine))
    backend.ingest(protobuf(_spans(service)), PROTOBUF, None)
    expected = backend.collect_rows(_query(service))
    monkeypatch.setattr(embedded, "COLUMN_BATCH", 50)
    seen: list[bool] = []
    fold = aggregate_columns.fold

    def spy(aggregator: Any, columns: Any) -> None:
        seen.append(gc.isenabled())
        fold(aggregator, columns)

    monkeypatch.setattr(embedded, "fold", spy)
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert same(backend.collect(_query(service)), expected)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
    assert len(seen) > 1 and not any(seen)


@pytest.mark.parametrize(
    "odd",
    [
        {"http.route": True},
        {"code.lineno": -3},
        {"tenant.id": "a\x1eb\x1fc\x1fd"},
    ],
)
def test_a_span_the_columns_cannot_read_alike_sends_the_check_to_the_rows(
    engine: Engine, service: str, odd: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = EmbeddedBackend(make_sessions(engine))
    backend.ingest(protobuf(_spans(service, odd)), PROTOBUF, None)
    expected = backend.collect_rows(_query(service))
    read_rows: list[SpanQuery] = []
    rows = backend.collect_rows

    def spy(query: SpanQuery) -> Any:
        read_rows.append(query)
        return rows(query)

    monkeypatch.setattr(backend, "collect_rows", spy)
    assert same(backend.collect(_query(service)), expected)
    assert read_rows == [_query(service)]


def _items(packed: str | None) -> list[tuple[str, ...]]:
    """A packed text's items, the value kept only for the types the reader reads it of (text
    and integer: SQLite and PostgreSQL spell a boolean's or a float's value differently)."""
    if packed is None:
        return []
    items = [tuple(item.split(PART_SEP)) for item in packed.split(ITEM_SEP)]
    read = ("text", "integer")
    return [item if len(item) != 3 or item[1] in read else item[:2] for item in items]


def test_attributes_packed_at_ingest_are_what_sql_extracts_from_the_json(
    engine: Engine, service: str
) -> None:
    backend = EmbeddedBackend(make_sessions(engine))
    odd = {"tenant.region": "x\x1ey", "http.route": True, "org.size": 7, "plan": ["a", "b"]}
    backend.ingest(protobuf(_spans(service) + _spans(service + "-odd", odd)), PROTOBUF, None)
    dialect = engine.dialect.name
    extracted = literal_column(span_queries._packed_attributes(dialect, WANTED_KEYS))
    with make_sessions(engine).begin() as session:
        rows = session.execute(
            select(Span.packed_attributes, extracted).where(Span.service.startswith(service))
        ).all()
    assert len(rows) == 2 * 2 * 12 * 6
    tag = span_queries._packing_tag(WANTED_KEYS)
    kinds = set()
    for stored, sql in rows:
        assert stored is not None and stored.startswith(tag)
        assert _items(stored[len(tag) :] or None) == _items(sql)
        kinds |= {item[1] for item in _items(sql) if len(item) > 1}
    assert {"text", "integer", "true", "false", "real", "array"} <= kinds
    assert any(_items(sql)[-1:] == [("odd",)] for _, sql in rows)


@pytest.mark.parametrize("stored", [None, "p00000000:", "stale-tag"])
def test_rows_stored_without_their_packed_attributes_are_packed_by_the_query(
    engine: Engine, service: str, stored: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows from before the column (NULL), or packed for another key set, read as the rows."""
    backend = EmbeddedBackend(make_sessions(engine))
    backend.ingest(protobuf(_spans(service)), PROTOBUF, None)
    with make_sessions(engine).begin() as session:
        ids = list(session.scalars(select(Span.id).where(Span.service == service)))
        session.execute(update(Span).where(Span.id.in_(ids[::2])).values(packed_attributes=stored))
    expected = backend.collect_rows(_query(service))

    def no_rows(query: SpanQuery) -> None:
        raise AssertionError("fell back to the rows")

    monkeypatch.setattr(backend, "collect_rows", no_rows)
    found = backend.collect(_query(service))
    assert same(found, expected)
    server = {group.name: group for group in found.groups}["GET /orders/{id}"]
    assert {"tenant.id", "region"} <= {key for labels in server.label_sets for key, _ in labels}


def test_a_value_the_database_refuses_to_unpack_still_gets_an_answer(
    engine: Engine, service: str
) -> None:
    """Stored JSON the query cannot unpack, left for it to pack (as a row stored before the
    packed column): PostgreSQL refuses a NUL character, SQLite's JSON a NaN (both of which
    Python's reads). The query fails, and the check reads the rows."""
    backend = EmbeddedBackend(make_sessions(engine))
    backend.ingest(protobuf(_spans(service)), PROTOBUF, None)
    refused = {"postgresql": "a\x00b", "sqlite": math.nan}[engine.dialect.name]
    with make_sessions(engine).begin() as session:
        session.execute(
            update(Span)
            .where(Span.service == service, Span.kind == "SERVER")
            .values(attributes={"tenant.id": refused, "http.route": "/orders/{id}"})
            .values(packed_attributes=None)
        )
    found = backend.collect(_query(service))
    assert same(found, backend.collect_rows(_query(service)))
    assert sum(group.count for group in found.groups) == 2 * 12 * 6


def _stored(engine: Engine, service: str) -> list[int]:
    with make_sessions(engine).begin() as session:
        return list(
            session.scalars(select(Span.id).where(Span.service == service).order_by(Span.id))
        )


def test_prune_deletes_in_bounded_batches_then_keeps_the_newest_up_to_the_cap(
    engine: Engine, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "PRUNE_BATCH", 7)
    old = EmbeddedBackend(make_sessions(engine), clock=FixedClock(T0 - timedelta(days=2)))
    new = EmbeddedBackend(make_sessions(engine), clock=FixedClock(T0))
    spans = _spans(service)
    old.ingest(protobuf(spans[:60]), PROTOBUF, None)
    new.ingest(protobuf(spans[60:]), PROTOBUF, None)
    ids = _stored(engine, service)
    deletes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with make_sessions(engine).begin() as session:
            total = session.scalar(select(func.count()).select_from(Span))
        assert total is not None
        assert new.prune(T0 - timedelta(days=1), max_spans=total - 60 - 5) == 60 + 5
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(deletes) >= 60 // 7  # one bounded statement per batch, each its own transaction
    assert _stored(engine, service) == ids[65:]


def test_prune_below_the_cap_reads_only_the_ends_of_the_key(engine: Engine, service: str) -> None:
    backend = EmbeddedBackend(make_sessions(engine))
    backend.ingest(protobuf(_spans(service)), PROTOBUF, None)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert backend.prune(T0 - timedelta(days=3650), max_spans=10**9) == 0
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # The retention step looks its ids up on received_at's index; the cap step reads the key.
    selects = [s for s in statements if s.lstrip().startswith("SELECT") and "RECEIVED_AT" not in s]
    assert len(selects) == 2 and "MIN(SPANS.ID)" in selects[0] and "MAX(SPANS.ID)" in selects[1]
    assert not any("WHERE" in s or "OFFSET" in s for s in selects)
