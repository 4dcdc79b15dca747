"""Spans received by the embedded trace backend (``POST /v1/traces``).

One row per span, written in bulk by :class:`feedbot.backends.embedded.EmbeddedBackend` and
queried by service, version and start time, through the statements of
:mod:`feedbot.store.span_queries`. Rows are pruned after ``traces.retention``. A row's values
are a :class:`feedbot.spans.rows.SpanRow`; the column widths are its ``LIMITS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from feedbot.spans.rows import LIMITS
from feedbot.store.models import Base


class Span(Base):
    """One received span.

    ``kind`` is ``SERVER``, ``CLIENT``, ``INTERNAL``, ``PRODUCER`` or ``CONSUMER``. ``route`` and
    ``method`` come from ``http.route`` and ``http.request.method`` (or ``http.method``) so
    server spans can be grouped in SQL. ``attributes`` holds the span's own attributes, bounded;
    ``events`` only its exception events (``exception`` or ``*.exception``).
    ``packed_attributes`` is what a check reads of ``attributes``, written at ingest so a check
    does not unpack every span's JSON in SQL.
    """

    __tablename__ = "spans"
    __table_args__ = (
        Index("ix_spans_service_version_start_ns", "service", "version", "start_ns"),
        # Counting a service's versions in a window reads this range alone (index-only).
        Index("ix_spans_service_start_ns_version", "service", "start_ns", "version", "environment"),
        # An exporter retries a batch it got no answer for: the same span is stored once.
        Index("uq_spans_trace_id_span_id", "trace_id", "span_id", unique=True),
        Index("ix_spans_received_at", "received_at"),
    )

    # Integer on SQLite so the key is the rowid alias and autoincrements.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    parent_span_id: Mapped[str | None] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(LIMITS["service"]))
    version: Mapped[str | None] = mapped_column(String(LIMITS["version"]))
    environment: Mapped[str | None] = mapped_column(String(LIMITS["environment"]))
    instance: Mapped[str | None] = mapped_column(String(LIMITS["instance"]))
    name: Mapped[str] = mapped_column(String(LIMITS["name"]))
    kind: Mapped[str] = mapped_column(String(16))
    route: Mapped[str | None] = mapped_column(String(LIMITS["route"]))
    method: Mapped[str | None] = mapped_column(String(LIMITS["method"]))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    is_error: Mapped[bool] = mapped_column(Boolean)
    attributes: Mapped[dict[str, Any]]
    events: Mapped[list[Any]]
    received_at: Mapped[datetime]
    #: The attributes a check reads, packed at ingest (``span_queries.pack_attributes``); NULL
    #: on rows stored before the column existed, or that the packing leaves to SQL.
    packed_attributes: Mapped[str | None] = mapped_column(Text)
