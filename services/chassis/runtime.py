"""A service process: database, broker, consumers, outbox relay, timers and HTTP app, wired once.

Each service's ``bootstrap.py`` builds a :class:`ServiceRuntime` from its own parts; tests and the
entrypoint use that same bootstrap (one composition root), tests passing fakes and pinned clocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest

from contracts import Topic, topics_produced_by
from services.chassis import audit_api
from services.chassis.clock import Clock, ScaledClock, SystemClock
from services.chassis.consumer import EventConsumer, Handler, OffsetCommitter, ServiceSubscriber
from services.chassis.db import make_engine, make_session_factory
from services.chassis.deadletter import DeadLetters
from services.chassis.kafka import (
    KafkaSecurity,
    check_existing_topics,
    ensure_topics,
    make_broker,
)
from services.chassis.logs import quiet_payload_loggers
from services.chassis.metrics import ServiceMetrics
from services.chassis.migrations import upgrade_to_head
from services.chassis.outbox import OutboxRelay
from services.chassis.retention import RetentionPolicy, RetentionPruner
from services.chassis.sampling import StateSampler
from services.chassis.settings import ServiceSettings
from services.chassis.telemetry import make_meter_provider, tracer_provider_from_settings
from services.chassis.timers import TimerHandler, TimerPoller
from services.chassis.uow import CommitEffects, UnitOfWorkFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscription:
    topic: Topic
    handler: Handler[Any]


def clock_from_settings(settings: ServiceSettings) -> Clock:
    if settings.clock_scale == 1.0 and settings.clock_anchor is None:
        return SystemClock()
    return ScaledClock(settings.clock_scale, settings.clock_anchor_or(datetime.now(UTC)))


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        metadata: sa.MetaData,
        subscriptions: Iterable[Subscription] = (),
        timer_handlers: Mapping[str, TimerHandler] | None = None,
        routers: Callable[[ServiceRuntime], Iterable[APIRouter]] = lambda _: (),
        clock: Clock | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        quiet_payload_loggers()
        self.settings = settings
        self.service = settings.service_name
        self.metadata = metadata
        self.clock = clock or clock_from_settings(settings)
        self.tracer_provider = tracer_provider or tracer_provider_from_settings(settings)
        # What /metrics serves: this service's own registry (several services share a process in
        # tests). Empty when the caller brings its own meter provider.
        self.prometheus = CollectorRegistry(auto_describe=True)
        self.meter_provider = meter_provider or make_meter_provider(
            self.service, otlp_endpoint=settings.otlp_endpoint, prometheus=self.prometheus
        )
        # One we made we shut down on stop (its last export); a given one is the caller's.
        self._owns_meter_provider = meter_provider is None
        self.metrics = ServiceMetrics(self.meter_provider)
        self.engine = make_engine(settings.effective_database_url)
        self.session_factory = make_session_factory(self.engine)
        self.uow = UnitOfWorkFactory(self.session_factory, self.clock, metadata)
        self.kafka_security = KafkaSecurity.from_settings(settings)
        self.broker = make_broker(
            settings.kafka_bootstrap_servers, client_id=self.service, security=self.kafka_security
        )
        self.dead_letters = DeadLetters(
            service=self.service, broker=self.broker, clock=self.clock, metrics=self.metrics
        )
        self.relay = OutboxRelay(
            service=self.service,
            session_factory=self.session_factory,
            tables=metadata,
            broker=self.broker,
            clock=self.clock,
            tracer_provider=self.tracer_provider,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            metrics=self.metrics,
        )
        self.timers = TimerPoller(
            service=self.service,
            uow_factory=self.uow,
            handlers=timer_handlers or {},
            tracer_provider=self.tracer_provider,
            poll_interval_s=settings.timer_poll_interval_s,
            concurrency=settings.timer_concurrency,
            metrics=self.metrics,
        )
        self.retention = RetentionPruner(
            service=self.service,
            uow_factory=self.uow,
            policy=RetentionPolicy(
                outbox=timedelta(days=settings.retention_outbox_days),
                inbox=timedelta(days=settings.retention_inbox_days),
                timers=timedelta(days=settings.retention_timers_days),
                idempotency=timedelta(hours=settings.retention_idempotency_hours),
            ),
            interval_s=settings.retention_interval_s,
        )
        self.uow.after_commit = self._after_commit
        self.subscriptions = tuple(subscriptions)
        self.consumers = [
            EventConsumer(
                service=self.service,
                topic=sub.topic,
                handler=sub.handler,
                uow_factory=self.uow,
                dead_letters=self.dead_letters,
                tracer_provider=self.tracer_provider,
                max_attempts=settings.consumer_max_attempts,
                retry_backoff_s=settings.consumer_retry_backoff_s,
                metrics=self.metrics,
            )
            for sub in self.subscriptions
        ]
        self.subscriber = ServiceSubscriber(
            self.service,
            self.consumers,
            OffsetCommitter(
                interval_s=settings.consumer_commit_interval_s,
                batch=settings.consumer_commit_batch,
            ),
        )
        self.subscriber.register(self.broker)
        self._declare_publishers()
        self.sampler = StateSampler(
            metrics=self.metrics,
            engine=self.engine,
            outbox=metadata.tables["outbox"],
            clock=self.clock,
            broker=self.broker,
            group=self.service,
            consumed_topics=[t.name for t in self.consumed_topics],
            bootstrap=settings.kafka_bootstrap_servers,
            security=self.kafka_security,
            timers=self.timers,
        )
        self.metrics.declare(
            consumed=[t.name for t in self.consumed_topics],
            produced=[t.name for t in self.produced_topics],
            timer_kinds=(timer_handlers or {}).keys(),
        )
        self._sample_task: asyncio.Task[None] | None = None
        # Set when the server begins to shut down: long-lived responses (event streams) end on
        # it, else uvicorn would wait for them for ever before stopping.
        self.draining = asyncio.Event()
        self._started = False
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.app: FastAPI = self._make_app(routers)

    # --- wiring -------------------------------------------------------------------------------
    def _after_commit(self, effects: CommitEffects) -> None:
        if effects.published:
            self.relay.wake()
        if effects.scheduled:
            self.timers.wake()

    def _declare_publishers(self) -> None:
        # Publishing goes through the outbox relay; these declarations document the produced
        # topics (with their payload schema) in the generated AsyncAPI document.
        for topic in self.produced_topics:
            self.broker.publisher(
                topic.name,
                schema=topic.event,
                title=f"{self.service}:{topic.name}",
                description=f"{self.service} produces {topic.event.EVENT_TYPE} via its outbox",
            )

    @property
    def produced_topics(self) -> tuple[Topic, ...]:
        return topics_produced_by(self.service)

    @property
    def consumed_topics(self) -> tuple[Topic, ...]:
        return tuple(sub.topic for sub in self.subscriptions)

    def _make_app(self, routers: Callable[[ServiceRuntime], Iterable[APIRouter]]) -> FastAPI:
        from services.chassis.http import create_app

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = create_app(
            self.settings,
            routers=[*routers(self), audit_api.router(self)],
            readiness_checks={"database": self._database_ready},
            tracer_provider=self.tracer_provider,
            metrics=self.metrics,
            lifespan=lifespan,
            health_detail=self._health_detail,
            exposition=self.exposition,
            clock=self.clock,
        )
        app.state.runtime = self
        return app

    async def _database_ready(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    async def exposition(self) -> bytes:
        """``/metrics``: sample the gauges, then render this service's registry."""
        await self.sampler.refresh()
        return generate_latest(self.prometheus)

    async def _health_detail(self) -> dict[str, str]:
        """The latest sample of the dependencies, refreshed when stale; a slow probe (a broker
        that is away takes its 2 s ping timeout) is not waited for beyond half a second."""
        task = self._sample_task
        if task is None or task.done():
            task = self._sample_task = asyncio.create_task(self.sampler.refresh())
        await asyncio.wait({task}, timeout=0.5)
        sampled = self.metrics.sampled

        def state(up: bool | None) -> str:
            return "unknown" if up is None else "up" if up else "down"

        return {"database": state(sampled.database_up), "broker": state(sampled.broker_up)}

    # --- lifecycle ----------------------------------------------------------------------------
    def close_on_stop(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Release an adapter's resources (HTTP clients …) once nothing can use them any more."""
        self._closers.append(closer)

    async def start(self) -> None:
        if self._started:
            return
        self.draining.clear()
        await upgrade_to_head(self.engine, self.service)
        if self.settings.kafka_provision_topics:
            topics = set(self.produced_topics) | set(self.consumed_topics)
            await asyncio.to_thread(
                ensure_topics,
                self.settings.kafka_bootstrap_servers,
                topics,
                replication_factor=self.settings.kafka_replication_factor,
                min_insync_replicas=self.settings.kafka_min_insync_replicas_effective,
                security=self.kafka_security,
            )
        await asyncio.to_thread(
            check_existing_topics,
            self.settings.kafka_bootstrap_servers,
            set(self.produced_topics) | set(self.consumed_topics),
            replication_factor=self.settings.kafka_replication_factor,
            min_insync_replicas=self.settings.kafka_min_insync_replicas_effective,
            production=self.settings.environment == "production",
            security=self.kafka_security,
        )
        await self.broker.start()
        self.subscriber.committer.start()
        if self.settings.relay_enabled:
            self.relay.start()
        self.timers.start()
        self.retention.start()
        self._started = True
        log.info("service started", extra={"consumes": [t.name for t in self.consumed_topics]})

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.draining.set()
        if self._sample_task is not None:
            self._sample_task.cancel()
            await asyncio.gather(self._sample_task, return_exceptions=True)
        await self.retention.stop()
        await self.timers.stop()
        await self.relay.stop()
        for close in self._closers:
            await close()
        await self.subscriber.committer.stop()  # what was processed is committed before we leave
        await self.broker.stop()
        await self.engine.dispose()
        if self._owns_meter_provider:
            self._owns_meter_provider = False
            await asyncio.to_thread(self.meter_provider.shutdown)  # the last export (blocking)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def serve(self) -> None:
        """Run the HTTP server; its lifespan starts and stops everything else."""
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            proxy_headers=True,
            forwarded_allow_ips=self.settings.http_forwarded_allow_ips,
            log_config=None,
            access_log=False,
        )
        asyncio.run(_DrainingServer(config, self.draining).serve())


class _DrainingServer(uvicorn.Server):
    """uvicorn, telling long-lived responses to end when it starts shutting down: it waits for
    open connections before the lifespan's shutdown, so that is too late to tell them."""

    def __init__(self, config: uvicorn.Config, draining: asyncio.Event) -> None:
        super().__init__(config)
        self._draining = draining

    async def shutdown(self, sockets: Any = None) -> None:
        self._draining.set()
        await super().shutdown(sockets)
