"""event_feed: what the live-update streams (server-sent events) tell clinicians and patients

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.chassis.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_feed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("audience", sa.String(length=10), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("escalation_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", services.chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("event_feed", schema=None) as batch_op:
        batch_op.create_index("ix_event_feed_audience_id", ["audience", "id"], unique=False)
        batch_op.create_index("ix_event_feed_patient_id_id", ["patient_id", "id"], unique=False)
        batch_op.create_index("ix_event_feed_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event_feed", schema=None) as batch_op:
        batch_op.drop_index("ix_event_feed_created_at")
        batch_op.drop_index("ix_event_feed_patient_id_id")
        batch_op.drop_index("ix_event_feed_audience_id")
    op.drop_table("event_feed")
