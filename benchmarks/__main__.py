"""Run every benchmark and print one table (medians over repeats, measured side by side)."""

from __future__ import annotations

import argparse

from benchmarks import backends, checks, false_alarms, ingest, sending, webhooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="admin URL of a PostgreSQL server (a scratch database is created and dropped)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    args = parser.parse_args()
    rows = webhooks.run(args.postgres, quick=args.quick)
    rows += checks.run(args.postgres, quick=args.quick)
    rows += sending.run(args.postgres, quick=args.quick)
    rows += ingest.run(args.postgres, quick=args.quick)
    rows += backends.run(args.postgres, quick=args.quick)
    rows += false_alarms.run(args.postgres, quick=args.quick)
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'figure':>12}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>12.1f}  {unit}")


main()
