"""Scheduler's tables. It owns its database; the chassis adds outbox/inbox/timers/audit."""

from __future__ import annotations

import sqlalchemy as sa

from services.chassis.db import UtcDateTime, add_chassis_tables

metadata = sa.MetaData()
add_chassis_tables(metadata)

Dose = sa.Numeric(12, 4)

tapers = sa.Table(
    "tapers",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("plan_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("drug", sa.String(40), nullable=False),
    sa.Column("half_life_class", sa.String(20), nullable=False),
    sa.Column("start_daily_dose_mg", Dose, nullable=False),
    sa.Column("current_daily_dose_mg", Dose, nullable=False),
    sa.Column("held", sa.Boolean, nullable=False, default=False),
    sa.Column("held_reason", sa.String(40), nullable=True),
    sa.Column("stage", sa.String(20), nullable=False),
    # Optimistic locking: every update says which version it read (a stale write changes nothing).
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # The day's doses [{"drug", "dose_mg"}] (null: one dose of ``drug``, a taper started by total)
    # and the equivalence the plan used {drug: mg equal to 10 mg diazepam} (null: one drug).
    sa.Column("regimen", sa.JSON, nullable=True),
    sa.Column("equivalence", sa.JSON, nullable=True),
    # The patient's day (issue 13, 12a): IANA time zone and local time of the first dose; a step
    # takes effect then on its date (``domain.patient_day``). Both null: 00:00 UTC, as before.
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("first_dose_time", sa.Time, nullable=True),
)

clinician_decisions = sa.Table(
    "clinician_decisions",
    metadata,
    # Append-only: the code never updates or deletes a decision.
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("clinician", sa.String(100), nullable=False),  # the decider's subject
    sa.Column("kind", sa.String(20), nullable=False),  # model.DecisionKind
    # Who decided: a clinician, or the patient (a hold request is the only patient decision).
    sa.Column("decided_by_role", sa.String(20), nullable=False, server_default="clinician"),
    sa.Column("reason_code", sa.String(40), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),  # the decided values and any override code
    sa.Column("decided_at", UtcDateTime, nullable=False),
)

dose_steps = sa.Table(
    "dose_steps",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("plan_id", sa.Uuid, nullable=False),
    sa.Column("step_number", sa.Integer, nullable=False),
    sa.Column("previous_daily_dose_mg", Dose, nullable=False),
    sa.Column("new_daily_dose_mg", Dose, nullable=False),
    sa.Column("effective_on", sa.Date, nullable=False),
    sa.Column("decision_id", sa.Uuid, sa.ForeignKey("clinician_decisions.id"), nullable=False),
    sa.Column("overridden", sa.Boolean, nullable=False, default=False),
    # scheduled | emitted | blocked_by_hold | cancelled
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("emitted_at", UtcDateTime, nullable=True),
    sa.Column("event_id", sa.Uuid, nullable=True),  # the DoseReduced that announced it
    # The drug the step changes, its kind (model.ChangeKind) and the whole day before and after
    # ([{"drug", "dose_mg"}]); null on steps stored before crossovers could be scheduled.
    sa.Column("drug", sa.String(40), nullable=True),
    sa.Column("kind", sa.String(20), nullable=True),
    sa.Column("regimen_before", sa.JSON, nullable=True),
    sa.Column("regimen_after", sa.JSON, nullable=True),
    sa.UniqueConstraint("plan_id", "step_number", name="uq_dose_steps_plan_step"),
)

# --- plans (issue 3) --------------------------------------------------------------------------
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    # draft | approved | active | completed | maintenance | cancelled
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("input", sa.JSON, nullable=False),  # the planning input as given (no identifiers)
    sa.Column("strategy", sa.String(40), nullable=False),
    sa.Column("reference_versions", sa.JSON, nullable=False),
    # The planner's result besides the steps: risk, pace, bound, equivalence, needs, notes.
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column(
        "approved_by_decision_id",
        sa.Uuid,
        sa.ForeignKey("clinician_decisions.id"),
        nullable=True,
    ),
    sa.Column("approved_at", UtcDateTime, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),  # optimistic locking, like tapers
    # planned: the planner's plan a clinician approved | manual: one reduction a clinician
    # scheduled by hand (``POST /dose-reductions``), a one-step plan approved by that decision,
    # never listed or read as a plan.
    sa.Column("kind", sa.String(20), nullable=False, server_default="planned"),
)

plan_steps = sa.Table(
    "plan_steps",
    metadata,
    sa.Column("plan_id", sa.Uuid, sa.ForeignKey("plans.id"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("effective_on", sa.Date, nullable=False),
    sa.Column("daily_dose_mg", Dose, nullable=False),  # total mg of the day's administrations
    sa.Column("diazepam_eq_mg", Dose, nullable=False),
    sa.Column("administrations", sa.JSON, nullable=False),  # [{"drug", "dose_mg"}]
    sa.Column("kind", sa.String(20), nullable=False),  # crossover | reduction | final
    sa.Column("hold_weeks", sa.Integer, nullable=False),
    # planned | scheduled | emitted | blocked_by_hold | cancelled
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("dose_step_id", sa.Uuid, nullable=True),  # the taper's dose step once emitted
    # The day this step was planned from [{"drug", "dose_mg"}]: a resume re-plans the rest when
    # the patient no longer takes it (after a return to the prior dose). Null: the previous step.
    sa.Column("planned_from", sa.JSON, nullable=True),
)
