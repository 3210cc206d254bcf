"""The walking skeleton end to end: four services, a real broker, real PostgreSQL, one trace.

scheduler --DoseReduced--> monitoring, group_matching
monitoring (HTTP report) --SymptomReported, ThresholdExceeded--> notifications (page webhook),
                                                               scheduler (holds the taper)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.chassis.telemetry import make_meter_provider, make_tracer_provider
from services.group_matching.bootstrap import bootstrap as group_matching_bootstrap
from services.group_matching.settings import GroupMatchingSettings
from services.monitoring.bootstrap import bootstrap as monitoring_bootstrap
from services.monitoring.settings import MonitoringSettings
from services.notifications.bootstrap import bootstrap as notifications_bootstrap
from services.notifications.settings import NotificationsSettings
from services.scheduler.bootstrap import bootstrap as scheduler_bootstrap
from services.scheduler.settings import SchedulerSettings
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]

SERVICES = ("scheduler", "monitoring", "notifications", "group_matching")


@dataclass
class Stack:
    scheduler: ServiceRuntime
    monitoring: ServiceRuntime
    notifications: ServiceRuntime
    group_matching: ServiceRuntime
    webhook: WebhookReceiver
    spans: InMemorySpanExporter
    metrics: dict[str, InMemoryMetricReader]  # by service (a reader serves one provider)


@pytest.fixture
async def stack(settings_for: Any, span_exporter: InMemorySpanExporter) -> AsyncIterator[Stack]:
    metrics = {name: InMemoryMetricReader() for name in SERVICES}

    def provider(name: str) -> Any:
        return make_tracer_provider(name, exporter=span_exporter)

    def meters(name: str) -> Any:
        return make_meter_provider(name, reader=metrics[name])

    async with AsyncExitStack() as exits:
        webhook = await exits.enter_async_context(WebhookReceiver())
        runtimes = {
            "scheduler": scheduler_bootstrap(
                settings_for(SchedulerSettings),
                tracer_provider=provider("scheduler"),
                meter_provider=meters("scheduler"),
            ),
            "monitoring": monitoring_bootstrap(
                settings_for(MonitoringSettings),
                tracer_provider=provider("monitoring"),
                meter_provider=meters("monitoring"),
            ),
            "notifications": notifications_bootstrap(
                settings_for(NotificationsSettings, page_webhook_url=webhook.url),
                tracer_provider=provider("notifications"),
                meter_provider=meters("notifications"),
            ),
            "group_matching": group_matching_bootstrap(
                settings_for(GroupMatchingSettings),
                tracer_provider=provider("group_matching"),
                meter_provider=meters("group_matching"),
            ),
        }
        for runtime in runtimes.values():
            await exits.enter_async_context(runtime)
        yield Stack(**runtimes, webhook=webhook, spans=span_exporter, metrics=metrics)


def _token(runtime: ServiceRuntime, role: Role, patient: uuid.UUID) -> dict[str, str]:
    if role is Role.PATIENT:
        token = issue_dev_token(runtime.settings, subject="p-1", role=role, patient_id=patient)
    else:
        token = issue_dev_token(runtime.settings, subject="c-1", role=role, panel=[patient])
    return {"Authorization": f"Bearer {token}"}


def _pages_for(stack: Stack, patient: uuid.UUID) -> list[Any]:
    # Topics are shared by the whole session: other tests' patients may be paged here too.
    return [
        p
        for p in stack.webhook.received
        if p["body"]["payload"]["custom_details"]["patient_id"] == str(patient)
    ]


async def test_dose_step_reaches_monitoring_and_group_matching(
    stack: Stack, http_client_for: Any
) -> None:
    patient_id = uuid.uuid4()
    scheduler = http_client_for(stack.scheduler.app)
    clinician = _token(stack.scheduler, Role.CLINICIAN, patient_id)
    response = await scheduler.post(
        f"/api/scheduler/patients/{patient_id}/taper",
        json={"drug": "diazepam", "half_life_class": "long", "current_daily_dose_mg": "10"},
        headers=clinician,
    )
    assert response.status_code == 201, response.text
    today = stack.scheduler.clock.now().date().isoformat()
    response = await scheduler.post(
        f"/api/scheduler/patients/{patient_id}/dose-reductions",
        json={"new_daily_dose_mg": "9", "effective_on": today, "reason_code": "planned_step"},
        headers=clinician,
    )
    assert response.status_code in (200, 201), response.text

    group_matching = http_client_for(stack.group_matching.app)
    patient = _token(stack.group_matching, Role.PATIENT, patient_id)

    async def stage() -> Any:
        r = await group_matching.get(
            f"/api/group-matching/patients/{patient_id}/stage", headers=patient
        )
        return r.json() if r.status_code == 200 else None

    placed = await eventually(stage)
    assert placed["stage"] in {"active", "final_phase"}

    from services.monitoring.adapters.orm import dose_history

    async def monitoring_saw_it() -> int:
        import sqlalchemy as sa

        async with stack.monitoring.uow() as uow:
            return int(
                await uow.session.scalar(
                    sa.select(sa.func.count())
                    .select_from(dose_history)
                    .where(dose_history.c.patient_id == patient_id)
                )
                or 0
            )

    assert await eventually(monitoring_saw_it) == 1


async def test_red_flag_report_pages_a_clinician_and_holds_the_taper_in_one_trace(
    stack: Stack, http_client_for: Any
) -> None:
    patient_id = uuid.uuid4()
    scheduler = http_client_for(stack.scheduler.app)
    clinician = _token(stack.scheduler, Role.CLINICIAN, patient_id)
    await scheduler.post(
        f"/api/scheduler/patients/{patient_id}/taper",
        json={"drug": "diazepam", "half_life_class": "long", "current_daily_dose_mg": "10"},
        headers=clinician,
    )

    monitoring = http_client_for(stack.monitoring.app)
    answers = dict.fromkeys(
        __import__("services.monitoring.domain.reference", fromlist=["ciwa_b_v1"])
        .ciwa_b_v1()
        .patient_items,
        1,
    )
    response = await monitoring.post(
        f"/api/monitoring/patients/{patient_id}/symptom-reports",
        json={
            "instrument": "ciwa-b",
            "oriented": True,
            "answers": answers,
            "red_flags": ["seizure"],
        },
        headers=_token(stack.monitoring, Role.PATIENT, patient_id),
    )
    assert response.status_code == 201, response.text
    assert response.json()["severity"] == "RED"

    async def paged() -> list[Any]:
        return _pages_for(stack, patient_id)

    received = await eventually(paged)
    assert len(received) == 1
    page = received[0]
    assert page["body"]["event_action"] == "trigger"
    assert page["body"]["payload"]["severity"] == "critical"
    assert page["body"]["payload"]["custom_details"]["patient_id"] == str(patient_id)
    assert page["body"]["payload"]["custom_details"]["reasons"] == ["red_flag:seizure"]

    # One trace: the HTTP request that took the report is the root of the page's trace.
    http_spans = [
        s
        for s in stack.spans.get_finished_spans()
        if s.resource.attributes["service.name"] == "monitoring"
        and s.parent is None
        and s.attributes.get("http.route", "").endswith("/symptom-reports")
    ]
    assert http_spans, "monitoring's HTTP server span is missing"
    trace_id = format(http_spans[-1].context.trace_id, "032x")
    assert page["headers"]["traceparent"].split("-")[1] == trace_id

    async def held() -> bool:
        r = await scheduler.get(f"/api/scheduler/patients/{patient_id}/taper", headers=clinician)
        return r.status_code == 200 and r.json()["held"] is True

    await eventually(held)

    in_trace = [
        s for s in stack.spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)
    ]
    services_in_trace = {s.resource.attributes["service.name"] for s in in_trace}
    assert {"monitoring", "notifications", "scheduler"} <= services_in_trace
    names = {s.name for s in in_trace}
    assert "taper.monitoring.threshold-exceeded.v1 publish" in names
    assert "taper.monitoring.threshold-exceeded.v1 process" in names
    assert {"timer escalation_step", "timer deliver"} <= names

    # A second report in the same family joins the open episode: no second page.
    response = await monitoring.post(
        f"/api/monitoring/patients/{patient_id}/symptom-reports",
        json={
            "instrument": "ciwa-b",
            "oriented": True,
            "answers": answers,
            "red_flags": ["seizure"],
        },
        headers=_token(stack.monitoring, Role.PATIENT, patient_id),
    )
    assert response.status_code == 201, response.text

    # The paged clinician acknowledges in notifications: monitoring records it on the episode.
    notifications = http_client_for(stack.notifications.app)
    as_clinician = _token(stack.notifications, Role.CLINICIAN, patient_id)
    [escalation] = (
        await notifications.get("/api/notifications/escalations", headers=as_clinician)
    ).json()
    assert escalation["patient_id"] == str(patient_id) and escalation["severity"] == "RED"
    ack = await notifications.post(
        f"/api/notifications/escalations/{escalation['id']}/acknowledge", headers=as_clinician
    )
    assert ack.status_code == 200, ack.text

    async def acknowledged_in_monitoring() -> bool:
        r = await monitoring.get(
            f"/api/monitoring/patients/{patient_id}/episodes",
            headers=_token(stack.monitoring, Role.CLINICIAN, patient_id),
        )
        return r.json()[0]["acknowledged_at"] is not None

    await eventually(acknowledged_in_monitoring)

    # The clinician resolves the episode with resume_taper: the scheduler lifts its hold.
    episodes = await monitoring.get(
        f"/api/monitoring/patients/{patient_id}/episodes",
        headers=_token(stack.monitoring, Role.CLINICIAN, patient_id),
    )
    [episode] = episodes.json()
    assert episode["family"] == "safety" and episode["reports"] == 2
    response = await monitoring.post(
        f"/api/monitoring/patients/{patient_id}/episodes/{episode['id']}/resolve",
        json={"resolution": "resume_taper", "note": "seen by video, no seizure activity since"},
        headers=_token(stack.monitoring, Role.CLINICIAN, patient_id),
    )
    assert response.status_code == 200, response.text

    async def resumed() -> bool:
        r = await scheduler.get(f"/api/scheduler/patients/{patient_id}/taper", headers=clinician)
        return r.status_code == 200 and r.json()["held"] is False

    await eventually(resumed)
    decisions = await scheduler.get(
        f"/api/scheduler/patients/{patient_id}/decisions", headers=clinician
    )
    [resume] = [d for d in decisions.json() if d["kind"] == "resume"]
    assert resume["clinician"] == "c-1" and resume["reason_code"] == "escalation_resolved"

    # Notifications closed the escalation: no re-page after the acknowledgement.
    async def closed_in_notifications() -> bool:
        r = await notifications.get(
            f"/api/notifications/escalations/{escalation['id']}", headers=as_clinician
        )
        return r.json()["status"] == "resolved"

    await eventually(closed_in_notifications)
    # Exactly one page for the episode, even after the consumers had time to see duplicates.
    assert len(_pages_for(stack, patient_id)) == 1
