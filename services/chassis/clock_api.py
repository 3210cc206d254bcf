"""``GET /api/<service>/clock``: the service's "now", for a frontend showing a scaled stack.

With ``TAPER_CLOCK_SCALE`` (demos, simulations, load tests) weeks of a taper play out in minutes
and every date the API returns is in the services' time, not the browser's; a frontend that
shows "today" or counts down to the next step must ask the services what time it is.

Public, like ``/health``: the answer is the same for everyone and holds no patient data (a
scale and two instants; the HTTP ``Date`` header already tells the wall time), and a login page
or a demo banner needs it before any token exists. ``Cache-Control: no-store``: it changes
every instant. One implementation in the chassis, served by every service under its own prefix
(operationId ``get<Service>Clock``); the services of one stack share anchor and scale, so they
answer alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from services.chassis.clock import Clock, ScaledClock, scale_of
from services.chassis.openapi import camel


class ClockOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "now": "2026-03-16T09:00:00+00:00",
                    "scale": 1440.0,
                    "scaled": True,
                    "anchor": "2026-03-02T09:00:00+00:00",
                    "wall_time": "2026-03-02T09:14:00+00:00",
                }
            ]
        }
    )

    now: datetime = Field(
        description="The service's current time (ISO 8601, UTC): what every date it returns "
        "and every step it takes is measured against."
    )
    scale: float = Field(
        description="How many times faster than real time the service's clock runs (1: real "
        "time; 1440: a day per minute)."
    )
    scaled: bool = Field(description="true when the clock does not run at real time (scale ≠ 1).")
    anchor: datetime | None = Field(
        description="The instant at which service time and wall time agreed (a scaled clock's "
        "start, shared by the whole stack); null for a real-time clock."
    )
    wall_time: datetime = Field(description="The real time (ISO 8601, UTC) when this answered.")


def clock_now(clock: Clock) -> ClockOut:
    scale = scale_of(clock)
    return ClockOut(
        now=clock.now().astimezone(UTC),
        scale=scale,
        scaled=scale != 1.0,
        anchor=clock.anchor.astimezone(UTC) if isinstance(clock, ScaledClock) else None,
        # The wall time on purpose: the one place a service reports it beside its own.
        wall_time=datetime.now(UTC),
    )


def router(service: str, clock: Clock) -> APIRouter:
    api = APIRouter(tags=["system"])

    @api.get(
        "/clock",
        operation_id=f"get{camel(service)}Clock",
        response_model=ClockOut,
        summary="The service's current time and clock scale (public; no patient data)",
    )
    async def get_clock(response: Response) -> ClockOut:
        response.headers["Cache-Control"] = "no-store"
        return clock_now(clock)

    return api
