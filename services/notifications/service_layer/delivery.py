"""Deliveries: one page or patient message on one channel, as close to exactly once as the
channel allows.

A delivery is a row (unique per owner and channel, with the provider's idempotency key) and a
durable timer, written in the transaction that decided to notify. When the timer fires, the
handler first CLAIMS the delivery in a transaction of its own, committed before the provider is
called: status ``sending``, the claim's number, a lease (``NOTIFICATIONS_DELIVERY_LEASE_S``) and an
in-doubt timer due when the lease ends. Then it calls the provider and records the outcome in the
timer's transaction. A crash between the two leaves a ``sending`` row: the re-fired delivery timer
leaves it alone, and when the lease has passed the in-doubt timer decides what the provider has:

* SMS: the body carries ``Ref <hash of the delivery id>``; the provider's message list is searched
  for it: found means sent (nothing resent), absent means resend. If the list cannot be read, a
  RED page is resent at once (a duplicate beats a miss), anything else is checked again later and
  resent once the checks are used up: a page is never dropped.
* E-mail and the pager webhook: resent with the same ``Message-ID`` / ``dedup_key``. PagerDuty
  and Message-ID-deduplicating mailboxes collapse it; plain SMTP can show it twice (at most once
  more per crash that hit that message in flight; docs/delivery-guarantees.md).

A call that failed after the request may have reached the provider (a timeout, a dropped
connection) is in doubt the same way on a channel with a list (SMS): looked up, not blindly
retried. Other transient failures are retried with backoff by a new timer per attempt, so every
attempt and its error stay visible; a refusal or the last failure is final and reported to the
owner, which decides what happens next (a page that reached nobody goes to the fallback pager).

Lock order (a deadlock here once stopped every delivery): the timer's transaction never writes
the delivery row before the claim's transaction has committed, and its outcome update is
conditional on still holding that claim; the in-doubt handler locks its timer, then the row.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from services.chassis.clock import wall_span
from services.chassis.errors import safe_reason
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.notifications.adapters.channels import (
    Channel,
    ChannelKind,
    DeliveryFailed,
    DeliveryRejected,
    OutboundMessage,
    Receipt,
    Verifiable,
    can_verify,
)
from services.notifications.adapters.delivery_repository import DeliveryRepository
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.domain.delivery import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

DELIVER = "deliver"
IN_DOUBT = "deliver_in_doubt"
DEFAULT_LEASE = timedelta(seconds=20)
MAX_BACKOFF = timedelta(minutes=5)


@dataclass(frozen=True)
class Deferred:
    """Not now: send at ``until`` instead (e.g. the patient's quiet hours began since)."""

    until: datetime


class DeliveryOwner(Protocol):
    """What a delivery delivers (a page, a patient message) and who hears how it went."""

    async def message_for(
        self, uow: UnitOfWork, delivery: Mapping[str, Any], *, in_doubt: bool = False
    ) -> OutboundMessage | Deferred | None:
        """The message to send now, ``Deferred`` to send it later, or None when it is no longer
        wanted (cancel it). ``in_doubt``: the message as it went when claimed, to look it up at
        the provider; not ``Deferred`` for timing (quiet hours), since it may be out already and
        a resend goes back through the usual path, which waits then."""

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
    repo = DeliveryRepository(uow)
    if await repo.known(idempotency_key):
        return None
    delivery = Delivery.new(
        owner_kind=owner_kind,
        owner_id=owner_id,
        channel=channel.value,
        idempotency_key=idempotency_key,
        due_at=due_at,
        now=uow.clock.now(),
    )
    await repo.add(delivery)
    await uow.schedule_timer(
        DELIVER, f"{delivery.id}:a0", due_at, {"delivery_id": str(delivery.id)}
    )
    return delivery.id


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … capped at 5 min: a provider outage is ridden out, a page not delayed
    by more than the cap once the provider is back."""
    return min(timedelta(seconds=10 * 2 ** (attempts - 1)), MAX_BACKOFF)


class Deliverer:
    """The ``deliver`` and ``deliver_in_doubt`` timer handlers."""

    def __init__(
        self,
        channels: Mapping[ChannelKind, Channel],
        owners: Mapping[str, DeliveryOwner],
        *,
        max_attempts: int,
        metrics: NotificationMetrics | None = None,
        lease: timedelta = DEFAULT_LEASE,
        claims: UnitOfWorkFactory | None = None,
    ) -> None:
        self._channels = dict(channels)
        self._owners = dict(owners)
        self._max_attempts = max_attempts
        # Set by the bootstrap once the runtime's meter provider exists.
        self.metrics = metrics or NotificationMetrics()
        self._lease = lease
        # The provider call ends before the lease does, so an in-doubt check never races a
        # call still under way in a live process (settings refuse timeouts above the lease).
        self._send_budget_s = lease.total_seconds() * 0.8
        self._claims = claims

    def bind(self, claims: UnitOfWorkFactory) -> None:
        """The unit-of-work factory claims are committed with (the runtime's, made after us)."""
        self._claims = claims

    async def __call__(self, timer: DueTimer, uow: UnitOfWork) -> None:
        repo = DeliveryRepository(uow)
        delivery = await repo.get(uuid.UUID(timer.payload["delivery_id"]))
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            # Final: a re-fired timer sends nothing twice. Sending: a claim is out (maybe a
            # crash mid-call); its in-doubt timer decides, not this one.
            return
        owner = self._owners[delivery.owner_kind]
        message = await owner.message_for(uow, delivery.as_mapping())
        if message is None:
            await self._finish(repo, delivery, owner, DeliveryStatus.CANCELLED)
            return
        if isinstance(message, Deferred):
            delivery.defer(message.until)
            await repo.save(delivery)
            await uow.schedule_timer(
                DELIVER,
                f"{delivery.id}:d{message.until.timestamp():.0f}",
                message.until,
                {"delivery_id": str(delivery.id)},
            )
            return
        channel = self._channels.get(ChannelKind(delivery.channel))
        if channel is None:
            await self._finish(
                repo, delivery, owner, DeliveryStatus.REJECTED, last_error="channel not configured"
            )
            return
        claim = await self._claim(delivery)
        if claim is None:
            return  # claimed elsewhere since we read it
        attempts = delivery.attempts + 1
        now = uow.clock.now()
        try:
            receipt = await self._send(channel, message)
        except DeliveryRejected as exc:
            self.metrics.delivery(delivery.channel, "failed")
            await self._finish(
                repo,
                delivery,
                owner,
                DeliveryStatus.REJECTED,
                claim=claim,
                attempts=attempts,
                last_error=safe_reason(exc),
            )
        except DeliveryFailed as exc:
            error = safe_reason(exc)[:300]
            if exc.maybe_sent and can_verify(channel):
                # The provider may have it: a blind retry could send it twice. Stay in doubt;
                # the claim's in-doubt timer looks it up when the lease ends.
                delivery.in_doubt(attempts, error)
                await _save(repo, delivery, claim)
                log.info(
                    "delivery in doubt after a failed call", extra={"channel": delivery.channel}
                )
                return
            if attempts >= self._max_attempts:
                self.metrics.delivery(delivery.channel, "failed")
                await self._finish(
                    repo,
                    delivery,
                    owner,
                    DeliveryStatus.FAILED,
                    claim=claim,
                    attempts=attempts,
                    last_error=error,
                )
                return
            self.metrics.delivery(delivery.channel, "retried")
            retry_at = now + wall_span(uow.clock, backoff(attempts))
            delivery.retry(attempts, error, retry_at)
            if not await _save(repo, delivery, claim):
                return
            await _settle_claim(uow, delivery, claim)
            await uow.schedule_timer(
                DELIVER,
                f"{delivery.id}:a{attempts}",
                retry_at,
                {"delivery_id": str(delivery.id)},
            )
            log.info(
                "delivery will be retried",
                extra={"channel": delivery.channel, "attempt": attempts},
            )
        else:
            self.metrics.delivery(delivery.channel, "sent")
            await self._finish(
                repo,
                delivery,
                owner,
                DeliveryStatus.SENT,
                claim=claim,
                attempts=attempts,
                provider_id=(receipt.provider_id or "")[:200] or None,
                sent_at=now,
                last_error=None,
            )

    async def in_doubt(self, timer: DueTimer, uow: UnitOfWork) -> None:
        """A claim's lease ended with the row still ``sending``: the process died (or stalled)
        between claiming and recording the outcome. Find out, or resend."""
        claim = int(timer.payload["claim"])
        repo = DeliveryRepository(uow)
        delivery = await repo.get(uuid.UUID(timer.payload["delivery_id"]), lock=True)
        if (
            delivery is None
            or delivery.status is not DeliveryStatus.SENDING
            or delivery.claim != claim
        ):
            return  # the outcome was recorded (the usual case), or a later claim owns it
        owner = self._owners[delivery.owner_kind]
        now = uow.clock.now()
        doubts = delivery.doubts + 1
        message = await owner.message_for(uow, delivery.as_mapping(), in_doubt=True)
        if message is None:
            # Nobody needs it any more (acknowledged, resolved, opted out): whether the
            # provider had it is moot.
            await self._finish(
                repo, delivery, owner, DeliveryStatus.CANCELLED, claim=claim, doubts=doubts
            )
            _log_doubt(delivery, "cancelled")
            return
        channel = self._channels.get(ChannelKind(delivery.channel))
        if isinstance(message, Deferred) or channel is None:
            await self._resend(uow, repo, delivery, doubts, claim, now)
            _log_doubt(delivery, "resent")
            return
        if can_verify(channel):
            try:
                receipt = await cast(Verifiable, channel).find_sent(
                    message, delivery.claimed_at or now
                )
            except DeliveryFailed as exc:
                checks = int(timer.payload.get("checks", 0)) + 1
                if message.severity != "RED" and checks < self._max_attempts:
                    await uow.schedule_timer(
                        IN_DOUBT,
                        f"{delivery.id}:c{claim}:v{checks}",
                        now + wall_span(uow.clock, backoff(checks)),
                        {"delivery_id": str(delivery.id), "claim": claim, "checks": checks},
                    )
                    _log_doubt(delivery, "check_later", error=safe_reason(exc))
                    return
                # A RED page that cannot be verified is sent again: a duplicate beats a miss.
                await self._resend(uow, repo, delivery, doubts, claim, now)
                _log_doubt(delivery, "unverified_resent", error=safe_reason(exc))
                return
            if receipt is not None:
                await self._finish(
                    repo,
                    delivery,
                    owner,
                    DeliveryStatus.SENT,
                    claim=claim,
                    doubts=doubts,
                    attempts=delivery.attempts + 1,
                    provider_id=(receipt.provider_id or "")[:200] or None,
                    sent_at=delivery.claimed_at or now,
                    last_error=None,
                )
                _log_doubt(delivery, "found")
                return
            if delivery.attempts >= self._max_attempts:
                # Not there after the last call that may have reached it: as any last failure.
                await self._finish(
                    repo, delivery, owner, DeliveryStatus.FAILED, claim=claim, doubts=doubts
                )
                _log_doubt(delivery, "failed")
                return
        await self._resend(uow, repo, delivery, doubts, claim, now)
        _log_doubt(delivery, "resent")

    async def _claim(self, delivery: Delivery) -> int | None:
        """Mark the delivery ``sending`` and arm its in-doubt timer, committed now, before the
        provider is called; the claim's number, or None when it was not ``pending``."""
        if self._claims is None:
            raise RuntimeError("Deliverer.bind() was not called: no unit of work for claims")
        async with self._claims() as claim_uow:
            now = claim_uow.clock.now()
            # Real seconds: the lease outlasts a provider call, whatever the clock's scale.
            expires = now + wall_span(claim_uow.clock, self._lease)
            claim = await DeliveryRepository(claim_uow).claim(delivery.id, now, expires)
            if claim is None:
                return None
            await claim_uow.schedule_timer(
                IN_DOUBT,
                f"{delivery.id}:c{claim}",
                expires,
                {"delivery_id": str(delivery.id), "claim": claim},
            )
            await claim_uow.commit()
        delivery.claimed(claim, now, expires)
        return claim

    async def _send(self, channel: Channel, message: OutboundMessage) -> Receipt:
        try:
            async with asyncio.timeout(self._send_budget_s):
                return await channel.send(message)
        except TimeoutError:
            raise DeliveryFailed(
                "provider call exceeded the delivery lease", maybe_sent=True
            ) from None

    async def _resend(
        self,
        uow: UnitOfWork,
        repo: DeliveryRepository,
        delivery: Delivery,
        doubts: int,
        claim: int,
        now: datetime,
    ) -> None:
        """Back to ``pending`` with a delivery timer due now: the usual path claims it again."""
        delivery.resend(now, doubts=doubts)
        if await _save(repo, delivery, claim):
            await uow.schedule_timer(
                DELIVER, f"{delivery.id}:r{claim}", now, {"delivery_id": str(delivery.id)}
            )

    async def _finish(
        self,
        repo: DeliveryRepository,
        delivery: Delivery,
        owner: DeliveryOwner,
        status: DeliveryStatus,
        *,
        claim: int | None = None,
        **values: Any,
    ) -> None:
        delivery.finish(status, **values)
        if await _save(repo, delivery, claim):
            await _settle_claim(repo.uow, delivery, claim)
            await owner.on_outcome(repo.uow, delivery.as_mapping(), status.value)


async def _save(repo: DeliveryRepository, delivery: Delivery, claim: int | None) -> bool:
    """Save the delivery; with ``claim``, only while that claim still holds it (``sending``):
    False when an in-doubt recovery took it over (then this outcome is not ours to record)."""
    if await repo.save(delivery, claim=claim):
        return True
    log.warning(
        "delivery outcome not recorded: its claim was taken over",
        extra={"channel": delivery.channel},
    )
    return False


async def _settle_claim(uow: UnitOfWork, delivery: Delivery, claim: int | None) -> None:
    """The claim's outcome is recorded (final, or back to pending for a retry): its in-doubt
    timer has nothing left to decide, so it is cancelled in the same transaction rather than
    left to fire after the lease and find the delivery settled."""
    if claim is not None:
        await uow.cancel_timer(IN_DOUBT, f"{delivery.id}:c{claim}")


def _log_doubt(delivery: Delivery, outcome: str, *, error: str | None = None) -> None:
    # Ids, channel and outcome only: no address, no body.
    log.warning(
        "delivery in doubt",
        extra={
            "delivery_id": str(delivery.id),
            "channel": delivery.channel,
            "claim": delivery.claim,
            "outcome": outcome,
            **({"error": error} if error else {}),
        },
    )


async def deliveries_of(
    uow: UnitOfWork, owner_kind: str, owner_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Delivery status per owner for the API (channel, status, attempts, error; no address)."""
    return await DeliveryRepository(uow).of_owners(owner_kind, owner_ids)
