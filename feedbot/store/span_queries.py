"""Every statement the embedded trace backend runs against the ``spans`` table.

Functions take a Session; callers commit (and turn database errors into backend errors). They
are here rather than in :mod:`feedbot.backends.embedded` so SQL stays in the store and the
backends never touch the ORM tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedbot.spans.aggregate import to_ns
from feedbot.spans.model import SpanQuery
from feedbot.spans.rows import SpanRow
from feedbot.store.spans import Span

_ROW_KEYS = tuple(SpanRow.__annotations__)
_ROW_COLUMNS = tuple(getattr(Span, key) for key in _ROW_KEYS)


def insert_spans(session: Session, rows: Sequence[SpanRow], received_at: datetime) -> None:
    """Insert ``rows`` in bulk, each stamped with ``received_at``; a span already stored is kept.

    A span is its ``(trace_id, span_id)``: exporters retry a batch they got no answer for, and
    the copy is skipped (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL), so it is never
    counted twice. The first copy stored wins.
    """
    values = [{**row, "received_at": received_at} for row in rows]
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(Span).on_conflict_do_nothing(index_elements=["trace_id", "span_id"])
    session.execute(statement, values)


def span_rows(session: Session, query: SpanQuery, *, batch: int) -> Iterator[SpanRow]:
    """The rows matching ``query``, filtered in SQL on the service, version and start index.

    Rows are fetched ``batch`` at a time (a server-side cursor on PostgreSQL) and streamed.
    """
    statement = select(*_ROW_COLUMNS).where(*_filters(query))
    result = session.execute(statement.execution_options(yield_per=batch))
    for rows in result.partitions():
        yield from _rows(rows)


def version_counts(
    session: Session, service: str, start: datetime, end: datetime, environment: str | None
) -> dict[str, int]:
    """Spans per version of ``service`` starting in ``[start, end)`` (versioned spans only).

    Spans that name no environment count for every environment, as in :func:`span_rows`.
    """
    where = [
        Span.service == service,
        Span.version.is_not(None),
        Span.version != "",
        Span.start_ns >= to_ns(start),
        Span.start_ns < to_ns(end),
    ]
    if environment is not None:
        where.append(or_(Span.environment == environment, Span.environment.is_(None)))
    statement = select(Span.version, func.count()).where(*where).group_by(Span.version)
    return {str(version): int(n) for version, n in session.execute(statement)}


def environment_version_counts(
    session: Session, service: str, start: datetime, end: datetime
) -> dict[tuple[str | None, str | None], int]:
    """Spans of ``service`` starting in ``[start, end)`` per (environment, version)."""
    where = [Span.service == service, Span.start_ns >= to_ns(start), Span.start_ns < to_ns(end)]
    statement = (
        select(Span.environment, Span.version, func.count())
        .where(*where)
        .group_by(Span.environment, Span.version)
    )
    return {
        (env or None, version or None): int(n) for env, version, n in session.execute(statement)
    }


def prune_spans(session: Session, older_than: datetime, *, max_spans: int | None = None) -> int:
    """Delete spans received before ``older_than``, then the oldest beyond ``max_spans``.

    Returns:
        How many spans were deleted.
    """
    deleted = _rowcount(session.execute(delete(Span).where(Span.received_at < older_than)))
    if max_spans is not None:
        # Ids grow with arrival: the row max_spans places below the newest is the newest one
        # to drop.
        cut = session.scalar(select(Span.id).order_by(Span.id.desc()).offset(max_spans).limit(1))
        if cut is not None:
            deleted += _rowcount(session.execute(delete(Span).where(Span.id <= cut)))
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
