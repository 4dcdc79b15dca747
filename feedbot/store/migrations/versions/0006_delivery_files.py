"""deliveries.file_name, file_title, file_data: images uploaded into a thread

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 10:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the file columns of ``deliveries`` (NULL: existing rows are messages, not files)."""
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("file_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("file_title", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("file_data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Drop the file columns of ``deliveries``."""
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("file_data")
        batch.drop_column("file_title")
        batch.drop_column("file_name")
