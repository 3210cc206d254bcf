"""A page never waits on anything patient-facing (issue 14, defect 4).

ThresholdExceeded goes through notifications' real consumer handler (the one the subscription
runs) on the real bootstrap over SQLite: whatever is wrong on the patient's side — no
notification profile, a profile row that no longer validates, a template that cannot render —
the clinicians are paged and the page delivered, and the patient's RED safety notice waits (or
is parked for an operator) on its own, as a durable timer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.notifications.adapters.channels import ChannelKind, RecordingChannel
from services.notifications.adapters.orm import patient_profiles
from services.notifications.domain import drafts
from services.notifications.domain.preferences import Preferences
from services.notifications.entrypoints import consumers
from services.notifications.service_layer import patient_messages
from tests.helpers import red_flag_threshold
from tests.runtimes import service_runtime

NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)


class Svc:
    def __init__(self, runtime: ServiceRuntime, channels: dict[ChannelKind, RecordingChannel]):
        self.runtime = runtime
        self.channels = channels

    async def consume_red(self, patient: uuid.UUID) -> None:
        async with self.runtime.uow() as uow:
            await consumers.on_threshold_exceeded(red_flag_threshold(patient, occurred_at=NOW), uow)
            await uow.commit()
        await self.runtime.timers.fire_due()

    async def rows(self, name: str) -> list[dict[str, Any]]:
        async with self.runtime.uow() as uow:
            from services.notifications.adapters import orm

            table = uow.table(name) if name == "timers" else getattr(orm, name)
            return [dict(r) for r in (await uow.session.execute(sa.select(table))).mappings()]


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Svc]:
    channels = {kind: RecordingChannel(kind) for kind in ChannelKind}
    async with service_runtime(
        "notifications", tmp_path, clock=FrozenClock(NOW), channels=channels
    ) as runtime:
        yield Svc(runtime, channels)


async def _invalid_profile(svc: Svc, patient: uuid.UUID) -> None:
    """A profile row that no longer validates (an unknown timezone)."""
    async with svc.runtime.uow() as uow:
        await uow.session.execute(
            sa.insert(patient_profiles).values(
                patient_id=patient,
                timezone="Nowhere/Atlantis",
                language="en",
                channels=["sms"],
                phone="+15551230001",
                email=None,
                quiet_start=time(22),
                quiet_end=time(8),
                opted_out=[],
                include_dose_details=False,
                updated_by="test",
                updated_at=NOW,
            )
        )
        await uow.commit()


def _paged(svc: Svc) -> list[str]:
    return [m.severity or "" for m in svc.channels[ChannelKind.WEBHOOK].sent]


async def test_a_patient_without_a_profile_does_not_stop_the_page(svc: Svc) -> None:
    await svc.consume_red(uuid.uuid4())
    assert _paged(svc) == ["RED"]
    [page] = await svc.rows("pages")
    assert page["status"] == "delivered"
    assert await svc.rows("patient_messages") == []


async def test_an_invalid_profile_pages_and_parks_only_the_patient_notice(svc: Svc) -> None:
    patient = uuid.uuid4()
    await _invalid_profile(svc, patient)
    await svc.consume_red(patient)  # before the fix: PermanentError, page rolled back with it
    assert _paged(svc) == ["RED"]
    [page] = await svc.rows("pages")
    assert page["status"] == "delivered"
    notice = [t for t in await svc.rows("timers") if t["kind"] == patient_messages.SAFETY_NOTICE]
    assert len(notice) == 1 and notice[0]["failed_at"] is not None  # parked for an operator
    assert "notification profile is invalid: timezone" in notice[0]["last_error"]


async def test_a_template_that_cannot_render_pages_and_parks_only_the_patient_notice(
    svc: Svc, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = uuid.uuid4()
    async with svc.runtime.uow() as uow:
        prefs = Preferences(timezone="America/New_York", channels=("sms",), phone="+15551230001")
        await patient_messages.set_preferences(uow, patient, prefs, updated_by="test")

    def broken() -> drafts.Draft:
        return drafts.Draft(drafts.Kind.SAFETY_NOTICE, "v1:no_such_template", {"urgent": True})

    monkeypatch.setattr(drafts, "safety_notice", broken)
    await svc.consume_red(patient)
    assert _paged(svc) == ["RED"]
    assert svc.channels[ChannelKind.SMS].sent == []
    notice = [t for t in await svc.rows("timers") if t["kind"] == patient_messages.SAFETY_NOTICE]
    assert len(notice) == 1 and notice[0]["fired_at"] is None
    assert notice[0]["last_error"]  # failing on its own: retried, then parked
