"""exception_types (exception history) and changes.traced

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``exception_types`` and add ``changes.traced`` (empty for existing rows)."""
    op.create_table(
        "exception_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("span", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=300), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exception_types")),
        sa.UniqueConstraint(
            "service",
            "environment",
            "version",
            "span",
            "type",
            name=op.f("uq_exception_types_service"),
        ),
    )
    # SQLite adds a NOT NULL column only with a default; existing changes named no traced code.
    with op.batch_alter_table("changes") as batch:
        batch.add_column(
            sa.Column("traced", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    """Drop ``changes.traced`` and ``exception_types``."""
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("traced")
    op.drop_table("exception_types")
