"""What the harness puts on the topics itself:

* poison: bytes no consumer can read, on every consumed topic, each with a unique key, so each
  must come out on that topic's dead-letter topic once per consuming service, with a reason;
* copies: a valid event already on a topic, produced again, so every consumer must skip it as a
  duplicate (a run that never redelivered would not prove the inbox dedupe).
"""

from __future__ import annotations

import random

from aiokafka import AIOKafkaProducer

from contracts.topics import ALL_TOPICS
from deploy.proving.ledger import Ledger, Poison

POISON_BODIES = (
    b"\x00\xff not json",
    b'{"event_type": "DoseReduced"}',  # JSON, but not an event
    b"[]",
)


def consumed_topics() -> list[str]:
    return [t.name for t in ALL_TOPICS if t.consumers]


async def inject_poison(bootstrap: str, ledger: Ledger, per_topic: int, seed: int) -> None:
    rng = random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic in consumed_topics():
            for _ in range(per_topic):
                key = f"poison-{ledger.run_id}-{len(ledger.poison)}"
                body = rng.choice(POISON_BODIES)
                await producer.send_and_wait(topic, body, key=key.encode())
                ledger.poison.append(Poison(topic, key))
    finally:
        await producer.stop()


async def inject_copies(bootstrap: str, copies: list[tuple[str, str | None, bytes]]) -> int:
    """Produce each (topic, key, value) again: a redelivery every consumer must skip."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in copies:
            await producer.send_and_wait(topic, value, key=key.encode() if key else None)
    finally:
        await producer.stop()
    return len(copies)
