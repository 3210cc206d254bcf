"""Cohorts through the service (SQLite, the real bootstrap and matcher, matching runs fired by the
real timer poller on a pinned clock): placement rules, the RED block and its override, moves on a
stage change with hysteresis, opting out, privacy of what members see, and 422s."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts import (
    CohortAssigned,
    CohortChanged,
    CohortLeft,
    DoseReduced,
    EscalationResolved,
    Event,
    Severity,
    event_class,
)
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.group_matching.entrypoints.consumers import SUBSCRIPTIONS
from tests.helpers import dose_reduced, red_flag_threshold
from tests.runtimes import asgi_client, service_runtime

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)  # a Monday
HANDLERS = {s.topic.event: s.handler for s in SUBSCRIPTIONS}


class Stack:
    def __init__(self, runtime: ServiceRuntime, clock: FrozenClock, client: httpx.AsyncClient):
        self.runtime, self.clock, self.client = runtime, clock, client

    def auth(self, role: Role, subject: str, **claims: Any) -> dict[str, str]:
        token = issue_dev_token(self.runtime.settings, subject=subject, role=role, **claims)
        return {"Authorization": f"Bearer {token}"}

    def patient(self, patient_id: uuid.UUID) -> dict[str, str]:
        return self.auth(Role.PATIENT, f"p-{patient_id}", patient_id=patient_id)

    async def join(
        self, n: int, timezone: str = "America/Chicago", language: str = "en"
    ) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(n)]
        for p in ids:
            r = await self.client.put(
                f"/api/group-matching/patients/{p}/peer-support",
                json={"timezone": timezone, "language": language},
                headers=self.patient(p),
            )
            assert r.status_code == 200, r.text
        return ids

    async def moderator(self, subject: str = "mod-1", languages: tuple[str, ...] = ("en",)) -> None:
        r = await self.client.put(
            f"/api/group-matching/moderators/{subject}",
            json={"languages": list(languages), "max_cohorts": 5},
            headers=self.auth(Role.OPS, "ops-1"),
        )
        assert r.status_code == 204, r.text

    async def run(self, after: timedelta = timedelta(seconds=11)) -> None:
        self.clock.advance(after)
        await self.runtime.timers.fire_due()

    async def handle(self, event: Event) -> None:
        async with self.runtime.uow() as uow:
            await HANDLERS[type(event)](event, uow)
            await uow.commit()

    async def events(self, kind: type[Event]) -> list[Any]:
        async with self.runtime.uow() as uow:
            outbox = uow.table("outbox")
            rows = (await uow.session.execute(sa.select(outbox).order_by(outbox.c.seq))).mappings()
            parsed = [event_class(r["event_type"]).model_validate_json(r["payload"]) for r in rows]
        return [e for e in parsed if isinstance(e, kind)]

    async def cohort_of(self, patient: uuid.UUID) -> dict[str, Any]:
        r = await self.client.get(
            f"/api/group-matching/patients/{patient}/cohort", headers=self.patient(patient)
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    clock = FrozenClock(NOW)
    async with (
        service_runtime("group_matching", tmp_path, clock=clock) as runtime,
        asgi_client(runtime.app) as client,
    ):
        yield Stack(runtime, clock, client)


def dose(
    patient: uuid.UUID, plan: uuid.UUID, step: int, before: str, after: str, at: datetime
) -> DoseReduced:
    return dose_reduced(
        patient,
        occurred_at=at,
        plan_id=plan,
        step_number=step,
        drug="alprazolam",
        previous_daily_dose_mg=Decimal(before),
        new_daily_dose_mg=Decimal(after),
        effective_on=date(2026, 3, 2),
        half_life_class="short",
    )


async def test_a_cohort_forms_at_its_minimum_with_a_moderator_and_members_see_handles_only(
    stack: Stack,
) -> None:
    await stack.moderator()
    first = await stack.join(5)
    await stack.run()
    assert (await stack.cohort_of(first[0]))["status"] == "waiting"  # 5 < minimum of 6
    sixth = await stack.join(1)
    await stack.run()
    assigned = await stack.events(CohortAssigned)
    assert {e.patient_id for e in assigned} == {*first, *sixth}
    assert len({e.cohort_id for e in assigned}) == 1
    mine = await stack.cohort_of(first[0])
    assert mine["status"] == "placed" and len(mine["members"]) == 6
    assert mine["stage_group"] == "pre_taper_crossover"  # opted in before any taper step
    text = str(mine)
    assert not any(str(p) in text for p in [*first, *sixth])  # handles, never patient ids
    session = datetime.fromisoformat(mine["next_sessions"][0])
    assert session.utcoffset() == timedelta(hours=-6)  # Chicago time (CST)
    assert 9 <= session.hour < 21  # inside the local window
    roster = await stack.client.get(
        "/api/group-matching/moderators/mod-1/cohorts", headers=stack.auth(Role.CLINICIAN, "mod-1")
    )
    assert len(roster.json()[0]["members"]) == 6
    other = await stack.client.get(
        "/api/group-matching/moderators/mod-1/cohorts", headers=stack.auth(Role.CLINICIAN, "mod-2")
    )
    assert other.status_code == 403


async def test_without_a_moderator_nobody_is_placed_and_languages_never_mix(stack: Stack) -> None:
    await stack.join(6, language="es")
    await stack.join(3, language="en")
    await stack.run()
    assert await stack.events(CohortAssigned) == []  # no moderator yet
    await stack.moderator(languages=("en",))
    await stack.run()
    assert await stack.events(CohortAssigned) == []  # the Spanish speakers need a Spanish one
    await stack.moderator("mod-es", languages=("es",))
    await stack.run()
    assigned = await stack.events(CohortAssigned)
    assert len(assigned) == 6 and {e.language for e in assigned} == {"es"}


async def test_an_open_red_episode_blocks_placement_until_resolved_or_overridden(
    stack: Stack,
) -> None:
    await stack.moderator()
    patients = await stack.join(6)
    red = red_flag_threshold(patients[0], occurred_at=NOW)
    await stack.handle(red)
    await stack.run()
    assert await stack.events(CohortAssigned) == []  # five others are below the minimum
    ada = stack.auth(Role.CLINICIAN, "dr-ada", panel=[patients[0]])
    placement_url = f"/api/group-matching/patients/{patients[0]}/placement"
    held = (await stack.client.get(placement_url, headers=ada)).json()
    assert (held["held_back_by_open_red"], held["red_override"]) == (True, False)
    override = await stack.client.post(
        f"/api/group-matching/patients/{patients[0]}/placement-override",
        json={"reason_code": "stable_on_review"},
        headers=ada,
    )
    assert override.status_code == 204
    cleared = (await stack.client.get(placement_url, headers=ada)).json()
    assert (cleared["held_back_by_open_red"], cleared["red_override"]) == (False, True)
    stranger = await stack.client.post(
        f"/api/group-matching/patients/{patients[1]}/placement-override",
        json={"reason_code": "stable_on_review"},
        headers=stack.auth(Role.CLINICIAN, "dr-zed", panel=[]),
    )
    assert stranger.status_code == 403
    await stack.run()
    assert len(await stack.events(CohortAssigned)) == 6


async def test_resolving_the_red_episode_lets_the_patient_be_placed(stack: Stack) -> None:
    await stack.moderator()
    patients = await stack.join(6)
    episode = uuid.uuid4()
    await stack.handle(red_flag_threshold(patients[0], occurred_at=NOW, episode_id=episode))
    await stack.run()
    assert await stack.events(CohortAssigned) == []
    await stack.handle(
        EscalationResolved.create(
            patient_id=patients[0],
            occurred_at=NOW,
            episode_id=episode,
            family="safety",
            severity=Severity.RED,
            resolution="keep_held",
            resolved_by="dr-ada",
        )
    )
    await stack.run()
    assert len(await stack.events(CohortAssigned)) == 6


async def test_a_stage_change_moves_members_only_once_it_has_settled(stack: Stack) -> None:
    await stack.moderator(languages=("en",))
    patients = await stack.join(12)
    plans = {p: uuid.uuid4() for p in patients}
    for p in patients:  # everyone actively tapering
        await stack.handle(dose(p, plans[p], 1, "4", "3", NOW))
    await stack.run()
    assigned = await stack.events(CohortAssigned)
    assert len(assigned) == 12 and {e.stage_group for e in assigned} == {"active"}

    # Six reach the final phase (below 10% of their start) on day 1.
    movers = patients[:6]
    for p in movers:
        await stack.handle(dose(p, plans[p], 2, "3", "0.25", NOW + timedelta(days=1)))
    await stack.run(timedelta(days=5))
    assert await stack.events(CohortChanged) == []  # not settled yet: nobody churns
    await stack.run(timedelta(days=10))  # 15 days in the final phase
    changed = await stack.events(CohortChanged)
    moved = [e for e in changed if e.reason == "stage_changed"]
    assert {e.patient_id for e in moved} == set(movers)
    assert {e.stage_group for e in moved} == {"final_phase"}
    # The stayers kept their cohort, or it fell below six and they were placed again together.
    regrouped = [e for e in changed if e.reason == "cohort_closed"]
    assert {e.patient_id for e in regrouped} <= set(patients[6:])
    assert await stack.events(CohortLeft) == []
    stayers = [await stack.cohort_of(p) for p in patients[6:]]
    assert len({c["cohort_id"] for c in stayers}) == 1
    assert {c["stage_group"] for c in stayers} == {"active"}


async def test_a_lone_mover_leaves_and_waits_and_opting_out_is_announced(stack: Stack) -> None:
    await stack.moderator()
    patients = await stack.join(6)
    plans = {p: uuid.uuid4() for p in patients}
    for p in patients:
        await stack.handle(dose(p, plans[p], 1, "4", "3", NOW))
    await stack.run()
    mover = patients[0]
    await stack.handle(dose(mover, plans[mover], 2, "3", "0.25", NOW))
    await stack.run(timedelta(days=15))
    left = {e.patient_id: e.reason for e in await stack.events(CohortLeft)}
    assert left.pop(mover) == "stage_changed"
    # five left behind: below the minimum with nowhere to merge, the cohort closes (issue 17)
    assert left == {p: "cohort_closed" for p in patients[1:]}
    assert (await stack.cohort_of(mover))["status"] == "waiting"
    quitter = patients[1]
    r = await stack.client.delete(
        f"/api/group-matching/patients/{quitter}/peer-support", headers=stack.patient(quitter)
    )
    assert r.status_code == 204
    reasons = [e.reason for e in await stack.events(CohortLeft) if e.patient_id == quitter]
    assert reasons == ["cohort_closed"]  # already waiting: opting out leaves no cohort
    gone = await stack.client.get(
        f"/api/group-matching/patients/{quitter}/cohort", headers=stack.patient(quitter)
    )
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus", "language": "en"}, "timezone"),
        ({"timezone": "EST5EDT-ish", "language": "en"}, "timezone"),
        ({"timezone": "Europe/Paris", "language": "klingon"}, "language"),
    ],
)
async def test_unknown_timezone_or_language_is_a_422_naming_the_field(
    stack: Stack, body: dict[str, str], field: str
) -> None:
    patient = uuid.uuid4()
    r = await stack.client.put(
        f"/api/group-matching/patients/{patient}/peer-support",
        json=body,
        headers=stack.patient(patient),
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", field]


async def test_only_the_patient_opts_in_and_every_access_is_audited(stack: Stack) -> None:
    patient, other = uuid.uuid4(), uuid.uuid4()
    r = await stack.client.put(
        f"/api/group-matching/patients/{patient}/peer-support",
        json={"timezone": "Europe/Paris", "language": "fr"},
        headers=stack.patient(other),
    )
    assert r.status_code == 403
    clinician = await stack.client.put(
        f"/api/group-matching/patients/{patient}/peer-support",
        json={"timezone": "Europe/Paris", "language": "fr"},
        headers=stack.auth(Role.CLINICIAN, "dr-ada", panel=[patient]),
    )
    assert clinician.status_code == 403  # opting in is the patient's own decision
    async with stack.runtime.uow() as uow:
        audit = uow.table("audit_log")
        outcomes = (await uow.session.scalars(sa.select(audit.c.outcome))).all()
    assert outcomes.count("denied") == 2


# --- issue 17: cohorts close and merge; moderators and placement managed -----------------------


async def members_of(stack: Stack, patients: list[uuid.UUID]) -> dict[str, list[uuid.UUID]]:
    by_cohort: dict[str, list[uuid.UUID]] = {}
    for p in patients:
        mine = await stack.cohort_of(p)
        by_cohort.setdefault(mine.get("cohort_id", "waiting"), []).append(p)
    return by_cohort


async def opt_out(stack: Stack, patient: uuid.UUID) -> None:
    r = await stack.client.delete(
        f"/api/group-matching/patients/{patient}/peer-support", headers=stack.patient(patient)
    )
    assert r.status_code == 204


async def test_a_cohort_below_its_minimum_merges_whole_into_a_compatible_one(
    stack: Stack,
) -> None:
    await stack.moderator()
    patients = await stack.join(12)
    await stack.run()
    groups = await members_of(stack, patients)
    assert sorted(len(g) for g in groups.values()) == [6, 6]
    (a, first), (b, second) = sorted(groups.items())
    for p in first[:3]:
        await opt_out(stack, p)
    await stack.run()
    changed = await stack.events(CohortChanged)
    assert {e.patient_id for e in changed} == set(first[3:])
    assert {(str(e.from_cohort_id), str(e.to_cohort_id), e.reason) for e in changed} == {
        (a, b, "cohort_closed")
    }
    after = await members_of(stack, [*first[3:], *second])
    assert list(after) == [b] and len(after[b]) == 9
    assert len((await stack.cohort_of(second[0]))["members"]) == 9
    roster = await stack.client.get(
        "/api/group-matching/moderators/mod-1/cohorts", headers=stack.auth(Role.CLINICIAN, "mod-1")
    )
    assert [c["cohort_id"] for c in roster.json()] == [b]  # the merged cohort is closed


async def test_a_closed_cohort_sends_its_members_back_with_their_waiting_time(
    stack: Stack,
) -> None:
    await stack.moderator()
    joined_at = stack.clock.now()
    patients = await stack.join(6)
    await stack.run()
    assert len(await stack.events(CohortAssigned)) == 6
    stack.clock.advance(timedelta(days=20))
    await opt_out(stack, patients[0])
    await stack.run()
    left = {e.patient_id: (e.reason, e.cohort_id) for e in await stack.events(CohortLeft)}
    cohort = (await stack.events(CohortAssigned))[0].cohort_id
    assert left == {
        patients[0]: ("patient_left", cohort),
        **{p: ("cohort_closed", cohort) for p in patients[1:]},
    }
    for p in patients[1:]:
        mine = await stack.cohort_of(p)
        assert mine["status"] == "waiting"
        assert datetime.fromisoformat(mine["waiting_since"]) == joined_at  # not the close
    # a newcomer makes six again: the five are placed again, together with them
    newcomer = await stack.join(1)
    await stack.run()
    assigned = [e for e in await stack.events(CohortAssigned) if e.cohort_id != cohort]
    assert {e.patient_id for e in assigned} == {*patients[1:], *newcomer}


async def test_a_clinician_reads_their_patients_placement_and_nothing_of_others(
    stack: Stack,
) -> None:
    await stack.moderator()
    patients = await stack.join(5)
    url = f"/api/group-matching/patients/{patients[0]}/placement"
    panel = stack.auth(Role.CLINICIAN, "dr-ada", panel=[patients[0]])
    r = await stack.client.get(url, headers=panel)
    assert r.status_code == 200
    assert r.json()["status"] == "waiting" and r.json()["cohort_size"] is None
    assert datetime.fromisoformat(r.json()["waiting_since"]) == NOW
    await stack.join(1)
    await stack.run()
    r = await stack.client.get(url, headers=panel)
    body = r.json()
    assert body["status"] == "placed" and body["cohort_size"] == 6
    assert datetime.fromisoformat(body["next_session"]).utcoffset() == timedelta(hours=-6)
    assert not any(str(p) in r.text for p in patients[1:])  # no other patient's id
    assert "members" not in body and "handle" not in body
    for headers in (
        stack.auth(Role.CLINICIAN, "dr-zed", panel=[patients[1]]),
        stack.patient(patients[0]),  # the patient has GET /cohort
        stack.auth(Role.OPS, "ops-1"),
    ):
        assert (await stack.client.get(url, headers=headers)).status_code == 403
    unknown = uuid.uuid4()
    r = await stack.client.get(
        f"/api/group-matching/patients/{unknown}/placement",
        headers=stack.auth(Role.CLINICIAN, "dr-ada", panel=[unknown]),
    )
    assert r.json() == {
        "status": "not_taking_part",
        "waiting_since": None,
        "held_back_by_open_red": False,
        "red_override": False,
        "cohort_size": None,
        "next_session": None,
    }


async def test_moderators_are_listed_paused_deactivated_and_removed_with_a_handover(
    stack: Stack,
) -> None:
    ops = stack.auth(Role.OPS, "ops-1")
    base = "/api/group-matching/moderators"
    await stack.moderator("mod-1")
    await stack.join(6)
    await stack.run()
    r = await stack.client.get(base, headers=ops)
    assert r.status_code == 200
    [mod] = r.json()
    assert (mod["subject"], mod["active"], mod["active_cohorts"]) == ("mod-1", True, 1)
    for who in (stack.auth(Role.CLINICIAN, "mod-1"), stack.patient(uuid.uuid4())):
        assert (await stack.client.get(base, headers=who)).status_code == 403
    # the only moderator of a cohort cannot be removed: its members would lose their moderator
    r = await stack.client.delete(f"{base}/mod-1", headers=ops)
    assert r.status_code == 409 and "active moderator" in r.json()["detail"]
    # paused (max_cohorts 0) and deactivated moderators are given no new cohort
    paused = await stack.client.put(
        f"{base}/mod-2", json={"languages": ["en"], "max_cohorts": 0}, headers=ops
    )
    assert paused.status_code == 204
    assert (await stack.client.post(f"{base}/mod-1/deactivate", headers=ops)).status_code == 204
    waiting = await stack.join(6)
    await stack.run()
    assert (await stack.cohort_of(waiting[0]))["status"] == "waiting"
    assert (await stack.client.post(f"{base}/nobody/deactivate", headers=ops)).status_code == 404
    # mod-2 back with room: mod-1 can go, their cohort handed over
    await stack.client.put(
        f"{base}/mod-2", json={"languages": ["en"], "max_cohorts": 3}, headers=ops
    )
    r = await stack.client.delete(f"{base}/mod-1", headers=ops)
    assert r.status_code == 200 and r.json() == {"cohorts_handed_over": 1}
    await stack.run()
    [mod2] = (await stack.client.get(base, headers=ops)).json()
    assert mod2["subject"] == "mod-2" and mod2["active_cohorts"] == 2
    assert (await stack.client.delete(f"{base}/mod-1", headers=ops)).status_code == 404


async def test_the_roster_shows_facts_of_membership_only(stack: Stack) -> None:
    await stack.moderator()
    await stack.join(6)
    await stack.run()
    r = await stack.client.get(
        "/api/group-matching/moderators/mod-1/cohorts", headers=stack.auth(Role.CLINICIAN, "mod-1")
    )
    [cohort] = r.json()
    assert cohort["size"] == 6 and cohort["capacity"] == 10
    assert datetime.fromisoformat(cohort["next_session"]) > NOW
    assert {frozenset(m) for m in cohort["members"]} == {
        frozenset({"patient_id", "handle", "member_since"})
    }
