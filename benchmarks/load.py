"""Load on a real ``feedbot serve`` process on a scratch PostgreSQL database.

Deploy webhooks at concurrency 50 on PostgreSQL and on SQLite (requests per second, p50 and p99
latency, sent by a minimal keep-alive HTTP/1.1 client so that the client is not what is
measured) and OTLP ingest
into the embedded backend on PostgreSQL and on SQLite, protobuf and JSON, in 512-span batches
(spans per second, p99 request latency, the server's CPU per span and its peak memory, all of
its processes). Each
batch carries spans the store does not have yet, and one in eight is sent twice, as exporters
retry. The client is httpx's async client in this process; the server is a separate process, so
client and server do not share a GIL.

    python -m benchmarks.load [--postgres URL] [--quick] [--compare REV] [--repeat N]
                              [--only webhooks|ingest]

``--compare main`` also runs the same load on a server of another revision (``git archive`` of
it, imported through ``PYTHONPATH``) and prints both columns; with ``--repeat N`` the two
alternate N times and each cell is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from benchmarks._db import scratch_databases
from benchmarks._revision import checkout, environment, label
from benchmarks.ingest import BATCH, fresh_bodies
from tests.factories import sign
from tests.processes import Feedbot

SECRET = "load-bench-secret"
WEBHOOK_CONCURRENCY = 50
# An OTLP exporter sends one batch at a time; eight exporters sending at once is a busy cluster.
OTLP_CONCURRENCY = 8
SERVICES = 20

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
Row = tuple[str, float, str]


async def _drive(url: str, send: Send, *, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Send ``n`` requests from ``concurrency`` workers; (elapsed seconds, latencies in s)."""
    latencies: list[float] = []
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            for i in todo:
                started = time.perf_counter()
                answer = await send(client, i)
                latencies.append(time.perf_counter() - started)
                if answer.status_code not in (200, 202):
                    raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies


async def _post_raw(
    url: str, bodies: Callable[[int], tuple[bytes, dict[str, str]]], *, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """POST ``n`` requests from ``concurrency`` keep-alive connections with a minimal HTTP/1.1
    client; (elapsed seconds, latencies in s).

    httpx's async client spends 2-3 ms of CPU a request, as much as the server: at a few
    hundred requests a second on two cores the client would be what is measured. This one
    writes each request in one call and reads the answer by its Content-Length.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in todo:
                body, headers = bodies(i)
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                started = time.perf_counter()
                writer.write(
                    f"POST /webhooks/deploy HTTP/1.1\r\nHost: {host}\r\n{head}"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                status = int(status_line.split()[1])
                if status not in (200, 202):
                    raise RuntimeError(f"{status}: {answer[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def _tree(pid: int) -> list[int]:
    """``pid`` and its live children (any thread's), e.g. a decoding process."""
    pids = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += map(int, children.read_text().split())
        except OSError:
            continue
    return pids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid``, its threads and live children
    (Linux)."""
    total = 0.0
    for each in _tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _p(latencies: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) in milliseconds."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1e3


def _deploy(n: int) -> tuple[bytes, dict[str, str]]:
    """Deploy ``n``: of one of :data:`SERVICES` services, a new version each."""
    body = json.dumps(
        {"service": f"svc-{n % SERVICES}", "version": f"1.{n}", "commit": f"{n:040x}"}
    ).encode()
    return body, {"X-Feedbot-Signature": sign(body, SECRET)}


def _otlp(bodies: Sequence[bytes], media: str) -> Send:
    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        body = bodies[i % len(bodies)]
        return await client.post("/v1/traces", content=body, headers={"Content-Type": media})

    return send


def _tree_rss(pid: int) -> int:
    """Memory of process ``pid`` and its live children (a decoding process counts), as the sum
    of their proportional set sizes: a page two of them share counts once. (Resident sizes
    would count the whole server twice for a child caught between its fork and its exec.)"""
    total = 0
    for each in _tree(pid):
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


@contextmanager
def _peak_rss(pid: int) -> Iterator[list[int]]:
    """Sample the server's resident memory every 20 ms; yields [peak bytes] (filled at exit)."""
    peak = [_tree_rss(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def _webhook_rows(url: str, pid: int, n: int, database: str) -> list[Row]:
    warm = functools.partial(_post_raw, url, lambda i: _deploy(10**6 + i))
    asyncio.run(warm(n=20, concurrency=5))  # warm-up: pool, caches
    cpu = _cpu_seconds(pid)
    elapsed, latencies = asyncio.run(_post_raw(url, _deploy, n=n, concurrency=WEBHOOK_CONCURRENCY))
    cpu = _cpu_seconds(pid) - cpu
    name = f"deploy webhooks, concurrency {WEBHOOK_CONCURRENCY}, {database} (n={n})"
    return [
        (name, n / elapsed, "req/s"),
        (f"{name} p50", statistics.median(latencies) * 1e3, "ms"),
        (f"{name} p99", _p(latencies, 0.99), "ms"),
        # CPU time is what a shared machine's noise changes least: it bounds req/s per core.
        (f"{name} server CPU per request", cpu / n * 1e3, "ms"),
    ]


def _otlp_rows(url: str, pid: int, batches: int, database: str) -> list[Row]:
    rows: list[Row] = []
    before = _tree_rss(pid)
    with _peak_rss(pid) as peak:
        for kind, media in (("protobuf", "application/x-protobuf"), ("json", "application/json")):
            bodies = fresh_bodies(kind, batches + 2)
            asyncio.run(_drive(url, _otlp(bodies[-2:], media), n=2, concurrency=2))  # warm-up
            send = _otlp(bodies[:batches], media)
            cpu = _cpu_seconds(pid)
            elapsed, latencies = asyncio.run(
                _drive(url, send, n=batches, concurrency=OTLP_CONCURRENCY)
            )
            cpu = _cpu_seconds(pid) - cpu
            name = f"OTLP ingest {kind} into {database}, concurrency {OTLP_CONCURRENCY}"
            rows += [
                (f"{name} (n={batches}x{BATCH})", batches * BATCH / elapsed, "spans/s"),
                (f"{name} p99 request", _p(latencies, 0.99), "ms"),
                (f"{name} server CPU per 1000 spans", cpu / (batches * BATCH) * 1e6, "ms"),
            ]
    rows += [
        (f"OTLP ingest into {database}: server memory (PSS) before", before / 2**20, "MiB"),
        (f"OTLP ingest into {database}: server peak memory (PSS) during", peak[0] / 2**20, "MiB"),
    ]
    return rows


def _serve(tmp: Path, database_url: str, tree: Path | None) -> Feedbot:
    config = tmp / f"feedbot-{database_url.split(':')[0]}.yaml"
    raw = {
        "database_url": database_url,
        "webhooks": {"secret": SECRET},
        "traces": {"backend": "embedded"},
        "checks": {"after": ["1h"]},
    }
    config.write_text(yaml.safe_dump(raw))
    return Feedbot(config, tmp / "serve.log", environ=environment(tree), cwd=tree)


PARTS = ("webhooks", "ingest")


def run(
    postgres_admin: str,
    *,
    quick: bool = False,
    tree: Path | None = None,
    parts: Sequence[str] = PARTS,
) -> list[Row]:
    """Measure once against ``feedbot serve`` on scratch databases.

    Args:
        postgres_admin: the URL of a PostgreSQL database allowed to CREATE DATABASE.
        quick: fewer requests, for a smoke run.
        tree: serve the feedbot of this source tree (:mod:`benchmarks._revision`); this one's
            when None.
        parts: ``webhooks`` or ``ingest`` (each on PostgreSQL, then SQLite), or both.

    Returns:
        (benchmark, figure, unit) rows.
    """
    n, batches = (400, 64) if quick else (3000, 160)
    rows: list[Row] = []
    with scratch_databases(postgres_admin) as urls, tempfile.TemporaryDirectory() as tmp:
        targets = []
        if "webhooks" in parts:
            targets += [("webhooks", "postgresql", "PostgreSQL"), ("webhooks", "sqlite", "SQLite")]
        if "ingest" in parts:
            targets += [("ingest", "postgresql", "PostgreSQL"), ("ingest", "sqlite", "SQLite")]
        for part, database, name in targets:
            server = _serve(Path(tmp), urls[database], tree)
            try:
                pid = server.proc.pid
                if part == "webhooks":
                    rows += _webhook_rows(server.url, pid, n, name)
                else:
                    rows += _otlp_rows(server.url, pid, batches, name)
            finally:
                server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    parser.add_argument("--repeat", type=int, default=1, help="alternate runs; cells are medians")
    parser.add_argument("--only", choices=PARTS, help="measure only this part")
    args = parser.parse_args()
    parts = (args.only,) if args.only else PARTS
    runs: dict[str, list[list[Row]]] = {}
    with contextlib.ExitStack() as stack:
        trees: dict[str, Path | None] = {}
        if args.compare:
            name = f"{args.compare} ({label(args.compare)})"
            trees[name] = stack.enter_context(checkout(args.compare))
        trees["this tree"] = None
        for _ in range(args.repeat):
            for name, tree in trees.items():
                runs.setdefault(name, []).append(
                    run(args.postgres, quick=args.quick, tree=tree, parts=parts)
                )
    columns = {
        name: [statistics.median(rows[i][1] for rows in repeats) for i in range(len(repeats[0]))]
        for name, repeats in runs.items()
    }
    print(f"{'benchmark':<80}" + "".join(f"{name:>18}" for name in columns) + "  unit")
    for i, (name, _, unit) in enumerate(runs["this tree"][0]):
        cells = "".join(f"{values[i]:>18.1f}" for values in columns.values())
        print(f"{name:<80}{cells}  {unit}")
    if args.repeat > 1:
        print(f"(medians of {args.repeat} alternating runs)")


if __name__ == "__main__":
    main()
