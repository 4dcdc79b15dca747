"""Load on a real ``feedbot serve`` process on a scratch PostgreSQL database.

Deploy webhooks at concurrency 50 (requests per second, p50 and p99 latency) and OTLP ingest
into the embedded backend, protobuf and JSON, in 512-span batches (spans per second, p99 request
latency). The client is httpx's async client in this process; the server is a separate process,
so client and server do not share a GIL.

    python -m benchmarks.load [--postgres URL] [--quick] [--compare REV]

``--compare main`` first runs the same load on a server of another revision (``git archive`` of
it, imported through ``PYTHONPATH``), then on this tree's, and prints both columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import yaml

from benchmarks._db import scratch_databases
from benchmarks._revision import checkout, environment, label
from benchmarks.ingest import BATCH, _payloads
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its threads so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p(latencies: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) in milliseconds."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1e3


def _webhook(offset: int) -> Send:
    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        n = offset + i
        body = json.dumps(
            {"service": f"svc-{n % SERVICES}", "version": f"1.{n}", "commit": f"{n:040x}"}
        ).encode()
        headers = {"X-Feedbot-Signature": sign(body, SECRET)}
        return await client.post("/webhooks/deploy", content=body, headers=headers)

    return send


def _otlp(body: bytes, media: str) -> Send:
    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post("/v1/traces", content=body, headers={"Content-Type": media})

    return send


def _webhook_rows(url: str, pid: int, n: int) -> list[Row]:
    asyncio.run(_drive(url, _webhook(10**6), n=20, concurrency=5))  # warm-up: pool, caches
    cpu = _cpu_seconds(pid)
    elapsed, latencies = asyncio.run(_drive(url, _webhook(0), n=n, concurrency=WEBHOOK_CONCURRENCY))
    cpu = _cpu_seconds(pid) - cpu
    name = f"deploy webhooks, concurrency {WEBHOOK_CONCURRENCY}, PostgreSQL (n={n})"
    return [
        (name, n / elapsed, "req/s"),
        (f"{name} p50", statistics.median(latencies) * 1e3, "ms"),
        (f"{name} p99", _p(latencies, 0.99), "ms"),
        # CPU time is what a shared machine's noise changes least: it bounds req/s per core.
        (f"{name} server CPU per request", cpu / n * 1e3, "ms"),
    ]


def _otlp_rows(url: str, pid: int, batches: int) -> list[Row]:
    rows: list[Row] = []
    payloads = _payloads()
    for kind in ("protobuf", "json"):
        body, media, _ = payloads[kind]
        send = _otlp(body, media)
        asyncio.run(_drive(url, send, n=2, concurrency=2))
        cpu = _cpu_seconds(pid)
        elapsed, latencies = asyncio.run(_drive(url, send, n=batches, concurrency=OTLP_CONCURRENCY))
        cpu = _cpu_seconds(pid) - cpu
        name = f"OTLP ingest {kind}, {BATCH}-span batches, concurrency {OTLP_CONCURRENCY}"
        rows += [
            (f"{name} (n={batches})", batches * BATCH / elapsed, "spans/s"),
            (f"{name} p99 request", _p(latencies, 0.99), "ms"),
            (f"{name} server CPU per 1000 spans", cpu / (batches * BATCH) * 1e6, "ms"),
        ]
    return rows


def run(postgres_admin: str, *, quick: bool = False, tree: Path | None = None) -> list[Row]:
    """Measure once against one ``feedbot serve`` on a scratch PostgreSQL database.

    Args:
        postgres_admin: the URL of a PostgreSQL database allowed to CREATE DATABASE.
        quick: fewer requests, for a smoke run.
        tree: serve the feedbot of this source tree (:mod:`benchmarks._revision`); this one's
            when None.

    Returns:
        (benchmark, figure, unit) rows.
    """
    n, batches = (400, 64) if quick else (3000, 160)
    with scratch_databases(postgres_admin) as urls, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "feedbot.yaml"
        raw = {
            "database_url": urls["postgresql"],
            "webhooks": {"secret": SECRET},
            "traces": {"backend": "embedded"},
            "checks": {"after": ["1h"]},
        }
        config.write_text(yaml.safe_dump(raw))
        server = Feedbot(config, Path(tmp) / "serve.log", environ=environment(tree), cwd=tree)
        try:
            pid = server.proc.pid
            return _webhook_rows(server.url, pid, n) + _otlp_rows(server.url, pid, batches)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    args = parser.parse_args()
    columns: dict[str, list[Row]] = {}
    if args.compare:
        with checkout(args.compare) as tree:
            columns[f"{args.compare} ({label(args.compare)})"] = run(
                args.postgres, quick=args.quick, tree=tree
            )
    columns["this tree"] = run(args.postgres, quick=args.quick)
    print(f"{'benchmark':<80}" + "".join(f"{name:>18}" for name in columns) + "  unit")
    for i, (name, _, unit) in enumerate(columns["this tree"]):
        cells = "".join(f"{rows[i][1]:>18.1f}" for rows in columns.values())
        print(f"{name:<80}{cells}  {unit}")


if __name__ == "__main__":
    main()
