"""A delivery: one page or patient message on one channel, and the states it goes through. Pure.

::

    pending ──claim──▶ sending ──▶ sent | failed | rejected | cancelled
       │  ▲               │
       │  └── retry / in-doubt resend ──┘
       └──▶ cancelled | rejected (not wanted any more; channel not configured)
    failed | rejected ──operator retry──▶ pending

A claim (``sending``) is committed before the provider is called; while it holds, only its own
outcome may be recorded (service_layer/delivery.py). A forbidden change raises
``ForbiddenDelivery``; a sent or cancelled delivery never changes again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed: the provider may have it
    SENT = "sent"
    FAILED = "failed"  # gave up after retries
    REJECTED = "rejected"  # the provider refused it
    CANCELLED = "cancelled"  # not wanted any more


FINAL = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.CANCELLED,
    }
)
GAVE_UP = frozenset({DeliveryStatus.FAILED, DeliveryStatus.REJECTED})
RETRYABLE = (DeliveryStatus.FAILED, DeliveryStatus.REJECTED)  # an operator may retry these

_ALLOWED: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    # Claimed; or not wanted any more, or no channel for it.
    DeliveryStatus.PENDING: frozenset(
        {
            DeliveryStatus.SENDING,
            DeliveryStatus.CANCELLED,
            DeliveryStatus.REJECTED,
        }
    ),
    # The claim's outcome, or a retry or a resend (back to pending).
    DeliveryStatus.SENDING: frozenset(DeliveryStatus) - {DeliveryStatus.SENDING},
    DeliveryStatus.SENT: frozenset(),
    # An operator's retry (``taperctl deliveries retry``).
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.REJECTED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.CANCELLED: frozenset(),
}


class ForbiddenDelivery(Exception):
    """A change the delivery's state does not allow (a defect: callers check the state first)."""

    def __init__(self, status: DeliveryStatus, wanted: DeliveryStatus) -> None:
        super().__init__(f"delivery is {status.value}, cannot become {wanted.value}")


@dataclass(eq=False)
class Delivery:
    """The aggregate. It publishes no events (its owner hears the outcome); it remembers which
    fields changed so that saving writes those only, under the claim that made them."""

    id: uuid.UUID
    owner_kind: str
    owner_id: uuid.UUID
    channel: str
    idempotency_key: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    provider_id: str | None
    created_at: datetime
    sent_at: datetime | None
    claim: int
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    doubts: int
    changes: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def new(
        cls,
        *,
        owner_kind: str,
        owner_id: uuid.UUID,
        channel: str,
        idempotency_key: str,
        due_at: datetime,
        now: datetime,
    ) -> Delivery:
        return cls(
            id=uuid.uuid4(),
            owner_kind=owner_kind,
            owner_id=owner_id,
            channel=channel,
            idempotency_key=idempotency_key,
            status=DeliveryStatus.PENDING,
            attempts=0,
            last_error=None,
            next_attempt_at=due_at,
            provider_id=None,
            created_at=now,
            sent_at=None,
            claim=0,
            claimed_at=None,
            lease_expires_at=None,
            doubts=0,
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def defer(self, until: datetime) -> None:
        """Not now (the patient's quiet hours began since): send at ``until``."""
        self._expect(DeliveryStatus.PENDING)
        self._change(None, next_attempt_at=until)

    def claimed(self, claim: int, at: datetime, lease_expires_at: datetime) -> None:
        """The claim committed before the provider call (its own transaction wrote it)."""
        self._move(DeliveryStatus.SENDING)
        self.claim, self.claimed_at, self.lease_expires_at = claim, at, lease_expires_at

    def in_doubt(self, attempts: int, error: str) -> None:
        """A call failed after the provider may have had it: still ``sending``, looked up later."""
        self._expect(DeliveryStatus.SENDING)
        self._change(None, attempts=attempts, last_error=error)

    def retry(self, attempts: int, error: str, at: datetime) -> None:
        self._expect(DeliveryStatus.SENDING)
        self._change(
            DeliveryStatus.PENDING, attempts=attempts, last_error=error, next_attempt_at=at
        )

    def resend(self, at: datetime, **values: Any) -> None:
        """In doubt and not found (or not verifiable): back to ``pending``, due ``at``."""
        self._expect(DeliveryStatus.SENDING)
        self._change(DeliveryStatus.PENDING, **values, next_attempt_at=at)

    def finish(self, status: DeliveryStatus, **values: Any) -> None:
        """Final: sent, failed, rejected or cancelled (``values``: attempts, error, receipt)."""
        if status not in FINAL:
            raise ForbiddenDelivery(self.status, status)
        self._change(status, next_attempt_at=None, lease_expires_at=None, **values)

    def retried_by_operator(self, now: datetime) -> None:
        """Failed or rejected: pending again, its attempts reset (the idempotency key stays)."""
        if self.status not in RETRYABLE:
            raise ForbiddenDelivery(self.status, DeliveryStatus.PENDING)
        self._change(DeliveryStatus.PENDING, attempts=0, next_attempt_at=now)

    def as_mapping(self) -> dict[str, Any]:
        """The delivery as its owner reads it (``DeliveryOwner``)."""
        values = {name: getattr(self, name) for name in _COLUMNS}
        return values | {"status": self.status.value}

    def take_changes(self) -> dict[str, Any]:
        changes, self.changes = self.changes, {}
        return changes

    def _change(self, to: DeliveryStatus | None, **values: Any) -> None:
        """Move to ``to`` (None: the status stays as it is) and set ``values``."""
        if to is not None:
            self._move(to)
            self.changes["status"] = to.value
        for name, value in values.items():
            setattr(self, name, value)
            self.changes[name] = value

    def pull_events(self) -> list[Any]:
        return []

    def _expect(self, status: DeliveryStatus) -> None:
        if self.status is not status:
            raise ForbiddenDelivery(self.status, status)

    def _move(self, to: DeliveryStatus) -> None:
        if to not in _ALLOWED[self.status]:
            raise ForbiddenDelivery(self.status, to)
        self.status = to


_COLUMNS = tuple(f for f in Delivery.__dataclass_fields__ if f != "changes")
