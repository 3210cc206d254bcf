"""Check-ins in the ``checkins`` table, loaded and saved as ``CheckIn`` aggregates.

A save is guarded by the status the check-in had when it was read (``stored_status``): one a
report or a timer changed in the meantime is left as the other wrote it (``save`` returns False),
and only a check-in actually written is tracked, so its ``CheckInDue`` reaches the outbox.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.pagination import PageParams, fetch_page
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import checkins
from services.monitoring.domain.checkin import CheckIn
from services.monitoring.domain.checkins import CheckInStatus

_OPEN = (CheckInStatus.SCHEDULED.value, CheckInStatus.DUE.value)


class CheckInRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, checkin: CheckIn) -> None:
        await self._uow.session.execute(sa.insert(checkins).values(**_row(checkin)))
        checkin.stored_status = checkin.status
        self._uow.track(checkin)

    async def get(self, checkin_id: uuid.UUID) -> CheckIn | None:
        return next(iter(await self._where(checkins.c.id == checkin_id)), None)

    async def any_after(self, dose_event_id: uuid.UUID) -> bool:
        """Were check-ins already planned after this dose step (a redelivered event)?"""
        n = await self._uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(checkins)
            .where(checkins.c.after_dose_event_id == dose_event_id)
        )
        return bool(n)

    async def scheduled_from(
        self, patient_id: uuid.UUID, since: datetime, *, besides: uuid.UUID
    ) -> list[CheckIn]:
        """The patient's check-ins not yet due that fall due from ``since``, of steps other
        than ``besides``."""
        c = checkins.c
        return await self._where(
            c.patient_id == patient_id,
            c.status == CheckInStatus.SCHEDULED.value,
            c.after_dose_event_id != besides,
            c.due_at >= since,
        )

    async def open_at(self, patient_id: uuid.UUID, at: datetime) -> list[CheckIn]:
        """The patient's check-ins scheduled or due whose window holds ``at``."""
        c = checkins.c
        return await self._where(
            c.patient_id == patient_id, c.status.in_(_OPEN), c.due_at <= at, c.window_closes_at > at
        )

    async def save(self, checkin: CheckIn) -> bool:
        """Write the check-in unless its status changed since it was read; True if written."""
        result = await self._uow.session.execute(
            sa.update(checkins)
            .where(checkins.c.id == checkin.id, checkins.c.status == checkin.stored_status)
            .values(
                status=checkin.status.value, completed_by_report_id=checkin.completed_by_report_id
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        checkin.stored_status = checkin.status
        self._uow.track(checkin)
        return True

    async def page(
        self,
        patient_id: uuid.UUID,
        page: PageParams,
        *,
        status: CheckInStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Latest due first, due in [since, until), in ``status`` if given; the next cursor."""
        query = sa.select(checkins).where(checkins.c.patient_id == patient_id)
        if status is not None:
            query = query.where(checkins.c.status == status.value)
        if since is not None:
            query = query.where(checkins.c.due_at >= since)
        if until is not None:
            query = query.where(checkins.c.due_at < until)
        return await fetch_page(self._uow.session, query, [checkins.c.due_at, checkins.c.id], page)

    async def _where(self, *where: sa.ColumnElement[bool]) -> list[CheckIn]:
        rows = await self._uow.session.execute(sa.select(checkins).where(*where))
        return [_checkin(r) for r in rows.mappings()]


def _row(c: CheckIn) -> dict[str, Any]:
    return {
        "id": c.id,
        "patient_id": c.patient_id,
        "after_dose_event_id": c.after_dose_event_id,
        "due_at": c.due_at,
        "window_closes_at": c.window_closes_at,
        "instruments": list(c.instruments),
        "status": c.status.value,
        "completed_by_report_id": c.completed_by_report_id,
    }


def _checkin(row: Any) -> CheckIn:
    return CheckIn(
        id=row["id"],
        patient_id=row["patient_id"],
        after_dose_event_id=row["after_dose_event_id"],
        due_at=row["due_at"],
        window_closes_at=row["window_closes_at"],
        instruments=tuple(row["instruments"]),
        status=CheckInStatus(row["status"]),
        completed_by_report_id=row["completed_by_report_id"],
        stored_status=CheckInStatus(row["status"]),
    )
