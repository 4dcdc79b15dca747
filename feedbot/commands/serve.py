"""``feedbot serve``: the HTTP server, the check ticker and the weekly digest, until SIGTERM.

With ``slack.app_token`` it also holds a Socket Mode connection to Slack (commands and buttons
arrive over it; the HTTP server still takes webhooks, spans and probes).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import ipaddress
import logging
import secrets
import signal
import sys
from typing import TYPE_CHECKING

import uvicorn

from feedbot import __version__
from feedbot.checks.digests import start as start_digests
from feedbot.checks.ticker import start_ticker
from feedbot.commands.options import add_config, settings_of
from feedbot.config import Settings
from feedbot.errors import ConfigError
from feedbot.runtime import Runtime, build_runtime
from feedbot.store import db
from feedbot.web.app import DECODE_PROCESSES, create_app

if TYPE_CHECKING:
    from feedbot.slack.socket_mode import SocketMode

log = logging.getLogger("feedbot")

#: libuv's event loop where uvloop exists (not on Windows), else asyncio's.
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
#: Seconds a thread may hold the GIL while another waits for it (Python's default is 0.005).
#: The event loop waits behind the threads that register deploys, write spans and run checks,
#: several times per Slack ack; at 1 ms the ack p99 under load fell from 210-270 to 100-150 ms
#: with the same deploys and spans a second (benchmarks/slash_load.py).
SWITCH_INTERVAL = 0.001


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``feedbot serve``."""
    add_config(parser)
    parser.add_argument("--host", help="the address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="the port to listen on (overrides server.port)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C; then stop the scheduler and close the database."""
    settings = settings_of(args)
    sys.setswitchinterval(SWITCH_INTERVAL)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    settings = with_local_secret(settings, host, port)
    runtime = build_runtime(settings)
    db.migrate(runtime.engine)
    app = create_app(runtime, decode_processes=DECODE_PROCESSES)
    # What is loaded by now (modules, mappers, compiled statements) lives as long as the
    # process: out of the cyclic collector's reach, a full collection during a burst of deploys
    # walks only what the requests made, not the whole application again.
    gc.freeze()
    log.info(
        "feedbot %s on http://%s:%d (database %s, traces %s, messages to %s)",
        __version__,
        host,
        port,
        runtime.engine.url.get_backend_name(),
        settings.traces.backend,
        "Slack" if settings.slack.bot_token else "the console",
    )
    warn_unprotected(settings, host)
    slack_socket = start_socket_mode(runtime)  # a token Slack refuses ends serve here (exit 2)
    scheduler = start_ticker(runtime.tick, settings.checks.tick)
    start_digests(scheduler, sessions=runtime.sessions, settings=settings, clock=runtime.clock)
    # uvicorn re-raises the signal that stopped it once it has shut down. With SIGTERM's
    # default disposition that kills the process before the scheduler and engine are closed
    # (exit -15); a handler of our own makes SIGTERM a clean shutdown with status 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        # "auto" would fall back to asyncio and h11 silently; both are dependencies of feedbot.
        uvicorn.run(app, host=host, port=port, log_level="warning", loop=LOOP, http="httptools")
    finally:
        if slack_socket is not None:
            slack_socket.close()  # a close frame: Slack sends the next requests elsewhere
        runtime.ticker.stop()  # the running tick ends after its current check or message
        scheduler.shutdown(wait=True)
        runtime.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def start_socket_mode(runtime: Runtime) -> SocketMode | None:
    """Connect to Slack in Socket Mode when ``slack.app_token`` is set, else None.

    Raises:
        ConfigError: Slack refused the app-level token.
    """
    if not runtime.settings.slack.app_token:
        return None
    from feedbot.slack.socket_mode import socket_mode

    connection = socket_mode(
        settings=runtime.settings, sessions=runtime.sessions, clock=runtime.clock
    )
    try:
        connection.start()
    except ConfigError:
        runtime.close()
        raise
    return connection


def with_local_secret(settings: Settings, host: str, port: int) -> Settings:
    """A webhook secret made for this run when none is set and only this machine can connect.

    ``make serve`` on a laptop then takes deploys at once, signed with the secret it prints with
    the command that sends one (as the demo does). Beyond loopback nothing is made up: the
    webhook refuses every request until ``webhooks.secret`` is set, and a warning says so.
    """
    if settings.webhooks.secret or not is_loopback(host):
        return settings
    secret = secrets.token_urlsafe(24)
    url = f"http://{host}:{port}"
    sys.stderr.write(
        f"webhooks.secret is not set, so this run signs deploys with one made for it "
        f"(loopback only, gone when it stops). Register a deploy from a git checkout:\n"
        f"  FEEDBOT_WEBHOOK_SECRET={secret} feedbot notify-deploy --url {url} "
        f"--service <service> --version <version>\n"
        f"and point an OTLP/HTTP exporter at {url}/v1/traces "
        f"(OTEL_EXPORTER_OTLP_ENDPOINT={url}).\n"
    )
    sys.stderr.flush()
    webhooks = dataclasses.replace(settings.webhooks, secret=secret)
    return dataclasses.replace(settings, webhooks=webhooks)


def warn_unprotected(settings: Settings, host: str) -> None:
    """Log a warning for each endpoint that stays open for want of a secret."""
    if not settings.webhooks.secret:
        log.warning(
            "webhooks.secret is not set: POST /webhooks/deploy refuses every request "
            "(set FEEDBOT_WEBHOOK_SECRET)"
        )
    if settings.traces.backend == "embedded" and not settings.traces.ingest_token:
        if not is_loopback(host):
            log.warning(
                "traces.ingest_token is not set: anyone who reaches %s can write spans to "
                "POST /v1/traces (set FEEDBOT_INGEST_TOKEN)",
                host,
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False
