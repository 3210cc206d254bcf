"""Check-in cadence (issue 4) over a real SQLite database (migrated), the real unit of work and
the real timer poller: scheduled on DoseReduced, announced when due, completed or missed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider

from contracts import CheckInDue, DoseReduced, Event, TaperStage, ThresholdExceeded
from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.errors import PermanentError
from services.chassis.timers import DueTimer, TimerPoller
from services.chassis.uow import UnitOfWorkFactory
from services.monitoring.adapters.orm import checkins, episodes, metadata
from services.monitoring.domain.checkins import (
    CheckInCadence,
    CheckInStatus,
    cadence_from,
    cadence_v1,
    plan_checkins,
)
from services.monitoring.service_layer import checkins as service
from tests.runtimes import migrated_engine

STEP_DAY = date(2026, 1, 5)
STEP_START = datetime(2026, 1, 5, tzinfo=UTC)
H = timedelta(hours=1)


@dataclass
class Env:
    uow: UnitOfWorkFactory
    clock: FrozenClock
    timers: TimerPoller

    async def rows(self, table: sa.Table | str, **where: Any) -> list[dict[str, Any]]:
        async with self.uow() as uow:
            t = uow.table(table) if isinstance(table, str) else table
            query = sa.select(t)
            for column, value in where.items():
                query = query.where(t.c[column] == value)
            return [dict(r) for r in (await uow.session.execute(query)).mappings()]

    async def at(self, when: datetime) -> int:
        """Move the clock to ``when`` and fire every timer due by then."""
        self.clock.set(when)
        return await self.timers.fire_due()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = await migrated_engine("monitoring", tmp_path)
    clock = FrozenClock(STEP_START)
    factory = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    poller = TimerPoller(
        service="monitoring",
        uow_factory=factory,
        handlers={
            service.CHECKIN_DUE: service.on_checkin_due,
            service.CHECKIN_MISSED: service.on_checkin_missed,
        },
        tracer_provider=TracerProvider(),
    )
    yield Env(factory, clock, poller)
    await engine.dispose()


def dose_reduced(
    patient: uuid.UUID, half_life_class: str = "short", on: date = STEP_DAY, step: int = 1
) -> DoseReduced:
    return DoseReduced.create(
        patient_id=patient,
        occurred_at=datetime.combine(on, datetime.min.time(), tzinfo=UTC),
        plan_id=uuid.uuid4(),
        step_number=step,
        drug="alprazolam" if half_life_class == "short" else "diazepam",
        previous_daily_dose_mg=Decimal("2"),
        new_daily_dose_mg=Decimal("1.5"),
        effective_on=on,
        taper_stage=TaperStage.ACTIVE,
        approved_by_decision_id=uuid.uuid4(),
        half_life_class=half_life_class,
    )


async def schedule(env: Env, event: DoseReduced) -> None:
    async with env.uow() as uow:
        await service.schedule_checkins(event, uow)
        await uow.commit()


async def report(env: Env, patient: uuid.UUID, instrument: str = "ciwa-b") -> int:
    async with env.uow() as uow:
        n = await service.complete_due_checkins(
            uow, patient, uuid.uuid4(), instrument, env.clock.now()
        )
        await uow.commit()
    return n


async def published(env: Env) -> list[Event]:
    by_type: dict[str, type[Event]] = {c.EVENT_TYPE: c for c in (CheckInDue, ThresholdExceeded)}
    rows = sorted(await env.rows("outbox"), key=lambda r: r["seq"])
    return [by_type[r["event_type"]].model_validate_json(r["payload"]) for r in rows]


async def sorted_checkins(env: Env, patient: uuid.UUID) -> list[dict[str, Any]]:
    return sorted(await env.rows(checkins, patient_id=patient), key=lambda r: r["due_at"])


# --- the cadence (pure) -----------------------------------------------------------------------
def test_every_half_life_class_of_the_contract_has_a_cadence_with_its_sources() -> None:
    cadence = cadence_v1()
    classes = get_args(DoseReduced.model_fields["half_life_class"].annotation)
    assert set(classes) == set(cadence.offsets_hours)
    assert "§3.5" in cadence.source
    assert cadence.window_hours > 0 and cadence.instruments == ("ciwa-b",)


def test_short_acting_drugs_are_checked_earlier_than_long_acting_ones() -> None:
    cadence = cadence_v1()
    short = plan_checkins(STEP_DAY, "short", cadence)
    long = plan_checkins(STEP_DAY, "long", cadence)
    assert [due for due, _ in short] == [STEP_START + 24 * H, STEP_START + 72 * H]
    assert short[0].due_at < long[0].due_at
    # diazepam: across weeks 1-3
    assert long[-1].due_at == STEP_START + timedelta(weeks=3)
    for due, closes in short + long:
        assert closes - due == timedelta(hours=cadence.window_hours)


def test_due_times_count_from_the_start_of_the_step_day_in_utc() -> None:
    cadence = CheckInCadence("t", "test", {"short": (0, 6)}, 2, ("ciwa-b",))
    assert plan_checkins(date(2026, 3, 29), "short", cadence) == [
        (datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC)),
        (datetime(2026, 3, 29, 6, tzinfo=UTC), datetime(2026, 3, 29, 8, tzinfo=UTC)),
    ]


def test_with_the_patients_day_checkins_follow_their_local_calendar_across_dst() -> None:
    """A New York patient's step at their 08:00 first dose on Friday 6 March 2026 (EST); the
    clocks go forward on Sunday 8 March (issue 13, 12a)."""
    cadence = CheckInCadence("t", "test", {"short": (24, 72, 75)}, 2, ("ciwa-b",))
    first_dose = datetime(2026, 3, 6, 13, tzinfo=UTC)  # 08:00 EST
    planned = plan_checkins(
        date(2026, 3, 6), "short", cadence, starts_at=first_dose, timezone="America/New_York"
    )
    assert [p.due_at for p in planned] == [
        datetime(2026, 3, 7, 13, tzinfo=UTC),  # Saturday 08:00 EST
        datetime(2026, 3, 9, 12, tzinfo=UTC),  # Monday 08:00 EDT: 71 hours on the clock
        datetime(2026, 3, 9, 15, tzinfo=UTC),  # Monday 11:00 EDT
    ]
    assert all(p.window_closes_at - p.due_at == 2 * H for p in planned)
    # The instant without the zone: hours as they pass; an unknown zone falls back to that.
    for zone in (None, "Nowhere/Atlantis"):
        elapsed = plan_checkins(
            date(2026, 3, 6), "short", cadence, starts_at=first_dose, timezone=zone
        )
        assert [p.due_at for p in elapsed] == [first_dose + h * H for h in (24, 72, 75)]


async def test_a_step_at_the_patients_first_dose_times_and_supersedes_from_then(env: Env) -> None:
    patient = uuid.uuid4()
    env.clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    cadence = CheckInCadence("t", "test", {"short": (24, 71)}, 4, ("ciwa-b",))
    first = dose_reduced(patient, on=date(2026, 3, 6))
    first = first.model_copy(
        update={
            "effective_at": datetime(2026, 3, 6, 13, tzinfo=UTC),
            "timezone": "America/New_York",
        }
    )
    async with env.uow() as uow:
        await service.schedule_checkins(first, uow, cadence=cadence)
        await uow.commit()
    rows = await sorted_checkins(env, patient)
    assert [r["due_at"] for r in rows] == [
        datetime(2026, 3, 7, 13, tzinfo=UTC),  # Saturday 08:00 EST
        datetime(2026, 3, 9, 11, tzinfo=UTC),  # Monday 07:00 EDT
    ]
    # The next step on Monday 9 March takes effect at 08:00 EDT = 12:00 UTC: the first step's
    # check-in due at 07:00 that morning is still the patient's to do (from 00:00 UTC, the old
    # rule, it would have been superseded); the new step's follow the patient's day.
    second = dose_reduced(patient, on=date(2026, 3, 9), step=2).model_copy(
        update={
            "effective_at": datetime(2026, 3, 9, 12, tzinfo=UTC),
            "timezone": "America/New_York",
        }
    )
    async with env.uow() as uow:
        await service.schedule_checkins(second, uow, cadence=cadence)
        await uow.commit()
    statuses = {
        (r["after_dose_event_id"] == first.event_id, r["due_at"]): r["status"]
        for r in await sorted_checkins(env, patient)
    }
    assert statuses[(True, datetime(2026, 3, 7, 13, tzinfo=UTC))] == "scheduled"
    assert statuses[(True, datetime(2026, 3, 9, 11, tzinfo=UTC))] == "scheduled"
    assert statuses[(False, datetime(2026, 3, 10, 12, tzinfo=UTC))] == "scheduled"
    assert statuses[(False, datetime(2026, 3, 12, 11, tzinfo=UTC))] == "scheduled"


def test_an_unknown_half_life_class_is_refused() -> None:
    with pytest.raises(ValueError, match="half_life_class"):
        plan_checkins(STEP_DAY, "medium", cadence_v1())


def test_malformed_cadence_data_is_refused() -> None:
    raw = {"version": "x", "source": "s", "window_hours": 24, "instruments": ["ciwa-b"]}
    with pytest.raises(ValueError, match="ascending"):
        cadence_from({**raw, "offsets_hours_by_half_life": {"short": [72, 24]}})
    with pytest.raises(ValueError, match="window_hours"):
        cadence_from({**raw, "window_hours": 0, "offsets_hours_by_half_life": {"short": [24]}})


# --- scheduling -------------------------------------------------------------------------------
async def test_a_dose_step_schedules_its_checkins_with_one_timer_each(env: Env) -> None:
    patient = uuid.uuid4()
    event = dose_reduced(patient, "long")
    await schedule(env, event)

    rows = await sorted_checkins(env, patient)
    assert [r["due_at"] for r in rows] == [STEP_START + h * H for h in (72, 168, 336, 504)]
    assert {r["status"] for r in rows} == {"scheduled"}
    assert {r["after_dose_event_id"] for r in rows} == {event.event_id}
    assert all(r["instruments"] == ["ciwa-b"] for r in rows)
    timers = await env.rows("timers", kind=service.CHECKIN_DUE)
    assert {(t["key"], t["due_at"]) for t in timers} == {(str(r["id"]), r["due_at"]) for r in rows}


async def test_a_redelivered_dose_step_schedules_nothing_twice(env: Env) -> None:
    patient = uuid.uuid4()
    event = dose_reduced(patient)
    await schedule(env, event)
    await schedule(env, event)
    assert len(await env.rows(checkins, patient_id=patient)) == 2
    assert len(await env.rows("timers")) == 2


async def test_an_unknown_half_life_class_is_a_permanent_error(env: Env) -> None:
    patient = uuid.uuid4()
    # The contract's Literal refuses it; a producer on a newer contract could still send one.
    event = dose_reduced(patient).model_copy(update={"half_life_class": "medium"})
    async with env.uow() as uow:
        with pytest.raises(service.NoCheckInCadence) as caught:
            await service.schedule_checkins(event, uow)
    assert isinstance(caught.value, PermanentError)
    assert await env.rows(checkins) == [] and await env.rows("timers") == []


async def test_an_event_consumed_after_every_window_closed_schedules_nothing(env: Env) -> None:
    patient = uuid.uuid4()
    env.clock.set(STEP_START + 100 * H)  # short: the last window closed at 96 h
    await schedule(env, dose_reduced(patient))
    assert await env.rows(checkins) == [] and await env.rows("timers") == []


async def test_a_later_step_supersedes_the_earlier_steps_checkins_not_yet_due(env: Env) -> None:
    patient = uuid.uuid4()
    first = dose_reduced(patient, "long")
    await schedule(env, first)
    await env.at(STEP_START + 72 * H)  # the first check-in falls due
    second_day = STEP_DAY + timedelta(days=4)
    env.clock.set(datetime.combine(second_day, datetime.min.time(), tzinfo=UTC))
    second = dose_reduced(patient, "long", on=second_day, step=2)
    await schedule(env, second)

    old = await sorted_checkins(env, patient)
    old = [r for r in old if r["after_dose_event_id"] == first.event_id]
    assert [r["status"] for r in old] == ["due", "superseded", "superseded", "superseded"]
    cancelled = {
        t["key"] for t in await env.rows("timers", kind=service.CHECKIN_DUE) if t["cancelled_at"]
    }
    assert cancelled == {str(r["id"]) for r in old[1:]}
    new = await env.rows(checkins, after_dose_event_id=second.event_id)
    assert len(new) == 4 and {r["status"] for r in new} == {"scheduled"}

    # The superseded check-ins never fall due; the new step's do.
    for row in sorted(new, key=lambda r: r["due_at"]):
        await env.at(row["due_at"])
    due = [e for e in await published(env) if isinstance(e, CheckInDue)]
    assert [e.after_dose_event_id for e in due] == [first.event_id] + [second.event_id] * 4


# --- falling due ------------------------------------------------------------------------------
async def test_each_due_checkin_is_announced_exactly_once(env: Env) -> None:
    patient = uuid.uuid4()
    event = dose_reduced(patient)
    await schedule(env, event)
    await env.at(STEP_START + 23 * H)
    assert await published(env) == []

    assert await env.at(STEP_START + 24 * H) == 1
    first = (await sorted_checkins(env, patient))[0]
    [announced] = await published(env)
    assert isinstance(announced, CheckInDue)
    assert announced.checkin_id == first["id"] and first["status"] == "due"
    assert announced.due_at == STEP_START + 24 * H
    assert announced.window_closes_at == STEP_START + 48 * H
    assert announced.instruments == ("ciwa-b",)
    assert announced.after_dose_event_id == event.event_id
    assert announced.correlation_id == event.correlation_id
    assert announced.causation_id == event.event_id

    # The timer firing again (a crash after the handler, before "fired" committed) changes nothing.
    async with env.uow() as uow:
        timer = DueTimer(service.CHECKIN_DUE, str(first["id"]), first["due_at"], {}, 1)
        await service.on_checkin_due(timer, uow)
        await uow.commit()
    assert len(await published(env)) == 1
    assert len(await env.rows("timers", kind=service.CHECKIN_MISSED)) == 1

    await env.at(STEP_START + 72 * H)
    assert [e.event_type for e in await published(env)] == [
        "CheckInDue",
        "ThresholdExceeded",
        "CheckInDue",
    ]


# --- completed or missed ----------------------------------------------------------------------
async def test_a_report_inside_the_window_completes_the_checkin_and_nothing_escalates(
    env: Env,
) -> None:
    patient = uuid.uuid4()
    await schedule(env, dose_reduced(patient))
    await env.at(STEP_START + 30 * H)
    assert await report(env, patient, "phq-9") == 0  # not an instrument the check-in asks for
    assert await report(env, patient, "ciwa-b") == 1
    assert await report(env, patient) == 0  # already completed

    await env.at(STEP_START + 49 * H)  # the window closed
    [first, second] = await sorted_checkins(env, patient)
    assert first["status"] == "completed" and first["completed_by_report_id"] is not None
    assert second["status"] == "scheduled"
    assert not [e for e in await published(env) if isinstance(e, ThresholdExceeded)]
    assert await env.rows(episodes) == []


async def test_a_report_outside_every_window_completes_nothing(env: Env) -> None:
    patient = uuid.uuid4()
    await schedule(env, dose_reduced(patient))
    env.clock.set(STEP_START + 12 * H)  # before the first check-in is due
    assert await report(env, patient) == 0
    await env.at(STEP_START + 48 * H)  # the first window has just closed
    assert await report(env, patient) == 0


async def test_a_report_before_the_lagging_due_timer_fired_still_counts(env: Env) -> None:
    patient = uuid.uuid4()
    await schedule(env, dose_reduced(patient))
    env.clock.set(STEP_START + 25 * H)  # due, but the poller has not run yet
    assert await report(env, patient) == 1
    await env.at(STEP_START + 50 * H)
    assert await published(env) == []  # nobody is reminded of a completed check-in
    assert (await sorted_checkins(env, patient))[0]["status"] == "completed"


async def test_a_missed_checkin_opens_one_amber_engagement_episode(env: Env) -> None:
    patient = uuid.uuid4()
    await schedule(env, dose_reduced(patient))
    await env.at(STEP_START + 24 * H)
    await env.at(STEP_START + 48 * H)  # the window closes with no report

    [first, second] = await sorted_checkins(env, patient)
    assert first["status"] == "missed"
    reminder, threshold = await published(env)
    assert isinstance(reminder, CheckInDue) and isinstance(threshold, ThresholdExceeded)
    assert threshold.severity == "AMBER" and threshold.family == "engagement"
    assert [r.code for r in threshold.reasons] == ["missed_checkin"]
    assert threshold.report_id == first["id"]
    assert threshold.causation_id == reminder.event_id
    assert threshold.correlation_id == reminder.correlation_id

    # A late report does not undo a missed check-in.
    assert await report(env, patient) == 0

    # The second check-in is missed too: the open episode absorbs it without a new event.
    await env.at(STEP_START + 72 * H)
    await env.at(STEP_START + 96 * H)
    assert (await sorted_checkins(env, patient))[1]["status"] == "missed"
    thresholds = [e for e in await published(env) if isinstance(e, ThresholdExceeded)]
    assert len(thresholds) == 1
    [episode] = await env.rows(episodes, patient_id=patient)
    assert episode["family"] == "engagement" and episode["source_count"] == 2
    assert episode["last_source_id"] == second["id"]


async def test_the_missed_timer_firing_again_changes_nothing(env: Env) -> None:
    patient = uuid.uuid4()
    await schedule(env, dose_reduced(patient))
    await env.at(STEP_START + 24 * H)
    await env.at(STEP_START + 48 * H)
    [first, _] = await sorted_checkins(env, patient)
    [timer_row] = await env.rows("timers", kind=service.CHECKIN_MISSED)
    async with env.uow() as uow:
        timer = DueTimer(
            service.CHECKIN_MISSED, timer_row["key"], timer_row["due_at"], timer_row["payload"], 1
        )
        await service.on_checkin_missed(timer, uow)
        await uow.commit()
    assert len([e for e in await published(env) if isinstance(e, ThresholdExceeded)]) == 1
    [episode] = await env.rows(episodes, patient_id=patient)
    assert episode["source_count"] == 1 and timer_row["key"] == str(first["id"])


async def test_a_timer_naming_no_checkin_is_parked(env: Env) -> None:
    async with env.uow() as uow:
        timer = DueTimer(service.CHECKIN_DUE, str(uuid.uuid4()), STEP_START, {}, 0)
        with pytest.raises(service.InconsistentCheckIn):
            await service.on_checkin_due(timer, uow)
        with pytest.raises(service.InconsistentCheckIn):
            await service.on_checkin_missed(DueTimer("x", "not-a-uuid", STEP_START, {}, 0), uow)


def test_every_checkin_status_fits_the_column() -> None:
    assert all(len(s.value) <= checkins.c.status.type.length for s in CheckInStatus)  # type: ignore[attr-defined]


async def test_a_due_timer_firing_after_its_window_reminds_nobody_but_counts_as_missed(
    env: Env,
) -> None:
    patient = uuid.uuid4()
    await schedule(env, dose_reduced(patient))
    await env.at(STEP_START + 60 * H)  # the poller was down through the first window
    [threshold] = await published(env)
    assert isinstance(threshold, ThresholdExceeded) and threshold.causation_id is None
    assert (await sorted_checkins(env, patient))[0]["status"] == "missed"
