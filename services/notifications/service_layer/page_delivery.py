"""A page's delivery: the message on the wire for a page, and what its outcome means.

A page still wanted (its escalation still paging, the same cycle) goes out in the catalogue's
words (domain/catalogue.py ``pages``); SMS and email carry no patient id and no reasons. Sent:
the page is delivered. Every channel gave up: the page is undeliverable and, unless it was the
fallback pager's already, the organisation's pager gets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.notifications.adapters import paging_config_repository as paging_config
from services.notifications.adapters.ack_links import AckClaim, AckLinks
from services.notifications.adapters.channels import ChannelKind, OutboundMessage
from services.notifications.adapters.delivery_repository import DeliveryRepository
from services.notifications.adapters.escalation_repository import (
    EscalationRepository,
    PageRepository,
)
from services.notifications.domain.delivery import GAVE_UP, DeliveryStatus
from services.notifications.domain.escalation import Step
from services.notifications.domain.paging import PAGING, PageStatus
from services.notifications.domain.rendering import render_page
from services.notifications.service_layer.escalations import FALLBACK, OWNER_KIND, page_target


class PageOwner:
    """Turns a page delivery into the message on the wire, and acts on how it went."""

    def __init__(self, links: AckLinks, *, fallback_routing_key: str) -> None:
        self._links = links
        self._fallback_routing_key = fallback_routing_key

    async def message_for(
        self, uow: UnitOfWork, row: Mapping[str, Any], *, in_doubt: bool = False
    ) -> OutboundMessage | None:
        # A page has no timing of its own to wait for: the same message in doubt or not.
        page = await PageRepository(uow).get(row["owner_id"])
        esc = await EscalationRepository(uow).get(page["escalation_id"])
        if esc.status not in PAGING or esc.cycle != page["cycle"]:
            return None  # acknowledged, resolved or superseded since: nobody needs this page
        channel = ChannelKind(row["channel"])
        address = await self._address(uow, page["target"], channel)
        if address is None:
            return None  # the contact method was removed since
        # SMS and email leave our systems: no patient id, no reasons (minimum necessary); the
        # clinician opens the console. The pager webhook (a BAA-covered provider) gets the codes.
        words = render_page(
            severity=page["severity"], level=page["level"], levels=len(esc.policy.levels)
        )
        links: tuple[tuple[str, str], ...] = ()
        if page["target"] != FALLBACK:
            # Valid across re-pages: a clinician answering an earlier page is still answering.
            claim = AckClaim(esc.id, page["target"])
            links = ((self._links.url(claim, uow.clock.now()), words.acknowledge),)
        details: dict[str, Any] = {}
        if channel is ChannelKind.WEBHOOK:
            details = {
                "episode_id": str(page["episode_id"]),
                "patient_id": str(page["patient_id"]),
                "level": page["level"],
                "loop": page["loop"],
                "cycle": page["cycle"],
                "reasons": list(page["reason_codes"]),
            }
        return OutboundMessage(
            delivery_id=row["id"],
            channel=channel,
            address=address,
            idempotency_key=row["idempotency_key"],
            subject=words.subject,
            body=words.body,
            severity=page["severity"],
            details=details,
            links=links,
        )

    async def on_outcome(self, uow: UnitOfWork, row: Mapping[str, Any], status: str) -> None:
        pages = PageRepository(uow)
        page = await pages.get(row["owner_id"])
        attempts = page["attempts"] + int(row["attempts"] or 0)
        if status == DeliveryStatus.SENT:
            values: dict[str, Any] = {"attempts": attempts}
            if page["status"] != PageStatus.DELIVERED:
                values |= {"status": PageStatus.DELIVERED.value, "delivered_at": uow.clock.now()}
            await pages.update(page["id"], **values)
            await _audit_page(uow, "page.sent", row, page)
            return
        await pages.update(page["id"], attempts=attempts)
        if status == DeliveryStatus.CANCELLED:
            return
        await _audit_page(uow, f"page.{status}", row, page)
        statuses = await DeliveryRepository(uow).statuses_of(OWNER_KIND, page["id"])
        if statuses and all(s in GAVE_UP for s in statuses):
            await pages.update(page["id"], status=PageStatus.UNDELIVERABLE.value)
            if page["target"] != FALLBACK:
                # Nobody could be reached on any channel: the organisation's pager gets it.
                esc = await EscalationRepository(uow).get(page["escalation_id"])
                step = Step(page["cycle"], page["loop"], page["level"])
                now = uow.clock.now()
                await page_target(uow, esc, step, FALLBACK, now, cause="undeliverable")

    async def _address(self, uow: UnitOfWork, target: str, channel: ChannelKind) -> str | None:
        if target == FALLBACK:
            return self._fallback_routing_key if channel is ChannelKind.WEBHOOK else None
        for method in await paging_config.contact_methods(uow, target):
            if method["channel"] == channel.value:
                return method["address"]
        return None


async def _audit_page(
    uow: UnitOfWork, action: str, delivery: Mapping[str, Any], page: sa.RowMapping
) -> None:
    await uow.audit(
        actor="notifications",
        actor_role="service",
        action=action,
        resource=f"page:{delivery['channel']}",
        patient_id=page["patient_id"],
    )
