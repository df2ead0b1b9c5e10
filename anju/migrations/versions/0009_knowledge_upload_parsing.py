"""knowledge uploads parsed by a worker: a source's parse status, its reason, the pending upload

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_source", schema=None) as batch_op:
        # Every source stored before this was parsed in its request: ready.
        batch_op.add_column(
            sa.Column(
                "status",
                sa.Enum("parsing", "ready", "failed", name="sourcestatus", native_enum=False, length=16),
                nullable=False,
                server_default="ready",
            )
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("row_errors", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("pending_content", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("pending_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending_filename", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("pending_scope", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("parse_attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("knowledge_source", schema=None) as batch_op:
        for column in (
            "parse_attempts",
            "pending_scope",
            "pending_filename",
            "pending_sha256",
            "pending_content",
            "row_errors",
            "error",
            "status",
        ):
            batch_op.drop_column(column)
