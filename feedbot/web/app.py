"""The FastAPI application: a thin adapter from HTTP to the runtime's services.

Routes: ``POST /webhooks/<source>`` (deploys in), ``POST /v1/traces`` (embedded backend),
``POST /slack/events`` (slash commands and interactions), ``/healthz``, ``/readyz``, ``/metrics``,
and the pages Slack links to (``/releases/<id>``, ``/services/<name>``, ``/meeting``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from feedbot import logs
from feedbot.backends import unwrapped
from feedbot.checks import preview
from feedbot.checks.register import Registration, register_releases
from feedbot.errors import WebhookRejected
from feedbot.metrics import CONTENT_TYPE
from feedbot.releases.event import ReleaseEvent, deploy_time_problem
from feedbot.releases.sources import build_sources
from feedbot.releases.sources.base import DeploySource
from feedbot.releases.sources.github import PullRequestEvent, is_pull_request, parse_pull_request
from feedbot.runtime import Runtime
from feedbot.store import db, registration
from feedbot.web.body import BodyGuard, read_body
from feedbot.web.observe import RequestObserver
from feedbot.web.registrar import GroupRegistrar
from feedbot.web.schema import (
    METRICS_RESPONSES,
    READYZ_RESPONSES,
    SOURCE_NAMES,
    WEBHOOK_OPENAPI,
    WEBHOOK_RESPONSES,
)

log = logging.getLogger(__name__)

#: The ``webhooks.*`` key that turns each deploy source on.
SOURCE_KEYS = {
    "generic": "secret",
    "github": "github_secret",
    "gitlab": "gitlab_token",
    "argocd": "argocd_token",
}

#: Slack's slash commands and interactions are small form posts; a view submission is the largest.
SLACK_MAX_BODY_BYTES = 1024 * 1024
#: Processes decoding OTLP bodies beside the server (:func:`feedbot.web.otlp.otlp_router`).
DECODE_PROCESSES = 1


def create_app(runtime: Runtime, *, decode_processes: int = 0) -> FastAPI:
    """The ASGI application for ``runtime``.

    Args:
        runtime: what the routes use.
        decode_processes: worker processes decoding OTLP bodies, started now (``feedbot serve``
            uses :data:`DECODE_PROCESSES`); 0 decodes in threads of this process.
    """
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
            token=settings.traces.ingest_token,
            max_spans=settings.traces.ingest_max_spans,
            decode_processes=decode_processes,
        )
        app.include_router(router)
    from feedbot.web.pages import mount_pages

    mount_pages(app, runtime)
    if runtime.settings.slack.signing_secret:
        from feedbot.web.slack import mount_slack

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
    registrar = GroupRegistrar(
        lambda events: _register(runtime, events), warm=lambda: _warm(runtime)
    )
    app.router.on_startup.append(registrar.start_warming)

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
        if source_name not in SOURCE_KEYS:
            return JSONResponse({"error": f"no deploy source {name!r}"}, status_code=404)
        source = sources.get(source_name)
        if source is None:
            key = SOURCE_KEYS[source_name]
            msg = f"webhooks.{key} is not configured on this feedbot: every request is refused"
            return JSONResponse({"error": msg}, status_code=401)
        try:
            body = await read_body(request, limit)
            headers = {k.lower(): v for k, v in request.headers.items()}
            source.verify(headers, body)
            if source_name == "github" and is_pull_request(headers):
                return _pull_request(runtime, parse_pull_request(headers, body))
            event = source.parse(headers, body)
        except WebhookRejected as exc:
            log.info("webhook %s rejected: %s", name, exc)
            return _rejected(exc)
        if event is None:
            return JSONResponse({"ignored": "not a finished deploy"}, status_code=202)
        problem = deploy_time_problem(event.deployed_at, runtime.clock.now())
        if problem is not None:
            log.info("webhook %s rejected: %s", name, problem)
            return JSONResponse({"error": problem}, status_code=422)
        # Registering is 7 short statements, mostly Python CPU time under the GIL. On the event
        # loop a burst of 50 blocked it 50 x 8 ms a turn, and Slack's acks waited seconds
        # (benchmarks/slash_load.py); in the thread pool same-service registrations waited on
        # each other's row locks. So one thread registers, while the loop keeps answering (the
        # GIL changes hands every 1 ms at most), and the deploys that wait together share one
        # transaction and its commit (group commit: feedbot.web.registrar).
        reg = await registrar.register(event)
        log.info(
            "webhook %s: release %s of %s %s (%s)",
            name,
            reg.release_id,
            event.service,
            event.version,
            "new" if reg.created else "seen before",
            extra={"release_id": reg.release_id, "service": event.service},
        )
        answer: dict[str, object] = {
            "release_id": reg.release_id,
            "created": reg.created,
            "checks": reg.checks,
        }
        if reg.warning:
            answer["warning"] = reg.warning
        return JSONResponse(answer, status_code=202)


def _pull_request(runtime: Runtime, event: PullRequestEvent | None) -> Response:
    """Answer a verified ``pull_request`` event at once; the preview runs after the answer."""
    if event is None:
        return JSONResponse({"ignored": "no preview for this pull_request action"}, status_code=202)
    if not runtime.settings.github.token:
        msg = "github.token is not configured: feedbot cannot read the pull request's diff"
        return JSONResponse({"ignored": msg}, status_code=202)
    work = BackgroundTask(
        preview.run_pull_request,
        sessions=runtime.sessions,
        backend=runtime.backend,
        settings=runtime.settings,
        event=event,
        now=runtime.clock.now(),
    )
    log.info("webhook github: preview of %s#%d at %s", event.repository, event.number, event.head)
    answer = {"preview": "queued", "pull_request": event.number, "head": event.head}
    return JSONResponse(answer, status_code=202, background=work)


def _register(runtime: Runtime, events: Sequence[ReleaseEvent]) -> list[Registration | Exception]:
    with runtime.sessions() as session:
        now = runtime.clock.now()
        return register_releases(session, events, settings=runtime.settings, now=now)


def _warm(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        registration.warm_registration_contexts(session)


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
