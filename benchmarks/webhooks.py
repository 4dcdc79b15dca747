"""Signed deploy webhooks over real HTTP (uvicorn on loopback): requests per second, latency."""

from __future__ import annotations

import json
import os
import statistics
import time

import httpx

from benchmarks._db import scratch_databases
from feedbot.config import settings_from_mapping
from feedbot.runtime import build_runtime
from feedbot.web.app import create_app
from tests.factories import sign
from tests.servers import AppServer

SECRET = "bench"


def _one_database(url: str, n: int) -> tuple[float, float, float]:
    from feedbot.notify.console import ConsoleNotifier

    settings = settings_from_mapping({"database_url": url, "webhooks": {"secret": SECRET}}, {})
    latencies = []
    with open(os.devnull, "w") as sink:
        runtime = build_runtime(settings, notifier=ConsoleNotifier(sink))
        server = AppServer(create_app(runtime)).__enter__()
        client = httpx.Client(base_url=server.url)
        start = time.perf_counter()
        for i in range(n):
            body = json.dumps(
                {"service": f"svc-{i % 20}", "version": f"1.{i}", "commit": f"{i:040x}"}
            ).encode()
            t0 = time.perf_counter()
            answer = client.post(
                "/webhooks/deploy",
                content=body,
                headers={"X-Feedbot-Signature": sign(body, SECRET)},
            )
            latencies.append(time.perf_counter() - t0)
            assert answer.status_code == 202, answer.text
        elapsed = time.perf_counter() - start
        client.close()
        server.__exit__(None, None, None)
    runtime.engine.dispose()
    latencies.sort()
    return n / elapsed, statistics.median(latencies) * 1e3, latencies[int(0.99 * n) - 1] * 1e3


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    n = 50 if quick else 400
    rows = []
    with scratch_databases(postgres_admin) as urls:
        for kind, url in urls.items():
            rps, p50, p99 = _one_database(url, n)
            rows += [
                (f"webhook register ({kind}, sequential, n={n})", rps, "req/s"),
                (f"webhook register ({kind}) p50", p50, "ms"),
                (f"webhook register ({kind}) p99", p99, "ms"),
            ]
    return rows
