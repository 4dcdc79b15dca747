"""SQL statements, commits and connection checkouts per deploy webhook, on SQLite and PostgreSQL.

Deterministic where timing on a shared machine is not: each webhook goes through the real app
in-process (FastAPI's ASGI app, httpx's ASGI transport) and SQLAlchemy's
``before_cursor_execute`` event counts what reaches the database. Three kinds of request, one at a
time: a new release that supersedes an active one (the common case), the same deploy again
(idempotent: nothing new), and a first release of a new service; then a burst of new releases
sent at once (50 senders, as ``benchmarks.load`` sends them), where the deploys waiting together
share a transaction.

    python -m benchmarks.statements [--postgres URL] [--compare REV] [--verbose]

``--compare main`` runs the same counts on another revision (``git archive`` of it, in a child
process) and prints them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Counts = dict[str, dict[str, float]]

SECRET = "statements-bench"
WARMUP = 30  # releases registered first, so the measured ones have history to look at
BURST = 50  # deploys sent at once: the web app registers those waiting together in one commit


def _body(n: int, service: str) -> bytes:
    return json.dumps({"service": service, "version": f"1.{n}", "commit": f"{n:040x}"}).encode()


def measure(postgres_admin: str, *, verbose: bool = False) -> Counts:
    """Statements, commits and checkouts per request kind and database (the current imports)."""
    from benchmarks._db import scratch_databases

    out: Counts = {}
    with scratch_databases(postgres_admin) as urls, open(os.devnull, "w") as sink:
        for kind, url in urls.items():
            out.update(_one_database(kind, url, sink, verbose=verbose))
    return out


def _one_database(kind: str, url: str, sink: Any, *, verbose: bool) -> Counts:
    import httpx
    from sqlalchemy import event

    from feedbot.config import settings_from_mapping
    from feedbot.notify.console import ConsoleNotifier
    from feedbot.runtime import build_runtime
    from feedbot.web.app import create_app
    from tests.factories import sign

    out: Counts = {}
    raw = {"database_url": url, "webhooks": {"secret": SECRET}}
    runtime = build_runtime(settings_from_mapping(raw, {}), notifier=ConsoleNotifier(sink))
    app = create_app(runtime)
    seen: list[str] = []
    tally = {"statements": 0, "commits": 0, "checkouts": 0}

    def statement(_c: Any, _cur: Any, sql: str, *_: Any) -> None:
        tally["statements"] += 1
        seen.append(" ".join(sql.split())[:100])

    def commit(_c: Any) -> None:
        tally["commits"] += 1

    def checkout(*_: Any) -> None:
        tally["checkouts"] += 1

    event.listen(runtime.engine, "before_cursor_execute", statement)
    event.listen(runtime.engine, "commit", commit)
    event.listen(runtime.engine.pool, "checkout", checkout)

    async def post(bodies: list[bytes], *, together: bool = False) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:

            async def one(body: bytes) -> None:
                headers = {"X-Feedbot-Signature": sign(body, SECRET)}
                answer = await client.post("/webhooks/deploy", content=body, headers=headers)
                if answer.status_code != 202:
                    raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")

            if together:
                await asyncio.gather(*(one(body) for body in bodies))
            for body in [] if together else bodies:
                await one(body)

    def count(name: str, bodies: list[bytes], *, together: bool = False) -> None:
        for key in tally:
            tally[key] = 0
        seen.clear()
        asyncio.run(post(bodies, together=together))
        out[f"{name} ({kind})"] = {k: v / len(bodies) for k, v in tally.items()}
        if verbose:
            print(f"# {name} ({kind}): last request's statements", file=sys.stderr)
            per = len(seen) // len(bodies)
            for sql in seen[len(seen) - per :]:
                print(f"#   {sql}", file=sys.stderr)

    asyncio.run(post([_body(n, f"svc-{n % 5}") for n in range(WARMUP)]))
    count(
        "new release, supersedes one",
        [_body(n, f"svc-{n % 5}") for n in range(WARMUP, WARMUP + 20)],
    )
    count("same deploy again", [_body(n, f"svc-{n % 5}") for n in range(WARMUP, WARMUP + 20)])
    count("first release of a service", [_body(n, f"new-{n}") for n in range(20)])
    count(
        f"{BURST} new releases at once, 5 services",
        [_body(n, f"svc-{n % 5}") for n in range(WARMUP + 20, WARMUP + 20 + BURST)],
        together=True,
    )
    runtime.engine.dispose()
    return out


def _measure_in(tree: Path, postgres_admin: str) -> Counts:
    """:func:`measure` in a child process that imports feedbot from ``tree``."""
    from benchmarks._revision import environment

    code = (
        "import json, runpy, sys\n"
        f"m = runpy.run_path({str(Path(__file__))!r})\n"
        f"print(json.dumps(m['measure']({postgres_admin!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environment(tree),
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def table(columns: dict[str, Counts]) -> list[str]:
    """Rows of ``request (database) | figure | one column per revision``."""
    names = list(columns)
    first = columns[names[0]]
    width = max(len(k) for k in first) + 2
    lines = [
        f"{'request (database)':<{width}}{'per request':<14}" + "".join(f"{n:>14}" for n in names)
    ]
    fmt: Callable[[float], str] = lambda v: f"{v:>14.2f}"  # noqa: E731
    for request in first:
        for figure in first[request]:
            cells = "".join(
                fmt(columns[n].get(request, {}).get(figure, float("nan"))) for n in names
            )
            lines.append(f"{request:<{width}}{figure:<14}{cells}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--compare", metavar="REV", help="also count on this git revision")
    parser.add_argument("--verbose", action="store_true", help="list the statements (stderr)")
    args = parser.parse_args()
    columns: dict[str, Counts] = {}
    if args.compare:
        from benchmarks._revision import checkout, label

        with checkout(args.compare) as tree:
            columns[f"{args.compare} ({label(args.compare)})"] = _measure_in(tree, args.postgres)
    columns["this tree"] = measure(args.postgres, verbose=args.verbose)
    for line in table(columns):
        print(line)


if __name__ == "__main__":
    main()
