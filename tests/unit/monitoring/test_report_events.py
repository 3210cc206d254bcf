"""What a report announces, in order: the ``SymptomReport`` aggregate records ``SymptomReported``,
the episodes it escalates record ``ThresholdExceeded`` naming it as their cause, and the unit of
work writes them to the outbox in that order on commit (a replay writes nothing)."""

from __future__ import annotations

import httpx

from contracts import SymptomReported, ThresholdExceeded
from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.monitoring.domain import instruments, intake, rules
from services.monitoring.domain.reports import SymptomReport
from tests.unit.monitoring.test_api import (
    NOW,
    PATIENT,
    ciwa,
    events,
    headers,
    submit,
)


async def test_the_report_is_announced_before_the_escalation_it_causes(
    runtime: ServiceRuntime,
    client: httpx.AsyncClient,
) -> None:
    body = ciwa(45, red_flags=["seizure"])
    out = await submit(client, headers(runtime, Role.PATIENT), body, key="k-1")
    reported, *exceeded = await events(runtime)
    assert isinstance(reported, SymptomReported)
    assert str(reported.report_id) == out["report_id"]
    assert {e.family for e in exceeded if isinstance(e, ThresholdExceeded)} == {
        "safety",
        "withdrawal",
    }
    for e in exceeded:
        assert (e.causation_id, e.correlation_id) == (reported.event_id, reported.correlation_id)
    await submit(client, headers(runtime, Role.PATIENT), body, key="k-1", status=200)
    assert len(await events(runtime)) == 1 + len(exceeded)


def test_a_refused_instrument_is_stored_unscored_with_its_red_flags_announced() -> None:
    definition = instruments.definition("gad-7", "1")
    ruleset = rules.rules_v2()
    taken = intake.take(
        definition,
        answers={"item_1": 9},
        red_flags=["seizure", "seizure", "nonsense"],
        oriented=None,
        pulse_bpm=None,
        known_red_flags=ruleset.red_flags,
    )
    facts = rules.ReportFacts(
        taken.score, taken.answers, taken.red_flags, taken.pulse_bpm, instrument="gad-7"
    )
    findings = rules.evaluate(facts, rules.PatientContext(today=NOW.date()), ruleset)
    report = SymptomReport.take(PATIENT, definition, taken, findings, submitted_by="p", now=NOW)
    assert (report.method, report.band, report.total_score) == ("not-scored", "not_scored", 0)
    assert report.severity == "RED" and report.red_flags == ("seizure",)
    [announced] = report.pull_events()
    assert isinstance(announced, SymptomReported)
    assert (announced.method, announced.red_flags) == ("self-report-modified", ("seizure",))
    assert report.announcement() is None  # published once
