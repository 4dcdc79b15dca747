"""The one composition root: everything a running feedbot holds, built once from the settings.

Only this module builds the engine, the sessions, the trace backend, the notifier, the check
runner, the outbox sender and the ticker; ``web/`` and ``commands/`` call :func:`build_runtime`
and nothing below them imports it. ``feedbot tick`` and ``feedbot digest`` build a runtime
without importing FastAPI.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends import build_backend
from feedbot.backends.base import TraceBackend
from feedbot.checks.runner import CheckRunner
from feedbot.checks.ticker import Ticker
from feedbot.clock import Clock, SystemClock
from feedbot.config import Settings
from feedbot.metrics import Metrics
from feedbot.notify.base import Notifier
from feedbot.notify.outbox import OutboxSender
from feedbot.policy import DetectionPolicy
from feedbot.slack.home import HomeService
from feedbot.store import db
from feedbot.telemetry import NullTracer, Tracer, build_tracer


@dataclass
class Runtime:
    """Everything a running feedbot holds, built once from the settings."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    backend: TraceBackend
    notifier: Notifier
    clock: Clock
    runner: CheckRunner
    sender: OutboxSender
    ticker: Ticker
    worker: str
    metrics: Metrics = field(default_factory=Metrics)
    tracer: Tracer = field(default_factory=NullTracer)

    def tick(self) -> None:
        """One pass of the background work (:meth:`feedbot.checks.ticker.Ticker.tick`)."""
        self.ticker.tick()

    def prune_spans(self) -> int:
        """Prune the embedded trace store (:meth:`feedbot.checks.ticker.Ticker.prune_spans`)."""
        return self.ticker.prune_spans()

    def close(self) -> None:
        """Release what it holds: the backend's client or connections, then the store's."""
        self.backend.close()
        self.engine.dispose()


def build_notifier(settings: Settings, metrics: Metrics | None = None) -> Notifier:
    """Slack when a bot token is configured, else the console; Slack retries count into metrics."""
    if settings.slack.bot_token:
        from feedbot.notify.slack import SlackNotifier, build_web_client

        client = build_web_client(
            token=settings.slack.bot_token,
            base_url=settings.slack.api_url,
            on_retry=metrics.slack_retried if metrics is not None else None,
        )
        return SlackNotifier(client)
    from feedbot.notify.console import ConsoleNotifier

    return ConsoleNotifier(sys.stdout)


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    policy: DetectionPolicy | None = None,
) -> Runtime:
    """Wire the store, backend, notifier, workers, metrics and tracing for ``settings``."""
    clock = clock or SystemClock()
    tracer = build_tracer(settings.telemetry)
    metrics = Metrics()
    engine = db.make_engine(settings.database_url)
    sessions = db.make_sessions(engine)
    metrics.watch_store(sessions, clock)
    # The trace store reads in long streaming transactions and only inserts otherwise: on SQLite
    # it must not take the writer lock up front the way the release store's transactions do.
    traces = (
        db.make_sessions(db.make_engine(settings.database_url, immediate=False))
        if engine.dialect.name == "sqlite"
        else sessions
    )
    backend = build_backend(settings, traces, metrics=metrics, tracer=tracer)
    notifier = notifier or build_notifier(settings, metrics)
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    runner = CheckRunner(
        sessions=sessions,
        backend=backend,
        settings=settings,
        clock=clock,
        worker=worker,
        policy=policy,
        metrics=metrics,
        tracer=tracer,
    )
    sender = OutboxSender(
        sessions=sessions,
        notifier=notifier,
        clock=clock,
        worker=worker,
        lease=settings.checks.lease,
        metrics=metrics,
        tracer=tracer,
        home=HomeService(sessions=sessions, settings=settings, clock=clock).render,
    )
    ticker = Ticker(
        runner=runner, sender=sender, backend=backend, traces=settings.traces, clock=clock
    )
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        backend=backend,
        notifier=notifier,
        clock=clock,
        runner=runner,
        sender=sender,
        ticker=ticker,
        worker=worker,
        metrics=metrics,
        tracer=tracer,
    )
