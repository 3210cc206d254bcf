"""Quiet hours and business hours: examples around midnight and DST, then properties checked
against the plain definition (local wall time of each instant) over many zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifications.domain.calendar import (
    BusinessHours,
    DailyWindow,
    QuietHours,
    next_allowed,
    quiet_until,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")

NIGHT = QuietHours("America/New_York", DailyWindow(time(21), time(8)))


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=NY)


# --- DailyWindow ---------------------------------------------------------------------------------


def test_wrapping_window_contains_late_evening_and_early_morning() -> None:
    w = DailyWindow(time(21), time(8))
    assert w.contains(time(21))
    assert w.contains(time(23, 59, 59, 999999))
    assert w.contains(time(0))
    assert w.contains(time(7, 59, 59, 999999))
    assert not w.contains(time(8))
    assert not w.contains(time(12))
    assert not w.contains(time(20, 59))


def test_plain_window_is_half_open() -> None:
    w = DailyWindow(time(13), time(14))
    assert w.contains(time(13))
    assert w.contains(time(13, 59))
    assert not w.contains(time(14))
    assert not w.contains(time(12, 59))
    assert not w.contains(time(0))


def test_window_from_midnight_to_midnight_is_empty() -> None:
    for boundary in (time(0), time(9, 30)):
        w = DailyWindow(boundary, boundary)
        assert not any(w.contains(time(h, m)) for h in range(24) for m in (0, 29, 30, 59))


def test_window_rejects_aware_times() -> None:
    with pytest.raises(ValueError, match="start"):
        DailyWindow(time(21, tzinfo=UTC), time(8))
    with pytest.raises(ValueError, match="end"):
        DailyWindow(time(21), time(8, tzinfo=UTC))


# --- quiet hours: examples -----------------------------------------------------------------------


def test_late_evening_is_quiet_until_eight_next_morning() -> None:
    until = quiet_until(ny(2026, 5, 12, 22, 30), NIGHT)
    assert until == ny(2026, 5, 13, 8, 0)
    assert until is not None and until.tzinfo is UTC
    assert until == utc(2026, 5, 13, 12, 0)


def test_early_morning_is_quiet_until_eight_the_same_day() -> None:
    assert quiet_until(ny(2026, 5, 13, 7, 59), NIGHT) == ny(2026, 5, 13, 8, 0)


def test_quiet_hours_start_is_inclusive_and_end_exclusive() -> None:
    assert quiet_until(ny(2026, 5, 12, 21, 0), NIGHT) == ny(2026, 5, 13, 8, 0)
    assert quiet_until(ny(2026, 5, 13, 8, 0), NIGHT) is None
    assert quiet_until(ny(2026, 5, 13, 12, 0), NIGHT) is None
    assert quiet_until(ny(2026, 5, 13, 20, 59, 59), NIGHT) is None


def test_instant_in_any_zone_is_judged_in_the_quiet_hours_zone() -> None:
    # 02:30 UTC is 22:30 the evening before in New York (EDT).
    assert quiet_until(utc(2026, 5, 13, 2, 30), NIGHT) == utc(2026, 5, 13, 12, 0)
    tokyo = ZoneInfo("Asia/Tokyo")
    assert quiet_until(datetime(2026, 5, 13, 11, 30, tzinfo=tokyo), NIGHT) == utc(2026, 5, 13, 12)


def test_non_wrapping_window() -> None:
    lunch = QuietHours("America/New_York", DailyWindow(time(13), time(14)))
    assert quiet_until(ny(2026, 5, 13, 13, 30), lunch) == ny(2026, 5, 13, 14, 0)
    assert quiet_until(ny(2026, 5, 13, 13, 0), lunch) == ny(2026, 5, 13, 14, 0)
    assert quiet_until(ny(2026, 5, 13, 14, 0), lunch) is None
    assert quiet_until(ny(2026, 5, 13, 12, 59), lunch) is None
    assert quiet_until(ny(2026, 5, 13, 22, 0), lunch) is None


def test_empty_window_is_never_quiet() -> None:
    never = QuietHours("America/New_York", DailyWindow(time(8), time(8)))
    for hour in range(24):
        at = ny(2026, 5, 13, hour, 0)
        assert quiet_until(at, never) is None
        assert next_allowed(at, never) == at


def test_next_allowed_is_at_in_utc_when_not_quiet_else_the_end() -> None:
    at = ny(2026, 5, 13, 12, 0)
    allowed = next_allowed(at, NIGHT)
    assert allowed == at and allowed.tzinfo is UTC
    assert next_allowed(ny(2026, 5, 12, 23, 0), NIGHT) == ny(2026, 5, 13, 8, 0)


def test_naive_instant_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_until(datetime(2026, 5, 13, 12), NIGHT)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed(datetime(2026, 5, 13, 12), NIGHT)


@pytest.mark.parametrize("name", ["", "Mars/Olympus_Mons", "utc", "../etc/passwd", "/etc/x"])
def test_unknown_timezone_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"^unknown timezone$"):
        QuietHours(name, DailyWindow(time(21), time(8)))


# --- quiet hours: DST ----------------------------------------------------------------------------
# Europe/London 2026: spring forward 29 Mar 01:00 GMT -> 02:00 BST (01:00 UTC);
#                     fall back   25 Oct 02:00 BST -> 01:00 GMT (01:00 UTC).


def test_end_in_spring_forward_gap_is_the_first_instant_after_the_gap() -> None:
    quiet = QuietHours("Europe/London", DailyWindow(time(23), time(1, 30)))
    until = quiet_until(datetime(2026, 3, 29, 0, 30, tzinfo=LONDON), quiet)
    assert until == utc(2026, 3, 29, 1, 0)
    assert until is not None and until.astimezone(LONDON).time() == time(2, 0)
    # From 23:30 the night before: the same answer.
    assert quiet_until(datetime(2026, 3, 28, 23, 30, tzinfo=LONDON), quiet) == until


def test_end_at_the_start_of_the_gap_is_the_transition() -> None:
    quiet = QuietHours("Europe/London", DailyWindow(time(23), time(1, 0)))
    assert quiet_until(datetime(2026, 3, 29, 0, 30, tzinfo=LONDON), quiet) == utc(2026, 3, 29, 1)


def test_end_in_new_york_gap() -> None:
    # 8 Mar 2026: 02:00 EST -> 03:00 EDT (07:00 UTC); 02:30 does not exist.
    quiet = QuietHours("America/New_York", DailyWindow(time(22), time(2, 30)))
    assert quiet_until(ny(2026, 3, 8, 1, 0), quiet) == utc(2026, 3, 8, 7, 0)


def test_end_in_fall_back_fold_is_the_first_occurrence() -> None:
    quiet = QuietHours("Europe/London", DailyWindow(time(23), time(1, 30)))
    until = quiet_until(datetime(2026, 10, 24, 23, 30, tzinfo=LONDON), quiet)
    assert until == utc(2026, 10, 25, 0, 30)  # 01:30 BST
    assert until is not None
    local = until.astimezone(LONDON)
    assert (local.time(), local.fold, local.utcoffset()) == (time(1, 30), 0, timedelta(hours=1))


def test_second_pass_through_the_repeated_hour_is_quiet_again() -> None:
    """Local time is what the patient sees: 01:00-01:30 GMT is quiet hours again, and it ends
    at the second 01:30 (the first would be in the past)."""
    quiet = QuietHours("Europe/London", DailyWindow(time(23), time(1, 30)))
    assert quiet_until(utc(2026, 10, 25, 0, 45), quiet) is None  # 01:45 BST
    second = datetime(2026, 10, 25, 1, 10, fold=1, tzinfo=LONDON)  # 01:10 GMT
    assert quiet_until(second, quiet) == utc(2026, 10, 25, 1, 30)
    assert quiet_until(utc(2026, 10, 25, 1, 0), quiet) == utc(2026, 10, 25, 1, 30)


def test_fall_back_out_of_the_window_ends_quiet_hours_at_the_transition() -> None:
    """Quiet from 01:30: at 01:59:59 BST the clock falls back to 01:00 GMT, outside the window,
    so quiet hours (as local wall time) end at the transition and resume at 01:30 GMT."""
    quiet = QuietHours("Europe/London", DailyWindow(time(1, 30), time(5)))
    assert quiet_until(utc(2026, 10, 25, 0, 45), quiet) == utc(2026, 10, 25, 1, 0)
    assert quiet_until(utc(2026, 10, 25, 1, 30), quiet) == utc(2026, 10, 25, 5, 0)


def test_gap_that_swallows_the_whole_non_quiet_part_of_the_day() -> None:
    """Quiet except 01:00-02:00 local, which does not exist on 29 Mar: quiet until next day."""
    quiet = QuietHours("Europe/London", DailyWindow(time(2), time(1)))
    until = quiet_until(datetime(2026, 3, 29, 0, 30, tzinfo=LONDON), quiet)
    assert until == datetime(2026, 3, 30, 1, 0, tzinfo=LONDON)


def test_half_hour_dst_in_lord_howe() -> None:
    # 4 Oct 2026: 02:00 +10:30 -> 02:30 +11 (15:30 UTC on the 3rd); 02:15 does not exist.
    quiet = QuietHours("Australia/Lord_Howe", DailyWindow(time(22), time(2, 15)))
    until = quiet_until(datetime(2026, 10, 4, 1, 0, tzinfo=LORD_HOWE), quiet)
    assert until == utc(2026, 10, 3, 15, 30)
    assert until is not None and until.astimezone(LORD_HOWE).time() == time(2, 30)


def test_quiet_hours_spanning_the_transition_night_keep_the_local_end() -> None:
    # Quiet 21:00-08:00 over the spring-forward night is one hour shorter, still ends at 08:00.
    quiet = QuietHours("America/New_York", DailyWindow(time(21), time(8)))
    assert quiet_until(ny(2026, 3, 7, 22, 0), quiet) == ny(2026, 3, 8, 8, 0)
    assert ny(2026, 3, 8, 8, 0) == utc(2026, 3, 8, 12, 0)
    assert quiet_until(ny(2026, 10, 31, 22, 0), quiet) == utc(2026, 11, 1, 13, 0)


# --- business hours ------------------------------------------------------------------------------

WEEKDAYS = frozenset(range(5))
BERLIN_OFFICE = BusinessHours("Europe/Berlin", WEEKDAYS, time(9), time(17))


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN)


def test_friday_evening_opens_monday_morning() -> None:
    friday = berlin(2026, 5, 15, 18, 0)
    assert friday.weekday() == 4
    opening = BERLIN_OFFICE.next_opening(friday)
    assert opening == berlin(2026, 5, 18, 9, 0)
    assert opening.tzinfo is UTC and opening == utc(2026, 5, 18, 7, 0)


def test_saturday_opens_monday() -> None:
    assert BERLIN_OFFICE.next_opening(berlin(2026, 5, 16, 12, 0)) == berlin(2026, 5, 18, 9, 0)
    assert BERLIN_OFFICE.next_opening(berlin(2026, 5, 17, 23, 59)) == berlin(2026, 5, 18, 9, 0)


def test_before_opening_opens_the_same_day() -> None:
    tuesday = berlin(2026, 5, 12, 8, 0)
    assert not BERLIN_OFFICE.is_open(tuesday)
    assert BERLIN_OFFICE.next_opening(tuesday) == berlin(2026, 5, 12, 9, 0)


def test_open_now_returns_at_in_utc() -> None:
    tuesday = berlin(2026, 5, 12, 10, 0)
    assert BERLIN_OFFICE.is_open(tuesday)
    opening = BERLIN_OFFICE.next_opening(tuesday)
    assert opening == tuesday and opening.tzinfo is UTC


def test_opens_inclusive_closes_exclusive() -> None:
    assert BERLIN_OFFICE.is_open(berlin(2026, 5, 12, 9, 0))
    assert BERLIN_OFFICE.is_open(berlin(2026, 5, 12, 16, 59, 59))
    assert not BERLIN_OFFICE.is_open(berlin(2026, 5, 12, 17, 0))
    assert BERLIN_OFFICE.next_opening(berlin(2026, 5, 12, 17, 0)) == berlin(2026, 5, 13, 9, 0)


def test_weekend_spanning_a_dst_change_opens_at_local_nine() -> None:
    # Berlin springs forward on Sunday 29 Mar 2026: Monday 09:00 is CEST (07:00 UTC).
    assert BERLIN_OFFICE.next_opening(berlin(2026, 3, 27, 18, 0)) == utc(2026, 3, 30, 7, 0)
    # ... and falls back on Sunday 25 Oct: Monday 09:00 is CET (08:00 UTC).
    assert BERLIN_OFFICE.next_opening(berlin(2026, 10, 23, 18, 0)) == utc(2026, 10, 26, 8, 0)


def test_opening_in_a_dst_gap_is_the_first_instant_after_it() -> None:
    sunday_night_shift = BusinessHours("America/New_York", frozenset({6}), time(2, 30), time(6))
    opening = sunday_night_shift.next_opening(ny(2026, 3, 7, 12, 0))
    assert opening == utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    assert sunday_night_shift.is_open(opening)


def test_a_day_whose_hours_fall_in_the_gap_never_opens() -> None:
    inside_gap = BusinessHours("America/New_York", frozenset({6}), time(2), time(2, 30))
    assert inside_gap.next_opening(ny(2026, 3, 7, 12, 0)) == ny(2026, 3, 15, 2, 0)


def test_opening_at_midnight_in_a_zone_that_skips_midnight() -> None:
    # America/Santiago, Sun 6 Sep 2026: 24:00 -04 -> 01:00 -03 (04:00 UTC); 00:00 never happens.
    santiago = ZoneInfo("America/Santiago")
    office = BusinessHours("America/Santiago", frozenset({6}), time(0), time(9))
    opening = office.next_opening(datetime(2026, 9, 5, 12, 0, tzinfo=santiago))
    assert opening == utc(2026, 9, 6, 4, 0)
    assert opening.astimezone(santiago).time() == time(1, 0)


def test_business_hours_validation() -> None:
    with pytest.raises(ValueError, match="weekdays"):
        BusinessHours("Europe/Berlin", frozenset(), time(9), time(17))
    with pytest.raises(ValueError, match="weekdays"):
        BusinessHours("Europe/Berlin", frozenset({7}), time(9), time(17))
    with pytest.raises(ValueError, match="closes"):
        BusinessHours("Europe/Berlin", WEEKDAYS, time(17), time(9))
    with pytest.raises(ValueError, match="closes"):
        BusinessHours("Europe/Berlin", WEEKDAYS, time(9), time(9))
    with pytest.raises(ValueError, match=r"^unknown timezone$"):
        BusinessHours("Europe/Atlantis", WEEKDAYS, time(9), time(17))
    with pytest.raises(ValueError, match="timezone-aware"):
        BERLIN_OFFICE.is_open(datetime(2026, 5, 12, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        BERLIN_OFFICE.next_opening(datetime(2026, 5, 12, 10))


def test_weekdays_given_as_a_set_are_frozen() -> None:
    hours = BusinessHours("Europe/Berlin", {0, 1}, time(9), time(17))  # type: ignore[arg-type]
    assert hours.weekdays == frozenset({0, 1}) and isinstance(hours.weekdays, frozenset)


# --- properties ----------------------------------------------------------------------------------

ZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/St_Johns",  # -03:30 with DST
    "America/Santiago",  # DST at midnight
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",  # "negative" DST in tzdata
    "Africa/Casablanca",  # DST suspended for Ramadan
    "Asia/Kathmandu",  # +05:45
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45 / +13:45
)
SPAN_START = utc(2025, 6, 1)
SPAN_END = utc(2027, 6, 1)
MINUTE = timedelta(minutes=1)
QUARTER = timedelta(minutes=15)


@cache
def transitions(name: str) -> tuple[datetime, ...]:
    """The instants a zone's UTC offset changes, found by brute force (hourly scan, then
    minute by minute), independently of the code under test."""
    zone = ZoneInfo(name)
    found = []
    t = SPAN_START
    while t < SPAN_END:
        nxt = t + timedelta(hours=1)
        if t.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            m = t
            while m.astimezone(zone).utcoffset() == t.astimezone(zone).utcoffset():
                m += MINUTE
            found.append(m)
        t = nxt
    return tuple(found)


@st.composite
def instants(draw: st.DrawFn, name: str) -> datetime:
    """Aware instants, often within two days of a DST transition, written in various zones."""
    near = transitions(name)
    if len(near) > 0 and draw(st.booleans()):
        base = draw(st.sampled_from(near))
        at = base + timedelta(seconds=draw(st.integers(-2 * 86_400, 2 * 86_400)))
        if draw(st.booleans()):
            at = at.replace(second=0)
    else:
        naive = draw(st.datetimes(datetime(2025, 7, 1), datetime(2027, 5, 1)))
        at = naive.replace(tzinfo=UTC)
    shown_in = draw(st.sampled_from([UTC, ZoneInfo(name), timezone(timedelta(hours=-3))]))
    return at.astimezone(shown_in)


wall_times = st.one_of(
    st.sampled_from(
        [
            *(time(0), time(0, 30), time(1), time(1, 30), time(2), time(2, 15), time(2, 30)),
            *(time(2, 45), time(3), time(8), time(21), time(23), time(23, 30)),
        ]
    ),
    st.builds(time, st.integers(0, 23), st.integers(0, 59)),
)


@st.composite
def opening_hours(draw: st.DrawFn) -> tuple[time, time]:
    """(opens, closes) on whole quarter hours, closes > opens."""
    opens = draw(st.integers(0, 94))
    closes = draw(st.integers(opens + 1, 95))
    return time(opens // 4, opens % 4 * 15), time(closes // 4, closes % 4 * 15)


def floor_to(at: datetime, step: timedelta) -> datetime:
    at = at.astimezone(UTC)
    return at - (at - SPAN_START) % step


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(ZONES), start=wall_times, end=wall_times)
def test_quiet_until_is_the_first_instant_outside_the_window(
    data: st.DataObject, name: str, start: time, end: time
) -> None:
    """Windows and offsets are whole minutes, so inside/outside can only change at whole UTC
    minutes: checking `at` and every whole minute up to the answer is exhaustive."""
    zone = ZoneInfo(name)
    quiet = QuietHours(name, DailyWindow(start, end))
    at = data.draw(instants(name))

    def quiet_at(u: datetime) -> bool:
        return quiet.window.contains(u.astimezone(zone).time())

    until = quiet_until(at, quiet)
    if until is None:
        assert not quiet_at(at)
        # Compare in UTC: an aware datetime in a fold never equals one in another zone (PEP 495).
        assert next_allowed(at, quiet) == at.astimezone(UTC)
        assert next_allowed(at, quiet).tzinfo is UTC
        return
    assert quiet_at(at)
    assert until.tzinfo is UTC
    assert until > at
    assert not quiet_at(until)
    u = floor_to(at, MINUTE) + MINUTE
    while u < until:
        assert quiet_at(u), u
        u += MINUTE
    assert quiet_at(until - timedelta(microseconds=1))
    assert next_allowed(at, quiet) == until


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    name=st.sampled_from(ZONES),
    weekdays=st.frozensets(st.integers(0, 6), min_size=1),
    bounds=opening_hours(),
)
def test_next_opening_is_the_first_open_instant(
    data: st.DataObject, name: str, weekdays: frozenset[int], bounds: tuple[time, time]
) -> None:
    """Opening hours, offsets and transitions fall on whole quarter hours (UTC), so checking
    every quarter hour between `at` and the answer is exhaustive."""
    hours = BusinessHours(name, weekdays, bounds[0], bounds[1])
    at = data.draw(instants(name))
    opening = hours.next_opening(at)
    assert opening.tzinfo is UTC
    assert opening >= at
    assert hours.is_open(opening)
    if hours.is_open(at):
        assert opening == at.astimezone(UTC)
        return
    assert opening <= at + timedelta(days=14)
    assert not hours.is_open(opening - timedelta(microseconds=1))
    u = floor_to(at, QUARTER) + QUARTER
    while u < opening:
        assert not hours.is_open(u), u
        u += QUARTER
