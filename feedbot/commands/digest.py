"""``feedbot digest [--dry-run]``: queue and send this week's channel digests now, or print them.

The week is the one of the latest ``slack.weekly_digest.cron`` fire time, so a manual run and
the cron job of ``feedbot serve`` (:mod:`feedbot.checks.digests`) share one period: whichever
comes first sends it, the other finds it already queued.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from feedbot.checks.digests import WeeklyDigests, last_fire
from feedbot.commands.options import add_config, settings_of
from feedbot.digest.plain import blocks_text
from feedbot.runtime import Runtime, build_runtime
from feedbot.store import db


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``feedbot digest``."""
    add_config(parser)
    # The only mode; accepted so the scripts written for it keep working.
    parser.add_argument("--weekly", action="store_true", help="the weekly digest (the default)")
    parser.add_argument("--dry-run", action="store_true", help="print it; send and record nothing")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Queue and send this week's digests (or print them with ``--dry-run``)."""
    runtime = build_runtime(settings_of(args))
    try:
        return _run(runtime, dry_run=args.dry_run, out=out or sys.stdout)
    finally:
        runtime.close()


def _run(runtime: Runtime, *, dry_run: bool, out: TextIO) -> int:
    db.migrate(runtime.engine)
    digests = WeeklyDigests(
        sessions=runtime.sessions, settings=runtime.settings, clock=runtime.clock
    )
    now = runtime.clock.now()
    if dry_run:
        for channel, messages in digests.build(now).items():
            text = "\n".join(blocks_text(m.blocks, m.text) for m in messages)
            out.write(f"=== {channel} ===\n{text}\n")
        return 0
    queued = digests.queue(last_fire(runtime.settings, now) or now)
    runtime.sender.send_due()
    out.write(f"{queued} digest(s) queued and sent\n")
    return 0
