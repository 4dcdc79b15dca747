"""spans: packed_attributes, the attributes a check reads, packed once at ingest

Revision ID: 0010_scale10
Revises: 0009_history
Create Date: 2026-12-07 14:30:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_scale10"
down_revision: str | Sequence[str] | None = "0009_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``packed_attributes`` (nullable, no backfill).

    A check read each span's attributes through ``json_each`` (half of its SQL time); the text
    it built is now written at ingest. Rows stored before have NULL, and a check still packs
    theirs in SQL (see ``feedbot.store.span_queries.span_column_rows``), so nothing is rewritten.
    """
    op.add_column("spans", sa.Column("packed_attributes", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    op.drop_column("spans", "packed_attributes")
