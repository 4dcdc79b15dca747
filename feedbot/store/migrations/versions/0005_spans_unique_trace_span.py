"""spans: one row per (trace_id, span_id), so an exporter's retry is stored once

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 05:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop stored duplicates (keeping the first row), then make ``(trace_id, span_id)`` unique.

    The unique index replaces ``ix_spans_trace_id``: trace lookups use its first column.
    """
    spans = sa.table("spans", sa.column("id"), sa.column("trace_id"), sa.column("span_id"))
    first = (
        sa.select(sa.func.min(spans.c.id))
        .group_by(spans.c.trace_id, spans.c.span_id)
        .scalar_subquery()
    )
    op.execute(spans.delete().where(spans.c.id.not_in(first)))
    op.drop_index("ix_spans_trace_id", table_name="spans")
    op.create_index(
        "uq_spans_trace_id_span_id", "spans", ["trace_id", "span_id"], unique=True
    )


def downgrade() -> None:
    """Back to a plain index on ``trace_id`` (duplicates may be stored again)."""
    op.drop_index("uq_spans_trace_id_span_id", table_name="spans")
    op.create_index("ix_spans_trace_id", "spans", ["trace_id"])
