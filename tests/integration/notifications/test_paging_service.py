"""The notifications service on PostgreSQL with its real channels (SMTP to a real local SMTP
server, SMS and webhook over HTTP to real receivers): a RED episode pages the on-call clinician
by email and SMS, escalates to the backup when nobody acknowledges, the link in the email
acknowledges it, and a patient's dose message waits out quiet hours. Timers are fired by the
real poller against a pinned clock; events are handed to the consumers' handlers directly (the
broker path is covered by tests/chaos and tests/e2e)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from contracts import DoseReduced, Event
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.notifications.adapters.orm import escalations as escalation_rows
from services.notifications.service_layer import escalations, patient_messages
from tests.helpers import red_flag_threshold
from tests.notifications_receivers import HttpReceiver, SmtpReceiver
from tests.runtimes import service_runtime

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)  # Tuesday 09:00 in New York
PATIENT = uuid.uuid4()


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[SmtpReceiver, HttpReceiver]]:
    async with SmtpReceiver() as smtp, HttpReceiver() as http:
        yield smtp, http


@pytest.fixture
async def service(
    fresh_pg_dsn: str, receivers: tuple[SmtpReceiver, HttpReceiver]
) -> AsyncIterator[tuple[ServiceRuntime, FrozenClock]]:
    smtp, http = receivers
    clock = FrozenClock(NOW)
    settings = {
        "smtp_port": smtp.port,
        "sms_base_url": http.url("/sms"),
        "page_webhook_url": http.url("/pages"),
        "public_base_url": "http://test",
    }
    async with service_runtime(
        "notifications", fresh_pg_dsn, settings=settings, clock=clock
    ) as runtime:
        yield runtime, clock


async def handle(runtime: ServiceRuntime, handler: object, event: Event) -> None:
    async with runtime.uow() as uow:
        await handler(event, uow)  # type: ignore[operator]
        await uow.commit()
    await runtime.timers.fire_due()


async def test_a_red_episode_pages_by_email_and_sms_escalates_and_is_acknowledged_by_link(
    service: tuple[ServiceRuntime, FrozenClock], receivers: tuple[SmtpReceiver, HttpReceiver]
) -> None:
    runtime, clock = service
    smtp, http = receivers
    admin = {
        "Authorization": "Bearer " + issue_dev_token(runtime.settings, subject="ops", role=Role.OPS)
    }
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for schedule, who in (("clinician-on-call", "dr-ada"), ("backup-on-call", "dr-bo")):
            rotation = {
                "timezone": "America/New_York",
                "participants": [who],
                "starts_at": "2026-01-01T08:00:00-05:00",
                "shift_hours": 24,
            }
            r = await client.put(
                f"/api/notifications/schedules/{schedule}", json=rotation, headers=admin
            )
            assert r.status_code == 204, r.text
        methods = {
            "dr-ada": [
                {"channel": "email", "address": "ada@clinic.example"},
                {"channel": "sms", "address": "+15550100000"},
            ],
            "dr-bo": [{"channel": "sms", "address": "+15550100001"}],
        }
        for who, m in methods.items():
            r = await client.put(
                f"/api/notifications/clinicians/{who}/contact-methods",
                json={"methods": m},
                headers=admin,
            )
            assert r.status_code == 204, r.text

        episode = uuid.uuid4()
        await handle(
            runtime,
            escalations.on_threshold_exceeded,
            red_flag_threshold(PATIENT, occurred_at=NOW, episode_id=episode),
        )
        [mail] = smtp.messages
        assert mail.rcpt_tos == ["ada@clinic.example"]
        assert mail.message["Subject"] == "RED taper escalation, level 1"
        text = mail.message.get_content()
        assert str(PATIENT) not in text and "seizure" not in text  # minimum necessary
        [sms] = [r for r in http.requests if r.path.endswith("/Messages.json")]
        assert sms.form["To"] == "+15550100000"

        clock.advance(timedelta(minutes=5))  # nobody acknowledged: the backup is paged
        await runtime.timers.fire_due()
        assert [r.form["To"] for r in http.requests if r.form][-1] == "+15550100001"

        link = re.search(r"http://test(/api/notifications/ack/\S+)", text)
        assert link is not None
        confirm = await client.get(link.group(1))
        assert confirm.status_code == 200
        done = await client.post(link.group(1))
        assert done.status_code == 200, done.text

        clock.advance(timedelta(minutes=10))  # acknowledged: no level 3
        await runtime.timers.fire_due()
        assert len([r for r in http.requests if r.form]) == 2
        async with runtime.uow() as uow:
            row = (
                (
                    await uow.session.execute(
                        sa.select(escalation_rows).where(escalation_rows.c.episode_id == episode)
                    )
                )
                .mappings()
                .one()
            )
            outbox = uow.table("outbox")
            published = (await uow.session.scalars(sa.select(outbox.c.event_type))).all()
        assert (row["status"], row["acknowledged_by"], row["acknowledged_via"]) == (
            "acknowledged",
            "dr-ada",
            "signed_link",
        )
        assert published == ["PageAcknowledged"]


async def test_a_dose_message_waits_for_the_end_of_quiet_hours_on_a_real_smtp_server(
    service: tuple[ServiceRuntime, FrozenClock], receivers: tuple[SmtpReceiver, HttpReceiver]
) -> None:
    runtime, clock = service
    smtp, _ = receivers
    patient_token = issue_dev_token(
        runtime.settings, subject="p-1", role=Role.PATIENT, patient_id=PATIENT
    )
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.put(
            f"/api/notifications/patients/{PATIENT}/notification-preferences",
            json={
                "timezone": "America/New_York",
                "language": "en",
                "channels": ["email"],
                "email": "someone@example.org",
                "quiet_hours": {"start": "21:00", "end": "08:00"},
            },
            headers={"Authorization": f"Bearer {patient_token}"},
        )
        assert r.status_code == 200, r.text
    clock.set(datetime(2026, 3, 4, 3, 30, tzinfo=UTC))  # 22:30 in New York
    event = DoseReduced.create(
        patient_id=PATIENT,
        occurred_at=clock.now(),
        plan_id=uuid.uuid4(),
        step_number=2,
        drug="diazepam",
        previous_daily_dose_mg=Decimal("10"),
        new_daily_dose_mg=Decimal("9"),
        effective_on=date(2026, 3, 4),
        taper_stage="active",
        approved_by_decision_id=uuid.uuid4(),
        half_life_class="long",
    )
    await handle(runtime, patient_messages.on_dose_reduced, event)
    await handle(runtime, patient_messages.on_dose_reduced, event)  # redelivered
    assert smtp.messages == []
    clock.set(datetime(2026, 3, 4, 13, 0, tzinfo=UTC))  # 08:00 in New York
    await runtime.timers.fire_due()
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["someone@example.org"]
    assert "diazepam" not in mail.message.get_content()  # no dose details without consent


async def test_an_acknowledgement_racing_a_due_step_pages_nobody_after_it_commits(
    service: tuple[ServiceRuntime, FrozenClock], receivers: tuple[SmtpReceiver, HttpReceiver]
) -> None:
    """PostgreSQL row locks: the step timer fires while an acknowledgement holds the escalation;
    it waits, then sees "acknowledged" and pages nobody (no deadlock, no level 2)."""
    import asyncio

    runtime, clock = service
    _, http = receivers
    await handle(
        runtime,
        escalations.on_threshold_exceeded,
        red_flag_threshold(PATIENT, occurred_at=NOW),
    )
    assert len(http.requests) == 1  # level 1, to the fallback pager
    clock.advance(timedelta(minutes=5))  # level 2 is due
    async with runtime.uow() as uow:
        [row] = (await uow.session.execute(sa.select(escalation_rows))).mappings().all()
        await escalations.acknowledge(uow, row["id"], "dr-ada", "api")  # holds the row lock
        racing = asyncio.create_task(runtime.timers.fire_due())
        await asyncio.sleep(0.5)
        assert not racing.done()  # the step waits for the acknowledgement's transaction
        await uow.commit()
    assert await asyncio.wait_for(racing, 10) == 1  # fired, found itself stale
    assert len(http.requests) == 1
    async with runtime.uow() as uow:
        status = await uow.session.scalar(sa.select(escalation_rows.c.status))
    assert status == "acknowledged"
