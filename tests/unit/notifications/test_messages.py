"""Patient message templates and decisions, pure: what the words say (and do not say), dates in
the patient's timezone, the decision to send now, later or not at all, and the template file's
own guard rails."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

from services.notifications.domain import catalogue, drafts, formatting, preferences, rendering
from services.notifications.domain.calendar import DailyWindow
from services.notifications.domain.drafts import Draft, Kind
from services.notifications.domain.preferences import (
    InvalidPreferences,
    Preferences,
    SkipReason,
    Status,
)

STEP_DAY = date(2026, 11, 25)  # a Wednesday
NOON_NY = datetime(2026, 11, 25, 17, tzinfo=UTC)  # 12:00 in New York (EST, UTC-5)
NY = "America/New_York"


def render(
    draft: Draft,
    *,
    channel: catalogue.MessageChannel = "sms",
    details: bool = False,
    timezone: str = NY,
    now: datetime = NOON_NY,
) -> rendering.Rendered:
    return rendering.render(
        draft.template,
        draft.params,
        channel=channel,
        language="en",
        details=details,
        timezone=timezone,
        now=now,
    )


def step(
    new: str = "7.5000",
    previous: str = "10.0000",
    *,
    drug: str = "diazepam",
    step_kind: str | None = "reduction",
    regimen: list[tuple[str, str]] | None = None,
    with_dose: bool = True,
    effective_on: date = STEP_DAY,
) -> Draft:
    return drafts.dose_step(
        step_kind=step_kind,
        drug=drug,
        previous_mg=Decimal(previous),
        new_mg=Decimal(new),
        regimen=[(d, Decimal(mg)) for d, mg in regimen] if regimen is not None else None,
        effective_on=effective_on,
        with_dose=with_dose,
    )


# --- minimum necessary: no drug, no dose without consent ----------------------------------------


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_without_consent_a_dose_step_names_no_drug_and_no_dose(
    channel: catalogue.MessageChannel,
) -> None:
    draft = step(with_dose=False)
    assert set(draft.params) == {"effective_on"}  # dose facts are not even stored
    out = render(draft, channel=channel, details=True)  # consent given later cannot add them
    text = out.subject + out.body
    assert "diazepam" not in text and "mg" not in text and "7.5" not in text
    assert out.body.startswith(
        "Your taper plan has a new step starting today, Wed 25 Nov. Open the app to see your dose."
    )


def test_consent_withdrawn_before_sending_wins_over_stored_dose_facts() -> None:
    out = render(step(with_dose=True), details=False)
    assert "diazepam" not in out.body and "mg" not in out.body


def test_with_consent_the_dose_is_stated_in_plain_words_from_today() -> None:
    out = render(step(), details=True)
    assert out.body == (
        "From today, Wed 25 Nov, take 7.5 mg of diazepam a day (was 10 mg).\nReply STOP to opt out."
    )
    assert "diazepam" not in out.subject and "mg" not in out.subject


@pytest.mark.parametrize(
    ("mg", "shown"),
    [
        ("10.0000", "10"),
        ("7.5000", "7.5"),
        ("0.2500", "0.25"),
        ("100", "100"),  # normalize() alone would say 1E+2
        ("0.0000", "0"),
        ("12.1250", "12.125"),
    ],
)
def test_milligrams_lose_trailing_zeros_and_never_turn_scientific(mg: str, shown: str) -> None:
    assert formatting.format_mg(Decimal(mg)) == shown


def test_trailing_zeros_are_dropped_in_the_rendered_message() -> None:
    body = render(step("5.0000", "7.5000"), details=True).body
    assert "take 5 mg of diazepam a day (was 7.5 mg)" in body


def test_a_crossover_lists_every_drug_of_the_regimen() -> None:
    draft = step(
        "0.5000",
        "1.0000",
        drug="alprazolam",
        step_kind="crossover",
        regimen=[("alprazolam", "0.5000"), ("diazepam", "10.0000")],
    )
    assert draft.template == "messages.v1:dose_regimen"
    assert render(draft, details=True).body.startswith(
        "From today, Wed 25 Nov, your daily doses are: alprazolam 0.5 mg and diazepam 10 mg."
    )
    generic = render(draft, details=False).body
    assert "alprazolam" not in generic and "diazepam" not in generic and "mg" not in generic


def test_a_crossover_that_stops_the_first_drug_is_not_the_end_of_the_taper() -> None:
    draft = step(
        "0",
        "0.5",
        drug="alprazolam",
        step_kind="crossover",
        regimen=[("alprazolam", "0"), ("diazepam", "15")],
    )
    body = render(draft, details=True).body
    assert "complete" not in body
    assert "your daily doses are: no more alprazolam and diazepam 15 mg." in body


def test_a_crossover_without_a_regimen_states_no_dose_rather_than_half_of_it() -> None:
    draft = step("0", "0.5", drug="alprazolam", step_kind="crossover", regimen=None)
    assert set(draft.params) == {"effective_on"}
    body = render(draft, details=True).body
    assert "alprazolam" not in body and "complete" not in body


@pytest.mark.parametrize("details", [True, False])
def test_the_final_step_says_the_taper_is_complete_and_whom_to_contact(details: bool) -> None:
    draft = step("0.0000", "0.5000", step_kind="final")
    assert draft.template == "messages.v1:dose_final"
    body = render(draft, details=details).body
    assert "your taper is complete" in body
    assert "If you feel unwell, contact your clinician." in body
    assert ("you no longer take diazepam" in body) is details


def test_a_step_to_zero_is_final_even_without_step_kind() -> None:
    assert step("0", "0.5", step_kind=None).template == "messages.v1:dose_final"


def test_a_dose_restored_goes_back_in_plain_words_or_says_the_clinician_changed_it() -> None:
    draft = drafts.dose_restored(
        drug="diazepam",
        restored_mg=Decimal("10.0000"),
        regimen=[("diazepam", Decimal("10.0000"))],
        effective_on=STEP_DAY,
        with_dose=True,
    )
    assert render(draft, details=True).body.startswith(
        "From today, Wed 25 Nov, your dose goes back to 10 mg of diazepam a day."
    )
    generic = render(draft, details=False).body
    assert generic.startswith("Your clinician changed your dose from today, Wed 25 Nov.")
    assert "diazepam" not in generic and "mg" not in generic


def test_a_dose_restored_during_a_crossover_lists_both_drugs() -> None:
    draft = drafts.dose_restored(
        drug="alprazolam",
        restored_mg=Decimal("1"),
        regimen=[("alprazolam", Decimal("1")), ("diazepam", Decimal("5"))],
        effective_on=STEP_DAY,
        with_dose=True,
    )
    assert "your daily doses go back to: alprazolam 1 mg and diazepam 5 mg." in (
        render(draft, details=True).body
    )


def test_check_in_and_cohort_messages() -> None:
    closes = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # 18:00 in New York
    body = render(drafts.check_in_due(window_closes_at=closes)).body
    assert body.startswith(
        "Your check-in is due: please answer a few short questions in the app before 18:00 "
        "on Wed 25 Nov."
    )
    assert render(drafts.cohort_assigned(moved=False)).body.startswith(
        "You have been matched with a peer-support group. Open the app to meet them."
    )
    assert "moved to a new peer-support group" in render(drafts.cohort_assigned(moved=True)).body


# --- dates in the patient's timezone ------------------------------------------------------------


def test_today_is_the_patients_today_across_midnight_utc() -> None:
    late_evening_ny = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 21:00 on the 25th in New York
    draft = step()
    assert "From today, Wed 25 Nov," in render(draft, details=True, now=late_evening_ny).body
    # Same instant, but in London it is already Thursday: the step was yesterday, not "today".
    london = render(draft, details=True, now=late_evening_ny, timezone="Europe/London").body
    assert london.startswith("From Wed 25 Nov, take")


def test_a_check_in_deadline_is_shown_in_local_time_and_date() -> None:
    closes = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    draft = drafts.check_in_due(window_closes_at=closes)
    assert "before 22:00 on Wed 25 Nov." in render(draft, timezone=NY).body
    assert "before 12:00 on Thu 26 Nov." in render(draft, timezone="Asia/Tokyo").body


def test_dates_are_english_whatever_the_server_locale() -> None:
    assert formatting.format_day(date(2027, 1, 3)) == "Sun 3 Jan"
    assert formatting.join_words(["a", "b", "c"]) == "a, b and c"


# --- the template file's guard rails ------------------------------------------------------------


def test_every_template_renders_on_every_channel_and_sms_says_how_to_stop() -> None:
    found, _ = catalogue.template_named("messages.v1:dose_reduced")
    full = {
        "effective_on": "2026-11-25",
        "closes_at": "2026-11-26T03:00:00+00:00",
        "drug": "diazepam",
        "drugs": ["diazepam"],
        "mg": "5",
        "previous_mg": "7.5",
        "doses": [["diazepam", "5"]],
    }
    for name in found.templates:
        for channel in catalogue.CHANNELS:
            for details in (False, True):
                out = rendering.render(
                    f"messages.v1:{name}",
                    full,
                    channel=channel,
                    language="en",
                    details=details,
                    timezone=NY,
                    now=NOON_NY,
                )
                assert "{" not in out.body and out.subject
                if not details:
                    assert "diazepam" not in out.body and " mg" not in out.body, name
                if channel == "sms":
                    assert out.body.endswith("\nReply STOP to opt out.")


def raw_catalogue() -> dict[str, Any]:
    found, _ = catalogue.template_named("messages.v1:dose_reduced")
    return copy.deepcopy(dict(found.raw))


def test_the_loader_refuses_a_dose_in_a_standard_variant() -> None:
    raw = raw_catalogue()
    raw["templates"]["dose_reduced"]["en"]["standard"]["sms"]["body"] = "Take {mg} mg."
    with pytest.raises(ValueError, match="only a detail variant may state drug or dose"):
        catalogue.parse_catalogue(raw)


def test_the_loader_refuses_placeholders_in_subjects_and_unknown_placeholders() -> None:
    raw = raw_catalogue()
    raw["templates"]["dose_reduced"]["en"]["detail"]["email"]["subject"] = "{drug} update"
    with pytest.raises(ValueError, match="no placeholders"):
        catalogue.parse_catalogue(raw)
    raw = raw_catalogue()
    raw["templates"]["cohort_assigned"]["en"]["standard"]["sms"]["body"] = "Hi {name}"
    with pytest.raises(ValueError, match="placeholder"):
        catalogue.parse_catalogue(raw)


def test_the_loader_requires_an_opt_out_hint_on_sms() -> None:
    raw = raw_catalogue()
    raw["footers"]["en"]["sms"] = "Thanks."
    with pytest.raises(ValueError, match="STOP"):
        catalogue.parse_catalogue(raw)


def test_quiet_hours_default_is_the_tcpa_window_and_says_so() -> None:
    quiet = preferences.defaults().quiet_hours
    assert quiet.window == DailyWindow(time(21, 0), time(8, 0))
    assert "47 CFR 64.1200(c)(1)" in quiet.source and quiet.configurable
    assert preferences.defaults().include_dose_details is False


# --- the decision: now, later or not at all -----------------------------------------------------


def prefs(**overrides: Any) -> Preferences:
    values: dict[str, Any] = {"timezone": NY, "channels": ("sms",), "phone": "+15551230000"}
    return Preferences(**(values | overrides))


def test_inside_quiet_hours_the_message_is_deferred_to_their_end_local_time() -> None:
    at_2330 = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)  # 23:30 on the 25th in New York
    decision = preferences.decide(prefs(), step(), at_2330)
    assert decision.status is Status.DEFERRED
    assert decision.send_at == datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 08:00 local
    assert decision.channel == "sms"


def test_outside_quiet_hours_it_is_due_now_on_the_first_reachable_channel() -> None:
    at_1000 = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    decision = preferences.decide(
        prefs(channels=("email", "sms"), email="p@example.org"), step(), at_1000
    )
    assert (decision.status, decision.send_at, decision.channel) == (
        Status.SCHEDULED,
        at_1000,
        "email",
    )


@pytest.mark.parametrize(
    ("opted_out", "skipped"),
    [({"all"}, True), ({"dose_changed"}, True), ({"check_in_due", "cohort_assigned"}, False)],
)
def test_opting_out_skips_all_or_just_that_kind(opted_out: set[str], skipped: bool) -> None:
    decision = preferences.decide(prefs(opted_out=frozenset(opted_out)), step(), NOON_NY)
    assert (decision.skip_reason is SkipReason.OPTED_OUT) is skipped
    assert (decision.channel is None) is skipped


def test_no_channel_is_skipped() -> None:
    decision = preferences.decide(prefs(channels=()), step(), NOON_NY)
    assert (decision.status, decision.skip_reason) == (Status.SKIPPED, SkipReason.NO_CHANNEL)


def test_a_check_in_reminder_that_would_arrive_after_the_window_closed_is_skipped() -> None:
    at_2200 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # quiet until 08:00 local
    draft = drafts.check_in_due(window_closes_at=datetime(2026, 11, 26, 5, 0, tzinfo=UTC))
    decision = preferences.decide(prefs(), draft, at_2200)
    assert decision.skip_reason is SkipReason.WINDOW_CLOSED


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"channels": ("sms",), "phone": None}, "phone"),
        ({"channels": ("email",)}, "email"),
        ({"phone": "555-1234"}, "phone"),
        ({"email": "not an address", "channels": ()}, "email"),
        ({"opted_out": frozenset({"everything"})}, "opted_out"),
        ({"language": "fr"}, "language"),
        ({"channels": ("sms", "sms")}, "channels"),
    ],
)
def test_invalid_preferences_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPreferences) as caught:
        prefs(**overrides)
    assert caught.value.field == field


def test_kinds_cover_every_event_message() -> None:
    assert {d.kind for d in (step(), drafts.cohort_assigned(moved=False))} <= set(Kind)


def test_a_page_is_worded_by_the_catalogue() -> None:
    words = rendering.render_page(severity="RED", level=2, levels=3)
    assert words.subject == "RED taper escalation, level 2"
    assert words.body == (
        "A patient in the taper program needs a clinician (RED, level 2 of 3). "
        "Open the clinician console to review."
    )
    assert words.acknowledge == "Acknowledge this page"


def test_the_loader_refuses_page_wording_with_other_facts() -> None:
    raw = raw_catalogue()
    raw["pages"]["en"]["body"] = "Patient {patient_id} needs you."
    with pytest.raises(ValueError, match="placeholder"):
        catalogue.parse_catalogue(raw)
    raw = raw_catalogue()
    del raw["pages"]
    with pytest.raises(ValueError, match="pages"):
        catalogue.parse_catalogue(raw)
