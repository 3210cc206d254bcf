"""Monitoring end to end against bare aiokafka and bare PostgreSQL, measured in the same run.

``python -m bench.monitoring_bench`` starts its own single-node Kafka
(:class:`deploy.localstack.kafka.LocalKafka`) and PostgreSQL
(:class:`deploy.localstack.postgres.LocalPostgres` with ``fast=False``: fsync, synchronous_commit
and full_page_writes on) unless ``KAFKA_BOOTSTRAP_SERVERS`` / ``TEST_POSTGRES_URL`` are set (the
infrastructure of :mod:`bench.chassis_bench`), and measures two paths:

A. **HTTP -> ThresholdExceeded on the broker.** The real monitoring service (``bootstrap`` with
   PostgreSQL, ``runtime.start()``: migrations, topics, broker, subscriber, outbox relay, timers)
   is driven in-process through ``httpx.ASGITransport`` (no socket, no uvicorn) by C concurrent
   clients posting N RED CIWA-B reports (total >= 41, no red flag: exactly one ``withdrawal``
   episode and one ``ThresholdExceeded`` each) for N distinct patients, each with its own patient
   token and ``Idempotency-Key``. Timed from the first POST until a separate aiokafka consumer
   (no group: assigned, positioned at the topic's end before the first POST) has read the N-th
   ``ThresholdExceeded`` of these patients; latency per report from its POST to that read.
   Baseline: the same C tasks doing the minimal work: bare asyncpg, one transaction inserting the
   report row (a copy of ``symptom_reports``) and an outbox-like row (a copy of ``outbox``) with a
   real ``ThresholdExceeded`` payload, then a bare ``AIOKafkaProducer(acks="all",
   enable_idempotence=True).send_and_wait`` of that payload; read back by the same reader.
   Reference (attribution, ``--no-reference`` skips it): bare asyncpg/aiokafka doing the
   statements the service does per report (audit transaction; idempotency, dose-history,
   override, due check-in and episode reads; report, episode and two outbox inserts) and
   sending both events.
B. **Consumer rate.** M real ``DoseReduced`` are produced to ``taper.scheduler.dose-reduced.v1``
   after monitoring's group was committed at the topic's end, then a fresh runtime is started
   and timed until all M are handled (``dose_history`` and ``inbox`` rows). Baseline: bare
   ``AIOKafkaConsumer`` (own group, auto-commit off, offsets committed every 200 messages) +
   ``json.loads`` + one asyncpg transaction inserting the same row into a copy of
   ``dose_history``, on a bench topic holding the same M events. Reference: the same loop doing
   the service's statements (inbox dedupe read and insert, dose_history insert, and
   ``schedule_checkins``'s count, supersede read, check-in and timer inserts).

Every measurement is repeated (``--repeats``), variants alternating order; best and median are
reported with the 1-minute load average before each and the CPU the rest of the machine used
meanwhile. After every repetition the work is checked (HTTP 201 and RED for every report, exactly
one ``ThresholdExceeded`` per patient with the response's ``report_id``, N reports and episodes in
the database, no pending outbox row; M rows for the consumer, nothing dead-lettered): a failed
check stops the run, no figure without the work done. Writes ``bench/results/monitoring-<date>.md``
(``--output``), keeping its hand-written Interpretation. Reported, never asserted: not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness.infra import Infra
from bench.harness.kafka import (
    Wire,
    commit_group_offsets,
    create_topics,
    delete_topics,
    end_offsets,
    produce,
    replication_factor,
)
from bench.harness.logs import service_logging
from bench.harness.measure import Probe, Run, load, make_run, pct, run_workers, show
from bench.harness.payloads import CIWA_ITEMS
from bench.harness.profile import summarise
from bench.machine import machine_info
from bench.report import git_state, write_results
from contracts import (
    ALL_TOPICS,
    DOSE_REDUCED,
    SYMPTOM_REPORTED,
    THRESHOLD_EXCEEDED,
    DoseReduced,
    SymptomReported,
    TaperStage,
    ThresholdExceeded,
    ThresholdReason,
)
from services.chassis.auth import Role, issue_dev_token
from services.chassis.kafka import ensure_topics
from services.chassis.runtime import ServiceRuntime
from services.monitoring.bootstrap import bootstrap
from services.monitoring.domain.checkins import cadence_v1, plan_checkins
from services.monitoring.entrypoints import consumers
from services.monitoring.settings import MonitoringSettings

SERVICE = "monitoring"
PARTITIONS = THRESHOLD_EXCEEDED.partitions  # 6, as every topic of ours
RED_AT = 41  # rules.v2: CIWA-B red_at_or_above
VARIANTS = ("baseline", "reference", "pipeline")
CLIENT_LIBRARIES = ("fastapi", "httpx", "aiokafka", "faststream", "sqlalchemy", "asyncpg")


# --------------------------------------------------------------------------------------------
# a reader that sees the broker's copy
# --------------------------------------------------------------------------------------------


class TopicReader:
    """Reads ``topic`` from its end at ``start()`` (no group: assigned partitions, no join) and
    records when each expected key first arrives; the N-th arrival is the end of a measurement."""

    def __init__(self, bootstrap_servers: str, topic: str, expected: set[bytes]) -> None:
        self.topic = topic
        self.expected = expected
        self.seen: dict[bytes, float] = {}
        self.values: dict[bytes, list[bytes]] = {}
        self.foreign = 0
        self.done: Probe | None = None
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False
        )
        self._task: asyncio.Task[None] | None = None
        self._complete = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(tps)
        for tp, offset in (await self._consumer.end_offsets(tps)).items():
            self._consumer.seek(tp, offset)
        for tp in tps:  # resolve positions now, not after the first POST
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for r in records:
                    key = r.key or b""
                    if key not in self.expected:
                        self.foreign += 1
                        continue
                    self.values.setdefault(key, []).append(r.value or b"")
                    self.seen.setdefault(key, now)
            if self.done is None and len(self.seen) >= len(self.expected):
                self.done = Probe()
                self._complete.set()

    async def wait(self, stall_timeout_s: float) -> Probe:
        count, progress_at = -1, time.monotonic()
        while not self._complete.is_set():
            if self._task is not None and self._task.done():
                self._task.result()  # raises what stopped it
            if len(self.seen) != count:
                count, progress_at = len(self.seen), time.monotonic()
            elif time.monotonic() - progress_at > stall_timeout_s:
                raise RuntimeError(
                    f"stalled: {count}/{len(self.expected)} messages read from {self.topic}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._complete.wait(), 0.25)
        assert self.done is not None
        return self.done

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInput:
    """One RED CIWA-B report of a fresh patient, and what the bare variants write for it."""

    patient_id: uuid.UUID
    key: bytes  # the Kafka key: the patient id
    url: str
    headers: dict[str, str]  # bearer token (the patient's own) + Idempotency-Key
    body: dict[str, Any]
    total: int
    # bare variants: the rows and payloads the service would make, built before timing
    report_id: uuid.UUID
    episode_id: uuid.UUID
    reasons_json: str
    te: Wire  # ThresholdExceeded
    sr: Wire  # SymptomReported


def red_reports(settings: MonitoringSettings, n: int, rng: random.Random) -> list[ReportInput]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        patient = uuid.uuid4()
        answers = {item: rng.choice((3, 4)) for item in CIWA_ITEMS}  # total 51..68 >= 41: RED
        total = sum(answers.values())
        token = issue_dev_token(settings, subject=f"p-{i}", role=Role.PATIENT, patient_id=patient)
        report_id, episode_id = uuid.uuid4(), uuid.uuid4()
        reason = ThresholdReason(code="band:ciwa-b", instrument="ciwa-b", value=total, threshold=41)
        sr = SymptomReported.create(
            patient_id=patient,
            occurred_at=now,
            report_id=report_id,
            instrument="ciwa-b",
            instrument_version="1",
            method="self-report-modified",
            total_score=total,
            band="severe",
            red_flags=(),
        )
        te = ThresholdExceeded.create(
            patient_id=patient,
            occurred_at=now,
            report_id=report_id,
            episode_id=episode_id,
            severity="RED",
            reasons=(reason,),
            family="withdrawal",
            **sr.caused(),
        )
        out.append(
            ReportInput(
                patient_id=patient,
                key=str(patient).encode(),
                url=f"/api/monitoring/patients/{patient}/symptom-reports",
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
                body={"instrument": "ciwa-b", "oriented": True, "answers": answers},
                total=total,
                report_id=report_id,
                episode_id=episode_id,
                reasons_json=json.dumps([reason.model_dump()]),
                te=Wire.of(te),  # type: ignore[arg-type]
                sr=Wire.of(sr),  # type: ignore[arg-type]
            )
        )
    return out


def dose_events(m: int) -> list[DoseReduced]:
    """Real DoseReduced (the tests' helper's facts), effective today: as consumed in service,
    so a handler that plans check-ins after a step would plan them (none has its window closed)."""
    today = datetime.now(UTC).date()
    return [
        DoseReduced.create(
            patient_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            plan_id=uuid.uuid4(),
            step_number=3,
            drug="diazepam",
            previous_daily_dose_mg=Decimal("10"),
            new_daily_dose_mg=Decimal("9.5"),
            effective_on=today,
            taper_stage=TaperStage.ACTIVE,
            approved_by_decision_id=uuid.uuid4(),
            half_life_class="long",
        )
        for _ in range(m)
    ]


# --------------------------------------------------------------------------------------------
# bare SQL
# --------------------------------------------------------------------------------------------

INSERT_REPORT = (
    "INSERT INTO bench_reports (id, patient_id, idempotency_key, instrument, instrument_version,"
    " method, answers, red_flags, total_score, band, severity, reasons, pulse_bpm, submitted_by,"
    " reported_at) VALUES ($1, $2, $3, 'ciwa-b', '1', 'self-report-modified', $4, '[]', $5,"
    " 'severe', 'RED', $6, NULL, $7, $8)"
)
INSERT_OUTBOX = (
    "INSERT INTO bench_outbox (event_id, topic, message_key, event_type, payload, headers,"
    " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
INSERT_AUDIT = (
    "INSERT INTO bench_audit (at, actor, actor_role, action, resource, patient_id, outcome,"
    " request_id, client_addr) VALUES ($1, $2, 'patient', 'create', 'symptom_report', $3,"
    " 'allowed', NULL, '127.0.0.1')"
)
SELECT_BY_KEY = "SELECT * FROM bench_reports WHERE patient_id = $1 AND idempotency_key = $2"
SELECT_STEPS = (
    "SELECT effective_on, half_life_class FROM dose_history"
    " WHERE patient_id = $1 AND effective_on <= $2 ORDER BY effective_on"
)
SELECT_OVERRIDES = "SELECT thresholds FROM rule_overrides WHERE patient_id = $1"
SELECT_EPISODE = (
    "SELECT * FROM bench_episodes WHERE patient_id = $1 AND family = 'withdrawal'"
    " AND status = 'open'"
)
INSERT_EPISODE = (
    "INSERT INTO bench_episodes (id, patient_id, family, severity, status, opened_at, updated_at,"
    " last_source_id, source_count, reasons, history, version) VALUES ($1, $2, 'withdrawal',"
    " 'RED', 'open', $3, $3, $4, 1, $5, $6, 1)"
)
INSERT_DOSE = (
    "INSERT INTO bench_dose_history (event_id, patient_id, drug, new_daily_dose_mg, effective_on,"
    " half_life_class) VALUES ($1, $2, $3, $4, $5, $6)"
)
SELECT_DUE_CHECKINS = (
    "SELECT id, instruments FROM bench_checkins WHERE patient_id = $1"
    " AND status IN ('scheduled', 'due') AND due_at <= $2 AND window_closes_at > $2"
)
COUNT_CHECKINS = "SELECT count(*) FROM bench_checkins WHERE after_dose_event_id = $1"
SELECT_SUPERSEDED = (
    "SELECT id FROM bench_checkins WHERE patient_id = $1 AND status = 'scheduled'"
    " AND after_dose_event_id <> $2 AND due_at >= $3"
)
INSERT_CHECKIN = (
    "INSERT INTO bench_checkins (id, patient_id, after_dose_event_id, due_at, window_closes_at,"
    " instruments, status, completed_by_report_id) VALUES ($1, $2, $3, $4, $5, $6, 'scheduled',"
    " NULL)"
)
INSERT_TIMER = (
    "INSERT INTO bench_timers (id, kind, key, due_at, payload, trace_headers, attempts)"
    " VALUES ($1, 'checkin_due', $2, $3, $4, '{}', 0) ON CONFLICT (kind, key) DO NOTHING"
)
PAIR_OFFSETS_MS = 21  # A2: the second report of a pair starts 0..20 ms after the first
B_COPIES = (
    ("bench_dose_history", "dose_history"),
    ("bench_inbox", "inbox"),
    ("bench_checkins", "checkins"),
    ("bench_timers", "timers"),
)
SELECT_INBOX = "SELECT 1 FROM bench_inbox WHERE consumer = 'monitoring' AND event_id = $1"
INSERT_INBOX = (
    "INSERT INTO bench_inbox (consumer, event_id, topic, processed_at)"
    " VALUES ('monitoring', $1, $2, $3)"
)


def outbox_args(r: ReportInput, w: Wire, topic: str, event_type: str) -> tuple[Any, ...]:
    headers = json.dumps({k: v.decode() for k, v in w.headers})
    event_id = uuid.UUID(dict(w.headers)["event_id"].decode())
    return (event_id, topic, str(r.patient_id), event_type, w.value, headers, datetime.now(UTC))


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    reports: int
    concurrency: int
    dose_events: int
    repeats: int
    warmup: int
    commit_batch: int
    reference: bool
    profile: bool
    seed: int
    pairs: int
    stall_timeout_s: float = 60.0


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    pairs: dict[str, list[float]] = field(default_factory=dict)


class Bench:
    def __init__(self, infra: Infra, opts: Options, results: Results) -> None:
        self.infra = infra
        self.opts = opts
        self.results = results
        self.rng = random.Random(opts.seed)
        self.run_id = uuid.uuid4().hex[:10]
        self.database = f"bench_{self.run_id}"
        self.bs = infra.bootstrap_servers
        self.topic_a_base = f"bench.{self.run_id}.a-baseline-threshold-exceeded"
        self.topic_a_ref_te = f"bench.{self.run_id}.a-reference-threshold-exceeded"
        self.topic_a_ref_sr = f"bench.{self.run_id}.a-reference-symptom-reported"
        self.topic_b = f"bench.{self.run_id}.b-dose-reduced"
        self.settings = MonitoringSettings(
            database_url=infra.sqlalchemy_dsn(self.database),
            kafka_bootstrap_servers=self.bs,
            kafka_replication_factor=replication_factor(),
            environment="test",  # dev tokens; everything else at its deployed default
            clock_scale=1.0,
            clock_anchor=None,
        )
        self.pool: asyncpg.Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self.responses: list[Any] = []
        self.profiling = False  # the extra profiled runs add no check lines
        self.settle_waits: list[float] = []
        self.cadence = cadence_v1()
        self.instruments_json = json.dumps(list(self.cadence.instruments))
        self._last_reader_values: dict[bytes, list[bytes]] = {}
        self._last_foreign = 0

    @property
    def our_topics(self) -> list[str]:
        return [self.topic_a_base, self.topic_a_ref_te, self.topic_a_ref_sr, self.topic_b]

    # --- set-up -----------------------------------------------------------------------------
    async def run(self) -> None:
        from deploy.localstack.postgres import create_database_async

        await create_database_async(
            self.infra.asyncpg_dsn(self.infra.admin_database), self.database
        )
        topics_made = False
        try:
            await asyncio.to_thread(
                ensure_topics, self.bs, ALL_TOPICS, replication_factor=replication_factor()
            )
            await asyncio.to_thread(create_topics, self.bs, self.our_topics)
            topics_made = True
            c = self.opts.concurrency
            self.pool = await asyncpg.create_pool(
                self.infra.asyncpg_dsn(self.database), min_size=c, max_size=c
            )
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.bs, acks="all", enable_idempotence=True
            )
            await self.producer.start()
            await self._prepare()
            await self._step_a()
            await self._step_b()
            waits = self.settle_waits
            self.results.info.setdefault(
                "settle",
                "CHECKPOINT, then waited for autovacuum workers: median "
                f"{statistics.median(waits):.1f} s, max {max(waits):.1f} s",
            )
        finally:
            if self.producer is not None:
                await self.producer.stop()
            if self.pool is not None:
                await self.pool.close()
            if topics_made and self.infra.kafka is None:  # an external broker: tidy up
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(delete_topics, self.bs, self.our_topics)
            await self._drop_database()

    async def _drop_database(self) -> None:
        from deploy.localstack.postgres import quote_ident

        conn = await asyncpg.connect(self.infra.asyncpg_dsn(self.infra.admin_database))
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(self.database)} WITH (FORCE)")
        finally:
            await conn.close()

    async def _prepare(self) -> None:
        """Migrate (by a runtime that is never started), copy tables for the bare variants."""
        runtime = bootstrap(self.settings)
        try:
            from services.chassis.migrations import upgrade_to_head

            await upgrade_to_head(runtime.engine, SERVICE)
        finally:
            await runtime.engine.dispose()
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            for copy, table in (
                ("bench_reports", "symptom_reports"),
                ("bench_outbox", "outbox"),
                ("bench_audit", "audit_log"),
                ("bench_episodes", "episodes"),
                ("bench_dose_history", "dose_history"),
                ("bench_inbox", "inbox"),
                ("bench_checkins", "checkins"),
                ("bench_timers", "timers"),
            ):  # same columns, keys, indexes (the outbox's partial pending index too)
                await conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
            for name in (
                "server_version",
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "wal_sync_method",
                "shared_buffers",
                "max_connections",
            ):
                self.results.info[f"pg {name}"] = str(await conn.fetchval(f"SHOW {name}"))
        self.results.info["handler"] = describe_handler()

    async def _settle(self) -> None:
        """The same starting state for every measurement: a CHECKPOINT (dirty pages written, so
        no measurement pays for the previous one's), then no autovacuum worker running (the
        previous measurement's tables are vacuumed and analysed before, not during, the next)."""
        assert self.pool is not None
        try:
            await self.pool.execute("CHECKPOINT")
        except asyncpg.PostgresError as exc:  # not allowed on an external server
            self.results.info["settle"] = f"CHECKPOINT refused ({type(exc).__name__})"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and await self.pool.fetchval(  # noqa: ASYNC110 - polled
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        ):
            await asyncio.sleep(0.25)
        self.settle_waits.append(time.monotonic() - t0)

    def _order(self, rep: int) -> tuple[str, ...]:
        variants = [v for v in VARIANTS if v != "reference" or self.opts.reference]
        return tuple(variants if rep % 2 else reversed(variants))

    # --- A. HTTP -> ThresholdExceeded -------------------------------------------------------
    async def _step_a(self) -> None:
        o = self.opts
        print(
            f"\n== A. HTTP -> ThresholdExceeded: {o.reports} RED reports, {o.concurrency} clients,"
            f" {o.repeats} repeats (+{o.warmup} warm-up reports per measurement)",
            flush=True,
        )
        for rep in range(1, o.repeats + 1):
            for variant in self._order(rep):
                run = await self._a_once(variant, rep)
                self.results.runs.append(run)
                show(run)
        if o.profile:
            await self._profile_a()
        if o.pairs:
            await self._pairs()

    async def _a_once(
        self, variant: str, rep: int, *, profiler: cProfile.Profile | None = None
    ) -> Run:
        n, w = self.opts.reports, self.opts.warmup
        warm = red_reports(self.settings, w, self.rng)
        reports = red_reports(self.settings, n, self.rng)
        await self._settle()
        if variant == "pipeline":
            runtime = bootstrap(self.settings)
            relay = RelayCounter(runtime)
            await runtime.start()
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=runtime.app), base_url="http://monitoring"
            )
            try:
                if w:
                    await self._a_round(variant, rep, warm, self._http_op(client), runtime)
                relay.reset()
                run = await self._a_round(
                    variant, rep, reports, self._http_op(client), runtime, profiler
                )
                run.extra.update(relay.figures())
                run.extra.update(await self._check_pipeline_a(reports))
                return run
            finally:
                await client.aclose()
                await runtime.stop()
        op = self._baseline_op if variant == "baseline" else self._reference_op
        if w:
            await self._a_round(variant, rep, warm, op)
        run = await self._a_round(variant, rep, reports, op)
        await self._check_bare_a(variant, reports)
        return run

    def _http_op(self, client: httpx.AsyncClient) -> Callable[[ReportInput], Awaitable[Any]]:
        async def post(r: ReportInput) -> Any:
            resp = await client.post(r.url, json=r.body, headers=r.headers)
            if resp.status_code != 201:
                raise RuntimeError(f"POST -> {resp.status_code}: {resp.text[:300]}")
            return resp.json()

        return post

    async def _baseline_op(self, r: ReportInput) -> Any:
        """The minimal work: one transaction (report row + outbox-like row), then a send."""
        assert self.pool is not None and self.producer is not None
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                INSERT_REPORT,
                r.report_id,
                r.patient_id,
                r.headers["Idempotency-Key"],
                json.dumps(r.body["answers"]),
                r.total,
                r.reasons_json,
                "p-bench",
                now,
            )
            await conn.execute(
                INSERT_OUTBOX,
                *outbox_args(r, r.te, THRESHOLD_EXCEEDED.name, "ThresholdExceeded"),
            )
        await self.producer.send_and_wait(
            self.topic_a_base, r.te.value, key=r.key, headers=r.te.headers
        )
        return None

    async def _reference_op(self, r: ReportInput) -> Any:
        """The service's statements per report on bare asyncpg, then both events sent."""
        assert self.pool is not None and self.producer is not None
        now = datetime.now(UTC)
        key = r.headers["Idempotency-Key"]
        async with self.pool.acquire() as conn:
            async with conn.transaction():  # authorize_patient_access + its own commit
                await conn.execute(INSERT_AUDIT, now, "p-bench", r.patient_id)
            async with conn.transaction():  # submit_report
                await conn.fetchrow(SELECT_BY_KEY, r.patient_id, key)
                await conn.fetch(SELECT_STEPS, r.patient_id, now.date())
                await conn.fetchval(SELECT_OVERRIDES, r.patient_id)
                await conn.execute(
                    INSERT_REPORT,
                    r.report_id,
                    r.patient_id,
                    key,
                    json.dumps(r.body["answers"]),
                    r.total,
                    r.reasons_json,
                    "p-bench",
                    now,
                )
                await conn.execute(
                    INSERT_OUTBOX, *outbox_args(r, r.sr, SYMPTOM_REPORTED.name, "SymptomReported")
                )
                await conn.fetch(SELECT_DUE_CHECKINS, r.patient_id, now)
                await conn.fetchrow(SELECT_EPISODE, r.patient_id)
                await conn.execute(
                    INSERT_EPISODE,
                    r.episode_id,
                    r.patient_id,
                    now,
                    r.report_id,
                    r.reasons_json,
                    '["RED"]',
                )
                await conn.execute(
                    INSERT_OUTBOX,
                    *outbox_args(r, r.te, THRESHOLD_EXCEEDED.name, "ThresholdExceeded"),
                )
        sr = await self.producer.send(
            self.topic_a_ref_sr, r.sr.value, key=r.key, headers=r.sr.headers
        )
        te = await self.producer.send(
            self.topic_a_ref_te, r.te.value, key=r.key, headers=r.te.headers
        )
        await asyncio.gather(sr, te)
        return None

    async def _a_round(
        self,
        variant: str,
        rep: int,
        reports: list[ReportInput],
        op: Callable[[ReportInput], Awaitable[Any]],
        runtime: ServiceRuntime | None = None,
        profiler: cProfile.Profile | None = None,
    ) -> Run:
        n = len(reports)
        topic = {
            "pipeline": THRESHOLD_EXCEEDED.name,
            "baseline": self.topic_a_base,
            "reference": self.topic_a_ref_te,
        }[variant]
        reader = TopicReader(self.bs, topic, {r.key for r in reports})
        await reader.start()
        started = [0.0] * n
        answered = [0.0] * n
        self.responses = [None] * n

        async def one(_w: int, i: int) -> None:
            started[i] = time.perf_counter()
            self.responses[i] = await op(reports[i])
            answered[i] = time.perf_counter()

        ld = load()
        try:
            first = Probe()
            if profiler is not None:
                profiler.enable()
            await run_workers(n, self.opts.concurrency, one)
            done = await reader.wait(self.opts.stall_timeout_s)
            if profiler is not None:
                profiler.disable()
        finally:
            await reader.stop()
        run = make_run("A", variant, rep, ld, n, first, done)
        run.latencies_ms = [1000 * (reader.seen[r.key] - started[i]) for i, r in enumerate(reports)]
        answer_ms = [1000 * (answered[i] - started[i]) for i in range(n)]
        run.extra["answered per s"] = n / (max(answered) - first.sample.wall)
        run.extra["answer p50 ms"] = pct(answer_ms, 50)
        run.extra["answer p99 ms"] = pct(answer_ms, 99)
        run.extra["payload bytes"] = statistics.median(len(v[0]) for v in reader.values.values())
        dupes = sum(len(v) - 1 for v in reader.values.values())
        if dupes or len(reader.seen) != n:
            raise RuntimeError(f"A {variant}: read {len(reader.seen)}/{n} keys, {dupes} duplicates")
        self._last_reader_values = reader.values
        self._last_foreign = reader.foreign
        return run

    async def _check_pipeline_a(self, reports: list[ReportInput]) -> dict[str, float]:
        """Every answer RED, one ThresholdExceeded per patient carrying its report_id, N rows."""
        n = len(reports)
        for r, body in zip(reports, self.responses, strict=True):
            if body["severity"] != "RED" or body["replayed"] or body["total_score"] != r.total:
                raise RuntimeError(f"unexpected answer {body}")
            (value,) = self._last_reader_values[r.key]
            event = ThresholdExceeded.model_validate_json(value)
            if (
                str(event.report_id) != body["report_id"]
                or event.severity != "RED"
                or event.family != "withdrawal"
                or event.patient_id != r.patient_id
            ):
                raise RuntimeError(f"ThresholdExceeded does not match its report: {event}")
        assert self.pool is not None
        ids = [r.patient_id for r in reports]
        reports_n = await self.pool.fetchval(
            "SELECT count(*) FROM symptom_reports WHERE patient_id = ANY($1::uuid[])", ids
        )
        episodes_n = await self.pool.fetchval(
            "SELECT count(*) FROM episodes WHERE patient_id = ANY($1::uuid[])"
            " AND status = 'open' AND severity = 'RED'",
            ids,
        )
        keys = [str(i) for i in ids]
        outbox = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE event_type = 'ThresholdExceeded') AS te,"
            " count(*) FILTER (WHERE event_type = 'SymptomReported') AS sr"
            " FROM outbox WHERE message_key = ANY($1::text[])",
            keys,
        )
        deadline = time.monotonic() + self.opts.stall_timeout_s
        while pending := await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pending} outbox rows never published")
            await asyncio.sleep(0.1)
        if (reports_n, episodes_n, outbox["te"], outbox["sr"]) != (n, n, n, n):
            raise RuntimeError(
                f"expected {n} reports/episodes/events, got {reports_n}/{episodes_n}/"
                f"{outbox['te']} ThresholdExceeded/{outbox['sr']} SymptomReported"
            )
        lag = await self.pool.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99, max(s) AS max,"
            " count(*) FILTER (WHERE s > 0.5) AS slow FROM (SELECT extract(epoch FROM"
            " published_at - created_at)::float8 AS s FROM outbox"
            " WHERE message_key = ANY($1::text[]) AND event_type = 'ThresholdExceeded') AS lag",
            keys,
        )
        self._note_check(
            f"A pipeline: {n} x HTTP 201 RED (not replayed); {n} `ThresholdExceeded` read, one per"
            f" patient, each with its response's `report_id`, severity RED, family withdrawal; {n}"
            f" `symptom_reports`, {n} open RED `episodes`, {n}+{n} outbox rows (ThresholdExceeded"
            f" + SymptomReported), none left unpublished; other keys on the topic: "
            f"{self._last_foreign}"
        )
        return {
            "relay lag p50 ms": 1000 * lag["p50"],
            "relay lag p99 ms": 1000 * lag["p99"],
            "relay lag max ms": 1000 * lag["max"],
            "relay lag > 0.5 s": lag["slow"],
        }

    async def _check_bare_a(self, variant: str, reports: list[ReportInput]) -> None:
        assert self.pool is not None
        n = len(reports)
        ids = [r.patient_id for r in reports]
        got = await self.pool.fetchval(
            "SELECT count(*) FROM bench_reports WHERE patient_id = ANY($1::uuid[])", ids
        )
        rows = await self.pool.fetchval(
            "SELECT count(*) FROM bench_outbox WHERE message_key = ANY($1::text[])",
            [str(i) for i in ids],
        )
        want_rows = n if variant == "baseline" else 2 * n
        if got != n or rows != want_rows:
            raise RuntimeError(f"A {variant}: {got} report rows, {rows} outbox rows")
        for r in reports:
            if self._last_reader_values[r.key] != [r.te.value]:
                raise RuntimeError(f"A {variant}: the broker's copy differs")
        self._note_check(
            f"A {variant}: {n} report rows and {want_rows} outbox rows committed; {n} payloads "
            "read back, one per patient, byte-identical"
        )

    def _note_check(self, text: str) -> None:
        if not self.profiling and text not in self.results.checks:
            self.results.checks.append(text)

    async def _profile_a(self) -> None:
        prof = cProfile.Profile(time.process_time)
        self.profiling = True
        print("  A pipeline once more under cProfile (CPU time) ...", flush=True)
        try:
            run = await self._a_once("pipeline", 0, profiler=prof)
        finally:
            self.profiling = False
        self.results.profiles["A"] = summarise(prof, run.n, run.rate)

    async def _pairs(self) -> None:
        """Low traffic: K pairs of reports, the second POST started 0, 1, ... 20 ms after the
        first (two clients; so its commit lands before, during or after the relay's batch that
        publishes the first), then 1.2 s of quiet; the outbox lag (`created_at` ->
        `published_at`) of each report."""
        k = self.opts.pairs
        print(f"  A2: {k} pairs of reports, 0-{PAIR_OFFSETS_MS - 1} ms apart ...", flush=True)
        await self._settle()
        runtime = bootstrap(self.settings)
        await runtime.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.app), base_url="http://monitoring"
        )
        post = self._http_op(client)
        pairs: list[tuple[ReportInput, ReportInput]] = []
        try:
            for r in red_reports(self.settings, 10, self.rng):  # warm-up
                await post(r)
            await asyncio.sleep(1.5)
            for i in range(k):
                a, b = red_reports(self.settings, 2, self.rng)
                first: asyncio.Future[Any] = asyncio.ensure_future(post(a))
                await asyncio.sleep((i % PAIR_OFFSETS_MS) / 1000)
                await post(b)  # may commit while the relay is publishing a's event
                await first
                pairs.append((a, b))
                await asyncio.sleep(1.2)
        finally:
            await client.aclose()
            await runtime.stop()
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT message_key, extract(epoch FROM published_at - created_at)::float8 AS s"
            " FROM outbox WHERE event_type = 'ThresholdExceeded'"
            " AND message_key = ANY($1::text[])",
            [str(r.patient_id) for pair in pairs for r in pair],
        )
        lag = {row["message_key"]: 1000 * row["s"] for row in rows}
        if len(lag) != 2 * k:
            raise RuntimeError(f"A2: {len(lag)} of {2 * k} ThresholdExceeded published")
        self.results.pairs = {
            "first": [lag[str(a.patient_id)] for a, _ in pairs],
            "second": [lag[str(b.patient_id)] for _, b in pairs],
            "offset": [float(i % PAIR_OFFSETS_MS) for i in range(k)],
        }
        self.results.info["relay poll s"] = f"{self.settings.relay_poll_interval_s:g}"

    # --- B. consumer rate -------------------------------------------------------------------
    async def _step_b(self) -> None:
        o = self.opts
        print(
            f"\n== B. consumer: {o.dose_events} DoseReduced, {o.repeats} repeats, "
            f"offsets committed per {o.commit_batch}",
            flush=True,
        )
        for rep in range(1, o.repeats + 1):
            events = dose_events(o.dose_events)
            wires = [Wire.of(e) for e in events]
            # Every consumer starts where its topic ends now: it reads exactly these M.
            ends = await end_offsets(self.bs, DOSE_REDUCED.name)
            await commit_group_offsets(self.bs, SERVICE, DOSE_REDUCED.name, ends)
            group = f"bench-{self.run_id}-b{rep}"
            for name in ("baseline", "reference"):
                g_ends = await end_offsets(self.bs, self.topic_b)
                await commit_group_offsets(self.bs, f"{group}-{name}", self.topic_b, g_ends)
            assert self.producer is not None
            await produce(self.producer, self.topic_b, wires, 500)
            await produce(self.producer, DOSE_REDUCED.name, wires, 500)
            for variant in self._order(rep):
                await self._settle()
                if variant == "pipeline":
                    run = await self._b_pipeline(rep, events)
                else:
                    run = await self._b_bare(variant, rep, events, f"{group}-{variant}")
                self.results.runs.append(run)
                show(run)
        if o.profile:
            await self._profile_b()

    async def _b_pipeline(
        self, rep: int, events: list[DoseReduced], profiler: cProfile.Profile | None = None
    ) -> Run:
        assert self.pool is not None
        m = len(events)
        ids = [e.event_id for e in events]
        dlq_before = await end_offsets(self.bs, DOSE_REDUCED.dlq)
        before = await self.pool.fetchval("SELECT count(*) FROM dose_history")
        timers_before = await self.pool.fetchval("SELECT count(*) FROM timers")
        runtime = bootstrap(self.settings)
        ld = load()
        start = Probe()
        if profiler is not None:
            profiler.enable()
        await runtime.start()  # migrations (no-op), topics, broker + subscriber, relay, timers
        try:
            first, last = await self._track("SELECT count(*) FROM dose_history", before + m, before)
        finally:
            if profiler is not None:
                profiler.disable()
            await runtime.stop()
        row = await self.pool.fetchrow(
            "SELECT count(*) AS n, min(processed_at) AS t0, max(processed_at) AS t1 FROM inbox"
            " WHERE consumer = 'monitoring' AND event_id = ANY($1::uuid[])",
            ids,
        )
        history = await self.pool.fetchval(
            "SELECT count(*) FROM dose_history WHERE event_id = ANY($1::uuid[])", ids
        )
        checkins = await self.pool.fetchval(
            "SELECT count(*) FROM checkins WHERE after_dose_event_id = ANY($1::uuid[])", ids
        )
        timers = await self.pool.fetchval("SELECT count(*) FROM timers") - timers_before
        dlq_after = await end_offsets(self.bs, DOSE_REDUCED.dlq)
        dead = sum(dlq_after.values()) - sum(dlq_before.values())
        if row["n"] != m or history != m or dead:
            raise RuntimeError(
                f"B pipeline: inbox {row['n']}, dose_history {history} of {m}; {dead} dead-lettered"
            )
        self._note_check(
            f"B pipeline: {m} `inbox` rows and {m} `dose_history` rows for the M event ids, none "
            f"dead-lettered; {checkins / m:.2f} check-ins and {timers / m:.2f} timers "
            "scheduled per event"
        )
        if not self.profiling:
            self.results.info["checkins per DoseReduced"] = (
                f"{checkins / m:.2f} check-in rows and {timers / m:.2f} timers"
            )
        span = (row["t1"] - row["t0"]).total_seconds()
        # Steady state: first to last handled event, as chassis_bench (group join not counted);
        # CPU between the poll that saw the first rows and the one that saw all, scaled to M.
        run = make_run("B", "pipeline", rep, ld, m, first, last)
        scale = m / max(1, m - first.count)
        run.seconds = span * m / (m - 1)
        run.cpu_s *= scale
        run.machine_s *= scale
        if run.neighbours_s is not None:
            run.neighbours_s *= scale
        run.extra["per s incl. start"] = m / (last.sample.wall - start.sample.wall)
        run.extra["start to first s"] = first.sample.wall - start.sample.wall
        return run

    async def _track(self, query: str, want: int, before: int) -> tuple[CountProbe, CountProbe]:
        """Poll ``query`` (every 0.2 s) until ``want``: probes at first progress and at the end."""
        assert self.pool is not None
        first: CountProbe | None = None
        count, progress_at = -1, time.monotonic()
        while True:
            now = int(await self.pool.fetchval(query))
            if now > before and first is None:
                first = CountProbe(now - before)
            if now >= want:
                assert first is not None
                return first, CountProbe(now - before)
            if now != count:
                count, progress_at = now, time.monotonic()
            elif time.monotonic() - progress_at > self.opts.stall_timeout_s:
                raise RuntimeError(f"stalled at {count - before}/{want - before}: {query}")
            await asyncio.sleep(0.2)

    async def _b_bare(self, variant: str, rep: int, events: list[DoseReduced], group: str) -> Run:
        """Bare consumer: getone, json.loads, one transaction per message, commit per batch."""
        m, batch = len(events), self.opts.commit_batch
        consumer = AIOKafkaConsumer(
            self.topic_b,
            bootstrap_servers=self.bs,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            # Fresh, never-analysed copies for every run: the same events are inserted again,
            # and an emptied table whose statistics say "empty" would get seq-scan plans.
            for copy, table in B_COPIES:
                await conn.execute(f"DROP TABLE IF EXISTS {copy}")
                await conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
        ld = load()
        async with self.pool.acquire() as conn:
            start = Probe()
            await consumer.start()
            try:
                first = start
                for i in range(m):
                    msg = await asyncio.wait_for(consumer.getone(), self.opts.stall_timeout_s)
                    if i == 0:
                        first = Probe()
                    d = json.loads(msg.value or b"")
                    event_id = uuid.UUID(d["event_id"])
                    async with conn.transaction():
                        if variant == "reference":
                            if await conn.fetchval(SELECT_INBOX, event_id):
                                continue
                            await conn.execute(
                                INSERT_INBOX, event_id, DOSE_REDUCED.name, datetime.now(UTC)
                            )
                        patient = uuid.UUID(d["patient_id"])
                        effective_on = date.fromisoformat(d["effective_on"])
                        await conn.execute(
                            INSERT_DOSE,
                            event_id,
                            patient,
                            d["drug"],
                            Decimal(str(d["new_daily_dose_mg"])),
                            effective_on,
                            d["half_life_class"],
                        )
                        if variant == "reference":
                            await self._bare_checkins(conn, d, event_id, patient, effective_on)
                    if (i + 1) % batch == 0 or i == m - 1:
                        await consumer.commit()
                last = Probe()
            finally:
                await consumer.stop()
        ids = [e.event_id for e in events]
        got = await self.pool.fetchval(
            "SELECT count(*) FROM bench_dose_history WHERE event_id = ANY($1::uuid[])", ids
        )
        if got != m:
            raise RuntimeError(f"B {variant}: {got}/{m} rows")
        self._note_check(f"B {variant}: {m} rows for the M event ids")
        run = make_run("B", variant, rep, ld, m, first, last)
        run.seconds = (last.sample.wall - first.sample.wall) * m / (m - 1)
        run.extra["per s incl. start"] = m / (last.sample.wall - start.sample.wall)
        run.extra["start to first s"] = first.sample.wall - start.sample.wall
        return run

    async def _bare_checkins(
        self,
        conn: asyncpg.Connection,
        d: dict[str, Any],
        event_id: uuid.UUID,
        patient: uuid.UUID,
        effective_on: date,
    ) -> None:
        """``checkins.schedule_checkins``'s statements: the count, the supersede read, then a
        check-in row and a ``checkin_due`` timer per planned check-in."""
        planned = plan_checkins(effective_on, d["half_life_class"], self.cadence)
        if await conn.fetchval(COUNT_CHECKINS, event_id):
            return
        now = datetime.now(UTC)
        planned = [p for p in planned if p.window_closes_at > now]
        if not planned:
            return
        starts = datetime.combine(effective_on, datetime.min.time(), tzinfo=UTC)
        await conn.fetch(SELECT_SUPERSEDED, patient, event_id, starts)
        payload = json.dumps({"correlation_id": d["correlation_id"]})
        for p in planned:
            checkin_id = uuid.uuid4()
            await conn.execute(
                INSERT_CHECKIN,
                checkin_id,
                patient,
                event_id,
                p.due_at,
                p.window_closes_at,
                self.instruments_json,
            )
            await conn.execute(INSERT_TIMER, uuid.uuid4(), str(checkin_id), p.due_at, payload)

    async def _profile_b(self) -> None:
        m = min(self.opts.dose_events, 5000)
        events = dose_events(m)
        ends = await end_offsets(self.bs, DOSE_REDUCED.name)
        await commit_group_offsets(self.bs, SERVICE, DOSE_REDUCED.name, ends)
        assert self.producer is not None
        await produce(self.producer, DOSE_REDUCED.name, [Wire.of(e) for e in events], 500)
        prof = cProfile.Profile(time.process_time)
        self.profiling = True
        print(f"  B pipeline once more under cProfile (CPU time), {m} events ...", flush=True)
        try:
            await self._settle()
            run = await self._b_pipeline(0, events, profiler=prof)
        finally:
            self.profiling = False
        self.results.profiles["B"] = summarise(prof, m, run.rate)


class CountProbe(Probe):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count


class RelayCounter:
    """Counts the relay's batches (wraps the instance's ``publish_pending``; code unchanged)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.batches = self.empty = self.rows = 0
        inner = runtime.relay.publish_pending

        async def counted() -> int:
            sent = await inner()
            if sent:
                self.batches += 1
                self.rows += sent
            else:
                self.empty += 1
            return sent

        runtime.relay.publish_pending = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        self.batches = self.empty = self.rows = 0

    def figures(self) -> dict[str, float]:
        return {
            "relay batches": self.batches,
            "relay rows per batch": self.rows / max(1, self.batches),
            "relay empty rounds": self.empty,
        }


def describe_handler() -> str:
    subs = consumers.SUBSCRIPTIONS
    return "; ".join(
        f"`{s.topic.name}` -> `{getattr(s.handler, '__module__', '?')}."
        f"{getattr(s.handler, '__qualname__', '?')}`"
        for s in subs
    )


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

NAMES = {
    ("A", "baseline"): "baseline: bare asyncpg (report row + outbox-like row, 1 tx) + "
    "bare `send_and_wait` (acks=all, idempotent)",
    ("A", "reference"): "reference: bare asyncpg doing the service's statements (audit tx; "
    "5 reads, report + episode + 2 outbox rows, 1 tx) + 2 bare sends",
    ("A", "pipeline"): "pipeline: POST via `httpx.ASGITransport` -> FastAPI -> `submit_report` "
    "(2 commits) -> outbox relay -> Kafka",
    ("B", "baseline"): "baseline: bare `AIOKafkaConsumer.getone` + `json.loads` + asyncpg "
    "insert (1 tx/msg), offsets committed per 200",
    ("B", "reference"): "reference: as baseline + the service's other statements (inbox "
    "dedupe read + insert; check-ins: count, supersede read, 4 check-in + 4 timer inserts)",
    ("B", "pipeline"): "pipeline: monitoring's runtime (FastStream subscriber, inbox, handler)",
}


def step_table(results: Results, step: str, unit: str) -> list[str]:
    runs = [r for r in results.runs if r.step == step and r.rep > 0]
    variants = [v for v in VARIANTS if any(r.variant == v for r in runs)]
    lat = step == "A"
    head = f"| variant | best {unit}/s | median {unit}/s |"
    rule = "|---|---:|---:|"
    if lat:
        head += " p50 ms | p99 ms |"
        rule += "---:|---:|"
    else:
        head += f" median {unit}/s incl. start |"
        rule += "---:|"
    head += f" client CPU ms/{unit} | machine CPU ms/{unit} | others' CPU ms/{unit} |"
    rule += "---:|---:|---:|"
    out = [head, rule]
    best: dict[str, tuple[float, float]] = {}
    for v in variants:
        rs = [r for r in runs if r.variant == v]
        rates = [r.rate for r in rs]
        best[v] = (max(rates), statistics.median(rates))
        line = f"| {NAMES[(step, v)]} | {max(rates):,.0f} | {statistics.median(rates):,.0f} |"
        if lat:
            all_ms = [x for r in rs for x in r.latencies_ms]
            line += f" {pct(all_ms, 50):.1f} | {pct(all_ms, 99):.1f} |"
        else:
            line += f" {statistics.median(r.extra['per s incl. start'] for r in rs):,.0f} |"
        others = [r.neighbours_s / r.n for r in rs if r.neighbours_s is not None]
        line += (
            f" {statistics.median(r.cpu_s / r.n for r in rs) * 1000:.2f} |"
            f" {statistics.median(r.machine_s / r.n for r in rs) * 1000:.2f} |"
        )
        line += f" {statistics.median(others) * 1000:.2f} |" if others else " n/a |"
        out.append(line)
    out.append("")
    if "pipeline" in best:
        p = best["pipeline"]
        for v in ("baseline", "reference"):
            if v in best:
                b = best[v]
                out.append(
                    f"- **pipeline / {v}: {p[0] / b[0]:.2f}** (best/best), "
                    f"{p[1] / b[1]:.2f} (median/median)"
                )
        if lat and "baseline" in variants:
            pl = [x for r in runs if r.variant == "pipeline" for x in r.latencies_ms]
            bl = [x for r in runs if r.variant == "baseline" for x in r.latencies_ms]
            out.append(
                f"- latency pipeline / baseline: p50 {pct(pl, 50) / pct(bl, 50):.1f}x, "
                f"p99 {pct(pl, 99) / pct(bl, 99):.1f}x"
            )
    out += ["", "Every repetition (1-minute load average just before it):", ""]
    for r in runs:
        extra = ""
        if step == "A":
            extra = (
                f"; HTTP answered {r.extra['answered per s']:,.0f}/s (answer p50 "
                f"{r.extra['answer p50 ms']:.1f} / p99 {r.extra['answer p99 ms']:.1f} ms)"
                if r.variant == "pipeline"
                else f"; sender done {r.extra['answered per s']:,.0f}/s"
            )
            slow = sum(1 for x in r.latencies_ms if x > 500)
            extra += f"; latency max {max(r.latencies_ms):,.0f} ms, {slow} over 500 ms"
            if "relay batches" in r.extra:
                extra += (
                    f"; relay {r.extra['relay batches']:.0f} batches of "
                    f"{r.extra['relay rows per batch']:.1f} rows, outbox `created_at` -> "
                    f"`published_at` p50 {r.extra['relay lag p50 ms']:.0f} / p99 "
                    f"{r.extra['relay lag p99 ms']:.0f} / max {r.extra['relay lag max ms']:.0f}"
                    f" ms, {r.extra['relay lag > 0.5 s']:.0f} rows over 0.5 s"
                )
        else:
            extra = (
                f"; {r.extra['start to first s']:.1f} s from start to the first event, "
                f"{r.extra['per s incl. start']:,.0f}/s including it"
            )
        out.append(
            f"- rep {r.rep} {r.variant}: {r.rate:,.0f}/s over {r.seconds:.2f} s{extra}; "
            f"load {r.load}"
        )
    return out


def pairs_section(results: Results) -> list[str]:
    if not results.pairs:
        return []
    out = [
        "## A2. Low traffic: two reports 0-20 ms apart, then 1.2 s of quiet",
        "",
        f"{len(results.pairs['first'])} pairs, two clients, the second POST started 0, 1, ... "
        f"{PAIR_OFFSETS_MS - 1} ms (cycling) after the first (a POST takes ~5-10 ms here, so the "
        "second commits before, during or after the relay's batch that publishes the first); "
        "a fresh runtime, "
        f"relay poll interval {results.info.get('relay poll s', '?')} s. Outbox `created_at` -> "
        "`published_at` of each report's `ThresholdExceeded`:",
        "",
        "| report | p50 ms | max ms | over 500 ms |",
        "|---|---:|---:|---:|",
    ]
    for which in ("first", "second"):
        lags = results.pairs[which]
        out.append(
            f"| {which} of the pair | {pct(lags, 50):.0f} | {max(lags):.0f} | "
            f"{sum(1 for x in lags if x > 500)} of {len(lags)} |"
        )
    slow = sorted(
        {
            int(o)
            for o, x in zip(results.pairs["offset"], results.pairs["second"], strict=True)
            if x > 500
        }
    )
    out += [
        "",
        "Offsets (ms) at which the second report waited over 500 ms: "
        + (", ".join(map(str, slow)) if slow else "none")
        + ".",
    ]
    return [*out, ""]


def render(
    results: Results, opts: Options, infra: Infra, started: datetime, elapsed: float, cmd: str
) -> str:
    info = results.info
    a_runs = [r for r in results.runs if r.step == "A" and r.variant == "pipeline" and r.rep > 0]
    te_bytes = statistics.median(r.extra["payload bytes"] for r in a_runs) if a_runs else 0
    base = [r for r in results.runs if r.step == "A" and r.variant == "baseline"]
    base_bytes = statistics.median(r.extra["payload bytes"] for r in base) if base else 0
    out = [
        f"# Monitoring benchmark — {started:%Y-%m-%d}",
        "",
        f"Run `{cmd}` started {started:%Y-%m-%d %H:%M:%S} UTC, took {elapsed:.0f} s. "
        f"Load average at start: {info.get('load at start', '?')}. Code: {info.get('git', '?')}.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine_info(CLIENT_LIBRARIES).items()),
        f"- Kafka: {infra.kafka_version}, {infra.kafka_source}",
        f"- PostgreSQL: {info.get('pg server_version', '?')}, {infra.pg_source}",
        "- Kafka, PostgreSQL and this single-process, single-event-loop benchmark (clients, "
        "service, relay, reader) share the cores. **Shared machine:** another engineer may run "
        "tests meanwhile; the load average before every measurement and the CPU every other "
        "process used during it (*others' CPU*: machine busy time minus this process, the Kafka "
        "JVM and the PostgreSQL processes, from `/proc`) are recorded.",
        "",
        "## Settings",
        "",
        f"- A: N = {opts.reports} reports per measurement (+{opts.warmup} warm-up reports, not "
        f"timed, through the same path first), C = {opts.concurrency} concurrent clients (asyncio"
        " tasks sharing one counter), each report for a distinct new patient with its own patient"
        " token and `Idempotency-Key`: CIWA-B v1, oriented, the 17 patient-rated items each 3 or "
        "4 (total 51-68 >= 41: RED, one `withdrawal` episode, one `ThresholdExceeded`); HTTP "
        "in-process through `httpx.ASGITransport` (no socket, no uvicorn: HTTP parsing and the "
        "network are not measured); the runtime started by `runtime.start()` as the ASGI lifespan "
        "would (relay, subscriber, timers running; relay woken on commit, poll 1 s)",
        "- A timing: from the first POST (or first bare transaction) to the moment a separate "
        "aiokafka consumer (no group, partitions assigned and positioned at the topic's end "
        "before the first POST, `getmany` every <= 100 ms) has read the N-th `ThresholdExceeded` "
        "of these patients; latency per report: its POST start -> its `ThresholdExceeded` read. "
        f"Payload on the wire: {te_bytes:.0f} bytes (pipeline) vs {base_bytes:.0f} bytes "
        "(baseline: a real `ThresholdExceeded` built before timing, same reason)",
        f"- B: M = {opts.dose_events} real `DoseReduced` (`to_bytes()`, the relay's headers, "
        "keyed by patient, effective today) produced to `taper.scheduler.dose-reduced.v1` after "
        "monitoring's group was committed at its end, and to a bench topic; each consumer "
        "reads exactly those M. Rates from the first to the last event handled "
        "(pipeline: `min`/`max(inbox.processed_at)`), so the group join is not counted; the "
        "rate including start-up is shown too. CPU for the pipeline is sampled between the "
        "polls (every 0.2 s) that saw the first and the last rows, scaled to M",
        f"- handler measured in B: {info.get('handler', '?')}; check-ins planned per event: "
        f"{info.get('checkins per DoseReduced', '?')}",
        f"- Kafka producers: `acks=all`, idempotent; {PARTITIONS} partitions, replication factor "
        f"{replication_factor()}; consumers: auto-commit off, offsets committed per "
        f"{opts.commit_batch} messages (the service: per 200 or 200 ms)",
        f"- PostgreSQL: fsync={info.get('pg fsync')}, synchronous_commit="
        f"{info.get('pg synchronous_commit')}, full_page_writes={info.get('pg full_page_writes')}"
        f", wal_sync_method={info.get('pg wal_sync_method')}, shared_buffers="
        f"{info.get('pg shared_buffers')}; bare variants write to `LIKE ... INCLUDING ALL` copies "
        "of the service's tables (same columns, keys, indexes) in the same database; one "
        "database for the run: A's tables grow by N per repetition in every variant, B's "
        "`dose_history` by M per repetition, while B's bare copies are created afresh (same "
        "events again) before each run",
        f"- service settings as deployed (pool 10 + overflow 10, relay batch 200, consumer "
        f"retries 3); logging: {info.get('logging', '?')}; tracing: a `TracerProvider` without "
        "exporter (no OTLP endpoint), spans created and dropped",
        f"- {opts.repeats} repetitions; the variants alternate order between repetitions; a fresh"
        " runtime (`bootstrap`) for every pipeline measurement; before every measurement: "
        f"{info.get('settle', '?')}",
        "",
        "## A. Reports/s from HTTP to `ThresholdExceeded` on the broker",
        "",
        *step_table(results, "A", "report"),
        "",
        *pairs_section(results),
        "## B. Consumer rate (`DoseReduced`)",
        "",
        *step_table(results, "B", "event"),
        "",
        "## Checks (after every repetition; a failure stops the run)",
        "",
        *(f"- {c}" for c in results.checks),
        "",
    ]
    for step, p in results.profiles.items():
        out += [
            f"## Where the CPU goes: {step} pipeline under cProfile (one more run, not in the "
            "tables)",
            "",
            f"{p['n']} events at {p['rate']:,.0f}/s under the profiler; "
            f"{p['total_ms']:.2f} ms CPU per event in this process (the profiler's own overhead "
            "included). Own CPU time by package:",
            "",
            "| package | ms per event | share |",
            "|---|---:|---:|",
            *(f"| {k} | {v:.3f} | {100 * v / p['total_ms']:.0f}% |" for k, v in p["packages"][:14]),
            "",
            "Top functions by own CPU time:",
            "",
            "| function | ms per event |",
            "|---|---:|",
            *(f"| `{f}` | {t:.3f} |" for f, t in p["functions"]),
            "",
        ]
    out += ["## Interpretation", "", "(written by hand after reading the figures)", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.monitoring_bench", description=(__doc__ or "").split("\n", 1)[0]
    )
    p.add_argument("--reports", type=int, default=5000, help="N reports per A measurement")
    p.add_argument("--concurrency", type=int, default=8, help="C concurrent HTTP clients (8)")
    p.add_argument("--dose-events", type=int, default=20000, help="M events per B measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=200, help="untimed reports before each A run")
    p.add_argument("--commit-batch", type=int, default=200, help="bare consumers' offset commits")
    p.add_argument("--no-reference", dest="reference", action="store_false")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument(
        "--pairs",
        type=int,
        default=63,
        help="A2 report pairs (63: each offset 3 times); 0 skips it",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--log-level", default="INFO", help="service log level (INFO, as deployed)")
    p.add_argument("--output", type=Path, default=None, help="'-' for none")
    args = p.parse_args(argv)
    if args.reports < 2 or args.dose_events < 2 or args.repeats < 1:
        p.error("--reports and --dose-events must be >= 2, --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(
        args.reports,
        args.concurrency,
        args.dose_events,
        args.repeats,
        args.warmup,
        args.commit_batch,
        args.reference,
        args.profile,
        args.seed,
        args.pairs,
    )
    cmd = " ".join(
        ["python -m bench.monitoring_bench", *(argv if argv is not None else sys.argv[1:])]
    )
    started = datetime.now(UTC)
    results = Results()
    results.info["load at start"] = load()
    results.info["git"] = git_state()
    infra = Infra()
    t0 = time.perf_counter()
    with service_logging(SERVICE, args.log_level) as logging_note:
        results.info["logging"] = logging_note
        try:
            infra.start()
            if infra.kafka is not None and infra.pg is not None:
                Probe.sessions = frozenset({infra.kafka.pid, infra.pg.proc.pid})
            print(f"Kafka {infra.bootstrap_servers} | PostgreSQL {infra.pg_source}", flush=True)
            asyncio.run(Bench(infra, opts, results).run())
        finally:
            infra.stop()
    text = render(results, opts, infra, started, time.perf_counter() - t0, cmd)
    write_results(text, args.output, "monitoring", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
