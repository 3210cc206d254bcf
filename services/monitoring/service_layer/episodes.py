"""Escalation episodes' use cases: escalate findings, resolve, record an acknowledgement, list.

``escalate`` is the one door to a ``ThresholdExceeded``: for each family the findings touch, it
opens the patient's episode or lets the open one absorb them; the ``Episode`` aggregate records
the announcement (opened, or risen from AMBER to RED) and the unit of work publishes it on
commit. Two reports racing to open the same family's episode: the loser's transaction meets the
unique index, and its message or request is retried, then finds the episode open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from contracts import Event, PageAcknowledged
from services.chassis.errors import Conflict, NotFound, PermanentError
from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.episode_repository import EpisodeRepository
from services.monitoring.domain.episodes import Episode, EpisodeConflict, EpisodeStatus, by_family
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
) -> None:
    """Open or update one episode per family (each announces what it must on commit)."""
    repository = EpisodeRepository(uow)
    now = uow.clock.now()
    for family, found in sorted(by_family(findings).items()):
        episode = await repository.open_one(patient_id, family)
        if episode is None:
            await repository.add(Episode.open(patient_id, found, source_id, now, cause=cause))
        else:
            episode.absorb(found, source_id, now, cause=cause)
            await repository.save(episode)


@dataclass(frozen=True)
class ResolveEpisode:
    patient_id: uuid.UUID
    episode_id: uuid.UUID
    clinician: str
    resolution: str
    note: str | None = None


async def resolve(cmd: ResolveEpisode, uow: UnitOfWork) -> Episode:
    """Close the episode; it announces ``EscalationResolved`` (codes only; the note stays here).

    ``resume_taper`` lifts the scheduler's hold, so it is refused while another episode of the
    patient is still open: each open episode is a reason the taper is held.
    """
    repository = EpisodeRepository(uow)
    episode = await _get(repository, cmd.patient_id, cmd.episode_id)
    if cmd.resolution == "resume_taper":
        others = [e for e in await repository.list_open([cmd.patient_id]) if e.id != episode.id]
        if others:
            raise EpisodeStateConflict(
                "another episode of this patient is open: resolve it first or keep the taper held"
            )
    try:
        episode.resolve(cmd.clinician, cmd.resolution, uow.clock.now(), note=cmd.note)
    except EpisodeConflict as exc:
        raise EpisodeStateConflict(str(exc)) from None
    await repository.save(episode)
    return episode


class UnknownEpisode(PermanentError):
    """An acknowledgement names no episode of this patient (dead-lettered with this reason)."""


async def record_acknowledgement(event: PageAcknowledged, uow: UnitOfWork) -> None:
    """A page for the episode was acknowledged: the first acknowledgement is recorded (the
    episode stays open until a clinician resolves it)."""
    repository = EpisodeRepository(uow)
    episode = await repository.get(event.patient_id, event.episode_id)
    if episode is None:
        raise UnknownEpisode("no such episode for this patient")
    if episode.acknowledge(event.occurred_at):
        await repository.save(episode)


async def list_open(uow: UnitOfWork, patient_ids: list[uuid.UUID]) -> list[Episode]:
    return await EpisodeRepository(uow).list_open(patient_ids)


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
    return await EpisodeRepository(uow).page(patient_ids, f.status, f.since, f.until, page)


async def _get(
    repository: EpisodeRepository, patient_id: uuid.UUID, episode_id: uuid.UUID
) -> Episode:
    episode = await repository.get(patient_id, episode_id)
    if episode is None:
        raise EpisodeNotFound()
    return episode
