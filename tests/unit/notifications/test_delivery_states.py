"""The delivery aggregate (pure): its state machine, and that it saves only what changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain.delivery import (
    FINAL,
    Delivery,
    DeliveryStatus,
    ForbiddenDelivery,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def new() -> Delivery:
    return Delivery.new(
        owner_kind="page",
        owner_id=uuid.uuid4(),
        channel="sms",
        idempotency_key="taper-x-sms",
        due_at=NOW,
        now=NOW,
    )


def test_a_claimed_delivery_is_sent_and_records_only_its_changes() -> None:
    d = new()
    d.claimed(1, NOW, LATER)
    assert (d.status, d.claim, d.take_changes()) == (DeliveryStatus.SENDING, 1, {})
    d.finish(DeliveryStatus.SENT, attempts=1, sent_at=NOW)
    assert d.take_changes() == {
        "status": "sent",
        "next_attempt_at": None,
        "lease_expires_at": None,
        "attempts": 1,
        "sent_at": NOW,
    }
    assert d.as_mapping()["status"] == "sent"


def test_in_doubt_keeps_the_status_column_untouched() -> None:
    d = new()
    d.claimed(1, NOW, LATER)
    d.in_doubt(1, "Timeout: maybe sent")
    assert d.take_changes() == {"attempts": 1, "last_error": "Timeout: maybe sent"}
    d.resend(LATER, doubts=1)
    assert d.take_changes()["status"] == "pending"


def test_a_pending_delivery_cannot_be_sent_without_a_claim() -> None:
    d = new()
    with pytest.raises(ForbiddenDelivery):
        d.finish(DeliveryStatus.SENT, attempts=1)
    with pytest.raises(ForbiddenDelivery):
        d.retry(1, "x", LATER)
    d.finish(DeliveryStatus.CANCELLED)  # no longer wanted: allowed without a claim


@pytest.mark.parametrize("final", [DeliveryStatus.SENT, DeliveryStatus.CANCELLED])
def test_sent_and_cancelled_are_for_ever(final: DeliveryStatus) -> None:
    d = new()
    d.claimed(1, NOW, LATER)
    d.finish(final)
    changes = [
        lambda: d.defer(LATER),
        lambda: d.claimed(2, NOW, LATER),
        lambda: d.in_doubt(2, "x"),
        lambda: d.retry(2, "x", LATER),
        lambda: d.resend(LATER),
        lambda: d.retried_by_operator(NOW),
        *[lambda s=s: d.finish(s) for s in FINAL],
    ]
    for change in changes:
        with pytest.raises(ForbiddenDelivery):
            change()
    assert d.status is final


ACTIONS = st.lists(
    st.sampled_from(["defer", "claim", "doubt", "retry", "resend", "ops", *sorted(FINAL)]),
    max_size=12,
)


@given(ACTIONS)
def test_any_sequence_keeps_to_the_state_machine(actions: list[str]) -> None:
    """Sent and cancelled are for ever; only a claim leads to sent; a refused change leaves the
    delivery as it was."""
    d = new()
    claimed = False
    for action in actions:
        before = (d.status, dict(d.changes))
        try:
            if action == "defer":
                d.defer(LATER)
            elif action == "claim":
                d.claimed(d.claim + 1, NOW, LATER)
                claimed = True
            elif action == "doubt":
                d.in_doubt(d.attempts + 1, "x")
            elif action == "retry":
                d.retry(d.attempts + 1, "x", LATER)
            elif action == "resend":
                d.resend(LATER)
            elif action == "ops":
                d.retried_by_operator(NOW)
            else:
                d.finish(DeliveryStatus(action))
        except ForbiddenDelivery:
            assert (d.status, d.changes) == before
            continue
        assert before[0] not in (DeliveryStatus.SENT, DeliveryStatus.CANCELLED), action
        if d.status is DeliveryStatus.SENT:
            assert claimed and before[0] is DeliveryStatus.SENDING
