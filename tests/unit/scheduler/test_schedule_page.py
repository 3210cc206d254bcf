"""The patient's schedule page (issue 13, item 15) without a browser: plain words from the
catalogue, today's row and the next change marked, accessible markup, own CSP, authorized and
audited. The browser test is tests/integration/gateway/test_schedule_page_browser.py."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import httpx
import pytest

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.schedule_html import schedule_to_html
from services.scheduler.domain.model import Administration
from services.scheduler.domain.patient_schedule import catalogue_v1, schedule
from services.scheduler.domain.planning import PlannedStep, StepKind, formulations_v1
from tests.unit.scheduler.support import auth, clock, rows
from tests.unit.scheduler.test_plan_lifecycle import BASE, PATIENT, approve, draft

D = Decimal
FORMS = [
    f
    for c in ("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml")
    if (f := formulations_v1().get(c)) is not None
]
START = date(2026, 1, 12)


def step(n: int, on: date, *doses: str) -> PlannedStep:
    return PlannedStep(
        number=n,
        effective_on=on,
        kind=StepKind.REDUCTION,
        administrations=tuple(Administration("diazepam", D(d)) for d in doses),
        diazepam_eq_mg=D(0),
        hold_weeks=2,
    )


STEPS = [
    step(1, START, "3", "2"),
    step(2, START + timedelta(days=14), "2.5", "0.5"),
    step(3, START + timedelta(days=28), "0", "0"),
]


def test_each_dose_in_plain_words_with_today_and_the_next_change() -> None:
    s = schedule(STEPS, FORMS, START + timedelta(days=3))
    assert s.rows[0].lines == (
        "Take one 2 mg diazepam tablet and one half of a 2 mg diazepam tablet in the morning.",
        "Take one 2 mg diazepam tablet at night.",
    )
    assert s.rows[1].lines == (
        "Take one half of a 5 mg diazepam tablet in the morning.",
        "Take 0.5 mL of the 1 mg/mL diazepam liquid at night.",
    )
    assert s.rows[2].lines == ("Stop taking diazepam. You do not need any more.",)
    assert s.rows[0].dates == "Monday 12 January 2026 to Sunday 25 January 2026"
    assert s.rows[2].dates == "From Monday 9 February 2026"
    assert s.current == s.rows[0] and s.next_change == s.rows[1]
    assert s.today_line == "Today is Thursday 15 January 2026."
    before = schedule(STEPS, FORMS, START - timedelta(days=1))
    assert before.current is None and before.next_change == before.rows[0]
    after = schedule(STEPS, FORMS, START + timedelta(days=60))
    assert after.current == after.rows[2] and after.next_change is None


def test_before_the_first_step_today_is_the_dose_the_plan_starts_from() -> None:
    """The first step waits one interval by default: until then the patient's row for today is
    the regimen the plan starts from, and the first step is the next change."""
    baseline = tuple(Administration("diazepam", D(d)) for d in ("3", "3"))
    s = schedule(STEPS, FORMS, START - timedelta(days=14), baseline=baseline)
    assert s.current == s.rows[0] and s.next_change == s.rows[1]
    assert s.rows[1].starts_on == START
    assert s.rows[0].dates == "Until Sunday 11 January 2026 (your dose now)"
    assert s.rows[0].lines == (
        "Take one 2 mg diazepam tablet and one half of a 2 mg diazepam tablet in the morning.",
        "Take one 2 mg diazepam tablet and one half of a 2 mg diazepam tablet at night.",
    )
    # once the plan has started, the starting regimen is no longer shown
    assert schedule(STEPS, FORMS, START, baseline=baseline).rows[0].starts_on == START


def test_every_word_comes_from_the_catalogue() -> None:
    t = dict(catalogue_v1()) | {"take": "Prenez {pieces} {when}.", "lang": "fr"}
    s = schedule(STEPS, FORMS, START, t)
    assert s.lang == "fr" and s.rows[0].lines[1].startswith("Prenez ")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_accessible_markup() -> None:
    html = schedule_to_html(schedule(STEPS, FORMS, START + timedelta(days=3)))
    page = _Page()
    page.feed(html)
    tags = [t for t, _ in page.tags]
    assert ("html", {"lang": "en"}) in page.tags
    assert tags.count("h1") == 1 and tags.count("h2") == 3 and "caption" in tags
    scopes = [a.get("scope") for t, a in page.tags if t == "th"]
    assert scopes.count("col") == 2 and scopes.count("row") == len(STEPS)
    assert [a for t, a in page.tags if t == "tr" and a.get("aria-current") == "date"]
    assert "@media print" in html and "<script" not in html


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


async def test_the_patient_gets_their_page_and_nobody_else_does(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    await approve(client, clinician, plan["id"])
    first = date.fromisoformat(plan["steps"][0]["effective_on"])
    clock(runtime).set(clock(runtime).now() + (first - clock(runtime).now().date()))
    url = f"{BASE}/plans/{plan['id']}/schedule.html"
    me = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    r = await client.get(url, headers=me)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert 'aria-current="date"' in r.text and str(PATIENT) not in r.text
    assert (await client.get(url, headers=clinician)).status_code == 200
    other = auth(runtime, Role.PATIENT, patient_id=uuid.uuid4())
    assert (await client.get(url, headers=other)).status_code == 403
    audit = [(a["actor_role"], a["outcome"]) for a in await rows(runtime, "audit_log")]
    assert audit[-3:] == [("patient", "allowed"), ("clinician", "allowed"), ("patient", "denied")]
