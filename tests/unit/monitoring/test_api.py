"""Monitoring over HTTP (SQLite, the real app and unit of work; no broker started): reports for
every instrument, idempotent resubmission, episodes (one open per family, a rise to RED announced
once more), resolution, per-patient thresholds, and field-level 422s that store nothing."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts import EscalationResolved, Event, PageAcknowledged, ThresholdExceeded, event_class
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.errors import PermanentError
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.orm import dose_history
from services.monitoring.domain import instruments
from services.monitoring.service_layer.episodes import record_acknowledgement

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
PATIENT = uuid.uuid4()
OTHER = uuid.uuid4()
BASE = f"/api/monitoring/patients/{PATIENT}"
CIWA_ITEMS = [
    i.code
    for i in instruments.definition("ciwa-b", "1").items
    if i.code not in instruments.definition("ciwa-b", "1").observed_items
]


def headers(runtime: ServiceRuntime, role: Role = Role.CLINICIAN, **claims: Any) -> dict[str, str]:
    if role is Role.CLINICIAN:
        claims.setdefault("panel", [PATIENT])
    if role is Role.PATIENT:
        claims.setdefault("patient_id", PATIENT)
    token = issue_dev_token(runtime.settings, subject=f"{role}-1", role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


def ciwa(total: int, **extra: Any) -> dict[str, Any]:
    answers = dict.fromkeys(CIWA_ITEMS, 0)
    for k in range(total):
        answers[CIWA_ITEMS[k % len(CIWA_ITEMS)]] += 1
    return {"instrument": "ciwa-b", "oriented": True, "answers": answers, **extra}


def phq9(item_9: int = 0, total: int = 0) -> dict[str, Any]:
    answers = {f"item_{i}": 0 for i in range(1, 10)} | {"item_9": item_9}
    rest = total - item_9
    for i in range(1, 9):
        answers[f"item_{i}"] = min(3, max(rest, 0))
        rest -= answers[f"item_{i}"]
    return {"instrument": "phq-9", "answers": answers}


async def events(runtime: ServiceRuntime) -> list[Event]:
    async with runtime.uow() as uow:
        outbox = uow.table("outbox")
        rows = (await uow.session.execute(sa.select(outbox).order_by(outbox.c.seq))).mappings()
        return [event_class(r["event_type"]).model_validate_json(r["payload"]) for r in rows]


async def thresholds_exceeded(runtime: ServiceRuntime) -> list[ThresholdExceeded]:
    return [e for e in await events(runtime) if isinstance(e, ThresholdExceeded)]


async def count(runtime: ServiceRuntime, table: str) -> int:
    async with runtime.uow() as uow:
        n = await uow.session.scalar(sa.select(sa.func.count()).select_from(uow.table(table)))
    return int(n or 0)


async def submit(
    client: httpx.AsyncClient,
    h: dict[str, str],
    body: dict[str, Any],
    key: str | None = None,
    status: int = 201,
) -> dict[str, Any]:
    extra = {"Idempotency-Key": key} if key else {}
    r = await client.post(f"{BASE}/symptom-reports", json=body, headers=h | extra)
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.mark.parametrize(
    ("body", "band"),
    [
        (ciwa(0), "none"),
        (phq9(total=12), "moderate"),
        ({"instrument": "gad-7", "answers": {f"item_{i}": 1 for i in range(1, 8)}}, "mild"),
        (
            {
                "instrument": "bwsq",
                "answers": dict.fromkeys(
                    (i.code for i in instruments.definition("bwsq", "1").items), 1
                )
                | {"hallucinations": 0},  # above 0 is a red flag: RED
            },
            "unbanded",
        ),
    ],
)
async def test_every_instrument_is_scored_and_announced(
    runtime: ServiceRuntime, client: httpx.AsyncClient, body: dict[str, Any], band: str
) -> None:
    out = await submit(client, headers(runtime, Role.PATIENT), body)
    assert out["band"] == band and out["severity"] is None
    assert out["refused_items"] == [] and out["safety_accepted"] is True
    [reported] = await events(runtime)
    assert reported.event_type == "SymptomReported"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (ciwa(0) | {"instrument_version": "9"}, ["body", "instrument_version"]),
        (ciwa(0) | {"instrument": "phq9"}, ["body", "instrument"]),
        (ciwa(0) | {"red_flags": "seizure"}, ["body", "red_flags"]),
        (ciwa(0) | {"answers": [1, 2]}, ["body", "answers"]),
        (ciwa(0) | {"notes": "x"}, ["body", "notes"]),
    ],
)
async def test_a_body_with_no_readable_safety_part_is_422_and_stores_nothing(
    runtime: ServiceRuntime, client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    r = await client.post(f"{BASE}/symptom-reports", json=body, headers=headers(runtime))
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]]
    assert await count(runtime, "symptom_reports") == 0 and await count(runtime, "outbox") == 0


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (phq9() | {"answers": phq9()["answers"] | {"item_3": 4}}, ("phq-9", "item_3")),
        ({"instrument": "gad-7", "answers": {"item_1": 1}}, ("gad-7", "item_2")),
        (
            ciwa(0) | {"answers": ciwa(0)["answers"] | {"sneezing": 1}},
            ("ciwa-b", "answers.sneezing"),
        ),
        ({"instrument": "ciwa-b", "answers": ciwa(0)["answers"]}, ("ciwa-b", "oriented")),
        (phq9() | {"answers": phq9()["answers"] | {"item_3": "4444"}}, ("phq-9", "item_3")),
    ],
)
async def test_an_invalid_item_is_refused_by_name_and_the_instrument_is_not_scored(
    runtime: ServiceRuntime,
    client: httpx.AsyncClient,
    body: dict[str, Any],
    refused: tuple[str, str],
) -> None:
    out = await submit(client, headers(runtime), body)
    assert refused in {(r["instrument"], r["item"]) for r in out["refused_items"]}
    assert "4" not in str(out["refused_items"]) or refused[1] != "item_3"  # no value echoed
    assert (out["band"], out["method"], out["severity"]) == ("not_scored", "not-scored", None)
    assert out["safety_accepted"] is True
    assert await thresholds_exceeded(runtime) == []


async def test_an_implausible_pulse_is_refused_on_its_own_and_the_report_is_scored(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    for pulse in (-5, 0, 1000, 19, 251, "fast", 80.5):
        out = await submit(client, headers(runtime), ciwa(3, pulse_bpm=pulse))
        assert out["refused_items"] == [
            {"instrument": None, "item": "pulse_bpm", "reason": "must be an integer 20..250"}
        ]
        assert out["band"] == "mild"
    async with runtime.uow() as uow:
        reports = uow.table("symptom_reports")
        stored = (await uow.session.scalars(sa.select(reports.c.pulse_bpm))).all()
    assert stored == [None] * 7


# --- issue 13 item 1: a red flag is never lost to a mistyped answer ----------------------------
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (ciwa(0, red_flags=["seizure"]) | {"answers": {"irritable": 9}}, "red_flag:seizure"),
        (
            ciwa(0, red_flags=["self_harm_thoughts", "sneezing"], pulse_bpm=1000, oriented=None),
            "red_flag:self_harm_thoughts",
        ),
        ({"instrument": "ciwa-b", "oriented": False, "answers": {"x": "y"}}, "gate:not_oriented"),
        (
            {"instrument": "phq-9", "answers": {"item_9": 3, "item_1": 1}},  # items 2-8 missing
            "item:phq-9:item_9",
        ),
        (
            {"instrument": "bwsq", "answers": {"hallucinations": 1, "dizziness": 7}},
            "item:bwsq:hallucinations",
        ),
    ],
)
async def test_the_safety_part_escalates_whatever_else_is_refused(
    runtime: ServiceRuntime, client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    out = await submit(client, headers(runtime, Role.PATIENT), body)
    assert out["severity"] == "RED" and out["safety_accepted"] is True
    assert reason in {r["code"] for r in out["reasons"]}
    assert out["band"] == "not_scored"  # the instrument is never scored from partial answers
    [exceeded] = await thresholds_exceeded(runtime)
    assert (exceeded.family, exceeded.severity.value) == ("safety", "RED")


async def test_a_resubmission_returns_the_first_result_and_never_escalates_twice(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    first = await submit(client, h, ciwa(45), key="k-1")
    again = await submit(client, h, ciwa(45), key="k-1", status=200)
    assert again["report_id"] == first["report_id"] and again["replayed"] is True
    assert first["replayed"] is False
    assert len(await thresholds_exceeded(runtime)) == 1
    assert await count(runtime, "symptom_reports") == 1


async def test_a_key_reused_with_another_body_is_refused_and_never_swallows_a_red_flag(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    """Issue 13 item 4a: a CIWA-B of zeros with key K, then K again with a seizure."""
    h = headers(runtime, Role.PATIENT)
    first = await submit(client, h, ciwa(0), key="K")
    assert first["severity"] is None
    r = await client.post(
        f"{BASE}/symptom-reports",
        json=ciwa(0, red_flags=["seizure"]),
        headers=h | {"Idempotency-Key": "K"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await count(runtime, "symptom_reports") == 1
    # The same body under the same key is still a replay (200); a new key is a new report.
    assert (await submit(client, h, ciwa(0), key="K", status=200))["replayed"] is True
    seizure = await submit(client, h, ciwa(0, red_flags=["seizure"]), key="K2")
    assert seizure["severity"] == "RED"
    [exceeded] = await thresholds_exceeded(runtime)
    assert exceeded.family == "safety"


async def test_an_empty_idempotency_key_is_422_naming_the_header_never_a_500(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    """Found by the gateway fuzz: an empty key was stored but never looked up, so a second
    report with an empty key hit the unique index and answered 500."""
    h = headers(runtime, Role.PATIENT)
    for _ in range(2):
        r = await client.post(
            f"{BASE}/symptom-reports",
            json={"instrument": "bwsq"},
            headers=h | {"Idempotency-Key": ""},
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert await count(runtime, "symptom_reports") == 0


async def test_one_open_episode_per_family_and_a_rise_to_red_is_announced_once_more(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    await submit(client, h, ciwa(25))  # AMBER withdrawal: opens the episode
    await submit(client, h, ciwa(30))  # still AMBER: folded in, no new event
    await submit(client, h, ciwa(45))  # RED: the same episode, announced at the higher level
    await submit(client, h, ciwa(50))  # still RED: nothing new
    await submit(client, h, phq9(item_9=1))  # another family: its own episode
    exceeded = await thresholds_exceeded(runtime)
    assert [(e.family, e.severity.value) for e in exceeded] == [
        ("withdrawal", "AMBER"),
        ("withdrawal", "RED"),
        ("safety", "RED"),
    ]
    assert exceeded[0].episode_id == exceeded[1].episode_id != exceeded[2].episode_id
    r = await client.get("/api/monitoring/episodes", headers=headers(runtime))
    episodes = {e["family"]: e for e in r.json()}
    assert set(episodes) == {"withdrawal", "safety"}
    assert episodes["withdrawal"]["reports"] == 4 and episodes["withdrawal"]["severity"] == "RED"


async def test_resolving_announces_escalation_resolved_and_the_next_report_opens_a_new_episode(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    await submit(client, h, ciwa(45))
    await submit(client, h, phq9(item_9=2))
    [withdrawal, safety] = await thresholds_exceeded(runtime)
    url = f"{BASE}/episodes/{withdrawal.episode_id}/resolve"
    r = await client.post(url, json={"resolution": "resume_taper"}, headers=headers(runtime))
    assert r.status_code == 409  # the safety episode is still open: the taper stays held
    r = await client.post(
        f"{BASE}/episodes/{safety.episode_id}/resolve",
        json={"resolution": "referred", "note": "seen today, safety plan agreed"},
        headers=headers(runtime),
    )
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    r = await client.post(url, json={"resolution": "resume_taper"}, headers=headers(runtime))
    assert r.status_code == 200, r.text
    resolved = [e for e in await events(runtime) if isinstance(e, EscalationResolved)]
    assert [(e.family, e.resolution) for e in resolved] == [
        ("safety", "referred"),
        ("withdrawal", "resume_taper"),
    ]
    assert "safety plan" not in resolved[0].model_dump_json()  # the note stays here
    r = await client.post(url, json={"resolution": "keep_held"}, headers=headers(runtime))
    assert r.status_code == 409  # already resolved
    await submit(client, h, ciwa(45))
    latest = (await thresholds_exceeded(runtime))[-1]
    assert latest.episode_id not in {withdrawal.episode_id, safety.episode_id}


async def test_only_a_clinician_on_the_panel_resolves_and_every_access_is_audited(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    await submit(client, headers(runtime, Role.PATIENT), ciwa(45))
    [exceeded] = await thresholds_exceeded(runtime)
    url = f"{BASE}/episodes/{exceeded.episode_id}/resolve"
    body = {"resolution": "keep_held"}
    assert (
        await client.post(url, json=body, headers=headers(runtime, Role.PATIENT))
    ).status_code == 403
    stranger = headers(runtime, panel=[OTHER])
    assert (await client.post(url, json=body, headers=stranger)).status_code == 403
    assert (await client.get("/api/monitoring/episodes", headers=stranger)).json() == []
    async with runtime.uow() as uow:
        audit = uow.table("audit_log")
        outcomes = (await uow.session.execute(sa.select(audit.c.resource, audit.c.outcome))).all()
    assert ("episode", "denied") in outcomes


async def test_per_patient_thresholds_move_a_band_and_safety_rules_cannot_be_moved(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    url = f"{BASE}/rule-thresholds"
    r = await client.put(
        url,
        json={"thresholds": {"red_flag:seizure": 5}, "reason_code": "clinician_judgement"},
        headers=headers(runtime),
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "body",
        "thresholds",
        "red_flag:seizure",
    ]
    r = await client.put(
        url,
        json={"thresholds": {"band:ciwa-b:amber": 30}, "reason_code": "chronic_symptoms"},
        headers=headers(runtime),
    )
    assert r.status_code == 200, r.text
    assert (await submit(client, headers(runtime, Role.PATIENT), ciwa(25)))["severity"] is None
    assert (await client.get(url, headers=headers(runtime))).json()["thresholds"] == {
        "band:ciwa-b:amber": 30
    }


async def test_the_baseline_and_the_withdrawal_window_come_from_the_patients_history(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    clock.set(datetime(2026, 2, 20, 9, tzinfo=UTC))
    await submit(client, h, ciwa(4))  # before the taper: the baseline
    async with runtime.uow() as uow:
        await uow.session.execute(
            sa.insert(dose_history).values(
                event_id=uuid.uuid4(),
                patient_id=PATIENT,
                drug="alprazolam",
                new_daily_dose_mg=1,
                effective_on=date(2026, 3, 1),
                half_life_class="short",
            )
        )
        await uow.commit()
    clock.set(NOW)
    out = await submit(client, h, ciwa(14))  # day 1 after the cut: +10 from baseline
    codes = {r["code"] for r in out["reasons"]}
    assert codes == {"rise_from_baseline:ciwa-b", "worsening_after_reduction:ciwa-b"}
    assert out["severity"] == "AMBER"


async def test_trends_show_scores_with_dose_steps_as_json_and_svg(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    await submit(client, h, ciwa(4))
    async with runtime.uow() as uow:
        await uow.session.execute(
            sa.insert(dose_history).values(
                event_id=uuid.uuid4(),
                patient_id=PATIENT,
                drug="diazepam",
                new_daily_dose_mg=9,
                effective_on=date(2026, 3, 2),
                half_life_class="long",
            )
        )
        await uow.commit()
    await submit(client, h, ciwa(25))
    r = await client.get(f"{BASE}/trends", params={"instrument": "ciwa-b"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["total"] for p in body["points"]] == [4, 25]
    assert body["dose_steps"] == ["2026-03-02"] and body["thresholds"] == {"AMBER": 21, "RED": 41}
    r = await client.get(f"{BASE}/trends", params={"format": "svg"}, headers=h)
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.text)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f"{ns}circle")) == 2
    assert [e.get("class") for e in root.findall(f"{ns}line") if e.get("class") == "dose-step"]
    assert str(PATIENT) not in r.text
    other = headers(runtime, Role.PATIENT, patient_id=OTHER)
    assert (await client.get(f"{BASE}/trends", headers=other)).status_code == 403


async def test_a_page_acknowledgement_is_recorded_once_and_an_unknown_episode_is_permanent(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    await submit(client, headers(runtime, Role.PATIENT), ciwa(45))
    [exceeded] = await thresholds_exceeded(runtime)

    def ack(episode_id: uuid.UUID, at: datetime) -> PageAcknowledged:
        return PageAcknowledged.create(
            patient_id=PATIENT,
            occurred_at=at,
            episode_id=episode_id,
            severity="RED",
            acknowledged_by="c-9",
            channel="signed_link",
        )

    first, later = NOW.replace(hour=10), NOW.replace(hour=11)
    for event in (ack(exceeded.episode_id, first), ack(exceeded.episode_id, later)):
        async with runtime.uow() as uow:
            await record_acknowledgement(event, uow)
            await uow.commit()
    r = await client.get(f"{BASE}/episodes", headers=headers(runtime))
    [episode] = r.json()
    assert datetime.fromisoformat(episode["acknowledged_at"]) == first
    assert episode["status"] == "open"  # acknowledged is not resolved
    with pytest.raises(PermanentError):
        async with runtime.uow() as uow:
            await record_acknowledgement(ack(uuid.uuid4(), later), uow)


async def test_a_threshold_cannot_switch_red_off(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    """Issue 13 item 3: CIWA-B >= 41 set to 1000 (the scale's maximum is 80) is refused."""
    url = f"{BASE}/rule-thresholds"
    for value in (1000, 81, 42):
        body = {"thresholds": {"band:ciwa-b:red": value}, "reason_code": "clinician_judgement"}
        r = await client.put(url, json=body, headers=headers(runtime))
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "thresholds", "band:ciwa-b:red"]
        assert str(value) not in r.json()["detail"][0]["msg"]
    body = {"thresholds": {"band:ciwa-b:red": 35}, "reason_code": "clinician_judgement"}
    assert (await client.put(url, json=body, headers=headers(runtime))).status_code == 200
    assert (await submit(client, headers(runtime, Role.PATIENT), ciwa(36)))["severity"] == "RED"


async def test_a_replay_of_a_report_with_refused_items_returns_them_again(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    h = headers(runtime, Role.PATIENT)
    body = phq9(item_9=2) | {"answers": {"item_9": 2}}
    first = await submit(client, h, body, key="k-partial")
    again = await submit(client, h, body, key="k-partial", status=200)
    assert first["refused_items"] and again["refused_items"] == first["refused_items"]
    assert (again["severity"], again["replayed"]) == ("RED", True)
    assert len(await thresholds_exceeded(runtime)) == 1
