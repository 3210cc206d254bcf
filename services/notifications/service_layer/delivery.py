"""Deliveries: one page or patient message on one channel, sent exactly once.

A delivery is a row (unique per owner and channel, with the provider's idempotency key) and a
durable timer, written in the transaction that decided to notify. The timer handler sends and
records the outcome in the same transaction that marks the timer fired: a crash after the provider
accepted but before the commit re-fires the timer and resends with the same idempotency key,
which the provider collapses (PagerDuty ``dedup_key``, Twilio idempotency token, the same SMTP
``Message-ID``). Transient failures are retried with backoff by a new timer per attempt, so every
attempt and its error stay visible; a refusal or the last failure is final and reported to the
owner, which decides what happens next (a page that reached nobody goes to the fallback pager).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from services.chassis.errors import safe_reason
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.channels import (
    Channel,
    ChannelKind,
    DeliveryFailed,
    DeliveryRejected,
    OutboundMessage,
)
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.orm import deliveries

log = logging.getLogger(__name__)

DELIVER = "deliver"
MAX_BACKOFF = timedelta(minutes=5)
TERMINAL = ("sent", "failed", "rejected", "cancelled")


@dataclass(frozen=True)
class Deferred:
    """Not now: send at ``until`` instead (e.g. the patient's quiet hours began since)."""

    until: datetime


class DeliveryOwner(Protocol):
    """What a delivery delivers (a page, a patient message) and who hears how it went."""

    async def message_for(
        self, uow: UnitOfWork, delivery: sa.RowMapping
    ) -> OutboundMessage | Deferred | None:
        """The message to send now, ``Deferred`` to send it later, or None when it is no longer
        wanted (cancel it)."""

    async def on_outcome(self, uow: UnitOfWork, delivery: Mapping[str, Any], status: str) -> None:
        """Called once a delivery is final: sent, failed, rejected or cancelled."""


async def enqueue(
    uow: UnitOfWork,
    *,
    owner_kind: str,
    owner_id: uuid.UUID,
    channel: ChannelKind,
    idempotency_key: str,
    due_at: datetime,
) -> uuid.UUID | None:
    """Record the intent to deliver and arm its timer; None when it was already recorded."""
    exists = await uow.session.scalar(
        sa.select(deliveries.c.id).where(deliveries.c.idempotency_key == idempotency_key)
    )
    if exists is not None:
        return None
    delivery_id = uuid.uuid4()
    await uow.session.execute(
        sa.insert(deliveries).values(
            id=delivery_id,
            owner_kind=owner_kind,
            owner_id=owner_id,
            channel=channel.value,
            idempotency_key=idempotency_key,
            status="pending",
            attempts=0,
            next_attempt_at=due_at,
            created_at=uow.clock.now(),
        )
    )
    await uow.schedule_timer(
        DELIVER, f"{delivery_id}:a0", due_at, {"delivery_id": str(delivery_id)}
    )
    return delivery_id


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … capped at 5 min: a provider outage is ridden out, a page not delayed
    by more than the cap once the provider is back."""
    return min(timedelta(seconds=10 * 2 ** (attempts - 1)), MAX_BACKOFF)


class Deliverer:
    """The ``deliver`` timer handler."""

    def __init__(
        self,
        channels: Mapping[ChannelKind, Channel],
        owners: Mapping[str, DeliveryOwner],
        *,
        max_attempts: int,
        metrics: NotificationMetrics | None = None,
    ) -> None:
        self._channels = dict(channels)
        self._owners = dict(owners)
        self._max_attempts = max_attempts
        # Set by the bootstrap once the runtime's meter provider exists.
        self.metrics = metrics or NotificationMetrics()

    async def __call__(self, timer: DueTimer, uow: UnitOfWork) -> None:
        delivery_id = uuid.UUID(timer.payload["delivery_id"])
        row = (
            (await uow.session.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)))
            .mappings()
            .first()
        )
        if row is None or row["status"] != "pending":
            return  # already final: a re-fired timer sends nothing twice
        owner = self._owners[row["owner_kind"]]
        message = await owner.message_for(uow, row)
        if message is None:
            await self._finish(uow, row, owner, "cancelled", {})
            return
        if isinstance(message, Deferred):
            await self._update(uow, row, {"next_attempt_at": message.until})
            await uow.schedule_timer(
                DELIVER,
                f"{delivery_id}:d{message.until.timestamp():.0f}",
                message.until,
                {"delivery_id": str(delivery_id)},
            )
            return
        channel = self._channels.get(ChannelKind(row["channel"]))
        if channel is None:
            await self._finish(
                uow, row, owner, "rejected", {"last_error": "channel not configured"}
            )
            return
        attempts = row["attempts"] + 1
        now = uow.clock.now()
        try:
            receipt = await channel.send(message)
        except DeliveryRejected as exc:
            self.metrics.delivery(row["channel"], "failed")
            await self._finish(
                uow, row, owner, "rejected", {"attempts": attempts, "last_error": safe_reason(exc)}
            )
        except DeliveryFailed as exc:
            error = safe_reason(exc)[:300]
            if attempts >= self._max_attempts:
                self.metrics.delivery(row["channel"], "failed")
                await self._finish(
                    uow, row, owner, "failed", {"attempts": attempts, "last_error": error}
                )
                return
            self.metrics.delivery(row["channel"], "retried")
            retry_at = now + backoff(attempts)
            await self._update(
                uow, row, {"attempts": attempts, "last_error": error, "next_attempt_at": retry_at}
            )
            await uow.schedule_timer(
                DELIVER, f"{delivery_id}:a{attempts}", retry_at, {"delivery_id": str(delivery_id)}
            )
            log.info(
                "delivery will be retried", extra={"channel": row["channel"], "attempt": attempts}
            )
        else:
            self.metrics.delivery(row["channel"], "sent")
            await self._finish(
                uow,
                row,
                owner,
                "sent",
                {
                    "attempts": attempts,
                    "provider_id": (receipt.provider_id or "")[:200] or None,
                    "sent_at": now,
                    "last_error": None,
                },
            )

    async def _finish(
        self,
        uow: UnitOfWork,
        row: sa.RowMapping,
        owner: DeliveryOwner,
        status: str,
        values: dict[str, Any],
    ) -> None:
        values = {"status": status, "next_attempt_at": None, **values}
        await self._update(uow, row, values)
        await owner.on_outcome(uow, {**row, **values}, status)

    @staticmethod
    async def _update(uow: UnitOfWork, row: sa.RowMapping, values: dict[str, Any]) -> None:
        await uow.session.execute(
            sa.update(deliveries).where(deliveries.c.id == row["id"]).values(**values)
        )


async def deliveries_of(
    uow: UnitOfWork, owner_kind: str, owner_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Delivery status per owner for the API (channel, status, attempts, error; no address)."""
    if not owner_ids:
        return {}
    rows = await uow.session.execute(
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
