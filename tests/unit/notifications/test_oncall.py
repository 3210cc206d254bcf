"""On-call rotations and overrides: handoffs at local wall time across DST, override precedence,
and the "who is on call this week" spans, checked against on_call_at by properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifications.domain.oncall import MAX_SPANS, OnCallSchedule, Override, Rotation

CHICAGO = ZoneInfo("America/Chicago")
TICK = timedelta(microseconds=1)
MINUTE = timedelta(minutes=1)
QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def chi(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, *, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=CHICAGO, fold=fold)


# America/Chicago 2026: spring forward Sun 8 Mar 02:00 CST -> 03:00 CDT (08:00 UTC);
#                       fall back     Sun 1 Nov 02:00 CDT -> 01:00 CST (07:00 UTC).
DAILY = Rotation(("ana", "ben", "cai"), chi(2026, 3, 7, 8, 0), timedelta(days=1), "America/Chicago")


# --- rotation ------------------------------------------------------------------------------------


def test_daily_rotation_hands_off_at_local_eight_across_spring_forward() -> None:
    assert DAILY.on_call_at(chi(2026, 3, 7, 8, 0)) == "ana"
    assert DAILY.on_call_at(chi(2026, 3, 8, 7, 59)) == "ana"  # CDT already: 12:59 UTC
    assert DAILY.on_call_at(chi(2026, 3, 8, 8, 0)) == "ben"  # 13:00 UTC: a 23-hour shift
    assert chi(2026, 3, 8, 8, 0) == utc(2026, 3, 8, 13, 0)
    assert DAILY.on_call_at(utc(2026, 3, 8, 12, 59, 59, 999999)) == "ana"
    assert DAILY.on_call_at(utc(2026, 3, 8, 13, 0)) == "ben"
    assert DAILY.on_call_at(chi(2026, 3, 9, 7, 59)) == "ben"
    assert DAILY.on_call_at(chi(2026, 3, 9, 8, 0)) == "cai"
    assert DAILY.on_call_at(chi(2026, 3, 10, 8, 0)) == "ana"


def test_daily_rotation_hands_off_at_local_eight_across_fall_back() -> None:
    # 31 Oct is turn 238 (238 % 3 == 1): ben from 08:00 CDT for a 25-hour shift, then cai
    # from 1 Nov 08:00 CST.
    assert DAILY.on_call_at(chi(2026, 10, 31, 7, 59)) == "ana"
    assert DAILY.on_call_at(chi(2026, 10, 31, 8, 0)) == "ben"
    assert DAILY.on_call_at(chi(2026, 11, 1, 7, 59)) == "ben"
    assert DAILY.on_call_at(utc(2026, 11, 1, 13, 59, 59)) == "ben"
    assert DAILY.on_call_at(chi(2026, 11, 1, 8, 0)) == "cai"
    assert chi(2026, 11, 1, 8, 0) == utc(2026, 11, 1, 14, 0)


def test_before_the_rotation_starts_nobody_is_on_call() -> None:
    assert DAILY.on_call_at(chi(2026, 3, 7, 7, 59, 59)) is None
    assert DAILY.on_call_at(utc(2020, 1, 1)) is None


def test_daily_handoff_in_the_gap_is_the_first_instant_after_it() -> None:
    nightly = Rotation(("ana", "ben"), chi(2026, 3, 6, 2, 30), DAY, "America/Chicago")
    # 8 Mar 02:30 does not exist: ana (turn 2) takes over at 03:00 CDT, the transition.
    assert nightly.on_call_at(utc(2026, 3, 8, 7, 59, 59)) == "ben"
    assert nightly.on_call_at(utc(2026, 3, 8, 8, 0)) == "ana"
    assert chi(2026, 3, 8, 3, 0) == utc(2026, 3, 8, 8, 0)
    # and the next day is back at 02:30 local.
    assert nightly.on_call_at(chi(2026, 3, 9, 2, 29)) == "ana"
    assert nightly.on_call_at(chi(2026, 3, 9, 2, 30)) == "ben"


def test_daily_handoff_in_the_fold_is_the_first_occurrence() -> None:
    nightly = Rotation(("ana", "ben"), chi(2026, 10, 30, 1, 30), DAY, "America/Chicago")
    # 1 Nov 01:30 happens twice; the handoff (turn 2: ana) is at the first, 06:30 UTC.
    assert nightly.on_call_at(utc(2026, 11, 1, 6, 29, 59)) == "ben"
    assert nightly.on_call_at(chi(2026, 11, 1, 1, 30, fold=0)) == "ana"
    assert nightly.on_call_at(chi(2026, 11, 1, 1, 30, fold=1)) == "ana"
    # The repeated hour's wall clock reads before 01:30 again, but the handoff has happened.
    assert nightly.on_call_at(chi(2026, 11, 1, 1, 10, fold=1)) == "ana"
    assert nightly.on_call_at(chi(2026, 11, 2, 1, 30)) == "ben"


def test_twelve_hour_shifts_are_absolute_time() -> None:
    halves = Rotation(
        ("ana", "ben"), chi(2026, 3, 7, 20, 0), timedelta(hours=12), "America/Chicago"
    )
    # 20:00 CST = 02:00 UTC; handoffs every 12 elapsed hours, so 09:00/21:00 CDT after the jump.
    assert halves.on_call_at(chi(2026, 3, 8, 7, 59)) == "ana"
    assert halves.on_call_at(chi(2026, 3, 8, 8, 59)) == "ana"
    assert halves.on_call_at(chi(2026, 3, 8, 9, 0)) == "ben"
    assert halves.on_call_at(chi(2026, 3, 8, 20, 59)) == "ben"
    assert halves.on_call_at(chi(2026, 3, 8, 21, 0)) == "ana"


def test_weekly_rotation_keeps_the_local_handoff_time() -> None:
    weekly = Rotation(("ana", "ben"), chi(2026, 2, 23, 9, 0), timedelta(days=7), "America/Chicago")
    assert weekly.on_call_at(chi(2026, 3, 9, 8, 59)) == "ben"
    assert weekly.on_call_at(chi(2026, 3, 9, 9, 0)) == "ana"  # 14:00 UTC (CDT), not 15:00
    assert weekly.on_call_at(utc(2026, 3, 9, 14, 0)) == "ana"


def test_start_given_in_another_zone_still_hands_off_at_its_local_time() -> None:
    start = chi(2026, 3, 7, 8, 0).astimezone(ZoneInfo("Asia/Tokyo"))
    rotation = Rotation(("ana", "ben", "cai"), start, DAY, "America/Chicago")
    assert rotation.starts_at == utc(2026, 3, 7, 14, 0) and rotation.starts_at.tzinfo is UTC
    assert rotation.on_call_at(utc(2026, 3, 8, 13, 0)) == "ben"


def test_rotation_validation() -> None:
    start = chi(2026, 3, 7, 8, 0)
    with pytest.raises(ValueError, match="participants"):
        Rotation((), start, DAY, "America/Chicago")
    with pytest.raises(ValueError, match="participants"):
        Rotation("ana", start, DAY, "America/Chicago")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="participants"):
        Rotation(("ana", ""), start, DAY, "America/Chicago")
    with pytest.raises(ValueError, match=r"^shift must be positive$"):
        Rotation(("ana",), start, timedelta(0), "America/Chicago")
    with pytest.raises(ValueError, match=r"^shift must be positive$"):
        Rotation(("ana",), start, -DAY, "America/Chicago")
    with pytest.raises(ValueError, match="starts_at must be timezone-aware"):
        Rotation(("ana",), datetime(2026, 3, 7, 8), DAY, "America/Chicago")
    with pytest.raises(ValueError, match=r"^unknown timezone$"):
        Rotation(("ana",), start, DAY, "America/Chicgo")
    with pytest.raises(ValueError, match="timezone-aware"):
        DAILY.on_call_at(datetime(2026, 3, 8, 8))


# --- overrides -----------------------------------------------------------------------------------


def test_override_replaces_the_rotation_for_its_half_open_span() -> None:
    schedule = OnCallSchedule(
        "ward-7", DAILY, (Override("dev", chi(2026, 3, 9, 12, 0), chi(2026, 3, 9, 18, 0)),)
    )
    assert schedule.on_call_at(chi(2026, 3, 9, 11, 59)) == "cai"
    assert schedule.on_call_at(chi(2026, 3, 9, 12, 0)) == "dev"
    assert schedule.on_call_at(chi(2026, 3, 9, 17, 59)) == "dev"
    assert schedule.on_call_at(chi(2026, 3, 9, 18, 0)) == "cai"


def test_overlapping_overrides_latest_start_wins() -> None:
    later_listed_first = Override("eve", chi(2026, 3, 9, 11, 0), chi(2026, 3, 9, 12, 0))
    longer = Override("dev", chi(2026, 3, 9, 10, 0), chi(2026, 3, 9, 14, 0))
    schedule = OnCallSchedule("ward-7", DAILY, (later_listed_first, longer))
    assert schedule.on_call_at(chi(2026, 3, 9, 10, 30)) == "dev"
    assert schedule.on_call_at(chi(2026, 3, 9, 11, 0)) == "eve"
    assert schedule.on_call_at(chi(2026, 3, 9, 11, 59)) == "eve"
    assert schedule.on_call_at(chi(2026, 3, 9, 12, 0)) == "dev"
    assert schedule.on_call_at(chi(2026, 3, 9, 14, 0)) == "cai"


def test_overrides_starting_together_the_one_listed_last_wins() -> None:
    a = Override("dev", chi(2026, 3, 9, 10, 0), chi(2026, 3, 9, 14, 0))
    b = Override("eve", chi(2026, 3, 9, 10, 0), chi(2026, 3, 9, 12, 0))
    assert OnCallSchedule("ward-7", DAILY, (a, b)).on_call_at(chi(2026, 3, 9, 11)) == "eve"
    assert OnCallSchedule("ward-7", DAILY, (b, a)).on_call_at(chi(2026, 3, 9, 11)) == "dev"


def test_override_before_the_rotation_starts() -> None:
    early = Override("dev", chi(2026, 3, 1, 8, 0), chi(2026, 3, 2, 8, 0))
    schedule = OnCallSchedule("ward-7", DAILY, (early,))
    assert schedule.on_call_at(chi(2026, 3, 1, 9, 0)) == "dev"
    assert schedule.on_call_at(chi(2026, 3, 2, 9, 0)) is None


def test_override_compares_instants_not_wall_times_in_a_fold() -> None:
    # 01:50 CDT (06:50 UTC) -> 01:10 CST (07:10 UTC): later, though the wall clock is earlier.
    o = Override("dev", chi(2026, 11, 1, 1, 50, fold=0), chi(2026, 11, 1, 1, 10, fold=1))
    assert o.starts_at == utc(2026, 11, 1, 6, 50) and o.ends_at == utc(2026, 11, 1, 7, 10)
    with pytest.raises(ValueError, match="ends_at must be after starts_at"):
        Override("dev", chi(2026, 11, 1, 1, 10, fold=1), chi(2026, 11, 1, 1, 50, fold=0))


def test_override_validation_names_the_field_not_the_person() -> None:
    start = chi(2026, 3, 9, 12, 0)
    for ends_at in (start, start - timedelta(hours=1)):
        with pytest.raises(ValueError, match="ends_at must be after starts_at") as info:
            Override("dr-jane-doe", start, ends_at)
        assert "jane" not in str(info.value)
    with pytest.raises(ValueError, match="starts_at must be timezone-aware"):
        Override("dev", datetime(2026, 3, 9, 12), start)
    with pytest.raises(ValueError, match="ends_at must be timezone-aware"):
        Override("dev", start, datetime(2026, 3, 9, 13))
    with pytest.raises(ValueError, match="clinician"):
        Override("", start, start + DAY)
    with pytest.raises(ValueError, match="key"):
        OnCallSchedule("", DAILY)


# --- shifts_between ------------------------------------------------------------------------------


def test_week_view_with_an_override() -> None:
    schedule = OnCallSchedule(
        "ward-7", DAILY, (Override("dev", chi(2026, 3, 9, 12, 0), chi(2026, 3, 10, 9, 0)),)
    )
    spans = schedule.shifts_between(chi(2026, 3, 8, 0, 0), chi(2026, 3, 11, 0, 0))
    assert spans == [
        (chi(2026, 3, 8, 0, 0), chi(2026, 3, 8, 8, 0), "ana"),  # 23-hour DST-day shift
        (chi(2026, 3, 8, 8, 0), chi(2026, 3, 9, 8, 0), "ben"),
        (chi(2026, 3, 9, 8, 0), chi(2026, 3, 9, 12, 0), "cai"),
        (chi(2026, 3, 9, 12, 0), chi(2026, 3, 10, 9, 0), "dev"),
        (chi(2026, 3, 10, 9, 0), chi(2026, 3, 11, 0, 0), "ana"),
    ]
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b, _ in spans)


def test_same_clinician_continuing_is_one_span() -> None:
    # ben's own override running into his rotation shift merges into one span.
    schedule = OnCallSchedule(
        "ward-7", DAILY, (Override("ben", chi(2026, 3, 8, 6, 0), chi(2026, 3, 8, 9, 0)),)
    )
    spans = schedule.shifts_between(chi(2026, 3, 8, 0, 0), chi(2026, 3, 9, 12, 0))
    assert spans == [
        (chi(2026, 3, 8, 0, 0), chi(2026, 3, 8, 6, 0), "ana"),
        (chi(2026, 3, 8, 6, 0), chi(2026, 3, 9, 8, 0), "ben"),
        (chi(2026, 3, 9, 8, 0), chi(2026, 3, 9, 12, 0), "cai"),
    ]


def test_repeated_participant_merges() -> None:
    rotation = Rotation(("ana", "ana", "ben"), utc(2026, 1, 1), timedelta(hours=8), "UTC")
    spans = OnCallSchedule("k", rotation).shifts_between(utc(2026, 1, 1), utc(2026, 1, 2, 8))
    assert spans == [
        (utc(2026, 1, 1, 0), utc(2026, 1, 1, 16), "ana"),
        (utc(2026, 1, 1, 16), utc(2026, 1, 2, 0), "ben"),
        (utc(2026, 1, 2, 0), utc(2026, 1, 2, 8), "ana"),
    ]


def test_time_with_nobody_on_call_is_left_out() -> None:
    schedule = OnCallSchedule(
        "ward-7", DAILY, (Override("dev", chi(2026, 3, 6, 8, 0), chi(2026, 3, 6, 20, 0)),)
    )
    spans = schedule.shifts_between(chi(2026, 3, 6, 0, 0), chi(2026, 3, 7, 12, 0))
    assert spans == [
        (chi(2026, 3, 6, 8, 0), chi(2026, 3, 6, 20, 0), "dev"),
        (chi(2026, 3, 7, 8, 0), chi(2026, 3, 7, 12, 0), "ana"),
    ]


def test_span_limit() -> None:
    hourly = Rotation(("ana", "ben"), utc(2026, 1, 1), timedelta(hours=1), "UTC")
    schedule = OnCallSchedule("k", hourly)
    assert len(schedule.shifts_between(utc(2026, 1, 1), utc(2026, 1, 1) + MAX_SPANS * HOUR)) == (
        MAX_SPANS
    )
    with pytest.raises(ValueError, match="1000"):
        schedule.shifts_between(utc(2026, 1, 1), utc(2026, 1, 1) + (MAX_SPANS + 1) * HOUR)


def test_one_person_with_tiny_shifts_over_a_year_is_one_span_quickly() -> None:
    solo = Rotation(("ana",), utc(2026, 1, 1), timedelta(seconds=1), "UTC")
    long_cover = Override("dev", utc(2026, 3, 1), utc(2026, 4, 1))
    spans = OnCallSchedule("k", solo, (long_cover,)).shifts_between(
        utc(2026, 1, 1), utc(2027, 1, 1)
    )
    assert [who for _, _, who in spans] == ["ana", "dev", "ana"]


def test_shifts_between_validation() -> None:
    schedule = OnCallSchedule("k", DAILY)
    with pytest.raises(ValueError, match="end must be after start"):
        schedule.shifts_between(utc(2026, 3, 9), utc(2026, 3, 9))
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        schedule.shifts_between(datetime(2026, 3, 9), utc(2026, 3, 10))
    with pytest.raises(ValueError, match="end must be timezone-aware"):
        schedule.shifts_between(utc(2026, 3, 9), datetime(2026, 3, 10))


# --- properties ----------------------------------------------------------------------------------

ZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/St_Johns",
    "America/Santiago",  # DST at midnight: 00:00 is skipped once a year
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Asia/Kathmandu",  # +05:45
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",
)
SPAN_START = utc(2025, 9, 1)
SPAN_END = utc(2027, 9, 1)


@cache
def transitions(name: str) -> tuple[datetime, ...]:
    """When the zone's offset changes, by brute force (independent of the code under test)."""
    zone = ZoneInfo(name)
    found = []
    t = SPAN_START
    while t < SPAN_END:
        nxt = t + HOUR
        if t.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            m = t
            while m.astimezone(zone).utcoffset() == t.astimezone(zone).utcoffset():
                m += MINUTE
            found.append(m)
        t = nxt
    return tuple(found)


def wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def first_instant_at_or_after_wall(zone: ZoneInfo, target: datetime) -> datetime:
    """The earliest instant whose local wall time is >= target: the target itself (its first
    occurrence) or, in a gap, the end of the gap. Found by walking quarter hours, which is
    exhaustive here: targets, offsets and transitions all fall on whole quarter hours."""
    u = min(target.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)) - 3 * HOUR
    while wall(u, zone) < target:
        u += QUARTER
    return u


handoff_times = st.one_of(
    st.sampled_from([time(0), time(1, 30), time(2), time(2, 30), time(3), time(8), time(23, 30)]),
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(ZONES),
    start_day=st.dates(date(2025, 9, 1), date(2026, 2, 28)),
    start_time=handoff_times,
    fold=st.integers(0, 1),
    days=st.sampled_from([1, 1, 2, 7]),
)
def test_whole_day_rotation_hands_off_at_the_local_wall_time(
    name: str, start_day: date, start_time: time, fold: int, days: int
) -> None:
    zone = ZoneInfo(name)
    starts_at = datetime.combine(start_day, start_time, tzinfo=zone).replace(fold=fold)
    people = ("p0", "p1", "p2")
    rotation = Rotation(people, starts_at, timedelta(days=days), name)
    # The wall time of the start INSTANT: a start inside a gap (Santiago's DST begins at 00:00,
    # so 00:00 does not exist that day) is the instant just after it, and the rotation hands off
    # at that instant's wall time (01:00) from then on. (``wall(starts_at, zone)`` would keep the
    # nonexistent 00:00: astimezone to its own zone converts nothing.)
    first_wall = wall(starts_at.astimezone(UTC), zone)
    shift = timedelta(days=days)
    turns = {0, 1, 2}
    for t in transitions(name):
        if t > rotation.starts_at:
            k = (wall(t, zone) - first_wall) // shift
            turns |= {k - 1, k, k + 1, k + 2}
    assert rotation.on_call_at(rotation.starts_at) == "p0"
    assert rotation.on_call_at(rotation.starts_at - TICK) is None
    for k in sorted(turns):
        if k < 1:
            continue
        target = first_wall + k * shift
        handoff = first_instant_at_or_after_wall(zone, target)
        assert rotation.on_call_at(handoff) == people[k % 3], (k, target)
        assert rotation.on_call_at(handoff - TICK) == people[(k - 1) % 3], (k, target)
        exists = any(
            wall(target.replace(tzinfo=zone, fold=f).astimezone(UTC), zone) == target
            for f in (0, 1)
        )
        if exists:
            assert wall(handoff, zone) == target
        # Throughout the shift, whatever the wall clock does (a repeated hour reads earlier).
        following = first_instant_at_or_after_wall(zone, target + shift)
        for probe in (45 * MINUTE, 90 * MINUTE, 12 * HOUR):
            if handoff + probe < following:
                assert rotation.on_call_at(handoff + probe) == people[k % 3], (k, probe)


@st.composite
def schedules(draw: st.DrawFn) -> OnCallSchedule:
    name = draw(st.sampled_from(ZONES))
    near = transitions(name)
    use_transition = len(near) > 0 and draw(st.booleans())
    base = draw(st.sampled_from(near)) if use_transition else utc(2026, 6, 1)
    starts_at = base + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 3 * 24 * 60)))
    shift = draw(
        st.sampled_from(
            [HOUR, 8 * HOUR, 12 * HOUR, timedelta(minutes=90), DAY, 2 * DAY, 7 * DAY, DAY + HOUR]
        )
    )
    people = tuple(draw(st.lists(st.sampled_from(["ana", "ben", "cai"]), min_size=1, max_size=4)))
    rotation = Rotation(people, starts_at, shift, name)
    overrides = []
    for _ in range(draw(st.integers(0, 4))):
        o_start = starts_at + timedelta(minutes=draw(st.integers(-2 * 24 * 60, 8 * 24 * 60)))
        length = timedelta(minutes=draw(st.integers(1, 3 * 24 * 60)))
        who = draw(st.sampled_from(["ana", "ben", "dev", "eve"]))
        overrides.append(Override(who, o_start, o_start + length))
    return OnCallSchedule("ward", rotation, tuple(overrides))


def check_spans(
    schedule: OnCallSchedule,
    start: datetime,
    end: datetime,
    spans: list[tuple[datetime, datetime, str]],
    probes: list[datetime],
) -> None:
    for a, b, who in spans:
        assert a.tzinfo is UTC and b.tzinfo is UTC
        assert start <= a < b <= end
        assert schedule.on_call_at(a) == who
        assert schedule.on_call_at(b - TICK) == who
    for (_, b, who), (a2, _, who2) in pairwise(spans):
        assert b <= a2
        if b == a2:
            assert who != who2, "a continuing clinician must be merged"
    for u in probes:
        covering = [who for a, b, who in spans if a <= u < b]
        assert len(covering) <= 1
        assert (covering[0] if covering else None) == schedule.on_call_at(u), u


@settings(max_examples=300, deadline=None)
@given(data=st.data(), schedule=schedules())
def test_spans_cover_the_range_and_agree_with_on_call_at(
    data: st.DataObject, schedule: OnCallSchedule
) -> None:
    rotation_start = schedule.rotation.starts_at
    start = rotation_start + timedelta(seconds=data.draw(st.integers(0, 5 * 86_400)))
    end = start + timedelta(seconds=data.draw(st.integers(1, 8 * 86_400)))
    spans = schedule.shifts_between(start, end)
    # contiguous and exact: from start to end with no gap
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(b == a2 for (_, b, _), (a2, _, _) in pairwise(spans))
    probes = [
        start + (end - start) * data.draw(st.floats(0, 1, exclude_max=True)) for _ in range(20)
    ]
    probes = [p for p in probes if start <= p < end]
    probes += [b for _, b, _ in spans[:-1]] + [o.starts_at for o in schedule.overrides]
    probes = [p for p in probes if start <= p < end]
    check_spans(schedule, start, end, spans, probes)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), schedule=schedules())
def test_spans_leave_out_exactly_the_time_nobody_is_on_call(
    data: st.DataObject, schedule: OnCallSchedule
) -> None:
    start = schedule.rotation.starts_at + timedelta(
        seconds=data.draw(st.integers(-4 * 86_400, 86_400))
    )
    end = start + timedelta(seconds=data.draw(st.integers(1, 6 * 86_400)))
    spans = schedule.shifts_between(start, end)
    probes = [
        start + (end - start) * data.draw(st.floats(0, 1, exclude_max=True)) for _ in range(20)
    ]
    probes += [schedule.rotation.starts_at, schedule.rotation.starts_at - TICK]
    probes += [o.ends_at for o in schedule.overrides] + [o.starts_at for o in schedule.overrides]
    check_spans(schedule, start, end, spans, [p for p in probes if start <= p < end])
