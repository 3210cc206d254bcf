"""Deliveries for ops (``taperctl deliveries``): list the ones that gave up, retry one.

A listing shows ids, channel, what it delivers (page or message), status, attempts and the
error's class: never an address, a message text or a patient id. A retry makes a failed or
rejected delivery pending again with its attempts reset and arms a new ``deliver`` timer (a new
key, so the timers that already fired stay as they were); the provider's idempotency key is
unchanged, so a provider that did accept it after all collapses the resend. The owner hears the
new outcome as usual (a page that is sent now becomes delivered). The retry is audited.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.chassis.uow import UnitOfWorkFactory
from services.notifications.adapters.delivery_repository import DeliveryRepository
from services.notifications.domain import delivery as states
from services.notifications.service_layer.delivery import DELIVER

RETRYABLE: tuple[str, ...] = tuple(status.value for status in states.RETRYABLE)


async def list_deliveries(
    uow_factory: UnitOfWorkFactory,
    statuses: tuple[str, ...] = RETRYABLE,
    limit: int = 500,
) -> tuple[list[dict[str, Any]], bool]:
    """The oldest ``limit`` deliveries in ``statuses``, and whether more exist (the operator is
    told: never a silently cut list)."""
    async with uow_factory() as uow:
        rows = await DeliveryRepository(uow).oldest_in(statuses, limit + 1)
    more = len(rows) > limit
    return [
        {
            "id": str(r.id),
            "owner": r.owner_kind,
            "channel": r.channel,
            "status": r.status,
            "attempts": r.attempts,
            # safe_reason() text is "Class: our message": ops gets the class.
            "last_error_class": (r.last_error or "").split(":", 1)[0],
            "created_at": r.created_at.isoformat(),
        }
        for r in rows[:limit]
    ], more


async def retry_delivery(
    uow_factory: UnitOfWorkFactory, delivery_id: uuid.UUID, actor: str
) -> bool:
    """False when no failed or rejected delivery has that id."""
    async with uow_factory() as uow:
        now = uow.clock.now()
        repo = DeliveryRepository(uow)
        delivery = await repo.get(delivery_id)
        if delivery is None or delivery.status not in RETRYABLE:
            return False
        seen = delivery.status
        delivery.retried_by_operator(now)
        if not await repo.save(delivery, when=seen):
            return False  # retried (or changed) by someone else since
        channel = delivery.channel
        await uow.schedule_timer(
            DELIVER,
            f"{delivery_id}:ops{now.timestamp():.0f}",
            now,
            {"delivery_id": str(delivery_id)},
        )
        await uow.audit(
            actor=actor,
            actor_role="operator",
            action="delivery.retried",
            resource=f"delivery:{channel}",
            patient_id=None,
        )
        await uow.commit()
    return True
