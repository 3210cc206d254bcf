"""The reliability core against bare aiokafka and bare PostgreSQL, measured in the same run.

``python -m bench.chassis_bench [--events N]`` starts its own single-node Kafka
(:class:`deploy.localstack.kafka.LocalKafka`) and PostgreSQL
(:class:`deploy.localstack.postgres.LocalPostgres` with ``fast=False``: fsync, synchronous_commit
and full_page_writes stay on) unless ``KAFKA_BOOTSTRAP_SERVERS`` / ``TEST_POSTGRES_URL`` are set,
then measures, with the same ``DoseReduced`` payload (``to_bytes()``) and N events:

1. write path: bare asyncpg (one transaction per row) vs the chassis ``UnitOfWork``
   (``uow.publish(event)`` + ``commit()``), relay not running, same number of concurrent writers;
2. relay path: bare ``AIOKafkaProducer(acks="all", enable_idempotence=True)`` vs
   ``OutboxRelay.publish_pending()`` draining the rows of step 1;
3. consume path: bare ``AIOKafkaConsumer`` (offsets committed after every message, and every
   200 messages like the chassis) + one bare asyncpg insert per message vs monitoring's real
   consumer (FastStream subscriber, inbox dedupe, ``record_dose_reduced``), each on its own
   topic holding N fresh events;
4. end-to-end latency at a steady rate: ``uow.commit()`` -> relay -> Kafka -> consumer handler vs
   bare produce -> consume.

It prints a results table and writes it to ``bench/results/chassis-<date>.md`` (``--output``).
Throughput is reported, never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness.infra import Infra
from bench.harness.kafka import (
    PARTITIONS,
    Wire,
    commit_group_offsets,
    create_topics,
    delete_topics,
    end_offsets,
    produce,
    replication_factor,
)
from bench.harness.logs import service_logging
from bench.harness.measure import Sample, load, pct, run_workers
from bench.harness.payloads import dose_reduced
from bench.machine import machine_info
from bench.report import write_results
from contracts import ALL_TOPICS, DOSE_REDUCED, DoseReduced
from services.chassis.kafka import ensure_topics, make_broker
from services.chassis.migrations import upgrade_to_head
from services.chassis.outbox import OutboxRelay
from services.chassis.runtime import ServiceRuntime
from services.monitoring.bootstrap import bootstrap
from services.monitoring.settings import MonitoringSettings

SERVICE = "monitoring"

log = logging.getLogger("bench.chassis")


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


@dataclass
class Figure:
    path: str
    variant: str
    events: int
    seconds: float
    rate: float
    cpu_s: float  # this (client) process
    machine_s: float  # every core, every process: client, Kafka, PostgreSQL
    note: str = ""

    @property
    def cpu_ms_per_event(self) -> float:
        return 1000 * self.cpu_s / self.events

    @property
    def machine_ms_per_event(self) -> float:
        return 1000 * self.machine_s / self.events


def figure(path: str, variant: str, events: int, start: Sample, note: str = "") -> Figure:
    end = Sample()
    seconds = end.wall - start.wall
    return Figure(
        path,
        variant,
        events,
        seconds,
        events / seconds,
        end.cpu - start.cpu,
        end.busy - start.busy,
        note,
    )


@dataclass
class Latency:
    variant: str
    samples_ms: list[float]
    note: str = ""

    def pct(self, p: float) -> float:
        return pct(self.samples_ms, p)


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        print(
            f"  {fig.path:8} {fig.variant:55} {fig.events:>7} ev {fig.seconds:8.2f} s "
            f"{fig.rate:10.0f} ev/s  client {fig.cpu_ms_per_event:.3f} ms/ev  "
            f"machine {fig.machine_ms_per_event:.3f} ms/ev",
            flush=True,
        )
        return fig

    def get(self, path: str, prefix: str) -> Figure:
        return next(f for f in self.figures if f.path == path and f.variant.startswith(prefix))


def phase(title: str) -> None:
    print(f"\n== {title}  (load average {load()})", flush=True)


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    events: int
    consume_events: int
    concurrency: int
    batch: int
    latency_events: int
    latency_rate: float
    latency_warmup: int = 20
    stall_timeout_s: float = 60.0


class Bench:
    def __init__(self, infra: Infra, opts: Options, report: Report) -> None:
        self.infra = infra
        self.opts = opts
        self.report = report
        self.run_id = uuid.uuid4().hex[:10]
        self.database = f"bench_{self.run_id}"
        self.topic_relay = f"bench.{self.run_id}.relay-baseline"
        self.topic_relay200 = f"bench.{self.run_id}.relay-baseline-200"
        self.topic_consume = f"bench.{self.run_id}.consume-baseline"
        self.topic_latency = f"bench.{self.run_id}.latency-baseline"
        self.bs = infra.bootstrap_servers

    @property
    def our_topics(self) -> list[str]:
        return [self.topic_relay, self.topic_relay200, self.topic_consume, self.topic_latency]

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
            await self._run_all()
        finally:
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

    async def _run_all(self) -> None:
        opts = self.opts
        dsn = self.infra.asyncpg_dsn(self.database)
        settings = MonitoringSettings(
            database_url=self.infra.sqlalchemy_dsn(self.database),
            kafka_bootstrap_servers=self.bs,
            kafka_replication_factor=replication_factor(),
            environment="test",
            clock_scale=1.0,  # a real clock: latencies compare its timestamps with time.time()
            clock_anchor=None,
        )
        runtime = bootstrap(settings)
        self.report.info["relay batch size"] = str(settings.relay_batch_size)
        pool = await asyncpg.create_pool(dsn, min_size=opts.concurrency, max_size=opts.concurrency)
        producer = AIOKafkaProducer(bootstrap_servers=self.bs, acks="all", enable_idempotence=True)
        await producer.start()
        assert pool is not None
        try:
            await upgrade_to_head(runtime.engine, SERVICE)  # the relay is not started
            await self._pg_settings(pool)
            events = [dose_reduced() for _ in range(opts.events)]
            await self._encode_cost(events)
            await self._write_path(runtime, pool, events)
            await self._relay_path(runtime, pool, producer, events)
            await self._consume_path(runtime, pool, producer, dsn)
            if opts.latency_events:
                await self._latency_pipeline(runtime, pool)
                await runtime.stop()
                await self._latency_baseline(producer)
        finally:
            await runtime.stop()  # no-op when stopped
            await runtime.engine.dispose()
            await producer.stop()
            await pool.close()

    async def _pg_settings(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            for name in (
                "server_version",
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "wal_sync_method",
                "shared_buffers",
            ):
                self.report.info[f"pg {name}"] = str(await conn.fetchval(f"SHOW {name}"))

    async def _encode_cost(self, events: list[DoseReduced]) -> None:
        t0 = time.perf_counter()
        sizes = [len(e.to_bytes()) for e in events]
        per_event_us = 1e6 * (time.perf_counter() - t0) / len(events)
        self.report.info["payload bytes (min/max)"] = f"{min(sizes)}/{max(sizes)}"
        self.report.info["DoseReduced.to_bytes() cost"] = f"{per_event_us:.1f} us/event"

    # --- 1. write path ------------------------------------------------------------------------
    async def _write_path(
        self, runtime: ServiceRuntime, pool: asyncpg.Pool, events: list[DoseReduced]
    ) -> None:
        opts = self.opts
        n, c = opts.events, opts.concurrency
        payloads = [e.to_bytes() for e in events]
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE bench_plain (id bigserial PRIMARY KEY, payload bytea NOT NULL)"
            )
            # The outbox's exact shape and indexes (PK, unique event_id, partial pending index).
            await conn.execute("CREATE TABLE bench_outbox_shape (LIKE outbox INCLUDING ALL)")

        phase(f"1. write path: {n} events, one transaction each, {c} concurrent writers")
        conns = [await pool.acquire() for _ in range(c)]
        try:

            async def plain(w: int, i: int) -> None:
                async with conns[w].transaction():
                    await conns[w].execute(
                        "INSERT INTO bench_plain (payload) VALUES ($1)", payloads[i]
                    )

            start = Sample()
            await run_workers(n, c, plain)
            self.report.add(
                figure("write", "baseline: bare asyncpg, plain table (id, payload)", n, start)
            )

            topic = DOSE_REDUCED.name

            async def outbox_shape(w: int, i: int) -> None:
                e = events[i]
                headers = {
                    "event_type": e.event_type,
                    "event_id": str(e.event_id),
                    "schema_version": str(e.schema_version),
                }
                async with conns[w].transaction():
                    await conns[w].execute(
                        "INSERT INTO bench_outbox_shape (event_id, topic, message_key, "
                        "event_type, payload, headers, created_at) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        e.event_id,
                        topic,
                        str(e.patient_id),
                        e.event_type,
                        payloads[i],
                        json.dumps(headers),
                        datetime.now(UTC),
                    )

            start = Sample()
            await run_workers(n, c, outbox_shape)
            self.report.add(
                figure(
                    "write",
                    "reference: bare asyncpg, outbox-shaped row + indexes",
                    n,
                    start,
                    "same row and indexes as the outbox, without SQLAlchemy/UnitOfWork",
                )
            )
        finally:
            for conn in conns:
                await pool.release(conn)

        await self._warm_pool(runtime, c)

        async def pipeline(_w: int, i: int) -> None:
            async with runtime.uow() as uow:
                await uow.publish(events[i])
                await uow.commit()

        start = Sample()
        await run_workers(n, c, pipeline)
        self.report.add(
            figure("write", "pipeline: UnitOfWork.publish + commit (outbox row)", n, start)
        )
        pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        if pending != n:
            raise RuntimeError(f"expected {n} pending outbox rows, found {pending}")

    async def _warm_pool(self, runtime: ServiceRuntime, concurrency: int) -> None:
        """Open the engine's connections first, as the baseline's pool already has them."""

        async def hold() -> None:
            async with runtime.session_factory() as session:
                await session.execute(sa.text("SELECT 1"))
                await asyncio.sleep(0.05)

        await asyncio.gather(*(hold() for _ in range(concurrency)))

    # --- 2. relay path ------------------------------------------------------------------------
    async def _relay_path(
        self,
        runtime: ServiceRuntime,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        events: list[DoseReduced],
    ) -> None:
        n, batch = self.opts.events, self.opts.batch
        relay_batch = runtime.settings.relay_batch_size
        wires = [Wire.of(e) for e in events]
        phase(f"2. relay path: {n} events, acks=all, idempotent producer, {PARTITIONS} partitions")
        for topic, size in ((self.topic_relay, batch), (self.topic_relay200, relay_batch)):
            await producer.partitions_for(topic)  # metadata first, like a running relay has
            start = Sample()
            await produce(producer, topic, wires, size)
            self.report.add(
                figure(
                    "relay", f"baseline: bare AIOKafkaProducer, acks gathered per {size}", n, start
                )
            )

        # The relay's own pieces, not the runtime's broker: that one would also start monitoring's
        # subscriber, which would consume what the relay publishes while we measure.
        broker = make_broker(self.bs, client_id=SERVICE)
        await broker.start()
        try:
            relay = OutboxRelay(
                service=SERVICE,
                session_factory=runtime.session_factory,
                tables=runtime.metadata,
                broker=broker,
                clock=runtime.clock,
                tracer_provider=runtime.tracer_provider,
                batch_size=relay_batch,
            )
            start = Sample()
            total = 0
            while sent := await relay.publish_pending():
                total += sent
            self.report.add(
                figure(
                    "relay",
                    f"pipeline: OutboxRelay.publish_pending (batch {relay_batch})",
                    total,
                    start,
                )
            )
        finally:
            await broker.stop()
        if total != n:
            raise RuntimeError(f"relay published {total} rows, expected {n}")

    # --- 3. consume path ----------------------------------------------------------------------
    async def _consume_path(
        self, runtime: ServiceRuntime, pool: asyncpg.Pool, producer: AIOKafkaProducer, dsn: str
    ) -> None:
        n = self.opts.consume_events
        phase(f"3. consume path: {n} events each")
        fresh = [Wire.of(dose_reduced()) for _ in range(n)]
        # Monitoring's group starts where the topic ends now: it reads only the fresh events
        # (not the relay's output of step 2, nor anything an earlier run left).
        ends = await end_offsets(self.bs, DOSE_REDUCED.name)
        await commit_group_offsets(self.bs, SERVICE, DOSE_REDUCED.name, ends)
        await produce(producer, self.topic_consume, fresh, self.opts.batch)
        await produce(producer, DOSE_REDUCED.name, fresh, self.opts.batch)

        await pool.execute(
            "CREATE TABLE bench_consumed (id bigserial PRIMARY KEY, payload bytea NOT NULL)"
        )
        await self._consume_baseline(dsn, n, commit_every=1)
        # Like for like: the chassis commits offsets every 200 messages (or 200 ms).
        await self._consume_baseline(dsn, n, commit_every=200)

        await runtime.start()  # migrations (no-op), topics, broker + subscriber, relay, timers
        first, first_count, last = await self._track(pool, "SELECT count(*) FROM inbox", n)
        t_first, t_last, handled = await pool.fetchrow(
            "SELECT min(processed_at), max(processed_at), "
            "(SELECT count(*) FROM dose_history) FROM inbox"
        )
        span = (t_last - t_first).total_seconds()
        steady = n - first_count
        self.report.add(
            Figure(
                "consume",
                "pipeline: monitoring consumer (inbox + record_dose_reduced)",
                n,
                span,
                (n - 1) / span,
                (last.cpu - first.cpu) * n / steady,
                (last.busy - first.busy) * n / steady,
                "events/s from the first to the last `inbox.processed_at`; CPU sampled while "
                "the `inbox` count rose (polled every 0.1 s), scaled to N",
            )
        )
        if handled != n:
            raise RuntimeError(f"dose_history has {handled} rows, expected {n}")

    async def _consume_baseline(self, dsn: str, n: int, *, commit_every: int) -> None:
        consumer = AIOKafkaConsumer(
            self.topic_consume,
            bootstrap_servers=self.bs,
            group_id=f"bench-{self.run_id}-commit-{commit_every}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        conn = await asyncpg.connect(dsn)
        await consumer.start()
        fetch_s = db_s = commit_s = 0.0
        try:
            first = Sample()
            for i in range(n):
                t0 = time.perf_counter()
                msg = await asyncio.wait_for(consumer.getone(), self.opts.stall_timeout_s)
                t1 = time.perf_counter()
                if i == 0:
                    first = Sample()
                else:
                    fetch_s += t1 - t0
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO bench_consumed (payload) VALUES ($1)", msg.value
                    )
                t2 = time.perf_counter()
                if (i + 1) % commit_every == 0 or i == n - 1:
                    await consumer.commit()
                db_s += t2 - t1
                commit_s += time.perf_counter() - t2
            last = Sample()
        finally:
            await consumer.stop()
            await conn.close()
        span = last.wall - first.wall
        per = 1000 / n
        label = "commit each" if commit_every == 1 else f"commit per {commit_every}"
        breakdown = (
            f"getone() {fetch_s * per:.2f} ms, asyncpg insert+commit {db_s * per:.2f} ms, "
            f"consumer.commit() {commit_s * per:.2f} ms per message"
        )
        self.report.info[f"consume baseline breakdown ({label})"] = breakdown
        self.report.add(
            Figure(
                "consume",
                f"baseline: bare AIOKafkaConsumer + asyncpg insert, {label}",
                n,
                span,
                (n - 1) / span,
                last.cpu - first.cpu,
                last.busy - first.busy,
                "events/s and CPU from the first to the last message; per message: " + breakdown,
            )
        )

    async def _track(self, pool: asyncpg.Pool, query: str, want: int) -> tuple[Sample, int, Sample]:
        """Poll ``query``: (sample at first progress, count then, sample when ``want`` reached)."""
        first: Sample | None = None
        first_count = 0
        count, progress_at = 0, time.monotonic()
        while True:
            now = int(await pool.fetchval(query))
            if now and first is None:
                first, first_count = Sample(), now
            if now >= want:
                assert first is not None
                return first, first_count, Sample()
            if now != count:
                count, progress_at = now, time.monotonic()
            elif time.monotonic() - progress_at > self.opts.stall_timeout_s:
                raise RuntimeError(f"stalled at {count}/{want}: {query}")
            await asyncio.sleep(0.1)

    async def _wait_count(self, pool: asyncpg.Pool, query: str, want: int, *args: Any) -> int:
        """Poll ``query`` until it reaches ``want``; fail after a stall (no progress) timeout."""
        count, progress_at = -1, time.monotonic()
        while True:
            now = await pool.fetchval(query, *args)
            if now >= want:
                return int(now)
            if now != count:
                count, progress_at = now, time.monotonic()
            elif time.monotonic() - progress_at > self.opts.stall_timeout_s:
                raise RuntimeError(f"stalled at {count}/{want}: {query}")
            await asyncio.sleep(0.25)

    # --- 4. latency ---------------------------------------------------------------------------
    async def _latency_pipeline(self, runtime: ServiceRuntime, pool: asyncpg.Pool) -> None:
        count, rate, warm = (
            self.opts.latency_events,
            self.opts.latency_rate,
            self.opts.latency_warmup,
        )
        phase(f"4. end-to-end latency: {count} events at {rate:g}/s (+{warm} warm-up, dropped)")
        committed: list[tuple[uuid.UUID, float]] = []
        commit_ms: list[float] = []
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for k in range(warm + count):
            await asyncio.sleep(max(0.0, begin + k / rate - loop.time()))
            event = dose_reduced()
            async with runtime.uow() as uow:
                await uow.publish(event)
                t0 = time.time()
                await uow.commit()
                commit_ms.append(1000 * (time.time() - t0))
            committed.append((event.event_id, t0))
        measured = dict(committed[warm:])
        ids = list(measured)
        deadline = time.monotonic() + self.opts.stall_timeout_s
        query = "SELECT event_id, processed_at FROM inbox WHERE event_id = ANY($1::uuid[])"
        while len(rows := await pool.fetch(query, ids)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(rows)}/{count} latency events were handled")
            await asyncio.sleep(0.1)
        samples = [1000 * (r["processed_at"].timestamp() - measured[r["event_id"]]) for r in rows]
        lat = Latency(
            "pipeline: uow.commit() -> relay -> Kafka -> monitoring handler",
            samples,
            "from the `commit()` call (its fsync included) to `inbox.processed_at` (handler "
            f"start); `commit()` alone p50 {Latency('', commit_ms[warm:]).pct(50):.2f} ms",
        )
        self._print_latency(lat)

    async def _latency_baseline(self, producer: AIOKafkaProducer) -> None:
        count, rate, warm = (
            self.opts.latency_events,
            self.opts.latency_rate,
            self.opts.latency_warmup,
        )
        total = warm + count
        consumer = AIOKafkaConsumer(
            self.topic_latency,
            bootstrap_servers=self.bs,
            group_id=f"bench-latency-{self.run_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        sent: dict[int, float] = {}
        received: dict[int, float] = {}

        async def receive() -> None:
            while len(received) < total:
                msg = await consumer.getone()
                received[int(dict(msg.headers)["i"])] = time.time()
                await consumer.commit()  # as the pipeline's consumer does

        receiver = asyncio.create_task(receive())
        try:
            while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for it
                await asyncio.sleep(0.05)
            wire = Wire.of(dose_reduced())
            loop = asyncio.get_running_loop()
            begin = loop.time()
            for k in range(total):
                await asyncio.sleep(max(0.0, begin + k / rate - loop.time()))
                sent[k] = time.time()
                await producer.send_and_wait(
                    self.topic_latency,
                    wire.value,
                    key=str(uuid.uuid4()).encode(),
                    headers=[*wire.headers, ("i", str(k).encode())],
                )
            await asyncio.wait_for(receiver, self.opts.stall_timeout_s)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            await consumer.stop()
        lat = Latency(
            "baseline: bare produce (acks=all) -> bare consumer",
            [1000 * (received[k] - sent[k]) for k in range(warm, total)],
            "from `send_and_wait()` called to `getone()` returning; offset committed per message",
        )
        self._print_latency(lat)

    def _print_latency(self, lat: Latency) -> None:
        self.report.latencies.append(lat)
        print(
            f"  latency  {lat.variant:55} p50 {lat.pct(50):7.2f} ms  p90 {lat.pct(90):7.2f} ms  "
            f"p99 {lat.pct(99):7.2f} ms  max {max(lat.samples_ms):7.2f} ms",
            flush=True,
        )


CLIENT_LIBRARIES = ("aiokafka", "faststream", "sqlalchemy", "asyncpg")

# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def ratio_rows(report: Report) -> list[tuple[str, str, str, float]]:
    rows: list[tuple[str, str, str, float]] = []
    for path, base, pipe in (
        ("write", "baseline", "pipeline"),
        ("write", "reference", "pipeline"),
        ("write", "baseline", "reference"),
        ("relay", "baseline: bare AIOKafkaProducer, acks gathered per 500", "pipeline"),
        ("relay", "baseline: bare AIOKafkaProducer, acks gathered per 200", "pipeline"),
        ("consume", "baseline: bare AIOKafkaConsumer + asyncpg insert, commit each", "pipeline"),
        ("consume", "baseline: bare AIOKafkaConsumer + asyncpg insert, commit per 200", "pipeline"),
    ):
        try:
            b, p = report.get(path, base), report.get(path, pipe)
        except StopIteration:
            continue
        rows.append((path, p.variant, b.variant, p.rate / b.rate))
    return rows


def render(report: Report, opts: Options, infra: Infra, started: datetime, elapsed: float) -> str:
    info = report.info
    out = [
        f"# Chassis benchmark — {started:%Y-%m-%d}",
        "",
        f"Run started {started:%Y-%m-%d %H:%M:%S} UTC, took {elapsed:.0f} s "
        f"(`python -m bench.chassis_bench --events {opts.events} "
        f"--consume-events {opts.consume_events}`). "
        f"Load average at start: {info.get('load at start', '?')}.",
        "",
        "## Machine",
        "",
        *(
            f"- {k}: {v}"
            for k, v in machine_info(("aiokafka", "faststream", "sqlalchemy", "asyncpg")).items()
        ),
        f"- Kafka: {infra.kafka_version}, {infra.kafka_source}",
        f"- PostgreSQL: {info.get('pg server_version', '?')}, {infra.pg_source}",
        "- Kafka, PostgreSQL and this (single-process, single event loop) client share the cores.",
        "",
        "## Settings",
        "",
        f"- N = {opts.events} events per write and relay measurement, {opts.consume_events} per "
        "consume measurement (a consumer that commits each offset runs at ~150/s here, see below)"
        "; payload: a real `DoseReduced`, "
        f"`to_bytes()` = {info.get('payload bytes (min/max)', '?')} bytes",
        f"- write path: one transaction per event, {opts.concurrency} concurrent writers "
        "(asyncio tasks) in every variant",
        f"- Kafka producer: `acks=all`, idempotent; {PARTITIONS} partitions, replication factor "
        f"{replication_factor()}; baseline gathers acks every {opts.batch} sends (and every "
        f"{info.get('relay batch size', '?')}, the relay's batch size)",
        "- consumers: auto-commit off, offset committed after each message, "
        "one database transaction per message",
        f"- PostgreSQL: fsync={info.get('pg fsync')}, "
        f"synchronous_commit={info.get('pg synchronous_commit')}, "
        f"full_page_writes={info.get('pg full_page_writes')}, "
        f"wal_sync_method={info.get('pg wal_sync_method')}, "
        f"shared_buffers={info.get('pg shared_buffers')}",
        f"- logging: {info.get('logging', '?')}",
        f"- `DoseReduced.to_bytes()` alone: {info.get('DoseReduced.to_bytes() cost', '?')}",
        "",
        "## Throughput",
        "",
        "| path | variant | events | seconds | events/s | client CPU ms/event "
        "| machine CPU ms/event |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for f in report.figures:
        out.append(
            f"| {f.path} | {f.variant} | {f.events} | {f.seconds:.2f} | {f.rate:,.0f} "
            f"| {f.cpu_ms_per_event:.3f} | {f.machine_ms_per_event:.3f} |"
        )
    out += [
        "",
        "Client CPU: this process (`time.process_time`). Machine CPU: busy time of all cores "
        "(`/proc/stat`, idle and iowait excluded), i.e. client + Kafka + PostgreSQL. "
        + " ".join(
            f"{f.path} {f.variant.split(':')[0]}: {f.note}." for f in report.figures if f.note
        ),
        "",
        "## Ratios (pipeline / baseline events/s)",
        "",
        "| path | measured | against | ratio |",
        "|---|---|---|---:|",
        *(f"| {p} | {a} | {b} | **{r:.2f}** |" for p, a, b, r in ratio_rows(report)),
    ]
    if report.latencies:
        out += [
            "",
            "## End-to-end latency",
            "",
            "| variant | events | p50 ms | p90 ms | p99 ms | max ms | measured |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for lat in report.latencies:
            out.append(
                f"| {lat.variant} | {len(lat.samples_ms)} | {lat.pct(50):.2f} | "
                f"{lat.pct(90):.2f} | {lat.pct(99):.2f} | {max(lat.samples_ms):.2f} | {lat.note} |"
            )
        if len(report.latencies) == 2:
            p, b = report.latencies
            out += [
                "",
                f"Ratio pipeline/baseline: p50 **{p.pct(50) / b.pct(50):.1f}x**, "
                f"p99 **{p.pct(99) / b.pct(99):.1f}x**.",
            ]
    if report.notes:
        out += ["", "## Notes", "", *(f"- {n}" for n in report.notes)]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chassis_bench", description=__doc__)
    p.add_argument("--events", type=int, default=20000, help="N per measurement (20000)")
    p.add_argument(
        "--consume-events",
        type=int,
        default=5000,
        help="N of the consume path (5000: ~7 ms per message, bounded by the offset commit)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="concurrent writers (8)")
    p.add_argument("--batch", type=int, default=500, help="baseline producer ack batch (500)")
    p.add_argument("--latency-events", type=int, default=500, help="0 skips step 4 (500)")
    p.add_argument("--latency-rate", type=float, default=50.0, help="events/s in step 4 (50)")
    p.add_argument("--log-level", default="INFO", help="service log level (INFO, as deployed)")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file (default bench/results/chassis-<date>.md); '-' writes none",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(
        args.events,
        args.consume_events,
        args.concurrency,
        args.batch,
        args.latency_events,
        args.latency_rate,
    )
    started = datetime.now(UTC)
    report = Report()
    report.info["load at start"] = load()
    infra = Infra()
    t0 = time.perf_counter()
    with service_logging(SERVICE, args.log_level) as logging_note:
        report.info["logging"] = logging_note
        try:
            infra.start()
            print(f"Kafka {infra.bootstrap_servers} | PostgreSQL {infra.pg_source}", flush=True)
            asyncio.run(Bench(infra, opts, report).run())
        finally:
            infra.stop()
    elapsed = time.perf_counter() - t0
    text = render(report, opts, infra, started, elapsed)
    write_results(text, args.output, "chassis", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
