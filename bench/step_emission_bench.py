"""The scheduler's real due-step emission path against bare asyncpg doing the same writes.

``python -m bench.step_emission_bench`` loads N active, approved taper plans into a real PostgreSQL
(:class:`deploy.localstack.postgres.LocalPostgres` with ``fast=False``: fsync, synchronous_commit
and full_page_writes on; or ``TEST_POSTGRES_URL``, where it creates and drops its own
``stepbench_<id>_*`` databases), D of them with their next step due now, and measures emitting
those D steps, one transaction each, two ways in the same run:

* **chassis**: the scheduler's own ``TimerPoller`` (``runtime.timers`` of a runtime built by
  ``services.scheduler.bootstrap.bootstrap``, never started: no broker, no relay) with the real
  handlers (``emit_plan_step`` -> ``step_timer.emit_plan_step``) and a ``FrozenClock`` at the due
  time;
  ``fire_due()`` is called until it returns 0;
* **bare**: asyncpg, one transaction per due timer: claim it (``SELECT ... FOR UPDATE SKIP
  LOCKED``, the claim of ``bench.scheduler_bench``), read the plan step (+ the next one, + the
  plan's approval id) and the taper row, ``UPDATE tapers ... WHERE version = $n``, ``INSERT
  dose_steps``, ``INSERT outbox`` (a real ``DoseReduced`` serialised once, its ids varied),
  ``UPDATE plan_steps`` (this step emitted, the next one scheduled), ``INSERT`` the next step's
  timer, ``UPDATE timers SET fired_at``. No rule is checked and no history is read.

How the state is made: ONE plan is created and approved through the service layer
(``plans.create_plan`` / ``plans.approve_plan`` in ``runtime.uow()``; with ``--history K`` its
first K steps are then emitted by the real poller), which gives template rows for every table;
N-1 more patients are COPYed from those rows with fresh ids (asyncpg ``copy_records_to_table``,
JSON as text, ids also replaced inside JSON and the outbox payloads), the non-due ones shifted 1-28
days later. ``VACUUM ANALYZE``, then that database becomes the template of a fresh copy for every
repetition (``CREATE DATABASE ... TEMPLATE``), so every repetition starts from the same state.

After every repetition the script checks that the work was done (exactly D new ``DoseReduced``
outbox rows, D new emitted ``dose_steps``, D timers fired, D next-step timers armed, no failure)
and that both variants left the same state (a digest of tapers, dose steps, plan steps and pending
timers); a repetition that fails a check stops the run: no figure is reported for work not done.

Each variant runs ``--repeats`` times, alternating order; best and median steps/s, per-step p50/p99
and the 1-minute load average before each are recorded; one more chassis repetition (and one bare)
runs under cProfile to say where the time goes. Writes ``bench/results/step-emission-<date>.md``
(``--output``). Throughput is reported, never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import hashlib
import io
import json
import pstats
import random
import sys
import time as _time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa

from bench.harness.infra import Pg
from bench.harness.measure import load, median, pct
from bench.harness.payloads import CLAIM_SQL
from bench.machine import machine_info
from bench.report import write_results
from contracts import DoseReduced, TaperStage, topic_for
from services.chassis.clock import FrozenClock
from services.chassis.migrations import upgrade_to_head
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.codecs import regimen_from
from services.scheduler.bootstrap import bootstrap
from services.scheduler.domain.planning import plan
from services.scheduler.domain.taper_events import drug_doses
from services.scheduler.entrypoints.plans_api import PlanPreviewIn
from services.scheduler.service_layer import plans, step_timer
from services.scheduler.settings import SchedulerSettings

# The plan every patient follows (the body of tests/*/scheduler/test_plan_lifecycle.py).
BODY: dict[str, Any] = {
    "drug": "diazepam",
    "administrations_mg": ["5", "5"],
    "duration_weeks": 30,
    "age": 40,
    "formulations": ["diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"],
}
CLINICIAN = "clinician-bench"
# Parent tables first (foreign keys); serial keys are left to their defaults.
TABLES = (
    "clinician_decisions",
    "plans",
    "plan_steps",
    "tapers",
    "dose_steps",
    "outbox",
    "timers",
    "audit_log",
    "inbox",
)
SERIAL = {"outbox": "seq", "audit_log": "id"}
LIVE = ("planned", "scheduled", "blocked_by_hold")
KINDS = (step_timer.EMIT_PLAN_STEP,)  # the poller's handlers, its IN list (one door, issue 19)
VARIANTS = ("chassis", "bare")

# The claim of scheduler_bench, with the poller's kind (one since a manual reduction is a plan).
BARE_CLAIM = CLAIM_SQL
assert BARE_CLAIM != CLAIM_SQL
BARE_STEPS = (
    "SELECT s.number, s.effective_on, s.administrations, s.kind, s.status,"
    " p.approved_by_decision_id, p.status AS plan_status"
    " FROM plan_steps s JOIN plans p ON p.id = s.plan_id"
    " WHERE s.plan_id = $1 AND s.number >= $2"
    " AND s.status IN ('planned', 'scheduled', 'blocked_by_hold')"
    " ORDER BY s.number LIMIT 2"
)
BARE_TAPER = (
    "SELECT drug, current_daily_dose_mg, regimen, version, held FROM tapers WHERE patient_id = $1"
)
BARE_UPDATE_TAPER = (
    "UPDATE tapers SET current_daily_dose_mg = $2, regimen = $3, stage = $4, version = $5,"
    " updated_at = $6 WHERE patient_id = $1 AND version = $7"
)
BARE_INSERT_STEP = (
    "INSERT INTO dose_steps (id, patient_id, plan_id, step_number, previous_daily_dose_mg,"
    " new_daily_dose_mg, effective_on, decision_id, overridden, status, created_at, emitted_at,"
    " event_id, drug, kind, regimen_before, regimen_after)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, 'emitted', $9, $9, $10, $11, $12, $13, $14)"
)
BARE_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, topic, message_key, event_type, payload, headers, created_at)"
    " VALUES ($1, $2, $3, 'DoseReduced', $4, $5, $6)"
)
BARE_UPDATE_PLAN_STEPS = (
    "UPDATE plan_steps SET"
    " status = CASE WHEN number = $2 THEN 'emitted' ELSE 'scheduled' END,"
    " dose_step_id = CASE WHEN number = $2 THEN $3 ELSE dose_step_id END"
    " WHERE plan_id = $1 AND number = ANY($4::int[])"
)
BARE_INSERT_TIMER = (
    "INSERT INTO timers (id, kind, key, due_at, payload, trace_headers, attempts)"
    " VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (kind, key) DO NOTHING"
)
BARE_FIRED = "UPDATE timers SET fired_at = $1 WHERE id = $2"


# --------------------------------------------------------------------------------------------
# state: one real plan, copied
# --------------------------------------------------------------------------------------------


@dataclass
class Template:
    """The rows one real approved plan left in every table, and what the bare variant needs."""

    rows: dict[str, list[dict[str, Any]]]
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    decision_id: uuid.UUID
    start_on: date
    due_step: int  # the number of the plan step that is due now
    steps_in_plan: int
    payload: bytes  # a real DoseReduced for the due step, serialised once
    event_id: uuid.UUID


def _settings(pg: Pg, db: str) -> SchedulerSettings:
    return SchedulerSettings(
        database_url=pg.dsn(db, "postgresql+asyncpg"),
        environment="test",
        kafka_provision_topics=False,
        relay_enabled=False,
    )


async def make_template(pg: Pg, db: str, t0: datetime, history: int) -> Template:
    """Create and approve one plan through the service layer (and emit its first ``history``
    steps through the real poller) so that its step ``history + 1`` is due at ``t0``."""
    probe = PlanPreviewIn.model_validate({**BODY, "start_on": t0.date().isoformat()})
    probe_steps = plan(probe.to_input(), probe.strategy).steps
    if history >= len(probe_steps) - 1:
        raise SystemExit(f"--history must be below {len(probe_steps) - 1} for this plan")
    start_on = t0.date() - (probe_steps[history].effective_on - t0.date())
    clock = FrozenClock(datetime.combine(start_on, time(9), UTC))
    runtime = bootstrap(_settings(pg, db), clock=clock)
    patient = uuid.uuid4()
    try:
        await upgrade_to_head(runtime.engine, "scheduler")
        body = PlanPreviewIn.model_validate({**BODY, "start_on": start_on.isoformat()})
        async with runtime.uow() as uow:
            record = await plans.create_plan(
                plans.CreatePlan(
                    patient_id=patient,
                    clinician=CLINICIAN,
                    input=body.model_dump(mode="json"),
                    result=plan(body.to_input(), body.strategy),
                ),
                uow,
            )
            await uow.commit()
        plan_id = record.row["id"]
        async with runtime.uow() as uow:
            record = await plans.approve_plan(
                plans.ApprovePlan(patient, plan_id, CLINICIAN, "plan_approved"), uow
            )
            await uow.commit()
        for k in range(history):  # emit the first steps for real, each on its day
            clock.set(datetime.combine(record.steps[k]["effective_on"], time(9), UTC))
            assert await runtime.timers.fire_due() == 1
        due = record.steps[history]
        assert due["effective_on"] == t0.date(), (due["effective_on"], t0)
        decision_id = record.row["approved_by_decision_id"]
        taper = await _taper(runtime, patient)
    finally:
        await runtime.engine.dispose()

    conn = await asyncpg.connect(pg.dsn(db))
    try:
        # The history's events were published long ago (the relay's pending index stays empty).
        await conn.execute("UPDATE outbox SET published_at = created_at")
        rows = {t: [dict(r) for r in await conn.fetch(f"SELECT * FROM {t}")] for t in TABLES}
    finally:
        await conn.close()
    for table, col in SERIAL.items():
        for r in rows[table]:
            del r[col]
    # The DoseReduced the real path emits for the due step (same facts as
    # ``domain.taper_events.reduced``).
    before = regimen_from(taper["regimen"])
    after = regimen_from(due["administrations"])
    drug = taper["drug"]
    equivalence = {d: Decimal(mg) for d, mg in (taper["equivalence"] or {}).items()}

    def eq(regimen: Any) -> Decimal:
        total = sum((a.dose_mg * (Decimal(10) / equivalence[a.drug]) for a in regimen), Decimal(0))
        return total.quantize(Decimal("0.0001"))

    event = DoseReduced.create(
        patient_id=patient,
        occurred_at=t0,
        correlation_id=decision_id,
        plan_id=plan_id,
        step_number=due["number"],
        drug=drug,
        previous_daily_dose_mg=Decimal(taper["current_daily_dose_mg"]),
        new_daily_dose_mg=sum((a.dose_mg for a in after if a.drug == drug), Decimal(0)),
        effective_on=due["effective_on"],
        taper_stage=TaperStage.ACTIVE,
        approved_by_decision_id=decision_id,
        half_life_class=taper["half_life_class"],
        step_kind=due["kind"],
        regimen=drug_doses(after),
        previous_daily_diazepam_eq_mg=eq(before),
        new_daily_diazepam_eq_mg=eq(after),
    )
    return Template(
        rows=rows,
        patient_id=patient,
        plan_id=plan_id,
        decision_id=decision_id,
        start_on=start_on,
        due_step=due["number"],
        steps_in_plan=len(record.steps),
        payload=event.to_bytes(),
        event_id=event.event_id,
    )


async def _taper(runtime: ServiceRuntime, patient: uuid.UUID) -> dict[str, Any]:
    async with runtime.uow() as uow:
        t = uow.table("tapers")
        row = (await uow.session.execute(sa.select(t).where(t.c.patient_id == patient))).mappings()
        return dict(row.one())


@dataclass
class Slot:
    """How one column of a template row changes in a copy."""

    index: int
    op: str  # uuid | str | bytes | date | datetime
    value: Any


class Copier:
    """Copies of the template's rows with fresh ids (also inside JSON text and payload bytes);
    ``shift`` days move every date of a not-due patient."""

    def __init__(self, tmpl: Template) -> None:
        self.uuids: list[uuid.UUID] = sorted(
            {
                uuid.UUID(int=v.int)
                for rows in tmpl.rows.values()
                for r in rows
                for v in r.values()
                if _is_uuid(v)
            }
        )
        self.text = [str(u) for u in self.uuids]
        self.columns: dict[str, list[str]] = {}
        self.rows: dict[str, list[tuple[list[Any], list[Slot]]]] = {}
        for table, rows in tmpl.rows.items():
            if not rows:
                continue
            self.columns[table] = list(rows[0])
            self.rows[table] = []
            for r in rows:
                base = list(r.values())
                slots = []
                for i, (col, v) in enumerate(r.items()):
                    if _is_uuid(v):
                        slots.append(Slot(i, "uuid", self.uuids.index(uuid.UUID(int=v.int))))
                    elif isinstance(v, str) and any(t in v for t in self.text):
                        slots.append(Slot(i, "str", v))
                    elif isinstance(v, bytes) and any(t.encode() in v for t in self.text):
                        slots.append(Slot(i, "bytes", v))
                    elif isinstance(v, date) and not isinstance(v, datetime):
                        slots.append(Slot(i, "date", v))
                    elif table == "timers" and col in ("due_at", "fired_at") and v is not None:
                        slots.append(Slot(i, "datetime", v))
                self.rows[table].append((base, slots))

    def copy(self, rng: random.Random, shift_days: int) -> dict[str, list[tuple[Any, ...]]]:
        fresh = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in self.uuids]
        pairs = [(old, str(new)) for old, new in zip(self.text, fresh, strict=True)]
        shift = timedelta(days=shift_days)
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table, rows in self.rows.items():
            records = []
            for base, slots in rows:
                rec = list(base)
                for s in slots:
                    if s.op == "uuid":
                        rec[s.index] = fresh[s.value]
                    elif s.op == "str":
                        v = s.value
                        for old, new in pairs:
                            v = v.replace(old, new)
                        rec[s.index] = v
                    elif s.op == "bytes":
                        b = s.value
                        for old, new in pairs:
                            b = b.replace(old.encode(), new.encode())
                        rec[s.index] = b
                    else:  # date / datetime
                        rec[s.index] = s.value + shift
                records.append(tuple(rec))
            out[table] = records
        return out


def _is_uuid(v: Any) -> bool:
    return isinstance(v, uuid.UUID)  # asyncpg's UUID subclasses it


@dataclass
class LoadReport:
    plans: int = 0
    due: int = 0
    history: int = 0
    template_s: float = 0.0
    copy_s: float = 0.0
    vacuum_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)
    db_size: str = ""
    rows_per_patient: dict[str, int] = field(default_factory=dict)


async def bulk_load(
    conn: asyncpg.Connection, tmpl: Template, n: int, due: int, seed: int, rep: LoadReport
) -> None:
    """Patients 1..n-1 (the template is patient 0); every (n // due)-th of the first ones is due
    now (spread over the heap), the others from tomorrow to 28 days out."""
    copier = Copier(tmpl)
    rep.rows_per_patient = {t: len(r) for t, r in copier.rows.items()}
    rng = random.Random(seed)
    stride = max(1, n // due)
    # Foreign keys hold by construction; skip their per-row triggers during the load if allowed.
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("SET session_replication_role = replica")
    batch: dict[str, list[tuple[Any, ...]]] = {t: [] for t in copier.rows}
    done_due = 1  # the template
    for i in range(1, n):
        is_due = i % stride == 0 and done_due < due
        done_due += is_due
        for table, recs in copier.copy(rng, 0 if is_due else rng.randint(1, 28)).items():
            batch[table].extend(recs)
        if i % 2000 == 0 or i == n - 1:
            for table in TABLES:
                if batch.get(table):
                    await conn.copy_records_to_table(
                        table, records=batch[table], columns=copier.columns[table]
                    )
                    batch[table] = []
            if i % 20000 == 0:
                print(f"  {i:,} patients copied ...", flush=True)
    await conn.execute("RESET session_replication_role")
    if done_due != due:
        raise SystemExit(f"only {done_due} due patients for --due {due}: raise --plans")


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------

COUNTS_SQL = {
    "dose_reduced": "SELECT count(*) FROM outbox WHERE event_type = 'DoseReduced'",
    "outbox": "SELECT count(*) FROM outbox",
    "dose_steps_emitted": "SELECT count(*) FROM dose_steps WHERE status = 'emitted'",
    "dose_steps": "SELECT count(*) FROM dose_steps",
    "timers": "SELECT count(*) FROM timers",
    "timers_fired": "SELECT count(*) FROM timers WHERE fired_at IS NOT NULL",
    "timers_pending": "SELECT count(*) FROM timers WHERE fired_at IS NULL"
    " AND cancelled_at IS NULL AND failed_at IS NULL",
    "timers_trouble": "SELECT count(*) FROM timers WHERE attempts > 0 OR failed_at IS NOT NULL",
    "plan_steps_emitted": "SELECT count(*) FROM plan_steps WHERE status = 'emitted'",
    "plan_steps_scheduled": "SELECT count(*) FROM plan_steps WHERE status = 'scheduled'",
    "taper_versions": "SELECT sum(version) FROM tapers",  # +1 per taper written
}

DIGEST_SQL = {
    "tapers": "SELECT patient_id, plan_id, drug, half_life_class, current_daily_dose_mg,"
    " regimen::jsonb, held, stage, version FROM tapers ORDER BY patient_id",
    "dose_steps": "SELECT patient_id, plan_id, step_number, previous_daily_dose_mg,"
    " new_daily_dose_mg, effective_on, decision_id, overridden, status, drug, kind,"
    " regimen_before::jsonb, regimen_after::jsonb, emitted_at IS NOT NULL,"
    " event_id IS NOT NULL FROM dose_steps ORDER BY patient_id, step_number",
    "plan_steps": "SELECT plan_id, number, status, dose_step_id IS NOT NULL FROM plan_steps"
    " WHERE status <> 'planned' ORDER BY plan_id, number",
    "timers": "SELECT kind, key, due_at, payload::jsonb, fired_at FROM timers ORDER BY kind, key",
    "outbox": "SELECT message_key, topic, event_type, length(payload), headers::jsonb - 'event_id'"
    " - 'traceparent' FROM outbox ORDER BY message_key, created_at",
}


async def counts(conn: asyncpg.Connection, t0: datetime) -> dict[str, int]:
    out = {}
    for k, q in COUNTS_SQL.items():
        out[k] = int(await conn.fetchval(q, t0) if "$1" in q else await conn.fetchval(q))
    return out


async def digest(conn: asyncpg.Connection) -> str:
    h = hashlib.sha256()
    for q in DIGEST_SQL.values():
        async with conn.transaction():
            async for r in conn.cursor(q, prefetch=5000):
                h.update(repr(tuple(r)).encode())
    return h.hexdigest()[:16]


def check(before: dict[str, int], after: dict[str, int], due: int, variant: str) -> None:
    """The work was done, exactly once per due step, and nothing failed."""
    want = {
        "dose_reduced": due,
        "outbox": due,
        "dose_steps_emitted": due,
        "dose_steps": due,
        "timers": due,  # one next-step timer armed per step
        "timers_fired": due,
        "timers_pending": 0,  # D fired, D armed
        "timers_trouble": 0,
        "plan_steps_emitted": due,
        "plan_steps_scheduled": 0,  # one emitted, the next scheduled
        "taper_versions": due,
    }
    got = {k: after[k] - before[k] for k in want}
    if got != want:
        bad = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        raise SystemExit(f"{variant}: the work was not done (got, want): {bad}")


# --------------------------------------------------------------------------------------------
# the two variants
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    variant: str
    rep: int
    n: int
    s: float
    cpu_ms: float
    per_ms: list[float]
    load1: str
    clone_s: float
    payload_bytes: float
    digest: str = ""

    @property
    def rate(self) -> float:
        return self.n / self.s


async def run_chassis(
    pg: Pg, db: str, t0: datetime, per_ms: list[float], profiler: cProfile.Profile | None
) -> tuple[int, float, float]:
    runtime = bootstrap(_settings(pg, db), clock=FrozenClock(t0))
    poller = runtime.timers  # built by ServiceRuntime with the scheduler's handlers
    inner = poller._fire_one
    outcomes: dict[str | None, int] = {}

    async def timed_fire_one() -> str | None:
        t = _time.perf_counter()
        outcome = await inner()
        if outcome is not None:
            per_ms.append((_time.perf_counter() - t) * 1000)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcome

    poller._fire_one = timed_fire_one  # type: ignore[method-assign]
    try:
        async with runtime.engine.connect() as c:  # open the pool before timing, like bare
            await c.execute(sa.text("SELECT 1"))
        if profiler is not None:
            profiler.enable()
        w, c0 = _time.perf_counter(), _time.process_time()
        fired = 0
        while (done := await poller.fire_due()) > 0:
            fired += done
        wall, cpu = _time.perf_counter() - w, _time.process_time() - c0
        if profiler is not None:
            profiler.disable()
    finally:
        await runtime.engine.dispose()
    if set(outcomes) - {"fired", None}:
        raise SystemExit(f"chassis: timers failed: {outcomes}")
    return fired, wall, cpu


class Bare:
    def __init__(self, tmpl: Template, t0: datetime) -> None:
        self.t0 = t0
        self.payload = tmpl.payload
        self.ids = [
            (str(tmpl.event_id).encode(), 0),
            (str(tmpl.patient_id).encode(), 1),
            (str(tmpl.plan_id).encode(), 2),
            (str(tmpl.decision_id).encode(), 3),
        ]
        self.topic = topic_for(DoseReduced).name

    async def emit_all(self, conn: asyncpg.Connection, per_ms: list[float]) -> int:
        fired = 0
        while await self.emit_one(conn, per_ms):
            fired += 1
        return fired

    async def emit_one(self, conn: asyncpg.Connection, per_ms: list[float]) -> bool:
        t = _time.perf_counter()
        now = self.t0
        async with conn.transaction():
            timer = await conn.fetchrow(BARE_CLAIM, now, *KINDS)
            if timer is None:
                return False
            plan_text, number_text = timer["key"].split(":")[:2]
            plan_id, number = uuid.UUID(plan_text), int(number_text)
            patient_id = uuid.UUID(json.loads(timer["payload"])["patient_id"])
            steps = await conn.fetch(BARE_STEPS, plan_id, number)
            taper = await conn.fetchrow(BARE_TAPER, patient_id)
            step = steps[0]
            assert step["number"] == number and step["status"] == "scheduled"
            assert step["plan_status"] == "active" and not taper["held"]
            after = json.loads(step["administrations"])
            drug = taper["drug"]
            new_mg = sum((Decimal(a["dose_mg"]) for a in after if a["drug"] == drug), Decimal(0))
            stage = "completed" if all(Decimal(a["dose_mg"]) == 0 for a in after) else "active"
            result = await conn.execute(
                BARE_UPDATE_TAPER,
                patient_id,
                new_mg,
                step["administrations"],
                stage,
                taper["version"] + 1,
                now,
                taper["version"],
            )
            if result != "UPDATE 1":
                raise RuntimeError("stale taper")
            step_id, event_id = uuid.uuid4(), uuid.uuid4()
            decision_id = step["approved_by_decision_id"]
            await conn.execute(
                BARE_INSERT_STEP,
                step_id,
                patient_id,
                plan_id,
                number,
                taper["current_daily_dose_mg"],
                new_mg,
                step["effective_on"],
                decision_id,
                now,
                event_id,
                drug,
                step["kind"],
                taper["regimen"],
                step["administrations"],
            )
            new_ids = (event_id, patient_id, plan_id, decision_id)
            payload = self.payload
            for old, i in self.ids:
                payload = payload.replace(old, str(new_ids[i]).encode())
            trace = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
            headers = {
                "event_type": "DoseReduced",
                "event_id": str(event_id),
                "schema_version": "1",
                **trace,
            }
            await conn.execute(
                BARE_INSERT_OUTBOX,
                event_id,
                self.topic,
                str(patient_id),
                payload,
                json.dumps(headers),
                now,
            )
            numbers = [s["number"] for s in steps]
            await conn.execute(BARE_UPDATE_PLAN_STEPS, plan_id, number, step_id, numbers)
            if len(steps) > 1:
                nxt = steps[1]
                await conn.execute(
                    BARE_INSERT_TIMER,
                    uuid.uuid4(),
                    step_timer.EMIT_PLAN_STEP,
                    f"{plan_id}:{nxt['number']}",
                    datetime.combine(nxt["effective_on"], time.min, UTC),
                    json.dumps({"patient_id": str(patient_id)}),
                    json.dumps(trace),
                )
            await conn.execute(BARE_FIRED, now, timer["id"])
        per_ms.append((_time.perf_counter() - t) * 1000)
        return True


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    load: LoadReport = field(default_factory=LoadReport)
    settings: dict[str, str] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    loads: list[tuple[str, str]] = field(default_factory=list)
    template: Template | None = None
    t0: datetime | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    digest: str = ""


async def clone(admin: asyncpg.Connection, src: str, dst: str, file_copy: bool) -> float:
    strategy = " STRATEGY = FILE_COPY" if file_copy else ""
    t = _time.perf_counter()
    for attempt in range(60):
        try:
            await admin.execute(f'CREATE DATABASE "{dst}" TEMPLATE "{src}"{strategy}')
            break
        except asyncpg.ObjectInUseError:  # an autovacuum worker still on the source
            if attempt == 59:
                raise
            await asyncio.sleep(1)
    return _time.perf_counter() - t


async def run_once(
    pg: Pg,
    admin: asyncpg.Connection,
    rep: Report,
    src: str,
    variant: str,
    label: str,
    file_copy: bool,
    profiler: cProfile.Profile | None = None,
) -> Run:
    assert rep.template is not None and rep.t0 is not None
    t0, due = rep.t0, rep.load.due
    db = f"{src}_rep"
    clone_s = await clone(admin, src, db, file_copy)
    conn = await asyncpg.connect(pg.dsn(db))
    try:
        before = await counts(conn, t0)
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CHECKPOINT")  # both variants start without dirty buffers
        gc.collect()  # the same start for both: no garbage of the load or the last repetition
        la = load()
        rep.loads.append((label, la))
        per_ms: list[float] = []
        if variant == "chassis":
            n, wall, cpu = await run_chassis(pg, db, t0, per_ms, profiler)
        else:
            bare = Bare(rep.template, t0)
            await conn.fetchval("SELECT 1")  # the connection is open and used, like the pool
            if profiler is not None:
                profiler.enable()
            w, c0 = _time.perf_counter(), _time.process_time()
            n = await bare.emit_all(conn, per_ms)
            wall, cpu = _time.perf_counter() - w, _time.process_time() - c0
            if profiler is not None:
                profiler.disable()
        after = await counts(conn, t0)
        check(before, after, due, variant)
        if n != due:
            raise SystemExit(f"{variant}: {n} fired for {due} due")
        payload = await conn.fetchval(
            "SELECT avg(length(payload)) FROM outbox WHERE created_at = $1", t0
        )
        run = Run(
            variant=variant,
            rep=0,
            n=n,
            s=wall,
            cpu_ms=1000 * cpu / max(n, 1),
            per_ms=per_ms,
            load1=la,
            clone_s=clone_s,
            payload_bytes=float(payload),
        )
        run.digest = await digest(conn)
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if rep.digest and run.digest != rep.digest:
        raise SystemExit(f"{label}: the state differs from the first repetition's")
    rep.digest = rep.digest or run.digest
    return run


def summarise_profile(prof: cProfile.Profile, n: int) -> dict[str, Any]:
    stats = pstats.Stats(prof)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    writes = sum(
        nc
        for (f, _, fn), (_, nc, *_r) in raw.items()
        if f.endswith("selector_events.py") and fn == "write"
    )
    calls = sum(nc for (_, nc, *_r) in raw.values())

    def name(key: tuple[str, int, str]) -> str:
        f, line, fn = key
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            if marker in f:
                f = f.split(marker, 1)[1]
        return f"{f}:{line}({fn})" if line else fn

    skip = (
        "asyncio/",
        "selectors.py",
        "bench/step_emission_bench.py",
        "cProfile",
        "<built-in method select",
        "contextlib.py",
        "_contextvars.Context",
        "select.epoll",
    )
    rows = sorted(raw.items(), key=lambda kv: kv[1][3], reverse=True)
    cumulative = [
        (name(k), v[1], v[3]) for k, v in rows if not any(s in name(k) or s in k[0] for s in skip)
    ][:10]
    by_tottime = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)
    tottime = [(name(k), v[1], v[2]) for k, v in by_tottime[:10]]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    return {
        "n": n,
        "writes_per_step": writes / n,
        "calls_per_step": calls / n,
        "cumulative": cumulative,
        "tottime": tottime,
        "text": buf.getvalue(),
    }


async def run(pg: Pg, args: argparse.Namespace) -> Report:
    rep = Report()
    rep.load.plans, rep.load.due, rep.load.history = args.plans, args.due, args.history
    started = datetime.now(UTC)
    t0 = datetime.combine(started.date(), time(9), UTC)
    rep.t0 = t0
    src = f"stepbench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn(pg.admin_db))
    await admin.execute(f'CREATE DATABASE "{src}"')
    try:
        version_num = int(await admin.fetchval("SHOW server_version_num"))
        file_copy = version_num >= 150000
        for name in (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
        ):
            rep.settings[name] = str(await admin.fetchval(f"SHOW {name}"))
        rep.settings["clone"] = "STRATEGY = FILE_COPY" if file_copy else "default strategy"

        print(f"template plan (history {args.history}) ... (load {load()})", flush=True)
        t = _time.perf_counter()
        tmpl = await make_template(pg, src, t0, args.history)
        rep.template = tmpl
        rep.load.template_s = _time.perf_counter() - t
        conn = await asyncpg.connect(pg.dsn(src))
        try:
            print(f"copying {args.plans - 1:,} more patients ...", flush=True)
            t = _time.perf_counter()
            await bulk_load(conn, tmpl, args.plans, args.due, args.seed, rep.load)
            rep.load.copy_s = _time.perf_counter() - t
            t = _time.perf_counter()
            await conn.execute("VACUUM ANALYZE")
            rep.load.vacuum_s = _time.perf_counter() - t
            for table in TABLES:
                rep.load.rows[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
                rep.load.sizes[table] = await conn.fetchval(
                    "SELECT pg_size_pretty(pg_total_relation_size($1::regclass))", table
                )
            rep.load.db_size = await conn.fetchval(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            )
            pending = await conn.fetchval(
                "SELECT count(*) FROM timers WHERE fired_at IS NULL AND due_at <= $1", t0
            )
            assert pending == args.due, (pending, args.due)
        finally:
            await conn.close()
        print(
            f"  loaded in {rep.load.copy_s:.1f} s + VACUUM ANALYZE {rep.load.vacuum_s:.1f} s, "
            f"database {rep.load.db_size}",
            flush=True,
        )
        # Nothing may connect to a template (autovacuum included).
        await admin.execute(f'ALTER DATABASE "{src}" WITH ALLOW_CONNECTIONS false')

        for r in range(args.repeats):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                label = f"rep {r + 1} {variant}"
                result = await run_once(pg, admin, rep, src, variant, label, file_copy)
                result.rep = r + 1
                rep.runs.append(result)
                print(
                    f"  {label:16} {result.n} steps in {result.s:.2f} s = {result.rate:,.0f}/s,"
                    f" p50 {pct(result.per_ms, 50):.2f} ms, p99 {pct(result.per_ms, 99):.2f} ms,"
                    f" client CPU {result.cpu_ms:.3f} ms/step (load {result.load1}; clone "
                    f"{result.clone_s:.1f} s)",
                    flush=True,
                )
        if args.profile:
            for variant in VARIANTS:
                prof = cProfile.Profile()
                label = f"profile {variant}"
                result = await run_once(pg, admin, rep, src, variant, label, file_copy, prof)
                rep.profile[variant] = summarise_profile(prof, result.n)
                rep.profile[variant]["rate"] = result.rate
                print(
                    f"  {label:16} {result.rate:,.0f}/s under cProfile, "
                    f"{rep.profile[variant]['writes_per_step']:.1f} socket writes/step, "
                    f"{rep.profile[variant]['calls_per_step']:,.0f} calls/step",
                    flush=True,
                )
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{src}_rep" WITH (FORCE)')
        with contextlib.suppress(Exception):
            await admin.execute(f'ALTER DATABASE "{src}" WITH ALLOW_CONNECTIONS true')
            await admin.execute(f'DROP DATABASE IF EXISTS "{src}" WITH (FORCE)')
        await admin.close()
    return rep


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def render(
    rep: Report, args: argparse.Namespace, started: datetime, elapsed: float, source: str
) -> str:
    info = machine_info(("sqlalchemy", "asyncpg", "alembic", "opentelemetry-sdk"))
    s = rep.settings
    ld = rep.load
    tmpl = rep.template
    assert tmpl is not None and rep.t0 is not None

    def payload(variant: str) -> float:
        return median([r.payload_bytes for r in rep.runs if r.variant == variant])

    out = [
        f"# Step emission benchmark, {started:%Y-%m-%d}",
        "",
        f"Run `{' '.join(['python -m bench.step_emission_bench', *sys.argv[1:]])}` at "
        f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s in all.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [
        f"- PostgreSQL: {s.get('server_version')}, {source}; fsync {s.get('fsync')}, "
        f"synchronous_commit {s.get('synchronous_commit')}, full_page_writes "
        f"{s.get('full_page_writes')}, shared_buffers {s.get('shared_buffers')}",
        "- shared machine: another engineer's test suite may run concurrently; the 1-minute load "
        "average before each measurement is recorded below",
        "",
        "## Settings and state",
        "",
        f"- {ld.plans:,} active approved plans, one patient each: one real plan (`{BODY['drug']}` "
        f"{' + '.join(BODY['administrations_mg'])} mg, formulations "
        f"{', '.join(BODY['formulations'])}; {tmpl.steps_in_plan} steps) created and approved "
        "through the service layer (`plans.create_plan` / `plans.approve_plan` in `runtime.uow()`,"
        " FrozenClock)"
        + (
            f", its first {ld.history} steps then emitted by the real poller,"
            if ld.history
            else ","
        )
        + f" then COPYed with fresh ids for the other {ld.plans - 1:,} patients",
        "- rows per patient: " + ", ".join(f"{t} {n}" for t, n in ld.rows_per_patient.items()),
        f"- due now: {ld.due:,} step-{tmpl.due_step} timers (`emit_plan_step`, due "
        f"{datetime.combine(rep.t0.date(), time.min, UTC):%Y-%m-%d %H:%M} UTC), every "
        f"{max(1, ld.plans // ld.due)}th patient; the others' dates shifted 1-28 days later; "
        f"clock frozen at {rep.t0:%Y-%m-%d %H:%M} UTC in both variants",
        f"- load: template plan {ld.template_s:.1f} s, COPY {ld.copy_s:.1f} s, VACUUM ANALYZE "
        f"{ld.vacuum_s:.1f} s; database {ld.db_size}",
        "- tables (rows, size with indexes): "
        + ", ".join(f"`{t}` {ld.rows[t]:,} / {ld.sizes[t]}" for t in TABLES if ld.rows.get(t)),
        f"- every repetition runs on a fresh `CREATE DATABASE ... TEMPLATE` copy of that state "
        f"({s.get('clone')}; {median([r.clone_s for r in rep.runs]):.1f} s median), after a "
        "`CHECKPOINT`; variants alternate order; "
        f"{args.repeats} repetitions each",
        f"- checks after every repetition (else the run stops): {ld.due} new `DoseReduced` outbox "
        f"rows, {ld.due} new emitted `dose_steps`, {ld.due} timers fired, {ld.due} next-step "
        "timers armed, no timer attempt or failure; and the same end state in every repetition of"
        " both variants (digest of tapers, dose steps, plan steps, timers, outbox: "
        f"`{rep.digest}`)",
        f"- outbox payload: {payload('chassis'):.0f} bytes (chassis) vs {payload('bare'):.0f}"
        " bytes (bare, a real `DoseReduced` serialised once, ids replaced)",
        "",
        "Load average (1/5/15 min) before each measurement: "
        + "; ".join(f"{k}: {v}" for k, v in rep.loads)
        + ".",
        "",
        "## Emitting the due steps, one transaction each",
        "",
        "| variant | best steps/s | median steps/s | median s for all | p50 ms/step | "
        "p99 ms/step | client CPU ms/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by = {v: [r for r in rep.runs if r.variant == v] for v in VARIANTS}
    names = {
        "bare": "baseline: bare asyncpg, same writes, no rules",
        "chassis": "chassis: `TimerPoller.fire_due()` + `step_timer.emit_plan_step`",
    }
    fig: dict[str, tuple[float, float]] = {}
    for v in ("bare", "chassis"):
        runs = by[v]
        rates = [r.rate for r in runs]
        all_ms = [x for r in runs for x in r.per_ms]
        fig[v] = (max(rates), median(rates))
        out.append(
            f"| {names[v]} | {max(rates):,.0f} | {median(rates):,.0f} | "
            f"{median([r.s for r in runs]):.2f} | {pct(all_ms, 50):.2f} | {pct(all_ms, 99):.2f} | "
            f"{median([r.cpu_ms for r in runs]):.3f} |"
        )
    out += [
        f"| **ratio chassis / bare (throughput)** | {fig['chassis'][0] / fig['bare'][0]:.2f}"
        f" (best/best) | {fig['chassis'][1] / fig['bare'][1]:.2f} (median/median) | | | | |",
        "",
        "p50/p99 are over every step of every repetition of the variant (each step timed from "
        "its claim to its commit).",
        "",
        "Every repetition: "
        + "; ".join(
            f"rep {r.rep} {r.variant} {r.rate:,.0f}/s (p99 {pct(r.per_ms, 99):.2f} ms, load "
            f"{r.load1.split()[0]})"
            for r in rep.runs
        )
        + ".",
        "",
    ]
    if rep.profile:
        out += [
            "## Where the time goes (cProfile, one more repetition of each, not in the table)",
            "",
            "| | steps/s under cProfile | socket writes per step | Python calls per step |",
            "|---|---:|---:|---:|",
        ]
        for v in ("bare", "chassis"):
            p = rep.profile[v]
            out.append(
                f"| {v} | {p['rate']:,.0f} | {p['writes_per_step']:.1f} | "
                f"{p['calls_per_step']:,.0f} |"
            )
        p = rep.profile["chassis"]
        out += [
            "",
            "Chassis, top 10 by cumulative time (asyncio plumbing, the event loop's wait in "
            "`epoll` and the benchmark's own wrappers left out; cProfile's own overhead is in "
            "every figure, see the rate under cProfile above; a coroutine is counted once per "
            "resume, so its calls and cumulative time are approximate):",
            "",
            "| function | calls per step (a coroutine: per resume) | cumulative ms per step |",
            "|---|---:|---:|",
        ]
        out += [
            f"| `{f}` | {nc / p['n']:.1f} | {1000 * ct / p['n']:.3f} |"
            for f, nc, ct in p["cumulative"]
        ]
        out += [
            "",
            "Chassis, top 10 by own time:",
            "",
            "| function | calls per step | own ms per step |",
            "|---|---:|---:|",
        ]
        out += [
            f"| `{f}` | {nc / p['n']:.1f} | {1000 * tt / p['n']:.3f} |"
            for f, nc, tt in p["tottime"]
        ]
        out.append("")
    out += ["## Interpretation", "", "(written by hand after reading the figures)", ""]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--plans", type=int, default=100_000, help="active plans (patients)")
    p.add_argument("--due", type=int, default=1_000, help="of which due now")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--history",
        type=int,
        default=0,
        help="steps each patient has already taken (0: the due step is step 1)",
    )
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--output", type=Path, default=None, help="'-' for none")
    args = p.parse_args(argv)
    if not 0 < args.due <= args.plans:
        p.error("--due must be between 1 and --plans")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    t = _time.perf_counter()
    pg = Pg()
    try:
        pg.start()
        rep = asyncio.run(run(pg, args))
    finally:
        pg.stop()
    text = render(rep, args, started, _time.perf_counter() - t, pg.source)
    write_results(text, args.output, "step-emission", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
