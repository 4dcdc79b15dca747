"""The default trace backend: spans sent to feedbot over OTLP/HTTP, kept in its own database.

Differs from the other backends in that feedbot is the store: :meth:`EmbeddedBackend.ingest`
writes what ``POST /v1/traces`` receives, :meth:`EmbeddedBackend.prune` enforces
``traces.retention``. :meth:`EmbeddedBackend.collect` filters in SQL (on the service, version
and start index) and streams the matching rows through :mod:`feedbot.spans.aggregate`. The
SQL statements live in :mod:`feedbot.store.span_queries`; this module builds none.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock, SystemClock
from feedbot.errors import BackendUnavailable
from feedbot.spans.aggregate import Aggregator
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp_http import decode_request
from feedbot.store import span_queries

#: The largest request accepted after decompression (the OTLP spec's recommended limit).
MAX_DECODED_BYTES = 64 * 1024 * 1024
#: Rows fetched per round trip while streaming (a server-side cursor on PostgreSQL).
STREAM_BATCH = 5000


class EmbeddedBackend:
    """Spans stored by feedbot itself.

    Args:
        sessions: the store's session factory.
        clock: stamps ``received_at`` (the system clock unless a test fixes it).
    """

    name = "embedded"

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock | None = None) -> None:
        self._sessions = sessions
        self._clock = clock or SystemClock()

    def ingest(
        self,
        body: bytes,
        content_type: str,
        content_encoding: str | None,
        *,
        max_bytes: int = MAX_DECODED_BYTES,
        max_spans: int | None = None,
    ) -> int:
        """Decode an OTLP/HTTP export and store its spans in one transaction.

        Args:
            body: the request body as received (possibly gzip-compressed).
            content_type: ``application/x-protobuf`` or ``application/json``.
            content_encoding: ``gzip``, ``identity`` or None.
            max_bytes: the largest body accepted after decompression.
            max_spans: the most spans accepted in one request (413 beyond); None for no limit.

        Returns:
            The number of spans accepted. A span already stored (the same trace and span id, as
            an exporter's retry sends it) is accepted and not stored again.

        Raises:
            WebhookRejected: the body is not a decodable export (see ``otlp_http.decode_request``).
            BackendUnavailable: the database refused the write.
        """
        rows = decode_request(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_bytes=max_bytes,
            max_spans=max_spans,
        )
        if not rows:
            return 0
        received_at = self._clock.now()
        try:
            with self._sessions.begin() as session:
                span_queries.insert_spans(session, rows, received_at)
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not store {len(rows)} spans: {exc}") from exc
        return len(rows)

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Stream the matching rows through the aggregator in batches of ``STREAM_BATCH``."""
        aggregator = Aggregator(warmup=query.warmup)
        try:
            with self._sessions.begin() as session:
                aggregator.add_many(span_queries.span_rows(session, query, batch=STREAM_BATCH))
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not read spans of {query}: {exc}") from exc
        return aggregator.result()

    def versions(
        self, service: str, start: datetime, end: datetime, environment: str | None = None
    ) -> dict[str, int]:
        """Spans per ``service.version`` of ``service`` in ``[start, end)``, counted in SQL.

        Raises:
            BackendUnavailable: the database refused the query.
        """
        try:
            with self._sessions.begin() as session:
                return span_queries.version_counts(session, service, start, end, environment)
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not count versions: {exc}") from exc

    def census(
        self, service: str, start: datetime, end: datetime
    ) -> dict[tuple[str | None, str | None], int]:
        """Spans of ``service`` in ``[start, end)`` per (environment, version), counted in SQL.

        Raises:
            BackendUnavailable: the database refused the query.
        """
        try:
            with self._sessions.begin() as session:
                return span_queries.environment_version_counts(session, service, start, end)
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not survey spans: {exc}") from exc

    def prune(self, older_than: datetime, *, max_spans: int | None = None) -> int:
        """Delete spans received before ``older_than``, then the oldest beyond ``max_spans``.

        Returns:
            How many spans were deleted.

        Raises:
            BackendUnavailable: the database refused the delete.
        """
        try:
            with self._sessions.begin() as session:
                deleted = span_queries.prune_spans(session, older_than, max_spans=max_spans)
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not prune spans: {exc}") from exc
        return deleted
