"""The default trace backend: spans sent to feedbot over OTLP/HTTP, kept in its own database.

Differs from the other backends in that feedbot is the store: :meth:`EmbeddedBackend.ingest`
writes what ``POST /v1/traces`` receives, :meth:`EmbeddedBackend.prune` enforces
``traces.retention``. :meth:`EmbeddedBackend.collect` filters in SQL (on the service, version
and start index) and streams the matching rows through :mod:`feedbot.spans.aggregate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, delete, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from feedbot.clock import Clock, SystemClock
from feedbot.errors import BackendUnavailable
from feedbot.spans.aggregate import Aggregator, to_ns
from feedbot.spans.model import ReleaseData, SpanQuery
from feedbot.spans.otlp import decode_request
from feedbot.store.spans import Span, SpanRow

#: The largest request accepted after decompression (the OTLP spec's recommended limit).
MAX_DECODED_BYTES = 64 * 1024 * 1024
#: Rows fetched per round trip while streaming (a server-side cursor on PostgreSQL).
STREAM_BATCH = 5000
_ROW_KEYS = tuple(SpanRow.__annotations__)
_ROW_COLUMNS = tuple(getattr(Span, key) for key in _ROW_KEYS)


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
    ) -> int:
        """Decode an OTLP/HTTP export and store its spans in one transaction.

        Args:
            body: the request body as received (possibly gzip-compressed).
            content_type: ``application/x-protobuf`` or ``application/json``.
            content_encoding: ``gzip``, ``identity`` or None.
            max_bytes: the largest body accepted after decompression.

        Returns:
            The number of spans stored.

        Raises:
            WebhookRejected: the body is not a decodable export (see ``otlp.decode_request``).
            BackendUnavailable: the database refused the write.
        """
        rows = decode_request(
            body, content_type=content_type, content_encoding=content_encoding, max_bytes=max_bytes
        )
        if not rows:
            return 0
        received_at = self._clock.now()
        values = [{**row, "received_at": received_at} for row in rows]
        try:
            with self._sessions.begin() as session:
                session.execute(insert(Span), values)
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not store {len(rows)} spans: {exc}") from exc
        return len(rows)

    def collect(self, query: SpanQuery) -> ReleaseData:
        """Stream the matching rows through the aggregator in batches of ``STREAM_BATCH``."""
        aggregator = Aggregator(warmup=query.warmup)
        statement = select(*_ROW_COLUMNS).where(*_filters(query))
        try:
            with self._sessions.begin() as session:
                result = session.execute(statement.execution_options(yield_per=STREAM_BATCH))
                for batch in result.partitions():
                    aggregator.add_many(_rows(batch))
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not read spans of {query}: {exc}") from exc
        return aggregator.result()

    def prune(self, older_than: datetime, *, max_spans: int | None = None) -> int:
        """Delete spans received before ``older_than``, then the oldest beyond ``max_spans``.

        Returns:
            How many spans were deleted.

        Raises:
            BackendUnavailable: the database refused the delete.
        """
        try:
            with self._sessions.begin() as session:
                deleted = _rowcount(
                    session.execute(delete(Span).where(Span.received_at < older_than))
                )
                if max_spans is not None:
                    # Ids grow with arrival: the row max_spans places below the newest is the
                    # newest one to drop.
                    cut = session.scalar(
                        select(Span.id).order_by(Span.id.desc()).offset(max_spans).limit(1)
                    )
                    if cut is not None:
                        deleted += _rowcount(session.execute(delete(Span).where(Span.id <= cut)))
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not prune spans: {exc}") from exc
        return deleted


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))


def _filters(query: SpanQuery) -> list[ColumnElement[bool]]:
    where = [
        Span.service == query.service,
        Span.version == query.version,
        Span.start_ns >= to_ns(query.start),
        Span.start_ns < to_ns(query.end),
    ]
    if query.environment is not None:
        # Spans from services that do not set deployment.environment belong to every
        # environment: a release must not look unused because the SDK left the attribute out.
        where.append(or_(Span.environment == query.environment, Span.environment.is_(None)))
    if query.span_name is not None:
        where.append(Span.name == query.span_name)
    return where


def _rows(batch: Sequence[Row[Any]]) -> Iterator[SpanRow]:
    """Database rows as span rows (the columns are :data:`SpanRow`'s keys, in order)."""
    for row in batch:
        yield cast(SpanRow, dict(zip(_ROW_KEYS, row, strict=True)))
