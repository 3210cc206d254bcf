"""Patients' notification profiles and the messages recorded for them, in the database.

Profiles hold contact details (PHI): read only through audited endpoints and the sender, never
logged. A message row keeps its template and facts, never its text.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.db import is_postgres
from services.chassis.errors import PermanentError
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import (
    parked_patient_events,
    patient_messages,
    patient_profiles,
)
from services.notifications.domain.calendar import DailyWindow
from services.notifications.domain.preferences import InvalidPreferences, Preferences


class ProfileRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def row(self, patient_id: uuid.UUID) -> sa.RowMapping | None:
        result = await self._uow.session.execute(
            sa.select(patient_profiles).where(patient_profiles.c.patient_id == patient_id)
        )
        return result.mappings().first()

    async def preferences(self, patient_id: uuid.UUID) -> Preferences | None:
        """The patient's preferences; None when they have no profile yet."""
        row = await self.row(patient_id)
        if row is None:
            return None
        try:
            return Preferences(
                timezone=row["timezone"],
                language=row["language"],
                channels=tuple(row["channels"]),
                email=row["email"],
                phone=row["phone"],
                quiet=DailyWindow(row["quiet_start"], row["quiet_end"]),
                opted_out=frozenset(row["opted_out"]),
                include_dose_details=row["include_dose_details"],
            )
        except InvalidPreferences as exc:
            # Profiles are written only through the validated API: a bad row is a defect to fix
            # (the field's name is safe to report; its value is PHI and is not).
            raise PermanentError(f"notification profile is invalid: {exc.field}") from None

    async def save(
        self, patient_id: uuid.UUID, prefs: Preferences, *, updated_by: str, now: datetime
    ) -> dict[str, Any]:
        """Create or replace the profile; returns the stored values."""
        values = {
            "timezone": prefs.timezone,
            "language": prefs.language,
            "channels": list(prefs.channels),
            "email": prefs.email,
            "phone": prefs.phone,
            "quiet_start": prefs.quiet.start,
            "quiet_end": prefs.quiet.end,
            "opted_out": sorted(prefs.opted_out),
            "include_dose_details": prefs.include_dose_details,
            "updated_by": updated_by,
            "updated_at": now,
        }
        p = patient_profiles
        exists = await self._uow.session.scalar(
            sa.select(p.c.patient_id).where(p.c.patient_id == patient_id)
        )
        if exists is None:
            await self._uow.session.execute(sa.insert(p).values(patient_id=patient_id, **values))
        else:
            await self._uow.session.execute(
                sa.update(p).where(p.c.patient_id == patient_id).values(**values)
            )
        return values


class MessageRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def recorded(self, source_event_id: uuid.UUID, kind: str) -> uuid.UUID | None:
        """The message already recorded for this event and kind (a redelivery finds it)."""
        m = patient_messages.c
        query = sa.select(m.id).where(m.source_event_id == source_event_id, m.kind == kind)
        found: uuid.UUID | None = await self._uow.session.scalar(query)
        return found

    async def add(self, **values: Any) -> None:
        await self._uow.session.execute(sa.insert(patient_messages).values(**values))

    async def get(self, message_id: uuid.UUID) -> sa.RowMapping | None:
        result = await self._uow.session.execute(
            sa.select(patient_messages).where(patient_messages.c.id == message_id)
        )
        return result.mappings().first()

    async def update(self, message_id: uuid.UUID, **values: Any) -> None:
        await self._uow.session.execute(
            sa.update(patient_messages).where(patient_messages.c.id == message_id).values(**values)
        )

    async def history(
        self,
        patient_id: uuid.UUID,
        page: PageParams,
        *,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, one page (created in [since, until), in ``status`` if given)."""
        m = patient_messages.c
        query = sa.select(
            m.id, m.kind, m.status, m.skip_reason, m.send_at, m.sent_at, m.created_at
        ).where(m.patient_id == patient_id)
        if status is not None:
            query = query.where(m.status == status)
        query = within(query, m.created_at, since, until)
        return await fetch_page(self._uow.session, query, (m.created_at, m.id), page)


class ParkedEventRepository:
    """Events kept until the patient has a profile (service_layer/waiting_for_profile.py)."""

    PARKED = "parked"
    RELEASED = "released"

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def parked_once(self, event_id: uuid.UUID, kind: str) -> bool:
        """Whether this event was parked for this kind already (a redelivery)."""
        t = parked_patient_events.c
        query = sa.select(t.id).where(t.event_id == event_id, t.kind == kind)
        return await self._uow.session.scalar(query) is not None

    async def add(self, **values: Any) -> None:
        values["status"] = self.PARKED
        await self._uow.session.execute(sa.insert(parked_patient_events).values(**values))

    async def waiting(self, patient_id: uuid.UUID) -> list[sa.RowMapping]:
        """The patient's parked events, oldest first (when they happened, then when they came)."""
        table = parked_patient_events
        query = (
            sa.select(table)
            .where(table.c.patient_id == patient_id, table.c.status == self.PARKED)
            .order_by(table.c.occurred_at, table.c.parked_at, table.c.id)
        )
        if is_postgres(self._uow.session.bind):
            # Two releases at once (a save and a re-check): the second waits, then finds them
            # done.
            query = query.with_for_update()
        return list((await self._uow.session.execute(query)).mappings())

    async def released(self, row_id: uuid.UUID, outcome: str, at: datetime) -> None:
        table = parked_patient_events
        await self._uow.session.execute(
            sa.update(table)
            .where(table.c.id == row_id)
            .values(status=self.RELEASED, outcome=outcome, released_at=at)
        )
