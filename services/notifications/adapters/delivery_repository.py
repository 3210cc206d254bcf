"""Deliveries in the database: loading, adding and saving the ``Delivery`` aggregate.

Saving writes only what changed, and under a guard when one is given: the claim that made the
change (``claim``: the row must still be ``sending`` under that claim, else an in-doubt recovery
took it over and the outcome is not ours to record), or the status it was read in (``when``).
The claim itself is one conditional update that numbers it (``claim``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import deliveries
from services.notifications.domain.delivery import Delivery, DeliveryStatus


class DeliveryRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow  # the unit of work it loads into and saves with

    async def get(self, delivery_id: uuid.UUID, *, lock: bool = False) -> Delivery | None:
        query = sa.select(deliveries).where(deliveries.c.id == delivery_id)
        if lock:
            query = query.with_for_update()
        row = (await self.uow.session.execute(query)).mappings().first()
        if row is None:
            return None
        found = Delivery(**{**row, "status": DeliveryStatus(row["status"])})
        self.uow.track(found)
        return found

    async def known(self, idempotency_key: str) -> bool:
        """Whether a delivery with this provider key was ever recorded."""
        query = sa.select(deliveries.c.id).where(deliveries.c.idempotency_key == idempotency_key)
        return await self.uow.session.scalar(query) is not None

    async def add(self, delivery: Delivery) -> None:
        values = delivery.as_mapping()
        for unset in ("last_error", "provider_id", "sent_at", "claimed_at", "lease_expires_at"):
            values.pop(unset)  # as the insert always left them (NULL; claim and doubts default)
        values.pop("claim")
        values.pop("doubts")
        await self.uow.session.execute(sa.insert(deliveries).values(**values))
        self.uow.track(delivery)

    async def save(
        self,
        delivery: Delivery,
        *,
        claim: int | None = None,
        when: DeliveryStatus | None = None,
    ) -> bool:
        """Write the delivery's changes; False when the guard no longer holds (nothing written)."""
        query = sa.update(deliveries).where(deliveries.c.id == delivery.id)
        if claim is not None:
            query = query.where(
                deliveries.c.claim == claim, deliveries.c.status == DeliveryStatus.SENDING.value
            )
        if when is not None:
            query = query.where(deliveries.c.status == when.value)
        result = await self.uow.session.execute(query.values(**delivery.take_changes()))
        guarded = claim is not None or when is not None
        return not guarded or bool(getattr(result, "rowcount", 0))

    async def claim(self, delivery_id: uuid.UUID, now: datetime, expires: datetime) -> int | None:
        """Mark a ``pending`` delivery ``sending`` under its next claim number (None: it was not
        pending). Committed by the caller before the provider is called."""
        claim = await self.uow.session.scalar(
            sa.update(deliveries)
            .where(
                deliveries.c.id == delivery_id,
                deliveries.c.status == DeliveryStatus.PENDING.value,
            )
            .values(
                status=DeliveryStatus.SENDING.value,
                claim=deliveries.c.claim + 1,
                claimed_at=now,
                lease_expires_at=expires,
            )
            .returning(deliveries.c.claim)
        )
        return None if claim is None else int(claim)

    async def of_owners(
        self, owner_kind: str, owner_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Delivery status per owner for the API (channel, status, attempts, error; no address)."""
        if not owner_ids:
            return {}
        rows = await self.uow.session.execute(
            sa.select(
                deliveries.c.owner_id,
                deliveries.c.id,
                deliveries.c.channel,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.last_error,
                deliveries.c.next_attempt_at,
                deliveries.c.sent_at,
            )
            .where(deliveries.c.owner_kind == owner_kind, deliveries.c.owner_id.in_(owner_ids))
            .order_by(deliveries.c.created_at)
        )
        out: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for r in rows.mappings():
            item = dict(r)
            out.setdefault(item.pop("owner_id"), []).append(item)
        return out

    async def oldest_in(self, statuses: tuple[str, ...], limit: int) -> list[sa.Row[Any]]:
        """The oldest ``limit`` deliveries in ``statuses`` (for ops: no address, no text)."""
        query = (
            sa.select(
                deliveries.c.id,
                deliveries.c.owner_kind,
                deliveries.c.channel,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.last_error,
                deliveries.c.created_at,
            )
            .where(deliveries.c.status.in_(statuses))
            .order_by(deliveries.c.created_at, deliveries.c.id)
            .limit(limit)
        )
        return list((await self.uow.session.execute(query)).all())

    async def pending_for(self, owner_kind: str, owner_id: uuid.UUID) -> bool:
        found = await self.uow.session.scalar(
            sa.select(deliveries.c.id).where(
                deliveries.c.owner_kind == owner_kind,
                deliveries.c.owner_id == owner_id,
                deliveries.c.status == DeliveryStatus.PENDING.value,
            )
        )
        return found is not None

    async def statuses_of(self, owner_kind: str, owner_id: uuid.UUID) -> list[str]:
        query = sa.select(deliveries.c.status).where(
            deliveries.c.owner_kind == owner_kind, deliveries.c.owner_id == owner_id
        )
        return list((await self.uow.session.scalars(query)).all())
