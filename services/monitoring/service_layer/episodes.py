"""Escalation episodes in the database: open, update, announce, resolve.

``escalate`` is the one place a ``ThresholdExceeded`` is published: for each family the findings
touch, it opens the patient's episode (announced) or updates the open one (announced again only
when it rises from AMBER to RED). The partial unique index ``uq_episodes_open_family`` keeps one
open episode per patient and family when two reports race; the loser's transaction fails and its
message or request is retried, then finds the episode open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contracts import (
    EscalationResolved,
    Event,
    PageAcknowledged,
    ThresholdExceeded,
    ThresholdReason,
)
from services.chassis.errors import Conflict, NotFound, PermanentError
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import episodes
from services.monitoring.domain.episodes import (
    Episode,
    EpisodeConflict,
    EpisodeStatus,
    by_family,
)
from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import Finding


class EpisodeNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such episode for this patient")


class EpisodeStateConflict(Conflict):
    pass


async def escalate(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    findings: tuple[Finding, ...],
    source_id: uuid.UUID,
    *,
    cause: Event | None = None,
) -> list[ThresholdExceeded]:
    """Open or update one episode per family; returns the ``ThresholdExceeded`` published."""
    published: list[ThresholdExceeded] = []
    now = uow.clock.now()
    for family, found in sorted(by_family(findings).items()):
        episode = await open_episode(uow, patient_id, family)
        if episode is None:
            episode = Episode.open(patient_id, found, source_id, now)
            await uow.session.execute(sa.insert(episodes).values(**_row(episode), version=1))
            announce = True
        else:
            announce = episode.absorb(found, source_id, now)
            await _save(uow, episode)
        if announce:
            event = ThresholdExceeded.create(
                patient_id=patient_id,
                occurred_at=now,
                report_id=source_id,
                episode_id=episode.id,
                severity=episode.severity.value,
                reasons=tuple(_reason(r) for r in episode.reasons),
                family=family,
                **(cause.caused() if cause else {}),
            )
            await uow.publish(event)
            published.append(event)
    return published


@dataclass(frozen=True)
class ResolveEpisode:
    patient_id: uuid.UUID
    episode_id: uuid.UUID
    clinician: str
    resolution: str
    note: str | None = None


async def resolve(cmd: ResolveEpisode, uow: UnitOfWork) -> Episode:
    """Close the episode and announce ``EscalationResolved`` (codes only; the note stays here).

    ``resume_taper`` lifts the scheduler's hold, so it is refused while another episode of the
    patient is still open: each open episode is a reason the taper is held.
    """
    episode = await get(uow, cmd.patient_id, cmd.episode_id)
    if cmd.resolution == "resume_taper":
        others = [e for e in await list_open(uow, [cmd.patient_id]) if e.id != episode.id]
        if others:
            raise EpisodeStateConflict(
                "another episode of this patient is open: resolve it first or keep the taper held"
            )
    try:
        episode.resolve(cmd.clinician, cmd.resolution, uow.clock.now())
    except EpisodeConflict as exc:
        raise EpisodeStateConflict(str(exc)) from None
    await _save(uow, episode, resolution_note=cmd.note)
    await uow.publish(
        EscalationResolved.create(
            patient_id=episode.patient_id,
            occurred_at=uow.clock.now(),
            episode_id=episode.id,
            family=episode.family,
            severity=episode.severity.value,
            resolution=cmd.resolution,
            resolved_by=cmd.clinician,
        )
    )
    return episode


class UnknownEpisode(PermanentError):
    """An acknowledgement names no episode of this patient (dead-lettered with this reason)."""


async def record_acknowledgement(event: PageAcknowledged, uow: UnitOfWork) -> None:
    """A page for the episode was acknowledged: the first acknowledgement is recorded (the
    episode stays open until a clinician resolves it)."""
    try:
        episode = await get(uow, event.patient_id, event.episode_id)
    except EpisodeNotFound:
        raise UnknownEpisode("no such episode for this patient") from None
    if episode.acknowledge(event.occurred_at):
        await _save(uow, episode)


async def open_episode(uow: UnitOfWork, patient_id: uuid.UUID, family: str) -> Episode | None:
    row = (
        (
            await uow.session.execute(
                sa.select(episodes).where(
                    episodes.c.patient_id == patient_id,
                    episodes.c.family == family,
                    episodes.c.status == EpisodeStatus.OPEN.value,
                )
            )
        )
        .mappings()
        .first()
    )
    return _episode(row) if row else None


async def get(uow: UnitOfWork, patient_id: uuid.UUID, episode_id: uuid.UUID) -> Episode:
    row = (
        (
            await uow.session.execute(
                sa.select(episodes).where(
                    episodes.c.id == episode_id, episodes.c.patient_id == patient_id
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise EpisodeNotFound()
    return _episode(row)


async def list_open(uow: UnitOfWork, patient_ids: list[uuid.UUID]) -> list[Episode]:
    if not patient_ids:
        return []
    rows = await uow.session.execute(
        sa.select(episodes)
        .where(
            episodes.c.patient_id.in_(patient_ids),
            episodes.c.status == EpisodeStatus.OPEN.value,
        )
        .order_by(episodes.c.opened_at)
    )
    return [_episode(r) for r in rows.mappings()]


@dataclass(frozen=True)
class EpisodeFilter:
    """What the episode lists narrow to: open (the default), resolved or all; opened in
    [since, until)."""

    status: str = EpisodeStatus.OPEN.value  # open | resolved | all
    since: datetime | None = None
    until: datetime | None = None


async def episode_page(
    uow: UnitOfWork, patient_ids: list[uuid.UUID], f: EpisodeFilter, page: PageParams
) -> tuple[list[Episode], str | None]:
    """Newest first, one page of these patients' episodes (resolved ones too: their history)."""
    if not patient_ids:
        return [], None
    e = episodes.c
    query = sa.select(episodes).where(e.patient_id.in_(patient_ids))
    if f.status != "all":
        query = query.where(e.status == f.status)
    query = within(query, e.opened_at, f.since, f.until)
    rows, following = await fetch_page(uow.session, query, (e.opened_at, e.id), page)
    return [_episode(r) for r in rows], following


def _reason(r: Reason) -> ThresholdReason:
    return ThresholdReason(
        code=r.code, instrument=r.instrument, value=r.value, threshold=r.threshold
    )


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
        version=row["version"],
        history=list(row["history"]),
    )


async def _save(uow: UnitOfWork, e: Episode, **also: Any) -> None:
    """Write the episode if nobody changed it since it was read (else a retryable conflict)."""
    result = await uow.session.execute(
        sa.update(episodes)
        .where(episodes.c.id == e.id, episodes.c.version == e.version)
        .values(**_row(e), version=e.version + 1, **also)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise EpisodeStateConflict("the episode changed concurrently")
    e.version += 1
