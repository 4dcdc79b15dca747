"""The outbox drained by one and by three concurrent senders: database work per sent message.

The store is seeded with releases shaped like a release with four checks: a thread head
(``parent``), then, check by check, a reply and a status update of every release (a reply
comes minutes after its deploy, so all thread heads are older). Everything is due. On SQLite
and PostgreSQL, 1 and then 3 senders (threads, each an
:class:`~feedbot.notify.outbox.OutboxSender` with its own worker name, as replicas have) run
rounds of ``send_due()`` until every message is out, through a notifier that answers after a
fixed latency (a fast Slack API call). A round that sends nothing waits 10 ms, a short tick.

Figures per database and number of senders:

- *SQL statements per sent message*, counted with SQLAlchemy's ``before_cursor_execute`` event,
  claims, empty rounds and thread-head look-ups included;
- *lost claims per 100 sent*: a sender went for a message another sender had already taken,
  a wasted round trip (before: every replica read the same 50 oldest rows and raced for each);
- *waiting per 100 sent*: a reply reached before its thread head was out (it is not attempted
  and burns no attempt, but it was read);
- *throughput*: messages per second, wall clock, the notifier's latency included.

Every message must reach the notifier exactly once, or the benchmark fails.

    python -m benchmarks.sending [--postgres URL] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from benchmarks._db import scratch_databases
from benchmarks.checks import _counting
from feedbot.clock import FixedClock
from feedbot.notify.base import Message, Receipt
from feedbot.notify.outbox import OutboxSender, SendReport
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Delivery, Release

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
CHECKS = 4
#: Seconds a notifier call takes.
LATENCY = 0.002
Row = tuple[str, float, str]


class SlowNotifier:
    """Answers every call after :data:`LATENCY`; counts what it was given, by key."""

    name = "bench"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._ts = itertools.count(1)
        self._lock = threading.Lock()

    def post(self, message: Message) -> Receipt:
        time.sleep(LATENCY)
        with self._lock:
            self.calls.append(message.key)
            return Receipt(channel="C1", ts=f"{next(self._ts)}.0")

    def update(self, receipt: Receipt, message: Message) -> None:
        time.sleep(LATENCY)
        with self._lock:
            self.calls.append(message.key)

    def find(self, message: Message) -> Receipt | None:
        return None

    def lookup_user(self, email: str) -> str | None:
        return None


def _seed(url: str, releases: int) -> int:
    """Insert ``releases`` threads of ``1 + 2 * CHECKS`` due messages; returns how many."""
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
    message = {
        "recipient": "C1",
        "text": "t",
        "blocks": [],
        "broadcast": False,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    heads = [{"release_id": r + 1, "key": f"{r}:parent", "kind": "parent"} for r in range(releases)]
    rest = [
        {"release_id": r + 1, "key": f"{r}:{check}:{kind}", "kind": kind}
        for check in range(CHECKS)
        for r in range(releases)
        for kind in ("reply", "status")
    ]
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(
            insert(Release),
            [{"id": r + 1, "service": f"svc-{r}", **release} for r in range(releases)],
        )
        c.execute(insert(Delivery), [{**message, **row} for row in heads + rest])
    engine.dispose()
    return len(heads) + len(rest)


def _counted(sender: OutboxSender, lost: list[int]) -> None:
    """Count the deliveries ``sender`` went for and found taken by another sender."""
    send_one: Callable[..., str | None] = sender._send_one
    lock = threading.Lock()

    def counted(*args: object) -> str | None:
        outcome = send_one(*args)
        if outcome is None:
            with lock:
                lost[0] += 1
        return outcome

    setattr(sender, "_send_one", counted)  # noqa: B010  (an instance attribute, on purpose)


def _drain(url: str, senders: int, total: int) -> list[Row]:
    engine = make_engine(url)
    sessions = make_sessions(engine)
    watch = make_engine(url)  # the "all sent?" polls are not the senders' statements
    notifier = SlowNotifier()
    lost, waiting = [0], [0]
    outboxes = []
    for n in range(senders):
        outbox = OutboxSender(
            sessions=sessions, notifier=notifier, clock=FixedClock(NOW), worker=f"bench-{n}"
        )
        _counted(outbox, lost)
        outboxes.append(outbox)
    start, lock = threading.Barrier(senders), threading.Lock()

    def pending() -> int:
        with watch.connect() as c:
            return int(c.scalar(select(func.count()).where(Delivery.state == "pending")) or 0)

    def run(outbox: OutboxSender) -> None:
        start.wait()
        while True:
            report: SendReport = outbox.send_due()
            with lock:
                waiting[0] += report.waiting
            if report.sent == 0:
                if pending() == 0:
                    return
                time.sleep(0.01)

    with _counting(engine) as statements:
        started = time.perf_counter()
        with ThreadPoolExecutor(senders) as pool:
            list(pool.map(run, outboxes))
        elapsed = time.perf_counter() - started
    engine.dispose()
    watch.dispose()
    if sorted(notifier.calls) != sorted(set(notifier.calls)) or len(notifier.calls) != total:
        raise AssertionError(f"{len(notifier.calls)} notifier calls for {total} messages")
    return [
        ("SQL statements per sent message", statements[0] / total, "stmts"),
        ("lost claims per 100 sent", 100 * lost[0] / total, "claims"),
        ("waiting per 100 sent", 100 * waiting[0] / total, "reads"),
        ("throughput", total / elapsed, "msgs/s"),
    ]


def run(postgres_admin: str, *, quick: bool = False) -> list[Row]:
    """Statements, lost claims and throughput draining the outbox with 1 and 3 senders.

    Args:
        postgres_admin: the URL of a PostgreSQL database allowed to CREATE DATABASE.
        quick: 20 releases (180 messages) instead of 100 (900).

    Returns:
        (benchmark, figure, unit) rows.
    """
    releases = 20 if quick else 100
    rows = []
    for senders in (1, 3):
        with scratch_databases(postgres_admin) as urls:
            for kind, url in urls.items():
                total = _seed(url, releases)
                label = f"{total} due messages, {senders} sender(s) ({kind})"
                rows += [(f"{name}, {label}", v, u) for name, v, u in _drain(url, senders, total)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for name, value, unit in run(args.postgres, quick=args.quick):
        print(f"{name:<72} {value:>10.1f} {unit}")


if __name__ == "__main__":
    main()
