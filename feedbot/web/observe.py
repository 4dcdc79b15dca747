"""ASGI middleware that measures and traces every HTTP request feedbot answers.

It sits outside every other middleware, so it sees the final status of each request, including
the 408 and 413 answers :class:`feedbot.web.body.BodyGuard` gives before a handler runs. For each
request it records the time taken by route (a template such as ``/webhooks/{source}``, never
the raw path, so scanners cannot add series), deploy webhooks by source and status, OTLP
export requests and their refusals by reason, and, when tracing is on, a ``server`` span.

Routes that are never traced: ``/v1/traces`` (feedbot may be exporting its own spans there: a
span per export would be exported in turn, without end) and the probes and scrapes
(``/healthz``, ``/readyz``, ``/metrics``), which would drown the spans worth reading.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedbot.metrics import Metrics
from feedbot.telemetry import NullSpan, Span, Tracer

OTLP_PATH = "/v1/traces"
#: Paths answered with their own name as the route; anything else is ``other``.
ROUTES = frozenset({OTLP_PATH, "/slack/events", "/healthz", "/readyz", "/metrics", "/meeting"})
UNTRACED = frozenset({OTLP_PATH, "/healthz", "/readyz", "/metrics"})
WEBHOOKS = "/webhooks/"
#: The pages Slack links to, by their route templates.
PAGES = {"/releases/": "/releases/{release_id}", "/services/": "/services/{name}"}


def route_of(path: str) -> str:
    """The route template of ``path``: ``/webhooks/{source}``, a known path, or ``other``."""
    if path.startswith(WEBHOOKS):
        return WEBHOOKS + "{source}"
    for prefix, template in PAGES.items():
        if path.startswith(prefix):
            return template
    return path if path in ROUTES else "other"


class RequestObserver:
    """Counts, times and traces each HTTP request (see the module docstring).

    Args:
        app: the application to observe.
        metrics: where requests are counted.
        tracer: where request spans go.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, tracer: Tracer) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        route = route_of(path)
        # A handler that raises is answered 500 by Starlette outside this middleware.
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        with self._span(scope, route) as span:
            try:
                await self.app(scope, receive, observed_send)
            finally:
                self._record(path, route, status, time.perf_counter() - started)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_attribute("error.type", str(status))

    def _span(self, scope: Scope, route: str) -> AbstractContextManager[Span]:
        path: str = scope["path"]
        if path in UNTRACED:
            return nullcontext(NullSpan())
        method: str = scope["method"]
        attributes = {"http.request.method": method, "url.path": path, "http.route": route}
        if path.startswith(WEBHOOKS):
            attributes["feedbot.webhook.source"] = path[len(WEBHOOKS) :][:64]
        return self.tracer.span(f"{method} {route}", attributes, kind="server")

    def _record(self, path: str, route: str, status: int, seconds: float) -> None:
        self.metrics.request_answered(route, seconds)
        if path.startswith(WEBHOOKS):
            self.metrics.webhook_answered(path[len(WEBHOOKS) :], status)
        elif path == OTLP_PATH:
            self.metrics.otlp_request(status)
