"""deliveries: a claim (attempt number, lease) committed before each provider call, and how
often a delivery was found in doubt after a crash

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.chassis.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column(
                "claimed_at", services.chassis.db.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "lease_expires_at", services.chassis.db.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("doubts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("doubts")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claim")
