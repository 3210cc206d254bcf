"""The scheduler's planner and due-step scan against bare baselines measured in the same run.

``python -m bench.scheduler_bench`` measures:

1. planning throughput: ``services.scheduler.domain.planning.plan(...)`` over N synthetic
   patients (deterministic seed, default N=100000) on every core (``multiprocessing``, one process
   per core, started together behind a barrier) vs a bare proportional schedule in plain floats
   (``dose *= 0.9`` every 28 days until < 0.5: no rounding, no bounds, no reference data) over the
   same patients, in the same processes;
2. the due-step scan over 1M pending ``emit_dose_step`` timers on a real PostgreSQL
   (:class:`deploy.localstack.postgres.LocalPostgres` with ``fast=False`` unless
   ``TEST_POSTGRES_URL`` is set; the benchmark then creates and drops its own ``bench_<id>``
   database): schema by ``upgrade_to_head(engine, "scheduler")``, rows bulk-loaded with asyncpg
   ``copy_records_to_table``, ~0.1% due now. It times finding the due set (count, and the
   poller's claim SELECT with EXPLAIN ANALYZE) and claiming + marking fired the due rows through
   the real ``TimerPoller.fire_due()`` (no-op handler) vs bare asyncpg running the same
   ``SELECT ... FOR UPDATE SKIP LOCKED`` + ``UPDATE`` per row, one transaction each. Between
   repetitions the fired rows are reset (``fired_at = NULL``) and the table vacuumed, so every
   repetition starts from the same state.

Each measurement is repeated (``--repeats``); best and median are reported, and the 1-minute load
average is recorded before each one. It writes ``bench/results/scheduler-<date>.md``
(``--output``). Throughput is reported, never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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
from services.chassis.clock import SystemClock
from services.chassis.db import make_engine, make_session_factory
from services.chassis.migrations import upgrade_to_head
from services.chassis.telemetry import make_tracer_provider
from services.chassis.timers import DueTimer, TimerPoller
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.scheduler.adapters.orm import metadata as scheduler_metadata
from services.scheduler.domain.planning import (
    History,
    PacePreference,
    PlanningError,
    PlanningInput,
    plan,
    planning_reference_v1,
)

KIND = "emit_dose_step"

# Rough share of benzodiazepine prescriptions (unconfirmed; a plausible mix, not data).
DRUG_WEIGHTS = {
    "alprazolam": 24,
    "lorazepam": 18,
    "clonazepam": 18,
    "diazepam": 15,
    "temazepam": 8,
    "oxazepam": 4,
    "chlordiazepoxide": 3,
    "clobazam": 2,
    "nitrazepam": 2,
    "triazolam": 1,
    "bromazepam": 1,
    "clorazepate": 1,
    "estazolam": 1,
    "flurazepam": 1,
    "quazepam": 1,
}
# Typical single administration range (mg) per drug.
DOSE_RANGE = {
    "alprazolam": ("0.25", "2"),
    "lorazepam": ("0.5", "2.5"),
    "clonazepam": ("0.25", "2"),
    "diazepam": ("2", "10"),
    "temazepam": ("7.5", "30"),
    "oxazepam": ("10", "30"),
    "chlordiazepoxide": ("5", "25"),
    "clobazam": ("5", "20"),
    "nitrazepam": ("2.5", "10"),
    "triazolam": ("0.125", "0.25"),
    "bromazepam": ("1.5", "6"),
    "clorazepate": ("3.75", "15"),
    "estazolam": ("0.5", "2"),
    "flurazepam": ("15", "30"),
    "quazepam": ("7.5", "15"),
}


# --------------------------------------------------------------------------------------------
# 1. planning
# --------------------------------------------------------------------------------------------


class PatientMaker:
    """Deterministic synthetic patients: patient i depends only on (seed, i)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        ref = planning_reference_v1()
        self.drugs = [d for d in DRUG_WEIGHTS if ref.equivalence.get(d) is not None]
        self.weights = [DRUG_WEIGHTS[d] for d in self.drugs]
        self.solid: dict[str, list[str]] = {}
        self.liquid: dict[str, list[str]] = {}
        self.doses: dict[str, list[Decimal]] = {}
        for drug in self.drugs:
            forms = ref.formulations.for_drug(drug)
            solid = [f for f in forms if f.kind != "liquid"]
            self.solid[drug] = [f.code for f in solid]
            self.liquid[drug] = [f.code for f in forms if f.kind == "liquid"]
            lo, hi = (Decimal(x) for x in DOSE_RANGE[drug])
            candidates: set[Decimal] = set()
            for f in solid:
                for u in f.units_mg:
                    for k in (1, 2):
                        if lo <= u * k <= hi:
                            candidates.add(u * k)
            if not candidates:  # fall back to the units themselves
                candidates = {u for f in solid for u in f.units_mg}
            self.doses[drug] = sorted(candidates)

    def patient(self, i: int) -> PlanningInput:
        rng = random.Random(self.seed * 1_000_003 + i)
        drug = rng.choices(self.drugs, self.weights)[0]
        per_day = rng.choices((1, 2, 3, 4), (35, 35, 20, 10))[0]
        doses = self.doses[drug]
        admin = tuple(
            rng.choice(doses[: max(1, len(doses) - (per_day - 1))]) for _ in range(per_day)
        )
        crossover = drug != "diazepam" and rng.random() < 0.20
        forms = list(self.solid[drug])
        if self.liquid[drug] and rng.random() < 0.15:
            forms.append(rng.choice(self.liquid[drug]))
        if drug != "diazepam" and (crossover or rng.random() < 0.10):
            forms += ["diazepam_tab_2mg", "diazepam_tab_5mg"]
            if rng.random() < 0.15:
                forms.append("diazepam_sol_1mg_ml")
        maintenance = None
        if not crossover and rng.random() < 0.05:
            smallest = min(Decimal(d) for d in doses)
            if smallest < sum(admin, Decimal(0)):
                maintenance = smallest
        return PlanningInput(
            drug=drug,
            administrations_mg=admin,
            duration_weeks=rng.choice((4, 8, 10, 26, 52, 104, 260, 520)),
            age=rng.randint(18, 92),
            start_on=date(2027, 1, 1) + timedelta(days=rng.randrange(365)),
            formulations=tuple(dict.fromkeys(forms)),
            frail=rng.random() < 0.07,
            history=History(
                seizures=rng.random() < 0.03,
                falls=rng.random() < 0.08,
                pregnancy=rng.random() < 0.01,
                anxiety_or_depression=rng.random() < 0.40,
                failed_taper=rng.random() < 0.15,
            ),
            pace=rng.choices(list(PacePreference), (10, 85, 5))[0],
            crossover_wanted=crossover,
            maintenance_mg=maintenance,
        )


def bare_schedule(daily_mg: float, start_day: int) -> list[tuple[int, float]]:
    """The baseline: proportional 10% every 28 days in floats, no rounding, bounds or data."""
    steps = []
    dose, day = daily_mg, start_day
    while dose >= 0.5:
        dose *= 0.9
        day += 28
        steps.append((day, dose))
    return steps


def _plan_worker(
    seed: int, lo: int, hi: int, barrier: Any, out: Any, worker: int
) -> None:  # pragma: no cover - runs in a child process
    maker = PatientMaker(seed)
    patients = [maker.patient(i) for i in range(lo, hi)]
    bare_in = [
        (float(sum(p.administrations_mg, Decimal(0))), p.start_on.toordinal()) for p in patients
    ]
    ref = planning_reference_v1()
    barrier.wait()
    # baseline: the loop alone (a per-call timer would cost as much as the call)
    t0 = time.perf_counter()
    c0 = time.process_time()
    bare_steps = 0
    for daily, day in bare_in:
        bare_steps += len(bare_schedule(daily, day))
    bare = (t0, time.perf_counter(), time.process_time() - c0)
    barrier.wait()
    per_ms: list[float] = []
    steps = errors = zero = maintenance = need = crossover = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for p in patients:
        s = time.perf_counter()
        try:
            tp = plan(p, ref=ref)
        except PlanningError:
            errors += 1
            per_ms.append((time.perf_counter() - s) * 1000)
            continue
        per_ms.append((time.perf_counter() - s) * 1000)
        steps += len(tp.steps)
        crossover += tp.final_drug != tp.drug
        if tp.formulation_needs:
            need += 1
        elif tp.ends_at == 0:
            zero += 1
        else:
            maintenance += 1
    real = (t0, time.perf_counter(), time.process_time() - c0)
    out.put(
        {
            "worker": worker,
            "n": hi - lo,
            "bare": bare,
            "bare_steps": bare_steps,
            "real": real,
            "per_ms": per_ms,
            "steps": steps,
            "errors": errors,
            "zero": zero,
            "maintenance": maintenance,
            "need": need,
            "crossover": crossover,
        }
    )


def run_planning(n: int, seed: int, procs: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs)
    out = ctx.Queue()
    bounds = [n * k // procs for k in range(procs + 1)]
    workers = [
        ctx.Process(target=_plan_worker, args=(seed, bounds[k], bounds[k + 1], barrier, out, k))
        for k in range(procs)
    ]
    for w in workers:
        w.start()
    results = sorted((out.get() for _ in workers), key=lambda r: r["worker"])
    for w in workers:
        w.join()
    per_ms = [x for r in results for x in r["per_ms"]]
    planned = n - sum(r["errors"] for r in results)

    def span(key: str) -> float:
        return max(r[key][1] for r in results) - min(r[key][0] for r in results)

    return {
        "n": n,
        "procs": procs,
        "real_wall": span("real"),
        "bare_wall": span("bare"),
        "real_per_core": [r["n"] / (r["real"][1] - r["real"][0]) for r in results],
        "bare_per_core": [r["n"] / (r["bare"][1] - r["bare"][0]) for r in results],
        "real_cpu": sum(r["real"][2] for r in results),
        "bare_cpu": sum(r["bare"][2] for r in results),
        "mean_ms": statistics.fmean(per_ms),
        "p50_ms": pct(per_ms, 50),
        "p99_ms": pct(per_ms, 99),
        "max_ms": max(per_ms),
        "steps": sum(r["steps"] for r in results),
        "bare_steps": sum(r["bare_steps"] for r in results),
        "planned": planned,
        "errors": n - planned,
        "zero": sum(r["zero"] for r in results),
        "maintenance": sum(r["maintenance"] for r in results),
        "need": sum(r["need"] for r in results),
        "crossover": sum(r["crossover"] for r in results),
    }


# --------------------------------------------------------------------------------------------
# 2. due-step scan
# --------------------------------------------------------------------------------------------


COUNT_SQL = (
    "SELECT count(*) FROM timers WHERE due_at <= $1 AND fired_at IS NULL"
    " AND cancelled_at IS NULL AND failed_at IS NULL"
)


@dataclass
class ScanReport:
    rows: int = 0
    due: int = 0
    load_s: float = 0.0
    vacuum_s: float = 0.0
    table_size: str = ""
    index_sizes: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    count_ms: list[float] = field(default_factory=list)
    claim_sa_ms: list[float] = field(default_factory=list)
    claim_pg_ms: list[float] = field(default_factory=list)
    explain_claim: str = ""
    explain_count: str = ""
    explain_after: str = ""
    fire: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    loads: list[tuple[str, str]] = field(default_factory=list)


async def bulk_load(conn: asyncpg.Connection, rows: int, due_share: float, seed: int) -> int:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    due_n = round(rows * due_share)
    two_years = 730 * 86400
    batch = 100_000
    columns = ["id", "kind", "key", "due_at", "payload", "trace_headers", "attempts"]
    done = 0
    while done < rows:
        records = []
        for i in range(done, min(rows, done + batch)):
            if i % round(1 / due_share) == 0 and i // round(1 / due_share) < due_n:
                due = now - timedelta(seconds=rng.uniform(60, 86400))  # due within the last day
            else:  # from tomorrow to two years out
                due = now + timedelta(seconds=86400 + rng.uniform(0, two_years))
            step = uuid.UUID(int=rng.getrandbits(128), version=4)
            records.append(
                (
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    KIND,
                    str(step),
                    due,
                    json.dumps({"patient_id": str(uuid.UUID(int=rng.getrandbits(128), version=4))}),
                    "{}",
                    0,
                )
            )
        await conn.copy_records_to_table("timers", records=records, columns=columns)
        done += len(records)
    return due_n


async def reset(conn: asyncpg.Connection, rep: ScanReport) -> None:
    await conn.execute("UPDATE timers SET fired_at = NULL WHERE fired_at IS NOT NULL")
    t = time.perf_counter()
    await conn.execute("VACUUM ANALYZE timers")
    rep.vacuum_s = time.perf_counter() - t


async def fire_bare(conn: asyncpg.Connection, limit: int) -> int:
    fired = 0
    while fired < limit:
        now = datetime.now(UTC)
        async with conn.transaction():
            row = await conn.fetchrow(CLAIM_SQL, now, KIND)
            if row is None:
                break
            # a no-op handler, like the chassis variant's
            await conn.execute("UPDATE timers SET fired_at = $1 WHERE id = $2", now, row["id"])
        fired += 1
    return fired


async def fire_chassis(poller: TimerPoller, limit: int) -> int:
    fired = 0
    while fired < limit:
        done = await poller.fire_due()  # batch_size (50) transactions, one timer each
        if done == 0:
            break
        fired += done
    return fired


async def timed(fn: Callable[[], Awaitable[int]]) -> dict[str, float]:
    w, c = time.perf_counter(), time.process_time()
    n = await fn()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    return {"n": n, "s": wall, "rate": n / wall, "cpu_ms": 1000 * cpu / max(n, 1)}


async def run_scan(pg: Pg, rows: int, due_share: float, repeats: int, seed: int) -> ScanReport:
    rep = ScanReport(rows=rows)
    db = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn(pg.admin_db))
    await admin.execute(f'CREATE DATABASE "{db}"')
    engine = make_engine(pg.dsn(db, "postgresql+asyncpg"))
    conn: asyncpg.Connection | None = None
    try:
        await upgrade_to_head(engine, "scheduler")
        conn = await asyncpg.connect(pg.dsn(db))
        for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes"):
            rep.settings[name] = await conn.fetchval(f"SHOW {name}")
        rep.settings["shared_buffers"] = await conn.fetchval("SHOW shared_buffers")
        print(f"loading {rows} timers (load {load()}) ...", flush=True)
        t = time.perf_counter()
        rep.due = await bulk_load(conn, rows, due_share, seed)
        await conn.execute("VACUUM ANALYZE timers")
        rep.load_s = time.perf_counter() - t
        print(f"  loaded in {rep.load_s:.1f} s, {rep.due} due", flush=True)
        rep.table_size = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('timers'))"
        )
        for (name,) in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'timers' ORDER BY 1"
        ):
            rep.index_sizes[name] = await conn.fetchval(
                "SELECT pg_size_pretty(pg_relation_size($1::regclass))", name
            )

        # --- finding the due set ---
        rep.loads.append(("find due set", load()))
        now = datetime.now(UTC)
        for _ in range(max(20, repeats * 10)):
            t = time.perf_counter()
            await conn.fetchval(COUNT_SQL, now)
            rep.count_ms.append((time.perf_counter() - t) * 1000)
        explain = "EXPLAIN (ANALYZE, BUFFERS) "
        async with conn.transaction():
            plan_rows = await conn.fetch(explain + CLAIM_SQL, now, KIND)
            rep.explain_claim = "\n".join(r[0] for r in plan_rows)
            plan_rows = await conn.fetch(explain + COUNT_SQL, now)
            rep.explain_count = "\n".join(r[0] for r in plan_rows)

        session_factory = make_session_factory(engine)
        timers = scheduler_metadata.tables["timers"]
        claim = (
            sa.select(timers)
            .where(
                timers.c.due_at <= sa.bindparam("now"),
                timers.c.fired_at.is_(None),
                timers.c.cancelled_at.is_(None),
                timers.c.failed_at.is_(None),
                timers.c.kind.in_([KIND]),
            )
            .order_by(timers.c.due_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        async with session_factory() as s:  # warm the pool and the statement cache
            await s.execute(claim, {"now": now})
            await s.rollback()
        for _ in range(max(50, repeats * 50)):
            t = time.perf_counter()
            async with session_factory() as s:
                (await s.execute(claim, {"now": now})).mappings().first()
                await s.rollback()
            rep.claim_sa_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            async with conn.transaction():
                await conn.fetchrow(CLAIM_SQL, now, KIND)
            rep.claim_pg_ms.append((time.perf_counter() - t) * 1000)

        # --- claiming + marking fired ---
        async def noop(timer: DueTimer, uow: UnitOfWork) -> None:
            return None

        def make_poller(factory: Any) -> TimerPoller:
            return TimerPoller(
                service="scheduler",
                uow_factory=UnitOfWorkFactory(factory, SystemClock(), scheduler_metadata),
                handlers={KIND: noop},
                tracer_provider=make_tracer_provider("scheduler"),
            )

        pollers = {"chassis": make_poller(session_factory)}
        # attribution only: the same poller on an engine without the pool's pre-ping round trip
        engine_np = make_engine(pg.dsn(db, "postgresql+asyncpg"), pool_pre_ping=False)
        pollers["chassis_no_pre_ping"] = make_poller(make_session_factory(engine_np))
        variants = ("bare", "chassis", "chassis_no_pre_ping")
        rep.fire = {v: [] for v in variants}
        try:
            for r in range(repeats):
                order = variants[r % 3 :] + variants[: r % 3]
                for variant in order:
                    await reset(conn, rep)
                    la = load()
                    rep.loads.append((f"fire rep {r + 1} {variant}", la))
                    if variant == "bare":
                        fig = await timed(lambda: fire_bare(conn, rep.due))
                    else:
                        poller = pollers[variant]
                        fig = await timed(lambda: fire_chassis(poller, rep.due))  # noqa: B023
                    fig["load1"] = float(la.split()[0])
                    rep.fire[variant].append(fig)
                    print(
                        f"  rep {r + 1} {variant:20} {fig['n']:.0f} fired in {fig['s']:.2f} s "
                        f"= {fig['rate']:.0f}/s, client CPU {fig['cpu_ms']:.3f} ms/timer "
                        f"(load {la})",
                        flush=True,
                    )
        finally:
            await engine_np.dispose()
        # the claim query right after a full drain, before vacuum: dead index entries to skip
        async with conn.transaction():
            plan_rows = await conn.fetch(explain + CLAIM_SQL, datetime.now(UTC), KIND)
            rep.explain_after = "\n".join(r[0] for r in plan_rows)
    finally:
        if conn is not None:
            await conn.close()
        await engine.dispose()
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return rep


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def best_median(xs: list[float], higher_is_better: bool = True) -> tuple[float, float]:
    return (max(xs) if higher_is_better else min(xs)), median(xs)


def render(
    plans: list[dict[str, Any]],
    plan_loads: list[str],
    scan: ScanReport | None,
    args: argparse.Namespace,
    started: datetime,
    elapsed: float,
    pg_source: str,
) -> str:
    info = machine_info(("sqlalchemy", "asyncpg", "alembic"))
    out = [
        f"# Scheduler benchmark, {started:%Y-%m-%d}",
        "",
        f"Run `{' '.join(['python -m bench.scheduler_bench', *sys.argv[1:]])}` at "
        f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s in all.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in info.items()]
    if scan is not None:
        out.append(
            f"- PostgreSQL: {scan.settings.get('server_version', '?')}, {pg_source}; fsync "
            f"{scan.settings.get('fsync')}, synchronous_commit "
            f"{scan.settings.get('synchronous_commit')}, full_page_writes "
            f"{scan.settings.get('full_page_writes')}, shared_buffers "
            f"{scan.settings.get('shared_buffers')}"
        )
    out += [
        "- shared machine: another engineer's test suite ran concurrently; the 1-minute load "
        "average before each measurement is recorded below",
        "",
    ]
    if plans:
        n = plans[0]["n"]
        p0 = plans[0]
        real_rates = [p["n"] / p["real_wall"] for p in plans]
        bare_rates = [p["n"] / p["bare_wall"] for p in plans]
        rb, rm = best_median(real_rates)
        bb, bm = best_median(bare_rates)
        means = [p["mean_ms"] for p in plans]
        p99s = [p["p99_ms"] for p in plans]
        out += [
            "## 1. Planning throughput",
            "",
            f"Settings: N={n} synthetic patients (seed {args.seed}), {p0['procs']} processes "
            f"(one per core, fork, started together behind a barrier), {len(plans)} repetitions; "
            f"load average (1/5/15 min) before each: {'; '.join(plan_loads)}.",
            "",
            "| | best | median |",
            "|---|---:|---:|",
            f"| `plan()` total plans/s ({p0['procs']} cores) | {rb:,.0f} | {rm:,.0f} |",
            "| `plan()` plans/s per core | "
            f"{max(max(p['real_per_core']) for p in plans):,.0f} | "
            f"{median([x for p in plans for x in p['real_per_core']]):,.0f} |",
            f"| `plan()` mean ms per plan | {min(means):.3f} | {median(means):.3f} |",
            f"| `plan()` p99 ms per plan | {min(p99s):.3f} | {median(p99s):.3f} |",
            f"| `plan()` p50 / max ms per plan (median rep) | "
            f"{median([p['p50_ms'] for p in plans]):.3f} | "
            f"{median([p['max_ms'] for p in plans]):.1f} |",
            f"| `plan()` CPU ms per plan (both processes) | "
            f"{min(1000 * p['real_cpu'] / n for p in plans):.3f} | "
            f"{median([1000 * p['real_cpu'] / n for p in plans]):.3f} |",
            f"| baseline (bare floats) total plans/s | {bb:,.0f} | {bm:,.0f} |",
            "| baseline plans/s per core | "
            f"{max(max(p['bare_per_core']) for p in plans):,.0f} | "
            f"{median([x for p in plans for x in p['bare_per_core']]):,.0f} |",
            f"| **ratio baseline / `plan()` (throughput)** | {bb / rb:,.0f}x (best/best) | "
            f"{bm / rm:,.0f}x (median/median) |",
            "",
            f"Plans (identical every repetition): {p0['planned']} planned, {p0['errors']} refused "
            f"(`PlanningError`); mean {p0['steps'] / max(p0['planned'], 1):.1f} steps per plan "
            f"(baseline: {p0['bare_steps'] / n:.1f}); "
            f"ending at zero {100 * p0['zero'] / n:.1f}%, at maintenance "
            f"{100 * p0['maintenance'] / n:.1f}%, stopped on a formulation need "
            f"{100 * p0['need'] / n:.1f}%; crossed over to diazepam "
            f"{100 * p0['crossover'] / n:.1f}%.",
            "",
            f"Per step: `plan()` {1000 * median(means) / (p0['steps'] / max(p0['planned'], 1)):.1f}"
            f" us/step (median rep) vs baseline "
            f"{1e6 * p0['procs'] / bm / max(p0['bare_steps'] / n, 1e-9) / 1:.3f} us/step "
            "(baseline per-core time / its steps).",
            "",
        ]
    if scan is not None:
        fb = scan.fire["bare"]
        fc = scan.fire["chassis"]
        fn = scan.fire["chassis_no_pre_ping"]
        nb, nm = best_median([f["rate"] for f in fn])
        bb, bm = best_median([f["rate"] for f in fb])
        cb, cm = best_median([f["rate"] for f in fc])
        out += [
            "## 2. Due-step scan over active plans",
            "",
            f"Settings: {scan.rows:,} pending `{KIND}` timers bulk-loaded (asyncpg COPY) into the "
            f"scheduler's `timers` table (schema by `upgrade_to_head(engine, 'scheduler')`), "
            f"{scan.due} due now (within the last day), the rest due from tomorrow to two years "
            f"out. Load + VACUUM ANALYZE took {scan.load_s:.1f} s; table with indexes "
            f"{scan.table_size} ("
            + ", ".join(f"`{k}` {v}" for k, v in scan.index_sizes.items())
            + f"). Each fire repetition starts from the same state: fired rows reset, VACUUM "
            f"ANALYZE ({scan.vacuum_s:.1f} s last time); variants alternate order. "
            f"{len(fb)} repetitions each.",
            "",
            "Load average (1/5/15 min) before each measurement: "
            + "; ".join(f"{k}: {v}" for k, v in scan.loads)
            + ".",
            "",
            "### Finding the due set",
            "",
            "| | best ms | median ms | p99 ms |",
            "|---|---:|---:|---:|",
            f"| `count(*)` of due rows (asyncpg) | {min(scan.count_ms):.3f} | "
            f"{median(scan.count_ms):.3f} | {pct(scan.count_ms, 99):.3f} |",
            f"| claim SELECT ... FOR UPDATE SKIP LOCKED, bare asyncpg (BEGIN..ROLLBACK) | "
            f"{min(scan.claim_pg_ms):.3f} | {median(scan.claim_pg_ms):.3f} | "
            f"{pct(scan.claim_pg_ms, 99):.3f} |",
            f"| same claim via SQLAlchemy session on the chassis engine (session open..rollback) |"
            f" {min(scan.claim_sa_ms):.3f} | {median(scan.claim_sa_ms):.3f} | "
            f"{pct(scan.claim_sa_ms, 99):.3f} |",
            f"| **ratio SQLAlchemy / bare** | {min(scan.claim_sa_ms) / min(scan.claim_pg_ms):.2f}x"
            f" | {median(scan.claim_sa_ms) / median(scan.claim_pg_ms):.2f}x | |",
            "",
            "EXPLAIN (ANALYZE, BUFFERS) of the claim query (fresh table):",
            "",
            "```",
            scan.explain_claim,
            "```",
            "",
            "EXPLAIN (ANALYZE, BUFFERS) of the count:",
            "",
            "```",
            scan.explain_count,
            "```",
            "",
            "### Claiming + marking fired all due rows, one transaction each",
            "",
            "| variant | best /s | median /s | median s for all | client CPU ms/timer (median) |",
            "|---|---:|---:|---:|---:|",
            f"| baseline: bare asyncpg SELECT ... SKIP LOCKED + UPDATE | {bb:,.0f} | {bm:,.0f} | "
            f"{median([f['s'] for f in fb]):.2f} | {median([f['cpu_ms'] for f in fb]):.3f} |",
            f"| chassis: `TimerPoller.fire_due()` (no-op handler) | {cb:,.0f} | {cm:,.0f} | "
            f"{median([f['s'] for f in fc]):.2f} | {median([f['cpu_ms'] for f in fc]):.3f} |",
            f"| **ratio baseline / chassis** | {bb / cb:.2f}x | {bm / cm:.2f}x | | |",
            f"| attribution: chassis on an engine with `pool_pre_ping=False` | {nb:,.0f} | "
            f"{nm:,.0f} | {median([f['s'] for f in fn]):.2f} | "
            f"{median([f['cpu_ms'] for f in fn]):.3f} |",
            f"| ratio baseline / chassis without pre-ping | {bb / nb:.2f}x | {bm / nm:.2f}x | | |",
            "",
            "Every repetition: "
            + "; ".join(
                f"{v} {f['rate']:.0f}/s (load {f['load1']:.2f})"
                for v in ("bare", "chassis", "chassis_no_pre_ping")
                for f in scan.fire[v]
            )
            + ".",
            "",
            "EXPLAIN (ANALYZE, BUFFERS) of the claim query right after the last drain (no vacuum "
            "yet: the index still holds the fired rows' entries):",
            "",
            "```",
            scan.explain_after,
            "```",
            "",
        ]
    out += [
        "## Interpretation",
        "",
        "(written by hand after reading the figures)",
        "",
    ]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--patients", type=int, default=100_000)
    p.add_argument("--timers", type=int, default=1_000_000)
    p.add_argument("--due-share", type=float, default=0.001)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--skip-planning", action="store_true")
    p.add_argument("--skip-scan", action="store_true")
    p.add_argument("--output", type=Path, default=None, help="'-' for none")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    plans: list[dict[str, Any]] = []
    plan_loads: list[str] = []
    if not args.skip_planning:
        for r in range(args.repeats):
            plan_loads.append(load())
            print(f"planning rep {r + 1}: {args.patients} patients (load {load()}) ...", flush=True)
            res = run_planning(args.patients, args.seed, args.procs)
            plans.append(res)
            print(
                f"  plan() {res['n'] / res['real_wall']:,.0f} plans/s in {res['real_wall']:.1f} s,"
                f" mean {res['mean_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms; bare "
                f"{res['n'] / res['bare_wall']:,.0f} plans/s",
                flush=True,
            )
    scan = None
    pg = Pg()
    if not args.skip_scan:
        try:
            pg.start()
            scan = asyncio.run(run_scan(pg, args.timers, args.due_share, args.repeats, args.seed))
        finally:
            pg.stop()
    text = render(plans, plan_loads, scan, args, started, time.perf_counter() - t0, pg.source)
    write_results(text, args.output, "scheduler", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
