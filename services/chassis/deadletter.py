"""Dead-letter topics: where a message that cannot be processed goes, with why, so nothing is lost.

The original bytes, key and headers are kept; ``dlq.*`` headers add the reason (safe text only, see
``errors.safe_reason``), the consumer group, the original topic/partition/offset and the attempts.
The ``taper.dead_letters`` metric (``taper_dead_letters_total``) counts them by topic and the
error's class name (never its text).
Replay with ``python -m services.chassis.ops dlq-replay`` (kafka-python).
"""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker, KafkaMessage

from contracts.topics import DLQ_SUFFIX
from services.chassis.clock import Clock
from services.chassis.errors import safe_reason
from services.chassis.metrics import NO_METRICS, ServiceMetrics

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(
        self,
        *,
        service: str,
        broker: KafkaBroker,
        clock: Clock,
        metrics: ServiceMetrics = NO_METRICS,
    ) -> None:
        self._service = service
        self._broker = broker
        self._clock = clock
        self._metrics = metrics

    async def send(self, msg: KafkaMessage, *, error: BaseException, attempts: int) -> None:
        """Dead-letter ``msg`` because of ``error`` (only its safe description is kept)."""
        reason = safe_reason(error)
        record = msg.raw_message
        topic = getattr(record, "topic", "unknown")
        original = {
            k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
            for k, v in (getattr(record, "headers", None) or ())
        }
        headers = {
            **original,
            "dlq.reason": reason,
            "dlq.consumer": self._service,
            "dlq.original_topic": topic,
            "dlq.original_partition": str(getattr(record, "partition", "")),
            "dlq.original_offset": str(getattr(record, "offset", "")),
            "dlq.attempts": str(attempts),
            "dlq.failed_at": self._clock.now().isoformat(),
        }
        # Awaited (acks=all): the offset is committed only once the dead letter is durable.
        await self._broker.publish(
            msg.body, topic=topic + DLQ_SUFFIX, key=getattr(record, "key", None), headers=headers
        )
        self._metrics.dead_lettered(topic, type(error).__name__)
        log.warning(
            "message dead-lettered",
            extra={"topic": topic, "offset": getattr(record, "offset", None), "reason": reason},
        )
