"""Cohorts close and merge (issue 17 item 3): ``domain.lifecycle.plan_run`` over generated
sequences of joins, leaves and stage changes, a run after any of them; after every run each
active cohort has 6-10 members (or is closed), nobody is lost or placed twice, a newcomer never
joins a cohort that stays below the minimum, and whoever a closed cohort sends back to the
waitlist keeps the waiting time they had.

Examples: ``TAPER_HYPOTHESIS_EXAMPLES`` (default 300). The figures (sequences, runs, smallest
cohort seen after a run, closed and merged cohorts) are printed at the end of the module
(``pytest -s``) and checked to have exercised closes and merges at all.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.group_matching.domain import matching
from services.group_matching.domain.lifecycle import LiveCohort, plan_run

EXAMPLES = int(os.environ.get("TAPER_HYPOTHESIS_EXAMPLES", "300"))
CFG = matching.matching_v1()
MIN, MAX = CFG.min_size, CFG.max_size
T0 = datetime(2026, 11, 2, 12, tzinfo=UTC)
# Chicago, London, Paris, India: most pairs share a session, some do not (Chicago and India)
OFFSETS = [-360, 0, 60, 330]
STAGES = ["active", "final_phase", "held"]
DRUGS = ["alprazolam", "clonazepam"]
FIGURES: Counter[str] = Counter()
SMALLEST: list[int] = []


@dataclass
class World:
    """The service's state as the run sees it: who waits (and since when), who is where."""

    now: datetime = T0
    people: dict[uuid.UUID, matching.Candidate] = field(default_factory=dict)
    waiting: set[uuid.UUID] = field(default_factory=set)
    cohorts: dict[uuid.UUID, matching.OpenCohort] = field(default_factory=dict)
    members: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    kept: dict[uuid.UUID, datetime] = field(default_factory=dict)  # member -> waiting since

    def cohort_of(self, patient: uuid.UUID) -> uuid.UUID | None:
        return next((c for c, ms in self.members.items() if patient in ms), None)

    def everyone(self) -> list[uuid.UUID]:
        return sorted(self.people, key=lambda p: p.int)

    def join(self, specs: list[tuple[str, int, str, int]]) -> None:
        for language, offset, stage, drug in specs:
            p = uuid.uuid4()
            self.people[p] = matching.Candidate(
                patient_id=p,
                stage=stage,
                drug=DRUGS[drug],
                on_diazepam=False,
                utc_offset_minutes=OFFSETS[offset],
                language=language,
                waiting_since=self.now,
            )
            self.waiting.add(p)

    def leave(self, pick: int) -> None:
        if not self.people:
            return
        p = self.everyone()[pick % len(self.people)]
        del self.people[p]
        self.waiting.discard(p)
        cohort = self.cohort_of(p)
        if cohort is not None:
            self.members[cohort].remove(p)

    def change_stage(self, pick: int, stage: str) -> None:
        """A settled stage change: a member whose group no longer fits leaves for the waitlist
        (the service does this before matching, once hysteresis has passed)."""
        if not self.people:
            return
        p = self.everyone()[pick % len(self.people)]
        self.people[p] = replace(self.people[p], stage=stage)
        cohort = self.cohort_of(p)
        if cohort is not None and self.cohorts[cohort].stage_group != CFG.stage_group(stage):
            self.members[cohort].remove(p)
            self.waiting.add(p)
            self.people[p] = replace(self.people[p], waiting_since=self.now)

    def run(self) -> None:
        self.now += timedelta(days=1)
        live = [
            LiveCohort(
                self.cohorts[c],
                tuple(replace(self.people[p], waiting_since=self.kept[p]) for p in ms),
            )
            for c, ms in self.members.items()
        ]
        small_before = {c for c, ms in self.members.items() if len(ms) < MIN}
        waiting = [self.people[p] for p in sorted(self.waiting, key=lambda p: p.int)]
        plan = plan_run(live, waiting, CFG, now=self.now)

        for source, target in plan.merged.items():
            # the target may have been small too, if this run topped it up to the minimum
            assert source in small_before and target not in {*plan.merged, *plan.closed}
            self.members[target] += self.members.pop(source)
            del self.cohorts[source]
        for closed in plan.closed:
            assert closed in small_before
            for p in self.members.pop(closed):
                self.waiting.add(p)
                self.people[p] = replace(self.people[p], waiting_since=self.kept[p])
            del self.cohorts[closed]
        new_ids: dict[str, uuid.UUID] = {}
        for n in plan.new_cohorts:
            cohort_id = new_ids[n.key] = uuid.uuid4()
            self.cohorts[cohort_id] = matching.OpenCohort(
                cohort_id=cohort_id,
                stage_group=n.stage_group,
                language=n.language,
                session_utc_minute=n.session_utc_minute,
                drug=n.drug,
                size=0,
                capacity=MAX,
                on_diazepam=n.on_diazepam,
            )
            self.members[cohort_id] = []
        joined: Counter[uuid.UUID] = Counter()
        for pl in plan.placements:
            cohort_id = pl.cohort_id or new_ids[pl.new_cohort_key or ""]
            assert pl.patient_id in self.waiting, "placed twice"
            cohort = self.cohorts[cohort_id]
            assert matching.score_pair(self.people[pl.patient_id], cohort, CFG, self.now)
            self.waiting.discard(pl.patient_id)
            self.members[cohort_id].append(pl.patient_id)
            self.kept[pl.patient_id] = self.people[pl.patient_id].waiting_since
            joined[cohort_id] += 1

        # the property: every active cohort has 6-10 members after the run
        sizes = [len(ms) for ms in self.members.values()]
        assert all(MIN <= n <= MAX for n in sizes), sizes
        if sizes:
            SMALLEST.append(min(sizes))
        # nobody lost, nobody twice; the plan's waitlist is the world's
        placed = [p for ms in self.members.values() for p in ms]
        assert len(placed) == len(set(placed)) and not set(placed) & self.waiting
        assert set(placed) | self.waiting == set(self.people)
        assert set(plan.waiting) == self.waiting
        # a released member who waits again waits since when they first waited
        for p in plan.released:
            if p in self.waiting:
                assert self.people[p].waiting_since == self.kept[p]
        # languages never mix, whatever merged
        for c, ms in self.members.items():
            assert {self.people[p].language for p in ms} == {self.cohorts[c].language}
        FIGURES["runs"] += 1
        FIGURES["merged"] += len(plan.merged)
        FIGURES["closed"] += len(plan.closed)
        FIGURES["closed_with_members"] += len({c for c in plan.released.values()})
        FIGURES["topped_up"] += sum(1 for c in small_before if c in joined)


SPEC = st.tuples(
    st.sampled_from(["en", "en", "es"]),
    st.integers(0, len(OFFSETS) - 1),
    st.sampled_from(STAGES),
    st.integers(0, len(DRUGS) - 1),
)
# A crowd: several alike (as a clinic's intake often is), so that cohorts form and then shrink.
CROWD = st.tuples(st.integers(1, 16), SPEC).map(lambda t: [t[1]] * t[0])
STEP = st.one_of(
    st.tuples(st.just("join"), st.lists(SPEC, min_size=1, max_size=9) | CROWD),
    st.tuples(st.just("leave"), st.integers(0, 10**6)),
    st.tuples(st.just("leave"), st.integers(0, 10**6)),
    st.tuples(st.just("stage"), st.integers(0, 10**6), st.sampled_from(STAGES)),
    st.tuples(st.just("run")),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    intake=st.lists(CROWD, min_size=1, max_size=4),
    steps=st.lists(STEP, min_size=1, max_size=40),
)
def test_after_every_run_each_active_cohort_has_six_to_ten_members(
    intake: list[list[tuple[str, int, str, int]]], steps: list[tuple[object, ...]]
) -> None:
    world = World()
    for crowd in intake:  # a clinic's first intake: cohorts form, then life happens
        world.join(crowd)
    world.run()
    for step in steps:
        match step:
            case ("join", specs):
                world.join(specs)  # type: ignore[arg-type]
            case ("leave", pick):
                world.leave(pick)  # type: ignore[arg-type]
            case ("stage", pick, stage):
                world.change_stage(pick, stage)  # type: ignore[arg-type]
            case _:
                world.run()
    world.run()
    FIGURES["sequences"] += 1


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    if FIGURES["sequences"]:
        smallest = min(SMALLEST) if SMALLEST else None
        print(f"\ncohort lifecycle figures: {dict(FIGURES)}, smallest cohort seen: {smallest}")


def test_the_generated_sequences_close_merge_and_top_up_cohorts() -> None:
    """Runs after the property (file order): its sequences must have reached every branch, or
    the property proved less than it says."""
    if not FIGURES["sequences"]:
        pytest.skip("the property did not run in this session")
    if EXAMPLES < 100:
        pytest.skip("too few examples to expect every branch")
    assert FIGURES["merged"] and FIGURES["closed_with_members"] and FIGURES["topped_up"]
    assert min(SMALLEST) >= MIN


# --- examples ---------------------------------------------------------------------------------

NOW = T0 + timedelta(days=1)


def cand(offset: int = 0, waited_days: int = 3, stage: str = "active") -> matching.Candidate:
    return matching.Candidate(
        patient_id=uuid.uuid4(),
        stage=stage,
        drug="alprazolam",
        on_diazepam=False,
        utc_offset_minutes=offset,
        language="en",
        waiting_since=NOW - timedelta(days=waited_days),
    )


def live(members: int, offset: int = 0, capacity: int = MAX) -> LiveCohort:
    cohort = matching.OpenCohort(
        cohort_id=uuid.uuid4(),
        stage_group="active",
        language="en",
        session_utc_minute=(15 * 60 - offset) % 1440,  # 15:00 local
        drug="alprazolam",
        size=0,
        capacity=capacity,
    )
    return LiveCohort(cohort, tuple(cand(offset, 20) for _ in range(members)))


def test_a_small_cohort_moves_whole_into_a_compatible_one_with_room() -> None:
    small, roomy = live(3), live(6)
    plan = plan_run([small, roomy], [], CFG, now=NOW)
    assert plan.merged == {small.cohort_id: roomy.cohort_id} and not plan.closed


def test_without_a_compatible_cohort_it_closes_and_its_members_wait() -> None:
    # Chicago members; the roomy cohort meets at 15:00 in India, 03:30 in Chicago
    small, far = live(3, offset=-360), live(6, offset=330)
    plan = plan_run([small, far], [], CFG, now=NOW)
    assert plan.closed == {small.cohort_id} and not plan.merged
    assert set(plan.released) == {m.patient_id for m in small.members}
    assert set(plan.waiting) == set(plan.released)


def test_a_newcomer_joins_a_small_cohort_only_if_it_reaches_the_minimum() -> None:
    four = live(4)
    one = [cand()]
    plan = plan_run([four], one, CFG, now=NOW)
    assert plan.placements == () and plan.closed == {four.cohort_id}  # 5 < 6: not joined
    two = [cand(), cand()]
    plan = plan_run([four], two, CFG, now=NOW)
    assert {p.cohort_id for p in plan.placements} == {four.cohort_id}
    assert not plan.closed and not plan.merged


def test_released_members_and_newcomers_form_a_new_cohort_at_the_minimum() -> None:
    three = live(3)
    newcomers = [cand() for _ in range(3)]
    plan = plan_run([three], newcomers, CFG, now=NOW)
    # three newcomers would bring it to six: topped up rather than closed
    assert not plan.closed and len(plan.placements) == 3
    two = live(2)
    plan = plan_run([two], newcomers, CFG, now=NOW)
    # two and three make five: not joined, closed, and five are too few for a new cohort
    assert plan.closed == {two.cohort_id} and plan.new_cohorts == ()
    plan = plan_run([two], [*newcomers, cand()], CFG, now=NOW)
    assert not plan.closed and len(plan.placements) == 4  # four join: two + four = six


def test_an_empty_cohort_closes_without_anyone_to_release() -> None:
    empty = live(0)
    plan = plan_run([empty], [], CFG, now=NOW)
    assert plan.closed == {empty.cohort_id} and plan.released == {}
