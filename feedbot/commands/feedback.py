"""``feedbot feedback``: the ``/feedback`` answer in a terminal, from feedbot's database.

::

    feedbot feedback <feature|service|service@version|function|file|route|help>
                     [--config CFG] [--database-url URL]

The answer is built by the code that answers the slash command
(:class:`feedbot.slack.feedback.FeedbackService` and :mod:`feedbot.digest.answers`) from the
checks feedbot already ran and stored, then printed as text (:mod:`feedbot.digest.plain`). No
Slack token, no trace backend and no running server are needed: only the database. Exit status:
0 an answer was printed (also "no finished check yet" and ``help``), 1 the name is unknown or
a feature matches no span (the answer lists the closest names, and no verdict) or the database
could not be read, 2 a usage or configuration problem. A route has a space: quote it
(``feedbot feedback "GET /vaults/{id}"``), or give several words.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from feedbot.commands.options import CONFIG_ENV, add_config
from feedbot.config import load_settings
from feedbot.digest.plain import blocks_text, mrkdwn_text
from feedbot.slack.feedback import FeedbackService, parse
from feedbot.slack.listeners import HELP
from feedbot.store import db

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE = 0, 1, 2
#: An unknown name is no answer, as a database that cannot be read is none.
EXIT_UNKNOWN = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``feedbot feedback``'s arguments on ``parser``."""
    parser.add_argument(
        "name",
        metavar="NAME",
        nargs="+",
        help="a service, service@version, a feature from the config, a function, a file, "
        "a route (GET /vaults/{id}), or help",
    )
    add_config(parser, help=f"config file, for its features and database (default: ${CONFIG_ENV})")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="the database to read (default: the config's database_url / $FEEDBOT_DATABASE_URL)",
    )


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Print the answer to ``/feedback NAME``; returns the exit status (see the module docstring).

    Raises:
        ConfigError: the config file is wrong (the command line prints it and exits 2).
    """
    out, err = stdout or sys.stdout, sys.stderr
    settings = load_settings(args.config)
    if args.database_url:
        settings = dataclasses.replace(settings, database_url=args.database_url)
    problem = _database_problem(settings.database_url)
    if problem:
        err.write(f"feedbot feedback: {problem}\n")
        return EXIT_USAGE
    command = parse(" ".join(args.name) if isinstance(args.name, list) else args.name)
    if command.name is None:
        out.write(mrkdwn_text(HELP).replace("/feedback", "feedbot feedback") + "\n")
        return EXIT_OK
    engine = db.make_engine(settings.database_url)
    try:
        service = FeedbackService(sessions=db.make_sessions(engine), settings=settings)
        answer, known = service.reply(command)
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        err.write(
            f"feedbot feedback: cannot read feedbot's data at {where}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}\n"
        )
        return EXIT_UNREADABLE
    finally:
        engine.dispose()
    out.write(blocks_text(answer.blocks, answer.text))
    return EXIT_OK if known else EXIT_UNKNOWN


def _database_problem(url: str) -> str | None:
    """A SQLite file that is not there is a typo, not an empty database to create."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"--database-url: {url!r} is not a database URL"
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if not Path(parsed.database).is_file():
        return f"no feedbot database at {parsed.database} (--database-url or database_url)"
    return None
