"""An outage (database down or restarting, dead-letter topic unwritable) never dead-letters a
message and never lets its offset be committed: it is handed back to Kafka until it succeeds.

Issue 14, defects 1 and 2. The errors below are built the way SQLAlchemy 2.0 + asyncpg 0.32 raise
them during a PostgreSQL restart (``DBAPIError.instance`` wraps an asyncpg error it has no name
for in a plain ``DBAPIError``), checked against a real restart in
tests/integration/chassis/test_postgres_restart.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg.exceptions as pg
import pytest
from aiokafka import TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import exc as sa_exc

from contracts import DOSE_REDUCED, DoseReduced
from services.chassis import consumer as consumer_module
from services.chassis.consumer import EventConsumer, OffsetCommitter, ServiceSubscriber
from services.chassis.errors import PermanentError, safe_reason
from services.chassis.outage import InfrastructureUnavailable, is_outage
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from tests.helpers import dose_reduced
from tests.unit.chassis.conftest import count_doses, insert_dose


def wrapped(orig: BaseException, **kw: Any) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises for ``orig`` (the asyncpg dialect's dbapi has no name for it)."""
    err = sa_exc.DBAPIError.instance("SELECT 1", {}, orig, Exception, **kw)
    assert isinstance(err, sa_exc.DBAPIError)
    return err


OUTAGES: dict[str, Any] = {
    "connect during crash recovery": lambda: wrapped(
        pg.CannotConnectNowError("the database system is starting up")
    ),
    "raw asyncpg CannotConnectNowError": lambda: pg.CannotConnectNowError("starting up"),
    "in-flight query, connection closed": lambda: sa_exc.InterfaceError(
        "SELECT 1", {}, pg.ConnectionDoesNotExistError("closed in the middle of operation")
    ),
    "admin shutdown": lambda: wrapped(pg.AdminShutdownError("terminating connection")),
    "too many connections": lambda: wrapped(pg.TooManyConnectionsError("too many clients")),
    "connection invalidated": lambda: wrapped(RuntimeError("x"), connection_invalidated=True),
    "connection refused": lambda: wrapped(ConnectionRefusedError(111, "refused")),
    "operational": lambda: sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()),
    "pool timeout": lambda: sa_exc.TimeoutError("QueuePool limit reached"),
}


@dataclass
class Record:
    topic: str = DOSE_REDUCED.name
    partition: int = 0
    offset: int = 7
    key: bytes = b"k"
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeKafkaConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


@dataclass
class Message:
    body: bytes
    raw_message: Record = field(default_factory=Record)
    headers: dict[str, Any] = field(default_factory=dict)
    consumer: FakeKafkaConsumer = field(default_factory=FakeKafkaConsumer)
    nacks: int = 0

    async def nack(self) -> None:
        self.nacks += 1


class DeadLetters:
    def __init__(self, *, working: bool = True) -> None:
        self.working = working
        self.sent: list[tuple[bytes, str, int]] = []
        self.failed_sends = 0

    async def send(self, msg: Any, *, error: BaseException, attempts: int) -> None:
        if not self.working:
            self.failed_sends += 1
            raise OSError("broker unreachable")
        self.sent.append((msg.body, safe_reason(error), attempts))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The consumer's backoff delays, recorded instead of slept."""
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(consumer_module.asyncio, "sleep", record)
    return delays


def make_consumer(
    handler: Any, uow_factory: UnitOfWorkFactory, dead: DeadLetters, **kw: Any
) -> EventConsumer:
    return EventConsumer(
        service="monitoring",
        topic=DOSE_REDUCED,
        handler=handler,
        uow_factory=uow_factory,
        dead_letters=dead,  # type: ignore[arg-type]
        tracer_provider=TracerProvider(),
        max_attempts=3,
        retry_backoff_s=kw.pop("retry_backoff_s", 0.1),
        **kw,
    )


@pytest.mark.parametrize("make_error", list(OUTAGES.values()), ids=list(OUTAGES))
def test_outages_are_recognised(make_error: Any) -> None:
    assert is_outage(make_error())


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.IntegrityError("INSERT", {}, pg.UniqueViolationError("dup")),
        wrapped(pg.QueryCanceledError("statement timeout")),
        sa_exc.DataError("INSERT", {}, pg.DataError("bad")),
        ValueError("a bug"),
        PermanentError("unknown plan"),
    ],
    ids=["integrity", "statement timeout", "data", "bug", "permanent"],
)
def test_the_messages_own_faults_are_not_outages(error: BaseException) -> None:
    assert not is_outage(error)


@pytest.mark.parametrize("make_error", list(OUTAGES.values()), ids=list(OUTAGES))
async def test_an_outage_during_processing_is_redelivered_never_dead_lettered(
    make_error: Any, uow_factory: UnitOfWorkFactory, sleeps: list[float]
) -> None:
    outage_left = 12  # far more deliveries than max_attempts (3)

    async def during_outage(event: DoseReduced, uow: UnitOfWork) -> None:
        nonlocal outage_left
        if outage_left:
            outage_left -= 1
            raise make_error()
        await insert_dose(event, uow)

    dead = DeadLetters()
    subscriber = ServiceSubscriber(
        "monitoring", [make_consumer(during_outage, uow_factory, dead)], OffsetCommitter()
    )
    body = dose_reduced().to_bytes()
    msg = Message(body)
    deliveries = 0
    while msg.nacks == deliveries:  # Kafka redelivers a nacked message
        deliveries += 1
        await subscriber.deliver(body, msg)  # type: ignore[arg-type]
    assert msg.nacks == 12 and deliveries == 13
    assert dead.sent == []
    assert await count_doses(uow_factory) == 1
    # exponential backoff, capped, one per failed delivery (none between in-process attempts)
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]


async def test_a_failed_dead_letter_publish_does_not_commit_the_offset(
    uow_factory: UnitOfWorkFactory, sleeps: list[float]
) -> None:
    async def refuses(event: DoseReduced, uow: UnitOfWork) -> None:
        raise PermanentError("unknown plan")

    dead = DeadLetters(working=False)
    committer = OffsetCommitter(interval_s=0)  # commit at every mark: any mark would show
    subscriber = ServiceSubscriber(
        "monitoring", [make_consumer(refuses, uow_factory, dead)], committer
    )
    body = dose_reduced().to_bytes()
    msg = Message(body)
    for _ in range(3):
        await subscriber.deliver(body, msg)  # type: ignore[arg-type]
    assert dead.failed_sends == 3 and msg.nacks == 3  # sought back each time
    assert msg.consumer.commits == []  # never committed past it

    dead.working = True  # the dead-letter topic is writable again: the redelivery lands there
    await subscriber.deliver(body, msg)  # type: ignore[arg-type]
    assert dead.sent == [(body, "PermanentError: unknown plan", 1)]
    assert msg.nacks == 3
    assert msg.consumer.commits == [{TopicPartition(DOSE_REDUCED.name, 0): 8}]


async def test_a_malformed_message_whose_dead_letter_fails_is_not_committed(
    uow_factory: UnitOfWorkFactory, sleeps: list[float]
) -> None:
    dead = DeadLetters(working=False)
    subscriber = ServiceSubscriber(
        "monitoring",
        [make_consumer(insert_dose, uow_factory, dead)],
        OffsetCommitter(interval_s=0),
    )
    msg = Message(b"not json")
    await subscriber.deliver(b"not json", msg)  # type: ignore[arg-type]
    assert msg.nacks == 1 and msg.consumer.commits == []
    dead.working = True
    await subscriber.deliver(b"not json", msg)  # type: ignore[arg-type]
    assert len(dead.sent) == 1 and msg.consumer.commits != []


async def test_nothing_but_the_redelivery_signal_escapes_the_consumer(
    uow_factory: UnitOfWorkFactory, sleeps: list[float]
) -> None:
    class ExplodingDeadLetters(DeadLetters):
        async def send(self, msg: Any, *, error: BaseException, attempts: int) -> None:
            raise RuntimeError("a bug in the dead-letter path")

    async def refuses(event: DoseReduced, uow: UnitOfWork) -> None:
        raise PermanentError("unknown plan")

    body = dose_reduced().to_bytes()
    consumer = make_consumer(refuses, uow_factory, ExplodingDeadLetters())
    with pytest.raises(InfrastructureUnavailable):
        await consumer.handle(body, Message(body))  # type: ignore[arg-type]


async def test_a_bug_still_dead_letters_after_bounded_attempts(
    uow_factory: UnitOfWorkFactory, sleeps: list[float]
) -> None:
    async def bug(event: DoseReduced, uow: UnitOfWork) -> None:
        raise sa_exc.ProgrammingError("SELECT nope", {}, pg.UndefinedColumnError("no column"))

    dead = DeadLetters()
    body = dose_reduced().to_bytes()
    msg = Message(body)
    subscriber = ServiceSubscriber(
        "monitoring", [make_consumer(bug, uow_factory, dead)], OffsetCommitter(interval_s=0)
    )
    await subscriber.deliver(body, msg)  # type: ignore[arg-type]
    assert dead.sent == [(body, "ProgrammingError", 3)] and msg.nacks == 0
