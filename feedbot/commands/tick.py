"""``feedbot tick``: run due checks and send due messages once, then exit (for cron jobs)."""

from __future__ import annotations

import argparse

from feedbot.commands.options import add_config, settings_of
from feedbot.runtime import build_runtime
from feedbot.store import db


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``feedbot tick``."""
    add_config(parser)


def run(args: argparse.Namespace) -> int:
    """One pass of the ticker, as ``feedbot serve`` runs it every ``checks.tick``."""
    runtime = build_runtime(settings_of(args))
    try:
        db.migrate(runtime.engine)
        runtime.tick()
    finally:
        runtime.close()
    return 0
