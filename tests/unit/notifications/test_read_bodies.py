"""The documented bodies of the reads that return rows as they are (read_bodies.py) match what
those reads answer: every key documented, nothing documented that is not sent, every value of the
documented type. A field added to a read model without its documented twin fails here."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter

from services.chassis.auth import Role
from services.notifications.entrypoints.read_bodies import (
    DeliveryHealthOut,
    EscalationDetailOut,
    EscalationOut,
    PageDeliveryOut,
    PageOut,
    RoutingReportOut,
)
from tests.unit.notifications.test_escalations import (
    PATIENT,
    Stack,
    auth,
    on_call_setup,
    threshold,
)


def conforms(model: type[BaseModel], body: Any) -> None:
    TypeAdapter(model).validate_python(body)  # every value of the documented type
    assert set(body) == set(model.model_fields), model.__name__  # no key more, none less


async def test_escalations_pages_routing_and_delivery_health_are_answered_as_documented(
    stack: Stack,
    client: httpx.AsyncClient,
) -> None:
    await on_call_setup(client, stack)
    stack.sms.fail_next = 1  # a delivery with an error and a retry time
    await stack.deliver(threshold("RED"))
    clinician = auth(stack, "dr-ada", panel=[PATIENT])
    ops = auth(stack, "ops-1", Role.OPS)

    [listed] = (await client.get("/api/notifications/escalations", headers=clinician)).json()
    conforms(EscalationOut, listed)
    [of_patient] = (
        await client.get(f"/api/notifications/patients/{PATIENT}/escalations", headers=clinician)
    ).json()
    conforms(EscalationOut, of_patient)

    detail = (
        await client.get(f"/api/notifications/escalations/{listed['id']}", headers=clinician)
    ).json()
    conforms(EscalationDetailOut, detail)
    [page] = detail["pages"]
    conforms(PageOut, page)
    assert page["deliveries"], "a page with its deliveries"
    for delivery in page["deliveries"]:
        conforms(PageDeliveryOut, delivery)
    [paged] = (
        await client.get(f"/api/notifications/patients/{PATIENT}/pages", headers=clinician)
    ).json()
    conforms(PageOut, paged)

    conforms(
        RoutingReportOut,
        (await client.get("/api/notifications/ops/routing", headers=ops)).json(),
    )
    health = (await client.get("/api/notifications/ops/delivery-health", headers=ops)).json()
    conforms(DeliveryHealthOut, health)
    assert health["counts"], "deliveries counted"
