"""Issue 13, property (a): a report's safety content always reaches a clinician.

For ANY generated report — a valid red flag, PHQ-9 item 9 above 0, BWSQ hallucinations above 0 or
a failed orientation gate, next to whatever else is invalid or missing (unknown items, values out
of range or of the wrong type, missing items, unknown red-flag codes, an implausible pulse) — the
report submitted through the service's HTTP API is accepted (201) and a RED ``ThresholdExceeded``
of the safety family is in the outbox; without safety content there is none.

The oracle is independent of the production code: it reads the raw request body with the
clinical reference's own lists (§3.3, §3.4), not the instrument data files or the scorer.
Examples: ``TAPER_HYPOTHESIS_EXAMPLES`` (default 300). Each example is its own patient, so
counts are scoped to its data on one SQLite database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contracts import ThresholdExceeded, event_class
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from tests.runtimes import migrated_runtime

EXAMPLES = int(os.environ.get("TAPER_HYPOTHESIS_EXAMPLES", "300"))
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)

# --- the oracle's own knowledge, from shared/domain/clinical-reference.md ------------------------
# §3.4 red flags, as the API's codes:
RED_FLAGS = ["seizure", "delirium", "hallucinations", "self_harm_thoughts", "fall_or_injury"]
# Items whose answer above 0 is a red flag: PHQ-9 item 9 (§3.3/§3.4), BWSQ hallucinations (§3.4).
RED_ITEMS = {("phq-9", "item_9"): 3, ("bwsq", "hallucinations"): 2}  # -> the item's maximum
ITEMS = {  # item codes and maxima (§3.1-§3.3); only used to draw plausible answers
    "ciwa-b": (
        "irritable fatigued tense difficulty_concentrating loss_of_appetite numbness_burning "
        "heart_racing head_full_achy muscle_aches_stiffness anxious_nervous_jittery upset "
        "sleep_restfulness weak enough_sleep visual_disturbances fearful "
        "worrying_misfortunes".split(),
        4,
    ),
    "bwsq": (
        "feeling_unreal sensitive_to_noise sensitive_to_light sensitive_to_smell "
        "sensitive_to_touch peculiar_taste muscle_pains muscle_twitches shaking pins_and_needles "
        "dizziness feeling_faint feeling_sick depressed sore_eyes things_moving_when_still "
        "hallucinations unable_to_control_movements memory_loss loss_of_appetite".split(),
        2,
    ),
    "phq-9": ([f"item_{i}" for i in range(1, 10)], 3),
    "gad-7": ([f"item_{i}" for i in range(1, 8)], 3),
}


def oracle_expects_red(body: dict[str, Any]) -> bool:
    """Does the body carry valid safety content? Read from the raw body only."""
    if any(isinstance(f, str) and f in RED_FLAGS for f in body.get("red_flags", [])):
        return True
    if body.get("oriented") is False:
        return True
    for (instrument, item), top in RED_ITEMS.items():
        value = body.get("answers", {}).get(item)
        if body["instrument"] == instrument and type(value) is int and 1 <= value <= top:
            return True
    return False


# --- generated reports: valid parts, broken parts, safety content or not --------------------------
JUNK = st.one_of(
    st.integers(-5, 10),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    instrument = draw(st.sampled_from(sorted(ITEMS)))
    codes, top = ITEMS[instrument]
    answers: dict[str, Any] = {}
    for code in codes:
        kind = draw(st.sampled_from(["valid", "valid", "valid", "missing", "junk"]))
        if kind == "valid":
            answers[code] = draw(st.integers(0, top))
        elif kind == "junk":
            answers[code] = draw(JUNK)
    for _ in range(draw(st.integers(0, 2))):  # unknown items
        answers[draw(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True))] = draw(JUNK)
    body: dict[str, Any] = {"instrument": instrument, "answers": answers}
    flags = draw(st.lists(st.sampled_from([*RED_FLAGS, "sneezing", "", 3, None]), max_size=4))
    send_empty: bool = draw(st.booleans())
    if flags or send_empty:
        body["red_flags"] = flags
    oriented = draw(st.sampled_from([True, False, None, "yes", 1, "absent"]))
    if oriented != "absent":
        body["oriented"] = oriented
    pulse = draw(st.one_of(st.just("absent"), st.integers(20, 250), JUNK))
    if pulse != "absent":
        body["pulse_bpm"] = pulse
    return body


# --- a real service (SQLite, its app and unit of work) driven from a synchronous test -----------
class Service:
    def __init__(self, runner: asyncio.Runner, runtime: ServiceRuntime) -> None:
        self.runner, self.runtime = runner, runtime
        transport = httpx.ASGITransport(app=runtime.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://test")

    def submit(self, patient: uuid.UUID, body: dict[str, Any]) -> httpx.Response:
        token = issue_dev_token(
            self.runtime.settings, subject="patient-1", role=Role.PATIENT, patient_id=patient
        )
        url = f"/api/monitoring/patients/{patient}/symptom-reports"
        request = self.client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        return self.runner.run(request)

    def red_safety_exceeded(self, patient: uuid.UUID) -> int:
        return self.runner.run(self._red_safety_exceeded(patient))

    async def _red_safety_exceeded(self, patient: uuid.UUID) -> int:
        async with self.runtime.uow() as uow:
            outbox = uow.table("outbox")
            rows = await uow.session.execute(
                sa.select(outbox.c.event_type, outbox.c.payload).where(
                    outbox.c.event_type == "ThresholdExceeded",
                    outbox.c.message_key == str(patient),  # scoped to this example's data
                )
            )
            found = [event_class(t).model_validate_json(p) for t, p in rows.all()]
        return sum(
            1
            for e in found
            if isinstance(e, ThresholdExceeded)
            and e.patient_id == patient
            and (e.family, e.severity.value) == ("safety", "RED")
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory: Path = tmp_path_factory.mktemp("monitoring-safety")
    with asyncio.Runner() as runner:
        runtime = runner.run(migrated_runtime("monitoring", directory, clock=FrozenClock(NOW)))
        service = Service(runner, runtime)
        yield service
        runner.run(service.client.aclose())
        runner.run(runtime.engine.dispose())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=reports())
def test_safety_content_always_escalates_red_whatever_else_is_invalid(
    service: Service, body: dict[str, Any]
) -> None:
    patient = uuid.uuid4()
    expected = oracle_expects_red(body)
    event("safety content" if expected else "no safety content")
    r = service.submit(patient, body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["safety_accepted"] is True
    assert service.red_safety_exceeded(patient) == (1 if expected else 0), (body, out)
    assert (out["severity"] == "RED") or not expected
