"""Recall and false alarms through each search backend at its budget, beside the full data.

Each deploy is the issue's (``tests.fakes.sdk_service``, spans made by the real OpenTelemetry
SDK): a busy service of 8 routes, a deploy 90 minutes old, the baseline serving the three hours
before it and asked about over a day. "Regression" deploys make one route with 12% of the
traffic 30% slower and raise a new exception type on 2% of another route's requests;
"no change" deploys change nothing. Each deploy is stored the way each store keeps it
(OTLP into the embedded store on SQLite: every span, the full-data path; the loopback Jaeger,
Zipkin and Tempo fakes, whose searches return samples) and checked once as ``feedbot report``
does (both versions, one final look, the default policy and :class:`SearchBudget`).

Columns: recall of the latency regression on the slow route and of the new exception type
(regression deploys), deploys with a ``regressed`` verdict among no-change deploys (false
alarms), and per check the HTTP requests, bytes received and seconds. The fakes are
single-process Python servers on loopback: seconds compare the adapters' work, not real servers.

    python -m benchmarks.sampled [--deploys N] [--backends jaeger,zipkin,tempo,embedded]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.backends import NO_WAIT
from feedbot.analysis.compare import analyse
from feedbot.backends.base import TraceBackend
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.backends.jaeger import JaegerBackend
from feedbot.backends.tempo import TempoBackend
from feedbot.backends.zipkin import ZipkinBackend
from feedbot.policy import DetectionPolicy
from feedbot.spans.model import SpanQuery
from feedbot.spans.otlp import PROTOBUF
from feedbot.store.db import make_engine, make_sessions, migrate

Setup = Callable[[ExitStack, list[Any]], TraceBackend]


def _embedded(stack: ExitStack, spans: list[Any]) -> TraceBackend:
    from tests.fakes.sdk_spans import protobuf

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    engine = make_engine(f"sqlite:///{folder / 'feedbot.db'}")
    stack.callback(engine.dispose)
    migrate(engine)
    backend = EmbeddedBackend(make_sessions(engine))
    backend.ingest(protobuf(spans), PROTOBUF, None)
    return backend


def _jaeger(stack: ExitStack, spans: list[Any]) -> TraceBackend:
    from tests.fakes.sdk_spans import otlp_document
    from tests.fakes.trace_servers import FakeJaeger

    fake = stack.enter_context(FakeJaeger())
    fake.add_otlp(otlp_document(spans))
    return JaegerBackend(stack.enter_context(fake.client(timeout=60)), retry=NO_WAIT)


def _zipkin(stack: ExitStack, spans: list[Any]) -> TraceBackend:
    from tests.fakes.sdk_spans import zipkin_spans
    from tests.fakes.trace_servers import FakeZipkin

    fake = stack.enter_context(FakeZipkin())
    fake.add_spans(zipkin_spans(spans))
    return ZipkinBackend(stack.enter_context(fake.client(timeout=60)), retry=NO_WAIT)


def _tempo(stack: ExitStack, spans: list[Any]) -> TraceBackend:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tests.fakes.tempo_server import TempoServer

    server = stack.enter_context(TempoServer([encode_spans(spans)]))
    http = stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
    return TempoBackend(http, retry=NO_WAIT)


SETUPS: dict[str, Setup] = {
    "embedded": _embedded,
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "tempo": _tempo,
}


@dataclass
class Tally:
    """One backend's outcomes over the deploys."""

    latency: list[bool] = field(default_factory=list)
    new_type: list[bool] = field(default_factory=list)
    false_alarms: list[bool] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _check(backend: TraceBackend, deploy: Any) -> tuple[Any, int, int, float]:
    """One report's analysis, and its requests, bytes and seconds."""
    from tests.fakes.sdk_service import DEPLOY, SERVICE

    api = getattr(backend, "api", None)
    before = (getattr(api, "requests", 0), getattr(api, "received", 0))
    started = time.perf_counter()
    candidate = backend.collect(SpanQuery(SERVICE, "1.1", DEPLOY, deploy.now, "production"))
    window = (DEPLOY - timedelta(days=1), deploy.now)
    baseline = backend.collect(SpanQuery(SERVICE, "1.0", *window, "production"))
    analysis = analyse(
        candidate, baseline, changes=(), policy=DetectionPolicy(), look=1, looks=1, final=True
    )
    seconds = time.perf_counter() - started
    requests = getattr(api, "requests", 0) - before[0]
    return analysis, requests, getattr(api, "received", 0) - before[1], seconds


def run(deploys: int, backends: list[str]) -> dict[str, Tally]:
    """Check ``deploys`` regression and ``deploys`` no-change deploys through each backend."""
    from tests.fakes.sdk_service import ERROR_ROUTE, NEW_ERROR, SLOW_ROUTE, Deploy, deploy_spans

    tallies = {name: Tally() for name in backends}
    for seed in range(deploys):
        for changed in (True, False):
            deploy = Deploy(
                seed=100 + seed, slower=1.3 if changed else 1.0, new_error=0.02 if changed else 0.0
            )
            spans = deploy_spans(deploy)
            for name in backends:
                with ExitStack() as stack:
                    backend = SETUPS[name](stack, spans)
                    analysis, requests, received, seconds = _check(backend, deploy)
                tally = tallies[name]
                tally.requests.append(requests)
                tally.received.append(received)
                tally.seconds.append(seconds)
                kinds = {(f.kind, f.span, f.exception_type) for f in analysis.findings}
                if changed:
                    tally.latency.append(("latency_regression", SLOW_ROUTE, None) in kinds)
                    tally.new_type.append(("new_error_type", ERROR_ROUTE, NEW_ERROR) in kinds)
                else:
                    tally.false_alarms.append(analysis.verdict == "regressed")
    return tallies


def _share(values: list[bool]) -> str:
    return f"{sum(values)}/{len(values)}" if values else "-"


def main() -> None:
    """``python -m benchmarks.sampled [--deploys N] [--backends a,b]``: print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=3, help="per kind (default 3)")
    parser.add_argument("--backends", default=",".join(SETUPS), help="comma-separated")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    tallies = run(args.deploys, backends)
    header = (
        f"{'backend':<10} {'latency found':>13} {'new type found':>14} {'false alarms':>12} "
        f"{'requests/check':>14} {'MB/check':>8} {'s/check':>7}"
    )
    print(header)
    for name, tally in tallies.items():
        print(
            f"{name:<10} {_share(tally.latency):>13} {_share(tally.new_type):>14} "
            f"{_share(tally.false_alarms):>12} {statistics.median(tally.requests):>14.0f} "
            f"{statistics.median(tally.received) / 1e6:>8.1f} "
            f"{statistics.median(tally.seconds):>7.1f}"
        )


if __name__ == "__main__":
    main()
