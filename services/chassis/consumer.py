"""Consuming events: parse, dedupe on ``event_id``, handle in one transaction, then commit offsets.

The subscriber reads raw bytes (our own decoding, so a malformed message can never crash the
framework's parser), then:

1. parses the envelope and the event; a message that does not parse goes to ``<topic>.dlq`` at once;
2. in one unit of work inserts ``(consumer, event_id)`` into ``inbox`` (a duplicate is skipped),
   runs the handler, commits;
3. marks the offset processed; an :class:`OffsetCommitter` commits marked offsets to Kafka in
   batches (every ``commit_interval_s`` or ``commit_batch`` messages), never before the database
   commit of the messages they cover (auto-commit off, ``AckPolicy.MANUAL``). A crash redelivers
   what was processed since the last offset commit, and the inbox makes it a no-op. Committing
   every offset one by one would cap a consumer at ~140 messages/s on Kafka 4.1 defaults
   (``bench/results/chassis-2026-11-25.md``).

Failures: a :class:`PermanentError` is dead-lettered at once; other errors are retried a bounded
number of times, then dead-lettered with the reason. An outage (``outage.is_outage``: a database
that is restarting, unreachable or out of connections) is not the message's fault, and neither is
a dead-letter topic that cannot be written: the consumer backs off (exponentially, capped, one log
line and one ``taper.consumer.backoffs`` count each time, without limit) and seeks back to the
message, so it is delivered again before any later message of its partition, and its offset is
never committed until it has been processed or durably dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from contracts import Envelope, Event, Topic
from services.chassis.deadletter import DeadLetters
from services.chassis.errors import PermanentError, safe_reason
from services.chassis.metrics import NO_METRICS, Outcome, ServiceMetrics
from services.chassis.outage import InfrastructureUnavailable, is_outage
from services.chassis.telemetry import context_from_headers
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[E, UnitOfWork], Awaitable[None]]


class MalformedEvent(PermanentError):
    pass


def parse_event(body: bytes, topic: Topic) -> Event:
    """Parse ``body`` as the event ``topic`` carries; the error names fields, never values."""
    try:
        envelope = Envelope.model_validate_json(body)
        if envelope.event_type != topic.event.EVENT_TYPE:
            # The received value is not echoed: a sender's bytes never reach a log or header.
            raise MalformedEvent(f"event_type is not {topic.event.EVENT_TYPE}")
        return topic.event.model_validate_json(body)
    except ValidationError as exc:
        fields = ", ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
            for err in exc.errors(include_input=False, include_url=False)[:10]
        )
        raise MalformedEvent(f"invalid event: {fields}") from None


class OffsetCommitter:
    """Commits processed offsets in batches; each mark comes after its message's DB commit."""

    def __init__(self, *, interval_s: float = 0.2, batch: int = 200) -> None:
        self._interval_s = interval_s
        self._batch = batch
        self._pending: dict[TopicPartition, int] = {}
        self._marked = 0
        self._consumer: Any = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def mark(self, msg: KafkaMessage) -> None:
        record = msg.raw_message
        partition = TopicPartition(record.topic, record.partition)  # type: ignore[union-attr]
        next_offset = record.offset + 1  # type: ignore[union-attr]
        self._pending[partition] = max(self._pending.get(partition, 0), next_offset)
        self._consumer = msg.consumer
        self._marked += 1
        if self._marked >= self._batch or self._interval_s <= 0:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending or self._consumer is None:
                return
            offsets, self._pending, self._marked = self._pending, {}, 0
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:
                # e.g. a rebalance took the partition: its new owner gets the messages again,
                # and the inbox turns them into no-ops.
                log.warning("offset commit failed", extra={"error": safe_reason(exc)})

    def start(self) -> None:
        if self._interval_s > 0:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()


class ServiceSubscriber:
    """The one Kafka consumer of a service process, for every topic the service consumes.

    One group member per process (not one per topic) means one join and one rebalance when a
    replica starts or stops. Each message goes to the :class:`EventConsumer` of its topic; its
    offset is marked for the :class:`OffsetCommitter` only after that consumer is done with it.
    """

    def __init__(
        self, service: str, consumers: Sequence[EventConsumer], committer: OffsetCommitter
    ) -> None:
        self.service = service
        self.committer = committer
        self._by_topic = {c.topic.name: c for c in consumers}

    @property
    def title(self) -> str:
        return f"{self.service}:consumer"

    def register(self, broker: KafkaBroker) -> None:
        if not self._by_topic:
            return

        async def raw_body(msg: KafkaMessage) -> bytes:
            return msg.body

        events = ", ".join(c.topic.event.EVENT_TYPE for c in self._by_topic.values())

        @broker.subscriber(
            *self._by_topic,
            group_id=self.service,
            ack_policy=AckPolicy.MANUAL,  # offsets: see OffsetCommitter
            auto_offset_reset="earliest",
            decoder=raw_body,
            title=self.title,
            description=f"{self.service} consumes {events}",
        )
        async def on_message(body: bytes, msg: KafkaMessage) -> None:
            await self.deliver(body, msg)

    async def deliver(self, body: bytes, msg: KafkaMessage) -> None:
        """Hand ``msg`` to its topic's consumer; mark its offset only once it is done with it."""
        consumer = self._by_topic[msg.raw_message.topic]  # type: ignore[union-attr]
        try:
            await consumer.handle(body, msg)
        except InfrastructureUnavailable:
            # Already logged (no PHI) and backed off. Seek back: this message is delivered
            # again, and no later offset of its partition is processed or committed before it.
            await msg.nack()
            return
        await self.committer.mark(msg)


class EventConsumer:
    """One consumer group's handling of one topic."""

    def __init__(
        self,
        *,
        service: str,
        topic: Topic,
        handler: Handler[Any],
        uow_factory: UnitOfWorkFactory,
        dead_letters: DeadLetters,
        tracer_provider: TracerProvider,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        outage_backoff_max_s: float = 5.0,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self.service = service
        self.topic = topic
        self._handler = handler
        self._uow_factory = uow_factory
        self._dead_letters = dead_letters
        self._tracer = tracer_provider.get_tracer("taper.consumer")
        self._max_attempts = max_attempts
        self._backoff = retry_backoff_s
        # Capped well below Kafka's max.poll.interval.ms (300 s): a backing-off consumer stays
        # in its group, so the partition is not handed to a replica that would hit the same outage.
        self._outage_backoff_max_s = outage_backoff_max_s
        self._outages = 0  # consecutive deliveries that met an outage: the backoff grows with it
        self._metrics = metrics

    async def handle(self, body: bytes, msg: KafkaMessage) -> None:
        """Process, skip or dead-letter ``msg``; or raise :class:`InfrastructureUnavailable`
        (after backing off) when it must be delivered again — nothing else escapes, so an
        offset can never be committed past a message that was neither processed nor
        dead-lettered."""
        try:
            outcome = await self._handle(body, msg)
        except Exception as exc:
            self._metrics.event_consumed(self.topic.name, "retried")  # nack: redelivered
            await self._back_off(exc)
            raise InfrastructureUnavailable(self._outage_cause(exc)) from None
        self._outages = 0
        self._metrics.event_consumed(self.topic.name, outcome)

    @staticmethod
    def _outage_cause(exc: BaseException) -> str:
        return exc.cause if isinstance(exc, InfrastructureUnavailable) else type(exc).__name__

    async def _back_off(self, exc: BaseException) -> None:
        self._outages += 1
        delay = min(self._backoff * 2 ** min(self._outages - 1, 20), self._outage_backoff_max_s)
        cause = self._outage_cause(exc)
        self._metrics.consumer_backoff(self.topic.name, cause)
        log.warning(
            "consumer backing off: message will be redelivered",
            extra={
                "topic": self.topic.name,
                "cause": cause,
                "consecutive": self._outages,
                "delay_s": delay,
            },
        )
        await asyncio.sleep(delay)

    async def _dead_letter(
        self, msg: KafkaMessage, *, error: BaseException, attempts: int
    ) -> Outcome:
        try:
            await self._dead_letters.send(msg, error=error, attempts=attempts)
        except Exception as exc:
            # The dead letter is not durable, so the message must not be committed either.
            log.error(
                "dead-letter publish failed",
                extra={"topic": self.topic.name, "error": safe_reason(exc)},
            )
            raise InfrastructureUnavailable("dead_letter_unavailable") from None
        return "dead_lettered"

    async def _handle(self, body: bytes, msg: KafkaMessage) -> Outcome:
        record = msg.raw_message
        headers = dict(msg.headers)
        with self._tracer.start_as_current_span(
            f"{self.topic.name} process",
            context=context_from_headers(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.topic.name,
                "messaging.consumer.group.name": self.service,
                "messaging.destination.partition.id": str(getattr(record, "partition", "")),
                "messaging.kafka.offset": getattr(record, "offset", -1),
            },
        ) as span:
            try:
                event = parse_event(body, self.topic)
            except MalformedEvent as exc:
                span.set_status(Status(StatusCode.ERROR, "malformed"))
                return await self._dead_letter(msg, error=exc, attempts=1)
            span.set_attribute("messaging.message.id", str(event.event_id))
            span.set_attribute("taper.event_type", event.event_type)
            return await self._process_with_retries(event, msg, span)

    async def _process_with_retries(self, event: Event, msg: KafkaMessage, span: Any) -> Outcome:
        for attempt in range(1, self._max_attempts + 1):
            try:
                return "processed" if await self.process(event) else "duplicate"
            except PermanentError as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                return await self._dead_letter(msg, error=exc, attempts=attempt)
            except Exception as exc:
                if is_outage(exc):
                    # Not the message's fault: no attempt is used up, it is delivered again
                    # (handle backs off first) however long the outage lasts.
                    span.set_status(Status(StatusCode.ERROR, "infrastructure"))
                    raise InfrastructureUnavailable(type(exc).__name__) from None
                if attempt == self._max_attempts:
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    return await self._dead_letter(msg, error=exc, attempts=attempt)
            await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def process(self, event: Event) -> bool:
        """Apply ``event`` once. Returns False when it was a duplicate (already processed)."""
        async with self._uow_factory() as uow:
            if await self._already_processed(uow, event.event_id):
                log.info("duplicate event skipped", extra={"event_id": str(event.event_id)})
                return False
            await uow.session.execute(
                sa.insert(uow.table("inbox")).values(
                    consumer=self.service,
                    event_id=event.event_id,
                    topic=self.topic.name,
                    processed_at=uow.clock.now(),
                )
            )
            await self._handler(event, uow)
            try:
                await uow.commit()
            except IntegrityError:
                # A concurrent delivery of the same event won the race: its effects stand.
                if await self._already_processed_fresh(event.event_id):
                    return False
                raise
            return True

    async def _already_processed(self, uow: UnitOfWork, event_id: uuid.UUID) -> bool:
        inbox = uow.table("inbox")
        found = await uow.session.scalar(
            sa.select(sa.literal(1)).where(
                inbox.c.consumer == self.service, inbox.c.event_id == event_id
            )
        )
        return found is not None

    async def _already_processed_fresh(self, event_id: uuid.UUID) -> bool:
        async with self._uow_factory() as uow:
            return await self._already_processed(uow, event_id)
