"""spans: an index on (service, start_ns, version, environment) for counting versions

Revision ID: 0008_scale
Revises: 0007_preview
Create Date: 2026-12-07 12:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_scale"
down_revision: str | Sequence[str] | None = "0007_preview"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index what a check's baseline search and census read: one service's spans in a window.

    ``ix_spans_service_version_start_ns`` serves one version's spans; counting the versions of a
    service in a window (``version_counts``, ``environment_version_counts``) reads a range of
    this one instead, from the index alone, where it scanned the table on PostgreSQL.
    """
    op.create_index(
        "ix_spans_service_start_ns_version",
        "spans",
        ["service", "start_ns", "version", "environment"],
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_spans_service_start_ns_version", table_name="spans")
