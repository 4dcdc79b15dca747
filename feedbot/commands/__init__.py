"""The ``feedbot`` command: serve, migrate, check-config, tick, notify-deploy, feedback, demo.

Exit status 2 means the configuration is wrong; each problem is printed as a
``path.to.key: problem`` line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from feedbot import __version__
from feedbot.config import Settings, load_settings
from feedbot.errors import ConfigError

CONFIG_ENV = "FEEDBOT_CONFIG"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=os.environ.get("FEEDBOT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler logs every tick at INFO; feedbot logs what the ticks do.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedbot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"feedbot {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP server and the check scheduler")
    _config_arg(serve)
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    _config_arg(migrate)
    migrate.set_defaults(func=_migrate)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", type=Path)
    check.set_defaults(func=_check_config)

    tick = sub.add_parser("tick", help="run due checks and send due messages once, then exit")
    _config_arg(tick)
    tick.set_defaults(func=_tick)

    from feedbot.commands import report as report_cli
    from feedbot.releases import notify_deploy

    report = sub.add_parser("report", help="analyse one release from traces and print the report")
    report_cli.add_arguments(report)
    report.set_defaults(func=report_cli.run)

    notify = sub.add_parser("notify-deploy", help="register a deploy from CI (signed webhook)")
    notify_deploy.add_arguments(notify)
    notify.set_defaults(func=notify_deploy.run)

    from feedbot.commands import demo as demo_command

    demo = sub.add_parser("demo", help="watch feedbot on the instrumented vault app, end to end")
    demo_command.add_arguments(demo)
    demo.set_defaults(func=demo_command.run)

    from feedbot.commands import feedback as feedback_cli

    feedback = sub.add_parser("feedback", help="print the /feedback answer from the database")
    feedback_cli.add_arguments(feedback)
    feedback.set_defaults(func=feedback_cli.run)

    from feedbot.checks import digests as digest_command

    digest = sub.add_parser("digest", help="queue and send the weekly channel digests")
    _config_arg(digest)
    digest_command.add_arguments(digest)
    digest.set_defaults(func=digest_command.run)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get(CONFIG_ENV) or None,
        help=f"config file (default: ${CONFIG_ENV}, else embedded defaults)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    from feedbot import logs

    settings = load_settings(args.config)
    logs.install(settings)  # from the first line on, secrets are masked in every record
    return settings


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.path)
    print(
        f"{args.path}: ok (database {settings.database_url.split(':', 1)[0]}, "
        f"traces {settings.traces.backend}, "
        f"{'slack' if settings.slack.bot_token else 'console'} output, "
        f"{len(settings.services)} services, {len(settings.features)} features)"
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from feedbot.store import db

    settings = _settings(args)
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")
    return 0


def _tick(args: argparse.Namespace) -> int:
    from feedbot.runtime import build_runtime
    from feedbot.store import db

    runtime = build_runtime(_settings(args))
    db.migrate(runtime.engine)
    runtime.tick()
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from feedbot.checks.ticker import start_ticker
    from feedbot.runtime import build_runtime
    from feedbot.store import db
    from feedbot.web.app import create_app

    settings = _settings(args)
    runtime = build_runtime(settings)
    db.migrate(runtime.engine)
    app = create_app(runtime)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    output = "Slack" if settings.slack.bot_token else "the console"
    logging.getLogger("feedbot").info(
        "feedbot %s on http://%s:%d (database %s, traces %s, messages to %s)",
        __version__,
        host,
        port,
        runtime.engine.url.get_backend_name(),
        settings.traces.backend,
        output,
    )
    if not settings.webhooks.secret:
        logging.getLogger("feedbot").warning(
            "webhooks.secret is not set: POST /webhooks/deploy refuses every request "
            "(set FEEDBOT_WEBHOOK_SECRET)"
        )
    scheduler = start_ticker(runtime.tick, settings.checks.tick)
    from feedbot.checks.digests import start as start_digests

    start_digests(scheduler, runtime)
    # uvicorn re-raises the signal that stopped it once it has shut down. With SIGTERM's
    # default disposition that kills the process before the scheduler and engine are closed
    # (exit -15); a handler of our own makes SIGTERM a clean shutdown with status 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        scheduler.shutdown(wait=True)
        runtime.engine.dispose()
        signal.signal(signal.SIGTERM, previous)
    return 0
