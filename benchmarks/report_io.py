"""Reading an OTLP/JSON lines file: ``feedbot report --traces`` against a bare JSON parse loop.

The file is what the Collector's file exporter writes: one ``ExportTraceServiceRequest`` per
line, here 500 spans a line (a line of about 400 KB, as the exporter's default batch of 512 SDK
spans makes) in traces of five spans (a routed SERVER span, three repeated DB
statements under it, one INTERNAL span with code attributes), integers as strings as OTLP/JSON
writes int64. Every other trace uses the older semantic conventions (``http.method``,
``db.statement``, ``code.function`` + ``code.namespace`` + ``code.lineno``), as instrumentation
not yet migrated sends them, and one trace in 50 failed: its SERVER span has an error status and
an ``exception`` event. It is made by templating JSON text, not by the SDK, so a million spans
take seconds. Each figure runs in a fresh subprocess so that
its peak RSS (``ru_maxrss``) is its own; wall and CPU time are both kept (CPU time is steadier
on a shared machine). ``feedbot report`` reads in ``report_cli.REPORT_WORKERS`` processes (one:
forked workers were faster in wall time but not in CPU, and held several times the memory);
when there are workers, CPU time and peak RSS count them too: CPU is the sum, peak RSS the
parent's plus the largest worker's (an upper bound of what was resident at once). Figures are
medians over the runs. Modes: see :data:`MODES`; the validating decoder only with
``--validating`` (slow). With ``--before TREE`` the report is also timed as another checkout
of feedbot (``git worktree add`` or ``git archive`` of an older commit) runs it, in turn with
this one's, on the same file: a before/after table from one run; and the JSON report each
prints of each file must be byte for byte the same, or the benchmark stops.

    python -m benchmarks.report_io [--quick] [--validating] [--before TREE] [--runs N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, float, str]
Figures = dict[str, float]
SPANS_PER_LINE = 500
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


def _span(
    name: str, kind: int, span: str, parent: str, attributes: str, ms: str, tail: str = ""
) -> str:
    return (
        '{"traceId":"%(trace)032x","spanId":"' + span + '","parentSpanId":"' + parent + '",'
        '"name":"' + name + '","kind":' + str(kind) + ","
        '"startTimeUnixNano":"%(start)d","endTimeUnixNano":"%(' + ms + ')d",'
        '"attributes":' + attributes + (tail or ',"status":{}') + "}"
    )


_FAILED = (
    ',"events":[{"timeUnixNano":"%(start)d","name":"exception","attributes":'
    + _attrs({"exception.type": "TimeoutError", "exception.message": "upstream timed out"})
    + '}],"status":{"code":2,"message":"upstream timed out"}'
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


_OLD_SERVER = _span(
    "GET /orders/{id}",
    2,
    "%(trace)08x00000001",
    "",
    _attrs({"http.route": "/orders/{id}", "http.method": "GET", "http.status_code": 200}),
    "end_server",
)
_OLD_DB = _span(
    "SELECT orders",
    3,
    "%(trace)08x0000000%(n)d",
    "%(trace)08x00000001",
    _attrs({"db.system": "postgresql", "db.statement": "SELECT * FROM items WHERE id = ORDER_ID"}),
    "end_db",
)
_OLD_CODE = _span(
    "appraise",
    1,
    "%(trace)08x00000009",
    "%(trace)08x00000001",
    _attrs({"code.function": "appraise", "code.namespace": "vault.Appraiser", "code.lineno": 42}),
    "end_db",
)
#: Per generation of the conventions: the SERVER span, failed or not, the DB span, the code span.
_TEMPLATES = (
    (_SERVER, _SERVER.replace(',"status":{}}', _FAILED + "}"), _DB, _CODE),
    (_OLD_SERVER, _OLD_SERVER.replace(',"status":{}}', _FAILED + "}"), _OLD_DB, _OLD_CODE),
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
    server, failed, db, code = _TEMPLATES[trace % 2]
    spans = [(failed if trace % 50 == 7 else server) % values]
    spans += [db % {**values, "n": n, "order": trace * 10 + n} for n in (2, 3, 4)]
    return [*spans, code % values]


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


QUERY_WINDOW = ("2025-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
#: Worker modes, measured side by side: the bare parse loop; the backend through the full
#: validating decoder (how it read files before the fast reader); the backend's ``collect`` in
#: one process; the whole ``feedbot report --traces`` command (one read for the new version,
#: the version listing and the baseline, on every core; the analysis; JSON).
MODES = {
    "loads": "bare orjson.loads loop",
    "validating": "otlp-file via validating decoder",
    "collect": "otlp-file collect",
    "report": "feedbot report --traces",
    "before": "feedbot report --traces, before",
}


def _loads(path: str) -> Callable[[], None]:
    import orjson

    def read() -> None:
        with open(path, "rb") as lines:
            for line in lines:
                orjson.loads(line)

    return read


def _validating(path: str) -> Callable[[], None]:
    from feedbot.spans.aggregate import Aggregator, matcher
    from feedbot.spans.otlp_lines import read_rows

    def read() -> None:
        aggregator = Aggregator()
        rows = read_rows(path, (b'"bench"', b'"1.0.0"'))
        aggregator.add_many(filter(matcher(_query()), rows))
        aggregator.result()

    return read


def _collect(path: str) -> Callable[[], None]:
    from feedbot.backends.otlp_file import OtlpFileBackend

    def read() -> None:
        OtlpFileBackend([path]).collect(_query())

    return read


def _query() -> Any:
    from datetime import datetime

    from feedbot.spans.model import SpanQuery

    start, end = (datetime.fromisoformat(t) for t in QUERY_WINDOW)
    return SpanQuery("bench", "1.0.0", start, end, environment="production")


def _report(path: str, out: Any = None) -> Callable[[], None]:
    """``feedbot report --traces path --format json``, printing into ``out`` (None: dropped)."""
    import contextlib
    import io

    from feedbot.commands import report as report_cli

    deploy = Path(path).with_suffix(".deploy.json")
    deployed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START_NS // 10**9))
    doc = {"service": "bench", "version": "1.0.0", "deployed_at": deployed_at}
    deploy.write_text(json.dumps({**doc, "environment": "production"}))
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    argv = ["--deploy", str(deploy), "--traces", path, "--format", "json"]
    args = parser.parse_args([*argv, "--until", QUERY_WINDOW[1]])
    report_cli.read_deploy(deploy)  # imports what reading the deploy document needs
    import feedbot.backends.otlp_file  # noqa: F401  # and the reader (Arrow's first call is timed)

    def report() -> None:
        with contextlib.redirect_stdout(io.StringIO() if out is None else out):
            if report_cli.run(args) != 0:
                raise SystemExit("feedbot report failed")

    return report


def _answer(path: str) -> str:
    """The JSON report ``feedbot report --traces`` prints for ``path`` (as :func:`_report` asks)."""
    import io

    from feedbot.backends.otlp_file import OtlpFileBackend

    out = io.StringIO()
    _report(path, out)()
    # The report prints little of what was read: every field of what collect reads, too.
    read = json.dumps(_plain(OtlpFileBackend([path]).collect(_query())))
    return out.getvalue() + "\n" + hashlib.sha256(read.encode()).hexdigest() + "\n"


def _plain(value: Any) -> Any:
    """``value`` (dataclasses, numpy arrays, dicts in their order) as JSON-ready lists."""
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [[f.name, _plain(getattr(value, f.name))] for f in dataclasses.fields(value)]
    if isinstance(value, np.ndarray):
        return [value.dtype.str, value.tolist()]
    if isinstance(value, dict):
        return [[_plain(k), _plain(v)] for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return repr(value)  # NaN and infinities too
    return value if isinstance(value, int | str | bool | None) else repr(value)


def _same_answers(path: Path, before: str) -> None:
    """Stop unless this checkout's report of ``path`` is byte for byte the ``before`` tree's."""
    answers = []
    for tree in (before, str(Path(__file__).parents[1])):
        # This file runs in both (the other tree's may not have the worker), on that feedbot.
        command = [sys.executable, __file__, "--worker", "answer", str(path)]
        env = {**os.environ, "PYTHONPATH": tree}
        answers.append(
            subprocess.run(command, check=True, capture_output=True, cwd=tree, env=env).stdout
        )
    if not answers[0].strip() or answers[0] != answers[1]:
        raise SystemExit(f"report_io: the report of {path.name} differs from the --before tree's")


def _worker(mode: str, path: str) -> None:
    """Run one measurement in this (fresh) process; print wall and CPU seconds, peak RSS.

    Imports happen before the clock starts: they are the same for every mode.
    """
    if mode == "answer":
        sys.stdout.write(_answer(path))
        return
    action = {"loads": _loads, "validating": _validating, "collect": _collect, "report": _report}[
        mode
    ](path)
    started, cpu = time.perf_counter(), _cpu()
    action()
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": (own + workers) / 1024}))


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the report's workers)."""
    own, workers = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _measure(modes: list[str], path: Path, runs: int, before: str | None) -> dict[str, Figures]:
    """Per mode, median wall and CPU seconds and the largest peak MiB over ``runs`` fresh
    subprocesses; the modes take turns in each round, so that a busy spell hits them alike.
    Mode ``before`` is ``report`` run from the ``before`` tree."""
    results: dict[str, list[Figures]] = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode in modes:
            tree = before if mode == "before" and before else str(Path(__file__).parents[1])
            worker = "report" if mode == "before" else mode
            command = [sys.executable, "-m", "benchmarks.report_io", "--worker", worker, str(path)]
            env = {**os.environ, "PYTHONPATH": tree}
            output = subprocess.run(
                command, check=True, capture_output=True, text=True, cwd=tree, env=env
            ).stdout
            results[mode].append(json.loads(output))
    return {
        mode: {
            "seconds": statistics.median(r["seconds"] for r in found),
            "cpu": statistics.median(r["cpu"] for r in found),
            "peak_mib": max(r["peak_mib"] for r in found),
        }
        for mode, found in results.items()
    }


def _rows(label: str, spans: int, figures: dict[str, dict[str, float]]) -> list[Row]:
    bare = figures["loads"]
    rows: list[Row] = []
    for mode in figures:
        rows.append(
            (f"report_io {MODES[mode]}, {label} spans", spans / figures[mode]["seconds"], "spans/s")
        )
    for mode in (m for m in ("validating", "collect", "before", "report") if m in figures):
        for clock, unit in (("seconds", "x wall"), ("cpu", "x CPU")):
            ratio = figures[mode][clock] / bare[clock]
            rows.append((f"report_io {MODES[mode]} / bare loop, {label}", ratio, unit))
    for mode in (m for m in ("loads", "collect", "before", "report") if m in figures):
        rows.append(
            (f"report_io peak RSS {MODES[mode]}, {label}", figures[mode]["peak_mib"], "MiB")
        )
    return rows


def run(
    postgres_admin: str,
    *,
    quick: bool = False,
    validating: bool = False,
    before: str | None = None,
    runs: int | None = None,
) -> list[tuple[str, float, str]]:
    """Time the bare parse loop and the ways of reading the file side by side, per file size.

    Args:
        postgres_admin: unused (the files need no database); kept for the runner's signature.
        quick: 100k spans only, one run each; otherwise 100k and 1M, median of three.
        validating: measure the validating decoder too (slow).
        before: another checkout of feedbot whose ``report`` is timed beside this one's (and
            whose JSON report of each file must be the same).
        runs: runs per figure (default: 1 with ``quick``, else 3).

    Returns:
        (benchmark, figure, unit) rows.
    """
    del postgres_admin
    sizes: tuple[int, ...] = (100_000,) if quick else (100_000, 1_000_000)
    rows: list[Row] = []
    peaks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spans in sizes:
            path = Path(tmp) / f"spans-{spans}.jsonl"
            write_lines(path, spans)
            label = f"{spans // 1000}k" if spans < 1_000_000 else f"{spans // 1_000_000}M"
            modes = [
                m for m in MODES if (validating or m != "validating") and (before or m != "before")
            ]
            if before:
                _same_answers(path, before)
            figures = _measure(modes, path, runs or (1 if quick else 3), before)
            peaks[spans] = figures["report"]["peak_mib"]
            rows += _rows(label, spans, figures)
    if len(peaks) == 2:
        ratio = peaks[sizes[1]] / peaks[sizes[0]]
        rows.append(("report_io peak RSS feedbot report 1M / 100k", ratio, "x"))
    return rows


def main() -> None:
    """``python -m benchmarks.report_io [--quick]``, or ``--worker MODE PATH`` (internal)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k spans only, one run")
    parser.add_argument("--validating", action="store_true", help="time the validating decoder")
    parser.add_argument("--before", metavar="TREE", help="time this checkout's report too")
    parser.add_argument("--runs", type=int, help="runs per figure (default 1 quick, else 3)")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    rows = run("", quick=args.quick, validating=args.validating, before=args.before, runs=args.runs)
    for name, value, unit in rows:
        print(f"{name:<64} {value:>12.2f}  {unit}")


if __name__ == "__main__":
    main()
