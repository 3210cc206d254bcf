"""The consumer's decisions (dedupe, retry, dead-letter, nack) with fakes and a real SQLite."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.exc import OperationalError

from contracts import DOSE_REDUCED, DoseReduced
from services.chassis.consumer import EventConsumer, MalformedEvent, parse_event
from services.chassis.errors import PermanentError, safe_reason
from services.chassis.outage import InfrastructureUnavailable
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from tests.helpers import dose_reduced
from tests.unit.chassis.conftest import count_doses, insert_dose


@dataclass
class FakeRecord:
    topic: str = DOSE_REDUCED.name
    partition: int = 0
    offset: int = 7
    key: bytes = b"k"
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeMessage:
    body: bytes
    raw_message: FakeRecord = field(default_factory=FakeRecord)
    headers: dict[str, Any] = field(default_factory=dict)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, int]] = []

    async def send(self, msg: Any, *, error: BaseException, attempts: int) -> None:
        self.sent.append((msg.body, safe_reason(error), attempts))


def consumer_with(
    handler: Any, uow_factory: UnitOfWorkFactory, dead: FakeDeadLetters, attempts: int = 3
) -> EventConsumer:
    return EventConsumer(
        service="monitoring",
        topic=DOSE_REDUCED,
        handler=handler,
        uow_factory=uow_factory,
        dead_letters=dead,  # type: ignore[arg-type]
        tracer_provider=TracerProvider(),
        max_attempts=attempts,
        retry_backoff_s=0,
    )


async def test_a_duplicate_event_has_one_effect(uow_factory: UnitOfWorkFactory) -> None:
    dead = FakeDeadLetters()
    consumer = consumer_with(insert_dose, uow_factory, dead)
    body = dose_reduced().to_bytes()
    await consumer.handle(body, FakeMessage(body))  # type: ignore[arg-type]
    await consumer.handle(body, FakeMessage(body))  # type: ignore[arg-type]
    assert await count_doses(uow_factory) == 1
    assert dead.sent == []


async def test_a_transient_failure_is_retried_then_succeeds(uow_factory: UnitOfWorkFactory) -> None:
    calls = 0

    async def flaky(event: DoseReduced, uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await insert_dose(event, uow)
        if calls < 3:
            raise RuntimeError("transient")

    dead = FakeDeadLetters()
    body = dose_reduced().to_bytes()
    await consumer_with(flaky, uow_factory, dead).handle(body, FakeMessage(body))  # type: ignore[arg-type]
    assert calls == 3
    assert await count_doses(uow_factory) == 1  # the failed attempts were rolled back
    assert dead.sent == []


async def test_a_handler_that_keeps_failing_dead_letters_after_bounded_attempts(
    uow_factory: UnitOfWorkFactory,
) -> None:
    async def broken(event: DoseReduced, uow: UnitOfWork) -> None:
        raise ValueError("secret patient detail must not leak")

    dead = FakeDeadLetters()
    body = dose_reduced().to_bytes()
    await consumer_with(broken, uow_factory, dead, attempts=4).handle(body, FakeMessage(body))  # type: ignore[arg-type]
    assert dead.sent == [(body, "ValueError", 4)]  # the type only: third-party text may be PHI
    async with uow_factory() as uow:  # nothing was recorded as processed
        inbox = uow.table("inbox")
        assert await uow.session.scalar(sa.select(sa.func.count()).select_from(inbox)) == 0


async def test_a_permanent_error_dead_letters_at_once(uow_factory: UnitOfWorkFactory) -> None:
    calls = 0

    async def refuses(event: DoseReduced, uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("unknown plan")

    dead = FakeDeadLetters()
    body = dose_reduced().to_bytes()
    await consumer_with(refuses, uow_factory, dead).handle(body, FakeMessage(body))  # type: ignore[arg-type]
    assert calls == 1
    assert dead.sent == [(body, "PermanentError: unknown plan", 1)]


async def test_an_unreachable_database_is_not_the_messages_fault(
    uow_factory: UnitOfWorkFactory,
) -> None:
    async def db_down(event: DoseReduced, uow: UnitOfWork) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError())

    dead = FakeDeadLetters()
    body = dose_reduced().to_bytes()
    with pytest.raises(InfrastructureUnavailable):  # -> nack: redelivered, not dropped
        await consumer_with(db_down, uow_factory, dead).handle(body, FakeMessage(body))  # type: ignore[arg-type]
    assert dead.sent == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"event_type": "DoseReduced"}',
        b'{"event_id": "x", "event_type": "SymptomReported"}',
    ],
)
def test_malformed_bodies_are_refused_with_a_reason_naming_no_values(body: bytes) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_event(body, DOSE_REDUCED)
    assert "not json" not in str(caught.value)


def test_an_event_of_another_type_on_the_topic_is_malformed() -> None:
    other = dose_reduced().model_dump(mode="json")
    other["event_type"] = "Jane Doe"
    import json

    with pytest.raises(MalformedEvent) as caught:
        parse_event(json.dumps(other).encode(), DOSE_REDUCED)
    assert "Jane" not in str(caught.value)


def test_a_valid_event_parses_back_equal() -> None:
    event = dose_reduced(uuid.uuid4())
    assert parse_event(event.to_bytes(), DOSE_REDUCED) == event
