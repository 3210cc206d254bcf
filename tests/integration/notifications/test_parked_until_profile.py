"""Through the broker (issue 14, defects 4 and 4a): events for a patient with no notification
profile yet leave nothing in the dead-letter topics — the page goes out at once, the patient's
messages wait — and saving the profile through the API sends the still-relevant ones, once.
Real Kafka, PostgreSQL and HTTP receivers; the service runs in-process on the system clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts import CHECK_IN_DUE, DOSE_REDUCED, THRESHOLD_EXCEEDED, CheckInDue, Event, Topic
from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.notifications.adapters.orm import parked_patient_events
from services.notifications.bootstrap import bootstrap
from services.notifications.settings import NotificationsSettings
from tests.helpers import dose_reduced, eventually, produce_raw, read_topic, red_flag_threshold
from tests.notifications_receivers import HttpReceiver

PHONE = "+15551230077"


def check_in_due(patient: uuid.UUID, closes_at: datetime) -> CheckInDue:
    return CheckInDue.create(
        patient_id=patient,
        occurred_at=datetime.now(UTC),
        checkin_id=uuid.uuid4(),
        due_at=closes_at - timedelta(hours=12),
        window_closes_at=closes_at,
        instruments=("ciwa-b",),
        after_dose_event_id=uuid.uuid4(),
    )


async def _parked(runtime: ServiceRuntime, patient: uuid.UUID) -> int:
    async with runtime.uow() as uow:
        table = parked_patient_events
        query = sa.select(sa.func.count()).where(
            table.c.patient_id == patient, table.c.status == "parked"
        )
        return int(await uow.session.scalar(query) or 0)


async def test_events_before_the_profile_are_parked_then_sent_once_and_nothing_is_dead_lettered(
    settings_for: Any, http_client_for: Any, kafka_bootstrap_servers: str
) -> None:
    patient = uuid.uuid4()
    now = datetime.now(UTC)
    sent: list[tuple[Topic, Event]] = [
        (DOSE_REDUCED, dose_reduced(patient)),
        (CHECK_IN_DUE, check_in_due(patient, now + timedelta(hours=6))),  # still open
        (CHECK_IN_DUE, check_in_due(patient, now + timedelta(seconds=1))),  # closes first
        (THRESHOLD_EXCEEDED, red_flag_threshold(patient, occurred_at=now)),
    ]
    async with HttpReceiver() as http:
        settings = settings_for(
            NotificationsSettings,
            sms_base_url=http.url("/sms"),
            page_webhook_url=http.url("/pages"),
            public_base_url="http://test",
        )
        async with bootstrap(settings) as runtime:
            key = str(patient).encode()
            for topic, event in sent:
                await produce_raw(
                    kafka_bootstrap_servers, topic.name, [(key, event.to_bytes(), [])]
                )

            def to_patient() -> list[Any]:
                return [r for r in http.requests if r.path.endswith("/Messages.json")]

            async def paged_and_parked() -> bool:
                pages = [r for r in http.requests if r.path.endswith("/pages")]
                return len(pages) >= 1 and await _parked(runtime, patient) == 3

            await eventually(paged_and_parked, timeout=60)  # the page did not wait
            assert to_patient() == []

            async def window_closed() -> bool:
                return datetime.now(UTC) > now + timedelta(seconds=1)

            await eventually(window_closed, timeout=5)
            client = http_client_for(runtime.app)
            token = issue_dev_token(
                runtime.settings, subject="p", role=Role.PATIENT, patient_id=patient
            )
            r = await client.put(
                f"/api/notifications/patients/{patient}/notification-preferences",
                json={
                    "timezone": "UTC",
                    "channels": ["sms"],
                    "phone": PHONE,
                    "quiet_hours": {"start": "00:00", "end": "00:00"},  # none
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text

            async def released() -> bool:
                return await _parked(runtime, patient) == 0 and len(to_patient()) >= 2

            await eventually(released, timeout=60)
            # The dose step and the open check-in: once each; the closed one is not sent.
            assert len(to_patient()) == 2
            assert {m.form["To"] for m in to_patient()} == {PHONE}
            for topic, _ in sent:
                records = await read_topic(
                    kafka_bootstrap_servers, topic.dlq, expect=10**6, timeout=3
                )
                assert [rec for rec in records if rec.key == key] == [], topic.dlq
