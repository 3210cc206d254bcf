"""PHI hygiene (issue 7, part): the end-to-end flows run with marked synthetic PHI — contact
details, a clinician's free-text note, PHI inside a malformed event and in a request id — over the
real broker and PostgreSQL, and every log record (message and extra fields), every span attribute
and event, every metric (its name, its data points' labels, its resource), the pager's body and
every dead-letter header is scanned for the markers: zero hits. The scan also checks that it saw
logs, spans and the HTTP, consumer, dead-letter, outbox and timer metrics, so it cannot pass on
nothing."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from contracts import THRESHOLD_EXCEEDED
from services.chassis.auth import Role, issue_dev_token
from services.monitoring.domain.reference import ciwa_b_v1
from tests.e2e import test_walking_skeleton as skeleton
from tests.e2e.test_walking_skeleton import Stack
from tests.helpers import eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]

stack = skeleton.stack  # the four services over the real broker (the walking skeleton's fixture)

MARK = "zzphi"  # every synthetic PHI value below contains it
EMAIL = f"{MARK}.jane.doe@example.org"
PHONE = "+15557770123"  # E.164 has no room for letters: scanned for as itself
NOTE = f"{MARK} Jane Doe said her husband found her on the floor"


def _bearer(runtime: Any, role: Role, patient: uuid.UUID, subject: str) -> dict[str, str]:
    claims: dict[str, Any] = (
        {"patient_id": patient} if role is Role.PATIENT else {"panel": [patient]}
    )
    token = issue_dev_token(runtime.settings, subject=subject, role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


def _hits(text: str) -> bool:
    return MARK in text.lower() or PHONE in text


async def test_marked_phi_never_reaches_logs_spans_pages_or_dead_letter_headers(
    stack: Stack, http_client_for: Any, kafka_bootstrap_servers: str, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    patient = uuid.uuid4()
    notifications = http_client_for(stack.notifications.app)
    monitoring = http_client_for(stack.monitoring.app)
    as_patient = _bearer(stack.notifications, Role.PATIENT, patient, "p-1")
    r = await notifications.put(
        f"/api/notifications/patients/{patient}/notification-preferences",
        json={
            "timezone": "America/New_York",
            "language": "en",
            "channels": ["sms", "email"],
            "email": EMAIL,
            "phone": PHONE,
        },
        headers=as_patient,
    )
    assert r.status_code == 200, r.text
    r = await notifications.put(
        "/api/notifications/clinicians/c-1/contact-methods",
        json={"methods": [{"channel": "email", "address": f"{MARK}.dr@example.org"}]},
        headers=_bearer(stack.notifications, Role.CLINICIAN, patient, "c-1"),
    )
    assert r.status_code == 204, r.text

    # A red-flag report: page, patient safety notice, episode; resolved with a free-text note.
    answers = dict.fromkeys(ciwa_b_v1().patient_items, 1)
    r = await monitoring.post(
        f"/api/monitoring/patients/{patient}/symptom-reports",
        json={
            "instrument": "ciwa-b",
            "oriented": True,
            "answers": answers,
            "red_flags": ["seizure"],
        },
        headers=_bearer(stack.monitoring, Role.PATIENT, patient, "p-1"),
    )
    assert r.status_code == 201, r.text
    await eventually(lambda: _paged(stack, patient))
    as_clinician = _bearer(stack.monitoring, Role.CLINICIAN, patient, "c-1")
    [episode] = (
        await monitoring.get(f"/api/monitoring/patients/{patient}/episodes", headers=as_clinician)
    ).json()
    r = await monitoring.post(
        f"/api/monitoring/patients/{patient}/episodes/{episode['id']}/resolve",
        json={"resolution": "keep_held", "note": NOTE},
        headers={**as_clinician, "X-Request-ID": EMAIL},  # malformed: never on a span
    )
    assert r.status_code == 200, r.text
    # Bad input carrying PHI: a 422 that must not echo it.
    r = await notifications.put(
        f"/api/notifications/patients/{patient}/notification-preferences",
        json={"timezone": f"{MARK}/Nowhere", "language": "en", "channels": []},
        headers=as_patient,
    )
    assert r.status_code == 422 and not _hits(r.text)

    # A malformed event carrying PHI: dead-lettered; its headers must not carry it.
    poison = f'{{"event_type": "ThresholdExceeded", "note": "{NOTE}", "email": "{EMAIL}"}}'
    await produce_raw(
        kafka_bootstrap_servers,
        THRESHOLD_EXCEEDED.name,
        [(str(patient).encode(), poison.encode(), [])],
    )

    async def dead_lettered() -> list[Any]:
        records = await read_topic(
            kafka_bootstrap_servers, THRESHOLD_EXCEEDED.dlq, expect=10**6, timeout=2
        )
        return [r for r in records if r.key == str(patient).encode()]

    letters = await eventually(dead_lettered, timeout=30)

    hits: list[str] = []
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(repr(v) for v in vars(record).values())
        if _hits(text):
            hits.append(f"log {record.name}: {record.getMessage()[:80]}")
    for span in stack.spans.get_finished_spans():
        values = [*map(str, (span.attributes or {}).values())]
        values += [str(e.attributes) for e in span.events]
        values.append(str(span.status.description))
        if any(_hits(v) for v in values) or _hits(span.name):
            hits.append(f"span {span.name}")
    for letter in letters:
        for key, value in letter.headers:
            if _hits(value.decode(errors="replace")):
                hits.append(f"dead-letter header {key}")
    for page in stack.webhook.received:
        if _hits(str(page)):
            hits.append("page body")
    metric_names: set[str] = set()
    for service, reader in stack.metrics.items():
        hits += _metric_hits(service, reader, metric_names, opaque_id=str(patient))
    assert hits == [], "\n".join(hits)
    assert caplog.records, "the scan saw the services' logs"
    assert stack.spans.get_finished_spans(), "the scan saw the spans"
    assert {
        "http.server.request.duration",
        "taper.events.consumed",
        "taper.dead_letters",
        "taper.relay.published",
        "taper.timers.fired",
    } <= metric_names, f"the scan saw the metrics (only {sorted(metric_names)})"


def _metric_hits(
    service: str, reader: InMemoryMetricReader, seen: set[str], *, opaque_id: str
) -> list[str]:
    """Markers in a metric's name, its data points' labels (keys and values) or its resource;
    and ``opaque_id`` in a label: not PHI, but a concrete path (one series per patient)."""
    hits: list[str] = []
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for key, value in resource_metrics.resource.attributes.items():
            if _hits(f"{key}={value!r}"):
                hits.append(f"metric resource attribute {key} ({service})")
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if _hits(metric.name):
                    hits.append(f"metric name ({service})")
                points = list(metric.data.data_points)
                if points:
                    seen.add(metric.name)
                for point in points:
                    for key, value in (getattr(point, "attributes", None) or {}).items():
                        if _hits(f"{key}={value!r}") or opaque_id in repr(value):
                            hits.append(f"metric {metric.name} label {key[:40]} ({service})")
    return hits


async def _paged(four: Stack, patient: uuid.UUID) -> bool:
    return any(
        p["body"]["payload"]["custom_details"].get("patient_id") == str(patient)
        for p in four.webhook.received
    )
