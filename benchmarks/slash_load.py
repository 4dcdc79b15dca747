"""Slash commands acknowledged within 300 ms at p99, alone and while checks and ingest run.

One real ``feedbot serve`` on a scratch PostgreSQL database, with Slack faked at HTTP level
(:class:`tests.fakes.slack_api.FakeSlackAPI`). ``/feedback <service>`` requests are signed the
way Slack signs them (``v0`` HMAC-SHA256 of ``v0:{timestamp}:{body}``) and sent at a steady
``RATE`` a second for the whole run, each on schedule whether or not the ones before it were
answered (as Slack sends them: people do not wait for each other), so a stalled server shows
as a queue of late acks, not as fewer commands. The figure is the time to the HTTP answer,
which is the acknowledgement Slack waits 3 s for (the answer itself follows on
``response_url``).

The loaded run adds, at the same time: OTLP batches into ``/v1/traces`` (protobuf, 512 spans,
8 exporters at once, as ``benchmarks.load`` sends them) and deploy webhooks from 50 senders at
once (``benchmarks.load``'s burst), whose checks come due 1-3 s later and run on the ticker
(every 500 ms). The table puts both runs side by side.

    python -m benchmarks.slash_load [--postgres URL] [--quick] [--compare REV] [--repeat N]

``--compare main`` runs the same on a server of another revision and prints its figures beside
this tree's; with ``--repeat N`` the two alternate N times and each cell is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
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
#: Slash commands a second, sent on schedule for the whole run; more than a team ever types.
RATE = 8
#: Seconds each run (alone, then under load) sends commands for.
SECONDS, QUICK_SECONDS = 60, 20
OTLP_CONCURRENCY = 8
#: Deploy webhooks sent at once, none waiting between requests: a monorepo's burst.
WEBHOOK_CONCURRENCY = 50
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


async def _slash(url: str, seconds: float, response_url: str) -> list[float]:
    """Send ``RATE`` slash commands a second for ``seconds``, each on schedule; their ack
    latencies (s)."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def command(i: int) -> None:
            body, headers = slash_request(i, response_url)
            started = time.perf_counter()
            answer = await client.post("/slack/events", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"slash command: {answer.status_code} {answer.text[:200]}")

        start = time.perf_counter()
        sent = []
        for i in range(round(seconds * RATE)):
            await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
            sent.append(asyncio.create_task(command(i)))
        await asyncio.gather(*sent)
    return latencies


Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def _background(url: str, seconds: float, *, webhooks: int, exporters: int) -> dict[str, int]:
    """OTLP ingest and deploy webhooks for ``seconds``; how many of each were accepted."""
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
        return answer

    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def loop(send: Send, worker: int) -> None:
            i = worker * 1_000_000
            while time.perf_counter() < deadline:
                answer = await send(client, i)
                if answer.status_code not in (200, 202):
                    raise RuntimeError(f"background: {answer.status_code} {answer.text[:200]}")
                i += 1

        workers = [loop(ingest, w) for w in range(exporters)]
        workers += [loop(deploy, exporters + w) for w in range(webhooks)]
        await asyncio.gather(*workers)
    return counts


def _background_process(url: str, seconds: float, webhooks: int, exporters: int) -> dict[str, int]:
    return asyncio.run(_background(url, seconds, webhooks=webhooks, exporters=exporters))


async def _loaded(
    url: str, seconds: float, response_url: str
) -> tuple[list[float], dict[str, int]]:
    """Slash commands while the background load runs in another process (so the time this
    process spends sending it is not counted in the acks)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        background = asyncio.wrap_future(
            pool.submit(
                _background_process, url, seconds + 3, WEBHOOK_CONCURRENCY, OTLP_CONCURRENCY
            )
        )
        await asyncio.sleep(3)  # the load is on and the first checks come due
        latencies = await _slash(url, seconds, response_url)
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
) -> tuple[list[Row], dict[str, float]]:
    """Ack latency of slash commands at ``RATE`` a second, without and with background load.

    Args:
        postgres_admin: the URL of a PostgreSQL database allowed to CREATE DATABASE.
        quick: 20 seconds a run instead of 60 (160 commands instead of 480).
        tree: serve the feedbot of this source tree (:mod:`benchmarks._revision`); this one's
            when None.

    Returns:
        (figure, quiet, loaded, unit) rows, and what the background load got done a second.
    """
    seconds = QUICK_SECONDS if quick else SECONDS
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
            asyncio.run(_slash(server.url, 1, response_url))  # warm-up: pools, imports
            quiet = asyncio.run(_slash(server.url, seconds, response_url))
            loaded, done = asyncio.run(_loaded(server.url, seconds, response_url))
        finally:
            server.stop()
    rows = [
        (f"p{round(q * 100)} ack", _p(quiet, q), _p(loaded, q), "ms") for q in (0.5, 0.95, 0.99)
    ]
    rows.append(("max ack", max(quiet) * 1e3, max(loaded) * 1e3, "ms"))
    rates = {"commands": float(len(loaded)), **{k: v / (seconds + 3) for k, v in done.items()}}
    return rows, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision")
    parser.add_argument("--repeat", type=int, default=1, help="alternate runs; cells are medians")
    args = parser.parse_args()
    runs: dict[str, list[tuple[list[Row], dict[str, float]]]] = {}
    with contextlib.ExitStack() as stack:
        trees: dict[str, Path | None] = {}
        if args.compare:
            trees[f"{args.compare} ({label(args.compare)})"] = stack.enter_context(
                checkout(args.compare)
            )
        trees["this tree"] = None
        for _ in range(args.repeat):
            for name, tree in trees.items():
                runs.setdefault(name, []).append(run(args.postgres, quick=args.quick, tree=tree))
    medians = f" (medians of {args.repeat} alternating runs)" if args.repeat > 1 else ""
    print(f"/feedback <service> at {RATE}/s, ack latency in ms{medians}")
    heads = [f"{name[:14]} {kind}" for name in runs for kind in ("alone", "loaded")]
    print(f"{'':<10}" + "".join(f"{h:>24}" for h in heads))
    first = next(iter(runs.values()))[0][0]
    for i, (figure, *_) in enumerate(first):
        cells = [
            statistics.median(rows[i][column] for rows, _ in repeats)
            for repeats in runs.values()
            for column in (1, 2)
        ]
        print(f"{figure:<10}" + "".join(f"{c:>24.1f}" for c in cells))
    for name, repeats in runs.items():
        done = {k: statistics.median(rates[k] for _, rates in repeats) for k in repeats[0][1]}
        print(f"[{name}] during the loaded run: {done['commands']:.0f} commands, "
              f"{done['spans']:,.0f} spans/s ingested, {done['deploys']:.1f} deploys/s "
              "registered (their checks ran on the ticker)")  # fmt: skip
    print("target: p99 under load < 300 ms")


if __name__ == "__main__":
    main()
