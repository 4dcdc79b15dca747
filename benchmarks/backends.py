"""Report latency and HTTP requests per trace backend, on the same release.

The release is the contract suite's (``tests.fakes.sdk_spans``): two versions made by the real
OpenTelemetry SDK, 25 request traces per instance and version, stored the way each backend's
store keeps them (OTLP into the embedded store on SQLite and PostgreSQL, OTLP/JSON lines on disk,
loopback Jaeger, Zipkin and Tempo fakes, the Collector exporter's table in chDB behind the
ClickHouse HTTP shim). One "report" is what ``feedbot report`` asks of a backend: collect the new
version, collect the baseline, analyse. Latency is the median over the repeats; requests are the
HTTP requests one report made (``JsonApi.requests``; none for the embedded and file backends).
The HTTP servers are single-process Python fakes on loopback, so the figures compare the
adapters' work and round trips, not the real servers' speed.

    python -m benchmarks.backends [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks._db import scratch_databases
from feedbot.analysis.compare import analyse
from feedbot.backends.base import TraceBackend
from feedbot.backends.clickhouse import ClickHouseBackend
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.backends.http import RetryPolicy
from feedbot.backends.jaeger import JaegerBackend
from feedbot.backends.otlp_file import OtlpFileBackend
from feedbot.backends.tempo import TempoBackend
from feedbot.backends.zipkin import ZipkinBackend
from feedbot.policy import DetectionPolicy
from feedbot.spans.otlp import PROTOBUF
from feedbot.store.db import make_engine, make_sessions

Setup = Callable[[ExitStack, list[Any], dict[str, str]], TraceBackend]
SERVICE = "vault-bench"
NO_WAIT = RetryPolicy(sleep=lambda _: None)


def _spans() -> list[Any]:
    from tests.fakes.sdk_spans import Variant, release_spans

    before, after = Variant(traces=25), Variant(traces=25, slow_ms=20, error=KeyError, repeats=6)
    spans = release_spans(SERVICE, "1.0.0", variant=before)
    return spans + release_spans(SERVICE, "1.1.0", variant=after)


def _embedded(database: str) -> Setup:
    def setup(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
        from tests.fakes.sdk_spans import protobuf

        engine = make_engine(urls[database])
        stack.callback(engine.dispose)
        backend = EmbeddedBackend(make_sessions(engine))
        backend.ingest(protobuf(spans), PROTOBUF, None)
        return backend

    return setup


def _otlp_file(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
    from tests.fakes.sdk_spans import json_line

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    (folder / "spans.jsonl").write_text(json_line(spans) + "\n")
    return OtlpFileBackend([str(folder / "*.jsonl")])


def _jaeger(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
    from tests.fakes.sdk_spans import otlp_document
    from tests.fakes.trace_servers import FakeJaeger

    fake = stack.enter_context(FakeJaeger())
    fake.add_otlp(otlp_document(spans))
    return JaegerBackend(stack.enter_context(fake.client()), retry=NO_WAIT)


def _zipkin(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
    from tests.fakes.sdk_spans import zipkin_spans
    from tests.fakes.trace_servers import FakeZipkin

    fake = stack.enter_context(FakeZipkin())
    fake.add_spans(zipkin_spans(spans))
    return ZipkinBackend(stack.enter_context(fake.client()), retry=NO_WAIT)


def _tempo(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tests.fakes.tempo_server import TempoServer

    server = stack.enter_context(TempoServer([encode_spans(spans)]))
    http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
    return TempoBackend(http, retry=NO_WAIT, max_traces=1000)


def _remote_tempo(concurrency: int) -> Setup:
    """Tempo 20 ms away, reading sampled traces ``concurrency`` at a time."""

    def setup(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        from tests.fakes.tempo_server import TempoServer

        server = stack.enter_context(TempoServer([encode_spans(spans)], latency=0.02))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
        return TempoBackend(http, retry=NO_WAIT, max_traces=1000, concurrency=concurrency)

    return setup


def _clickhouse(stack: ExitStack, spans: list[Any], urls: dict[str, str]) -> TraceBackend:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tests.fakes.clickhouse_shim import exporter_rows, shared_shim

    shim = shared_shim()
    shim.reset()
    shim.insert(exporter_rows(encode_spans(spans)))
    http = stack.enter_context(httpx.Client(base_url=shim.url, timeout=30))
    return ClickHouseBackend(http, retry=NO_WAIT)


SETUPS: dict[str, Setup] = {
    "embedded (SQLite)": _embedded("sqlite"),
    "embedded (PostgreSQL)": _embedded("postgresql"),
    "otlp-file": _otlp_file,
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "tempo": _tempo,
    "tempo, 20 ms away, 1 trace read at a time": _remote_tempo(1),
    "tempo, 20 ms away, 8 trace reads at a time": _remote_tempo(8),
    "clickhouse": _clickhouse,
}


def _report(backend: TraceBackend) -> str:
    """What ``feedbot report`` asks of a backend: both versions, then the analysis."""
    from tests.fakes.sdk_spans import query

    candidate = backend.collect(query(SERVICE, "1.1.0"))
    baseline = backend.collect(query(SERVICE, "1.0.0"))
    return analyse(candidate, baseline, changes=(), policy=DetectionPolicy()).verdict


def _requests(backend: TraceBackend) -> int:
    api = getattr(backend, "api", None)
    return int(getattr(api, "requests", 0))


def _measure(backend: TraceBackend, repeats: int) -> tuple[float, int, str]:
    """(median milliseconds, HTTP requests per report, verdict) over ``repeats`` reports."""
    before = _requests(backend)
    verdict = _report(backend)  # also the warm-up
    per_report, timings = _requests(backend) - before, []
    for _ in range(repeats):
        started = time.perf_counter()
        _report(backend)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), per_report, verdict


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    """Rows of (benchmark, figure, unit): latency and requests of one report per backend.

    Args:
        postgres_admin: admin URL of a PostgreSQL server (a scratch database is made).
        quick: 3 repeats instead of 11.
    """
    spans, repeats = _spans(), 3 if quick else 11
    rows: list[tuple[str, float, str]] = []
    verdicts: set[str] = set()
    with scratch_databases(postgres_admin) as urls:
        for name, setup in SETUPS.items():
            with ExitStack() as stack:
                backend = setup(stack, spans, urls)
                median_ms, requests, verdict = _measure(backend, repeats)
            verdicts.add(verdict)
            rows += [
                (f"backends report latency, {name}", median_ms, "ms (median)"),
                (f"backends HTTP requests per report, {name}", requests, "requests"),
            ]
    if len(verdicts) != 1:
        raise RuntimeError(f"backends gave different verdicts: {sorted(verdicts)}")
    return rows


def main() -> None:
    """``python -m benchmarks.backends [--quick] [--postgres URL]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 11")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = run(args.postgres, quick=args.quick)
    width = max(len(row[0]) for row in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.1f}  {unit}")


if __name__ == "__main__":
    main()
