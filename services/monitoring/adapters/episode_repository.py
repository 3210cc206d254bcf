"""Episodes in the ``episodes`` table: loaded and saved as ``Episode`` aggregates.

Every episode the repository hands out or takes in is tracked by the unit of work, so the
events it records (``ThresholdExceeded``, ``EscalationResolved``) reach the outbox on commit.
Saves are optimistic: an episode written by someone else since it was read is not overwritten
(``EpisodeChangedConcurrently``, retryable). The partial unique index ``uq_episodes_open_family``
keeps one open episode per patient and family when two reports race to open it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.errors import Conflict
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import episodes
from services.monitoring.domain.episodes import Episode, EpisodeStatus
from services.monitoring.domain.model import Reason, Severity


class EpisodeChangedConcurrently(Conflict):
    """The episode was written by another transaction since it was read (a retry finds it)."""

    def __init__(self) -> None:
        super().__init__("the episode changed concurrently")


class EpisodeRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, episode: Episode) -> None:
        await self._uow.session.execute(sa.insert(episodes).values(**_row(episode), version=1))
        episode.version = 1
        self._uow.track(episode)

    async def get(self, patient_id: uuid.UUID, episode_id: uuid.UUID) -> Episode | None:
        """The patient's episode with this id; None when the patient has no such episode."""
        return await self._one(episodes.c.id == episode_id, episodes.c.patient_id == patient_id)

    async def open_one(self, patient_id: uuid.UUID, family: str) -> Episode | None:
        """The patient's open episode of ``family``, if any."""
        return await self._one(
            episodes.c.patient_id == patient_id,
            episodes.c.family == family,
            episodes.c.status == EpisodeStatus.OPEN.value,
        )

    async def list_open(self, patient_ids: Sequence[uuid.UUID]) -> list[Episode]:
        """These patients' open episodes, oldest first."""
        if not patient_ids:
            return []
        rows = await self._uow.session.execute(
            sa.select(episodes)
            .where(
                episodes.c.patient_id.in_(patient_ids),
                episodes.c.status == EpisodeStatus.OPEN.value,
            )
            .order_by(episodes.c.opened_at)
        )
        return [self._tracked(r) for r in rows.mappings()]

    async def page(
        self,
        patient_ids: Sequence[uuid.UUID],
        status: str,
        since: datetime | None,
        until: datetime | None,
        page: PageParams,
    ) -> tuple[list[Episode], str | None]:
        """Newest first, one page of these patients' episodes in ``status`` (or ``all``) opened
        in [since, until); the next page's cursor (None on the last)."""
        if not patient_ids:
            return [], None
        e = episodes.c
        query = sa.select(episodes).where(e.patient_id.in_(patient_ids))
        if status != "all":
            query = query.where(e.status == status)
        query = within(query, e.opened_at, since, until)
        rows, following = await fetch_page(self._uow.session, query, (e.opened_at, e.id), page)
        return [self._tracked(r) for r in rows], following

    async def save(self, episode: Episode) -> None:
        """Write the episode if nobody changed it since it was read."""
        result = await self._uow.session.execute(
            sa.update(episodes)
            .where(episodes.c.id == episode.id, episodes.c.version == episode.version)
            .values(**_row(episode), version=episode.version + 1)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise EpisodeChangedConcurrently()
        episode.version += 1
        self._uow.track(episode)

    async def _one(self, *where: sa.ColumnElement[bool]) -> Episode | None:
        row = (
            (await self._uow.session.execute(sa.select(episodes).where(*where))).mappings().first()
        )
        return self._tracked(row) if row else None

    def _tracked(self, row: Any) -> Episode:
        episode = _episode(row)
        self._uow.track(episode)
        return episode


def _row(e: Episode) -> dict[str, Any]:
    return {
        "id": e.id,
        "patient_id": e.patient_id,
        "family": e.family,
        "severity": e.severity.value,
        "status": e.status.value,
        "opened_at": e.opened_at,
        "updated_at": e.updated_at,
        "last_source_id": e.last_source_id,
        "source_count": e.source_count,
        "reasons": [r.__dict__ for r in e.reasons],
        "history": list(e.history),
        "acknowledged_at": e.acknowledged_at,
        "resolved_at": e.resolved_at,
        "resolved_by": e.resolved_by,
        "resolution": e.resolution,
        "resolution_note": e.resolution_note,
    }


def _episode(row: Any) -> Episode:
    return Episode(
        id=row["id"],
        patient_id=row["patient_id"],
        family=row["family"],
        severity=Severity(row["severity"]),
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        last_source_id=row["last_source_id"],
        reasons=tuple(Reason(**r) for r in row["reasons"]),
        source_count=row["source_count"],
        status=EpisodeStatus(row["status"]),
        acknowledged_at=row["acknowledged_at"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        resolution=row["resolution"],
        resolution_note=row["resolution_note"],
        version=row["version"],
        history=list(row["history"]),
    )
