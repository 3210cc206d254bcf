"""Loading and saving what group matching keeps: cohorts (the ``Cohort`` aggregate and its
memberships), participants, moderators, open RED episodes and patients' stages.

Every cohort a repository loads or adds is handed to the unit of work (``uow.track``), which
publishes the events the cohort recorded when it commits. ``save`` writes what changed since the
cohort was loaded or last saved: its status and moderator, memberships that ended (first) and
memberships that began.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts import Event
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.orm import (
    cohorts,
    memberships,
    moderators,
    parked_stage_events,
    participants,
    patient_stages,
    red_episodes,
)
from services.group_matching.domain.cohort import (
    Cohort,
    CohortStatus,
    Membership,
    ParticipantStatus,
    check_participant_move,
)


class CohortRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def _cohort(self, row: sa.RowMapping, members: list[Membership]) -> Cohort:
        cohort = Cohort(
            id=row["id"],
            stage_group=row["stage_group"],
            language=row["language"],
            drug=row["drug"],
            on_diazepam=row["on_diazepam"],
            session_weekday=row["session_weekday"],
            session_utc_minute=row["session_utc_minute"],
            capacity=row["capacity"],
            moderator=row["moderator"],
            status=CohortStatus(row["status"]),
            created_at=row["created_at"],
            members={m.patient_id: m for m in members},
        )
        self.uow.track(cohort)
        return cohort

    async def active(self) -> list[Cohort]:
        """Every active cohort with its current members."""
        found = await self.uow.session.execute(
            sa.select(memberships)
            .join(cohorts, cohorts.c.id == memberships.c.cohort_id)
            .where(memberships.c.left_at.is_(None), cohorts.c.status == CohortStatus.ACTIVE)
        )
        members: dict[uuid.UUID, list[Membership]] = {}
        for m in found.mappings():
            members.setdefault(m["cohort_id"], []).append(_membership(m))
        rows = await self.uow.session.execute(
            sa.select(cohorts).where(cohorts.c.status == CohortStatus.ACTIVE)
        )
        return [self._cohort(c, members.get(c["id"], [])) for c in rows.mappings()]

    async def get(self, cohort_id: uuid.UUID) -> Cohort:
        row = (
            (await self.uow.session.execute(sa.select(cohorts).where(cohorts.c.id == cohort_id)))
            .mappings()
            .one()
        )
        found = await self.uow.session.execute(
            sa.select(memberships).where(
                memberships.c.cohort_id == cohort_id, memberships.c.left_at.is_(None)
            )
        )
        return self._cohort(row, [_membership(m) for m in found.mappings()])

    async def add(self, cohort: Cohort) -> None:
        await self.uow.session.execute(
            sa.insert(cohorts).values(
                id=cohort.id,
                stage_group=cohort.stage_group,
                language=cohort.language,
                drug=cohort.drug,
                on_diazepam=cohort.on_diazepam,
                session_weekday=cohort.session_weekday,
                session_utc_minute=cohort.session_utc_minute,
                capacity=cohort.capacity,
                moderator=cohort.moderator,
                status=cohort.status.value,
                created_at=cohort.created_at,
            )
        )
        self.uow.track(cohort)
        await self._save_members(cohort)

    async def save(self, cohort: Cohort) -> None:
        await self.uow.session.execute(
            sa.update(cohorts)
            .where(cohorts.c.id == cohort.id)
            .values(status=cohort.status.value, moderator=cohort.moderator)
        )
        await self._save_members(cohort)

    async def _save_members(self, cohort: Cohort) -> None:
        for m in cohort.departed:
            await self.uow.session.execute(
                sa.update(memberships)
                .where(memberships.c.id == m.id)
                .values(left_at=m.left_at, left_reason=m.left_reason)
            )
        for m in cohort.joined:
            await self.uow.session.execute(
                sa.insert(memberships).values(
                    id=m.id,
                    cohort_id=cohort.id,
                    patient_id=m.patient_id,
                    joined_at=m.joined_at,
                    waited_since=m.waited_since,
                )
            )
        cohort.departed, cohort.joined = [], []

    async def stage_groups(self) -> dict[uuid.UUID, str]:
        """The stage group of every cohort, closed ones included."""
        rows = await self.uow.session.execute(sa.select(cohorts.c.id, cohorts.c.stage_group))
        return dict(rows.tuples().all())

    async def moderator_load(self) -> Counter[str]:
        """How many active cohorts each moderator runs."""
        rows = await self.uow.session.execute(
            sa.select(cohorts.c.moderator, sa.func.count())
            .where(cohorts.c.status == CohortStatus.ACTIVE)
            .group_by(cohorts.c.moderator)
        )
        return Counter(dict(rows.tuples().all()))

    async def run_by(self, moderator: str) -> list[Cohort]:
        """The moderator's active cohorts, oldest first."""
        rows = await self.uow.session.execute(
            sa.select(cohorts.c.id)
            .where(cohorts.c.moderator == moderator, cohorts.c.status == CohortStatus.ACTIVE)
            .order_by(cohorts.c.created_at, cohorts.c.id)
        )
        return [await self.get(cohort_id) for cohort_id in rows.scalars().all()]

    async def row(self, cohort_id: uuid.UUID) -> sa.RowMapping:
        """A cohort's row, for reads."""
        result = await self.uow.session.execute(sa.select(cohorts).where(cohorts.c.id == cohort_id))
        return result.mappings().one()

    async def page_run_by(
        self,
        moderator: str,
        page: PageParams,
        *,
        status: str,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a moderator's cohorts, newest first (``status`` "all": any status)."""
        c_ = cohorts.c
        query = sa.select(cohorts).where(c_.moderator == moderator)
        if status != "all":
            query = query.where(c_.status == status)
        query = within(query, c_.created_at, since, until)
        return await fetch_page(self.uow.session, query, (c_.created_at, c_.id), page)

    async def members(self, cohort_id: uuid.UUID) -> list[tuple[uuid.UUID, str, datetime]]:
        """The current members: patient id, handle, joined at."""
        rows = await self.uow.session.execute(
            sa.select(participants.c.patient_id, participants.c.handle, memberships.c.joined_at)
            .join(memberships, memberships.c.patient_id == participants.c.patient_id)
            .where(memberships.c.cohort_id == cohort_id, memberships.c.left_at.is_(None))
        )
        return [(p, h, j) for p, h, j in rows.tuples().all()]

    async def member_handles(self, cohort_id: uuid.UUID) -> dict[uuid.UUID, str]:
        rows = await self.uow.session.execute(
            sa.select(participants.c.patient_id, participants.c.handle)
            .join(memberships, memberships.c.patient_id == participants.c.patient_id)
            .where(memberships.c.cohort_id == cohort_id, memberships.c.left_at.is_(None))
        )
        return dict(rows.tuples().all())


def _membership(row: sa.RowMapping) -> Membership:
    return Membership(
        id=row["id"],
        patient_id=row["patient_id"],
        joined_at=row["joined_at"],
        waited_since=row["waited_since"],
    )


class ParticipantRepository:
    """Who takes part in peer support: waiting, placed or left (``ParticipantStatus``)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def get(self, patient_id: uuid.UUID) -> sa.RowMapping | None:
        result = await self.uow.session.execute(
            sa.select(participants).where(participants.c.patient_id == patient_id)
        )
        return result.mappings().first()

    async def add(self, **values: Any) -> None:
        await self.uow.session.execute(sa.insert(participants).values(**values))

    async def update(self, patient_id: uuid.UUID, **values: Any) -> None:
        values["updated_at"] = self.uow.clock.now()
        await self.uow.session.execute(
            sa.update(participants).where(participants.c.patient_id == patient_id).values(**values)
        )

    async def move(
        self,
        patient_id: uuid.UUID,
        before: ParticipantStatus,
        after: ParticipantStatus,
        **values: Any,
    ) -> None:
        """Change the participant's status from ``before`` (as read) to ``after``, a move
        ``PARTICIPANT_MOVES`` allows."""
        check_participant_move(before, after)
        await self.update(patient_id, status=after.value, **values)

    async def taking_part_with_stage(self) -> list[sa.RowMapping]:
        """Everyone taking part (waiting or placed) with their stage, by patient id."""
        rows = await self.uow.session.execute(
            sa.select(
                participants,
                patient_stages.c.stage,
                patient_stages.c.drug,
                patient_stages.c.stage_since,
                patient_stages.c.completed_at,
            )
            .outerjoin(patient_stages, patient_stages.c.patient_id == participants.c.patient_id)
            .where(participants.c.status != ParticipantStatus.LEFT)
            .order_by(participants.c.patient_id)
        )
        return list(rows.mappings())


class ModeratorRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def exists(self, subject: str) -> bool:
        found = await self.uow.session.scalar(
            sa.select(moderators.c.subject).where(moderators.c.subject == subject)
        )
        return found is not None

    async def add(self, subject: str, **values: Any) -> None:
        await self.uow.session.execute(sa.insert(moderators).values(subject=subject, **values))

    async def update(self, subject: str, **values: Any) -> bool:
        """Whether there was such a moderator."""
        result = await self.uow.session.execute(
            sa.update(moderators).where(moderators.c.subject == subject).values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, subject: str) -> None:
        await self.uow.session.execute(sa.delete(moderators).where(moderators.c.subject == subject))

    async def all(self) -> list[sa.RowMapping]:
        """Every moderator, by subject."""
        rows = await self.uow.session.execute(sa.select(moderators).order_by(moderators.c.subject))
        return list(rows.mappings())

    async def active_others(self, subject: str) -> list[sa.RowMapping]:
        """The active moderators other than ``subject``, by subject."""
        rows = await self.uow.session.execute(
            sa.select(moderators)
            .where(moderators.c.subject != subject, moderators.c.active.is_(True))
            .order_by(moderators.c.subject)
        )
        return list(rows.mappings())

    async def page(
        self, page: PageParams, *, active: bool | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = sa.select(moderators)
        if active is not None:
            query = query.where(moderators.c.active == active)
        return await fetch_page(
            self.uow.session, query, (moderators.c.subject,), page, ascending=True
        )


class RedEpisodeRepository:
    """Open RED episodes (monitoring's): they keep a patient out of new cohorts."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def open(self, episode_id: uuid.UUID, patient_id: uuid.UUID, at: datetime) -> None:
        """Record an opened episode (a redelivery records nothing twice)."""
        known = await self.uow.session.scalar(
            sa.select(red_episodes.c.episode_id).where(red_episodes.c.episode_id == episode_id)
        )
        if known is None:
            await self.uow.session.execute(
                sa.insert(red_episodes).values(
                    episode_id=episode_id, patient_id=patient_id, opened_at=at
                )
            )

    async def resolve(self, episode_id: uuid.UUID, at: datetime) -> bool:
        """Whether an open episode was resolved by this."""
        result = await self.uow.session.execute(
            sa.update(red_episodes)
            .where(red_episodes.c.episode_id == episode_id, red_episodes.c.resolved_at.is_(None))
            .values(resolved_at=at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def patients_with_open(self) -> set[uuid.UUID]:
        rows = await self.uow.session.scalars(
            sa.select(red_episodes.c.patient_id)
            .where(red_episodes.c.resolved_at.is_(None))
            .distinct()
        )
        return set(rows.all())

    async def has_open(self, patient_id: uuid.UUID) -> bool:
        count = await self.uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(red_episodes)
            .where(red_episodes.c.patient_id == patient_id, red_episodes.c.resolved_at.is_(None))
        )
        return bool(count)


class StageRepository:
    """Each patient's taper stage (from the scheduler's events) and the lifecycle events parked
    until the patient's first step."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def get(self, patient_id: uuid.UUID) -> sa.RowMapping | None:
        result = await self.uow.session.execute(
            sa.select(patient_stages).where(patient_stages.c.patient_id == patient_id)
        )
        return result.mappings().first()

    async def add(self, patient_id: uuid.UUID, **values: Any) -> None:
        await self.uow.session.execute(
            sa.insert(patient_stages).values(patient_id=patient_id, **values)
        )

    async def update(self, patient_id: uuid.UUID, **values: Any) -> None:
        await self.uow.session.execute(
            sa.update(patient_stages)
            .where(patient_stages.c.patient_id == patient_id)
            .values(**values)
        )

    async def summary(self, patient_id: uuid.UUID) -> dict[str, Any] | None:
        """The stage as the API shows it."""
        row = (
            (
                await self.uow.session.execute(
                    sa.select(
                        patient_stages.c.patient_id,
                        patient_stages.c.drug,
                        patient_stages.c.stage,
                        patient_stages.c.updated_at,
                    ).where(patient_stages.c.patient_id == patient_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else dict(row)

    async def park(self, event: Event) -> None:
        """Keep a lifecycle event until the patient's first step (a redelivery parks nothing
        twice: the inbox drops most, the event id as key the rest)."""
        found = await self.uow.session.scalar(
            sa.select(parked_stage_events.c.event_id).where(
                parked_stage_events.c.event_id == event.event_id
            )
        )
        if found is None:
            await self.uow.session.execute(
                sa.insert(parked_stage_events).values(
                    event_id=event.event_id,
                    patient_id=event.patient_id,
                    event_type=event.event_type,
                    occurred_at=event.occurred_at,
                    payload=event.model_dump(mode="json"),
                    parked_at=self.uow.clock.now(),
                )
            )

    async def parked(self, patient_id: uuid.UUID) -> list[sa.RowMapping]:
        """The patient's parked events, oldest first."""
        rows = await self.uow.session.execute(
            sa.select(parked_stage_events)
            .where(parked_stage_events.c.patient_id == patient_id)
            .order_by(parked_stage_events.c.occurred_at, parked_stage_events.c.event_id)
        )
        return list(rows.mappings())

    async def drop_parked(self, patient_id: uuid.UUID) -> None:
        await self.uow.session.execute(
            sa.delete(parked_stage_events).where(parked_stage_events.c.patient_id == patient_id)
        )
