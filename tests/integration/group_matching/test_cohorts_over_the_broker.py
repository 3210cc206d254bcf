"""Group matching over the real broker and PostgreSQL, driven by the scheduler's events: six
patients opt in, their DoseReduced arrive from Kafka, a cohort forms (CohortAssigned on its
topic); one patient's taper reaches the final phase, and once that has settled they leave the
cohort (CohortLeft, stage_changed) — not before. The five left behind are below the minimum with
no cohort to merge into: the cohort closes (CohortLeft, cohort_closed) and, once a newcomer makes
six, they are placed again (CohortAssigned) (issue 17). A TaperHeld for a patient group matching
has not seen a step of yet is parked, not dead-lettered, and applied when the step arrives."""

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
from services.group_matching.adapters.orm import parked_stage_events, patient_stages
from services.group_matching.bootstrap import bootstrap
from services.group_matching.settings import GroupMatchingSettings
from tests.helpers import dose_reduced, eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


def _record(event: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return str(event.patient_id).encode(), event.to_bytes(), []


def _dose(patient: uuid.UUID, plan: uuid.UUID, step: int, before: str, after: str) -> DoseReduced:
    return dose_reduced(
        patient,
        occurred_at=NOW,
        plan_id=plan,
        step_number=step,
        drug="alprazolam",
        previous_daily_dose_mg=Decimal(before),
        new_daily_dose_mg=Decimal(after),
        effective_on=date(2026, 3, 2),
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

        async def all_left() -> list[Any]:
            found = await left()
            return found if len(found) == 6 else []

        gone = {e["patient_id"]: e["reason"] for e in await eventually(all_left, timeout=30)}
        assert gone.pop(str(mover)) == "stage_changed"
        assert gone == {str(p): "cohort_closed" for p in patients[1:]}  # five: the cohort closed
        [cohort] = {e["cohort_id"] for e in placed}

        # a newcomer, also tapering, makes six: the five are placed again, with them
        newcomer, plan = uuid.uuid4(), uuid.uuid4()
        mine.add(newcomer)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            token = issue_dev_token(
                runtime.settings, subject=f"p-{newcomer}", role=Role.PATIENT, patient_id=newcomer
            )
            r = await client.put(
                f"/api/group-matching/patients/{newcomer}/peer-support",
                json={"timezone": "Europe/London", "language": "en"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text

        # ... whose TaperHeld arrives before their first step: parked, then applied
        hold = TaperHeld.create(
            patient_id=newcomer,
            occurred_at=NOW + timedelta(days=16),
            plan_id=plan,
            reason_code="clinician_hold",
            held_by="clinician",
            taper_stage="held",
        )
        await produce_raw(kafka_bootstrap_servers, TAPER_HELD.name, [_record(hold)])

        async def parked() -> bool:
            async with runtime.uow() as uow:
                n = await uow.session.scalar(
                    sa.select(sa.func.count())
                    .select_from(parked_stage_events)
                    .where(parked_stage_events.c.patient_id == newcomer)
                )
            return n == 1

        await eventually(parked, timeout=30)
        step = _dose(newcomer, plan, 1, "2", "1.5")  # occurred before the hold
        await produce_raw(kafka_bootstrap_servers, DOSE_REDUCED.name, [_record(step)])

        async def held() -> bool:
            async with runtime.uow() as uow:
                stage = await uow.session.scalar(
                    sa.select(patient_stages.c.stage).where(patient_stages.c.patient_id == newcomer)
                )
            return stage == "held"

        await eventually(held, timeout=30)
        dlq = await read_topic(kafka_bootstrap_servers, TAPER_HELD.dlq, expect=10**6, timeout=2)
        assert not [r for r in dlq if r.key == str(newcomer).encode()]  # never dead-lettered

        # held is another stage group: the five still wait; a sixth tapering patient comes
        sixth, plan6 = uuid.uuid4(), uuid.uuid4()
        mine.add(sixth)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            token = issue_dev_token(
                runtime.settings, subject=f"p-{sixth}", role=Role.PATIENT, patient_id=sixth
            )
            r = await client.put(
                f"/api/group-matching/patients/{sixth}/peer-support",
                json={"timezone": "Europe/London", "language": "en"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
        await produce_raw(
            kafka_bootstrap_servers,
            DOSE_REDUCED.name,
            [_record(_dose(sixth, plan6, 1, "2", "1.5"))],
        )

        async def replaced() -> list[Any]:
            clock.advance(timedelta(seconds=11))
            runtime.timers.wake()
            found = await _of(kafka_bootstrap_servers, COHORT_ASSIGNED.name, mine)
            again = [e for e in found if e["cohort_id"] != cohort]
            return again if len(again) == 6 else []

        again = await eventually(replaced, timeout=60, interval=0.5)
        assert {e["patient_id"] for e in again} == {str(p) for p in [*patients[1:], sixth]}
        assert len({e["cohort_id"] for e in again}) == 1
