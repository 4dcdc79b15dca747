"""The scheduler with 10,000 pending checks: claim latency, run latency and database load.

The store is seeded with 2,500 releases of four checks each, all due. Then, on SQLite and
PostgreSQL:

- *claim*: one claim of 10 due checks (``queries.claim_due_checks``), median over 50 claims;
- *run*: checks claimed and run to ``done`` by a :class:`~feedbot.checks.runner.CheckRunner`
  whose trace backend answers at once with no spans, so the figure is feedbot's own cost per check
  (read the release, analyse, render, queue the reply and status, record), median and p99 per
  check, and
  the throughput of one replica's ticker draining the backlog;
- *database load*: SQL statements sent per claim of 10 and per check run to its end, counted
  with SQLAlchemy's ``before_cursor_execute`` event (pg_stat_statements needs a server restart
  to load, which a benchmark should not do).

A due check waits for the next tick (``checks.tick``, 5 s by default) and then for the checks
queued before it, so the time from due to done is at most the tick plus its queue position
divided by the throughput.

    python -m benchmarks.checks [--postgres URL] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, event, insert

from benchmarks._db import scratch_databases
from feedbot.checks.runner import CheckRunner
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.store import queries
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Check, Release

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
CHECKS_PER_RELEASE = 4
Row = tuple[str, float, str]


class NoSpans:
    """A trace backend that answers at once with nothing: the check's cost is feedbot's own."""

    name = "bench"

    def collect(self, query: SpanQuery) -> ReleaseData:
        return ReleaseData(groups=[])


def _seed(url: str, pending: int) -> None:
    releases = pending // CHECKS_PER_RELEASE
    release = {
        "version": "1",
        "environment": "production",
        "commit": "",
        "source": "bench",
        "deployed_at": NOW - timedelta(hours=1),
        "received_at": NOW - timedelta(hours=1),
        "state": "active",
        "features": [],
        "is_rollback": False,
    }
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            insert(Release),
            [{"id": r + 1, "service": f"svc-{r}", **release} for r in range(releases)],
        )
        c.execute(
            insert(Check),
            [
                {
                    "release_id": r + 1,
                    "offset_seconds": 60 * (k + 1),
                    "due_at": NOW - timedelta(seconds=r * CHECKS_PER_RELEASE + k),
                    "state": "pending",
                    "attempts": 0,
                }
                for r in range(releases)
                for k in range(CHECKS_PER_RELEASE)
            ],
        )
    engine.dispose()


@contextmanager
def _counting(engine: Engine) -> Iterator[list[int]]:
    """Count the statements ``engine`` sends while the block runs; yields a one-item list."""
    count = [0]

    def on_execute(*_args: object) -> None:
        count[0] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


def _claims(url: str, rounds: int) -> list[Row]:
    engine = make_engine(url)
    sessions = make_sessions(engine)
    samples = []
    with _counting(engine) as statements:
        for _ in range(rounds):
            with sessions() as session:
                t0 = time.perf_counter()
                claimed = queries.claim_due_checks(
                    session, now=NOW, worker="bench", lease=timedelta(minutes=5), limit=10
                )
                samples.append(time.perf_counter() - t0)
                assert len(claimed) == 10
    engine.dispose()
    return [
        ("claim median", statistics.median(samples) * 1e3, "ms"),
        ("claim: SQL statements per claim of 10", statements[0] / rounds, "stmts"),
    ]


def _runs(url: str, checks: int) -> list[Row]:
    """Run ``checks`` due checks the way one replica's tick does (claims of 10, then each)."""
    engine = make_engine(url)
    sessions = make_sessions(engine)
    settings = settings_from_mapping({"database_url": url})
    runner = CheckRunner(
        sessions=sessions,
        backend=NoSpans(),
        settings=settings,
        clock=FixedClock(NOW),
        worker="bench-runner",
    )
    samples: list[float] = []
    with _counting(engine) as statements:
        started = time.perf_counter()
        while len(samples) < checks:
            with sessions() as session:
                ids = queries.claim_due_checks(
                    session, now=NOW, worker="bench-runner", lease=timedelta(minutes=5)
                )
            for check_id in ids:
                t0 = time.perf_counter()
                runner.run_one(check_id)
                samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    engine.dispose()
    ordered = sorted(samples)
    return [
        ("run median", statistics.median(samples) * 1e3, "ms"),
        ("run p99", ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1e3, "ms"),
        ("run: one replica drains", len(samples) / elapsed, "checks/s"),
        ("run: SQL statements per check (claim share included)", statements[0] / checks, "stmts"),
    ]


def run(postgres_admin: str, *, quick: bool = False) -> list[Row]:
    """Claim and run latency and statements per operation, on SQLite and PostgreSQL.

    Args:
        postgres_admin: the URL of a PostgreSQL database allowed to CREATE DATABASE.
        quick: 1,000 pending checks and 50 runs instead of 10,000 and 300.

    Returns:
        (benchmark, figure, unit) rows.
    """
    pending, runs = (1_000, 50) if quick else (10_000, 300)
    rows = []
    with scratch_databases(postgres_admin) as urls:
        for kind, url in urls.items():
            _seed(url, pending)
            label = f"{pending} due checks ({kind})"
            rows += [(f"{name}, {label}", v, u) for name, v, u in _claims(url, 50)]
            rows += [(f"{name}, {label}", v, u) for name, v, u in _runs(url, runs)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for name, value, unit in run(args.postgres, quick=args.quick):
        print(f"{name:<84} {value:>10.1f} {unit}")


if __name__ == "__main__":
    main()
