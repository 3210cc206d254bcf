"""Patient messages over a real SQLite database (migrated), the real unit of work, the real
``Deliverer`` and timer poller, and fake channels: one message per event, on the patient's terms
(quiet hours, channel, opt-out), re-checked when it is sent; then the preferences and history
API through the service's own bootstrap."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider

from contracts import (
    CheckInDue,
    CohortAssigned,
    CohortChanged,
    CohortLeft,
    DoseReduced,
    DoseRestored,
    Event,
    TaperStage,
    ThresholdExceeded,
)
from contracts.events.scheduler import DrugDose
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.timers import TimerPoller
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.notifications.adapters.channels import ChannelKind, RecordingChannel
from services.notifications.adapters.orm import metadata, patient_profiles
from services.notifications.domain.calendar import DailyWindow
from services.notifications.domain.preferences import Preferences
from services.notifications.service_layer import message_delivery
from services.notifications.service_layer import patient_messages as service
from services.notifications.service_layer.delivery import DELIVER, IN_DOUBT, Deliverer
from tests.helpers import red_flag_threshold
from tests.runtimes import migrated_engine

NY = "America/New_York"
PATIENT = uuid.uuid4()
OTHER = uuid.uuid4()
PHONE = "+15551230001"
NEW_PHONE = "+15551239999"
EMAIL = "patient@example.org"
# 2026-11-25 is a Wednesday; New York is on EST (UTC-5) then.
AT_1000_LOCAL = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
AT_2330_LOCAL = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)  # 23:30 on the 25th
NEXT_0800_LOCAL = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)

Handler = Callable[[Any, UnitOfWork], Awaitable[None]]


@dataclass
class Env:
    uow: UnitOfWorkFactory
    clock: FrozenClock
    timers: TimerPoller
    sms: RecordingChannel
    email: RecordingChannel

    async def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        async with self.uow() as uow:
            t = uow.table(table)
            query = sa.select(t)
            for column, value in where.items():
                query = query.where(t.c[column] == value)
            return [dict(r) for r in (await uow.session.execute(query)).mappings()]

    async def handle(self, handler: Handler, event: Event) -> None:
        async with self.uow() as uow:
            await handler(event, uow)
            await uow.commit()

    async def profile(self, patient_id: uuid.UUID = PATIENT, **overrides: Any) -> None:
        values: dict[str, Any] = {"timezone": NY, "channels": ("sms",), "phone": PHONE}
        async with self.uow() as uow:
            await service.set_preferences(
                uow, patient_id, Preferences(**(values | overrides)), updated_by="test"
            )

    async def at(self, when: datetime) -> int:
        """Move the clock to ``when`` and fire every timer due by then."""
        self.clock.set(when)
        return await self.timers.fire_due()

    async def message(self) -> dict[str, Any]:
        [row] = await self.rows("patient_messages")
        return row


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = await migrated_engine("notifications", tmp_path)
    clock = FrozenClock(AT_1000_LOCAL)
    uow = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    sms, email = RecordingChannel(ChannelKind.SMS), RecordingChannel(ChannelKind.EMAIL)
    deliverer = Deliverer(
        {ChannelKind.SMS: sms, ChannelKind.EMAIL: email},
        {message_delivery.OWNER_KIND: message_delivery.MessageOwner()},
        max_attempts=3,
        claims=uow,
    )
    timers = TimerPoller(
        service="notifications",
        uow_factory=uow,
        handlers={DELIVER: deliverer, IN_DOUBT: deliverer.in_doubt, **service.TIMER_HANDLERS},
        tracer_provider=TracerProvider(),
    )
    yield Env(uow, clock, timers, sms, email)
    await engine.dispose()


def dose_reduced(patient_id: uuid.UUID = PATIENT, **overrides: Any) -> DoseReduced:
    facts: dict[str, Any] = {
        "plan_id": uuid.uuid4(),
        "step_number": 3,
        "drug": "diazepam",
        "previous_daily_dose_mg": Decimal("10.0000"),
        "new_daily_dose_mg": Decimal("7.5000"),
        "effective_on": date(2026, 11, 25),
        "taper_stage": TaperStage.ACTIVE,
        "approved_by_decision_id": uuid.uuid4(),
        "half_life_class": "long",
        "step_kind": "reduction",
    }
    return DoseReduced.create(
        patient_id=patient_id, occurred_at=AT_1000_LOCAL, **(facts | overrides)
    )


def check_in_due(closes_at: datetime, patient_id: uuid.UUID = PATIENT) -> CheckInDue:
    return CheckInDue.create(
        patient_id=patient_id,
        occurred_at=AT_1000_LOCAL,
        checkin_id=uuid.uuid4(),
        due_at=closes_at - timedelta(hours=12),
        window_closes_at=closes_at,
        instruments=("ciwa-b",),
        after_dose_event_id=uuid.uuid4(),
    )


# --- on each event -----------------------------------------------------------------------------


async def test_an_unknown_patients_events_are_parked_not_dead_lettered_and_sent_once_known(
    env: Env,
) -> None:
    """Issue 14 (4a): before, the first event raised PermanentError (dead-lettered)."""
    older = dose_reduced()
    later = {"occurred_at": AT_1000_LOCAL + timedelta(days=7)}  # the next step, a week on
    newer = dose_reduced(step_number=4).model_copy(update=later)
    open_check_in = check_in_due(AT_1000_LOCAL + timedelta(hours=6))
    closed_check_in = check_in_due(AT_1000_LOCAL + timedelta(minutes=30))
    for handler, event in (
        (service.on_dose_reduced, older),
        (service.on_dose_reduced, newer),
        (service.on_dose_reduced, newer),  # redelivered: parked once
        (service.on_check_in_due, open_check_in),
        (service.on_check_in_due, closed_check_in),
    ):
        await env.handle(handler, event)  # no exception: nothing is dead-lettered
    assert await env.rows("patient_messages") == [] and await env.rows("deliveries") == []
    assert len(await env.rows("parked_patient_events", status="parked")) == 4

    env.clock.set(AT_1000_LOCAL + timedelta(hours=1))  # the first check-in's window closed
    await env.profile()  # creating the profile releases them, with no operator
    await env.at(env.clock.now())
    by_event = {m["source_event_id"]: m for m in await env.rows("patient_messages")}
    assert by_event[newer.event_id]["status"] == "sent"
    assert by_event[open_check_in.event_id]["status"] == "sent"
    assert by_event[older.event_id]["skip_reason"] == "superseded"  # the newer dose is told
    assert by_event[closed_check_in.event_id]["skip_reason"] == "window_closed"
    assert len(env.sms.sent) == 2
    assert await env.rows("parked_patient_events", status="parked") == []

    await env.profile(quiet=DailyWindow(time(1), time(2)))  # saved again: nothing re-sent
    await env.handle(service.on_dose_reduced, newer)  # a late redelivery: nothing either
    await env.at(env.clock.now() + timedelta(minutes=5))
    assert len(env.sms.sent) == 2 and len(await env.rows("patient_messages")) == 4


async def test_a_parked_event_of_another_patient_waits_for_that_patients_profile(
    env: Env,
) -> None:
    await env.handle(service.on_dose_reduced, dose_reduced(patient_id=OTHER))
    await env.profile()  # PATIENT's profile: OTHER's event stays parked
    await env.at(AT_1000_LOCAL)
    assert env.sms.sent == [] and len(await env.rows("parked_patient_events", status="parked")) == 1


async def test_a_profile_saved_while_an_event_was_being_parked_still_gets_it(env: Env) -> None:
    """The save found nothing parked (the event's transaction had not committed yet): the
    re-check the parking scheduled releases it; a re-check before any profile leaves it parked."""
    await env.handle(service.on_dose_reduced, dose_reduced(patient_id=OTHER))
    await env.handle(service.on_dose_reduced, dose_reduced())
    async with env.uow() as uow:  # PATIENT's profile row, as a save that released nothing
        await uow.session.execute(
            sa.insert(patient_profiles).values(
                patient_id=PATIENT,
                timezone=NY,
                language="en",
                channels=["sms"],
                phone=PHONE,
                email=None,
                quiet_start=time(21),
                quiet_end=time(8),
                opted_out=[],
                include_dose_details=False,
                updated_by="test",
                updated_at=AT_1000_LOCAL,
            )
        )
        await uow.commit()
    await env.at(AT_1000_LOCAL + timedelta(seconds=30))
    assert env.sms.sent == []
    await env.at(AT_1000_LOCAL + timedelta(minutes=2))  # the re-check, then its delivery
    await env.at(AT_1000_LOCAL + timedelta(minutes=2))
    assert [m.address for m in env.sms.sent] == [PHONE]
    assert len(await env.rows("parked_patient_events", status="parked")) == 1  # OTHER's


async def test_a_redelivered_event_sends_nothing_twice(env: Env) -> None:
    await env.profile()
    event = dose_reduced()
    await env.handle(service.on_dose_reduced, event)
    await env.handle(service.on_dose_reduced, event)
    assert len(await env.rows("patient_messages")) == 1
    assert len(await env.rows("deliveries")) == 1
    await env.at(AT_1000_LOCAL)
    await env.handle(service.on_dose_reduced, event)  # again, after it was sent
    await env.at(AT_1000_LOCAL + timedelta(minutes=5))
    assert len(env.sms.sent) == 1 and len(await env.rows("deliveries")) == 1


async def test_at_2330_local_the_message_waits_for_0800_local_next_day(env: Env) -> None:
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    await env.handle(service.on_dose_reduced, dose_reduced(effective_on=date(2026, 11, 26)))
    message = await env.message()
    assert (message["status"], message["send_at"]) == ("deferred", NEXT_0800_LOCAL)
    [delivery] = await env.rows("deliveries")
    assert delivery["next_attempt_at"] == NEXT_0800_LOCAL
    [timer] = await env.rows("timers", kind=DELIVER)
    assert timer["due_at"] == NEXT_0800_LOCAL  # durable: a restart overnight loses nothing

    assert await env.at(NEXT_0800_LOCAL - timedelta(seconds=1)) == 0
    assert env.sms.sent == []
    await env.at(NEXT_0800_LOCAL)
    [sent] = env.sms.sent
    assert sent.body.startswith("Your taper plan has a new step starting today, Thu 26 Nov.")
    message = await env.message()
    assert (message["status"], message["sent_at"]) == ("sent", NEXT_0800_LOCAL)


async def test_at_1000_local_the_message_is_due_now(env: Env) -> None:
    await env.profile()
    await env.handle(service.on_dose_reduced, dose_reduced())
    message = await env.message()
    assert (message["status"], message["send_at"]) == ("scheduled", AT_1000_LOCAL)
    [timer] = await env.rows("timers", kind=DELIVER)
    assert timer["due_at"] == AT_1000_LOCAL
    assert await env.at(AT_1000_LOCAL) == 1 and len(env.sms.sent) == 1


@pytest.mark.parametrize(
    ("opted_out", "dose_skipped", "check_in_skipped"),
    [
        (frozenset({"all"}), True, True),
        (frozenset({"dose_changed"}), True, False),
        (frozenset({"check_in_due"}), False, True),
    ],
)
async def test_opting_out_of_all_or_one_kind(
    env: Env, opted_out: frozenset[str], dose_skipped: bool, check_in_skipped: bool
) -> None:
    await env.profile(opted_out=opted_out)
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.handle(service.on_check_in_due, check_in_due(AT_1000_LOCAL + timedelta(hours=8)))
    by_kind = {m["kind"]: m for m in await env.rows("patient_messages")}
    for kind, skipped in (("dose_changed", dose_skipped), ("check_in_due", check_in_skipped)):
        message = by_kind[kind]
        assert (message["status"] == "skipped") is skipped, kind
        assert (message["skip_reason"] == "opted_out") is skipped, kind
        deliveries = await env.rows("deliveries", owner_id=message["id"])
        assert len(deliveries) == (0 if skipped else 1), kind


async def test_no_channel_is_stored_as_skipped_without_a_delivery(env: Env) -> None:
    await env.profile(channels=(), phone=None)
    await env.handle(service.on_cohort_assigned, cohort_assigned())
    message = await env.message()
    assert (message["status"], message["skip_reason"]) == ("skipped", "no_channel")
    assert await env.rows("deliveries") == []


def cohort_assigned() -> CohortAssigned:
    return CohortAssigned.create(
        patient_id=PATIENT,
        occurred_at=AT_1000_LOCAL,
        cohort_id=uuid.uuid4(),
        stage_group="active",
        language="en",
    )


async def test_the_first_preferred_channel_with_an_address_gets_the_one_delivery(
    env: Env,
) -> None:
    await env.profile(channels=("email", "sms"), email=EMAIL)
    await env.handle(service.on_cohort_assigned, cohort_assigned())
    [delivery] = await env.rows("deliveries")
    message = await env.message()
    assert delivery["channel"] == "email"
    assert delivery["idempotency_key"] == f"taper-msg-{message['id']}-email"
    await env.at(AT_1000_LOCAL)
    assert [m.address for m in env.email.sent] == [EMAIL] and env.sms.sent == []


async def test_dose_facts_are_stored_and_sent_only_with_consent(env: Env) -> None:
    await env.profile(include_dose_details=True)
    await env.handle(service.on_dose_reduced, dose_reduced())
    message = await env.message()
    assert message["template"] == "messages.v1:dose_reduced"
    assert message["params"]["mg"] == "7.5" and message["params"]["drug"] == "diazepam"
    await env.at(AT_1000_LOCAL)
    assert env.sms.sent[0].body.startswith(
        "From today, Wed 25 Nov, take 7.5 mg of diazepam a day (was 10 mg)."
    )

    await env.profile(OTHER)  # no consent: the facts are not even kept
    await env.handle(service.on_dose_reduced, dose_reduced(OTHER))
    [other] = await env.rows("patient_messages", patient_id=OTHER)
    assert other["params"] == {"effective_on": "2026-11-25"}


async def test_a_restored_dose_is_announced(env: Env) -> None:
    await env.profile()
    restored = DoseRestored.create(
        patient_id=PATIENT,
        occurred_at=AT_1000_LOCAL,
        plan_id=uuid.uuid4(),
        step_number=3,
        drug="diazepam",
        previous_daily_dose_mg=Decimal("7.5"),
        restored_daily_dose_mg=Decimal("10"),
        regimen=[DrugDose(drug="diazepam", daily_dose_mg=Decimal("10"))],
        effective_on=date(2026, 11, 25),
        decision_id=uuid.uuid4(),
        half_life_class="long",
        taper_stage=TaperStage.HELD,
    )
    await env.handle(service.on_dose_restored, restored)
    await env.at(AT_1000_LOCAL)
    [sent] = env.sms.sent
    assert sent.body.startswith("Your clinician changed your dose from today, Wed 25 Nov.")


# --- at send time: the profile as it is then ----------------------------------------------------


async def test_a_new_phone_number_before_sending_is_used(env: Env) -> None:
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.profile(phone=NEW_PHONE)
    await env.at(NEXT_0800_LOCAL)
    assert [m.address for m in env.sms.sent] == [NEW_PHONE]
    assert (await env.message())["status"] == "sent"


async def test_quiet_hours_are_checked_again_when_the_message_is_due(env: Env) -> None:
    """Scheduled at 23:30 New York for 08:00 New York; the patient has moved to Los Angeles since,
    where 08:00 New York is 05:00, still quiet: it waits for 08:00 in Los Angeles."""
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.profile(timezone="America/Los_Angeles")
    await env.at(NEXT_0800_LOCAL)
    assert env.sms.sent == []
    la_0800 = NEXT_0800_LOCAL + timedelta(hours=3)
    [delivery] = await env.rows("deliveries")
    assert (delivery["status"], delivery["attempts"]) == ("pending", 0)
    assert delivery["next_attempt_at"] == la_0800
    await env.at(la_0800 - timedelta(minutes=1))
    assert env.sms.sent == []
    await env.at(la_0800)
    assert [m.address for m in env.sms.sent] == [PHONE]
    assert (await env.message())["status"] == "sent"


async def test_opting_out_before_sending_cancels_the_message(env: Env) -> None:
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.profile(opted_out=frozenset({"dose_changed"}))
    await env.at(NEXT_0800_LOCAL)
    assert env.sms.sent == []
    [delivery] = await env.rows("deliveries")
    assert delivery["status"] == "cancelled"
    message = await env.message()
    assert (message["status"], message["skip_reason"]) == ("skipped", "opted_out")
    assert await env.rows("audit_log", action="message.sent") == []


async def test_switching_channel_before_sending_reroutes_the_message(env: Env) -> None:
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.profile(channels=("email",), phone=None, email=EMAIL)
    await env.at(NEXT_0800_LOCAL)
    assert env.sms.sent == [] and [m.address for m in env.email.sent] == [EMAIL]
    statuses = {d["channel"]: d["status"] for d in await env.rows("deliveries")}
    assert statuses == {"sms": "cancelled", "email": "sent"}
    assert (await env.message())["status"] == "sent"


async def test_a_check_in_reminder_whose_window_closed_before_sending_is_dropped(
    env: Env,
) -> None:
    await env.profile()
    closes = AT_1000_LOCAL + timedelta(minutes=30)
    await env.handle(service.on_check_in_due, check_in_due(closes))
    env.sms.fail_next = 5  # the provider is down until after the window closed
    await env.at(AT_1000_LOCAL)
    env.sms.fail_next = 0
    await env.at(closes + timedelta(minutes=1))
    assert env.sms.sent == []
    message = await env.message()
    assert (message["status"], message["skip_reason"]) == ("skipped", "window_closed")


async def test_a_check_in_reminder_that_quiet_hours_would_make_too_late_is_skipped(
    env: Env,
) -> None:
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    await env.handle(service.on_check_in_due, check_in_due(AT_2330_LOCAL + timedelta(hours=2)))
    message = await env.message()
    assert (message["status"], message["skip_reason"]) == ("skipped", "window_closed")
    assert await env.rows("deliveries") == []


# --- through the Deliverer: outcome and audit ---------------------------------------------------


async def test_a_delivery_runs_through_the_deliverer_and_ends_sent_with_an_audit_row(
    env: Env,
) -> None:
    await env.profile()
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.at(AT_1000_LOCAL)
    [sent] = env.sms.sent
    message = await env.message()
    [delivery] = await env.rows("deliveries")
    assert sent.address == PHONE and sent.channel is ChannelKind.SMS
    assert sent.delivery_id == delivery["id"]
    assert sent.idempotency_key == f"taper-msg-{message['id']}-sms"
    assert sent.body.endswith("\nReply STOP to opt out.")
    assert dict(sent.details) == {"message_id": str(message["id"]), "kind": "dose_changed"}
    assert (delivery["status"], delivery["attempts"]) == ("sent", 1)
    assert (message["status"], message["sent_at"]) == ("sent", AT_1000_LOCAL)
    [audit] = await env.rows("audit_log", action="message.sent")
    assert (audit["actor"], audit["actor_role"], audit["resource"], audit["patient_id"]) == (
        "notifications",
        "service",
        "message:dose_changed",
        PATIENT,
    )


async def test_a_message_the_provider_rejects_ends_failed_with_an_audit_row(env: Env) -> None:
    await env.profile()
    await env.handle(service.on_dose_reduced, dose_reduced())
    env.sms.reject_next = 1
    await env.at(AT_1000_LOCAL)
    assert (await env.message())["status"] == "failed"
    assert len(await env.rows("audit_log", action="message.failed")) == 1


async def test_transient_failures_are_retried_then_sent(env: Env) -> None:
    await env.profile()
    await env.handle(service.on_dose_reduced, dose_reduced())
    env.sms.fail_next = 1
    await env.at(AT_1000_LOCAL)
    assert (await env.message())["status"] == "scheduled"
    await env.at(AT_1000_LOCAL + timedelta(seconds=10))
    [delivery] = await env.rows("deliveries")
    assert (delivery["status"], delivery["attempts"]) == ("sent", 2)
    assert (await env.message())["status"] == "sent" and len(env.sms.sent) == 1


async def test_a_message_in_doubt_in_quiet_hours_is_looked_up_not_resent(env: Env) -> None:
    """The provider took it but our call timed out, so it is in doubt; by the time the lease
    ends the patient's quiet hours have begun. The provider's list is asked first, and has it:
    sent once, not deferred to the morning and sent again."""
    await env.profile()
    await env.handle(service.on_dose_reduced, dose_reduced())
    env.sms.time_out_next = 1
    await env.at(AT_1000_LOCAL)
    [delivery] = await env.rows("deliveries")
    assert delivery["status"] == "sending"
    await env.at(AT_2330_LOCAL)  # the in-doubt timer, in quiet hours
    await env.at(NEXT_0800_LOCAL + timedelta(hours=1))
    assert (len(env.sms.sent), env.sms.lookups) == (1, 1)
    [delivery] = await env.rows("deliveries")
    assert (delivery["status"], delivery["doubts"]) == ("sent", 1)
    assert (await env.message())["status"] == "sent"


async def test_a_message_in_doubt_the_provider_lacks_waits_for_quiet_hours_to_end(
    env: Env,
) -> None:
    await env.profile()
    await env.handle(service.on_dose_reduced, dose_reduced())
    env.sms.lose_next = 1
    await env.at(AT_1000_LOCAL)
    await env.at(AT_2330_LOCAL)  # looked up, absent: resent, through the quiet-hours check
    assert (env.sms.sent, env.sms.lookups) == ([], 1)
    await env.at(NEXT_0800_LOCAL - timedelta(minutes=1))
    assert env.sms.sent == []
    await env.at(NEXT_0800_LOCAL)
    assert len(env.sms.sent) == 1 and (await env.message())["status"] == "sent"


async def test_the_message_text_and_address_are_never_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything the service would emit at its INFO level, and our own code down to DEBUG
    # (aiosqlite's DEBUG traces quote SQL parameters; they are never on in a deployment).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="services")
    await env.profile(include_dose_details=True)
    await env.handle(service.on_dose_reduced, dose_reduced())
    await env.at(AT_1000_LOCAL)
    [sent] = env.sms.sent
    assert caplog.records, "the flow logs something (ids and kinds)"
    for record in caplog.records:
        logged = record.getMessage() + repr(vars(record))
        for secret in (PHONE, "diazepam", "7.5 mg", sent.body):
            assert secret not in logged, record.getMessage()


# --- the API, through the service's bootstrap ---------------------------------------------------

NOW = AT_1000_LOCAL
PREFS_URL = f"/api/notifications/patients/{PATIENT}/notification-preferences"
MESSAGES_URL = f"/api/notifications/patients/{PATIENT}/messages"


@dataclass
class Api:
    runtime: Any
    client: httpx.AsyncClient
    sms: RecordingChannel

    def headers(self, role: Role = Role.PATIENT, **claims: Any) -> dict[str, str]:
        if role is Role.PATIENT:
            claims.setdefault("patient_id", PATIENT)
        if role is Role.CLINICIAN:
            claims.setdefault("panel", [PATIENT])
        token = issue_dev_token(self.runtime.settings, subject=f"{role}-1", role=role, **claims)
        return {"Authorization": f"Bearer {token}"}

    async def audit(self, **where: Any) -> list[dict[str, Any]]:
        async with self.runtime.uow() as uow:
            t = uow.table("audit_log")
            query = sa.select(t)
            for column, value in where.items():
                query = query.where(t.c[column] == value)
            return [dict(r) for r in (await uow.session.execute(query)).mappings()]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    # Imported here: the bootstrap also wires the escalation side, and these tests are the only
    # ones that need it.
    from tests.runtimes import asgi_client, service_runtime

    sms = RecordingChannel(ChannelKind.SMS)
    channels = {ChannelKind.SMS: sms, ChannelKind.EMAIL: RecordingChannel(ChannelKind.EMAIL)}
    async with (
        service_runtime(
            "notifications", tmp_path, clock=FrozenClock(NOW), channels=channels
        ) as runtime,
        asgi_client(runtime.app) as client,
    ):
        yield Api(runtime, client, sms)


def body(**overrides: Any) -> dict[str, Any]:
    return {"timezone": NY, "channels": ["sms"], "phone": PHONE} | overrides


async def test_api_preferences_round_trip_with_defaults_and_audit(api: Api) -> None:
    r = await api.client.put(PREFS_URL, json=body(), headers=api.headers())
    assert r.status_code == 200, r.text
    r = await api.client.get(PREFS_URL, headers=api.headers())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert (out["language"], out["include_dose_details"], out["opted_out"]) == ("en", False, [])
    assert (out["channels"], out["phone"], out["email"]) == (["sms"], PHONE, None)
    actions = [(a["action"], a["outcome"]) for a in await api.audit(patient_id=PATIENT)]
    assert actions == [("update", "allowed"), ("read", "allowed")]


async def test_api_a_clinician_with_the_patient_on_their_panel_may_set_preferences(
    api: Api,
) -> None:
    r = await api.client.put(
        PREFS_URL,
        json=body(quiet_hours={"start": "22:30", "end": "07:00"}, opted_out=["cohort_assigned"]),
        headers=api.headers(Role.CLINICIAN),
    )
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    assert r.json()["opted_out"] == ["cohort_assigned"]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"timezone": "localtime"}, ["body", "timezone"]),
        ({"phone": "555-123-4567"}, ["body", "phone"]),
        ({"channels": ["sms"], "phone": None}, ["body", "phone"]),
        ({"channels": ["sms", "email"]}, ["body", "email"]),
        ({"email": "someone@", "channels": []}, ["body", "email"]),
        ({"language": "fr"}, ["body", "language"]),
        ({"quiet_hours": {"start": "9pm", "end": "08:00"}}, ["body", "quiet_hours", "start"]),
        ({"opted_out": ["marketing"]}, ["body", "opted_out", 0]),
    ],
)
async def test_api_bad_preferences_are_422_naming_the_field_and_store_nothing(
    api: Api, overrides: dict[str, Any], loc: list[Any]
) -> None:
    r = await api.client.put(PREFS_URL, json=body(**overrides), headers=api.headers())
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]]
    assert "555-123-4567" not in r.text and "someone@" not in r.text  # input never echoed
    r = await api.client.get(PREFS_URL, headers=api.headers())
    assert r.status_code == 404


async def test_api_another_patient_is_refused_and_the_refusal_audited(api: Api) -> None:
    other = api.headers(Role.PATIENT, patient_id=OTHER)
    for method, url in (("PUT", PREFS_URL), ("GET", PREFS_URL), ("GET", MESSAGES_URL)):
        r = await api.client.request(method, url, json=body(), headers=other)
        assert r.status_code == 403, (method, url)
    r = await api.client.get(PREFS_URL, headers=api.headers(Role.CLINICIAN, panel=[OTHER]))
    assert r.status_code == 403
    denied = await api.audit(patient_id=PATIENT, outcome="denied")
    assert len(denied) == 4
    assert {d["resource"] for d in denied} == {"notification_preferences", "patient_message"}


async def test_api_message_history_shows_statuses_without_text_or_address(api: Api) -> None:
    r = await api.client.put(
        PREFS_URL,
        json=body(include_dose_details=True, opted_out=["cohort_assigned"]),
        headers=api.headers(),
    )
    assert r.status_code == 200, r.text
    async with api.runtime.uow() as uow:
        await service.on_dose_reduced(dose_reduced(), uow)
        await service.on_cohort_assigned(cohort_assigned(), uow)
        await uow.commit()
    await api.runtime.timers.fire_due()
    [sent] = api.sms.sent

    r = await api.client.get(MESSAGES_URL, headers=api.headers(Role.CLINICIAN))
    assert r.status_code == 200, r.text
    by_kind = {m["kind"]: m for m in r.json()}
    dose, cohort = by_kind["dose_changed"], by_kind["cohort_assigned"]
    assert (dose["status"], dose["skip_reason"]) == ("sent", None)
    assert dose["send_at"].startswith("2026-11-25T15:00") and dose["sent_at"] is not None
    [delivery] = dose["deliveries"]
    assert (delivery["channel"], delivery["status"], delivery["attempts"]) == ("sms", "sent", 1)
    assert delivery["last_error"] is None
    assert (cohort["status"], cohort["skip_reason"], cohort["deliveries"]) == (
        "skipped",
        "opted_out",
        [],
    )
    for secret in (PHONE, "diazepam", "7.5", sent.body[:20], "Open the app"):
        assert secret not in r.text
    assert await api.audit(resource="patient_message", outcome="allowed")


# --- RED: the patient is told help is coming, whatever the hour ---------------------------------


def threshold(severity: str, patient_id: uuid.UUID = PATIENT) -> ThresholdExceeded:
    return red_flag_threshold(patient_id, severity=severity, occurred_at=AT_2330_LOCAL)


async def test_a_red_escalation_sends_the_safety_notice_at_once_even_in_quiet_hours(
    env: Env,
) -> None:
    await env.profile()
    env.clock.set(AT_2330_LOCAL)
    red = threshold("RED")
    await env.handle(service.on_threshold_exceeded, red)
    await env.handle(service.on_threshold_exceeded, red)  # redelivered
    await env.handle(service.on_threshold_exceeded, threshold("AMBER"))  # AMBER: nothing
    await env.timers.fire_due()
    [sent] = env.sms.sent
    assert "911" in sent.body and "988" in sent.body and "seizure" not in sent.body
    message = await env.message()
    assert (message["kind"], message["status"]) == ("safety_notice", "sent")


async def test_the_safety_notice_respects_opt_out_and_never_fails_for_an_unknown_patient(
    env: Env,
) -> None:
    await env.handle(service.on_threshold_exceeded, threshold("RED", patient_id=OTHER))
    assert await env.rows("patient_messages") == []  # no profile: no error, no message
    await env.profile(opted_out=frozenset({"safety_notice"}))
    await env.handle(service.on_threshold_exceeded, threshold("RED"))
    message = await env.message()
    assert (message["status"], message["skip_reason"]) == ("skipped", "opted_out")


async def test_cohort_moves_are_told_and_leaving_by_choice_is_not(env: Env) -> None:
    await env.profile()
    cohort, other = uuid.uuid4(), uuid.uuid4()
    moved = CohortChanged.create(
        patient_id=PATIENT,
        occurred_at=AT_1000_LOCAL,
        from_cohort_id=cohort,
        to_cohort_id=other,
        stage_group="final_phase",
        reason="stage_changed",
    )
    await env.handle(service.on_cohort_changed, moved)
    for reason in ("patient_left", "cohort_closed"):
        left = CohortLeft.create(
            patient_id=PATIENT, occurred_at=AT_1000_LOCAL, cohort_id=other, reason=reason
        )
        await env.handle(service.on_cohort_left, left)
    await env.timers.fire_due()
    firsts = sorted(m.body.split(".")[0] for m in env.sms.sent)
    assert firsts == [
        "You are no longer in your peer-support group",
        "You have been moved to a new peer-support group",
    ]
