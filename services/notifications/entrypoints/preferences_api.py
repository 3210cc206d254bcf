"""Patients' notification preferences and message history, under ``/api/notifications``.

The patient, or a clinician with the patient on their panel, reads and sets how and when the
patient hears from us; every access is audited. Contact details are PHI: they are returned only
by the preferences endpoint, never in the message history, and never echoed in a 422 (the chassis
returns loc/msg/type only). The history shows what happened to each message, not what it said.
"""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime, time
from functools import cache
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict

from services.chassis.auth import CurrentPrincipal
from services.chassis.dates import PlausibleAwareDatetime
from services.chassis.entrypoint import PatientAccess, patient_access
from services.chassis.errors import FieldRefusal, NotFound
from services.chassis.openapi import name_operations
from services.chassis.pagination import (
    SINCE_DOC,
    UNTIL_DOC,
    PageQuery,
    link_next,
    paginated,
)
from services.chassis.runtime import ServiceRuntime
from services.notifications.domain import preferences
from services.notifications.domain.calendar import DailyWindow
from services.notifications.domain.preferences import InvalidPreferences, Preferences
from services.notifications.service_layer import patient_messages

RESOURCE_PREFERENCES = "notification_preferences"
RESOURCE_MESSAGES = "patient_message"
# Files in the zoneinfo tree that are not places: "localtime" follows the server's setting.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def _known_zone(value: str) -> str:
    if value not in _zones():
        raise ValueError("unknown IANA timezone (e.g. America/New_York)")
    return value


def _email(value: str) -> str:
    if not preferences.EMAIL.fullmatch(value):
        raise ValueError("not an email address we can send to")
    return value


def _e164(value: str) -> str:
    if not preferences.E164.fullmatch(value):
        raise ValueError("not an E.164 number: + then country code and number, up to 15 digits")
    return value


Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_zone)]
# pydantic's EmailStr needs email-validator, which is not a dependency; the domain's conservative
# pattern is the one rule for both the API and stored profiles.
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email)]
Phone = Annotated[str, StringConstraints(max_length=16), AfterValidator(_e164)]
WallTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
MessageStatus = Literal["scheduled", "deferred", "sent", "skipped", "failed"]
OptOut = Literal["all", "dose_changed", "check_in_due", "cohort_assigned"]


class QuietHoursIo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: WallTime = Field(description="Local time quiet hours begin (HH:MM).")
    end: WallTime = Field(
        description="Local time they end (HH:MM); before start means overnight, equal means none."
    )


def _default_quiet() -> QuietHoursIo:
    window = preferences.defaults().quiet_hours.window
    return QuietHoursIo(start=f"{window.start:%H:%M}", end=f"{window.end:%H:%M}")


_PREFERENCES: JsonDict = {
    "timezone": "America/Chicago",
    "language": "en",
    "channels": ["sms"],
    "email": None,
    "phone": "+15551234567",
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    "opted_out": ["cohort_assigned"],
    "include_dose_details": False,
}


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_PREFERENCES]})

    timezone: Timezone = Field(description="IANA timezone; quiet hours and dates use it.")
    language: Literal["en"] = Field("en", description="Message language (en).")
    channels: list[Literal["sms", "email"]] = Field(
        max_length=2, description="In order of preference; empty: no messages at all."
    )
    email: Email | None = Field(None, description="Where e-mail goes, if email is a channel.")
    phone: Phone | None = Field(default=None, description="E.164, e.g. +15551234567.")
    quiet_hours: QuietHoursIo = Field(
        default_factory=_default_quiet,
        description="Default 21:00-08:00 local, after the US TCPA calling hours "
        "(47 CFR 64.1200(c)(1)); configurable.",
    )
    opted_out: list[OptOut] = Field(
        default_factory=list, max_length=4, description='Message kinds, or ["all"].'
    )
    include_dose_details: bool = Field(
        default=False,
        description="State drug and dose in messages (off: 'open the app to see your dose').",
    )


class PreferencesOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_PREFERENCES,
                    "patient_id": "5d6e7f80-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
                    "updated_at": "2026-12-01T09:00:00Z",
                }
            ]
        }
    )

    patient_id: uuid.UUID = Field(description="The patient.")
    timezone: str = Field(description="IANA time zone.")
    language: str = Field(description="Message language.")
    channels: list[str] = Field(description="sms, email, in order of preference.")
    email: str | None = Field(description="Where e-mail goes, if chosen.")
    phone: str | None = Field(description="E.164 number for SMS.")
    quiet_hours: QuietHoursIo = Field(description="Local hours without messages.")
    opted_out: list[str] = Field(description="Message kinds not wanted (or all).")
    include_dose_details: bool = Field(description="Whether messages name the dose.")
    updated_at: datetime = Field(description="When last changed.")


class DeliveryOut(BaseModel):
    channel: str = Field(description="sms or email.")
    status: str = Field(description="pending | sent | failed | rejected | cancelled.")
    attempts: int = Field(description="Sends tried.")
    last_error: str | None = Field(description="The last failure's kind (no PHI).")
    sent_at: datetime | None = Field(description="When the provider accepted it.")


class MessageOut(BaseModel):
    """What happened to a message; deliberately without its text or the address it went to."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    "kind": "dose_changed",
                    "status": "sent",
                    "skip_reason": None,
                    "send_at": "2026-12-14T14:00:00Z",
                    "sent_at": "2026-12-14T14:00:03Z",
                    "created_at": "2026-12-14T06:00:00Z",
                    "deliveries": [
                        {
                            "channel": "sms",
                            "status": "sent",
                            "attempts": 1,
                            "last_error": None,
                            "sent_at": "2026-12-14T14:00:03Z",
                        }
                    ],
                }
            ]
        }
    )

    id: uuid.UUID = Field(description="The message's id.")
    kind: str = Field(description="dose_changed | check_in_due | cohort_assigned ...")
    status: str = Field(description="scheduled | deferred | sent | skipped | failed.")
    skip_reason: str | None = Field(description="Why skipped (a code).")
    send_at: datetime = Field(description="When it is (or was) due.")
    sent_at: datetime | None = Field(description="When a channel accepted it.")
    created_at: datetime = Field(description="When it was created.")
    deliveries: list[DeliveryOut] = Field(description="Each channel's delivery.")


def _preferences_out(row: dict[str, Any]) -> PreferencesOut:
    start: time = row["quiet_start"]
    end: time = row["quiet_end"]
    return PreferencesOut(
        patient_id=row["patient_id"],
        timezone=row["timezone"],
        language=row["language"],
        channels=list(row["channels"]),
        email=row["email"],
        phone=row["phone"],
        quiet_hours=QuietHoursIo(start=f"{start:%H:%M}", end=f"{end:%H:%M}"),
        opted_out=list(row["opted_out"]),
        include_dose_details=row["include_dose_details"],
        updated_at=row["updated_at"],
    )


def _to_domain(body: PreferencesIn) -> Preferences:
    """The domain holds the cross-field rules (a channel needs its address); its complaint names
    the field, so the 422 points at it like any other."""
    try:
        return Preferences(
            timezone=body.timezone,
            language=body.language,
            channels=tuple(body.channels),
            email=body.email,
            phone=body.phone,
            quiet=DailyWindow(
                time.fromisoformat(body.quiet_hours.start), time.fromisoformat(body.quiet_hours.end)
            ),
            opted_out=frozenset(body.opted_out),
            include_dose_details=body.include_dose_details,
        )
    except InvalidPreferences as exc:
        raise FieldRefusal(["body", exc.field], exc.problem, "invalid_preferences") from None


# What a generated client calls each operation (chassis/openapi.py).
OPERATION_IDS = {
    "GET /patients/{patient_id}/notification-preferences": "getNotificationPreferences",
    "PUT /patients/{patient_id}/notification-preferences": "putNotificationPreferences",
    "GET /patients/{patient_id}/messages": "listPatientMessages",
}


# The patient, or a clinician on their panel (chassis/entrypoint.py); setting the preferences
# commits in its use case.
PreferencesRead = Annotated[PatientAccess, Depends(patient_access("read", RESOURCE_PREFERENCES))]
PreferencesUpdate = Annotated[
    PatientAccess, Depends(patient_access("update", RESOURCE_PREFERENCES))
]
MessagesRead = Annotated[PatientAccess, Depends(patient_access("read", RESOURCE_MESSAGES))]


def routers(runtime: ServiceRuntime) -> list[APIRouter]:
    router = APIRouter(tags=["patient messages"])

    @router.get("/patients/{patient_id}/notification-preferences", response_model=PreferencesOut)
    async def get_preferences(patient_id: uuid.UUID, access: PreferencesRead) -> PreferencesOut:
        async with access as uow:
            row = await patient_messages.get_preferences(uow, patient_id)
        if row is None:
            raise NotFound("no notification preferences for this patient")
        return _preferences_out(row)

    @router.put("/patients/{patient_id}/notification-preferences", response_model=PreferencesOut)
    async def put_preferences(
        patient_id: uuid.UUID,
        body: PreferencesIn,
        principal: CurrentPrincipal,
        access: PreferencesUpdate,
    ) -> PreferencesOut:
        async with access as uow:
            row = await patient_messages.set_preferences(
                uow, patient_id, _to_domain(body), updated_by=principal.subject
            )
        return _preferences_out(row)

    @router.get(
        "/patients/{patient_id}/messages",
        response_model=list[MessageOut],
        responses=paginated(list[MessageOut]),
    )
    async def message_history(
        patient_id: uuid.UUID,
        access: MessagesRead,
        page: PageQuery,
        request: Request,
        response: Response,
        state: Annotated[MessageStatus | None, Query(alias="status")] = None,
        since: Annotated[PlausibleAwareDatetime | None, Query(description=SINCE_DOC)] = None,
        until: Annotated[PlausibleAwareDatetime | None, Query(description=UNTIL_DOC)] = None,
    ) -> list[MessageOut]:
        async with access as uow:
            found, following = await patient_messages.message_history(
                uow, patient_id, page, status=state, since=since, until=until
            )
        link_next(request, response, following)
        return [
            MessageOut(
                id=m.id,
                kind=m.kind,
                status=m.status,
                skip_reason=m.skip_reason,
                send_at=m.send_at,
                sent_at=m.sent_at,
                created_at=m.created_at,
                deliveries=[DeliveryOut(**_delivery_fields(d)) for d in m.deliveries],
            )
            for m in found
        ]

    return [name_operations(router, OPERATION_IDS)]


def _delivery_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("channel", "status", "attempts", "last_error", "sent_at")}
