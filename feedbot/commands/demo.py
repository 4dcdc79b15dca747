"""``feedbot demo``: watch feedbot do its whole job on the instrumented vault, in two minutes.

::

    feedbot demo [--quick] [--out DIR] [--no-color] [--slack --slack-to U0123ABCD]

With ``--slack`` the messages go to the workspace of ``$SLACK_BOT_TOKEN`` (the Web API at
``--slack-api-url``, Slack's own by default) instead of the console notifier; the terminal shows
the same thread either way. The demo receives nothing from Slack, so ``$SLACK_SIGNING_SECRET``
is optional here.

Exit status: 0 when the demo ran to its end, 1 when it could not (the message says why),
130 when interrupted (Ctrl-C or SIGTERM); every process it started is stopped in each case.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import NoReturn, TextIO

from feedbot.demo import preview, terminal
from feedbot.demo.progress import Palette, Progress
from feedbot.demo.scenario import FULL, NEW, QUICK, SERVICE, Demo, DemoError, Options, Outcome
from feedbot.demo.thread import release_thread

SLACK_VARS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
SLACK_API_URL = "https://slack.com/api/"
EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``feedbot demo``'s options on ``parser``."""
    add = parser.add_argument
    add("--quick", action="store_true", help="a shorter run (about 45 s), as CI runs it")
    add("--out", type=Path, help="directory for the HTML preview, database and logs (default: new)")
    add("--no-color", action="store_true", help="no colours even on a terminal")
    add("--slack", action="store_true", help="send the messages to Slack ($SLACK_BOT_TOKEN, …)")
    add("--slack-to", metavar="ID", help="with --slack: the user (U…) or channel (C…) to DM")
    add(
        "--slack-api-url",
        metavar="URL",
        default=SLACK_API_URL,
        help=f"with --slack: the Web API root (default: {SLACK_API_URL})",
    )


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Run the demo; returns the exit status (see the module docstring)."""
    out = stdout or sys.stdout
    paint = Palette(out.isatty() and not args.no_color and "NO_COLOR" not in os.environ)
    progress = Progress(out, paint)
    problem = _slack_problem(args)
    if problem:
        sys.stderr.write(f"feedbot demo: {problem}\n")
        return 2
    workdir = _workdir(args.out)
    options = Options(
        scale=QUICK if args.quick else FULL,
        workdir=workdir,
        slack_env=_slack_env(args),
        slack_to=args.slack_to if args.slack else None,
        slack_api_url=args.slack_api_url if args.slack else None,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    _quiet_logs()
    try:
        outcome = Demo(options, progress).run()
    except KeyboardInterrupt:
        progress.write(f"\ninterrupted: every process the demo started is stopped ({workdir})\n")
        return EXIT_INTERRUPTED
    except DemoError as exc:
        sys.stderr.write(f"feedbot demo: {exc}\n(files in {workdir})\n")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    show(outcome, workdir, progress)
    return 0


def show(outcome: Outcome, workdir: Path, progress: Progress) -> None:
    """Print the thread, write the HTML preview and the report, and say what to do next."""
    paint = progress.palette
    recipient = outcome.recipient
    thread = release_thread(outcome.delivered, outcome.release_id)
    progress.write("\n")
    if thread is None:
        progress.write("feedbot sent no thread for the release (see the log above)\n")
    else:
        progress.write(terminal.render_thread(thread, outcome.reports, recipient, paint))
    html_path = workdir / "feedbot-demo.html"
    title = f"feedbot demo: {SERVICE} {NEW}"
    html_path.write_text(preview.page(outcome.delivered, title=title, recipient=recipient))
    report_path = workdir / "report.json"
    report_path.write_text(_json(outcome.reports[-1] if outcome.reports else {}))
    progress.write(next_steps(html_path, report_path, outcome, paint))


def next_steps(html_path: Path, report_path: Path, outcome: Outcome, paint: Palette) -> str:
    """What the demo left behind and the commands to go on from here."""
    feedbot = program()
    database = shlex.quote(outcome.database_url)
    lines = [
        "",
        paint("What the developer got", "bold"),
        f"  HTML preview of the Slack messages: {html_path}",
        f"  the last check's report (feedbot report's JSON): {report_path}",
        "",
        paint("/feedback locally, against the demo's data", "bold"),
        "  the answer Slack's /feedback gives, from the same code, printed here:",
        f"  {feedbot} feedback {SERVICE} --database-url {database}",
        f"  {feedbot} feedback {SERVICE}@{NEW} --database-url {database}",
        "",
        paint("A real Slack", "bold"),
        "  create an app from slack/manifest.yaml, install it, then:",
        "  SLACK_BOT_TOKEN=xoxb-… \\",
        f"    {feedbot} demo --slack --slack-to <your Slack member id, U…>",
        "  (in production: feedbot serve, with SLACK_SIGNING_SECRET too; see README.md)",
        "",
    ]
    return "\n".join(lines)


def program() -> str:
    """How to run feedbot again from this shell: the script the demo was started with, if any."""
    if os.path.basename(sys.argv[0]) == "feedbot":
        return shlex.quote(sys.argv[0])
    return f"{shlex.quote(sys.executable)} -m feedbot"


def _slack_env(args: argparse.Namespace) -> dict[str, str]:
    """The ``SLACK_*`` variables feedbot gets; a throwaway signing secret when none is set."""
    if not args.slack:
        return {}
    env = {k: os.environ[k] for k in SLACK_VARS if os.environ.get(k)}
    env.setdefault("SLACK_SIGNING_SECRET", secrets.token_hex(16))
    return env


def _slack_problem(args: argparse.Namespace) -> str | None:
    if not args.slack:
        if args.slack_to or args.slack_api_url != SLACK_API_URL:
            return "--slack-to and --slack-api-url need --slack"
        return None
    if not os.environ.get("SLACK_BOT_TOKEN"):
        return "--slack needs SLACK_BOT_TOKEN in the environment (the bot's xoxb-… token)"
    if not args.slack_to:
        return "--slack needs --slack-to: the Slack member id (U…) or channel id to DM"
    return None


def _workdir(out: Path | None) -> Path:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="feedbot-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def _quiet_logs() -> None:
    """Warnings and errors only, unless FEEDBOT_LOG_LEVEL asks for more: progress says the rest."""
    if not os.environ.get("FEEDBOT_LOG_LEVEL"):
        logging.getLogger().setLevel(logging.WARNING)


def _interrupt(*_args: object) -> NoReturn:
    """SIGTERM ends the demo as Ctrl-C does: everything is stopped in order."""
    raise KeyboardInterrupt


def _json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
