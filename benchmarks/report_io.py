"""Reading an OTLP/JSON lines file: the otlp-file backend against a bare JSON parsing loop.

The file is what the Collector's file exporter writes: one ``ExportTraceServiceRequest`` per
line, here 100 spans a line in traces of five spans (a routed SERVER span, three repeated DB
statements under it, one INTERNAL span with code attributes). It is made by templating JSON text,
not by the SDK, so a million spans take seconds. Each figure runs in a fresh subprocess so that
its peak RSS (``ru_maxrss``) is its own.

    python -m benchmarks.report_io [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPANS_PER_LINE = 100
SPANS_PER_TRACE = 5
START_NS = 1_764_000_000_000_000_000
_RESOURCE = json.dumps(
    {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": "bench"}},
            {"key": "service.version", "value": {"stringValue": "1.0.0"}},
            {"key": "deployment.environment.name", "value": {"stringValue": "production"}},
            {"key": "service.instance.id", "value": {"stringValue": "pod-%(pod)d"}},
        ]
    }
)


def _attrs(pairs: dict[str, str | int]) -> str:
    values = [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
        for k, v in pairs.items()
    ]
    return json.dumps(values).replace("%", "%%").replace("ORDER_ID", "%(order)d")


def _span(name: str, kind: int, span: str, parent: str, attributes: str, ms: str) -> str:
    return (
        '{"traceId":"%(trace)032x","spanId":"' + span + '","parentSpanId":"' + parent + '",'
        '"name":"' + name + '","kind":' + str(kind) + ","
        '"startTimeUnixNano":"%(start)d","endTimeUnixNano":"%(' + ms + ')d",'
        '"attributes":' + attributes + ',"status":{}}'
    )


_SERVER = _span(
    "GET /orders/{id}",
    2,
    "%(trace)08x00000001",
    "",
    _attrs({"http.route": "/orders/{id}", "http.request.method": "GET", "http.status": 200}),
    "end_server",
)
_DB = _span(
    "SELECT orders",
    3,
    "%(trace)08x0000000%(n)d",
    "%(trace)08x00000001",
    _attrs(
        {"db.system.name": "postgresql", "db.query.text": "SELECT * FROM items WHERE id = ORDER_ID"}
    ),
    "end_db",
)
_CODE = _span(
    "appraise",
    1,
    "%(trace)08x00000009",
    "%(trace)08x00000001",
    _attrs({"code.function.name": "vault.Appraiser.appraise", "code.line.number": 42}),
    "end_db",
)


def _trace(trace: int) -> list[str]:
    start = START_NS + trace * 1_000_000
    values = {
        "trace": trace,
        "start": start,
        "end_server": start + 10_000_000 + (trace % 97) * 100_000,
        "end_db": start + 1_000_000 + (trace % 13) * 10_000,
        "order": trace,
    }
    spans = [_SERVER % values]
    spans += [_DB % {**values, "n": n, "order": trace * 10 + n} for n in (2, 3, 4)]
    return [*spans, _CODE % values]


def write_lines(path: Path, spans: int) -> int:
    """Write ``spans`` spans (rounded up to whole lines) as OTLP/JSON lines; returns the lines."""
    lines = 0
    traces = iter(range(10**9))
    with path.open("w", encoding="utf-8") as out:
        for lines in range(1, -(-spans // SPANS_PER_LINE) + 1):
            body: list[str] = []
            while len(body) < SPANS_PER_LINE:
                body += _trace(next(traces))
            res = _RESOURCE % {"pod": lines % 4}
            out.write(
                '{"resourceSpans":[{"resource":' + res + ',"scopeSpans":[{"scope":{"name":"b"},'
                '"spans":[' + ",".join(body) + "]}]}]}\n"
            )
    return lines


def _worker(mode: str, path: str) -> None:
    """Run one measurement in this (fresh) process and print seconds and peak RSS as JSON."""
    from datetime import UTC, datetime

    from feedbot.backends.base import SpanQuery
    from feedbot.backends.otlp_file import OtlpFileBackend

    started = time.perf_counter()
    if mode == "loads":
        import orjson

        with open(path, "rb") as lines:
            for line in lines:
                orjson.loads(line)
    else:
        window = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
        query = SpanQuery("bench", "1.0.0", *window, environment="production")
        OtlpFileBackend([path]).collect(query)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024}))


def _measure(mode: str, path: Path, runs: int) -> tuple[float, float]:
    """(best seconds, peak MiB of that run) over ``runs`` fresh subprocesses."""
    results = []
    for _ in range(runs):
        command = [sys.executable, "-m", "benchmarks.report_io", "--worker", mode, str(path)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output))
    best = min(results, key=lambda r: r["seconds"])
    return best["seconds"], max(r["peak_mib"] for r in results)


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    """Time the bare parse loop and ``OtlpFileBackend.collect`` side by side, per file size.

    Args:
        postgres_admin: unused (the files need no database); kept for the runner's signature.
        quick: 100k spans only, one run each; otherwise 100k and 1M, best of three.

    Returns:
        (benchmark, figure, unit) rows.
    """
    del postgres_admin
    sizes = (100_000,) if quick else (100_000, 1_000_000)
    rows: list[tuple[str, float, str]] = []
    peaks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spans in sizes:
            path = Path(tmp) / f"spans-{spans}.jsonl"
            write_lines(path, spans)
            label = f"{spans // 1000}k" if spans < 1_000_000 else f"{spans // 1_000_000}M"
            bare, bare_peak = _measure("loads", path, 1 if quick else 3)
            full, peaks[spans] = _measure("collect", path, 1 if quick else 3)
            rows += [
                (f"report_io bare orjson.loads loop, {label} spans", spans / bare, "spans/s"),
                (f"report_io otlp-file collect, {label} spans", spans / full, "spans/s"),
                (f"report_io collect time / bare loop time, {label}", full / bare, "x"),
                (f"report_io peak RSS bare loop, {label}", bare_peak, "MiB"),
                (f"report_io peak RSS collect, {label}", peaks[spans], "MiB"),
            ]
    if len(peaks) == 2:
        rows.append(
            ("report_io peak RSS collect 1M / 100k", peaks[sizes[1]] / peaks[sizes[0]], "x")
        )
    return rows


def main() -> None:
    """``python -m benchmarks.report_io [--quick]``, or ``--worker MODE PATH`` (internal)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k spans only, one run")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    for name, value, unit in run("", quick=args.quick):
        print(f"{name:<52} {value:>12.2f}  {unit}")


if __name__ == "__main__":
    main()
