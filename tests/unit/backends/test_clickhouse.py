"""ClickHouse backend: its SQL run by a real ClickHouse engine (chDB) behind the HTTP interface."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind

from feedbot.backends.base import TraceBackend
from feedbot.backends.clickhouse import ClickHouseBackend, parse_rows
from feedbot.backends.http import RetryPolicy
from feedbot.errors import BackendResponseError, BackendUnavailable, ConfigError
from feedbot.spans.aggregate import aggregate
from feedbot.spans.model import ReleaseData, SpanQuery, from_ns
from feedbot.spans.otlp_http import decode_request
from tests.fakes.clickhouse_shim import (
    ClickHouseShim,
    exporter_rows,
    request_from_otlp_json,
    shared_shim,
)
from tests.fakes.sdk_spans import recording, sdk_release

START_NS = 1_764_000_000_000_000_000
START = datetime.fromtimestamp(START_NS // 10**9, UTC)
NO_WAIT = RetryPolicy(sleep=lambda _: None)


@pytest.fixture(scope="module")
def shim() -> ClickHouseShim:
    return shared_shim()


@pytest.fixture
def ch(shim: ClickHouseShim) -> Iterator[ClickHouseShim]:
    shim.reset()
    yield shim


def backend(shim: ClickHouseShim, **kwargs: Any) -> ClickHouseBackend:
    return ClickHouseBackend(httpx.Client(base_url=shim.url), retry=NO_WAIT, **kwargs)


def query(**over: Any) -> SpanQuery:
    fields: dict[str, Any] = {
        "service": "checkout",
        "version": "1.4.2",
        "start": START,
        "end": START + timedelta(hours=1),
        "environment": "production",
    }
    return SpanQuery(**{**fields, **over})


def reference(request: Any, q: SpanQuery) -> ReleaseData:
    """What the streaming aggregator makes of the same spans (the embedded backend's path)."""
    rows = decode_request(
        request.SerializeToString(),
        content_type="application/x-protobuf",
        content_encoding=None,
        max_bytes=1 << 26,
    )
    return aggregate(rows, q)


def without_examples(data: ReleaseData) -> ReleaseData:
    """``data`` with example trace ids blanked: which trace is the example is arbitrary."""
    groups = [
        replace(g, exceptions=tuple(replace(e, example_trace_id="") for e in g.exceptions))
        for g in data.groups
    ]
    return replace(
        data, groups=groups, repeats=[replace(r, example_trace_id="") for r in data.repeats]
    )


def assert_same(got: ReleaseData, want: ReleaseData) -> None:
    got, want = without_examples(got), without_examples(want)
    assert got.groups == want.groups  # names, kinds, counts, errors, exceptions, code, callers
    for mine, theirs in zip(got.groups, want.groups, strict=True):
        np.testing.assert_allclose(np.sort(mine.durations_ms), np.sort(theirs.durations_ms))
        assert sorted(mine.instance_names) == sorted(theirs.instance_names)
        named = sorted(mine.instance_names[i] for i in mine.instances)
        assert named == sorted(theirs.instance_names[i] for i in theirs.instances)
    assert got.repeats == want.repeats
    for mine, theirs in zip(got.repeats, want.repeats, strict=True):
        assert sorted(mine.repeats) == sorted(theirs.repeats)
        np.testing.assert_allclose(np.sort(mine.total_ms), np.sort(theirs.total_ms))
    assert got.traces == want.traces


def test_conforms_to_the_protocol(ch: ClickHouseShim) -> None:
    assert isinstance(backend(ch), TraceBackend)


def test_shim_table_has_the_exporter_columns(ch: ClickHouseShim, fixtures_dir: Path) -> None:
    expected = json.loads((fixtures_dir / "clickhouse" / "expected-columns.json").read_text())
    described = ch.run("DESC TABLE default.otel_traces")
    columns = [json.loads(line) for line in described.splitlines()]
    got = [{"name": c["name"], "type": c["type"]} for c in columns if c["default_type"] != "ALIAS"]
    assert got == expected["otel_traces"]


def test_canary_fixture_span_in_milliseconds(ch: ClickHouseShim, fixtures_dir: Path) -> None:
    document = json.loads((fixtures_dir / "clickhouse" / "otlp-traces.json").read_text())
    rows = exporter_rows(request_from_otlp_json(document))
    rows[0]["ResourceAttributes"]["service.version"] = "1.0"
    ch.insert(rows)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    data = backend(ch).collect(
        query(
            service="schema-canary",
            version="1.0",
            start=start,
            end=start + timedelta(seconds=1),
            environment=None,
        )
    )
    (group,) = data.groups
    assert (group.name, group.kind, group.count, group.errors) == (
        "schema-canary-span",
        "SERVER",
        1,
        0,
    )
    assert group.durations_ms.tolist() == [1000.0]  # 1e9 ns
    assert group.callers == (("(root)", 1),)
    assert data.traces == 1


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy-spelling"])
def test_same_answer_as_the_streaming_aggregator(ch: ClickHouseShim, legacy: bool) -> None:
    request = sdk_release(start_ns=START_NS)
    ch.insert(exporter_rows(request, legacy=legacy))
    data = backend(ch).collect(query())
    assert_same(data, reference(request, query()))
    by_name = {g.name: g for g in data.groups}
    assert by_name["GET /orders/{id}"].errors == 2
    assert by_name["render"].code[0].function == "shop.views.render"  # old code.* generation
    assert data.repeats[0].statement == "SELECT * FROM items WHERE id = ?"


def test_both_spellings_in_one_table_are_counted_together(ch: ClickHouseShim) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS, traces=3), legacy=True))
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS + 10**10, traces=3)))
    server = next(g for g in backend(ch).collect(query()).groups if g.kind == "SERVER")
    assert (server.count, server.errors) == (6, 2)


def test_old_db_statement_attribute_finds_repeats(ch: ClickHouseShim) -> None:
    rows = exporter_rows(sdk_release(start_ns=START_NS, traces=2))
    for row in rows:
        attributes = row["SpanAttributes"]
        if "db.query.text" in attributes:
            attributes["db.statement"] = attributes.pop("db.query.text")
    ch.insert(rows)
    (repeat,) = backend(ch).collect(query()).repeats
    assert (repeat.parent, repeat.repeats.tolist()) == ("load", [3, 3])


def test_window_is_half_open_in_nanoseconds(ch: ClickHouseShim) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS, traces=2)))
    first = datetime.fromtimestamp(START_NS / 1e9, UTC)
    # Trace 1 starts exactly one second later: excluded at end=start+1s, included just after.
    one = backend(ch).collect(query(start=first, end=first + timedelta(seconds=1)))
    two = backend(ch).collect(query(start=first, end=first + timedelta(seconds=1, microseconds=1)))
    assert one.traces == 1 and two.traces == 2


def test_environment_matches_named_and_unset_but_not_others(ch: ClickHouseShim) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS, traces=2)))
    unset = exporter_rows(sdk_release(start_ns=START_NS, traces=2))
    old = exporter_rows(sdk_release(start_ns=START_NS, traces=2))
    other = exporter_rows(sdk_release(start_ns=START_NS, traces=2))
    for row in unset:
        del row["ResourceAttributes"]["deployment.environment.name"]
    for row in old:
        row["ResourceAttributes"]["deployment.environment"] = "staging"
        del row["ResourceAttributes"]["deployment.environment.name"]
    for row in other:
        row["ResourceAttributes"]["deployment.environment.name"] = "staging"
    ch.insert(unset + old + other)
    assert backend(ch).collect(query()).traces == 4
    assert backend(ch).collect(query(environment="staging")).traces == 6  # both names + unset
    assert backend(ch).collect(query(environment=None)).traces == 8


def test_span_name_filter(ch: ClickHouseShim) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS)))
    data = backend(ch).collect(query(span_name="render"))
    assert [g.name for g in data.groups] == ["render"]
    assert data.groups[0].callers == (("(remote)", 6),)  # its parent is outside the filter


@pytest.mark.parametrize(
    "hostile", ["x' OR 1=1 --", "checkout' --", "x\\' OR ''='", "'; DROP TABLE otel_traces; --"]
)
def test_hostile_values_are_bound_not_pasted(ch: ClickHouseShim, hostile: str) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS, traces=2)))
    adapter = backend(ch)
    for q in (
        query(service=hostile),
        query(version=hostile),
        query(environment=hostile),
        query(span_name=hostile),
    ):
        data = adapter.collect(q)
        assert data.groups == [] and data.notes == ("clickhouse: no spans matched",)
    assert all(hostile not in sql for _, sql in ch.requests)
    assert backend(ch).collect(query()).traces == 2  # the table is still there


def test_identifiers_are_validated() -> None:
    client = httpx.Client(base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError) as raised:
        ClickHouseBackend(client, table="otel_traces; DROP", database="default`")
    assert len(raised.value.problems) == 2
    assert raised.value.problems[0].startswith("traces.table: ")


def test_durations_of_large_groups_are_sampled_and_noted(ch: ClickHouseShim) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS)))
    data = backend(ch, max_durations=5).collect(query())
    big = next(g for g in data.groups if g.kind == "CLIENT")
    assert big.count == 18 and len(big.durations_ms) == len(big.instances) == 5
    assert any("5 of 18 spans sampled" in note for note in data.notes)


def test_unknown_table_is_a_response_error(ch: ClickHouseShim) -> None:
    with pytest.raises(BackendResponseError, match=r"clickhouse: POST / answered 404"):
        backend(ch, table="nope").collect(query())


def mock(handler: Any) -> ClickHouseBackend:
    return ClickHouseBackend(
        httpx.Client(transport=httpx.MockTransport(handler), base_url="http://ch"), retry=NO_WAIT
    )


def test_server_errors_are_retried_then_unavailable() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text="Code: 202. DB::Exception: Too many simultaneous queries")

    with pytest.raises(BackendUnavailable, match="clickhouse: POST / failed after 4 attempts"):
        mock(handler).collect(query())
    assert len(calls) == 4


def test_connection_refused_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(BackendUnavailable):
        mock(handler).collect(query())


def test_error_after_rows_is_a_response_error() -> None:
    body = '{"grp":"a"}\nCode: 241. DB::Exception: Memory limit (total) exceeded\n'
    with pytest.raises(BackendResponseError, match="line 2 .* Memory limit"):
        mock(lambda request: httpx.Response(200, text=body)).collect(query())


def test_quoted_64_bit_integers_are_read() -> None:
    row = {
        "grp": "GET /a",
        "kind": "SERVER",
        "spans": "3",
        "errors": "1",
        "quantiles_ms": [1, 2, 3],
        "sample": [[1.5, "pod-a"], [2.5, ""], [3.5, "pod-a"]],
        "traces": "3",
        "first_ns": str(2**62 + 1_000),  # past 2**53: a float would round it
        "last_ns": str(2**62 + 5_000_001_000),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        first = b"grp, kind, count()" in request.content
        return httpx.Response(200, text=json.dumps(row) + "\n" if first else "")

    data = mock(handler).collect(query())
    (group,) = data.groups
    assert (group.count, group.errors, data.traces) == (3, 1, 3)
    assert group.instance_names == ("pod-a", "(unknown)")
    assert group.instances.tolist() == [0, 1, 0]
    assert data.observed == (from_ns(2**62 + 1_000), from_ns(2**62 + 5_000_001_000))
    assert data.observed[1] - data.observed[0] == timedelta(seconds=5)


def test_parse_rows_skips_blank_lines() -> None:
    assert list(parse_rows('{"a": 1}\n\n{"a": 2}\n')) == [{"a": 1}, {"a": 2}]


def test_a_warmup_is_not_applied_and_the_notes_say_so(ch: ClickHouseShim) -> None:
    ch.insert(exporter_rows(sdk_release(start_ns=START_NS)))
    plain = backend(ch).collect(query())
    warm = backend(ch).collect(replace(query(), warmup=timedelta(minutes=5)))
    assert "warm-up exclusion not applied by the clickhouse backend" in warm.notes
    assert not any("warm-up" in note for note in plain.notes)
    assert [g.durations_ms.tolist() for g in warm.groups] == [
        g.durations_ms.tolist() for g in plain.groups
    ]


#: (kind, name, attributes) of spans whose group name comes from a statement or a URL.
RESOURCE_SPANS: list[tuple[Any, str, dict[str, Any]]] = [
    (
        SpanKind.CLIENT,
        "SELECT /tmp/pytest-7/vault.db",
        {
            "db.system": "sqlite",
            "db.name": "/tmp/pytest-7/vault.db",
            "db.statement": (
                "SELECT a.id, a.name FROM accounts a WHERE a.id = 42 AND t1.x = 'it''s'"
            ),
        },
    ),
    (
        SpanKind.CLIENT,
        "SELECT checkout",
        {
            "db.system.name": "postgresql",
            "db.namespace": "checkout",
            "db.query.text": "select *  from items\n where id IN (1, 2,3) and price > 1.5e3 and $1",
        },
    ),
    (SpanKind.CLIENT, "INSERT", {"db.statement": "INSERT INTO t (a, b) VALUES (0x1F, -7)"}),
    (SpanKind.CLIENT, "SELECT", {"db.system": "mysql", "db.query.summary": "SELECT orders"}),
    (
        SpanKind.CLIENT,
        "GET",
        {
            "http.request.method": "GET",
            "url.full": "https://API.example.com:8443/clients/8f3a9c1e77d2/orders/42?page=2",
        },
    ),
    (SpanKind.CLIENT, "GET", {"http.method": "GET", "http.url": "http://svc/v1/u/2024-01-01/"}),
    (SpanKind.CLIENT, "GET", {"http.method": "GET", "url.full": "http://10.0.3.7:41007/rates/4"}),
    (
        SpanKind.SERVER,
        "GET",
        {
            "http.method": "GET",
            "http.target": "/items/123e4567-e89b-12d3-a456-426614174000?x=1",
        },
    ),
    (SpanKind.SERVER, "GET /clients/8f3a9c1e77d2", {}),
    (SpanKind.SERVER, "localhost:10000", {"http.method": "POST", "http.path": "/api/v2/tok"}),
    (SpanKind.INTERNAL, "GET /internal/1", {"http.method": "GET", "url.path": "/internal/1"}),
]


def test_group_names_in_sql_are_the_aggregators(ch: ClickHouseShim) -> None:
    resource = {
        "service.name": "checkout",
        "service.version": "1.4.2",
        "deployment.environment.name": "production",
    }
    with recording(resource, "test") as (tracer, spans):
        for number, (kind, name, attributes) in enumerate(RESOURCE_SPANS):
            start = START_NS + number * 1000
            span = tracer.start_span(name, kind=kind, attributes=attributes, start_time=start)
            span.end(start + 500)
    request = encode_spans(spans)
    ch.insert(exporter_rows(request))
    got = {g.name for g in backend(ch).collect(query()).groups}
    want = {g.name for g in reference(request, query()).groups}
    assert got == want
    assert "vault.db: SELECT … FROM accounts a WHERE a.id = ? AND t1.x = ?" in want
    assert "GET api.example.com/clients/{id}/orders/{id}" in want
    assert "checkout: select * from items where id IN (?) and price > ? and ?" in want
