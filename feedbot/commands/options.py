"""What several commands share: the ``--config`` option and reading the settings it names."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from feedbot import logs
from feedbot.config import Settings, load_settings

CONFIG_ENV = "FEEDBOT_CONFIG"


def add_config(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """Add ``--config CFG`` (default ``$FEEDBOT_CONFIG``, else the embedded defaults)."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="CFG",
        default=os.environ.get(CONFIG_ENV) or None,
        help=help or f"config file (default: ${CONFIG_ENV}, else embedded defaults)",
    )


def settings_of(args: argparse.Namespace) -> Settings:
    """The validated settings of ``--config``, with secrets masked in every log record after.

    Raises:
        ConfigError: the file is wrong (``main`` prints each problem and exits 2).
    """
    settings = load_settings(args.config)
    logs.install(settings)
    return settings
