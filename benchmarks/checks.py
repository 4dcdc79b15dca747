"""Claiming due checks when many are pending: how long one claim of 10 takes."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from benchmarks._db import scratch_databases
from feedbot.store import queries
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Check, Release

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def _seed(url: str, pending: int) -> None:
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            insert(Release),
            [
                {
                    "id": 1,
                    "service": "svc",
                    "version": "1",
                    "environment": "production",
                    "commit": "",
                    "source": "bench",
                    "deployed_at": NOW,
                    "received_at": NOW,
                    "state": "active",
                    "features": [],
                    "is_rollback": False,
                }
            ],
        )
        c.execute(
            insert(Check),
            [
                {
                    "release_id": 1,
                    "offset_seconds": i,
                    "due_at": NOW - timedelta(seconds=i),
                    "state": "pending",
                    "attempts": 0,
                }
                for i in range(pending)
            ],
        )
    engine.dispose()


def _claim_latency(url: str, rounds: int) -> float:
    engine = make_engine(url)
    sessions = make_sessions(engine)
    samples = []
    for _ in range(rounds):
        with sessions() as session:
            t0 = time.perf_counter()
            claimed = queries.claim_due_checks(
                session, now=NOW, worker="bench", lease=timedelta(minutes=5), limit=10
            )
            samples.append(time.perf_counter() - t0)
            assert len(claimed) == 10
    engine.dispose()
    return statistics.median(samples) * 1e3


def run(postgres_admin: str, *, quick: bool = False) -> list[tuple[str, float, str]]:
    pending = 1_000 if quick else 10_000
    rows = []
    with scratch_databases(postgres_admin) as urls:
        for kind, url in urls.items():
            _seed(url, pending)
            rows.append(
                (f"claim 10 of {pending} due checks ({kind}) median", _claim_latency(url, 50), "ms")
            )
    return rows
