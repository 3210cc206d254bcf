"""tapers.timezone, tapers.first_dose_time: a step takes effect on the patient's own date

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for every taper so far: its steps keep taking effect at 00:00 UTC of their date.
    with op.batch_alter_table("tapers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("first_dose_time", sa.Time(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tapers", schema=None) as batch_op:
        batch_op.drop_column("first_dose_time")
        batch_op.drop_column("timezone")
