"""The checker on hand-made evidence: a consistent run passes, and each way of breaking a property
(loss, duplicate, order, DLQ, parked timers, outbox, lag, PHI, vacuity) is found and named."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from contracts.topics import DOSE_REDUCED, TAPER_HELD, THRESHOLD_EXCEEDED
from deploy.proving.checker import DOSE_CONSUMERS, check
from deploy.proving.evidence import Evidence, OutboxRow, Record
from deploy.proving.ledger import Accepted, Ledger, Poison

P = str(uuid.UUID(int=1))
EPISODE = str(uuid.UUID(int=2))
PLAN = str(uuid.UUID(int=3))
DOSE_IDS = [str(uuid.UUID(int=10 + i)) for i in range(2)]
TE_ID = str(uuid.UUID(int=20))


def event(event_id: str, event_type: str, at: str, **facts: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": event_type, "patient_id": P,
            "occurred_at": at, **facts}  # fmt: skip


PAGED = {"dedup_key": "a", "episode_id": EPISODE, "level": 1, "cycle_loop": "0/0"}


def good() -> tuple[Ledger, Evidence]:
    ledger = Ledger(run_id="r")
    ledger.accept(Accepted("report", P, 1.0, 201, severity="RED", idempotency_key="k1"))
    ledger.accept(Accepted("report_replay", P, 2.0, 200, severity="RED", idempotency_key="k1"))
    ledger.accept(Accepted("dose_reduction", P, 0.5, 201))
    ledger.accept(Accepted("dose_reduction", P, 0.6, 201))
    ledger.poison.append(Poison(THRESHOLD_EXCEEDED.name, "poison-r-1"))
    doses = [
        Record(DOSE_REDUCED.name, 0, i, P, event(e, "DoseReduced", f"2026-01-0{i + 1}T00:00:00",
               plan_id=PLAN, step_number=i + 1))
        for i, e in enumerate(DOSE_IDS)
    ]  # fmt: skip
    te = Record(THRESHOLD_EXCEEDED.name, 1, 0, P,
                event(TE_ID, "ThresholdExceeded", "2026-01-03T00:00:00", severity="RED",
                      episode_id=EPISODE))  # fmt: skip
    dead = [
        Record(THRESHOLD_EXCEEDED.dlq, 0, i, "poison-r-1", None,
               {"dlq.reason": "ValidationError", "dlq.consumer": c})
        for i, c in enumerate(THRESHOLD_EXCEEDED.consumers)
    ]  # fmt: skip
    ev = Evidence(
        records=[*doses, doses[0], te],  # doses[0] published twice: a redelivery
        dead_letters=dead,
        outbox=[
            OutboxRow("scheduler", 1, DOSE_IDS[0], DOSE_REDUCED.name, P, True),
            OutboxRow("scheduler", 2, DOSE_IDS[1], DOSE_REDUCED.name, P, True),
            OutboxRow("monitoring", 1, TE_ID, THRESHOLD_EXCEEDED.name, P, True),
        ],
        inbox={
            c: set(DOSE_IDS) | ({TE_ID} if c == "notifications" else set()) for c in DOSE_CONSUMERS
        },
        effects={"monitoring": dict.fromkeys(DOSE_IDS, 1)},
        reports_stored={P: 1},
        escalations={EPISODE: 1},
        pages={(EPISODE, 1, "0/0/clin-1"): 1},
        escalation_state={EPISODE: ("acknowledged", 1)},
        sink={"webhook": [PAGED, PAGED], "sms": [], "mail": []},
        parked_timers={"notifications": 0},
        pending_outbox={"scheduler": 0},
        consumer_lag={"monitoring": 0},
        skipped_duplicates=3,
        spans_exported=40,
    )
    return ledger, ev


def test_a_consistent_run_passes_and_counts_what_it_saw() -> None:
    verdict = check(*good(), faults_applied=4)
    assert verdict.ok, verdict.findings
    ledger, ev = good()
    ev.escalation_state[EPISODE] = ("resolved", 0)  # resolved before its first page: fine
    ev.pages.clear()
    assert check(ledger, ev, faults_applied=4).ok
    ledger, ev = good()
    ev.escalations.clear()  # resolved by the clinician before notifications saw the threshold
    ev.escalation_state.clear()
    ev.pages.clear()
    ev.resolved_in_notifications.add(EPISODE)
    verdict = check(ledger, ev, faults_applied=4)
    assert verdict.ok and verdict.counts["resolved_before_escalation"] == 1
    ev.inbox["notifications"].discard(TE_ID)  # its threshold dead-lettered, then resolved
    verdict = check(ledger, ev, faults_applied=4)
    assert [f.check for f in verdict.findings] == ["lost"], verdict.findings
    ledger, ev = good()
    ev.page_status[(EPISODE, 1, "0/0/clin-1")] = "pending"  # cancelled: acknowledged first
    ev.sink["webhook"] = []
    assert check(ledger, ev, faults_applied=4).ok
    assert verdict.counts["dose_reduced"] == 2 and verdict.counts["republished"] == 1
    assert verdict.counts["webhook_resends"] == 1  # same dedup key: one incident, counted
    assert verdict.counts["red_episodes"] == 1 and verdict.counts["reports"] == 1


Breaker = Callable[[Ledger, Evidence], None]


def _drop_red_threshold(ledger: Ledger, ev: Evidence) -> None:
    ev.records = [r for r in ev.records if r.event_type != "ThresholdExceeded"]


def _second_escalation(ledger: Ledger, ev: Evidence) -> None:
    ev.escalations[EPISODE] = 2


def _no_page(ledger: Ledger, ev: Evidence) -> None:
    ev.pages.clear()


def _provider_never_got_it(ledger: Ledger, ev: Evidence) -> None:
    ev.sink["webhook"] = []


def _never_paged(ledger: Ledger, ev: Evidence) -> None:
    ev.escalation_state[EPISODE] = ("triggered", 0)


def _level_two_not_paged(ledger: Ledger, ev: Evidence) -> None:
    ev.escalation_state[EPISODE] = ("triggered", 2)


def _page_stuck_pending(ledger: Ledger, ev: Evidence) -> None:
    ev.escalation_state[EPISODE] = ("triggered", 1)
    ev.page_status[(EPISODE, 1, "0/0/clin-1")] = "pending"


def _paged_twice(ledger: Ledger, ev: Evidence) -> None:
    ev.pages[(EPISODE, 1, "0/0/clin-1")] = 2


def _replay_stored(ledger: Ledger, ev: Evidence) -> None:
    ev.reports_stored[P] = 2


def _report_lost(ledger: Ledger, ev: Evidence) -> None:
    ev.reports_stored[P] = 0


def _consumer_missed_step(ledger: Ledger, ev: Evidence) -> None:
    ev.inbox["group_matching"].discard(DOSE_IDS[1])


def _effect_twice(ledger: Ledger, ev: Evidence) -> None:
    ev.effects["monitoring"][DOSE_IDS[0]] = 2


def _step_announced_twice(ledger: Ledger, ev: Evidence) -> None:
    r = ev.records[0]
    assert r.payload is not None
    copy = {**r.payload, "event_id": str(uuid.uuid4())}
    ev.records.append(Record(r.topic, r.partition, 9, r.key, copy))


def _manual_step_lost(ledger: Ledger, ev: Evidence) -> None:
    ledger.accept(Accepted("dose_reduction", P, 0.7, 201))


def _out_of_order(ledger: Ledger, ev: Evidence) -> None:
    ev.outbox[0], ev.outbox[1] = (
        OutboxRow("scheduler", 2, DOSE_IDS[0], DOSE_REDUCED.name, P, True),
        OutboxRow("scheduler", 1, DOSE_IDS[1], DOSE_REDUCED.name, P, True),
    )


def _two_partitions(ledger: Ledger, ev: Evidence) -> None:
    r = ev.records[1]
    ev.records[1] = Record(r.topic, 5, r.offset, r.key, r.payload)


def _step_while_held(ledger: Ledger, ev: Evidence) -> None:
    held = event(str(uuid.uuid4()), "TaperHeld", "2026-01-01T12:00:00")
    ev.records.append(Record(TAPER_HELD.name, 0, 0, P, held))


def _outbox_row_not_on_topic(ledger: Ledger, ev: Evidence) -> None:
    ev.outbox.append(OutboxRow("scheduler", 3, str(uuid.uuid4()), DOSE_REDUCED.name, P, True))


def _valid_event_dead_lettered(ledger: Ledger, ev: Evidence) -> None:
    ev.dead_letters.append(
        Record(DOSE_REDUCED.dlq, 0, 0, P, None, {"dlq.reason": "x", "dlq.consumer": "monitoring"})
    )


def _poison_not_dead_lettered(ledger: Ledger, ev: Evidence) -> None:
    ev.dead_letters.pop()


def _dead_letter_without_reason(ledger: Ledger, ev: Evidence) -> None:
    r = ev.dead_letters[0]
    ev.dead_letters[0] = Record(r.topic, r.partition, r.offset, r.key, None,
                                {"dlq.consumer": r.headers["dlq.consumer"]})  # fmt: skip


def _parked(ledger: Ledger, ev: Evidence) -> None:
    ev.parked_timers["notifications"] = 1


def _pending(ledger: Ledger, ev: Evidence) -> None:
    ev.pending_outbox["scheduler"] = 4


def _lagging(ledger: Ledger, ev: Evidence) -> None:
    ev.consumer_lag["monitoring"] = 2


def _sms_twice(ledger: Ledger, ev: Evidence) -> None:
    ev.sink["sms"] = [{"idempotency_token": "t"}, {"idempotency_token": "t"}]


def _phi_in_log(ledger: Ledger, ev: Evidence) -> None:
    ev.phi_hits.append("monitoring-1.log:12")


def _no_redeliveries(ledger: Ledger, ev: Evidence) -> None:
    ev.skipped_duplicates = 0
    ev.records.pop(2)  # the republished copy


def _no_spans(ledger: Ledger, ev: Evidence) -> None:
    ev.spans_exported = 0  # the PHI scan read no span: it proved nothing about spans


def _no_poison(ledger: Ledger, ev: Evidence) -> None:
    ledger.poison.clear()
    ev.dead_letters.clear()


@pytest.mark.parametrize(
    ("breaker", "check_name"),
    [
        (_drop_red_threshold, "lost"),
        (_second_escalation, "duplicate"),
        (_no_page, "lost"),
        (_paged_twice, "duplicate"),
        (_provider_never_got_it, "lost"),
        (_page_stuck_pending, "lost"),
        (_never_paged, "lost"),
        (_level_two_not_paged, "lost"),
        (_replay_stored, "duplicate"),
        (_report_lost, "lost"),
        (_consumer_missed_step, "lost"),
        (_effect_twice, "duplicate"),
        (_step_announced_twice, "duplicate"),
        (_manual_step_lost, "lost"),
        (_out_of_order, "order"),
        (_two_partitions, "order"),
        (_step_while_held, "order"),
        (_outbox_row_not_on_topic, "lost"),
        (_valid_event_dead_lettered, "dead_letter"),
        (_poison_not_dead_lettered, "dead_letter"),
        (_dead_letter_without_reason, "dead_letter"),
        (_parked, "parked"),
        (_pending, "outbox"),
        (_lagging, "lag"),
        (_sms_twice, "duplicate"),
        (_phi_in_log, "phi"),
        (_no_redeliveries, "vacuous"),
        (_no_poison, "vacuous"),
        (_no_spans, "vacuous"),
    ],
)
def test_each_broken_property_is_found(breaker: Breaker, check_name: str) -> None:
    ledger, ev = good()
    breaker(ledger, ev)
    verdict = check(ledger, ev, faults_applied=4)
    assert not verdict.ok
    assert check_name in {f.check for f in verdict.findings}, verdict.findings


def test_a_run_without_faults_is_vacuous() -> None:
    verdict = check(*good(), faults_applied=0)
    assert [f.check for f in verdict.findings] == ["vacuous"]
