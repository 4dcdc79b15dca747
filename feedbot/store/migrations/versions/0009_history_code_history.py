"""code_keys and code_history: what each check saw per operation, function and file

Revision ID: 0009_history
Revises: 0008_scale
Create Date: 2026-12-07 12:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_history"
down_revision: str | Sequence[str] | None = "0008_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``code_keys`` (the catalogue) and ``code_history`` (one row per key and release)."""
    op.create_table(
        "code_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("short", sa.String(length=500), nullable=False),
        sa.Column("file", sa.String(length=500), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_keys")),
        sa.UniqueConstraint("service", "kind", "name", name=op.f("uq_code_keys_service")),
    )
    op.create_index(op.f("ix_code_keys_short"), "code_keys", ["short"])
    op.create_table(
        "code_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("p50_ms", sa.Float(), nullable=True),
        sa.Column("p95_ms", sa.Float(), nullable=True),
        sa.Column("callers", sa.JSON(), nullable=False),
        sa.Column("exceptions", sa.JSON(), nullable=False),
        sa.Column("insights", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["code_keys.id"],
            name=op.f("fk_code_history_key_id_code_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_code_history_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_history")),
        sa.UniqueConstraint("key_id", "release_id", name=op.f("uq_code_history_key_id")),
    )
    op.create_index("ix_code_history_key_at", "code_history", ["key_id", "at"])
    op.create_index(op.f("ix_code_history_at"), "code_history", ["at"])
    op.create_index(op.f("ix_code_history_release_id"), "code_history", ["release_id"])


def downgrade() -> None:
    """Drop ``code_history`` and ``code_keys``."""
    op.drop_table("code_history")
    op.drop_table("code_keys")
