"""Property: every plan the planner produces is accepted, step by step, by the domain's rules.

The taper is built as ``plans.approve_plan`` builds it and every step is taken as
``step_timer.take_step`` takes it (the approval authorises each step), so a plan the planner emits
is never refused by the dry run at approval or when a step comes due.

``PLAN_DOMAIN_MAX_EXAMPLES`` sets the number of generated patients (default 300).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.model import (
    ChangeKind,
    ClinicianDecision,
    DecisionKind,
    PatientTaper,
    Stage,
    TaperError,
    daily_mg,
)
from services.scheduler.domain.planning import (
    DIAZEPAM,
    BoundOverride,
    EquivalenceOverride,
    History,
    NeedKind,
    PacePreference,
    PlanningError,
    PlanningInput,
    StepKind,
    Strategy,
    TaperPlan,
    equivalence_v1,
    final_step_threshold_mg,
    grid_unit,
    plan,
    planning_defaults_v1,
    planning_reference_v1,
)
from services.scheduler.domain.planning.doses import units_of

MAX_EXAMPLES = int(os.environ.get("PLAN_DOMAIN_MAX_EXAMPLES", "300"))
REF = planning_reference_v1()
CATALOGUE = REF.formulations
DRUGS = tuple(d for d in REF.equivalence.drug_codes if CATALOGUE.for_drug(d))
DIAZEPAM_CODES = tuple(f.code for f in CATALOGUE.for_drug(DIAZEPAM))
D = Decimal

rarely = st.integers(0, 7).map(lambda x: x == 0)  # mostly False: all risk categories occur


@st.composite
def patients(draw: st.DrawFn) -> tuple[PlanningInput, Strategy | None]:
    """Mirrors ``test_planning_properties.patients``, plus the patient's own crossover wish
    (strategy None), the alternative equivalence column, and maintenance targets after a
    crossover (in diazepam mg)."""
    drug = draw(st.sampled_from(DRUGS))
    codes = tuple(f.code for f in CATALOGUE.for_drug(drug))
    on_hand = draw(st.lists(st.sampled_from(codes), min_size=1, max_size=len(codes), unique=True))
    strategy = draw(st.none() | st.sampled_from(tuple(Strategy)))
    crossover_wanted = drug != DIAZEPAM and draw(st.booleans())
    crossover = drug != DIAZEPAM and (
        strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL or (strategy is None and crossover_wanted)
    )
    if crossover or (drug != DIAZEPAM and draw(st.booleans())):
        on_hand += draw(st.lists(st.sampled_from(DIAZEPAM_CODES), min_size=1, unique=True))
    forms = [f for f in (CATALOGUE.get(c) for c in on_hand) if f is not None]
    drug_units = units_of(f for f in forms if f.drug == drug)
    n = draw(st.integers(1, 4))
    doses = tuple(
        draw(st.sampled_from(drug_units)) * draw(st.integers(0 if i else 1, 8)) for i in range(n)
    )
    table = REF.equivalence.get(drug)
    assert table is not None
    column = None
    if table.mg_per_10mg_diazepam("va_dod") is not None and draw(st.integers(0, 4)) == 0:
        column = "va_dod"
    value = table.mg_per_10mg_diazepam(column or REF.equivalence.default_column)
    assert value is not None
    override = None
    if draw(st.integers(0, 9)) == 0:
        factor = draw(st.sampled_from((D("0.5"), D("0.75"), D("1.5"), D(2))))
        value = value * factor
        override = EquivalenceOverride(value, "clinician_judgement")
    bound_override = None
    if draw(st.integers(0, 9)) == 0:
        bound_override = BoundOverride(
            draw(st.sampled_from((D("0.3"), D("0.4"), D("0.5")))), "clinician_fast_taper"
        )
    maintenance = None
    if draw(st.integers(0, 3)) == 0:
        share = draw(st.sampled_from((D("0.1"), D("0.25"), D("0.5"), D("0.8"))))
        if crossover:  # the target is in mg of diazepam, the drug the taper ends on
            unit = grid_unit(f for f in forms if f.drug == DIAZEPAM)
            daily = sum(doses, D(0)) * 10 / value
        else:
            unit = grid_unit(f for f in forms if f.drug == drug)
            daily = sum(doses, D(0))
        maintenance = (daily * share // unit) * unit
    inp = PlanningInput(
        drug=drug,
        administrations_mg=doses,
        duration_weeks=draw(st.integers(0, 51) | st.integers(52, 1040)),
        age=draw(st.integers(18, 64) | st.integers(65, 100)),
        start_on=date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 3650))),
        formulations=tuple(on_hand),
        frail=draw(rarely),
        history=History(*(draw(rarely) for _ in range(5))),
        pace=draw(st.sampled_from(tuple(PacePreference))),
        crossover_wanted=crossover_wanted,
        maintenance_mg=maintenance or None,
        equivalence_override=override,
        equivalence_column=column,
        bound_override=bound_override,
    )
    return inp, strategy


def replay(inp: PlanningInput, p: TaperPlan) -> PatientTaper:
    """Start the taper as ``approve_plan`` does and take every step as ``_take_step`` does."""
    known = equivalence_v1().get(p.drug)
    assert known is not None
    equivalence = dict(p.equivalence)
    approval = ClinicianDecision(uuid.uuid4(), "clin-1", DecisionKind.APPROVE, "plan_approved")
    taper = PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug=p.drug,
        half_life_class=known.half_life_class,
        current_daily_dose_mg=daily_mg(p.baseline, p.drug),
        decision=approval,
        plan_id=uuid.uuid4(),
        regimen=p.baseline,
        equivalence=equivalence,
    )
    max_rise = planning_defaults_v1().crossover_max_rounding_up_fraction
    for s in p.steps:
        try:
            step = taper.change(
                s.administrations,
                ChangeKind(s.kind.value),
                s.effective_on,
                approval,
                today=inp.start_on,
                bounds=p.bound,
                final_step_at_or_below_mg=final_step_threshold_mg(
                    taper.drug, equivalence.get(taper.drug)
                ),
                crossover_max_rise_fraction=max_rise,
            )
            taper.apply(step.step_id)
        except TaperError as exc:
            pytest.fail(
                f"the domain refused planned step {s.number}/{len(p.steps)} "
                f"({s.kind.value}): {type(exc).__name__}: {exc}"
            )
    return taper


def implausible(inp: PlanningInput, err: PlanningError) -> bool:
    """Issue 13's refusals: a day above the drug's plausible maximum, a switch above the
    crossover ceiling for the patient's age or frailty (both tested in test_planning_review)."""
    row = REF.equivalence.get(inp.drug)
    assert row is not None and row.max_daily_mg is not None
    if err.field == "administrations_mg":
        return inp.daily_dose_mg > row.max_daily_mg
    return err.field in ("crossover_wanted", "strategy") and "ceiling" in err.problem


def check_agreement(inp: PlanningInput, strategy: Strategy | None) -> None:
    try:
        p = plan(inp, strategy)
    except PlanningError as err:
        # only a maintenance target at or above the (post-crossover) dose is refused here, and
        # (issue 13) a day above the drug's plausible maximum or a switch above the ceiling
        assume(err.field != "maintenance_mg")
        if implausible(inp, err):
            event(f"refused:{err.field}")
            return
        raise
    crossover = any(s.kind is StepKind.CROSSOVER for s in p.steps)
    event("crossover" if crossover else "no crossover")
    event(f"ends:{'zero' if p.ends_at == 0 else 'need' if p.formulation_needs else 'target'}")
    if not p.steps:
        event("no steps")
    taper = replay(inp, p)
    last = p.steps[-1].administrations if p.steps else p.baseline
    assert taper.current_regimen == last
    assert (taper.stage is Stage.COMPLETED) == (p.ends_at == 0)
    assert taper.drug == p.final_drug
    assert taper.current_daily_dose_mg == p.ends_at
    assert len(taper.steps) == len(p.steps) and not taper.held


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
def test_every_generated_plan_is_accepted_step_by_step_by_the_domain(
    case: tuple[PlanningInput, Strategy | None],
) -> None:
    check_agreement(*case)


def continue_with(p: TaperPlan, inp: PlanningInput, new_codes: tuple[str, ...]) -> PlanningInput:
    """The input ``adjust`` re-plans from once new products are on file: today's doses of the
    drug the plan stopped on, one pace interval after its last step, the same preferences."""
    last = p.steps[-1] if p.steps else None
    start = last.effective_on + timedelta(weeks=p.pace.interval_weeks) if last else inp.start_on
    day = last.administrations if last else p.baseline
    switched = p.final_drug != p.drug
    return replace(
        inp,
        drug=p.final_drug,
        administrations_mg=tuple(a.dose_mg for a in day if a.drug == p.final_drug),
        start_on=start,
        formulations=(*inp.formulations, *new_codes),
        crossover_wanted=inp.crossover_wanted and not switched,
        equivalence_override=None if switched else inp.equivalence_override,
        equivalence_column=None if switched else inp.equivalence_column,
    )


# Found by hypothesis: the crossover's need was sized by the first administration that could
# not be switched (0.6 mg clobazam: a 0.1 mg diazepam liquid would do), so the re-plan with the
# liquid on file stopped at once on the other one (0.1 mg clobazam, 0.067 mg diazepam).
CLOBAZAM_0_1_AND_0_6 = PlanningInput(
    drug="clobazam",
    administrations_mg=(D("0.1"), D("0.6")),
    duration_weeks=0,
    age=18,
    start_on=date(2026, 1, 1),
    formulations=("clobazam_tab_10mg", "clobazam_susp_1mg_ml", "diazepam_tab_2mg"),
    frail=True,
    history=History(*(True,) * 5),
    pace=PacePreference.SLOWER,
    equivalence_override=EquivalenceOverride(D("15.00"), "clinician_judgement"),
)


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
@example((CLOBAZAM_0_1_AND_0_6, Strategy.CROSSOVER_THEN_PROPORTIONAL))
def test_a_plan_stopped_for_a_liquid_goes_on_to_its_end_once_the_liquid_is_on_file(
    case: tuple[PlanningInput, Strategy | None],
) -> None:
    """The formulation need is a pause, not an end: with the liquid it names on file, the
    re-planned rest (as ``adjust`` plans it) makes progress, is accepted by the domain with the
    real history of the first part, and ends at zero, at the maintenance target, or at a further
    need at a lower dose (a 0.1 mg liquid step is itself too coarse near the end of a
    short-acting taper: then a compounded product is named)."""
    inp, strategy = case
    try:
        first = plan(inp, strategy)
    except PlanningError as err:
        assume(err.field != "maintenance_mg")
        if implausible(inp, err):
            event(f"refused:{err.field}")
            return
        raise
    if not (first.formulation_needs and first.formulation_needs[0].kind is NeedKind.LIQUID):
        event("no liquid need: nothing to continue")  # most cases; filtering them is too slow
        return
    need = first.formulation_needs[0]
    liquids = tuple(
        f.code
        for f in CATALOGUE.for_drug(need.drug)
        if f.kind == "liquid" and f.code not in inp.formulations
    )
    taper = replay(inp, first)
    second_input = continue_with(first, inp, liquids)
    # As ``replanning._replan``: the same strategy, proportional once the crossover is done.
    switched = first.final_drug != first.drug
    crossover = strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL
    second = plan(second_input, Strategy.PROPORTIONAL if switched and crossover else strategy)
    later = second.formulation_needs
    event(f"then:{later[0].kind.value if later else 'end'}")
    assert second.steps, "the liquid it asked for gives no step"
    # Progress in diazepam-equivalents (the need's own dose is in the drug it stopped on).
    stop_eq = taper.diazepam_eq(taper.current_regimen)
    max_rise = planning_defaults_v1().crossover_max_rounding_up_fraction
    approval = ClinicianDecision(uuid.uuid4(), "clin-1", DecisionKind.APPROVE, "liquid_on_file")
    for s in second.steps:
        step = taper.change(
            s.administrations,
            ChangeKind(s.kind.value),
            s.effective_on,
            approval,
            today=second_input.start_on,
            bounds=second.bound,
            final_step_at_or_below_mg=final_step_threshold_mg(
                taper.drug, dict(second.equivalence).get(taper.drug)
            ),
            crossover_max_rise_fraction=max_rise,
        )
        taper.apply(step.step_id)
    assert taper.diazepam_eq(taper.current_regimen) < stop_eq
    if later:
        assert taper.current_daily_dose_mg == later[0].at_dose_mg
    elif inp.maintenance_mg:
        assert taper.current_daily_dose_mg >= inp.maintenance_mg
    else:
        assert taper.completed and taper.stage is Stage.COMPLETED
