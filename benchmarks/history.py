"""``/feedback <function | file | route>`` answer time from a year of code history.

A scratch SQLite file and PostgreSQL database are filled with what a year of daily checks of
``--services`` services leaves in the code history (:mod:`feedbot.store.history`): one release
a day per service in production and one a week in staging, each release's row per operation,
function and file (10 + 10 + 4 keys a service), a change per release naming two functions, a
finished check per release. Then the real :class:`feedbot.slack.feedback.FeedbackService`
answers, end to end from its own session to the rendered blocks (what the slash command's lazy
listener does after the acknowledgement), for:

- a qualified function name (one key),
- a file path, a route (``GET /…``, the operation's key),
- a short method name that every service has (``save``: told for the 5 most recently seen keys),
- an unknown name (the closest names from the whole catalogue).

The target is 300 ms, well inside Slack's 3 s for the answer to follow the acknowledgement.

    python -m benchmarks.history [--postgres URL] [--services 200] [--days 365] [--repeat 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from benchmarks._db import scratch_databases
from feedbot.clock import FixedClock
from feedbot.config import settings_from_mapping
from feedbot.slack.feedback import FeedbackService, parse
from feedbot.spans.footprint import short_name
from feedbot.store.db import make_engine, make_sessions
from feedbot.store.models import Change, Check, CodeHistory, CodeKey, Release

TARGET_MS = 300.0
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
METHODS = (
    "save",
    "load",
    "appraise",
    "charge",
    "refund",
    "search",
    "render",
    "notify",
    "sync",
    "sign",
)
CLASSES = ("Vaults", "Ledger", "Invoices", "Accounts", "Sessions")
ROUTES = ("GET /items/{id}", "POST /items", "GET /search", "PUT /items/{id}", "DELETE /items/{id}")
STATEMENTS = ("SELECT items", "INSERT items", "UPDATE items", "SELECT accounts", "redis GET")


def keys_of(service: str) -> list[tuple[str, str, str | None]]:
    """(kind, name, file) of one service's 24 keys."""
    module = service.replace("-", "_")
    functions = [
        (f"{module}.{CLASSES[i % 5]}.{METHODS[i]}", f"{module}/{CLASSES[i % 5].lower()}.py")
        for i in range(10)
    ]
    out: list[tuple[str, str, str | None]] = [("operation", r, None) for r in ROUTES]
    out += [("operation", s, None) for s in STATEMENTS]
    out += [("function", name, path) for name, path in functions]
    out += [("file", path, None) for path in sorted({p for _, p in functions})]
    return out


def fill(url: str, services: int, days: int) -> int:
    """A year of history for ``services`` services; returns the history rows written."""
    engine = make_engine(url)
    rng = random.Random(7)
    rows_written = 0
    release_id = key_id = check_id = change_id = history_id = 0
    start = NOW - timedelta(days=days)
    with engine.begin() as connection:
        for s in range(services):
            service = f"svc-{s:03d}"
            keys = keys_of(service)
            key_rows = []
            for kind, name, path in keys:
                key_id += 1
                key_rows.append(
                    {"id": key_id, "service": service, "kind": kind, "name": name,
                     "short": short_name(kind, name), "file": path,
                     "first_seen": start, "last_seen": NOW}
                )  # fmt: skip
            connection.execute(insert(CodeKey), key_rows)
            first_key = key_id - len(keys) + 1
            base = {k: rng.uniform(50, 5000) for k in range(len(keys))}
            releases, checks, changes, history = [], [], [], []
            for day in range(days):
                at = start + timedelta(days=day, hours=10)
                envs = ["production"] + (["staging"] if day % 7 == 0 else [])
                for env in envs:
                    release_id += 1
                    releases.append(
                        {"id": release_id, "service": service, "version": f"{day}.{env[0]}",
                         "environment": env, "commit": f"{day:040x}", "source": "generic",
                         "deployed_at": at, "received_at": at, "state": "done",
                         "features": [], "is_rollback": False}
                    )  # fmt: skip
                    check_id += 1
                    checks.append(
                        {"id": check_id, "release_id": release_id, "offset_seconds": 86_400,
                         "due_at": at + timedelta(days=1), "state": "done", "attempts": 0,
                         "result": {"report": {"verdict": rng.choice(["neutral", "regressed"])}}}
                    )  # fmt: skip
                    change_id += 1
                    touched = rng.sample(range(10), 2)
                    fns = [keys[10 + t][1] for t in touched]
                    path = keys[10 + touched[0]][2]
                    changes.append(
                        {"id": change_id, "release_id": release_id, "file": path,
                         "functions": fns, "lines": [], "traced": []}
                    )  # fmt: skip
                    staged = env == "staging"
                    for k in range(len(keys)):
                        if staged and k % 2:
                            continue  # half the code never runs in staging
                        calls = int(base[k] * rng.uniform(0.8, 1.2) / (20 if staged else 1))
                        history_id += 1
                        history.append(
                            {"id": history_id, "key_id": first_key + k, "release_id": release_id,
                             "environment": env, "version": f"{day}", "at": at + timedelta(days=1),
                             "seconds": 86_400.0, "calls": calls,
                             "errors": int(calls * rng.uniform(0, 0.02)),
                             "p50_ms": rng.uniform(5, 50), "p95_ms": rng.uniform(60, 400),
                             "callers": [[ROUTES[k % 5], calls]],
                             "exceptions": [["KeyError", 3]] if k % 3 == 0 else [],
                             "insights": ["latency_regression"] if day % 30 == 0 else []}
                        )  # fmt: skip
            connection.execute(insert(Release), releases)
            connection.execute(insert(Check), checks)
            connection.execute(insert(Change), changes)
            connection.execute(insert(CodeHistory), history)
            rows_written += len(history)
    if url.startswith("postgresql"):  # what autovacuum does to a table this size soon enough
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return rows_written


def measure(url: str, services: int, repeat: int) -> dict[str, list[float]]:
    """Answer times (ms) per kind of question."""
    engine = make_engine(url)
    settings = settings_from_mapping({"database_url": url}, {})
    feedback = FeedbackService(
        sessions=make_sessions(engine), settings=settings, clock=FixedClock(NOW)
    )
    rng = random.Random(11)

    def service() -> str:
        return f"svc-{rng.randrange(services):03d}"

    asks: dict[str, Callable[[], str]] = {
        "qualified function": lambda: keys_of(service())[10 + rng.randrange(10)][1],
        "file path": lambda: keys_of(service())[20][1],
        "route": lambda: ROUTES[rng.randrange(5)],
        "short method (every service)": lambda: METHODS[rng.randrange(10)],
        "unknown name": lambda: f"{service().replace('-', '_')}.Vaults.sav",
    }
    times: dict[str, list[float]] = {}
    for label, ask in asks.items():
        feedback.reply(parse(ask()))  # warm the pool and caches once
        samples = []
        for _ in range(repeat):
            text = ask()
            started = time.perf_counter()
            rendered, known = feedback.reply(parse(text))
            samples.append((time.perf_counter() - started) * 1000)
            assert rendered.blocks and (known == (label != "unknown name")), (label, text)
        times[label] = samples
    engine.dispose()
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="admin URL of a PostgreSQL server (a scratch database is created and dropped)",
    )
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, list[float]]] = {}
    with scratch_databases(args.postgres) as urls:
        for name, url in urls.items():
            started = time.perf_counter()
            rows = fill(url, args.services, args.days)
            took = time.perf_counter() - started
            print(f"{name}: {rows:,} history rows for {args.services} services × "
                  f"{args.days} days, filled in {took:.0f} s")  # fmt: skip
            results[name] = measure(url, args.services, args.repeat)
    labels = list(next(iter(results.values())))
    print(f"\n/feedback answer time from the code history, ms (n = {args.repeat} each; "
          f"target < {TARGET_MS:.0f} ms)")  # fmt: skip
    head = f"{'question':<30}" + "".join(f"{db + ' p50':>16}{db + ' p95':>16}" for db in results)
    print(head)
    for label in labels:
        cells = "".join(
            f"{statistics.median(r[label]):>16.1f}{_pct(r[label], 0.95):>16.1f}"
            for r in results.values()
        )
        print(f"{label:<30}{cells}")
    worst = max(_pct(r[label], 0.95) for r in results.values() for label in labels)
    print(f"\nworst p95: {worst:.1f} ms ({'within' if worst < TARGET_MS else 'OVER'} target)")


if __name__ == "__main__":
    main()
