"""Clinicians' personal notification rules: their own order of channels, each with a delay.

The escalation level decides *who* is paged; the person's rules decide *how*: one delivery per
channel (unique per page and channel, so exactly once), each due after its delay as a durable
timer, and cancelled when it comes due if the escalation was acknowledged or resolved since.
"""

from __future__ import annotations

from services.chassis.uow import UnitOfWork
from services.notifications.adapters import paging_config_repository as paging_config
from services.notifications.domain.routing import NotificationRules, Problem
from services.notifications.service_layer.teams import Unroutable


async def save(uow: UnitOfWork, subject: str, rules: NotificationRules, by: str) -> None:
    """Every rule's channel must be one of the clinician's contact methods (422 naming it)."""
    methods = {m["channel"] for m in await paging_config.contact_methods(uow, subject)}
    problems = [
        Problem(
            ("rules", i, "channel"), "has no contact method of this channel", "no_contact_method"
        )
        for i, rule in enumerate(rules.rules)
        if rule.channel not in methods
    ]
    if problems:
        raise Unroutable(problems)
    await paging_config.save_notification_rules(uow, subject, rules, by)


async def rules_of(uow: UnitOfWork, subject: str) -> NotificationRules | None:
    return await paging_config.notification_rules_of(uow, subject)
