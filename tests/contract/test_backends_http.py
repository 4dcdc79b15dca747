"""The same SDK spans through Jaeger and Zipkin give what aggregating them directly gives.

The reference is the OTLP/JSON of the spans decoded and aggregated in-process; each HTTP backend
gets the spans the way the real server would store them (OTLP/JSON for Jaeger api_v3, Zipkin v2
JSON as the Collector's exporter writes it) behind a loopback fake. Zipkin lower-cases span
names, so names are compared case-insensitively.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from feedbot.backends.aggregate import aggregate, to_ns
from feedbot.backends.base import ReleaseData, SpanQuery, TraceBackend
from feedbot.backends.http import RetryPolicy
from feedbot.backends.jaeger import JaegerBackend
from feedbot.backends.otlp import decode_request
from feedbot.backends.zipkin import ZipkinBackend
from tests.fakes.trace_servers import (
    FakeJaeger,
    FakeZipkin,
    otlp_document,
    shop_spans,
    zipkin_spans,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
QUERY = SpanQuery(
    service="checkout",
    version="1.4.2",
    start=T0,
    end=T0 + timedelta(hours=1),
    environment="production",
)
NO_WAIT = RetryPolicy(sleep=lambda _: None)


def release_spans() -> list[Any]:
    start = to_ns(T0)
    return [
        *shop_spans(version="1.4.2", start_ns=start, count=6, errors=[1, 4]),
        *shop_spans(version="1.4.1", start_ns=start, count=4, errors=[0]),
        *shop_spans(version="1.4.2", start_ns=start, count=2, environment="staging"),
    ]


def jaeger(stack: ExitStack, spans: list[Any]) -> TraceBackend:
    fake = stack.enter_context(FakeJaeger())
    fake.add_otlp(otlp_document(spans))
    return JaegerBackend(stack.enter_context(fake.client()), retry=NO_WAIT)


def zipkin(stack: ExitStack, spans: list[Any]) -> TraceBackend:
    fake = stack.enter_context(FakeZipkin())
    fake.add_spans(zipkin_spans(spans))
    return ZipkinBackend(stack.enter_context(fake.client()), retry=NO_WAIT)


FACTORIES: dict[str, Callable[[ExitStack, list[Any]], TraceBackend]] = {
    "jaeger": jaeger,
    "zipkin": zipkin,
}


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest) -> Iterator[TraceBackend]:
    with ExitStack() as stack:
        yield FACTORIES[request.param](stack, release_spans())


def reference() -> ReleaseData:
    body = json.dumps(otlp_document(release_spans())).encode()
    rows = decode_request(
        body, content_type="application/json", content_encoding=None, max_bytes=len(body)
    )
    return aggregate(rows, QUERY)


def summary(data: ReleaseData) -> list[tuple[Any, ...]]:
    return sorted(
        (
            group.name.lower(),
            group.kind,
            group.count,
            group.errors,
            sorted(group.durations_ms.tolist()),
            [(e.type, e.count) for e in group.exceptions],
            [(c.function, c.lineno, c.count) for c in group.code],
            [(name.lower(), n) for name, n in group.callers],
        )
        for group in data.groups
    )


def test_same_groups_counts_errors_durations_and_exceptions(backend: TraceBackend) -> None:
    expected, got = reference(), backend.collect(QUERY)
    assert summary(got) == summary(expected)
    assert got.traces == expected.traces == 6
    assert [(r.parent, r.statement, r.repeats.tolist()) for r in got.repeats] == [
        (r.parent, r.statement, r.repeats.tolist()) for r in expected.repeats
    ]
    assert got.sampled_traces is None


def test_other_versions_are_apart(backend: TraceBackend) -> None:
    data = backend.collect(SpanQuery(**{**QUERY.__dict__, "version": "1.4.1"}))
    server = next(g for g in data.groups if g.kind == "SERVER")
    assert (server.count, server.errors) == (4, 1)
