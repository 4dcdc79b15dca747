"""``feedbot migrate``: bring the database's schema up to date, then exit."""

from __future__ import annotations

import argparse
import sys

from feedbot.commands.options import add_config, settings_of
from feedbot.store import db


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``feedbot migrate``."""
    add_config(parser)


def run(args: argparse.Namespace) -> int:
    """Migrate the configured database."""
    engine = db.make_engine(settings_of(args).database_url)
    try:
        db.migrate(engine)
        where = engine.url.render_as_string(hide_password=True)
        sys.stdout.write(f"database at {where} is up to date\n")
    finally:
        engine.dispose()
    return 0
