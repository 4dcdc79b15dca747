"""``feedbot check-config FILE``: validate a config file and say what it sets up.

Problems are printed one per line as ``path.to.key: problem`` and the exit status is 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from feedbot.config import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``feedbot check-config``."""
    parser.add_argument("path", type=Path, metavar="FILE", help="the YAML config file to check")


def run(args: argparse.Namespace) -> int:
    """Validate ``FILE``; 0 when it is valid (``ConfigError`` otherwise, printed by ``main``)."""
    settings = load_settings(args.path)
    sys.stdout.write(
        f"{args.path}: ok (database {settings.database_url.split(':', 1)[0]}, "
        f"traces {settings.traces.backend}, "
        f"{'slack' if settings.slack.bot_token else 'console'} output, "
        f"{len(settings.services)} services, {len(settings.features)} features)\n"
    )
    return 0
