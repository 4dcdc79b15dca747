"""Tempo backend against a loopback Tempo serving SDK spans in Tempo's own JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from google.protobuf import json_format

from feedbot.backends.base import TraceBackend
from feedbot.backends.http import RetryPolicy
from feedbot.backends.tempo import (
    TempoBackend,
    escape_traceql,
    search_ids,
    search_query,
    selector,
    spanset_rows,
    trace_rows,
    unix_seconds,
)
from feedbot.errors import BackendResponseError, BackendUnavailable
from feedbot.spans.aggregate import aggregate
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp_http import decode_request
from tests.fakes.sdk_spans import sdk_release
from tests.fakes.tempo_server import TempoServer, parse_search, parse_selector

START_NS = 1_764_000_000_000_000_000
START = datetime.fromtimestamp(START_NS // 10**9, UTC)
NO_WAIT = RetryPolicy(sleep=lambda _: None)
HOSTILE = ['x" || true || "', 'a\\" }', "back\\slash\\", 'new\nline"', "x' OR 1=1 --", "\x00\x7f"]


def query(**over: Any) -> SpanQuery:
    fields: dict[str, Any] = {
        "service": "checkout",
        "version": "1.4.2",
        "start": START,
        "end": START + timedelta(hours=1),
        "environment": "production",
    }
    return SpanQuery(**{**fields, **over})


@pytest.fixture
def release() -> Any:
    return sdk_release(start_ns=START_NS)


@pytest.fixture
def tempo(release: Any) -> Iterator[TempoServer]:
    with TempoServer([release]) as server:
        yield server


def backend(server: TempoServer, **kwargs: Any) -> TempoBackend:
    return TempoBackend(httpx.Client(base_url=server.url, timeout=2), retry=NO_WAIT, **kwargs)


def reference(request: Any, q: SpanQuery) -> ReleaseData:
    rows = decode_request(
        request.SerializeToString(),
        content_type="application/x-protobuf",
        content_encoding=None,
        max_bytes=1 << 26,
    )
    return aggregate(rows, q)


def plain(data: ReleaseData) -> list[Any]:
    return [
        replace(g, exceptions=tuple(replace(e, example_trace_id="") for e in g.exceptions))
        for g in data.groups
    ]


# TraceQL escaping -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_literal_parses_back_to_the_value(value: str) -> None:
    q = query(service=value, version=value, span_name=value)
    assert parse_selector(selector(q)) == [
        ("resource.service.name", value),
        ("resource.service.version", value),
        ("name", value),
    ]


def test_escape_examples() -> None:
    assert escape_traceql('a"b') == '"a\\"b"'
    assert escape_traceql("a\\b") == '"a\\\\b"'
    assert escape_traceql("l1\nl2\t") == '"l1\\nl2\\t"'
    assert escape_traceql("\x01") == '"\\x01"'
    assert escape_traceql("ünïcode") == '"ünïcode"'


@pytest.mark.parametrize("value", HOSTILE[:2])
def test_hostile_service_finds_nothing_and_breaks_nothing(tempo: TempoServer, value: str) -> None:
    data = backend(tempo).collect(query(service=value))
    assert data.groups == [] and data.traces == 0 and data.sampled_traces is None


# Units and Tempo's JSON -------------------------------------------------------------------------


def test_unix_seconds_floor_and_ceil() -> None:
    moment = datetime(2025, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert unix_seconds(moment) == 1_735_689_600
    assert unix_seconds(moment, ceil=True) == 1_735_689_601
    assert unix_seconds(moment.replace(microsecond=0), ceil=True) == 1_735_689_600


def test_request_units(tempo: TempoServer) -> None:
    backend(tempo, slices=1).collect(query())
    search = next(p for path, p in tempo.log if path == "/api/search")
    assert (search["start"], search["end"]) == (
        str(START_NS // 10**9),
        str(START_NS // 10**9 + 3600),
    )
    # The first search finds where the version served (SearchBudget.locate_limit traces).
    assert search["limit"] == "20" and search["spss"] == "100"
    assert search["q"].endswith(")") and "| select(" in search["q"]
    metrics = next(p for path, p in tempo.log if path == "/api/metrics/query_range")
    assert (metrics["start"], metrics["end"]) == (str(START_NS), str(START_NS + 3600 * 10**9))
    assert metrics["step"] == "3600s"


def test_fixture_trace_in_batches_shape(fixtures_dir: Path) -> None:
    document = json.loads((fixtures_dir / "tempo" / "tempopb" / "trace.json").read_text())
    (row,) = trace_rows(document)
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"  # upper-case hex lowered
    assert row["parent_span_id"] == "eee19b7ec3c1b173"
    assert (row["service"], row["name"], row["kind"]) == (
        "my.service",
        "I'm a server span",
        "SERVER",
    )
    assert row["duration_ns"] == 1_000_000_000 and row["start_ns"] == 1_544_712_660 * 10**9


def test_tempo_json_quirks(release: Any) -> None:
    batch = json_format.MessageToDict(release.resource_spans[0])
    spans = batch["scopeSpans"][0]["spans"]
    server = next(s for s in spans if s["kind"] == "SPAN_KIND_SERVER" and "status" in s)
    assert len(server["traceId"]) == 24  # base64, as Tempo sends it
    assert server["status"]["code"] == "STATUS_CODE_ERROR"
    assert "parentSpanId" not in server  # zero value omitted
    rows = trace_rows({"trace": {"resourceSpans": [batch]}})
    row = next(
        r
        for r in rows
        if r["span_id"]
        == bytes.fromhex(release.resource_spans[0].scope_spans[0].spans[-1].span_id.hex()).hex()
    )
    assert len(row["trace_id"]) == 32 and int(row["trace_id"], 16) >= 0
    error = next(r for r in rows if r["kind"] == "SERVER" and r["is_error"])
    assert error["parent_span_id"] is None and error["events"][0]["name"] == "exception"
    load = next(r for r in rows if r["name"] == "load")
    assert load["attributes"]["code.line.number"] == 42  # intValue "42" → int


def test_search_ids_are_left_padded() -> None:
    from feedbot.backends.http import JsonApi

    api = JsonApi(httpx.Client(), backend="tempo")
    document = {"traces": [{"traceID": "2f3e0cee77ae5dc9c17ade3689eb2e5"}, {"traceID": "AB"}]}
    assert search_ids(document, api) == ["02f3e0cee77ae5dc9c17ade3689eb2e5", "0" * 30 + "ab"]
    with pytest.raises(BackendResponseError, match=r"traces\[0\].traceID"):
        search_ids({"traces": [{"traceID": "zz"}]}, api)


def test_malformed_trace_names_the_field() -> None:
    with pytest.raises(BackendResponseError, match="traceId"):
        trace_rows({"batches": [{"scopeSpans": [{"spans": [{"traceId": "nope"}]}]}]})


# Collect ----------------------------------------------------------------------------------------


def test_conforms_to_the_protocol(tempo: TempoServer) -> None:
    assert isinstance(backend(tempo), TraceBackend)


def test_same_answer_as_the_streaming_aggregator(tempo: TempoServer, release: Any) -> None:
    data = backend(tempo).collect(query())
    want = reference(release, query())
    assert plain(data) == plain(want)
    for mine, theirs in zip(data.groups, want.groups, strict=True):
        np.testing.assert_allclose(np.sort(mine.durations_ms), np.sort(theirs.durations_ms))
    assert [(r.parent, r.statement) for r in data.repeats] == [
        ("load", "SELECT * FROM items WHERE id = ?")
    ]
    # The first search held every trace: not a sample, and the note says so.
    assert data.sampled_traces is None and data.traces == 6
    assert "tempo: all 6 traces of this version found in 4 requests" in data.notes
    # The spans came in the search's spansets: no trace was read by id.
    assert not [path for path, _ in tempo.log if "/traces/" in path]
    assert any("TraceQL metrics" in note for note in data.notes)


def test_metric_counts_are_exact_when_the_sample_is_small(tempo: TempoServer) -> None:
    data = backend(tempo, max_traces=2, slices=1, select=False).collect(query())
    assert data.sampled_traces == 2
    counts = {(g.name, g.count, g.errors) for g in data.groups}
    # DB spans are grouped by statement, which TraceQL metrics cannot: sampled counts (2 traces).
    assert counts == {
        ("SELECT * FROM items WHERE id = ?", 6, 0),
        ("GET /orders/{id}", 6, 2),
        ("load", 6, 0),
        ("render", 6, 0),
    }
    route = next(g for g in data.groups if g.name == "GET /orders/{id}")
    assert len(route.durations_ms) == 2  # durations stay those of the sample (2 traces)


def test_without_metrics_counts_come_from_the_sample(release: Any) -> None:
    with TempoServer([release], metrics=False) as server:
        data = backend(server, max_traces=2, slices=1, select=False).collect(query())
    assert sum(g.count for g in data.groups if g.kind == "SERVER") == 2
    assert any("TraceQL metrics unavailable" in note for note in data.notes)


def test_old_tempo_without_v2_trace_endpoint(release: Any) -> None:
    with TempoServer([release], v2=False) as server:
        data = backend(server, select=False).collect(query())
        v2_calls = [p for p, _ in server.log if p.startswith("/api/v2/traces/")]
    assert data.groups[0].count == 18
    assert len(v2_calls) == 1  # learnt after the first 404


def test_environment_filters_the_sample_and_the_metrics(release: Any) -> None:
    other = sdk_release(start_ns=START_NS, resource={"deployment.environment.name": "staging"})
    with TempoServer([release, other]) as server:
        data = backend(server).collect(query())
    assert {g.count for g in data.groups if g.kind == "SERVER"} == {6}


def test_trace_gone_since_search_is_skipped(tempo: TempoServer) -> None:
    tempo.fail("/api/v2/traces/", 404, times=1)
    tempo.fail("/api/traces/", 404, times=1)
    data = backend(tempo, metrics=False, select=False).collect(query())
    assert data.sampled_traces is None and data.traces == 5


# Failure answers --------------------------------------------------------------------------------


def test_429_then_success_is_retried(tempo: TempoServer) -> None:
    tempo.fail("/api/search", 429, times=2)
    assert backend(tempo).collect(query()).groups


def test_500_after_retries_is_unavailable(tempo: TempoServer) -> None:
    tempo.fail("/api/search", 500, times=10)
    with pytest.raises(BackendUnavailable, match="tempo: GET /api/search failed after 4 attempts"):
        backend(tempo).collect(query())


def test_400_is_a_response_error(tempo: TempoServer) -> None:
    tempo.fail("/api/search", 400, body=b"invalid TraceQL query: parse error")
    with pytest.raises(BackendResponseError, match="answered 400: invalid TraceQL"):
        backend(tempo).collect(query())


def test_garbage_is_a_response_error(tempo: TempoServer) -> None:
    tempo.fail("/api/search", 200, body=b"<html>proxy error</html>")
    with pytest.raises(BackendResponseError, match="not JSON"):
        backend(tempo).collect(query())


def test_wrong_shape_is_a_response_error(tempo: TempoServer) -> None:
    tempo.fail("/api/v2/traces/", 200, body=b'{"trace": []}')
    with pytest.raises(BackendResponseError, match="expected a trace object"):
        backend(tempo, select=False).collect(query())


def test_slow_answers_time_out_as_unavailable(tempo: TempoServer) -> None:
    tempo.fail("/api/search", 200, times=2, delay=0.3)
    client = httpx.Client(base_url=tempo.url, timeout=0.05)
    slow = TempoBackend(client, retry=RetryPolicy(attempts=2, sleep=lambda _: None))
    with pytest.raises(BackendUnavailable, match="ReadTimeout"):
        slow.collect(query())


def test_concurrent_trace_reads_give_the_sequential_answer(release: Any) -> None:
    with TempoServer([release], latency=0.02) as server:
        one = backend(server, concurrency=1, select=False).collect(query())
        reads_one = sum(p.startswith("/api/v2/traces/") for p, _ in server.log)
        server.log.clear()
        many = backend(server, concurrency=8, select=False).collect(query())
        reads_many = sum(p.startswith("/api/v2/traces/") for p, _ in server.log)
    assert plain(one) == plain(many)
    for a, b in zip(one.groups, many.groups, strict=True):
        np.testing.assert_array_equal(a.durations_ms, b.durations_ms)  # same order too
    assert [r.example_trace_id for r in one.repeats] == [r.example_trace_id for r in many.repeats]
    assert reads_one == reads_many == 6


def test_trace_reads_overlap(release: Any) -> None:
    in_flight, peak = 0, 0
    lock = threading.Lock()

    def track(request: httpx.Request) -> None:
        nonlocal in_flight, peak
        if "/traces/" in request.url.path:
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)

    def untrack(response: httpx.Response) -> None:
        nonlocal in_flight
        if "/traces/" in response.request.url.path:
            with lock:
                in_flight -= 1

    with TempoServer([release], latency=0.05) as server:
        hooks = {"request": [track], "response": [untrack]}
        client = httpx.Client(base_url=server.url, timeout=2, event_hooks=hooks)
        TempoBackend(client, retry=NO_WAIT, concurrency=4, select=False).collect(query())
    assert peak > 1


# Spans from the search's spansets ---------------------------------------------------------------


def _search(server: TempoServer, q: str, **params: Any) -> Any:
    window = {"start": START_NS // 10**9, "end": START_NS // 10**9 + 3600}
    with httpx.Client(base_url=server.url, timeout=2) as http:
        response = http.get("/api/search", params={"q": q, **window, **params})
    return response


def test_operation_and_error_searches_list_every_span_of_the_version(
    tempo: TempoServer, release: Any
) -> None:
    from feedbot.backends.http import JsonApi

    api = JsonApi(httpx.Client(), backend="tempo")
    whole = reference(release, query())
    for named, conditions in ((query(span_name="load"), []), (query(), ["status = error"])):
        q = search_query(query(), named, conditions, select=True)
        document = _search(tempo, q, limit=20, spss=100).json()
        rows, listed_whole = spanset_rows(document, query(), api)
        assert rows and set(rows) == listed_whole
        # Each trace found brings all its spans of the version, not only the matching ones.
        names = {r["name"] for trace in rows.values() for r in trace}
        assert len(names) > 1 and "SELECT shop.items" in names
        assert all(r["parent_span_id"] or r["kind"] == "SERVER" for t in rows.values() for r in t)
    errors = search_query(query(), query(), ["status = error"], select=True)
    found = _search(tempo, errors, limit=20, spss=100).json()["traces"]
    assert len(found) == sum(g.errors for g in whole.groups if g.kind == "SERVER")


def test_a_spanset_cut_by_spss_is_read_whole(tempo: TempoServer, release: Any) -> None:
    data = backend(tempo, spss=2).collect(query())
    reads = [path for path, _ in tempo.log if path.startswith("/api/v2/traces/")]
    assert plain(data) == plain(reference(release, query()))
    assert len(reads) == 6  # every trace has more than 2 spans of the version
    assert any("more than 2 spans" in note for note in data.notes)


def test_the_fake_follows_tempos_limits(tempo: TempoServer) -> None:
    q = selector(query())
    assert _search(tempo, q, limit=1, spss=101).status_code == 400
    assert _search(tempo, q + " | select(span.http.route", limit=1).status_code == 400
    (trace,) = _search(tempo, q, limit=1, spss=1).json()["traces"]
    (spanset,) = trace["spanSets"]
    assert len(spanset["spans"]) == 1 and spanset["matched"] > 1
    assert parse_search(search_query(query(), query(span_name="a"), [], select=False)) == (
        [parse_selector(selector(query())), parse_selector(selector(query(span_name="a")))],
        [],
    )


def test_selected_attributes_keyed_as_tempo_keys_them(tempo: TempoServer) -> None:
    q = search_query(query(), query(), ["status = error"], select=True)
    (trace, *_) = _search(tempo, q, limit=1, spss=100).json()["traces"]
    keys = {a["key"] for s in trace["spanSets"][0]["spans"] for a in s.get("attributes", [])}
    assert {"service.version", "status", "kind", "span:parentID", "event:name"} <= keys
    assert {"http.route", "exception.type", "db.query.text"} <= keys
    assert not any(k.startswith(("resource.", "span.", "event.")) for k in keys)


@pytest.mark.parametrize(
    ("spans", "field"),
    [
        ("nope", r"traces\[0\].spanSets\[0\].spans"),
        ([{"name": "x"}], r"spans\[0\].spanID"),
        ([{"spanID": "01", "startTimeUnixNano": "soon"}], r"spans\[0\].startTimeUnixNano"),
    ],
)
def test_malformed_spanset_names_the_field(spans: Any, field: str) -> None:
    from feedbot.backends.http import JsonApi

    api = JsonApi(httpx.Client(), backend="tempo")
    document = {"traces": [{"traceID": "ab", "spanSets": [{"spans": spans, "matched": 1}]}]}
    with pytest.raises(BackendResponseError, match=field):
        spanset_rows(document, query(), api)


# Versions and census ----------------------------------------------------------------------------


@pytest.mark.parametrize(("served", "metrics"), [(True, True), (False, True), (False, False)])
def test_census_and_versions_without_reading_traces(
    release: Any, served: bool, metrics: bool
) -> None:
    other = sdk_release(
        start_ns=START_NS,
        resource={"deployment.environment.name": "staging", "service.version": "1.5.0"},
    )
    with TempoServer([release, other], metrics=served) as server:
        tempo = backend(server, metrics=metrics)
        window = (START, START + timedelta(hours=1))
        census = tempo.census("checkout", *window)
        paths = [path for path, _ in server.log]
        versions = tempo.versions("checkout", *window, "production")
    spans = sum(g.count for g in reference(release, query()).groups)
    assert census == {("production", "1.4.2"): spans, ("staging", "1.5.0"): spans}
    assert versions == {"1.4.2": spans}
    # One metrics query; without metrics, one search per slice whose spansets hold the spans.
    wanted = ["/api/metrics/query_range"] if metrics else []
    wanted += [] if served else ["/api/search"] * 4
    assert paths == wanted


def test_metric_series_of_asgi_event_spans_meet_the_sampled_groups_templated() -> None:
    from feedbot.backends.tempo import group_of, sum_series

    def series(name: str, count: int) -> dict[str, Any]:
        labels = [{"key": "name", "value": {"stringValue": name}}]
        labels.append({"key": "kind", "value": {"stringValue": "SPAN_KIND_INTERNAL"}})
        return {"labels": labels, "samples": [{"timestampMs": "1", "value": count}]}

    start = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    query = SpanQuery("bookshop", "2.0.0", start, start + timedelta(minutes=10))
    covers = [f"GET /covers/{n:040x}.jpg http send" for n in range(1, 4)]
    totals = sum_series([series(name, 2) for name in covers], query)
    assert totals == {("GET /covers/{id} http send", "INTERNAL"): 6}
    plain = {"name": "render cover"}
    assert group_of({**plain, "kind": "internal"}, query) == ("render cover", "INTERNAL")


def test_metric_counts_stay_exact_over_a_window_of_days(tempo: TempoServer) -> None:
    # A baseline window of three days where the version served for minutes: the metrics are
    # asked over the range where it was located (a day at most), not refused for the window.
    days = query(start=START - timedelta(days=3))
    data = backend(tempo).collect(days)
    route = next(g for g in data.groups if g.name == "GET /orders/{id}")
    assert (route.count, route.errors) == (6, 2)
    assert not any("window over 24 h" in note for note in data.notes)
    assert any("from TraceQL metrics" in note for note in data.notes)
    ranges = [params for path, params in tempo.log if "query_range" in path]
    assert ranges
    for params in ranges:
        start_s, end_s = int(params["start"]) // 10**9, int(params["end"]) // 10**9
        assert days.start.timestamp() <= start_s and end_s - start_s <= 24 * 3600
