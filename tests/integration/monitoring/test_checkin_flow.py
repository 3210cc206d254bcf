"""Monitoring over the real broker and PostgreSQL: a DoseReduced from Kafka schedules check-ins;
the first falls due and is announced (CheckInDue on its topic); nobody reports, so it is missed and
an engagement episode opens (ThresholdExceeded); a PageAcknowledged from Kafka is recorded on it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from contracts import (
    CHECK_IN_DUE,
    DOSE_REDUCED,
    DOSE_RESTORED,
    PAGE_ACKNOWLEDGED,
    THRESHOLD_EXCEEDED,
    DoseRestored,
    DrugDose,
    PageAcknowledged,
    TaperStage,
)
from services.chassis.clock import FrozenClock
from services.monitoring.adapters.orm import checkins, dose_history
from services.monitoring.bootstrap import bootstrap
from services.monitoring.service_layer import episodes
from services.monitoring.settings import MonitoringSettings
from tests.helpers import dose_reduced, eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

STEP_DAY = date(2026, 4, 6)


def _record(event: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    headers = [
        ("event_type", event.event_type.encode()),
        ("event_id", str(event.event_id).encode()),
        ("schema_version", str(event.schema_version).encode()),
    ]
    return str(event.patient_id).encode(), event.to_bytes(), headers


async def _of_patient(bootstrap_servers: str, topic: str, patient: uuid.UUID) -> list[Any]:
    records = await read_topic(bootstrap_servers, topic, expect=10**6, timeout=2)
    return [json.loads(r.value) for r in records if r.key == str(patient).encode()]


async def test_a_missed_check_in_after_a_dose_step_opens_an_engagement_episode(
    settings_for: Any, kafka_bootstrap_servers: str
) -> None:
    patient = uuid.uuid4()
    clock = FrozenClock(datetime.combine(STEP_DAY, datetime.min.time(), tzinfo=UTC))
    step = dose_reduced(patient, effective_on=STEP_DAY, half_life_class="short", drug="alprazolam")
    async with bootstrap(settings_for(MonitoringSettings), clock=clock) as runtime:
        await produce_raw(kafka_bootstrap_servers, DOSE_REDUCED.name, [_record(step)])

        async def due_announced() -> list[Any]:
            return await _of_patient(kafka_bootstrap_servers, CHECK_IN_DUE.name, patient)

        clock.advance(timedelta(hours=1))  # consumed, nothing due yet
        clock.set(datetime.combine(STEP_DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=25))
        [announced] = await eventually(due_announced)
        assert announced["after_dose_event_id"] == str(step.event_id)
        assert announced["causation_id"] == str(step.event_id)

        async def engagement() -> list[Any]:
            found = await _of_patient(kafka_bootstrap_servers, THRESHOLD_EXCEEDED.name, patient)
            return [e for e in found if e["family"] == "engagement"]

        clock.set(datetime.fromisoformat(announced["window_closes_at"]) + timedelta(minutes=1))
        [exceeded] = await eventually(engagement)
        assert exceeded["severity"] == "AMBER"
        assert [r["code"] for r in exceeded["reasons"]] == ["missed_checkin"]

        ack = PageAcknowledged.create(
            patient_id=patient,
            occurred_at=clock.now(),
            episode_id=uuid.UUID(exceeded["episode_id"]),
            severity="AMBER",
            acknowledged_by="c-1",
            channel="api",
        )
        await produce_raw(kafka_bootstrap_servers, PAGE_ACKNOWLEDGED.name, [_record(ack)])

        async def acknowledged() -> bool:
            async with runtime.uow() as uow:
                [episode] = await episodes.list_open(uow, [patient])
            return episode.acknowledged_at is not None

        await eventually(acknowledged)


async def test_the_patients_day_and_a_restored_dose_arrive_over_the_broker(
    settings_for: Any, kafka_bootstrap_servers: str
) -> None:
    """Issue 13: a New York patient's step at 08:00 EST on Friday 6 March 2026 has check-ins on
    their calendar across the clocks going forward; a DoseRestored is recorded as a restore."""
    patient = uuid.uuid4()
    first_dose = datetime(2026, 3, 6, 13, tzinfo=UTC)
    clock = FrozenClock(first_dose)
    step = dose_reduced(
        patient,
        effective_on=date(2026, 3, 6),
        half_life_class="short",
        drug="alprazolam",
        effective_at=first_dose,
        timezone="America/New_York",
    )
    restored = DoseRestored.create(
        patient_id=patient,
        occurred_at=first_dose + timedelta(days=1),
        plan_id=step.plan_id,
        step_number=2,
        drug="alprazolam",
        previous_daily_dose_mg=step.new_daily_dose_mg,
        restored_daily_dose_mg=step.previous_daily_dose_mg,
        regimen=[DrugDose(drug="alprazolam", daily_dose_mg=step.previous_daily_dose_mg)],
        effective_on=date(2026, 3, 7),
        decision_id=uuid.uuid4(),
        half_life_class="short",
        taper_stage=TaperStage.HELD,
    )
    async with bootstrap(settings_for(MonitoringSettings), clock=clock) as runtime:
        await produce_raw(kafka_bootstrap_servers, DOSE_REDUCED.name, [_record(step)])
        await produce_raw(kafka_bootstrap_servers, DOSE_RESTORED.name, [_record(restored)])

        async def history() -> list[Any]:
            async with runtime.uow() as uow:
                rows = await uow.session.execute(
                    sa.select(dose_history.c.change)
                    .where(dose_history.c.patient_id == patient)
                    .order_by(dose_history.c.effective_on)
                )
                found = list(rows.scalars())
            return found if len(found) == 2 else []

        assert await eventually(history) == ["reduction", "restore"]
        async with runtime.uow() as uow:
            due = await uow.session.scalars(
                sa.select(checkins.c.due_at)
                .where(checkins.c.patient_id == patient)
                .order_by(checkins.c.due_at)
            )
            # short: 24 and 72 h (data) -> Saturday 08:00 EST, Monday 08:00 EDT
            assert list(due) == [
                datetime(2026, 3, 7, 13, tzinfo=UTC),
                datetime(2026, 3, 9, 12, tzinfo=UTC),
            ]
