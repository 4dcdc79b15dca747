"""acknowledgements and mutes (Slack buttons)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``acknowledgements`` (findings marked expected) and ``mutes`` (quiet services)."""
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("finding_key", sa.String(length=1000), nullable=False),
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_acknowledgements_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acknowledgements")),
        sa.UniqueConstraint(
            "release_id", "finding_key", name=op.f("uq_acknowledgements_release_id")
        ),
    )
    op.create_index(
        op.f("ix_acknowledgements_release_id"), "acknowledgements", ["release_id"], unique=False
    )
    op.create_table(
        "mutes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mutes")),
    )
    op.create_index(op.f("ix_mutes_service"), "mutes", ["service"], unique=False)


def downgrade() -> None:
    """Drop ``mutes`` and ``acknowledgements``."""
    op.drop_index(op.f("ix_mutes_service"), table_name="mutes")
    op.drop_table("mutes")
    op.drop_index(op.f("ix_acknowledgements_release_id"), table_name="acknowledgements")
    op.drop_table("acknowledgements")
