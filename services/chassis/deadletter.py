"""Dead-letter topics: where a message that cannot be processed goes, with why, so nothing is lost.

The original bytes, key and headers are kept; ``dlq.*`` headers add the reason (safe text only, see
``errors.safe_reason``), the consumer group, the original topic/partition/offset and the attempts.
Replay with ``python -m services.chassis.ops dlq-replay`` (kafka-python).
"""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker, KafkaMessage
from opentelemetry import metrics

from contracts.topics import DLQ_SUFFIX
from services.chassis.clock import Clock

log = logging.getLogger(__name__)
_dead_lettered = metrics.get_meter("taper.consumer").create_counter(
    "taper.consumer.dead_lettered", description="Messages sent to a dead-letter topic"
)


class DeadLetters:
    def __init__(self, *, service: str, broker: KafkaBroker, clock: Clock) -> None:
        self._service = service
        self._broker = broker
        self._clock = clock

    async def send(self, msg: KafkaMessage, *, reason: str, attempts: int) -> None:
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
        _dead_lettered.add(1, {"topic": topic, "consumer": self._service})
        log.warning(
            "message dead-lettered",
            extra={"topic": topic, "offset": getattr(record, "offset", None), "reason": reason},
        )
