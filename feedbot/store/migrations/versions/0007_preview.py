"""previews: the functions a pull request previewed, for the deploy's check to link back

Revision ID: 0007_preview
Revises: 0006
Create Date: 2026-12-07 12:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_preview"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``previews``, one row per service and previewed head commit."""
    op.create_table(
        "previews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("repository", sa.String(length=300), nullable=True),
        sa.Column("pull_request", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("functions", sa.JSON(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_previews")),
        sa.UniqueConstraint("service", "commit", name=op.f("uq_previews_service")),
    )
    op.create_index(op.f("ix_previews_service"), "previews", ["service"], unique=False)


def downgrade() -> None:
    """Drop ``previews``."""
    op.drop_index(op.f("ix_previews_service"), table_name="previews")
    op.drop_table("previews")
