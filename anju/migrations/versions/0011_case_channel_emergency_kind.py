"""a case records its channel and its emergency's kind as columns, and may link the case it interrupted

Before, the emergency's kind was parsed out of ``reason`` ("emergency:火灾") and a case's channel
was read through its conversation. An emergency raised during an open complaint was merged into
the complaint; it is now a case of its own, linked to the complaint.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalation_case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("emergency_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("linked_case_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_escalation_case_linked_case_id", "escalation_case", ["linked_case_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip
    # The existing rows: the kind from the reason, the channel from the conversation.
    op.execute(
        "UPDATE escalation_case SET emergency_kind = substr(reason, 11) WHERE reason LIKE 'emergency:%'"
    )
    op.execute(
        "UPDATE escalation_case SET channel = (SELECT conversation.channel FROM conversation"
        " WHERE conversation.id = escalation_case.conversation_id) WHERE conversation_id IS NOT NULL"
    )
    op.execute(
        "UPDATE escalation_case SET channel = 'staff' WHERE channel IS NULL AND reason = 'opened by agent'"
    )


def downgrade() -> None:
    with op.batch_alter_table("escalation_case", schema=None) as batch_op:
        batch_op.drop_constraint("fk_escalation_case_linked_case_id", type_="foreignkey")
        batch_op.drop_column("linked_case_id")
        batch_op.drop_column("emergency_kind")
        batch_op.drop_column("channel")
