"""audit_log append-only: the database refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:00:00
"""

from collections.abc import Sequence

from alembic import op

from services.chassis.db import audit_log_append_only_ddl

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in audit_log_append_only_ddl(op.get_context().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in audit_log_append_only_ddl(op.get_context().dialect.name, remove=True):
        op.execute(statement)
