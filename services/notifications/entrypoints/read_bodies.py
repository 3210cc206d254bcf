"""Typed bodies of notifications' read endpoints that return rows of the read models
(``service_layer.views``, ``teams.routing_report``) as they are.

They document the answer for clients (issue 18) without re-serializing it: the endpoints keep
returning the rows, so every field and its format stay as clients see them today. A field added to
a read model must be added here too; the gateway's schema fuzzing checks each answer against these.
No contact address and no message text: channel, status, attempts and the PHI-free last error.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ESCALATION_ID = "3f1c2b9e-6a7d-4e8f-9b1a-2c3d4e5f6a7b"
_EPISODE_ID = "9b2e4c1a-7f3d-4a6b-8c9d-0e1f2a3b4c5d"
_PATIENT_ID = "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
_PAGE_ID = "c4d5e6f7-0819-4a2b-9c3d-4e5f60718293"


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class PageDeliveryOut(BaseModel):
    """One attempt chain to reach a person over one channel."""

    id: uuid.UUID = Field(description="The delivery's id.")
    channel: str = Field(description="webhook | email | sms")
    status: str = Field(description="pending | sent | failed | rejected | cancelled")
    attempts: int = Field(description="Sends tried so far.")
    last_error: str | None = Field(description="The last failure's kind, PHI-free; null if none.")
    next_attempt_at: datetime | None = Field(description="When the next retry is due, if any.")
    sent_at: datetime | None = Field(description="When the provider accepted it.")


class PageOut(BaseModel):
    """A page: one clinician (or fallback) paged at one level of one escalation."""

    model_config = _examples(
        {
            "id": _PAGE_ID,
            "escalation_id": _ESCALATION_ID,
            "episode_id": _EPISODE_ID,
            "severity": "RED",
            "cycle": 0,
            "loop": 0,
            "level": 1,
            "target": "dr-oncall",
            "reason_codes": ["suicidal_ideation"],
            "status": "delivered",
            "attempts": 1,
            "created_at": "2026-12-04T09:15:00+00:00",
            "delivered_at": "2026-12-04T09:15:02+00:00",
            "deliveries": [
                {
                    "id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "channel": "webhook",
                    "status": "sent",
                    "attempts": 1,
                    "last_error": None,
                    "next_attempt_at": None,
                    "sent_at": "2026-12-04T09:15:02+00:00",
                }
            ],
        }
    )

    id: uuid.UUID = Field(description="The page's id.")
    escalation_id: uuid.UUID | None = Field(description="Null for pages made before policies.")
    episode_id: uuid.UUID = Field(description="The monitoring episode that raised it.")
    severity: str = Field(description="The episode's severity: RED | AMBER.")
    cycle: int = Field(description="How many times the policy started over after exhaustion.")
    loop: int = Field(description="Repeat of the policy's levels within the cycle.")
    level: int = Field(description="The policy level paged (1: first responder).")
    target: str = Field(description="Who was paged: a clinician's subject, or 'fallback'.")
    reason_codes: list[str] = Field(description="Why the episode was raised (codes, no text).")
    status: str = Field(description="pending | sending | delivered | undeliverable.")
    attempts: int = Field(description="Delivery attempts over all channels.")
    created_at: datetime = Field(description="When the level was paged.")
    delivered_at: datetime | None = Field(description="When a channel first accepted it.")
    deliveries: list[PageDeliveryOut] = Field(description="Each channel's delivery, in order.")


_ESCALATION = {
    "id": _ESCALATION_ID,
    "episode_id": _EPISODE_ID,
    "patient_id": _PATIENT_ID,
    "severity": "RED",
    "family": "safety",
    "reason_codes": ["suicidal_ideation"],
    "policy_key": "red-default",
    "policy_version": 0,
    "status": "acknowledged",
    "cycle": 0,
    "loop": 0,
    "level": 1,
    "next_step_at": "2026-12-04T09:45:00+00:00",
    "created_at": "2026-12-04T09:15:00+00:00",
    "acknowledged_at": "2026-12-04T09:17:30+00:00",
    "acknowledged_by": "dr-oncall",
    "acknowledged_via": "api",
    "resolved_at": None,
    "resolution": None,
}


class EscalationOut(BaseModel):
    """An escalation: the paging of clinicians for one monitoring episode, under one policy."""

    model_config = _examples(_ESCALATION)

    id: uuid.UUID = Field(description="The escalation's id.")
    episode_id: uuid.UUID = Field(description="The monitoring episode it pages for.")
    patient_id: uuid.UUID = Field(description="The patient.")
    severity: str = Field(description="RED | AMBER.")
    family: str | None = Field(description="The red-flag family, if the episode has one.")
    reason_codes: list[str] = Field(description="Why the episode was raised (codes, no text).")
    policy_key: str = Field(description="The escalation policy it follows.")
    policy_version: int = Field(description="The policy's version when it started (0: shipped).")
    status: str = Field(description="triggered | acknowledged | exhausted | resolved | superseded.")
    cycle: int = Field(description="How many times the policy started over after exhaustion.")
    loop: int = Field(description="Repeat of the policy's levels within the cycle.")
    level: int = Field(description="The level paged last (1: first responder).")
    next_step_at: datetime | None = Field(
        description="When the next level is paged (or, acknowledged, the re-page) if nobody acts."
    )
    created_at: datetime = Field(description="When it started.")
    acknowledged_at: datetime | None = Field(description="When a clinician acknowledged it.")
    acknowledged_by: str | None = Field(description="The clinician's subject who acknowledged.")
    acknowledged_via: str | None = Field(description="api | signed_link.")
    resolved_at: datetime | None = Field(description="When its episode was resolved.")
    resolution: str | None = Field(description="How the episode was resolved (a code).")


class EscalationDetailOut(EscalationOut):
    """The escalation with every page it made and each delivery's status, failures included."""

    model_config = _examples({**_ESCALATION, "pages": []})

    pages: list[PageOut] = Field(description="Oldest first.")


class OverrideCreatedOut(BaseModel):
    model_config = _examples({"id": "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"})

    id: uuid.UUID = Field(description="The override's id, to remove it.")


class RoutingProblem(BaseModel):
    """Why a policy cannot page a person; ``loc`` names the field, as a 422 does."""

    loc: list[str | int] = Field(description="Path to the field in the policy definition.")
    msg: str = Field(description="What is wrong.")
    type: str = Field(
        description="missing_schedule | no_contact_method | unknown_policy | unroutable_policy."
    )


class PolicyRouting(BaseModel):
    key: str = Field(description="The policy's key.")
    version: int = Field(description="Its current version (0: shipped default).")
    used_by: list[str] = Field(description="Routes to it: team:<key>:<severity> or shipped:<sev>.")
    routable: bool = Field(description="Whether it can page a person.")
    problems: list[RoutingProblem] = Field(description="Empty when routable.")


class TeamRouting(BaseModel):
    key: str = Field(description="The care team's key.")
    routes: dict[str, str] = Field(description="Severity -> escalation policy key.")
    default: bool = Field(description="Whether patients without a team use it.")


class RoutingReportOut(BaseModel):
    """Every policy, who routes to it and why it cannot page a person. No patient data."""

    model_config = _examples(
        {
            "unroutable_in_use": 0,
            "policies": [
                {
                    "key": "red-default",
                    "version": 0,
                    "used_by": ["shipped:RED"],
                    "routable": True,
                    "problems": [],
                }
            ],
            "teams": [{"key": "night", "routes": {"RED": "red-default"}, "default": True}],
        }
    )

    unroutable_in_use: int = Field(description="Policies in use that cannot page: alert if > 0.")
    policies: list[PolicyRouting] = Field(description="Every policy, shipped or stored.")
    teams: list[TeamRouting] = Field(description="Every care team.")


class DeliveryCount(BaseModel):
    kind: str = Field(description="page | message.")
    channel: str = Field(description="webhook | email | sms.")
    outcome: str = Field(description="pending | sent | failed | rejected | cancelled.")
    count: int = Field(description="Deliveries created since ``since`` with this outcome.")


class DeliveryHealthOut(BaseModel):
    """Deliveries counted by kind, channel and outcome: no patient, address or message."""

    model_config = _examples(
        {
            "since": "2026-12-03T09:00:00+00:00",
            "counts": [{"kind": "page", "channel": "webhook", "outcome": "sent", "count": 12}],
        }
    )

    since: datetime = Field(description="Counted from (default: 24 hours ago).")
    counts: list[DeliveryCount] = Field(description="By kind, channel and outcome.")
