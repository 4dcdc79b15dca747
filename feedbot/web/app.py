"""The HTTP composition root: builds the engine, backend, notifier and workers, and the routes.

Routes: ``POST /webhooks/<source>`` (deploys in), ``POST /v1/traces`` (embedded backend),
``POST /slack/events`` (slash commands and interactions), ``/healthz``, ``/readyz``, ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from feedbot import logs
from feedbot.backends import build_backend, unwrapped
from feedbot.backends.base import TraceBackend
from feedbot.checks.runner import CheckRunner
from feedbot.clock import Clock, SystemClock
from feedbot.config import Settings
from feedbot.errors import BackendError, WebhookRejected
from feedbot.metrics import CONTENT_TYPE, Metrics
from feedbot.notify.base import Notifier
from feedbot.notify.outbox import OutboxSender
from feedbot.policy import DetectionPolicy
from feedbot.releases.event import ReleaseEvent
from feedbot.releases.service import Registration, register_release
from feedbot.releases.sources import build_sources
from feedbot.releases.sources.base import DeploySource
from feedbot.store import db
from feedbot.telemetry import NullTracer, Tracer, build_tracer
from feedbot.web.body import BodyGuard, read_body
from feedbot.web.observe import RequestObserver
from feedbot.web.schema import (
    METRICS_RESPONSES,
    READYZ_RESPONSES,
    SOURCE_NAMES,
    WEBHOOK_OPENAPI,
    WEBHOOK_RESPONSES,
)

log = logging.getLogger(__name__)
#: Checks claimed at once by a tick, between two rounds of sending.
CHECK_BATCH = 10
PRUNE_EVERY = timedelta(minutes=10)

#: Slack's slash commands and interactions are small form posts; a view submission is the largest.
SLACK_MAX_BODY_BYTES = 1024 * 1024


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
    worker: str
    metrics: Metrics = field(default_factory=Metrics)
    tracer: Tracer = field(default_factory=NullTracer)
    last_prune: datetime | None = None

    def tick(self) -> None:
        """One pass of the background work: run due checks, send due messages, prune spans.

        Checks and sends alternate a batch at a time, so a backlog of due checks does not hold
        back the messages of the checks already done.
        """
        while True:
            ran = self.runner.run_due(CHECK_BATCH, batches=1)
            self.sender.send_due()
            if ran < CHECK_BATCH:
                break
        self.prune_spans()

    def prune_spans(self) -> int:
        """Drop embedded spans past ``traces.retention`` or ``traces.max_spans``, every 10 min."""
        prune = getattr(self.backend, "prune", None)
        now = self.clock.now()
        if prune is None or (self.last_prune and now - self.last_prune < PRUNE_EVERY):
            return 0
        self.last_prune = now
        try:
            deleted = int(
                prune(
                    now - self.settings.traces.retention, max_spans=self.settings.traces.max_spans
                )
            )
        except BackendError as exc:
            log.warning("could not prune old spans: %s", exc)
            return 0
        if deleted:
            log.info("pruned %d spans older than %s", deleted, self.settings.traces.retention)
        return deleted


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
    )
    return Runtime(
        settings,
        engine,
        sessions,
        backend,
        notifier,
        clock,
        runner,
        sender,
        worker,
        metrics,
        tracer,
    )


def create_app(runtime: Runtime) -> FastAPI:
    """The ASGI application for ``runtime``."""
    settings = runtime.settings
    logs.install(settings)
    app = FastAPI(title="feedbot", docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    app.add_middleware(
        BodyGuard,
        limits={"/webhooks/": settings.webhooks.max_body_bytes, "/slack/": SLACK_MAX_BODY_BYTES},
        default_limit=settings.server.max_body_bytes,
        timeout=settings.server.request_timeout.total_seconds(),
    )
    # Added last, so outermost: it sees the answers BodyGuard gives before any handler runs.
    app.add_middleware(RequestObserver, metrics=runtime.metrics, tracer=runtime.tracer)
    sources = build_sources(
        secret=runtime.settings.webhooks.secret,
        github_secret=runtime.settings.webhooks.github_secret,
        gitlab_token=runtime.settings.webhooks.gitlab_token,
        argocd_token=runtime.settings.webhooks.argocd_token,
    )
    _add_webhooks(app, runtime, sources)
    _add_health(app, runtime)
    for error in db.UNAVAILABLE:  # the database went away: retryable, not a server bug
        app.add_exception_handler(error, _database_unavailable)
    if runtime.settings.traces.backend == "embedded":
        from feedbot.web.otlp import otlp_router

        router = otlp_router(
            unwrapped(runtime.backend),  # type: ignore[arg-type]
            max_body_bytes=settings.server.max_body_bytes,
            metrics=runtime.metrics,
        )
        app.include_router(router)
    if runtime.settings.slack.signing_secret:
        from feedbot.slack.app import mount_slack

        mount_slack(app, runtime)
    return app


async def _database_unavailable(request: Request, error: Exception) -> Response:
    """503 with ``Retry-After`` when the store does not answer; one log line, no SQL text."""
    log.warning(
        "database unavailable during %s %s: %s",
        request.method,
        request.url.path,
        type(error).__name__,
    )
    return JSONResponse(
        {"error": "the database is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _rejected(exc: WebhookRejected) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def _add_webhooks(app: FastAPI, runtime: Runtime, sources: dict[str, DeploySource]) -> None:
    limit = runtime.settings.webhooks.max_body_bytes
    known = ("generic", "github", "gitlab", "argocd")

    @app.post(
        "/webhooks/{name}",
        status_code=202,
        responses=WEBHOOK_RESPONSES,
        openapi_extra=WEBHOOK_OPENAPI,
    )
    async def webhook(
        name: Annotated[str, Path(json_schema_extra={"enum": SOURCE_NAMES})], request: Request
    ) -> Response:
        source_name = "generic" if name == "deploy" else name
        if source_name not in known:
            return JSONResponse({"error": f"no deploy source {name!r}"}, status_code=404)
        source = sources.get(source_name)
        if source is None:
            key = "secret" if source_name == "generic" else f"{source_name}_secret"
            msg = f"webhooks.{key} is not configured on this feedbot: every request is refused"
            return JSONResponse({"error": msg}, status_code=401)
        try:
            body = await read_body(request, limit)
            headers = {k.lower(): v for k, v in request.headers.items()}
            source.verify(headers, body)
            event = source.parse(headers, body)
        except WebhookRejected as exc:
            log.info("webhook %s rejected: %s", name, exc)
            return _rejected(exc)
        if event is None:
            return JSONResponse({"ignored": "not a finished deploy"}, status_code=202)
        # Registering is ~15 short statements, mostly Python CPU time under the GIL: on the event
        # loop it is faster than in the thread pool (measured: benchmarks/load.py), where
        # same-service registrations also wait on each other's row locks.
        reg = _register(runtime, event)
        log.info(
            "webhook %s: release %s of %s %s (%s)",
            name,
            reg.release_id,
            event.service,
            event.version,
            "new" if reg.created else "seen before",
            extra={"release_id": reg.release_id, "service": event.service},
        )
        return JSONResponse(
            {"release_id": reg.release_id, "created": reg.created, "checks": reg.checks},
            status_code=202,
        )


def _register(runtime: Runtime, event: ReleaseEvent) -> Registration:
    with runtime.sessions() as session:
        return register_release(session, event, settings=runtime.settings, now=runtime.clock.now())


def _add_health(app: FastAPI, runtime: Runtime) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses=READYZ_RESPONSES)
    def readyz() -> Response:
        try:
            db.ping(runtime.engine)
        except Exception as exc:
            log.warning("not ready: database does not answer: %s", exc)
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
    def metrics() -> Response:
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)
