"""Peak memory of ``feedbot serve`` for one ``POST /v1/traces`` at the span cap and far over it.

Each case starts a fresh ``feedbot serve`` (SQLite, embedded store, the default caps and an
ingest token), sends one gzip-compressed protobuf request of minimal spans (ids, a name, times),
and reads the server's peak resident memory (``VmHWM``) from /proc. Linux only.

    python -m benchmarks.ingest_caps [--spans N ...]
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOKEN = "benchmark-ingest-token"
DEFAULT_SPANS = (50_000, 1_000_000)


def body(spans: int) -> bytes:
    """One ``ExportTraceServiceRequest`` of ``spans`` minimal spans, gzip-compressed."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="bench"))
    )
    start = time.time_ns()
    template = Span(name="GET /", kind=2, start_time_unix_nano=start, end_time_unix_nano=start + 1)
    scope = resource_spans.scope_spans.add()
    for i in range(spans):
        span = scope.spans.add()
        span.CopyFrom(template)
        span.trace_id = i.to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
    return gzip.compress(request.SerializeToString(), 6)


def kib(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(payload: bytes, workdir: Path) -> tuple[int, float, int, int]:
    """(status, seconds, RSS before in MiB, peak RSS in MiB) for one request to a fresh server."""
    port = free_port()
    config = workdir / f"feedbot-{port}.yaml"
    config.write_text(f"database_url: sqlite:///{workdir / f'{port}.db'}\n")
    env = {**os.environ, "FEEDBOT_INGEST_TOKEN": TOKEN}
    command = [sys.executable, "-m", "feedbot", "serve", "--config", str(config)]
    server = subprocess.Popen([*command, "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        before = kib(server.pid, "VmRSS")
        started = time.monotonic()
        answer = httpx.post(
            url + "/v1/traces",
            content=payload,
            headers={
                "content-type": "application/x-protobuf",
                "content-encoding": "gzip",
                "authorization": f"Bearer {TOKEN}",
            },
            timeout=600,
        )
        took = time.monotonic() - started
        return answer.status_code, took, before // 1024, kib(server.pid, "VmHWM") // 1024
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    """Print one row per request size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, nargs="+", default=list(DEFAULT_SPANS))
    args = parser.parse_args()
    print(
        f"{'spans':>9}  {'gzip MiB':>8}  {'status':>6}  {'seconds':>7}  {'RSS MiB':>7}  {'peak':>5}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for spans in args.spans:
            payload = body(spans)
            status, took, before, peak = measure(payload, Path(tmp))
            size = len(payload) / 2**20
            print(f"{spans:>9}  {size:>8.1f}  {status:>6}  {took:>7.2f}  {before:>7}  {peak:>5}")


if __name__ == "__main__":
    main()
