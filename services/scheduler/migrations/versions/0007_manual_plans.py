"""plans.kind: a manual reduction is a one-step plan; pending legacy single steps become one

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:40:00

Before this revision ``POST /dose-reductions`` armed an ``emit_dose_step`` timer keyed by the dose
step's id. Each such timer still pending (not fired, cancelled or failed) whose step is still
``scheduled`` becomes what the same request makes now: a plan of kind ``manual``, active, approved
by the step's ``reduce`` decision, with one plan step carrying the dose step's id, and an
``emit_plan_step`` timer due at the same moment. The old timer is cancelled.
"""

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from alembic import op

from services.chassis.db import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_KIND = "emit_dose_step"
PLAN_STEP_KIND = "emit_plan_step"


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="planned")
        )
    _pending_steps_to_manual_plans(op.get_bind())


def downgrade() -> None:
    _manual_plans_to_pending_steps(op.get_bind())
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("kind")


def _manual_plans_to_pending_steps(bind: sa.Connection) -> None:
    """Back to the single-step timers: each manual plan's step still scheduled gets its
    ``emit_dose_step`` timer again (due when its plan-step timer was), and the manual plans go
    (the older version would read them as plans)."""
    timers, steps, _, _, plans, plan_steps = _tables()
    now = datetime.now(UTC)
    manual = list(bind.scalars(sa.select(plans.c.id).where(plans.c.kind == "manual")))
    for plan_id in manual:
        step = (
            bind.execute(
                sa.select(plan_steps).where(
                    plan_steps.c.plan_id == plan_id, plan_steps.c.status == "scheduled"
                )
            )
            .mappings()
            .first()
        )
        pending = sa.and_(
            timers.c.kind == PLAN_STEP_KIND,
            timers.c.key.like(f"{plan_id}:%"),
            timers.c.fired_at.is_(None),
            timers.c.cancelled_at.is_(None),
            timers.c.failed_at.is_(None),
        )
        timer = bind.execute(sa.select(timers).where(pending)).mappings().first()
        if step is not None and timer is not None:
            legacy = (timers.c.kind == LEGACY_KIND, timers.c.key == str(step["dose_step_id"]))
            again = {"due_at": timer["due_at"], "attempts": 0, "fired_at": None}
            # (kind, key) is unique: a timer this revision cancelled on the way up is re-armed.
            rearmed = bind.execute(
                sa.update(timers).where(*legacy).values(**again, cancelled_at=None)
            )
            if rearmed.rowcount == 0:
                bind.execute(
                    sa.insert(timers).values(
                        id=uuid.uuid4(),
                        kind=LEGACY_KIND,
                        key=str(step["dose_step_id"]),
                        payload=_json(timer["payload"]),
                        trace_headers=_json(timer["trace_headers"]) or {},
                        **again,
                    )
                )
        bind.execute(sa.update(timers).where(pending).values(cancelled_at=now))
        bind.execute(sa.delete(plan_steps).where(plan_steps.c.plan_id == plan_id))
        bind.execute(sa.delete(plans).where(plans.c.id == plan_id))


def _tables() -> tuple[sa.TableClause, ...]:
    """The columns this revision reads and writes, as they are at this revision."""
    c = sa.column
    return (
        sa.table(
            "timers",
            c("id", sa.Uuid),
            c("kind", sa.String),
            c("key", sa.String),
            c("due_at", UtcDateTime),
            c("payload", sa.JSON),
            c("trace_headers", sa.JSON),
            c("attempts", sa.Integer),
            c("fired_at", UtcDateTime),
            c("cancelled_at", UtcDateTime),
            c("failed_at", UtcDateTime),
        ),
        sa.table(
            "dose_steps",
            c("id", sa.Uuid),
            c("patient_id", sa.Uuid),
            c("previous_daily_dose_mg", sa.Numeric(12, 4)),
            c("new_daily_dose_mg", sa.Numeric(12, 4)),
            c("effective_on", sa.Date),
            c("decision_id", sa.Uuid),
            c("status", sa.String),
            c("created_at", UtcDateTime),
            c("drug", sa.String),
            c("kind", sa.String),
            c("regimen_before", sa.JSON),
            c("regimen_after", sa.JSON),
        ),
        sa.table(
            "tapers",
            c("patient_id", sa.Uuid),
            c("drug", sa.String),
            c("equivalence", sa.JSON),
        ),
        sa.table("clinician_decisions", c("id", sa.Uuid), c("clinician", sa.String)),
        sa.table(
            "plans",
            c("id", sa.Uuid),
            c("patient_id", sa.Uuid),
            c("status", sa.String),
            c("kind", sa.String),
            c("input", sa.JSON),
            c("strategy", sa.String),
            c("reference_versions", sa.JSON),
            c("summary", sa.JSON),
            c("created_by", sa.String),
            c("created_at", UtcDateTime),
            c("approved_by_decision_id", sa.Uuid),
            c("approved_at", UtcDateTime),
            c("version", sa.Integer),
        ),
        sa.table(
            "plan_steps",
            c("plan_id", sa.Uuid),
            c("number", sa.Integer),
            c("effective_on", sa.Date),
            c("daily_dose_mg", sa.Numeric(12, 4)),
            c("diazepam_eq_mg", sa.Numeric(12, 4)),
            c("administrations", sa.JSON),
            c("kind", sa.String),
            c("hold_weeks", sa.Integer),
            c("status", sa.String),
            c("dose_step_id", sa.Uuid),
            c("planned_from", sa.JSON),
        ),
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _pending_steps_to_manual_plans(bind: sa.Connection) -> None:
    timers, steps, tapers, decisions, plans, plan_steps = _tables()
    now = datetime.now(UTC)
    pending = bind.execute(
        sa.select(timers).where(
            timers.c.kind == LEGACY_KIND,
            timers.c.fired_at.is_(None),
            timers.c.cancelled_at.is_(None),
            timers.c.failed_at.is_(None),
        )
    ).mappings()
    for timer in list(pending):
        try:
            step_id = uuid.UUID(timer["key"])
        except ValueError:
            continue  # never a step: the old handler refused it too
        step = (
            bind.execute(sa.select(steps).where(steps.c.id == step_id, steps.c.status == "scheduled"))
            .mappings()
            .first()
        )
        if step is None:
            continue  # taken, blocked or cancelled: firing it would have changed nothing
        taper = bind.execute(
            sa.select(tapers).where(tapers.c.patient_id == step["patient_id"])
        ).mappings().one()
        clinician = bind.scalar(
            sa.select(decisions.c.clinician).where(decisions.c.id == step["decision_id"])
        )
        drug = step["drug"] or taper["drug"]
        after = _json(step["regimen_after"]) or [
            {"drug": drug, "dose_mg": str(Decimal(step["new_daily_dose_mg"]))}
        ]
        before = _json(step["regimen_before"]) or [
            {"drug": drug, "dose_mg": str(Decimal(step["previous_daily_dose_mg"]))}
        ]
        equivalence = _json(taper["equivalence"]) or {}
        plan_id = uuid.uuid4()
        bind.execute(
            sa.insert(plans).values(
                id=plan_id,
                patient_id=step["patient_id"],
                status="active",
                kind="manual",
                input={},
                strategy="manual",
                reference_versions={},
                summary={"drug": drug},
                created_by=clinician or "unknown",
                created_at=step["created_at"],
                approved_by_decision_id=step["decision_id"],
                approved_at=step["created_at"],
                version=1,
            )
        )
        bind.execute(
            sa.insert(plan_steps).values(
                plan_id=plan_id,
                number=1,
                effective_on=step["effective_on"],
                daily_dose_mg=sum((Decimal(a["dose_mg"]) for a in after), Decimal(0)),
                diazepam_eq_mg=_diazepam_eq(after, equivalence),
                administrations=after,
                kind=step["kind"] or ("final" if Decimal(step["new_daily_dose_mg"]) == 0 else "reduction"),
                hold_weeks=0,
                status="scheduled",
                dose_step_id=step_id,
                planned_from=before,
            )
        )
        bind.execute(
            sa.update(timers).where(timers.c.id == timer["id"]).values(cancelled_at=now)
        )
        bind.execute(
            sa.insert(timers).values(
                id=uuid.uuid4(),
                kind=PLAN_STEP_KIND,
                key=f"{plan_id}:1",
                due_at=timer["due_at"],
                payload=_json(timer["payload"]),
                trace_headers=_json(timer["trace_headers"]) or {},
                attempts=0,
            )
        )


def _diazepam_eq(regimen: list[dict[str, Any]], equivalence: dict[str, Any]) -> Decimal:
    """As the taper counts it: mg equal to 10 mg diazepam per drug; a drug without one as mg."""
    total = Fraction(0)
    for a in regimen:
        per_10 = equivalence.get(a["drug"])
        dose = Fraction(Decimal(a["dose_mg"]))
        total += dose * (Fraction(10) / Fraction(Decimal(per_10)) if per_10 else 1)
    return Decimal(total.numerator) / Decimal(total.denominator)
