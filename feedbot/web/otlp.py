"""``POST /v1/traces``: the OTLP/HTTP receiver in front of the embedded backend.

Answers like an OTLP/HTTP server: 200 with an empty ``ExportTraceServiceResponse`` in the
request's format, 400/413/415 as ``{"error": "..."}`` (permanent for exporters), 503 with
``Retry-After`` when the store cannot take the spans or ``max_in_flight`` exports are already
being decoded or stored (exporters retry; the body of a refused one is never read, so memory
stays bounded however many exporters push at once).

A body is decoded in a worker thread, at most ``DECODERS`` at a time (decoding holds the GIL:
more threads only take turns with the event loop, which then answers Slack later), or with
``decode_processes`` in that many worker processes (``feedbot serve`` uses one: decoding is
most of ingest's CPU, and there it runs beside the event loop and the writer instead of taking
turns with them). The rows go to one :class:`~feedbot.backends.embedded.SpanWriter`, whose
writer threads (two on PostgreSQL, one on SQLite) each commit the batches waiting together in
one transaction. The answer comes once the spans are committed. With a token configured
(``traces.ingest_token``), a request without ``Authorization: Bearer <token>`` is 401 before its
body is read. A request of more spans than ``traces.ingest_max_spans`` is 413 before any row is
built, and nothing of it is stored.

Stored spans are counted here; requests and refusals by reason are counted by the request
middleware (:mod:`feedbot.web.observe`), which also sees the refusals made before this handler
runs. Requests to this route are never traced: feedbot may be exporting its own spans to it.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from feedbot.backends.embedded import EmbeddedBackend, SpanWriter, decode_packed
from feedbot.errors import BackendUnavailable, WebhookRejected
from feedbot.metrics import Metrics
from feedbot.spans.otlp import JSON, PROTOBUF, media_type
from feedbot.store.span_queries import PackedSpans
from feedbot.web.schema import OTLP_OPENAPI, OTLP_RESPONSES

log = logging.getLogger(__name__)

#: Decompressed bodies may be this many times larger than the compressed cap.
EXPANSION = 4
#: Export requests read, decoded or stored at once; more are answered 503 with Retry-After.
MAX_IN_FLIGHT = 16
#: Threads decoding bodies at once.
DECODERS = 2
#: Seconds an exporter refused for load is asked to wait.
BUSY_RETRY_AFTER = 1
BUSY = "too many exports in flight; retry later"
UNAUTHORIZED = (
    "Authorization: expected 'Bearer <token>' with the token of traces.ingest_token "
    "(exporters: OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>)"
)


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time."""
    scheme, _, credential = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode("utf-8", "replace"), token.encode("utf-8")
    )


def otlp_router(
    backend: EmbeddedBackend,
    *,
    max_body_bytes: int = 16 * 1024 * 1024,
    metrics: Metrics | None = None,
    token: str | None = None,
    max_spans: int | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
    decode_processes: int = 0,
) -> APIRouter:
    """The OTLP/HTTP trace receiver.

    Args:
        backend: where received spans are stored.
        max_body_bytes: the largest request body accepted as sent; after gzip decompression
            ``EXPANSION`` times as much.
        metrics: where stored spans are counted; a private, unscraped one when None.
        token: the bearer token every request must carry; None accepts anyone.
        max_spans: the most spans accepted in one request; None for no limit.
        max_in_flight: the most requests read, decoded or stored at once; one more is 503.
        decode_processes: worker processes that decode bodies (started at the first export);
            0 decodes in threads of this process.

    Returns:
        A router with ``POST /v1/traces``, for ``app.include_router``.
    """
    counts = metrics or Metrics()
    intake = Intake(backend, max_in_flight=max_in_flight, processes=decode_processes)
    # The decoding processes end with the app (uvicorn's lifespan shutdown), not with Python.
    router = APIRouter(on_shutdown=[intake.close])

    @router.post("/v1/traces", responses=OTLP_RESPONSES, openapi_extra=OTLP_OPENAPI)
    async def traces(request: Request) -> Response:
        if token is not None and not authorized(request.headers.get("authorization"), token):
            log.info("otlp: rejected 401: no valid bearer token")
            return JSONResponse(
                {"error": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if intake.in_flight >= intake.max_in_flight:
            log.info("otlp: rejected 503: %d exports in flight", intake.in_flight)
            return JSONResponse(
                {"error": BUSY},
                status_code=503,
                headers={"Retry-After": str(BUSY_RETRY_AFTER), "Connection": "close"},
            )
        intake.in_flight += 1
        try:
            return await receive(
                request, backend, max_body_bytes, metrics=counts, max_spans=max_spans, intake=intake
            )
        finally:
            intake.in_flight -= 1

    return router


class Intake:
    """What one receiver shares between its requests: the decoders, the writer, the count of
    requests in flight (read and changed on the event loop only)."""

    def __init__(
        self, backend: EmbeddedBackend, *, max_in_flight: int = MAX_IN_FLIGHT, processes: int = 0
    ) -> None:
        self.writer = SpanWriter(backend)
        self.dialect = backend.dialect
        self.decoders = CapacityLimiter(DECODERS)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        if processes:  # started now, not on the first export (imports take seconds)
            warm_up = functools.partial(
                decode_packed, b"", content_type=PROTOBUF, content_encoding=None, dialect=""
            )
            self._start().submit(warm_up)

    def close(self) -> None:
        """Stop the decoding processes (exports still queued are cancelled); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _start(self) -> ProcessPoolExecutor:
        # spawn: a fork of this process would copy its threads' locks in any state.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
        return self._pool

    async def decode(self, decode: functools.partial[PackedSpans]) -> PackedSpans:
        """Run ``decode`` (a partial of a module-level function) in a thread or a process.

        Raises:
            WebhookRejected: what ``decode`` raised.
            BackendUnavailable: the decoding process died (it is started again).
        """
        if not self.processes:
            return await to_thread.run_sync(decode, limiter=self.decoders)
        pool = self._pool or self._start()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, decode)
        except BrokenProcessPool as exc:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False)
            raise BackendUnavailable(f"otlp: the decoding process ended ({exc})") from exc


async def receive(
    request: Request,
    backend: EmbeddedBackend,
    max_body_bytes: int,
    *,
    intake: Intake,
    metrics: Metrics | None = None,
    max_spans: int | None = None,
) -> Response:
    """Store the spans of one export request and answer as an OTLP/HTTP server does."""
    try:
        body = await read_capped(request, max_body_bytes)
        # Decoding and the insert are blocking work: keep them off the event loop.
        decode = functools.partial(
            decode_packed,
            body,
            content_type=request.headers.get("content-type", ""),
            content_encoding=request.headers.get("content-encoding"),
            dialect=intake.dialect,
            max_bytes=max_body_bytes * EXPANSION,
            max_spans=max_spans,
        )
        del body
        rows = await intake.decode(decode)
        del decode
        count = await asyncio.wrap_future(intake.writer.submit(rows))
    except WebhookRejected as exc:
        log.info("otlp: rejected %s: %s", exc.status, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    except BackendUnavailable as exc:
        log.warning("otlp: %s", exc)
        return JSONResponse(
            {"error": "the span store is unavailable; retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    log.debug("otlp: stored %d spans", count)
    if metrics is not None:
        metrics.spans_accepted(count)
    return success(request.headers.get("content-type"))


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` bytes (declared or actual).

    Raises:
        WebhookRejected: 413 over the limit, before anything is decoded.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebhookRejected(413, f"body: {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookRejected(413, f"body: over the limit of {limit} bytes")
    return bytes(body)


def success(content_type: str | None) -> Response:
    """An empty ``ExportTraceServiceResponse``: protobuf bytes, or ``{}`` for a JSON request."""
    if media_type(content_type) == JSON:
        return Response(b"{}", media_type=JSON)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    return Response(bytes(ExportTraceServiceResponse().SerializeToString()), media_type=PROTOBUF)
