"""Escalation policies, on-call schedules, clinicians' contact methods and notification rules:
who gets paged, and how, as stored.

Policies are versioned: a change writes a new version and escalations under way keep the
definition they started with. A key with no stored version uses the shipped default
(``domain/data/escalation.v1.json``, version 0), so a fresh installation pages from the first
event. Schedules are evaluated when a level is paged: whoever is on call then gets the page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.chassis.errors import NotFound
from services.chassis.pagination import PageParams, page_of
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import (
    clinician_contacts,
    clinician_notification_rules,
    escalation_policies,
    oncall_overrides,
    oncall_schedules,
)
from services.notifications.domain import escalation
from services.notifications.domain.escalation import PolicyDefinition
from services.notifications.domain.oncall import OnCallSchedule, Override, Rotation
from services.notifications.domain.routing import NotificationRules


@dataclass(frozen=True)
class VersionedPolicy:
    key: str
    version: int  # 0: the shipped default
    definition: PolicyDefinition


# --- policies ---------------------------------------------------------------------------------


async def current_policy(uow: UnitOfWork, key: str) -> VersionedPolicy:
    row = (
        (
            await uow.session.execute(
                sa.select(escalation_policies.c.version, escalation_policies.c.definition)
                .where(escalation_policies.c.key == key)
                .order_by(escalation_policies.c.version.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        return VersionedPolicy(
            key, row["version"], PolicyDefinition.model_validate(row["definition"])
        )
    shipped = escalation.defaults().policies.get(key)
    if shipped is None:
        raise NotFound(f"no escalation policy {key}")
    return VersionedPolicy(key, 0, shipped)


async def save_policy(
    uow: UnitOfWork, key: str, definition: PolicyDefinition, by: str
) -> VersionedPolicy:
    """Write the next version of ``key``; the unique (key, version) makes racing writers 409."""
    latest = await uow.session.scalar(
        sa.select(sa.func.max(escalation_policies.c.version)).where(
            escalation_policies.c.key == key
        )
    )
    version = int(latest or 0) + 1
    await uow.session.execute(
        sa.insert(escalation_policies).values(
            id=uuid.uuid4(),
            key=key,
            version=version,
            definition=definition.model_dump(mode="json"),
            created_by=by,
            created_at=uow.clock.now(),
        )
    )
    return VersionedPolicy(key, version, definition)


async def list_policies(uow: UnitOfWork) -> list[VersionedPolicy]:
    """Every current policy (the routing report checks them all)."""
    return [await current_policy(uow, k) for k in sorted(await _policy_keys(uow))]


async def policy_page(
    uow: UnitOfWork, page: PageParams
) -> tuple[list[VersionedPolicy], str | None]:
    """One page of the current policies by key: the shipped defaults merged with stored ones,
    so paged in memory (a handful of keys), each page's policies read after."""
    wanted, following = page_of(sorted(await _policy_keys(uow)), str, page)
    return [await current_policy(uow, k) for k in wanted], following


async def _policy_keys(uow: UnitOfWork) -> set[str]:
    keys = set(escalation.defaults().policies)
    keys |= set((await uow.session.scalars(sa.select(escalation_policies.c.key).distinct())).all())
    return keys


async def policy_versions(uow: UnitOfWork, key: str) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        sa.select(
            escalation_policies.c.version,
            escalation_policies.c.created_by,
            escalation_policies.c.created_at,
        )
        .where(escalation_policies.c.key == key)
        .order_by(escalation_policies.c.version)
    )
    return [dict(r) for r in rows.mappings()]


# --- schedules --------------------------------------------------------------------------------


async def schedule_version(uow: UnitOfWork, key: str) -> int | None:
    """The schedule's version (its ETag), its row locked until commit (PostgreSQL) so that an
    If-Match check and the write after it see the same one. None: no such schedule."""
    return await uow.session.scalar(
        sa.select(oncall_schedules.c.version).where(oncall_schedules.c.key == key).with_for_update()
    )


async def _bump(uow: UnitOfWork, key: str) -> int:
    """A schedule's rotation or overrides changed: its next version."""
    version = await uow.session.scalar(
        sa.update(oncall_schedules)
        .where(oncall_schedules.c.key == key)
        .values(version=oncall_schedules.c.version + 1)
        .returning(oncall_schedules.c.version)
    )
    return int(version or 0)


async def save_schedule(uow: UnitOfWork, key: str, rotation: dict[str, Any], by: str) -> int:
    """Create or replace the rotation; returns the schedule's new version."""
    now = uow.clock.now()
    exists = await schedule_version(uow, key)
    values = {"rotation": rotation, "updated_by": by, "updated_at": now}
    if exists is None:
        await uow.session.execute(sa.insert(oncall_schedules).values(key=key, version=1, **values))
        return 1
    await uow.session.execute(
        sa.update(oncall_schedules).where(oncall_schedules.c.key == key).values(**values)
    )
    return await _bump(uow, key)


async def add_override(
    uow: UnitOfWork, key: str, clinician: str, starts_at: datetime, ends_at: datetime, by: str
) -> tuple[uuid.UUID, int]:
    """Add an override; returns its id and the schedule's new version."""
    await load_schedule(uow, key)  # NotFound for an unknown schedule
    Override(clinician, starts_at, ends_at)  # the domain's own checks
    override_id = uuid.uuid4()
    await uow.session.execute(
        sa.insert(oncall_overrides).values(
            id=override_id,
            schedule_key=key,
            clinician=clinician,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=by,
            created_at=uow.clock.now(),
        )
    )
    return override_id, await _bump(uow, key)


async def remove_override(uow: UnitOfWork, key: str, override_id: uuid.UUID) -> int:
    """Remove an override; returns the schedule's new version."""
    result = await uow.session.execute(
        sa.delete(oncall_overrides).where(
            oncall_overrides.c.id == override_id, oncall_overrides.c.schedule_key == key
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("no such override")
    return await _bump(uow, key)


def rotation_from(data: dict[str, Any]) -> Rotation:
    return Rotation(
        participants=tuple(data["participants"]),
        starts_at=datetime.fromisoformat(data["starts_at"]),
        shift=timedelta(hours=float(data["shift_hours"])),
        timezone=data["timezone"],
    )


async def current_schedule_version(uow: UnitOfWork, key: str) -> int:
    """The schedule's version for a read (no lock); NotFound for an unknown schedule."""
    version = await uow.session.scalar(
        sa.select(oncall_schedules.c.version).where(oncall_schedules.c.key == key)
    )
    if version is None:
        raise NotFound(f"no on-call schedule {key}")
    return int(version)


async def load_schedule(uow: UnitOfWork, key: str) -> OnCallSchedule:
    rotation = await uow.session.scalar(
        sa.select(oncall_schedules.c.rotation).where(oncall_schedules.c.key == key)
    )
    if rotation is None:
        raise NotFound(f"no on-call schedule {key}")
    rows = await uow.session.execute(
        sa.select(
            oncall_overrides.c.clinician, oncall_overrides.c.starts_at, oncall_overrides.c.ends_at
        ).where(oncall_overrides.c.schedule_key == key)
    )
    overrides = tuple(Override(r.clinician, r.starts_at, r.ends_at) for r in rows)
    return OnCallSchedule(key=key, rotation=rotation_from(rotation), overrides=overrides)


async def list_overrides(uow: UnitOfWork, key: str) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        sa.select(
            oncall_overrides.c.id,
            oncall_overrides.c.clinician,
            oncall_overrides.c.starts_at,
            oncall_overrides.c.ends_at,
        )
        .where(oncall_overrides.c.schedule_key == key)
        .order_by(oncall_overrides.c.starts_at)
    )
    return [dict(r) for r in rows.mappings()]


async def on_call(uow: UnitOfWork, key: str, at: datetime) -> str | None:
    """Who schedule ``key`` pages at ``at``; None when it does not exist or nobody is on."""
    try:
        schedule = await load_schedule(uow, key)
    except NotFound:
        return None
    return schedule.on_call_at(at)


# --- contacts ---------------------------------------------------------------------------------


async def save_contact(
    uow: UnitOfWork, subject: str, methods: list[dict[str, str]], by: str
) -> None:
    now = uow.clock.now()
    exists = await uow.session.scalar(
        sa.select(clinician_contacts.c.subject).where(clinician_contacts.c.subject == subject)
    )
    values = {"methods": methods, "updated_by": by, "updated_at": now}
    if exists is None:
        await uow.session.execute(sa.insert(clinician_contacts).values(subject=subject, **values))
    else:
        await uow.session.execute(
            sa.update(clinician_contacts)
            .where(clinician_contacts.c.subject == subject)
            .values(**values)
        )


async def contact_methods(uow: UnitOfWork, subject: str) -> list[dict[str, str]]:
    methods = await uow.session.scalar(
        sa.select(clinician_contacts.c.methods).where(clinician_contacts.c.subject == subject)
    )
    return list(methods or [])


# --- clinicians' notification rules -----------------------------------------------------------


async def save_notification_rules(
    uow: UnitOfWork, subject: str, rules: NotificationRules, by: str
) -> None:
    values = {
        "rules": [r.model_dump() for r in rules.rules],
        "updated_by": by,
        "updated_at": uow.clock.now(),
    }
    table = clinician_notification_rules
    if await notification_rules_of(uow, subject) is None:
        await uow.session.execute(sa.insert(table).values(subject=subject, **values))
    else:
        await uow.session.execute(
            sa.update(table).where(table.c.subject == subject).values(**values)
        )


async def notification_rules_of(uow: UnitOfWork, subject: str) -> NotificationRules | None:
    table = clinician_notification_rules
    stored = await uow.session.scalar(sa.select(table.c.rules).where(table.c.subject == subject))
    return None if stored is None else NotificationRules.model_validate({"rules": stored})
