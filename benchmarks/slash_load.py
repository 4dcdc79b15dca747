"""Slash commands acknowledged within 3 s at p99, alone and while checks and ingest run.

One real ``feedbot serve`` on a scratch PostgreSQL database, with Slack faked at HTTP level
(:class:`tests.fakes.slack_api.FakeSlackAPI`). ``/feedback <service>`` requests are signed the
way Slack signs them (``v0`` HMAC-SHA256 of ``v0:{timestamp}:{body}``) and sent by a few users
at once; the figure is the time to the HTTP answer, which is the acknowledgement Slack waits
3 s for (the answer itself follows on ``response_url``).

The loaded run adds, at the same time: OTLP batches into ``/v1/traces`` (protobuf, 512 spans,
8 exporters at once) and deploy webhooks whose checks come due 1-3 s later and run on the
ticker (every 500 ms). The table puts both runs side by side.

    python -m benchmarks.slash_load [--postgres URL] [--quick] [--compare REV]

``--compare main`` runs the same on a server of another revision first and prints its figures
above this tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import yaml
from slack_sdk.signature import SignatureVerifier

from benchmarks._db import scratch_databases
from benchmarks._revision import checkout, environment, label
from benchmarks.ingest import BATCH, fresh_bodies
from tests.factories import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.processes import Feedbot

SIGNING_SECRET = "slash-bench-signing-secret"
WEBHOOK_SECRET = "slash-bench-webhook-secret"
#: People typing /feedback at the same moment; more than a team ever does.
SLASH_CONCURRENCY = 4
OTLP_CONCURRENCY = 8
WEBHOOK_CONCURRENCY = 2
SERVICES = 20
#: Distinct export bodies the ingest load cycles through.
BODIES = 400
Row = tuple[str, float, float, str]


def slash_request(i: int, response_url: str) -> tuple[bytes, dict[str, str]]:
    """A signed ``/feedback svc-<n>`` form post, as Slack sends it."""
    body = urlencode(
        {
            "command": "/feedback",
            "text": f"svc-{i % SERVICES}",
            "user_id": f"U{i % 50:03d}",
            "team_id": "T1",
            "channel_id": "C1",
            "api_app_id": "A1",
            "response_url": response_url,
            "trigger_id": f"{i}.1.2",
        }
    ).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }
    return body, headers


async def _slash(url: str, n: int, response_url: str) -> list[float]:
    """Send ``n`` slash commands from ``SLASH_CONCURRENCY`` users; their ack latencies (s)."""
    latencies: list[float] = []
    todo = iter(range(n))
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def user() -> None:
            for i in todo:
                body, headers = slash_request(i, response_url)
                started = time.perf_counter()
                answer = await client.post("/slack/events", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"slash command: {answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(0.05)  # a person, not a loop

        await asyncio.gather(*(user() for _ in range(SLASH_CONCURRENCY)))
    return latencies


Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def _background(url: str, stop: asyncio.Event) -> dict[str, int]:
    """OTLP ingest and deploy webhooks until ``stop`` is set; how many of each were accepted."""
    # Spans the store does not have yet (one batch in eight retried), as exporters send them.
    bodies, media = fresh_bodies("protobuf", BODIES), "application/x-protobuf"
    counts = {"spans": 0, "deploys": 0}

    sent = itertools.count()

    async def ingest(client: httpx.AsyncClient, _: int) -> httpx.Response:
        body = bodies[next(sent) % len(bodies)]
        answer = await client.post("/v1/traces", content=body, headers={"Content-Type": media})
        counts["spans"] += BATCH if answer.status_code == 200 else 0
        return answer

    async def deploy(client: httpx.AsyncClient, i: int) -> httpx.Response:
        raw = json.dumps(
            {"service": f"svc-{i % SERVICES}", "version": f"2.{i}", "commit": f"{i:040x}"}
        ).encode()
        headers = {"X-Feedbot-Signature": sign(raw, WEBHOOK_SECRET)}
        answer = await client.post("/webhooks/deploy", content=raw, headers=headers)
        counts["deploys"] += answer.status_code == 202
        await asyncio.sleep(0.2)
        return answer

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def loop(send: Send, worker: int) -> None:
            i = worker * 1_000_000
            while not stop.is_set():
                answer = await send(client, i)
                if answer.status_code not in (200, 202):
                    raise RuntimeError(f"background: {answer.status_code} {answer.text[:200]}")
                i += 1

        workers = [loop(ingest, w) for w in range(OTLP_CONCURRENCY)]
        workers += [loop(deploy, OTLP_CONCURRENCY + w) for w in range(WEBHOOK_CONCURRENCY)]
        await asyncio.gather(*workers)
    return counts


async def _loaded(url: str, n: int, response_url: str) -> tuple[list[float], dict[str, int]]:
    stop = asyncio.Event()
    background = asyncio.create_task(_background(url, stop))
    await asyncio.sleep(3)  # the first checks come due
    try:
        latencies = await _slash(url, n, response_url)
    finally:
        stop.set()
    return latencies, await background


def _p(latencies: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) in milliseconds."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1e3


def _config(path: Path, database_url: str, slack_api: FakeSlackAPI) -> None:
    slack = {"bot_token": "xoxb-bench", "signing_secret": SIGNING_SECRET}
    raw = {
        "database_url": database_url,
        "webhooks": {"secret": WEBHOOK_SECRET},
        "slack": {**slack, "api_url": slack_api.base_url},
        "traces": {"backend": "embedded"},
        "checks": {"after": ["1s", "2s", "3s"], "tick": "500ms"},
    }
    path.write_text(yaml.safe_dump(raw))


def run(
    postgres_admin: str, *, quick: bool = False, tree: Path | None = None
) -> tuple[list[Row], dict[str, int]]:
    """Ack latency of ``n`` slash commands, without and with background load.

    Args:
        postgres_admin: the URL of a PostgreSQL database allowed to CREATE DATABASE.
        quick: 40 commands per run instead of 300.
        tree: serve the feedbot of this source tree (:mod:`benchmarks._revision`); this one's
            when None.

    Returns:
        (figure, quiet, loaded, unit) rows, and what the background load got done.
    """
    n = 40 if quick else 300
    with (
        scratch_databases(postgres_admin) as urls,
        tempfile.TemporaryDirectory() as tmp,
        FakeSlackAPI() as slack_api,
    ):
        config = Path(tmp) / "feedbot.yaml"
        _config(config, urls["postgresql"], slack_api)
        server = Feedbot(config, Path(tmp) / "serve.log", environ=environment(tree), cwd=tree)
        try:
            response_url = slack_api.response_url("bench")
            asyncio.run(_slash(server.url, 8, response_url))  # warm-up: pools, imports
            quiet = asyncio.run(_slash(server.url, n, response_url))
            loaded, done = asyncio.run(_loaded(server.url, n, response_url))
        finally:
            server.stop()
    rows = [
        (f"p{round(q * 100)} ack", _p(quiet, q), _p(loaded, q), "ms") for q in (0.5, 0.95, 0.99)
    ]
    rows.append(("max ack", max(quiet) * 1e3, max(loaded) * 1e3, "ms"))
    return rows, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    args = parser.parse_args()
    runs: dict[str, tuple[list[Row], dict[str, int]]] = {}
    if args.compare:
        with checkout(args.compare) as tree:
            runs[f"{args.compare} ({label(args.compare)})"] = run(
                args.postgres, quick=args.quick, tree=tree
            )
    runs["this tree"] = run(args.postgres, quick=args.quick)
    for revision, (rows, done) in runs.items():
        print(f"{'/feedback <service>, ' + str(SLASH_CONCURRENCY) + ' users':<32} "
              f"{'alone':>10} {'under load':>12}   [{revision}]")  # fmt: skip
        for name, quiet, loaded, unit in rows:
            print(f"{name:<32} {quiet:>10.1f} {loaded:>12.1f} {unit}")
        print(f"background during the loaded run: {done['spans']} spans ingested, "
              f"{done['deploys']} deploys registered (their checks ran on the ticker)")  # fmt: skip
    print("target: p99 under load < 3000 ms")


if __name__ == "__main__":
    main()
