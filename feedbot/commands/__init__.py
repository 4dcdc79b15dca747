"""The ``feedbot`` command line: one thin module per command, and :func:`main` to dispatch.

Each command module has ``HELP`` (its one line in ``feedbot --help``), ``add_arguments(parser)``
and ``run(args) -> int``. Only the command that runs is imported, so ``feedbot tick`` and
``feedbot digest`` never import FastAPI. Commands build what they need with
:func:`feedbot.runtime.build_runtime`, the one composition root.

Exit status 2 means the usage or the configuration is wrong; each configuration problem is
printed as a ``path.to.key: problem`` line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from feedbot import __version__
from feedbot.errors import ConfigError

#: name → (module, its one line in ``feedbot --help``), in the order a newcomer meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "watch feedbot on the example app's deploy, end to end"),
    "serve": ("serve", "run the server: webhooks, Slack, traces, the scheduler"),
    "notify-deploy": ("notify_deploy", "register a deploy from CI: its commits, signed"),
    "preview": ("preview", "before a deploy: the changed functions' production footprint"),
    "report": ("report", "analyse one release from a trace store or OTLP files"),
    "feedback": ("feedback", "print the /feedback answer from the database"),
    "digest": ("digest", "send this week's channel digests now (or print them)"),
    "tick": ("tick", "run due checks and send due messages once, then exit"),
    "migrate": ("migrate", "apply the database migrations and exit"),
    "check-config": ("check_config", "validate a config file: each problem as key: problem"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(_chosen(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=os.environ.get("FEEDBOT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler logs every tick at INFO; feedbot logs what the ticks do.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO on every start; its upgrades stay visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        return 2


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not an option), if it is one."""
    words = [word for word in argv if not word.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedbot",
        description="Post-deploy feedback from production traces, delivered to who shipped.",
        epilog="`feedbot COMMAND --help` shows a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"feedbot {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND", title="commands")
    for name, (module_name, help_line) in COMMANDS.items():
        command = sub.add_parser(name, help=help_line, description=help_line)
        if name == chosen:
            module = importlib.import_module(f"feedbot.commands.{module_name}")
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return parser
