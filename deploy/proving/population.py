"""A synthetic population driven only through the gateway's public API.

Clinicians start tapers (some by approving a plan, some stepping by hand), patients report
symptoms (mostly mild; red flags, PHQ-9 item 9, resubmissions with the same ``Idempotency-Key``,
missed check-ins), clinicians acknowledge pages and resolve episodes with ``resume_taper``,
patients join peer support and set notification preferences. Every answered request goes to the
:class:`~deploy.proving.ledger.Ledger`; free text carries the synthetic PHI marker.

Requests are retried through faults (connection errors, 502/503/504) with the same
``Idempotency-Key`` where the API has one, so the ledger stays exact: a report counts once
however many times it was sent. A request whose outcome stays unknown is counted as ambiguous
and never expected.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from deploy.proving.ledger import Accepted, Ledger, RequestKind, synthetic_phi
from services.chassis.auth import Role, issue_dev_token
from services.chassis.settings import ServiceSettings

RETRYABLE = {429, 502, 503, 504}  # a fault's or the gateway's limit: the same request again
PANEL_SIZE = 50  # patients per clinician
CIWA_ITEMS = (
    "irritable", "fatigued", "tense", "difficulty_concentrating", "loss_of_appetite",
    "numbness_burning", "heart_racing", "head_full_achy", "muscle_aches_stiffness",
    "anxious_nervous_jittery", "upset", "sleep_restfulness", "weak", "enough_sleep",
    "visual_disturbances", "fearful", "worrying_misfortunes",
)  # fmt: skip
PLAN_BODY: dict[str, Any] = {
    "drug": "diazepam",
    "administrations_mg": ["5", "5"],
    "duration_weeks": 30,
    "age": 40,
    "formulations": ["diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"],
    "first_step_on_start": True,
}


@dataclass
class Patient:
    id: uuid.UUID
    clinician: str
    by_plan: bool
    dose_mg: Decimal = Decimal("10")
    last_step_on: date | None = None
    enrolled: bool = False
    reported_red: bool = False


@dataclass
class Population:
    base_url: str
    ledger: Ledger
    n: int
    seed: int
    concurrency: int = 8
    retry_for_s: float = 90.0
    t0: float = field(default_factory=time.time)
    on_red: Callable[[str, float], None] | None = None  # (patient, wall time) of a new RED
    _settings: ServiceSettings = field(init=False)
    _tokens: dict[str, tuple[float, str]] = field(default_factory=dict)
    _service_now: tuple[float, datetime] | None = None  # (wall, service) at the last look
    clock_scale: float = 1.0

    def __post_init__(self) -> None:
        self._settings = ServiceSettings(service_name="proving", environment="development")
        rng = random.Random(self.seed)
        self.rng = rng
        # Behaviour follows the seed; ids are new each run, so a run's counts are its own even
        # on a topology that served an earlier run.
        ids = random.Random(f"{self.seed}-{self.ledger.run_id}")
        self.patients = [
            Patient(
                id=uuid.UUID(int=ids.getrandbits(128), version=4),
                clinician=f"proving-clin-{i // PANEL_SIZE}",
                by_plan=rng.random() < 0.3,
            )
            for i in range(self.n)
        ]
        self.panels: dict[str, list[uuid.UUID]] = {}
        for p in self.patients:
            self.panels.setdefault(p.clinician, []).append(p.id)

    # -- tokens and requests --------------------------------------------------------------------
    def _token(self, key: str, make: Callable[[], str]) -> dict[str, str]:
        now = time.time()
        cached = self._tokens.get(key)
        if cached is None or now - cached[0] > 1800:
            cached = (now, make())
            self._tokens[key] = cached
        return {"Authorization": f"Bearer {cached[1]}"}

    def as_patient(self, p: Patient) -> dict[str, str]:
        return self._token(
            f"p:{p.id}",
            lambda: issue_dev_token(
                self._settings, subject=f"proving-pat-{p.id.hex[:8]}", role=Role.PATIENT,
                patient_id=p.id, ttl=timedelta(hours=8),
            ),
        )  # fmt: skip

    def as_clinician(self, p: Patient) -> dict[str, str]:
        return self._token(
            f"c:{p.clinician}",
            lambda: issue_dev_token(
                self._settings, subject=p.clinician, role=Role.CLINICIAN,
                panel=self.panels[p.clinician], ttl=timedelta(hours=8),
            ),
        )  # fmt: skip

    async def send(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        """The final answer, after retrying what a fault can cause; None: outcome unknown."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.2
        while True:
            try:
                r = await client.request(method, url, **kw)
                if r.status_code not in RETRYABLE:
                    if r.status_code >= 300:
                        self.ledger.refuse(kind, r.status_code, r.text)
                    return r
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.ledger.refuse(kind, 0)  # ambiguous: never expected by the checker
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)

    def accept(self, kind: RequestKind, p: Patient, r: httpx.Response, **kw: Any) -> None:
        self.ledger.accept(Accepted(kind, str(p.id), time.time() - self.t0, r.status_code, **kw))

    def service_today(self) -> date:
        assert self._service_now is not None
        wall, then = self._service_now
        return (then + timedelta(seconds=(time.time() - wall) * self.clock_scale)).date()

    # -- the patient's life ---------------------------------------------------------------------
    async def enrol(self, client: httpx.AsyncClient, p: Patient) -> None:
        base = f"/api/scheduler/patients/{p.id}"
        if p.by_plan:
            # Tomorrow on the service clock: "today" may already be over by the time it lands.
            today = self.service_today() if self._service_now else datetime.now().date()
            body = {**PLAN_BODY, "start_on": (today + timedelta(days=1)).isoformat()}
            r = await self.send(client, "plan", "POST", f"{base}/plans", json=body,
                                headers=self.as_clinician(p))  # fmt: skip
            if r is None or r.status_code != 201:
                p.by_plan = False  # stepped by hand instead
            else:
                a = await self.send(client, "plan_approved", "POST",
                                    f"{base}/plans/{r.json()['id']}/approve", json={},
                                    headers=self.as_clinician(p))  # fmt: skip
                if a is not None and a.status_code == 200:
                    self.accept("plan_approved", p, a, ref=str(r.json()["id"]))
                    p.enrolled = True
                    return
                p.by_plan = False
        body = {"drug": "diazepam", "half_life_class": "long", "current_daily_dose_mg": "10"}
        r = await self.send(client, "enrol", "POST", f"{base}/taper", json=body,
                            headers=self.as_clinician(p))  # fmt: skip
        if r is not None and r.status_code in (201, 409):
            if r.status_code == 201:
                self._service_now = (time.time(), datetime.fromisoformat(r.json()["as_of"]))
            self.accept("enrol", p, r)
            p.enrolled = True

    async def preferences(self, client: httpx.AsyncClient, p: Patient) -> None:
        body = {
            "timezone": "America/Chicago",
            "channels": ["sms", "email"],
            "email": f"{synthetic_phi('mail', p.id.hex[:6]).lower()}@example.org",
            "phone": f"+1555{self.rng.randrange(10**7):07d}",
            "quiet_hours": {"start": "00:00", "end": "00:00"},
        }
        url = f"/api/notifications/patients/{p.id}/notification-preferences"
        r = await self.send(client, "preferences", "PUT", url, json=body,
                            headers=self.as_patient(p))  # fmt: skip
        if r is not None and r.status_code == 422 and "quiet_hours" in r.text:
            body.pop("quiet_hours")
            r = await self.send(client, "preferences", "PUT", url, json=body,
                                headers=self.as_patient(p))  # fmt: skip
        if r is not None and r.status_code == 200:
            self.accept("preferences", p, r)

    async def join_peer_support(self, client: httpx.AsyncClient, p: Patient) -> None:
        r = await self.send(client, "peer_support", "PUT",
                            f"/api/group-matching/patients/{p.id}/peer-support",
                            json={"timezone": "America/Chicago", "language": "en"},
                            headers=self.as_patient(p))  # fmt: skip
        if r is not None and r.status_code == 200:
            self.accept("peer_support", p, r)

    def _report_body(self) -> tuple[dict[str, Any], bool]:
        roll = self.rng.random()
        if roll < 0.06:  # a red flag
            answers = {i: self.rng.randrange(0, 3) for i in CIWA_ITEMS}
            body = {"instrument": "ciwa-b", "oriented": True, "answers": answers,
                    "red_flags": ["seizure"]}  # fmt: skip
            return body, True
        if roll < 0.10:  # PHQ-9 item 9 (thoughts of self-harm): a safety escalation
            answers = {f"item_{i}": self.rng.randrange(0, 3) for i in range(1, 9)}
            return {"instrument": "phq-9", "answers": answers | {"item_9": 2}}, True
        answers = {i: self.rng.choice((0, 0, 1, 1, 2)) for i in CIWA_ITEMS}
        return {"instrument": "ciwa-b", "oriented": True, "answers": answers}, False

    async def report(self, client: httpx.AsyncClient, p: Patient) -> None:
        body, red = self._report_body()
        key = uuid.UUID(int=self.rng.getrandbits(128), version=4).hex
        url = f"/api/monitoring/patients/{p.id}/symptom-reports"
        headers = {**self.as_patient(p), "Idempotency-Key": key}
        sent = time.time()
        r = await self.send(client, "report", "POST", url, json=body, headers=headers)
        if r is None or r.status_code not in (200, 201):
            return
        severity = r.json().get("severity")
        # 200 on the first answer we saw: an earlier try was stored and its answer lost.
        self.accept("report", p, r, severity=severity, idempotency_key=key,
                    ref=str(r.json().get("report_id")))  # fmt: skip
        if severity == "RED":
            p.reported_red = True
            if self.on_red is not None:
                self.on_red(str(p.id), sent)
        if self.rng.random() < 0.15:  # the app resubmits: the same key, nothing new happens
            again = await self.send(client, "report_replay", "POST", url, json=body,
                                    headers=headers)  # fmt: skip
            if again is not None and again.status_code == 200:
                self.accept("report_replay", p, again, severity=severity, idempotency_key=key)
        del red

    async def step_by_hand(self, client: httpx.AsyncClient, p: Patient) -> None:
        if p.by_plan or self._service_now is None or p.dose_mg <= Decimal("5"):
            return
        today = self.service_today()
        if p.last_step_on is not None and (today - p.last_step_on).days < 14:
            return
        new = p.dose_mg - Decimal("0.5")
        body = {"new_daily_dose_mg": str(new), "effective_on": today.isoformat(),
                "reason_code": "planned_step"}  # fmt: skip
        r = await self.send(client, "dose_reduction", "POST",
                            f"/api/scheduler/patients/{p.id}/dose-reductions", json=body,
                            headers=self.as_clinician(p))  # fmt: skip
        if r is None:
            p.last_step_on = today  # ambiguous: not expected, and no second try on top
            return
        if r.status_code in (200, 201):
            self.accept("dose_reduction", p, r)
            p.dose_mg, p.last_step_on = new, today

    async def clinician_round(self, client: httpx.AsyncClient, p: Patient) -> None:
        await self._clinician_round(client, p)

    async def _clinician_round(self, client: httpx.AsyncClient, p: Patient) -> bool:
        """Acknowledge the patient's open escalations, resolve open episodes, resume."""
        headers = self.as_clinician(p)
        r = await self.send(client, "escalations", "GET", "/api/notifications/escalations",
                            headers=headers)  # fmt: skip
        if r is not None and r.status_code == 200:
            for e in r.json():
                if e["patient_id"] == str(p.id) and e.get("status") in ("triggered", "exhausted"):
                    a = await self.send(client, "acknowledge", "POST",
                                        f"/api/notifications/escalations/{e['id']}/acknowledge",
                                        headers=headers)  # fmt: skip
                    if a is not None and a.status_code == 200:
                        self.accept("acknowledge", p, a, ref=e["id"])
        base = f"/api/monitoring/patients/{p.id}/episodes"
        r = await self.send(client, "episodes", "GET", base, headers=headers)
        if r is None or r.status_code != 200:
            return False
        open_episodes = [ep for ep in r.json() if ep.get("status") == "open"]
        for i, ep in enumerate(open_episodes):
            # Only the last open episode may resume the taper (the API refuses it while
            # another is open): the others are closed keeping the hold.
            last = i == len(open_episodes) - 1
            body = {
                "resolution": "resume_taper" if last else "keep_held",
                "note": synthetic_phi("note", p.id.hex[:6]),
            }
            done = await self.send(client, "resolve", "POST", f"{base}/{ep['id']}/resolve",
                                   json=body, headers=headers)  # fmt: skip
            if done is not None and done.status_code == 200:
                self.accept("resolve", p, done, ref=ep["id"])
            else:
                return False
        p.reported_red = False
        return True

    # -- the run --------------------------------------------------------------------------------
    async def _pool(self, jobs: list[Callable[[], Awaitable[None]]]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(job: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await job()

        await asyncio.gather(*(one(j) for j in jobs))

    async def run(self, duration_s: float, stop: asyncio.Event | None = None) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=15, limits=limits) as c:
            # The first enrolment (by hand) tells the service clock; then everyone else.
            manual = next((p for p in self.patients if not p.by_plan), self.patients[0])
            manual.by_plan = False
            await self.enrol(c, manual)
            rest = [p for p in self.patients if p is not manual]
            await self._pool([lambda p=p: self.enrol(c, p) for p in rest])  # type: ignore[misc]
            await self._pool([lambda p=p: self.preferences(c, p)  # type: ignore[misc]
                              for p in self.patients if self.rng.random() < 0.5])  # fmt: skip
            await self._pool([lambda p=p: self.join_peer_support(c, p)  # type: ignore[misc]
                              for p in self.patients if self.rng.random() < 0.4])  # fmt: skip
            end = time.monotonic() + duration_s
            enrolled = [p for p in self.patients if p.enrolled]
            while time.monotonic() < end and not (stop and stop.is_set()):
                batch = []
                for p in self.rng.sample(enrolled, min(len(enrolled), self.concurrency * 4)):
                    roll = self.rng.random()
                    if roll < 0.15:
                        continue  # a missed check-in
                    if p.reported_red and roll < 0.6:
                        batch.append(lambda p=p: self.clinician_round(c, p))
                    elif roll < 0.75:
                        batch.append(lambda p=p: self.report(c, p))
                    else:
                        batch.append(lambda p=p: self.step_by_hand(c, p))
                await self._pool(batch)  # type: ignore[arg-type]
            # Wind down: every open episode resolved with resume, so held steps can go on
            # (again where a resolve met a concurrent change).
            for _ in range(5):
                left = [p for p in enrolled if p.reported_red]
                if not left:
                    break
                await self._pool([lambda p=p: self.clinician_round(c, p)  # type: ignore[misc]
                                  for p in left])  # fmt: skip
