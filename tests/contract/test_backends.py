"""One contract for every trace backend: the same SDK spans give the same ReleaseData.

Each backend registers a factory in ``FACTORIES``: it receives spans made by the real
OpenTelemetry SDK (:mod:`tests.fakes.sdk_spans`) and the test's ``request`` (for fixtures such
as ``tmp_path``), puts the spans where the backend will find them, the way that store keeps
them (OTLP over HTTP into the embedded store, OTLP/JSON lines on disk, OTLP/JSON behind a
loopback Jaeger api_v3, Zipkin v2 JSON behind a loopback Zipkin, Tempo's own JSON behind a
loopback Tempo, the Collector exporter's ``otel_traces`` rows in a real ClickHouse engine), and
returns the backend. Every test below runs against every factory.

The one principled difference: Zipkin lower-cases span names on ingest, so for Zipkin the
comparison lower-cases group names (in groups, callers, the parents of repeated statements and
finding messages) on both sides, and nothing else. Routed SERVER groups are named from
``http.route`` and the method, which Zipkin keeps as tags, so their names come through as sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import delete

from feedbot.analysis.compare import Analysis, analyse
from feedbot.backends.base import (
    RequestCounter,
    ServingTimes,
    SpanCensus,
    TraceBackend,
    VersionLister,
)
from feedbot.backends.clickhouse import ClickHouseBackend
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.backends.http import RetryPolicy
from feedbot.backends.jaeger import JaegerBackend
from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.backends.tempo import TempoBackend
from feedbot.backends.zipkin import ZipkinBackend
from feedbot.checks import concurrent
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import Change
from feedbot.spans.aggregate import aggregate
from feedbot.spans.model import ReleaseData, from_ns
from feedbot.spans.otlp import PROTOBUF
from feedbot.spans.otlp_http import decode_request
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.spans import Span
from tests.fakes.clickhouse_shim import exporter_rows, shared_shim
from tests.fakes.sdk_spans import T0 as SDK_T0
from tests.fakes.sdk_spans import (
    Variant,
    json_line,
    otlp_document,
    protobuf,
    query,
    release_spans,
    sdk_spans,
    shop_spans,
    zipkin_spans,
)
from tests.fakes.sdk_spans import ns as sdk_ns
from tests.fakes.tempo_server import TempoServer
from tests.fakes.trace_servers import FakeJaeger, FakeZipkin

NO_WAIT = RetryPolicy(sleep=lambda _: None)
BackendFactory = Callable[[list[ReadableSpan], pytest.FixtureRequest], TraceBackend]


# Backend factories ------------------------------------------------------------------------------


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


def _served(server: Any, request: pytest.FixtureRequest) -> Any:
    """Start a loopback fake for this test only."""
    started = server.__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    return started


def _client(client: httpx.Client, request: pytest.FixtureRequest) -> httpx.Client:
    """``client``, closed when the test ends."""
    request.addfinalizer(client.close)
    return client


def _jaeger(spans: list[ReadableSpan], request: pytest.FixtureRequest) -> TraceBackend:
    fake = _served(FakeJaeger(), request)
    fake.add_otlp(otlp_document(spans))
    return JaegerBackend(_client(fake.client(), request), retry=NO_WAIT)


def _zipkin(spans: list[ReadableSpan], request: pytest.FixtureRequest) -> TraceBackend:
    fake = _served(FakeZipkin(), request)
    fake.add_spans(zipkin_spans(spans))
    return ZipkinBackend(_client(fake.client(), request), retry=NO_WAIT)


def _tempo(spans: list[ReadableSpan], request: pytest.FixtureRequest) -> TraceBackend:
    server = _served(TempoServer([encode_spans(spans)]), request)
    http = _client(httpx.Client(base_url=server.url, timeout=5), request)
    # Tempo's spans come from a sample of whole traces (max_traces over 4 slices of the
    # window); the releases here fit in one slice, so the sample is made to hold all of them.
    return TempoBackend(http, retry=NO_WAIT, max_traces=1000)


def _clickhouse(spans: list[ReadableSpan], request: pytest.FixtureRequest) -> TraceBackend:
    shim = shared_shim()  # chDB allows one session per process: shared, emptied per test.
    shim.reset()
    shim.insert(exporter_rows(encode_spans(spans)))
    http = _client(httpx.Client(base_url=shim.url, timeout=10), request)
    return ClickHouseBackend(http, retry=NO_WAIT)


#: Name → factory. Add a backend here and every contract test runs against it.
FACTORIES: dict[str, BackendFactory] = {
    "embedded-sqlite": _embedded("sqlite_url"),
    "embedded-postgresql": _embedded("postgres_url"),
    "otlp-file": _otlp_file,
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "tempo": _tempo,
    "clickhouse": _clickhouse,
}
#: Backends holding an HTTP client, which closing them closes.
HTTP_BACKENDS = frozenset({"jaeger", "zipkin", "tempo", "clickhouse"})
#: Backends that lower-case span names on ingest (Zipkin does, for every span and service).
LOWER_CASED_NAMES = frozenset({"zipkin"})


class Maker:
    """Builds the parametrized backend over given spans; knows how it spells span names."""

    def __init__(self, name: str, request: pytest.FixtureRequest) -> None:
        self.name, self._request = name, request
        self.fold: Callable[[str], str] = str.lower if name in LOWER_CASED_NAMES else str

    def __call__(self, spans: list[ReadableSpan]) -> TraceBackend:
        return FACTORIES[self.name](spans, self._request)


@pytest.fixture(params=sorted(FACTORIES))
def make_backend(request: pytest.FixtureRequest) -> Maker:
    if "postgresql" in request.param:
        request.applymarker(pytest.mark.postgres)
    return Maker(request.param, request)


@pytest.fixture
def service() -> str:
    return f"vault-{uuid.uuid4().hex[:8]}"


# What is compared ------------------------------------------------------------------------------


def summary(data: ReleaseData, fold: Callable[[str], str] = str) -> dict[str, Any]:
    """Everything backends must agree on; durations to the microsecond (Zipkin's unit).

    ``fold`` is applied to span names only (see the module docstring).
    """
    groups = [
        {
            "group": (fold(g.name), g.kind, g.count, g.errors),
            "durations": np.round(np.sort(g.durations_ms), 3).tolist(),
            "per_instance": sorted(
                (g.instance_names[i], round(float(d), 3))
                for i, d in zip(g.instances, g.durations_ms, strict=True)
            ),
            "exceptions": [(e.type, e.count, e.message) for e in g.exceptions],
            "code": list(g.code),
            "callers": [(fold(name), n) for name, n in g.callers],
        }
        for g in data.groups
    ]
    repeats = [
        (
            fold(r.parent),
            r.statement,
            sorted(r.repeats.tolist()),
            np.round(np.sort(r.total_ms), 3).tolist(),
        )
        for r in data.repeats
    ]
    order = sorted(range(len(groups)), key=lambda i: (-groups[i]["group"][2], groups[i]["group"]))
    return {
        "groups": [groups[i] for i in order],
        "repeats": repeats,
        "traces": data.traces,
        "observed": data.observed,
    }


def reference(spans: list[ReadableSpan], service: str, version: str) -> ReleaseData:
    """What the streaming aggregator makes of the spans decoded from OTLP protobuf."""
    rows = decode_request(
        protobuf(spans), content_type=PROTOBUF, content_encoding=None, max_bytes=2**26
    )
    return aggregate(rows, query(service, version))


def _shop(service: str) -> list[ReadableSpan]:
    """Traces that also pass through another service (``payments``), both versions."""
    start = sdk_ns(SDK_T0)
    return [
        *shop_spans(service=service, version="1.0.0", start_ns=start, count=5, errors=[1, 4]),
        *shop_spans(service=service, version="1.1.0", start_ns=start, count=3, step_ns=10**9),
    ]


DATASETS: dict[str, Callable[[str], list[ReadableSpan]]] = {
    "semconv-new": lambda s: release_spans(s, "1.0.0") + release_spans(s, "1.1.0"),
    "semconv-old": lambda s: release_spans(s, "1.0.0", old=True) + release_spans(s, "1.1.0"),
    "two-services": _shop,
}


# The contract ----------------------------------------------------------------------------------


def test_backend_conforms_to_the_protocol(make_backend: Maker, service: str) -> None:
    backend = make_backend(release_spans(service, "1.0.0"))
    assert isinstance(backend, TraceBackend)
    assert isinstance(backend.name, str)


def test_close_releases_what_the_backend_holds_and_may_be_repeated(
    make_backend: Maker, service: str
) -> None:
    backend = make_backend(release_spans(service, "1.0.0"))
    assert backend.collect(query(service, "1.0.0")).groups
    backend.close()
    backend.close()
    if make_backend.name in HTTP_BACKENDS:
        assert backend.api.client.is_closed  # type: ignore[attr-defined]
    if make_backend.name.startswith("embedded"):
        # The engine stays usable: a later session opens a new connection.
        assert backend.collect(query(service, "1.0.0")).groups


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_same_release_data_as_the_spans_themselves(
    make_backend: Maker, service: str, dataset: str
) -> None:
    spans = DATASETS[dataset](service)
    backend = make_backend(spans)

    for version in ("1.0.0", "1.1.0"):
        expected = reference(spans, service, version)
        got = backend.collect(query(service, version))
        assert summary(got, make_backend.fold) == summary(expected, make_backend.fold)


def test_groups_exceptions_code_callers_and_repeats(make_backend: Maker, service: str) -> None:
    data = make_backend(release_spans(service, "1.0.0", old=True)).collect(query(service, "1.0.0"))

    assert [(g.name, g.kind, g.count, g.errors) for g in data.groups] == [
        ("SELECT * FROM items WHERE id = ?", "CLIENT", 18, 0),  # by statement, not span name
        ("GET /orders/{id}", "SERVER", 6, 2),  # from http.route and method: not folded
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


def test_versions_and_windows_are_kept_apart(make_backend: Maker, service: str) -> None:
    backend = make_backend(release_spans(service, "1.0.0") + release_spans(service, "1.1.0"))

    assert backend.collect(query(service, "2.0.0")).groups == []
    assert backend.collect(query(service, "1.0.0", environment="staging")).groups == []
    names = {g.name for g in backend.collect(query(service, "1.1.0", environment=None)).groups}
    assert "outside" not in names
    assert sum(g.count for g in backend.collect(query(service, "1.1.0")).groups) == 32


def test_versions_seen_in_a_window(make_backend: Maker, service: str) -> None:
    spans = [
        *release_spans(service, "1.0.0"),  # 16 spans per instance in the window, 2 before it
        *release_spans(service, "1.1.0", variant=Variant(traces=5)),  # 26 in it, 2 before
        *shop_spans(service=service, version="1.2.0", start_ns=sdk_ns(SDK_T0), count=2),
    ]
    backend = make_backend(spans)
    assert isinstance(backend, VersionLister)
    window = (SDK_T0, SDK_T0 + timedelta(minutes=10))

    # The shop's traces also hold spans of "payments" 7.0: another service, not counted.
    assert backend.versions(service, *window, "production") == {
        "1.0.0": 32,
        "1.1.0": 52,
        "1.2.0": 10,
    }
    before = backend.versions(service, SDK_T0 - timedelta(minutes=1), SDK_T0)
    assert before == {"1.0.0": 2, "1.1.0": 2}
    assert backend.versions(service, *window, "staging") == {}
    assert backend.versions(f"{service}-gone", *window) == {}


def test_census_by_environment_and_version(make_backend: Maker, service: str) -> None:
    def unversioned(tracer: Any) -> None:
        for i in range(3):
            begin = sdk_ns(SDK_T0 + timedelta(minutes=1, seconds=i))
            tracer.start_span("GET /health", start_time=begin).end(end_time=begin + 10**6)

    staging = {"service.name": service, "deployment.environment.name": "staging"}
    spans = [
        *release_spans(service, "1.0.0"),  # 32 spans in the window, production
        *release_spans(service, "1.1.0", old=True, variant=Variant(traces=5)),  # 52, old name
        *sdk_spans({**staging, "service.instance.id": "pod-s"}, unversioned),  # no version
    ]
    backend = make_backend(spans)
    assert isinstance(backend, SpanCensus)
    window = (SDK_T0, SDK_T0 + timedelta(minutes=10))

    assert backend.census(service, *window) == {
        ("production", "1.0.0"): 32,
        ("production", "1.1.0"): 52,
        ("staging", None): 3,
    }
    assert backend.census(service, SDK_T0 - timedelta(minutes=1), SDK_T0) == {
        ("production", "1.0.0"): 2,
        ("production", "1.1.0"): 2,
    }
    assert backend.census(f"{service}-gone", *window) == {}


def test_where_each_version_served(make_backend: Maker, service: str) -> None:
    spans = [
        *release_spans(service, "1.0.0"),  # 16 spans per instance in the window, 2 before it
        *release_spans(service, "1.1.0", variant=Variant(traces=5)),  # 26 in it, 2 before
    ]
    backend = make_backend(spans)
    window = (SDK_T0, SDK_T0 + timedelta(minutes=10))
    if not isinstance(backend, ServingTimes):
        # A backend that cannot say (a search is a sample; files are read whole) keeps the
        # before/after window, and the check says why.
        found, why = concurrent.where_served(
            backend, service=service, versions=("1.1.0", "1.0.0"), window=window, env="production"
        )
        assert found is None
        assert f"The {backend.name} backend cannot say cheaply" in why
        assert make_backend.name in {"jaeger", "zipkin", "tempo", "otlp-file"}
        return

    served = backend.serving(service, *window, "production")
    # As collect sees each version in the window: its first and last span, and how many.
    for version, n in (("1.0.0", 32), ("1.1.0", 52)):
        observed = backend.collect(query(service, version)).observed
        assert observed is not None
        assert served[version] == (*observed, n)
    assert set(served) == {"1.0.0", "1.1.0"}
    assert backend.serving(service, *window, "staging") == {}
    assert backend.serving(f"{service}-gone", *window) == {}


def test_the_whole_services_requests_in_a_window(make_backend: Maker, service: str) -> None:
    spans = [
        *release_spans(service, "1.0.0"),
        *release_spans(service, "1.1.0", variant=Variant(traces=5)),
    ]
    backend = make_backend(spans)
    window = (SDK_T0, SDK_T0 + timedelta(minutes=10))
    if not isinstance(backend, RequestCounter):
        # Nothing to gate a before/after correction on: the check says so.
        load = concurrent.service_load(
            backend, service=service, env="production", before=window, after=window
        )
        assert load.per_minute is None
        assert f"the {backend.name} backend cannot count the service's requests" in load.unknown
        assert make_backend.name in {"jaeger", "zipkin", "tempo", "otlp-file"}
        return

    seen = backend.traffic(service, *window, "production")
    assert seen is not None
    # Every version together, as collect counts each one, in one answer.
    data = [backend.collect(query(service, v)) for v in ("1.0.0", "1.1.0")]
    observed = [d.observed for d in data if d.observed is not None]
    assert (seen.first, seen.last) == (min(o[0] for o in observed), max(o[1] for o in observed))
    assert seen.spans == 32 + 52
    entries = sum(g.count for d in data for g in d.groups if g.kind in ("SERVER", "CONSUMER"))
    assert 0 < seen.entries == entries < seen.spans
    assert backend.traffic(service, *window, "staging") is None
    assert backend.traffic(f"{service}-gone", *window) is None


def test_observed_range_is_that_of_the_counted_spans(make_backend: Maker, service: str) -> None:
    spans = release_spans(service, "1.0.0") + release_spans(service, "1.1.0")
    backend = make_backend(spans)
    window = query(service, "1.1.0")
    starts = [
        span.start_time
        for span in spans
        if span.resource.attributes["service.name"] == service
        and span.resource.attributes["service.version"] == "1.1.0"
        and span.start_time is not None
        and sdk_ns(window.start) <= span.start_time < sdk_ns(window.end)
    ]
    assert len(starts) == 32  # the spans before the window are left out of the range too
    want = (from_ns(min(starts)), from_ns(max(starts)))
    # Half a minute of spans in a ten-minute window, the one outside each end left out.
    assert timedelta(seconds=30) < want[1] - want[0] < timedelta(minutes=1)

    assert backend.collect(window).observed == want
    assert backend.collect(query(service, "2.0.0")).observed is None


def test_warmup_marks_the_same_durations(make_backend: Maker, service: str) -> None:
    spans = release_spans(service, "1.1.0")  # per instance, request traces a second apart
    wanted = replace(query(service, "1.1.0"), warmup=timedelta(milliseconds=1500))
    rows = decode_request(
        protobuf(spans), content_type=PROTOBUF, content_encoding=None, max_bytes=2**26
    )
    expected = aggregate(rows, wanted)
    got = make_backend(spans).collect(wanted)
    if make_backend.name == "clickhouse":  # aggregated in SQL, where the rule is not applied
        assert any("warm-up exclusion not applied" in note for note in got.notes)
        return
    early = sum(int(g.early.sum()) for g in expected.groups)
    assert 0 < early < sum(g.count for g in expected.groups)  # the split is real
    assert summary(got, make_backend.fold) == summary(expected, make_backend.fold)
    assert sorted((make_backend.fold(g.name), int(g.early.sum())) for g in got.groups) == sorted(
        (make_backend.fold(g.name), int(g.early.sum())) for g in expected.groups
    )


# The same release, analysed ---------------------------------------------------------------------

#: The new version: appraise 20 ms slower, raising KeyError instead of ValueError, twice the
#: SELECTs per request; 25 request traces per instance and version.
BEFORE, AFTER = Variant(traces=25), Variant(traces=25, slow_ms=20, error=KeyError, repeats=6)
CHANGES = (
    Change(file="vault/appraisal.py", functions=("vault.appraisal.Appraiser.appraise",)),
    Change(file="vault/pricing.py", functions=("vault.pricing.quote",)),
)


def verdict(analysis: Analysis, fold: Callable[[str], str], names: set[str]) -> dict[str, Any]:
    """The verdict and the findings, without example trace ids (which trace is the example
    is each store's choice); span names inside messages folded like the names themselves."""

    def text(message: str) -> str:
        for name in sorted(names, key=len, reverse=True):
            message = message.replace(name, fold(name))
        return message

    findings = [
        (
            f.kind,
            f.severity,
            text(f.message),
            fold(f.span) if f.span else None,
            (f.function, f.file, f.exception_type, f.statement, f.method, f.state),
            None if f.p_value is None else round(f.p_value, 9),
            None if f.q_value is None else round(f.q_value, 9),
        )
        for f in analysis.findings
    ]
    return {"verdict": analysis.verdict, "findings": findings}


def test_same_verdict_and_findings_through_every_backend(make_backend: Maker, service: str) -> None:
    spans = release_spans(service, "1.0.0", variant=BEFORE)
    spans += release_spans(service, "1.1.0", variant=AFTER)
    backend = make_backend(spans)
    policy = DetectionPolicy()

    got = analyse(
        backend.collect(query(service, "1.1.0")),
        backend.collect(query(service, "1.0.0")),
        changes=CHANGES,
        policy=policy,
    )
    want = analyse(
        reference(spans, service, "1.1.0"),
        reference(spans, service, "1.0.0"),
        changes=CHANGES,
        policy=policy,
    )

    names = {g.name for g in reference(spans, service, "1.1.0").groups}
    assert verdict(got, make_backend.fold, names) == verdict(want, make_backend.fold, names)
    kinds = {f.kind for f in want.findings}
    assert {"latency_regression", "new_error_type", "code_reached"} <= kinds, kinds
