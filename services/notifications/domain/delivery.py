"""A delivery: one page or patient message on one channel, and the states it goes through. Pure.

::

    pending ──claim──▶ sending ──▶ sent | failed | rejected | cancelled
       │  ▲               │
       │  └── retry / in-doubt resend ──┘
       └──▶ cancelled | rejected (not wanted any more; channel not configured)

A claim (``sending``) is committed before the provider is called; while it holds, only its own
outcome may be recorded (service_layer/delivery.py). A forbidden change raises
``ForbiddenDelivery``; a final delivery never changes again.
"""

from __future__ import annotations

from enum import StrEnum


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
