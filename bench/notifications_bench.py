"""Notifications: ``ThresholdExceeded`` on the broker -> the page at the webhook, vs bare Kafka.

``python -m bench.notifications_bench`` starts its own single-node Kafka and PostgreSQL
(``LocalPostgres(fast=False)``: fsync, synchronous_commit and full_page_writes on) unless
``KAFKA_BOOTSTRAP_SERVERS`` / ``TEST_POSTGRES_URL`` are set (the infrastructure of
:mod:`bench.chassis_bench`), and a *driver* process (this module with ``--driver``) that holds the
load generator and the webhook receiver, so neither shares an event loop with what is measured.
For each offered rate R (``--rates``) it produces N = R x ``--seconds`` RED ``ThresholdExceeded``
(distinct patients and episodes, ``AIOKafkaProducer(acks="all", enable_idempotence=True)``, sends
on an open-loop schedule, acks gathered at the end) and measures, per event, from the instant just
before ``send()`` to the arrival (CLOCK_MONOTONIC, one clock for every process on the machine):

- ``pipeline``: the real notifications runtime in this process (``bootstrap(settings)`` with its
  real channels, the webhook pointed at the driver's receiver; ``runtime.start()``; a fresh
  database per measurement, the ``notifications`` group committed at the topic's end first) ->
  consumer (inbox, escalation, step timer) -> timer poller (page, delivery, deliver timer) ->
  deliver timer -> ``POST`` -> the receiver has the whole request;
- ``kafka`` (baseline): the same records to a bench topic, a bare ``AIOKafkaConsumer`` in this
  process (own group, committed at the topic's end) -> ``getone()`` returned and the JSON parsed;
- ``kafka+http`` (baseline for the HTTP hop): as ``kafka``, then a bare ``httpx`` POST of a
  PagerDuty-shaped body to the same receiver -> the receiver has the whole request.

Every measurement is repeated (``--repeats``), variants alternating order; best and median are
reported, with the 1-minute load average before each. After every measurement the work is
checked (every episode arrived exactly once, N distinct ``dedup_key``; for the pipeline N pages
delivered, N deliveries sent, nothing failed or dead-lettered): a failed check stops the run.
The pipeline's latency is split into stages from the rows' own timestamps. Writes
``bench/results/notifications-<date>.md`` (``--output``), keeping its hand-written
Interpretation. Reported, never asserted: not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness.infra import Infra
from bench.harness.kafka import (
    Wire,
    commit_group_offsets,
    create_topics,
    delete_topics,
    end_offsets,
    replication_factor,
)
from bench.harness.logs import service_logging
from bench.harness.measure import Probe, Run, load, make_run, pct, show
from bench.harness.profile import summarise
from bench.machine import machine_info
from bench.report import ROOT, git_state, write_results
from contracts import ALL_TOPICS, THRESHOLD_EXCEEDED, Severity, ThresholdExceeded, ThresholdReason
from services.chassis.kafka import ensure_topics
from services.chassis.runtime import ServiceRuntime
from services.notifications.bootstrap import bootstrap
from services.notifications.service_layer.escalations import FALLBACK
from services.notifications.settings import NotificationsSettings

SERVICE = "notifications"
VARIANTS = ("kafka", "kafka+http", "pipeline")
CLIENT_LIBRARIES = ("aiokafka", "faststream", "sqlalchemy", "asyncpg", "httpx")
WARMUP_RATE = 20.0  # warm-up events per second (group joined, pools and connections open)
PIPE_LIMIT = 1 << 26  # one JSON line per driver answer


def now_ns() -> int:
    """CLOCK_MONOTONIC: the same clock in the driver process and in this one."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# --------------------------------------------------------------------------------------------
# the driver process: load generator + webhook receiver
# --------------------------------------------------------------------------------------------


class Receiver:
    """A lean HTTP/1.1 endpoint (keep-alive, ``Content-Length`` bodies) answering 202 like
    PagerDuty Events v2; records when each request has fully arrived, by episode."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[int]] = {}
        self.dedup: dict[str, int] = {}
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._open: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and the clients' keep-alive connections (the service never closes
        its channel's client), letting each connection's handler end on its own."""
        if self._server is not None:
            self._server.close()
        handlers = [t for t in self._open.values() if t is not None]
        for writer in list(self._open):
            writer.close()  # the handler's read then ends with IncompleteReadError
        await asyncio.gather(*handlers, return_exceptions=True)

    def take(self) -> dict[str, Any]:
        out = {"arrivals": self.arrivals, "dedup": self.dedup, "requests": self.requests}
        self.arrivals, self.dedup, self.requests = {}, {}, 0
        return out

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open[writer] = asyncio.current_task()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                arrived = now_ns()
                answer = self._record(body, arrived)
                writer.write(
                    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._open.pop(writer, None)
            writer.close()

    def _record(self, body: bytes, arrived: int) -> bytes:
        self.requests += 1
        page = json.loads(body)
        dedup = str(page.get("dedup_key"))
        episode = str(page["payload"]["custom_details"]["episode_id"])
        self.arrivals.setdefault(episode, []).append(arrived)
        self.dedup[dedup] = self.dedup.get(dedup, 0) + 1
        return json.dumps({"status": "success", "dedup_key": dedup}).encode()


async def paced_produce(producer: AIOKafkaProducer, cmd: dict[str, Any]) -> dict[str, Any]:
    """Open loop: record k is sent at start + k / rate whatever happened to the ones before."""
    loop = asyncio.get_running_loop()
    rate, topic = float(cmd["rate"]), cmd["topic"]
    sent: list[int] = []
    futures = []
    slip = 0.0
    begin = loop.time() + 0.01
    for k, (key, value, headers) in enumerate(cmd["records"]):
        due = begin + k / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        slip = max(slip, loop.time() - due)
        sent.append(now_ns())
        futures.append(
            await producer.send(
                topic,
                value.encode(),
                key=key.encode(),
                headers=[(h, v.encode()) for h, v in headers],
            )
        )
    await asyncio.gather(*futures)
    return {"sent": sent, "slip_ms": 1000 * slip}


async def driver_main(bootstrap_servers: str) -> None:
    """Serve commands, one JSON line each on stdin, answer one JSON line each on stdout."""
    receiver = Receiver()
    port = await receiver.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()

    def answer(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    answer({"port": port})
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):  # EOF: the parent is gone
            cmd = json.loads(line)
            if cmd["op"] == "produce":
                answer(await paced_produce(producer, cmd))
            elif cmd["op"] == "count":
                answer({"n": len(receiver.arrivals)})
            elif cmd["op"] == "take":
                answer(receiver.take())
            else:
                break
    finally:
        await producer.stop()
        await receiver.stop()


class Driver:
    """The parent's handle on the driver process."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pages"

    async def start(self, bootstrap_servers: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.notifications_bench",
            "--driver",
            bootstrap_servers,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            limit=PIPE_LIMIT,
        )
        self.port = int((await self._read())["port"])

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the driver process exited ({await self.proc.wait()})")
        return json.loads(line)

    async def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
            await self.proc.stdin.drain()
            return await self._read()

    async def produce(self, topic: str, events: list[Event], rate: float) -> dict[str, Any]:
        records = [
            (
                e.wire.key.decode(),
                e.wire.value.decode(),
                [(h, v.decode()) for h, v in e.wire.headers],
            )
            for e in events
        ]
        return await self.call(op="produce", topic=topic, rate=rate, records=records)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    episode: str
    wire: Wire


def red_events(n: int) -> list[Event]:
    """RED ``ThresholdExceeded`` for n fresh patients, one episode each, keyed by patient."""
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        te = ThresholdExceeded.create(
            patient_id=uuid.uuid4(),
            occurred_at=now,
            report_id=uuid.uuid4(),
            episode_id=uuid.uuid4(),
            severity=Severity.RED,
            reasons=(ThresholdReason(code="red_flag:seizure"),),
            family="safety",
        )
        out.append(Event(str(te.episode_id), Wire.of(te)))  # type: ignore[arg-type]
    return out


def bare_page(episode: str, value: dict[str, Any]) -> dict[str, Any]:
    """What the bare ``kafka+http`` variant POSTs: a PagerDuty-Events-v2-shaped trigger."""
    return {
        "routing_key": "bench",
        "event_action": "trigger",
        "dedup_key": f"bare-{episode}",
        "payload": {
            "summary": "RED taper escalation",
            "severity": "critical",
            "source": "bench",
            "custom_details": {"episode_id": episode, "patient_id": value["patient_id"]},
        },
    }


# --------------------------------------------------------------------------------------------
# the systems under test
# --------------------------------------------------------------------------------------------


class BareConsumer:
    """A group consumer on the bench topic: ``getone()``, ``json.loads``, optionally a POST."""

    def __init__(self, bootstrap_servers: str, topic: str, group: str, post_url: str | None):
        self.seen: dict[str, list[int]] = {}
        self.post_url = post_url
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            group_id=group,
            enable_auto_commit=True,
            auto_commit_interval_ms=200,  # the service: every 200 ms or 200 messages
            auto_offset_reset="earliest",
        )
        self._client = httpx.AsyncClient(timeout=5.0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            msg = await self._consumer.getone()
            value = json.loads(msg.value or b"")
            episode = value["episode_id"]
            self.seen.setdefault(episode, []).append(now_ns())
            if self.post_url is not None:
                page = bare_page(episode, value)
                resp = await self._client.post(
                    self.post_url,
                    content=json.dumps(page),
                    headers={"Content-Type": "application/json", "Idempotency-Key": episode},
                )
                resp.raise_for_status()

    def check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # raises what stopped it

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
        await self._client.aclose()


class RuntimeCounters:
    """What the runtime does per page: SQL statements and connection checkouts (engine events),
    timer poller rounds and claims (the instance's ``fire_due`` / ``_fire_one`` wrapped; the
    service's code is unchanged)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.counts = dict.fromkeys(COUNTED, 0)
        sync_engine = runtime.engine.sync_engine
        sa.event.listen(sync_engine, "before_cursor_execute", self._statement)
        sa.event.listen(sync_engine, "checkout", self._checkout)
        poller = runtime.timers
        fire_due, fire_one = poller.fire_due, poller._fire_one

        async def counted_round() -> int:
            self.counts["timer rounds"] += 1
            return await fire_due()

        async def counted_claim() -> str | None:
            outcome = await fire_one()
            self.counts["timer claims" if outcome else "empty timer claims"] += 1
            return outcome

        poller.fire_due = counted_round  # type: ignore[method-assign]
        poller._fire_one = counted_claim  # type: ignore[method-assign]

    def _statement(self, *_: Any) -> None:
        self.counts["SQL statements"] += 1

    def _checkout(self, *_: Any) -> None:
        self.counts["connection checkouts"] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


class GcPauses:
    """Full (generation 2) garbage collections in this process and how long each stopped it."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append(1000 * (time.perf_counter() - self._started))


COUNTED = (
    "SQL statements",
    "connection checkouts",
    "timer rounds",
    "timer claims",
    "empty timer claims",
)


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    rates: list[float]
    seconds: float
    repeats: int
    warmup: int
    variants: tuple[str, ...]
    profile: bool
    profile_rate: float
    profile_out: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # service settings, attribution only
    gc_freeze: bool = False  # attribution only: gc.freeze() once the runtime has started
    stall_timeout_s: float = 60.0


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    stages: dict[float, dict[str, list[float]]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)


STAGES = (
    ("Kafka -> consumer handler (`inbox.processed_at`)", "consumed"),
    ("consumer tx + commit -> step timer claimed", "step_claimed"),
    ("step handler (page, delivery) + commit -> deliver timer claimed", "deliver_claimed"),
    ("deliver handler reads -> `sent_at` (just before the POST)", "sent_at"),
    ("POST -> receiver has the request", "arrived"),
)
STAGE_QUERY = """
SELECT e.episode_id::text AS episode, i.processed_at AS consumed, ts.fired_at AS step_claimed,
       td.fired_at AS deliver_claimed, d.sent_at AS sent_at
FROM escalations e
JOIN inbox i ON i.consumer = 'notifications' AND i.event_id = e.threshold_event_id
JOIN timers ts ON ts.kind = 'escalation_step' AND ts.key = e.id::text || ':c0:o0:l1'
JOIN pages p ON p.escalation_id = e.id
JOIN deliveries d ON d.owner_kind = 'page' AND d.owner_id = p.id
JOIN timers td ON td.kind = 'deliver' AND td.key = d.id::text || ':a0'
WHERE e.episode_id::text = ANY($1::text[])
"""


class Bench:
    def __init__(self, infra: Infra, opts: Options, results: Results) -> None:
        self.infra = infra
        self.opts = opts
        self.results = results
        self.run_id = uuid.uuid4().hex[:10]
        self.bs = infra.bootstrap_servers
        self.topic = f"bench.{self.run_id}.threshold-exceeded"
        self.driver = Driver()
        self.measurements = 0
        self.settle_waits: list[float] = []
        self.gc = GcPauses()

    async def run(self) -> None:
        await asyncio.to_thread(
            ensure_topics, self.bs, ALL_TOPICS, replication_factor=replication_factor()
        )
        await asyncio.to_thread(create_topics, self.bs, [self.topic])
        try:
            await self.driver.start(self.bs)
            assert self.driver.proc is not None
            if self.infra.kafka is not None and self.infra.pg is not None:  # ours: we know them
                ours = {self.infra.kafka.pid, self.infra.pg.proc.pid, self.driver.proc.pid}
                Probe.sessions = frozenset(ours)
            await self._server_info()
            o = self.opts
            for rep in range(1, o.repeats + 1):
                for rate in o.rates:
                    print(f"\n== rep {rep}, {rate:g} events/s (load {load()})", flush=True)
                    order = o.variants if rep % 2 else tuple(reversed(o.variants))
                    for variant in order:
                        run = await self._measure(variant, rep, rate)
                        self.results.runs.append(run)
                        show(run)
            if o.profile and "pipeline" in o.variants:
                await self._profile()
            w = self.settle_waits
            self.results.info["settle"] = (
                "CHECKPOINT, then waited until no autovacuum worker ran: median "
                f"{statistics.median(w):.1f} s, max {max(w):.1f} s"
            )
        finally:
            await self.driver.stop()
            if self.infra.kafka is None:  # an external broker: tidy up
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(delete_topics, self.bs, [self.topic])

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.infra.asyncpg_dsn(self.infra.admin_database))

    async def _server_info(self) -> None:
        conn = await self._admin()
        try:
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes"):
                self.results.info[f"pg {name}"] = str(await conn.fetchval(f"SHOW {name}"))
        finally:
            await conn.close()

    async def _settle(self) -> None:
        """Every measurement starts with dirty pages written and no autovacuum running."""
        conn = await self._admin()
        try:
            with contextlib.suppress(asyncpg.PostgresError):  # refused on an external server
                await conn.execute("CHECKPOINT")
            t0 = time.monotonic()
            query = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            while time.monotonic() - t0 < 60 and await conn.fetchval(query):  # noqa: ASYNC110
                await asyncio.sleep(0.25)
            self.settle_waits.append(time.monotonic() - t0)
        finally:
            await conn.close()

    # --- one measurement ----------------------------------------------------------------------
    async def _measure(
        self, variant: str, rep: int, rate: float, profiler: cProfile.Profile | None = None
    ) -> Run:
        n = max(2, round(rate * self.opts.seconds))
        warm, timed = red_events(self.opts.warmup), red_events(n)
        self.measurements += 1
        await self._settle()
        await self.driver.call(op="take")  # the receiver starts empty
        if variant == "pipeline":
            async with self._pipeline() as (db, counters):
                run, sent, arrived = await self._drive(
                    variant, rep, rate, THRESHOLD_EXCEEDED.name, warm, timed, profiler, counters
                )
                await self._check_pipeline(db, warm + timed, rate, rep, sent, arrived)
            return run
        group = f"bench-{self.run_id}-{self.measurements}"
        await commit_group_offsets(
            self.bs, group, self.topic, await end_offsets(self.bs, self.topic)
        )
        post = self.driver.url if variant == "kafka+http" else None
        consumer = BareConsumer(self.bs, self.topic, group, post)
        await consumer.start()
        try:
            run, sent, arrived = await self._drive(
                variant, rep, rate, self.topic, warm, timed, profiler, None, consumer
            )
        finally:
            await consumer.stop()
        self._note(
            f"{variant}: every episode {'POSTed and received' if post else 'consumed'} exactly "
            f"once ({len(warm)} warm-up + N), no other key"
        )
        return run

    async def _drive(
        self,
        variant: str,
        rep: int,
        rate: float,
        topic: str,
        warm: list[Event],
        timed: list[Event],
        profiler: cProfile.Profile | None,
        counters: RuntimeCounters | None = None,
        consumer: BareConsumer | None = None,
    ) -> tuple[Run, dict[str, int], dict[str, int]]:
        """Warm up (untimed), then the timed events at ``rate``; waits for every arrival."""

        async def count() -> int:
            if variant == "kafka":
                assert consumer is not None
                consumer.check()
                return len(consumer.seen)
            if consumer is not None:
                consumer.check()
            return int((await self.driver.call(op="count"))["n"])

        run_counts: dict[str, float] = {}
        await self.driver.produce(topic, warm, min(rate, WARMUP_RATE))
        await self._wait(count, len(warm), f"{variant} warm-up")
        ld = load()
        before = counters.snapshot() if counters is not None else {}
        gc_before = len(self.gc.pauses_ms)
        first = Probe()
        if profiler is not None:
            profiler.enable()
        produced = await self.driver.produce(topic, timed, rate)
        await self._wait(count, len(warm) + len(timed), variant)
        if profiler is not None:
            profiler.disable()
        last = Probe()
        full_gcs = self.gc.pauses_ms[gc_before:]
        run_counts["full GCs"] = len(full_gcs)
        run_counts["full GC max ms"] = max(full_gcs, default=0.0)
        if counters is not None:
            after = counters.snapshot()
            for k in COUNTED:
                run_counts[k] = (after[k] - before[k]) / len(timed)
        if variant == "kafka":
            assert consumer is not None
            seen = consumer.seen
        else:
            got = await self.driver.call(op="take")
            seen = got["arrivals"]
            dedup = got["dedup"]
            everyone = warm + timed
            if got["requests"] != len(everyone) or len(dedup) != len(everyone):
                raise RuntimeError(
                    f"{variant}: {got['requests']} requests, {len(dedup)} dedup keys, "
                    f"expected {len(everyone)} of each"
                )
        expected = {e.episode for e in warm + timed}
        dupes = {k: len(v) for k, v in seen.items() if len(v) != 1}
        if set(seen) != expected or dupes:
            raise RuntimeError(
                f"{variant}: {len(set(seen) & expected)}/{len(expected)} episodes arrived, "
                f"{len(set(seen) - expected)} foreign, {len(dupes)} more than once"
            )
        sent = {e.episode: t for e, t in zip(timed, produced["sent"], strict=True)}
        arrived = {e.episode: seen[e.episode][0] for e in timed}
        run = make_run(rate_label(rate), variant, rep, ld, len(timed), first, last)
        run.extra.update(run_counts)
        run.latencies_ms = [(arrived[k] - sent[k]) / 1e6 for k in sent]
        span_s = (max(arrived.values()) - min(sent.values())) / 1e9
        run.extra["per s"] = len(timed) / span_s
        run.extra["slip ms"] = produced["slip_ms"]
        return run, sent, arrived

    async def _wait(self, count: Callable[[], Awaitable[int]], want: int, what: str) -> None:
        got, progress_at = -1, time.monotonic()
        while (now := await count()) < want:
            if now != got:
                got, progress_at = now, time.monotonic()
            elif time.monotonic() - progress_at > self.opts.stall_timeout_s:
                raise RuntimeError(f"{what}: stalled at {now}/{want}")
            await asyncio.sleep(0.05)

    # --- the pipeline ---------------------------------------------------------------------------
    def settings(self, database: str) -> NotificationsSettings:
        return NotificationsSettings(
            environment="development",  # as before TAPER_ENV lost its default
            database_url=self.infra.sqlalchemy_dsn(database),
            kafka_bootstrap_servers=self.bs,
            kafka_replication_factor=replication_factor(),
            clock_scale=1.0,
            clock_anchor=None,
            page_webhook_url=self.driver.url,
            **self.opts.overrides,
        )

    @contextlib.asynccontextmanager
    async def _pipeline(self) -> AsyncIterator[tuple[str, RuntimeCounters]]:
        """A fresh database and runtime; the group starts at the topic's end (old runs' events
        are never consumed again, and their timers are gone with their database)."""
        from deploy.localstack.postgres import create_database_async, quote_ident

        database = f"nbench_{self.run_id}_{self.measurements}"
        admin_dsn = self.infra.asyncpg_dsn(self.infra.admin_database)
        await create_database_async(admin_dsn, database)
        ends = await end_offsets(self.bs, THRESHOLD_EXCEEDED.name)
        await commit_group_offsets(self.bs, SERVICE, THRESHOLD_EXCEEDED.name, ends)
        runtime = bootstrap(self.settings(database))
        self.results.info.setdefault("service settings", describe_settings(runtime))
        counters = RuntimeCounters(runtime)
        try:
            await runtime.start()
            if self.opts.gc_freeze:
                gc.collect()
                gc.freeze()  # what is alive now is never scanned again by a full collection
            yield database, counters
        finally:
            await runtime.stop()
            if self.opts.gc_freeze:
                gc.unfreeze()
            conn = await self._admin()
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
            finally:
                await conn.close()

    async def _check_pipeline(
        self,
        database: str,
        events: list[Event],
        rate: float,
        rep: int,
        sent: dict[str, int],
        arrived: dict[str, int],
    ) -> None:
        """N escalations, pages delivered and deliveries sent, one each; nothing failed."""
        n = len(events)
        dlq = await end_offsets(self.bs, THRESHOLD_EXCEEDED.dlq)
        conn = await asyncpg.connect(self.infra.asyncpg_dsn(database))
        try:
            deadline = time.monotonic() + self.opts.stall_timeout_s
            # The receiver answered before the deliver transaction committed: wait for it.
            query = "SELECT count(*) FROM pages WHERE status = 'delivered'"
            while (delivered := await conn.fetchval(query)) < n:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM escalations) AS escalations,"
                " (SELECT count(*) FROM pages) AS pages,"
                " (SELECT count(DISTINCT dedup_key) FROM pages"
                f"   WHERE target = '{FALLBACK}' AND level = 1) AS fallback_l1,"
                " (SELECT count(*) FROM deliveries WHERE status = 'sent' AND attempts = 1) AS sent,"
                " (SELECT count(*) FROM deliveries) AS deliveries,"
                " (SELECT count(*) FROM timers WHERE failed_at IS NOT NULL OR attempts > 0)"
                "   AS timer_failures,"
                " (SELECT count(*) FROM inbox) AS inbox"
            )
            rows = await conn.fetch(STAGE_QUERY, list(sent))
        finally:
            await conn.close()
        got = (delivered, *row.values())
        want = (n, n, n, n, n, n, 0, n)
        if got != want or sum(dlq.values()) > 0:
            raise RuntimeError(
                "pipeline: (delivered, escalations, pages, fallback level-1 dedup keys, sent, "
                f"deliveries, timer failures, inbox) = {got}, expected {want}; "
                f"dead letters {sum(dlq.values())}"
            )
        if len(rows) != len(sent):
            raise RuntimeError(f"pipeline: stage rows for {len(rows)}/{len(sent)} episodes")
        self._note(
            f"pipeline: the {self.opts.warmup} warm-up + N episodes of every measurement -> as "
            "many `escalations`, `pages` (fallback pager, level 1, distinct `dedup_key`) with "
            "status delivered, `deliveries` sent at the first attempt, and POSTs received with "
            "distinct `dedup_key`, one per episode; no timer failed or retried; `inbox` holds "
            "exactly those events; nothing dead-lettered"
        )
        if rep == 0:  # the profiled run
            return
        # The rows' wall-clock stamps on the monotonic clock (sampled together, now).
        offset = time.time_ns() - now_ns()
        stages = self.results.stages.setdefault(rate, {})
        for r in rows:
            points = [sent[r["episode"]]]
            points += [int(r[col].timestamp() * 1e9) - offset for _, col in STAGES[:-1]]
            points.append(arrived[r["episode"]])
            for (name, _), a, b in zip(STAGES, points, points[1:], strict=False):
                stages.setdefault(name, []).append((b - a) / 1e6)

    def _note(self, text: str) -> None:
        if text not in self.results.checks:
            self.results.checks.append(text)

    async def _profile(self) -> None:
        rate = self.opts.profile_rate
        print(f"\n== pipeline once more under cProfile (CPU time), {rate:g} events/s", flush=True)
        prof = cProfile.Profile(time.process_time)
        run = await self._measure("pipeline", 0, rate, profiler=prof)
        if self.opts.profile_out is not None:
            prof.dump_stats(self.opts.profile_out)
        self.results.profile = summarise(prof, run.n, run.extra["per s"])
        self.results.profile["p50"] = pct(run.latencies_ms, 50)
        self.results.profile["p99"] = pct(run.latencies_ms, 99)


def rate_label(rate: float) -> str:
    return f"{rate:g}/s"


def describe_settings(runtime: ServiceRuntime) -> str:
    s = runtime.settings
    assert isinstance(s, NotificationsSettings)
    return (
        f"timer poll {s.timer_poll_interval_s:g} s (woken after a commit that scheduled a timer), "
        f"timer concurrency {s.timer_concurrency}, timer batch 50; consumer offsets committed "
        f"every {s.consumer_commit_interval_s:g} s or {s.consumer_commit_batch} messages; "
        f"relay poll {s.relay_poll_interval_s:g} s; engine as deployed (`make_engine`: pool 10 "
        f"+ overflow 10, `pool_pre_ping`); webhook timeout {s.page_webhook_timeout_s:g} s; real "
        "channels (`real_channels`)"
    )


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

NAMES = {
    "kafka": "baseline: bare produce -> bare `AIOKafkaConsumer.getone()`",
    "kafka+http": "baseline: bare produce -> bare consumer -> bare `httpx` POST -> receiver",
    "pipeline": "pipeline: produce -> notifications (consumer, step timer, deliver timer) -> "
    "webhook POST -> receiver",
}


def _runs(results: Results, rate: float, variant: str) -> list[Run]:
    return [
        r for r in results.runs if r.step == rate_label(rate) and r.variant == variant and r.rep > 0
    ]


def latency_table(results: Results, opts: Options) -> list[str]:
    out = [
        "| rate | variant | p50 ms best | p50 ms median | p95 ms median | p99 ms best | "
        "p99 ms median | max ms | events/s median | client CPU ms/event | machine CPU ms/event |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in opts.rates:
        for v in opts.variants:
            rs = _runs(results, rate, v)
            if not rs:
                continue
            p50 = [pct(r.latencies_ms, 50) for r in rs]
            p95 = [pct(r.latencies_ms, 95) for r in rs]
            p99 = [pct(r.latencies_ms, 99) for r in rs]
            out.append(
                f"| {rate:g}/s | {NAMES[v]} | {min(p50):.1f} | {statistics.median(p50):.1f} | "
                f"{statistics.median(p95):.1f} | {min(p99):.1f} | {statistics.median(p99):.1f} | "
                f"{max(max(r.latencies_ms) for r in rs):.0f} | "
                f"{statistics.median(r.extra['per s'] for r in rs):.1f} | "
                f"{statistics.median(r.cpu_s / r.n for r in rs) * 1000:.2f} | "
                f"{statistics.median(r.machine_s / r.n for r in rs) * 1000:.2f} |"
            )
    return out


def ratio_table(results: Results, opts: Options) -> list[str]:
    bases = [v for v in ("kafka", "kafka+http") if v in opts.variants]
    if "pipeline" not in opts.variants or not bases:
        return []
    head = "| rate |"
    rule = "|---|"
    for b in bases:
        head += f" p50 pipeline / {b} (median; best) | p99 pipeline / {b} (median; best) |"
        rule += "---:|---:|"
    out = [head, rule]
    for rate in opts.rates:
        pipe = _runs(results, rate, "pipeline")
        if not pipe:
            continue
        line = f"| {rate:g}/s |"
        for b in bases:
            base = _runs(results, rate, b)
            for p in (50, 99):
                mine = [pct(r.latencies_ms, p) for r in pipe]
                theirs = [pct(r.latencies_ms, p) for r in base]
                line += (
                    f" **{statistics.median(mine) / statistics.median(theirs):.1f}x**; "
                    f"{min(mine) / min(theirs):.1f}x |"
                )
        out.append(line)
    return out


def stage_tables(results: Results) -> list[str]:
    out: list[str] = []
    for rate, stages in sorted(results.stages.items()):
        total = sum(statistics.fmean(xs) for xs in stages.values())
        out += [
            f"{rate:g} events/s ({len(next(iter(stages.values())))} pages, every repetition):",
            "",
            "| stage | p50 ms | p95 ms | p99 ms | max ms | share of the mean |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, _ in STAGES:
            xs = stages[name]
            out.append(
                f"| {name} | {pct(xs, 50):.1f} | {pct(xs, 95):.1f} | {pct(xs, 99):.1f} | "
                f"{max(xs):.0f} | {100 * statistics.fmean(xs) / total:.0f}% |"
            )
        out.append("")
    return out


def work_table(results: Results, opts: Options) -> list[str]:
    out = ["| rate | " + " | ".join(COUNTED) + " |", "|---|" + "---:|" * len(COUNTED)]
    for rate in opts.rates:
        rs = _runs(results, rate, "pipeline")
        if rs:
            cells = [f"{statistics.median(r.extra[k] for r in rs):.1f}" for k in COUNTED]
            out.append(f"| {rate:g}/s | " + " | ".join(cells) + " |")
    return out


def every_run(results: Results) -> list[str]:
    out = []
    for r in results.runs:
        if r.rep == 0:
            continue
        others = "n/a" if r.neighbours_s is None else f"{1000 * r.neighbours_s / r.n:.2f}"
        out.append(
            f"- rep {r.rep} {r.step} {r.variant}: N {r.n}, p50 {pct(r.latencies_ms, 50):.1f} / "
            f"p99 {pct(r.latencies_ms, 99):.1f} / max {max(r.latencies_ms):.0f} ms, "
            f"{r.extra['per s']:.1f} events/s, producer slip max {r.extra['slip ms']:.1f} ms, "
            f"{r.extra['full GCs']:.0f} full GCs in this process (longest "
            f"{r.extra['full GC max ms']:.0f} ms), others' CPU {others} ms/event; load {r.load}"
        )
    return out


def render(
    results: Results, opts: Options, infra: Infra, started: datetime, elapsed: float, cmd: str
) -> str:
    info = results.info
    ns = ", ".join(f"{max(2, round(r * opts.seconds))} at {r:g}/s" for r in opts.rates)
    out = [
        f"# Notifications benchmark — {started:%Y-%m-%d}",
        "",
        f"Run `{cmd}` started {started:%Y-%m-%d %H:%M:%S} UTC, took {elapsed:.0f} s. "
        f"Load average at start: {info.get('load at start', '?')}. Code: {info.get('git', '?')}.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine_info(CLIENT_LIBRARIES).items()),
        f"- Kafka: {infra.kafka_version}, {infra.kafka_source}",
        f"- PostgreSQL: {info.get('pg server_version', '?')}, {infra.pg_source}",
        "- Processes: the measured side (the notifications runtime, or the bare consumer) in the "
        "benchmark's process, one event loop; the load generator and the webhook receiver in a "
        "second process (`--driver`); Kafka and PostgreSQL: all on the same cores. *Others' CPU* "
        "is every other process's CPU meanwhile (a test suite running shows up there).",
        "",
        "## Settings",
        "",
        f"- N per measurement: {ns} (`--seconds {opts.seconds:g}` of offered load), after "
        f"{opts.warmup} untimed warm-up events at {WARMUP_RATE:g}/s through the same path (group "
        "joined, pools and connections open) whose arrivals are awaited first",
        "- events: real RED `ThresholdExceeded` (`to_bytes()`, the relay's headers, keyed by "
        "patient), reason `red_flag:seizure`, family `safety`, each for a fresh patient and "
        "episode; no on-call schedule or contact is configured, so the shipped `red-default` "
        "policy pages the organisation's fallback pager at once: one webhook POST per episode",
        '- producer (driver process): `AIOKafkaProducer(acks="all", enable_idempotence=True)`, '
        "open loop: event k sent at start + k/R whatever the others did, `send()` not awaited "
        "one by one (acks gathered at the end); the send timestamp is taken just before `send()`",
        "- latency: receiver arrival (or `getone()` returned, for `kafka`) minus send timestamp, "
        "both `CLOCK_MONOTONIC` (one clock for every process of the machine); events/s: N over "
        "first send -> last arrival",
        "- receiver (driver process): a minimal asyncio HTTP/1.1 server (keep-alive), stamps a "
        'request when its body has arrived, answers 202 `{"status": "success", "dedup_key"}`',
        f"- pipeline: `bootstrap(NotificationsSettings(...))` with its real channels, "
        f"`page_webhook_url` at the receiver, `runtime.start()`; a fresh database (migrated by "
        f"`start()`) per measurement, so old escalations' 5-minute step timers never fire during "
        f"another; group `notifications` committed at the end of `{THRESHOLD_EXCEEDED.name}` "
        "before the start; " + info.get("service settings", "?"),
        *(
            [f"- **not as deployed**: service settings overridden: {opts.overrides}"]
            if opts.overrides
            else []
        ),
        *(
            ["- **not as deployed**: `gc.freeze()` after `runtime.start()` (`--gc-freeze`)"]
            if opts.gc_freeze
            else []
        ),
        "- bare consumers: `AIOKafkaConsumer` in a fresh group committed at the bench topic's end "
        "(6 partitions, same config), auto-commit every 200 ms; `kafka+http` POSTs a "
        "PagerDuty-shaped body with the same `httpx` library, one request after another",
        f"- PostgreSQL: fsync={info.get('pg fsync')}, synchronous_commit="
        f"{info.get('pg synchronous_commit')}, full_page_writes={info.get('pg full_page_writes')}"
        f"; logging: {info.get('logging', '?')}; tracing: a `TracerProvider` without exporter",
        f"- {opts.repeats} repetitions; the variants alternate order between repetitions; before"
        f" every measurement: {info.get('settle', '?')}",
        "",
        "## ThresholdExceeded produced -> page received",
        "",
        "Per rate and variant: best and median over the repetitions of each repetition's "
        "percentile; max over all.",
        "",
        *latency_table(results, opts),
        "",
        "Ratios (pipeline percentile / baseline percentile; median of the repetitions, then best):",
        "",
        *ratio_table(results, opts),
        "",
        "## Where the pipeline's time goes",
        "",
        "Per page, from the rows' own timestamps (`inbox.processed_at`, the step and deliver "
        "timers' `fired_at` = when they were claimed, `deliveries.sent_at` = just before the "
        "POST; wall clock, mapped onto the monotonic clock), the send timestamp and the arrival:",
        "",
        *stage_tables(results),
        "What the runtime did per page (median of the repetitions; counted while the timed "
        "events flowed: SQL statements and pool checkouts from engine events, each checkout "
        "being one transaction with its `pool_pre_ping` round trip; timer rounds are "
        "`fire_due()` calls, claims are `_fire_one()` calls that fired a timer or found none):",
        "",
        *work_table(results, opts),
        "",
        "## Every measurement",
        "",
        "Full GCs: generation-2 collections in the measured process while the timed events "
        "flowed (`gc.callbacks`), each stopping its event loop for the time shown.",
        "",
        *every_run(results),
        "",
        "## Checks (after every measurement; a failure stops the run)",
        "",
        *(f"- {c}" for c in results.checks),
        "",
    ]
    p = results.profile
    if p:
        out += [
            "## Where the CPU goes: the pipeline under cProfile (one more run, not in the tables)",
            "",
            f"{p['n']} pages at {opts.profile_rate:g}/s offered ({p['rate']:.1f}/s achieved, "
            f"p50 {p['p50']:.1f} / p99 {p['p99']:.1f} ms under the profiler); {p['total_ms']:.2f}"
            " ms CPU per page in this process (the profiler's overhead included). Own CPU time "
            "by package:",
            "",
            "| package | ms per page | share |",
            "|---|---:|---:|",
            *(f"| {k} | {v:.3f} | {100 * v / p['total_ms']:.0f}% |" for k, v in p["packages"][:14]),
            "",
            "Top functions by own CPU time:",
            "",
            "| function | ms per page |",
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
        prog="python -m bench.notifications_bench", description=(__doc__ or "").split("\n", 1)[0]
    )
    p.add_argument("--rates", default="10,50,100", help="offered events/s (10,50,100)")
    p.add_argument("--seconds", type=float, default=5.0, help="offered load per measurement (5)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=20, help="untimed events first (20)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-rate", type=float, default=None, help="default: the middle rate")
    p.add_argument("--profile-out", type=Path, default=None, help="also write the raw pstats")
    p.add_argument(
        "--service-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a NotificationsSettings field (attribution runs; recorded in the result)",
    )
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="attribution: gc.freeze() after runtime.start() (not what the service does)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 50,100/s, 2 s, 1 repeat")
    p.add_argument("--log-level", default="INFO", help="service log level (INFO, as deployed)")
    p.add_argument("--output", type=Path, default=None, help="'-' for none")
    p.add_argument("--driver", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.seconds, args.repeats, args.warmup = "50,100", 2.0, 1, 5
        args.profile = False
        args.output = args.output or Path("-")
    args.rates = [float(r) for r in args.rates.split(",")]
    args.variants = tuple(v for v in VARIANTS if v in args.variants.split(","))
    if not args.variants or args.repeats < 1 or min(args.rates) <= 0:
        p.error("--variants from kafka,kafka+http,pipeline; --repeats >= 1; rates > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.driver:
        asyncio.run(driver_main(args.driver))
        return 0
    rates = args.rates
    opts = Options(
        rates,
        args.seconds,
        args.repeats,
        args.warmup,
        args.variants,
        args.profile,
        args.profile_rate or sorted(rates)[len(rates) // 2],
        args.profile_out,
        dict(kv.split("=", 1) for kv in args.service_setting),
        args.gc_freeze,
    )
    cmd = " ".join(
        ["python -m bench.notifications_bench", *(argv if argv is not None else sys.argv[1:])]
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
            print(f"Kafka {infra.bootstrap_servers} | PostgreSQL {infra.pg_source}", flush=True)
            asyncio.run(Bench(infra, opts, results).run())
        finally:
            infra.stop()
    text = render(results, opts, infra, started, time.perf_counter() - t0, cmd)
    write_results(text, args.output, "notifications", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
