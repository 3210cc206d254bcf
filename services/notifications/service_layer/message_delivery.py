"""A patient message's delivery: rendered when it fires, against the profile as it is then.

A patient who changed number gets it on the new one; one who opted out in between gets nothing;
one who switched channel gets it on the channel they prefer now; quiet hours as they are now
defer it. The text is never stored, logged or returned by the API; logs carry opaque ids.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.errors import PermanentError
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.channels import ChannelKind, OutboundMessage
from services.notifications.adapters.delivery_repository import DeliveryRepository
from services.notifications.adapters.patient_repository import MessageRepository, ProfileRepository
from services.notifications.domain import drafts, rendering
from services.notifications.domain.calendar import next_allowed
from services.notifications.domain.delivery import GAVE_UP, DeliveryStatus
from services.notifications.domain.preferences import Preferences, SkipReason, Status
from services.notifications.service_layer import feed
from services.notifications.service_layer.delivery import Deferred, enqueue

log = logging.getLogger(__name__)

OWNER_KIND = "message"
WAITING = (Status.SCHEDULED.value, Status.DEFERRED.value)


def idempotency_key(message_id: uuid.UUID, channel: str) -> str:
    """The provider's dedup key: one per message and channel, the same on every retry."""
    return f"taper-msg-{message_id}-{channel}"


class MessageOwner:
    """Builds a patient message when its delivery fires, and records how it went."""

    async def message_for(
        self, uow: UnitOfWork, delivery: Mapping[str, Any], *, in_doubt: bool = False
    ) -> OutboundMessage | Deferred | None:
        message = await _message(uow, delivery["owner_id"])
        if message is None or message["status"] not in WAITING:
            return None
        now = uow.clock.now()
        prefs = await _preferences(uow, message["patient_id"])
        if prefs is None:
            await _skip(uow, message, SkipReason.NO_CHANNEL)
            return None
        if prefs.opted_out_of(message["kind"]):
            await _skip(uow, message, SkipReason.OPTED_OUT)
            return None
        closes = drafts.expires_at(message["params"])
        if closes is not None and now >= closes:
            await _skip(uow, message, SkipReason.WINDOW_CLOSED)
            return None
        channel = delivery["channel"]
        address = prefs.reachable(channel)
        if address is None:
            await self._reroute(uow, message, prefs, now)
            return None
        allowed_at = (
            now if drafts.is_urgent(message["params"]) else next_allowed(now, prefs.quiet_hours)
        )
        # In doubt, quiet hours do not count: a claimed message may be out already, and only
        # the provider's list can tell (a resend comes back here and waits then). Deferring it
        # unlooked-up would resend one the patient already has.
        if allowed_at > now and not in_doubt:
            # Quiet hours as they are now (the patient may have moved timezone or changed them
            # since this was scheduled): wait, and decide again then.
            return Deferred(allowed_at)
        rendered = render_for(message["template"], message["params"], channel, prefs, now)
        return OutboundMessage(
            delivery_id=delivery["id"],
            channel=ChannelKind(channel),
            address=address,
            idempotency_key=delivery["idempotency_key"],
            subject=rendered.subject,
            body=rendered.body,
            details={"message_id": str(message["id"]), "kind": message["kind"]},
        )

    @staticmethod
    async def _reroute(
        uow: UnitOfWork, message: sa.RowMapping, prefs: Preferences, now: datetime
    ) -> None:
        """The patient dropped this channel (or its address) since: this delivery is cancelled
        and the message goes out on the channel they prefer now, still outside quiet hours."""
        other = prefs.first_reachable()
        if other is None:
            await _skip(uow, message, SkipReason.NO_CHANNEL)
            return
        created = await enqueue(
            uow,
            owner_kind=OWNER_KIND,
            owner_id=message["id"],
            channel=ChannelKind(other),
            idempotency_key=idempotency_key(message["id"], other),
            due_at=next_allowed(now, prefs.quiet_hours),
        )
        log.info(
            "patient message rerouted",
            extra={"message_id": str(message["id"]), "channel": other, "new": created is not None},
        )
        # enqueue found that channel already tried (the patient switched back and forth): the
        # message is not sent twice on it; on_outcome then marks it cancelled.

    async def on_outcome(self, uow: UnitOfWork, delivery: Mapping[str, Any], status: str) -> None:
        message = await _message(uow, delivery["owner_id"])
        if message is None:
            return
        if status == DeliveryStatus.SENT:
            await _update(
                uow,
                message,
                status=Status.SENT.value,
                sent_at=delivery["sent_at"] or uow.clock.now(),
            )
            await _audit(uow, message, "message.sent")
            await feed.announce(
                uow,
                "patient",
                "message.sent",
                message["patient_id"],
                {"message_id": str(message["id"]), "kind": message["kind"]},
            )
        elif status in GAVE_UP:
            await _update(uow, message, status=Status.FAILED.value)
            await _audit(uow, message, "message.failed")
        elif message["status"] in WAITING and not await DeliveryRepository(uow).pending_for(
            OWNER_KIND, message["id"]
        ):
            await _skip(uow, message, SkipReason.CANCELLED)  # cancelled, and no reroute pending
        log.info(
            "patient message delivery final",
            extra={
                "message_id": str(message["id"]),
                "kind": message["kind"],
                "channel": delivery["channel"],
                "outcome": status,
            },
        )


def render_for(
    template: str,
    params: dict[str, Any],
    channel: str,
    prefs: Preferences,
    now: datetime,
) -> rendering.Rendered:
    if channel not in ("sms", "email"):
        raise PermanentError(f"patient messages go by sms or email, not {channel}")
    return rendering.render(
        template,
        params,
        channel="sms" if channel == "sms" else "email",
        language=prefs.language,
        details=prefs.include_dose_details,
        timezone=prefs.timezone,
        now=now,
    )


async def _message(uow: UnitOfWork, message_id: uuid.UUID) -> sa.RowMapping | None:
    return await MessageRepository(uow).get(message_id)


async def _update(uow: UnitOfWork, message: sa.RowMapping, **values: Any) -> None:
    await MessageRepository(uow).update(message["id"], **values)


async def _skip(uow: UnitOfWork, message: sa.RowMapping, reason: SkipReason) -> None:
    await _update(uow, message, status=Status.SKIPPED.value, skip_reason=reason.value)
    log.info(
        "patient message skipped at send time",
        extra={"message_id": str(message["id"]), "kind": message["kind"], "reason": reason.value},
    )


async def _audit(uow: UnitOfWork, message: sa.RowMapping, action: str) -> None:
    await uow.audit(
        actor="notifications",
        actor_role="service",
        action=action,
        resource=f"message:{message['kind']}",
        patient_id=message["patient_id"],
    )


async def _preferences(uow: UnitOfWork, patient_id: uuid.UUID) -> Preferences | None:
    return await ProfileRepository(uow).preferences(patient_id)
