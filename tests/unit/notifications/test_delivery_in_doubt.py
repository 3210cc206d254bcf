"""The delivery claim and in-doubt recovery over a real (SQLite, migrated) database, the real unit
of work, ``Deliverer`` and timer poller, and fake channels that "crash": the handler dies after
the claim was committed, before or after the provider took the message (the timer's transaction
rolls back, as it does when the process is killed). The real kill -9 runs in
tests/chaos/test_sms_email_once.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.timers import TimerPoller
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.notifications.adapters.channels import (
    ChannelKind,
    OutboundMessage,
    Receipt,
    RecordingChannel,
)
from services.notifications.adapters.orm import deliveries, metadata
from services.notifications.service_layer.delivery import (
    DELIVER,
    IN_DOUBT,
    Deliverer,
    enqueue,
)
from services.notifications.settings import NotificationsSettings
from tests.runtimes import migrated_engine

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
LEASE = timedelta(seconds=20)


class Crash(Exception):
    """Stands in for kill -9: the handler never records the outcome."""


class CrashingChannel(RecordingChannel):
    """``crash_after``: the provider takes the message, then we die; ``crash_before``: we die
    before the request leaves (the claim is committed either way). One crash each, then normal.
    ``while_sending``: run once while the call is in flight (before the provider has it)."""

    def __init__(self, kind: ChannelKind) -> None:
        super().__init__(kind)
        self.crash_after = 0
        self.crash_before = 0
        self.while_sending: Callable[[], Awaitable[None]] | None = None

    async def send(self, message: OutboundMessage) -> Receipt:
        if self.while_sending is not None:
            during, self.while_sending = self.while_sending, None
            await during()
        if self.crash_before:
            self.crash_before -= 1
            raise Crash
        receipt = await super().send(message)
        if self.crash_after:
            self.crash_after -= 1
            raise Crash
        return receipt


@dataclass
class Owner:
    """A page-like owner: always wants its message sent; records every outcome."""

    severity: str = "RED"
    wanted: bool = True
    outcomes: list[str] = field(default_factory=list)

    async def message_for(
        self, uow: UnitOfWork, row: Mapping[str, Any], *, in_doubt: bool = False
    ) -> OutboundMessage | None:
        if not self.wanted:
            return None
        return OutboundMessage(
            delivery_id=row["id"],
            channel=ChannelKind(row["channel"]),
            address="+15550100001" if row["channel"] == "sms" else "dr@example.org",
            idempotency_key=row["idempotency_key"],
            subject="RED taper escalation, level 1",
            body="A patient needs a clinician.",
            severity=self.severity,
        )

    async def on_outcome(self, uow: UnitOfWork, delivery: Mapping[str, Any], status: str) -> None:
        self.outcomes.append(status)


@dataclass
class Env:
    uow: UnitOfWorkFactory
    clock: FrozenClock
    timers: TimerPoller
    channels: dict[ChannelKind, CrashingChannel]
    owner: Owner

    async def enqueue(self, channel: ChannelKind) -> uuid.UUID:
        async with self.uow() as uow:
            delivery_id = await enqueue(
                uow,
                owner_kind="page",
                owner_id=uuid.uuid4(),
                channel=channel,
                idempotency_key=f"k-{uuid.uuid4()}",
                due_at=self.clock.now(),
            )
            await uow.commit()
        assert delivery_id is not None
        return delivery_id

    async def run(self, seconds: float = 0) -> None:
        """Move the clock on and fire every timer due, until none is."""
        self.clock.set(self.clock.now() + timedelta(seconds=seconds))
        while await self.timers.fire_due():
            pass

    async def row(self, delivery_id: uuid.UUID) -> dict[str, Any]:
        async with self.uow() as uow:
            query = sa.select(deliveries).where(deliveries.c.id == delivery_id)
            return dict((await uow.session.execute(query)).mappings().one())


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = await migrated_engine("notifications", tmp_path)
    clock = FrozenClock(NOW)
    factory = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    channels = {kind: CrashingChannel(kind) for kind in (ChannelKind.SMS, ChannelKind.EMAIL)}
    owner = Owner()
    deliverer = Deliverer(channels, {"page": owner}, max_attempts=3, lease=LEASE, claims=factory)
    timers = TimerPoller(
        service="notifications",
        uow_factory=factory,
        handlers={DELIVER: deliverer, IN_DOUBT: deliverer.in_doubt},
        tracer_provider=TracerProvider(),
    )
    yield Env(factory, clock, timers, channels, owner)
    await engine.dispose()


async def test_a_normal_send_is_claimed_then_sent_and_its_in_doubt_timer_does_nothing(
    env: Env,
) -> None:
    sms = env.channels[ChannelKind.SMS]
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    row = await env.row(delivery_id)
    assert (row["status"], row["claim"], row["attempts"]) == ("sent", 1, 1)
    await env.run(seconds=LEASE.total_seconds() + 1)  # the in-doubt timer fires: no lookup
    assert (len(sms.sent), sms.lookups, env.owner.outcomes) == (1, 0, ["sent"])
    assert (await env.row(delivery_id))["doubts"] == 0


async def test_an_sms_the_provider_took_before_the_crash_is_found_not_resent(env: Env) -> None:
    sms = env.channels[ChannelKind.SMS]
    sms.crash_after = 1
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    assert (await env.row(delivery_id))["status"] == "sending"  # in doubt: the claim held
    await env.run(seconds=5)  # the timer fires again before the lease ends: still nothing
    assert len(sms.sent) == 1 and sms.lookups == 0
    await env.run(seconds=LEASE.total_seconds())
    row = await env.row(delivery_id)
    assert (row["status"], row["doubts"], row["attempts"]) == ("sent", 1, 1)
    assert (len(sms.sent), sms.lookups, env.owner.outcomes) == (1, 1, ["sent"])


async def test_an_sms_lost_with_the_crash_is_resent_once(env: Env) -> None:
    sms = env.channels[ChannelKind.SMS]
    sms.crash_before = 1
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    await env.run(seconds=LEASE.total_seconds() + 1)
    row = await env.row(delivery_id)
    assert (row["status"], row["doubts"], row["claim"]) == ("sent", 1, 2)
    assert (len(sms.sent), sms.lookups, env.owner.outcomes) == (1, 1, ["sent"])


async def test_an_email_in_doubt_is_resent_with_the_same_message_id(env: Env) -> None:
    """Plain SMTP has no list to ask: the documented bound, one more copy per crash."""
    email = env.channels[ChannelKind.EMAIL]
    email.crash_after = 1
    delivery_id = await env.enqueue(ChannelKind.EMAIL)
    await env.run()
    await env.run(seconds=LEASE.total_seconds() + 1)
    assert (await env.row(delivery_id))["status"] == "sent"
    assert len(email.sent) == 2 and email.lookups == 0
    assert len({m.idempotency_key for m in email.sent}) == 1
    assert env.owner.outcomes == ["sent"]


async def test_a_red_page_that_cannot_be_verified_is_resent_at_once(env: Env) -> None:
    sms = env.channels[ChannelKind.SMS]
    sms.crash_after, sms.list_fails = 1, True
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    await env.run(seconds=LEASE.total_seconds() + 1)
    assert (await env.row(delivery_id))["status"] == "sent"
    assert len(sms.sent) == 2  # a duplicate beats a miss


async def test_an_amber_page_that_cannot_be_verified_is_checked_again_then_resent(
    env: Env,
) -> None:
    env.owner.severity = "AMBER"
    sms = env.channels[ChannelKind.SMS]
    sms.crash_before, sms.list_fails = 1, True
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    await env.run(seconds=LEASE.total_seconds() + 1)
    assert (await env.row(delivery_id))["status"] == "sending"  # not resent blind
    assert sms.lookups == 1 and sms.sent == []
    sms.list_fails = False  # the list is back: absent, so resent once
    await env.run(seconds=15)
    row = await env.row(delivery_id)
    assert (row["status"], sms.lookups, len(sms.sent)) == ("sent", 2, 1)


async def test_an_amber_page_is_never_dropped_when_the_list_stays_unreadable(env: Env) -> None:
    env.owner.severity = "AMBER"
    sms = env.channels[ChannelKind.SMS]
    sms.crash_before, sms.list_fails = 1, True
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    for _ in range(4):
        await env.run(seconds=LEASE.total_seconds() + 60)
    assert (await env.row(delivery_id))["status"] == "sent"
    assert len(sms.sent) == 1 and sms.lookups == 3  # max_attempts checks, then sent


async def test_a_page_nobody_needs_any_more_is_cancelled_in_doubt(env: Env) -> None:
    sms = env.channels[ChannelKind.SMS]
    sms.crash_after = 1
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    env.owner.wanted = False  # acknowledged meanwhile
    await env.run(seconds=LEASE.total_seconds() + 1)
    assert (await env.row(delivery_id))["status"] == "cancelled"
    assert len(sms.sent) == 1 and env.owner.outcomes == ["cancelled"]


def test_the_lease_must_outlast_every_provider_timeout() -> None:
    with pytest.raises(ValidationError, match="NOTIFICATIONS_SMTP_TIMEOUT_S"):
        NotificationsSettings(environment="test", smtp_timeout_s=30)
    with pytest.raises(ValidationError, match="NOTIFICATIONS_SMS_TIMEOUT_S"):
        NotificationsSettings(
            environment="test",
            delivery_lease_s=4,
            page_webhook_timeout_s=3,
            smtp_timeout_s=3,
            sms_timeout_s=4,
        )
    assert NotificationsSettings(environment="test").delivery_lease_s == 20


async def test_an_sms_whose_call_timed_out_after_the_provider_took_it_is_not_resent(
    env: Env,
) -> None:
    sms = env.channels[ChannelKind.SMS]
    sms.time_out_next = 1
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    assert (await env.row(delivery_id))["status"] == "sending"  # no blind retry
    await env.run(seconds=LEASE.total_seconds() + 1)
    row = await env.row(delivery_id)
    assert (row["status"], row["doubts"]) == ("sent", 1)
    assert (len(sms.sent), sms.lookups, env.owner.outcomes) == (1, 1, ["sent"])


async def test_an_email_whose_call_timed_out_is_retried_blind(env: Env) -> None:
    """No list to ask: the SMTP bound again (docs/delivery-guarantees.md)."""
    email = env.channels[ChannelKind.EMAIL]
    email.time_out_next = 1
    delivery_id = await env.enqueue(ChannelKind.EMAIL)
    await env.run()
    await env.run(seconds=15)  # the backoff, not the lease
    assert (await env.row(delivery_id))["status"] == "sent"
    assert len(email.sent) == 2 and email.lookups == 0


async def test_on_a_scaled_clock_the_lease_is_real_time_so_a_slow_send_is_not_doubted(
    env: Env,
) -> None:
    """At 1,440x (a day a minute: demos, the proving grounds) a 20 s lease counted on the clock
    would end 14 ms after the claim, while the SMS is still on its way: the in-doubt check found
    nothing at the provider and sent it again. Counted in real seconds, it cannot end first."""
    env.clock.scale = 1440
    sms = env.channels[ChannelKind.SMS]
    sms.while_sending = lambda: env.run(seconds=LEASE.total_seconds() + 1)  # 21 clock seconds
    delivery_id = await env.enqueue(ChannelKind.SMS)
    await env.run()
    row = await env.row(delivery_id)
    assert (row["status"], row["claim"], row["doubts"]) == ("sent", 1, 0)
    assert (len(sms.sent), sms.lookups) == (1, 0)


async def test_an_outcome_under_a_claim_that_was_taken_over_is_not_recorded(env: Env) -> None:
    """A stalled sender's outcome arrives after an in-doubt recovery resent the delivery and a
    new claim owns it: the stale claim writes nothing (the new claim's outcome is the one)."""
    from services.notifications.adapters.delivery_repository import DeliveryRepository
    from services.notifications.domain.delivery import DeliveryStatus

    delivery_id = await env.enqueue(ChannelKind.SMS)
    later = NOW + LEASE
    async with env.uow() as uow:
        repo = DeliveryRepository(uow)
        stale = await repo.get(delivery_id)
        assert stale is not None
        assert await repo.claim(delivery_id, NOW, later) == 1
        stale.claimed(1, NOW, later)
        await uow.commit()
    async with env.uow() as uow:  # the in-doubt recovery resends; a new sender claims it
        repo = DeliveryRepository(uow)
        recovered = await repo.get(delivery_id, lock=True)
        assert recovered is not None
        recovered.resend(NOW, doubts=1)
        assert await repo.save(recovered, claim=1)
        assert await repo.claim(delivery_id, NOW, later) == 2
        await uow.commit()
    async with env.uow() as uow:  # the stalled sender comes back with claim 1
        stale.finish(DeliveryStatus.SENT, attempts=1, sent_at=NOW)
        assert not await DeliveryRepository(uow).save(stale, claim=1)
        await uow.commit()
    row = await env.row(delivery_id)
    assert (row["status"], row["claim"], row["attempts"], row["doubts"]) == ("sending", 2, 0, 1)
