"""The embedded trace store at scale: one check's time and memory, and the prune, by size.

Spans are rows the OTLP decoder made of real OpenTelemetry SDK traces (the contract suite's
release, :func:`tests.fakes.sdk_spans.release_spans`: request traces with an N+1, exceptions, code
locations, a consumer span with a remote parent), copied with fresh trace and span ids and
shifted start times into 20 services. The checked service, ``svc-0``, holds a quarter of the
spans of each size in its check window, plus, in the last row, enough more for ``--window``.
Rows arrive spread over 24 hours of ``received_at``.

Per store (SQLite, PostgreSQL) and size:

- *check s* and *peak MiB*: :meth:`EmbeddedBackend.collect` of ``svc-0``'s window (what a check
  asks of the store), median seconds over ``--repeats`` runs, each in a fresh process; *cpu s*
  the median CPU seconds of that process (user and system; not PostgreSQL's server), steadier
  than the wall clock on a shared machine; peak MiB is the growth of the process's peak RSS
  during the collect;
- *prune s*: a prune below ``traces.max_spans`` that deletes one hour of spans, and
- *max stall ms*: meanwhile, a second connection inserts 50 spans every 10 ms; the longest of
  those inserts (it waits for SQLite's write lock) is the stall ingest sees.
- *cap s*: a prune that deletes nothing (retention past, the cap above the count), as the ticker
  runs one every 10 minutes.

    python -m benchmarks.store_scale [--postgres URL] [--sizes 100000,1000000] [--window 1000000]
    python -m benchmarks.store_scale --quick      # 20k and 100k stored, no --window row
    python -m benchmarks.store_scale --no-prune   # the check alone
    python -m benchmarks.store_scale --before /tmp/main-tree   # also main's code, side by side
    python -m benchmarks.store_scale --explain postgresql+psycopg://…/db   # the baseline search
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from benchmarks._db import scratch_databases
from feedbot.backends.embedded import EmbeddedBackend
from feedbot.spans.model import SpanQuery
from feedbot.spans.rows import SpanRow
from feedbot.store import span_queries
from feedbot.store.db import make_engine, make_sessions

SERVICES = 20
CHECKED = "svc-0"
VERSION = "2.0.0"
HOURS = 24
BATCH = 5000


def _templates() -> list[SpanRow]:
    """One version's spans from the real SDK, as the OTLP decoder stores them."""
    from feedbot.spans.otlp import decode_protobuf
    from tests.fakes.sdk_spans import Variant, protobuf, release_spans

    spans = release_spans("svc", VERSION, variant=Variant(traces=25, repeats=6))
    rows = decode_protobuf(protobuf(spans))
    window = [r for r in rows if r["name"] != "outside"]
    return window


def _copies(templates: list[SpanRow], service: str, count: int, seed: int) -> list[SpanRow]:
    """``count`` rows copied from ``templates``: fresh ids per copy, starts shifted by copy."""
    rng = random.Random(seed)
    out: list[SpanRow] = []
    copy = 0
    while len(out) < count:
        traces: dict[str, str] = {}
        spans: dict[str, str] = {}
        shift = rng.randrange(0, 500_000_000_000)  # within the first ~8 of 10 minutes
        for row in templates:
            trace = traces.setdefault(row["trace_id"], f"{rng.getrandbits(128):032x}")
            span = spans.setdefault(row["span_id"], f"{rng.getrandbits(64):016x}")
            parent = row["parent_span_id"]
            if parent is not None:
                parent = spans.setdefault(parent, f"{rng.getrandbits(64):016x}")
            out.append(
                {
                    **row,
                    "trace_id": trace,
                    "span_id": span,
                    "parent_span_id": parent,
                    "service": service,
                    "start_ns": row["start_ns"] + shift % 60_000_000_000,
                }
            )
            if len(out) == count:
                break
        copy += 1
    return out


def _fill(url: str, per_service: dict[str, int], hour: list[int], seed: int) -> None:
    """Store rows for each service, stamped over ``HOURS`` hours of ``received_at``."""
    from tests.fakes.sdk_spans import T0

    templates = _templates()
    engine = make_engine(url, immediate=False)
    sessions = make_sessions(engine)
    for s, (service, count) in enumerate(per_service.items()):
        rows = _copies(templates, service, count, seed * 100 + s)
        for i in range(0, len(rows), BATCH):
            stamp = T0 - timedelta(hours=HOURS) + timedelta(seconds=hour[0])
            hour[0] += 1
            with sessions.begin() as session:
                span_queries.insert_spans(session, rows[i : i + BATCH], stamp)
    engine.dispose()


def _query() -> SpanQuery:
    from tests.fakes.sdk_spans import T0

    return SpanQuery(
        service=CHECKED,
        version=VERSION,
        start=T0,
        end=T0 + timedelta(minutes=10),
        environment="production",
    )


def _child_collect(url: str) -> None:
    """In a fresh process: one collect, printing seconds, peak RSS growth and the span count."""
    engine = make_engine(url, immediate=False)
    backend = EmbeddedBackend(make_sessions(engine))
    with open("/proc/self/statm") as statm:  # resident pages now, not the peak so far
        before = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    started, cpu = time.perf_counter(), time.process_time()
    data = backend.collect(_query())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak into ru_maxrss across exec,
    # so a child of this (large) benchmark process reported the parent's size.
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    spans = sum(group.count for group in data.groups)
    import feedbot

    out = {
        "s": seconds,
        "cpu": cpu,
        "mib": (peak - before) / 1024,
        "spans": spans,
        "code": feedbot.__file__,
    }
    print(json.dumps(out))


def _child(code: str | None, *args: str) -> Any:
    """Run this module with ``args`` in a fresh process (on the sources at ``code`` if given)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([code, here])
    # `python -c` puts the working directory first on the path: run in the tree measured.
    out = subprocess.run(
        [sys.executable, "-c", _RUN_CHILD, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=code or here,
    )
    if out.returncode:
        sys.exit(f"{args[0]} on {code or here} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


#: The child runs this file's functions against whichever ``feedbot`` its path finds first.
_RUN_CHILD = (
    "import runpy, sys; sys.argv[0] = 'store_scale'; "
    f"runpy.run_path({__file__!r}, run_name='__main__')"
)


def _collect(url: str, repeats: int, code: str | None) -> tuple[float, float, float, int]:
    runs = [_child(code, "--child-collect", url) for _ in range(repeats)]
    return (
        statistics.median(r["s"] for r in runs),
        statistics.median(r["cpu"] for r in runs),
        statistics.median(r["mib"] for r in runs),
        runs[0]["spans"],
    )


def _count(url: str) -> int:
    from sqlalchemy import text

    engine = make_engine(url)
    with engine.connect() as c:
        n = int(c.execute(text("SELECT count(*) FROM spans")).scalar_one())
    engine.dispose()
    return n


def _prune(url: str, hour: list[int], code: str | None) -> tuple[float, float, float, int]:
    """(prune one hour s, longest concurrent insert ms, no-op prune s, deleted), in a process
    running ``code`` (a source tree) or this one."""
    # The oldest ~1/24 of the rows: received_at runs from T0 - 24 h, one second per batch.
    hour[1] += max(1, hour[0] // HOURS)
    out = _child(code, "--child-prune", url, str(hour[1]))
    return out["s"], out["stall_ms"], out["noop_s"], out["deleted"]


def _child_prune(url: str, seconds: int) -> None:
    from tests.fakes.sdk_spans import T0

    engine = make_engine(url, immediate=False)
    sessions = make_sessions(engine)
    backend = EmbeddedBackend(sessions)
    stored = _count(url)
    oldest = T0 - timedelta(hours=HOURS) + timedelta(seconds=seconds)
    # A cap above the count and a retention before every row: nothing to delete.
    started = time.perf_counter()
    backend.prune(T0 - timedelta(days=30), max_spans=stored + 1000)
    noop = time.perf_counter() - started

    writer_engine = make_engine(url, immediate=False)
    writer = make_sessions(writer_engine)
    rows = _copies(_templates(), "svc-writer", 50 * 400, 99)
    stalls: list[float] = []
    done = threading.Event()

    def write() -> None:
        i = 0
        while not done.is_set() and i * 50 < len(rows):
            begun = time.perf_counter()
            with writer.begin() as session:
                span_queries.insert_spans(session, rows[i * 50 : (i + 1) * 50], T0)
            stalls.append(time.perf_counter() - begun)
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    deleted = backend.prune(oldest, max_spans=stored + 100_000)
    seconds = time.perf_counter() - started
    time.sleep(0.2)
    done.set()
    thread.join()
    engine.dispose()
    writer_engine.dispose()
    stall_ms = max(stalls) * 1000
    print(json.dumps({"s": seconds, "stall_ms": stall_ms, "noop_s": noop, "deleted": deleted}))


def explain(url: str) -> None:
    """EXPLAIN ANALYZE of a check's baseline search (``version_counts``) on PostgreSQL at ``url``:
    as it runs, then without ``ix_spans_service_start_ns_version`` (dropped in a transaction
    that is rolled back)."""
    from sqlalchemy import text

    from tests.fakes.sdk_spans import T0

    statement = span_queries.version_counts_statement(
        CHECKED, T0 - timedelta(days=1), T0 + timedelta(minutes=10), "production"
    )
    engine = make_engine(url)
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    for label, drop in (("with the index", False), ("without it", True)):
        with engine.connect() as c:
            if drop:
                c.execute(text("DROP INDEX ix_spans_service_start_ns_version"))
            plan = c.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")).scalars().all()
            c.rollback()
        print(f"-- {label}")
        print("\n".join(plan))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--window", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--no-prune", action="store_true", help="measure the check alone (no prune columns)"
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also measure the feedbot sources in DIR (e.g. `git archive main`) on the same stores",
    )
    parser.add_argument(
        "--explain", metavar="URL", help="EXPLAIN the baseline search on this PostgreSQL store"
    )
    parser.add_argument("--child-collect", help=argparse.SUPPRESS)
    parser.add_argument("--child-prune", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.explain:
        explain(args.explain)
        return 0
    if args.child_collect:
        _child_collect(args.child_collect)
        return 0
    if args.child_prune:
        _child_prune(args.child_prune[0], int(args.child_prune[1]))
        return 0
    sizes = [20_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    window = 0 if args.quick else args.window
    codes: list[tuple[str, str | None]] = [("after", None)]
    if args.before:
        codes.insert(0, ("before", os.path.abspath(args.before)))
    header = (
        f"{'store':<11} {'code':<7} {'stored':>9} {'in window':>9} {'check s':>8} {'cpu s':>6} "
        f"{'peak MiB':>8} "
        f"{'prune s':>8} {'deleted':>8} {'stall ms':>9} {'cap s':>7}"
    )
    print(header)
    with scratch_databases(args.postgres) as urls:
        for store in args.stores.split(","):
            url = urls[store]
            have: dict[str, int] = {f"svc-{i}": 0 for i in range(SERVICES)}
            hour = [0, 0]  # batches stored, batches pruned
            steps = [(n, n // 4) for n in sizes]
            if window:
                steps.append((sizes[-1] - sizes[-1] // 4 + window, window))
            for seed, (total, checked) in enumerate(steps):
                # The checked service last: the prune takes the oldest rows, other services'.
                others = total - checked
                want = {f"svc-{i}": others // (SERVICES - 1) for i in range(1, SERVICES)}
                want[CHECKED] = checked
                add = {k: max(0, v - have[k]) for k, v in want.items()}
                _fill(url, add, hour, seed)
                for k, v in add.items():
                    have[k] += v
                stored = _count(url)
                for label, code in codes:
                    seconds, cpu, mib, spans = _collect(url, args.repeats, code)
                    prune_s, stall_ms, noop_s, deleted = (
                        (float("nan"), float("nan"), float("nan"), 0)
                        if args.no_prune
                        else _prune(url, hour, code)
                    )
                    print(
                        f"{store:<11} {label:<7} {stored:>9} {spans:>9} {seconds:>8.2f} "
                        f"{cpu:>6.2f} {mib:>8.0f} {prune_s:>8.2f} {deleted:>8} {stall_ms:>9.0f} "
                        f"{noop_s:>7.2f}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
