"""The exact checker: the ledger (what was asked) against the evidence (what happened), after
quiescence. Pure: every check names what it found, and a property that cannot be checked because
nothing exercised it is a finding too (a vacuous run proves nothing)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from contracts.topics import ALL_TOPICS
from deploy.proving.evidence import Evidence, Record
from deploy.proving.ledger import Ledger

# Who must have processed each event type (every consumer of its topic).
CONSUMERS: dict[str, tuple[str, ...]] = {t.event.EVENT_TYPE: t.consumers for t in ALL_TOPICS}
DOSE_CONSUMERS = CONSUMERS["DoseReduced"]


@dataclass(frozen=True)
class Finding:
    check: str  # lost / duplicate / order / dead_letter / parked / outbox / lag / phi / vacuous
    detail: str  # ids and counts only: never PHI


@dataclass
class Verdict:
    findings: list[Finding] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # figures for the report

    @property
    def ok(self) -> bool:
        return not self.findings

    def lost(self) -> int:
        return sum(1 for f in self.findings if f.check == "lost")

    def duplicates(self) -> int:
        return sum(1 for f in self.findings if f.check == "duplicate")

    def add(self, check: str, detail: str) -> None:
        self.findings.append(Finding(check, detail))


def check(ledger: Ledger, ev: Evidence, *, faults_applied: int = 0) -> Verdict:
    v = Verdict()
    _reports(ledger, ev, v)
    _escalations(ledger, ev, v)
    _doses(ledger, ev, v)
    _order(ev, v)
    _outbox_on_topics(ev, v)
    _dead_letters(ledger, ev, v)
    _quiet(ev, v)
    _provider_requests(ev, v)
    for hit in ev.phi_hits:
        v.add("phi", f"synthetic PHI marker at {hit}")
    _not_vacuous(ledger, ev, v, faults_applied)
    return v


def _by_type(ev: Evidence, event_type: str) -> list[Record]:
    return [r for r in ev.records if r.event_type == event_type]


def _reports(ledger: Ledger, ev: Evidence, v: Verdict) -> None:
    """Every new report stored exactly once; a replay (same Idempotency-Key) stores nothing."""
    expected = ledger.new_reports_by_patient()
    v.counts["reports"] = sum(expected.values())
    v.counts["report_replays"] = sum(1 for _ in ledger.of_kind("report_replay"))
    for patient, n in sorted(expected.items()):
        stored = ev.reports_stored.get(patient, 0)
        if stored < n:
            v.add("lost", f"patient {patient}: {n} reports accepted, {stored} stored")
        elif stored > n:
            v.add("duplicate", f"patient {patient}: {n} reports accepted, {stored} stored")


def _escalations(ledger: Ledger, ev: Evidence, v: Verdict) -> None:
    """Every accepted RED -> a RED ThresholdExceeded for its patient, and each episode -> exactly
    one escalation in notifications and one page row per level."""
    thresholds = _by_type(ev, "ThresholdExceeded")
    red_by_patient: dict[str, set[str]] = defaultdict(set)
    red_events: dict[str, set[str]] = defaultdict(set)  # episode -> its RED ThresholdExceeded ids
    for r in thresholds:
        assert r.payload is not None
        if r.payload.get("severity") == "RED":
            red_by_patient[str(r.payload["patient_id"])].add(str(r.payload["episode_id"]))
            red_events[str(r.payload["episode_id"])].add(str(r.event_id))
    handled = ev.inbox.get("notifications", set())
    reds = ledger.red_patients()
    v.counts["red_patients"] = len(reds)
    for patient in sorted(reds):
        if not red_by_patient.get(patient):
            v.add("lost", f"patient {patient}: RED report accepted, no RED ThresholdExceeded")
    episodes = {e for es in red_by_patient.values() for e in es}
    v.counts["red_episodes"] = len(episodes)
    for episode in sorted(episodes):
        n = ev.escalations.get(episode, 0)
        # Resolved before notifications escalated it: fine only if notifications did handle its
        # ThresholdExceeded (then saw it resolved). One dead-lettered or skipped is a lost page,
        # whatever the clinician did next.
        if n == 0 and episode in ev.resolved_in_notifications and red_events[episode] & handled:
            v.counts["resolved_before_escalation"] += 1
            continue
        if n == 0:
            v.add("lost", f"episode {episode}: no escalation in notifications")
            continue
        if n > 1:
            v.add("duplicate", f"episode {episode}: {n} escalations")
        status, reached = ev.escalation_state.get(episode, ("?", 1))
        if reached == 0 and status != "resolved":
            v.add("lost", f"episode {episode}: escalation {status} at level 0, never paged")
        for level in range(1, reached + 1):
            if not any(e == episode and lv == level for e, lv, _ in ev.pages):
                v.add("lost", f"episode {episode}: reached level {level}, no page there")
    provider = Counter(
        (str(r.get("episode_id")), int(r.get("level") or 0), str(r.get("cycle_loop")))
        for r in ev.sink.get("webhook", [])
    )
    for episode, level, who in ev.pages:
        if episode not in episodes:
            continue
        status = ev.page_status.get((episode, level, who), "delivered")
        cycle_loop = "/".join(who.split("/")[:2])
        if status == "delivered" and not provider.get((episode, level, cycle_loop)):
            v.add("lost", f"episode {episode} level {level} ({who}): no request at the provider")
        # A page still pending is fine only once the escalation stopped (acknowledged or
        # resolved: its delivery is cancelled); pending on a live escalation is a stuck page.
        live = ev.escalation_state.get(episode, ("?", 0))[0] in ("triggered", "exhausted")
        if status == "failed" or (status == "pending" and live):
            v.add("lost", f"episode {episode} level {level} ({who}): page {status}")
    for (episode, level, who), n in sorted(ev.pages.items()):
        if n > 1:
            v.add("duplicate", f"episode {episode} level {level} ({who}): {n} pages")
    v.counts["pages"] = sum(ev.pages.values())


def _doses(ledger: Ledger, ev: Evidence, v: Verdict) -> None:
    """Every step announced once; every consumer processed it once and has its effect once; no
    step took effect while the patient's taper was held."""
    steps: Counter[tuple[str, str, int]] = Counter()
    seen_ids: set[str] = set()
    for r in _by_type(ev, "DoseReduced"):
        assert r.payload is not None
        if r.event_id in seen_ids:
            continue  # the same event published twice: a redelivery, consumers dedupe it
        seen_ids.add(str(r.event_id))
        p = r.payload
        steps[(str(p["patient_id"]), str(p["plan_id"]), int(p["step_number"]))] += 1
    v.counts["dose_reduced"] = len(seen_ids)
    for (patient, plan, step), n in sorted(steps.items()):
        if n > 1:
            v.add("duplicate", f"patient {patient} plan {plan} step {step}: {n} DoseReduced")
    manual = sum(1 for _ in ledger.of_kind("dose_reduction"))
    announced_patients = Counter(p for p, _, _ in steps)
    for patient, n in Counter(a.patient_id for a in ledger.of_kind("dose_reduction")).items():
        if announced_patients.get(patient, 0) < n:
            v.add("lost", f"patient {patient}: {n} dose reductions accepted, fewer announced")
    v.counts["manual_dose_reductions"] = manual
    for consumer in DOSE_CONSUMERS:
        done = ev.inbox.get(consumer, set())
        effects = ev.effects.get(consumer)
        for event_id in sorted(seen_ids):
            if event_id not in done:
                v.add("lost", f"DoseReduced {event_id}: not processed by {consumer}")
            if effects is not None:
                n = effects.get(event_id, 0)
                if n == 0:
                    v.add("lost", f"DoseReduced {event_id}: no effect in {consumer}")
                elif n > 1:
                    v.add("duplicate", f"DoseReduced {event_id}: {n} effects in {consumer}")
    _no_step_while_held(ev, v)


def _no_step_while_held(ev: Evidence, v: Verdict) -> None:
    # The scheduler's own order: its events for one patient share the partition of the patient's
    # key on each topic, but held/resumed and steps are on different topics; occurred_at orders
    # them (one service clock).
    timeline: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for r in ev.records:
        if r.event_type in ("TaperHeld", "TaperResumed", "DoseReduced") and r.payload:
            p = r.payload
            timeline[str(p["patient_id"])].append(
                (str(p["occurred_at"]), str(r.event_type), str(r.event_id))
            )
    for patient, events in timeline.items():
        held = False
        for _, kind, event_id in sorted(set(events)):
            if kind == "TaperHeld":
                held = True
            elif kind == "TaperResumed":
                held = False
            elif held:
                v.add("order", f"patient {patient}: DoseReduced {event_id} while held")


def _order(ev: Evidence, v: Verdict) -> None:
    """Per patient and topic: one partition, and the events in the producer's commit order."""
    seq = {o.event_id: o.seq for o in ev.outbox}
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in ev.records:
        if r.key is not None:
            groups[(r.topic, r.key)].append(r)
    for (topic, key), records in groups.items():
        partitions = {r.partition for r in records}
        if len(partitions) > 1:
            v.add("order", f"{topic} key {key}: on partitions {sorted(partitions)}")
            continue
        first: dict[str, int] = {}
        for r in sorted(records, key=lambda r: r.offset):
            if r.event_id is not None and r.event_id not in first:
                first[r.event_id] = r.offset
        in_log = [e for e in sorted(first, key=lambda e: first[e]) if e in seq]
        if in_log != sorted(in_log, key=lambda e: seq[e]):
            v.add("order", f"{topic} key {key}: offsets disagree with the outbox order")


def _outbox_on_topics(ev: Evidence, v: Verdict) -> None:
    on_topic = Counter((r.topic, r.event_id) for r in ev.records)
    redelivered = sum(n - 1 for n in on_topic.values() if n > 1)
    v.counts["republished"] = redelivered
    for o in ev.outbox:
        if o.published and on_topic.get((o.topic, o.event_id), 0) == 0:
            v.add("lost", f"{o.service} outbox {o.seq} ({o.event_id}) not on {o.topic}")


def _dead_letters(ledger: Ledger, ev: Evidence, v: Verdict) -> None:
    """The DLQs hold exactly the injected poison, each once per consumer, each with a reason."""
    from contracts.topics import DLQ_SUFFIX

    expected: Counter[tuple[str, str]] = Counter()
    for p in ledger.poison:
        for consumer in _consumers_of_topic(p.topic):
            expected[(p.topic + DLQ_SUFFIX, f"{p.key}|{consumer}")] += 1
    got: Counter[tuple[str, str]] = Counter()
    reasons: dict[tuple[str, str], str] = {}  # the first reason per key: why it was dead-lettered
    for r in ev.dead_letters:
        consumer = r.headers.get("dlq.consumer", "?")
        got[(r.topic, f"{r.key}|{consumer}")] += 1
        reasons.setdefault((r.topic, f"{r.key}|{consumer}"), r.headers.get("dlq.reason", "")[:120])
        if not r.headers.get("dlq.reason"):
            v.add("dead_letter", f"{r.topic} offset {r.offset}: no dlq.reason")
    v.counts["poison_injected"] = len(ledger.poison)
    v.counts["dead_letters"] = len(ev.dead_letters)
    for (topic, key), n in sorted(got.items()):
        want = expected.get((topic, key), 0)
        if want == 0:
            who, reason = key.split("|")[-1], reasons.get((topic, key), "")
            v.add(
                "dead_letter",
                f"{topic}: unexpected dead letter (key {key.split('|')[0]}, {who}: {reason})",
            )
        elif n > want:
            v.add("duplicate", f"{topic}: poison {key} dead-lettered {n} times")
    for (topic, key), want in sorted(expected.items()):
        if got.get((topic, key), 0) < want:
            v.add("dead_letter", f"{topic}: injected poison {key} not dead-lettered")


def _consumers_of_topic(topic: str) -> tuple[str, ...]:
    for t in ALL_TOPICS:
        if t.name == topic:
            return t.consumers
    return ()


def _quiet(ev: Evidence, v: Verdict) -> None:
    for service, n in sorted(ev.parked_timers.items()):
        if n:
            v.add("parked", f"{service}: {n} parked timers")
    for service, n in sorted(ev.pending_outbox.items()):
        if n:
            v.add("outbox", f"{service}: {n} outbox rows not published")
    for group, n in sorted(ev.consumer_lag.items()):
        if n:
            v.add("lag", f"consumer group {group}: lag {n}")


def _provider_requests(ev: Evidence, v: Verdict) -> None:
    """Webhook resends carry the page's dedup key (the provider opens one incident): counted,
    not a duplicate. SMS and e-mail have no such key at the provider: a second request for the
    same message is a duplicate the patient or clinician receives."""
    webhook = Counter(str(r.get("dedup_key")) for r in ev.sink.get("webhook", []))
    v.counts["webhook_requests"] = sum(webhook.values())
    v.counts["webhook_resends"] = sum(n - 1 for n in webhook.values() if n > 1)
    for channel, ident in (("sms", "idempotency_token"), ("mail", "message_id")):
        keys = Counter(str(r.get(ident)) for r in ev.sink.get(channel, []) if r.get(ident))
        v.counts[f"{channel}_requests"] = len(ev.sink.get(channel, []))
        for key, n in sorted(keys.items()):
            if n > 1:
                v.add("duplicate", f"{channel}: message {key} delivered {n} times")


def _not_vacuous(ledger: Ledger, ev: Evidence, v: Verdict, faults_applied: int) -> None:
    """A run that exercised nothing proves nothing: each property needs its witnesses."""
    v.counts["faults"] = faults_applied
    v.counts["skipped_duplicates"] = ev.skipped_duplicates
    v.counts["spans_scanned"] = ev.spans_exported
    needs = {
        "RED reports": v.counts["red_patients"],
        "DoseReduced events": v.counts["dose_reduced"],
        "injected poison": len(ledger.poison),
        "redeliveries (skipped duplicates or republished events)": ev.skipped_duplicates
        + v.counts["republished"],
        "exported spans (the PHI scan reads them with the logs)": ev.spans_exported,
    }
    if faults_applied == 0:
        needs["faults"] = 0
    for what, n in needs.items():
        if n == 0:
            v.add("vacuous", f"no {what}: the run did not exercise the property")
