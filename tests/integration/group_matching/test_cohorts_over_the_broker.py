"""Group matching over the real broker and PostgreSQL, driven by the scheduler's events: six
patients opt in, their DoseReduced arrive from Kafka, a cohort forms (CohortAssigned on its
topic); one patient's taper reaches the final phase, and once that has settled they leave the
cohort (CohortLeft, stage_changed) — not before. A TaperHeld for a patient group matching has
never seen is dead-lettered with the reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts import (
    COHORT_ASSIGNED,
    COHORT_LEFT,
    DOSE_REDUCED,
    TAPER_HELD,
    DoseReduced,
    TaperHeld,
)
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.group_matching.adapters.orm import patient_stages
from services.group_matching.bootstrap import bootstrap
from services.group_matching.settings import GroupMatchingSettings
from tests.helpers import eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


def _record(event: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return str(event.patient_id).encode(), event.to_bytes(), []


def _dose(patient: uuid.UUID, plan: uuid.UUID, step: int, before: str, after: str) -> DoseReduced:
    return DoseReduced.create(
        patient_id=patient,
        occurred_at=NOW,
        plan_id=plan,
        step_number=step,
        drug="alprazolam",
        previous_daily_dose_mg=Decimal(before),
        new_daily_dose_mg=Decimal(after),
        effective_on=date(2026, 3, 2),
        taper_stage="active",
        approved_by_decision_id=uuid.uuid4(),
        half_life_class="short",
    )


async def _of(bootstrap_servers: str, topic: str, patients: set[uuid.UUID]) -> list[Any]:
    records = await read_topic(bootstrap_servers, topic, expect=10**6, timeout=2)
    return [json.loads(r.value) for r in records if uuid.UUID(r.key.decode()) in patients]


async def test_cohorts_form_and_change_from_scheduler_events_on_the_broker(
    settings_for: Any, kafka_bootstrap_servers: str
) -> None:
    clock = FrozenClock(NOW)
    patients = [uuid.uuid4() for _ in range(6)]
    plans = {p: uuid.uuid4() for p in patients}
    mine = set(patients)
    async with bootstrap(settings_for(GroupMatchingSettings), clock=clock) as runtime:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ops = issue_dev_token(runtime.settings, subject="ops-1", role=Role.OPS)
            r = await client.put(
                "/api/group-matching/moderators/mod-1",
                json={"languages": ["en"], "max_cohorts": 3},
                headers={"Authorization": f"Bearer {ops}"},
            )
            assert r.status_code == 204
            for p in patients:
                token = issue_dev_token(
                    runtime.settings, subject=f"p-{p}", role=Role.PATIENT, patient_id=p
                )
                r = await client.put(
                    f"/api/group-matching/patients/{p}/peer-support",
                    json={"timezone": "Europe/London", "language": "en"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
        await produce_raw(
            kafka_bootstrap_servers,
            DOSE_REDUCED.name,
            [_record(_dose(p, plans[p], 1, "2", "1.5")) for p in patients],
        )

        async def stages_known() -> bool:
            async with runtime.uow() as uow:
                n = await uow.session.scalar(
                    sa.select(sa.func.count())
                    .select_from(patient_stages)
                    .where(patient_stages.c.patient_id.in_(patients))
                )
            return n == 6

        await eventually(stages_known, timeout=60)  # consumed before the first run falls due

        async def assigned() -> list[Any]:
            clock.advance(timedelta(seconds=11))  # the debounced run falls due
            runtime.timers.wake()
            found = await _of(kafka_bootstrap_servers, COHORT_ASSIGNED.name, mine)
            return found if len(found) == 6 else []

        placed = await eventually(assigned, timeout=60, interval=0.5)
        assert {e["stage_group"] for e in placed} == {"active"}
        assert len({e["cohort_id"] for e in placed}) == 1

        mover = patients[0]
        await produce_raw(
            kafka_bootstrap_servers,
            DOSE_REDUCED.name,
            [_record(_dose(mover, plans[mover], 2, "1.5", "0.125"))],  # below 10% of 2 mg
        )

        async def left() -> list[Any]:
            runtime.timers.wake()
            return await _of(kafka_bootstrap_servers, COHORT_LEFT.name, mine)

        clock.advance(timedelta(days=2))  # the daily run: not settled yet
        with pytest.raises(AssertionError):
            await eventually(left, timeout=3, interval=0.5)
        clock.advance(timedelta(days=14))  # settled in the final phase
        [gone] = await eventually(left, timeout=30, interval=0.5)
        assert (gone["patient_id"], gone["reason"]) == (str(mover), "stage_changed")

        stranger = TaperHeld.create(
            patient_id=uuid.uuid4(),
            occurred_at=NOW,
            plan_id=uuid.uuid4(),
            reason_code="clinician_hold",
            held_by="clinician",
            taper_stage="held",
        )
        await produce_raw(kafka_bootstrap_servers, TAPER_HELD.name, [_record(stranger)])

        async def dead_lettered() -> list[Any]:
            records = await read_topic(
                kafka_bootstrap_servers, TAPER_HELD.dlq, expect=10**6, timeout=2
            )
            return [r for r in records if r.key == str(stranger.patient_id).encode()]

        [dlq] = await eventually(dead_lettered, timeout=30)
        reasons = [v.decode() for k, v in dlq.headers if "reason" in k]
        assert any("unknown patient" in r for r in reasons)
