"""Request fields for the patient's day (issue 13, 12a), shared by the taper and plan requests.

Optional so that existing clients keep working: without them a step takes effect at 00:00 UTC
of its date, which is 7 pm the evening before for a New York patient, so clients should send at
least ``timezone``. A bad value is a 422 naming the field (never repeating the value).
"""

from __future__ import annotations

from datetime import time
from typing import Annotated

from pydantic import AfterValidator, Field

from services.scheduler.domain.patient_day import zone


def _iana(value: str) -> str:
    zone(value)  # UnknownTimeZone is a ValueError: pydantic reports it against the field
    return value


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local time of day, without an offset (the time zone says where)")
    return value


TimeZoneName = Annotated[
    str,
    Field(
        max_length=64,
        examples=["America/New_York"],
        description="The patient's IANA time zone: each step takes effect on the patient's own "
        "date there, at their first dose. Omitted: 00:00 UTC of the date.",
    ),
    AfterValidator(_iana),
]
FirstDoseTime = Annotated[
    time,
    Field(
        examples=["08:00"],
        description="Local time of the patient's first dose of the day; default from the "
        "scheduler's data (08:00 ⚠ unconfirmed) when only the time zone is given.",
    ),
    AfterValidator(_local),
]
