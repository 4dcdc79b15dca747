"""The default trace backend: spans sent to feedbot over OTLP/HTTP, kept in its own database.

Differs from the other backends in that feedbot is the store: :meth:`EmbeddedBackend.ingest`
writes what ``POST /v1/traces`` receives, :meth:`EmbeddedBackend.prune` enforces
``traces.retention``. Counting happens in SQL; durations come back as one column, split into
per-group numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Engine, case, delete, func, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from feedbot.backends.base import ReleaseData, SpanGroupStats, SpanQuery
from feedbot.backends.otlp import decode_request
from feedbot.clock import Clock, SystemClock
from feedbot.errors import BackendUnavailable
from feedbot.store.spans import Span

#: The largest request accepted after decompression (the OTLP spec's recommended limit).
MAX_DECODED_BYTES = 64 * 1024 * 1024
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GROUP_KEYS = (Span.name, Span.kind, Span.method, Span.route)

Durations = npt.NDArray[np.float64]


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
        """Per-group counts, errors and durations (exceptions, code and N+1 data: not yet)."""
        return ReleaseData(groups=self.group_stats(query))

    def group_stats(self, query: SpanQuery) -> list[SpanGroupStats]:
        """Groups are span name and kind; SERVER spans with ``http.route`` are "METHOD route"."""
        try:
            with self._sessions.begin() as session:
                _consistent_snapshot(session)
                where = _filters(query)
                counts = session.execute(
                    select(*_GROUP_KEYS, func.count(), func.sum(case((Span.is_error, 1), else_=0)))
                    .where(*where)
                    .group_by(*_GROUP_KEYS)
                    .order_by(*_GROUP_KEYS)
                ).all()
                total = sum(row[4] for row in counts)
                column = session.scalars(
                    select(Span.duration_ns).where(*where).order_by(*_GROUP_KEYS)
                )
                durations = np.fromiter(column, dtype=np.float64, count=total) / 1e6
        except (SQLAlchemyError, ValueError) as exc:
            # ValueError: fewer rows than counted, which a consistent snapshot rules out.
            raise BackendUnavailable(f"embedded: could not read spans of {query}: {exc}") from exc
        if not counts:
            return []
        return _merge(counts, np.split(durations, np.cumsum([row[4] for row in counts])[:-1]))

    def prune(self, older_than: datetime) -> int:
        """Delete spans received before ``older_than``; returns how many were deleted.

        Raises:
            BackendUnavailable: the database refused the delete.
        """
        try:
            with self._sessions.begin() as session:
                result = session.execute(delete(Span).where(Span.received_at < older_than))
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"embedded: could not prune spans: {exc}") from exc
        return int(getattr(result, "rowcount", 0))


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime, without float rounding."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} given as a span query bound")
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


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


def _consistent_snapshot(session: Session) -> None:
    """Make the count and duration queries see the same rows.

    SQLite read transactions are snapshots already. PostgreSQL's default (READ COMMITTED) takes a
    new snapshot per statement, so ask for REPEATABLE READ, unless the session runs on a
    connection someone else already began (tests wrap each test in an outer transaction).
    """
    bind = session.get_bind()
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def group_label(name: str, kind: str, method: str | None, route: str | None) -> str:
    """The name a group is reported under: "METHOD route" for routed SERVER spans."""
    if kind == "SERVER" and route:
        return f"{method} {route}" if method else route
    return name


def _merge(counts: Sequence[Any], durations: list[Durations]) -> list[SpanGroupStats]:
    """Fold SQL groups (name, kind, method, route) into reported groups, largest first."""
    merged: dict[tuple[str, str], tuple[int, int, list[Durations]]] = {}
    for (name, kind, method, route, count, errors), values in zip(counts, durations, strict=True):
        key = (group_label(name, kind, method, route), kind)
        seen_count, seen_errors, arrays = merged.get(key, (0, 0, []))
        merged[key] = (seen_count + count, seen_errors + int(errors or 0), [*arrays, values])
    stats = [
        SpanGroupStats(
            name=label,
            kind=kind,
            count=count,
            errors=errors,
            durations_ms=np.concatenate(arrays) if len(arrays) > 1 else arrays[0],
        )
        for (label, kind), (count, errors, arrays) in merged.items()
    ]
    return sorted(stats, key=lambda s: (-s.count, s.name, s.kind))
