"""Which taper stage a patient is in, for placing peer cohorts. Pure: no I/O.

Stages follow clinical-reference §5 (cohort keys) and match ``contracts.TaperStage`` values.
Hysteresis (not flapping between cohorts) comes with issue 6.
"""

from __future__ import annotations

from decimal import Decimal

from services.group_matching.domain.reference import StageRules, stages_v1

PRE_TAPER = "pre_taper"
CROSSOVER = "crossover"
ACTIVE = "active"
FINAL_PHASE = "final_phase"
HELD = "held"
MAINTENANCE = "maintenance"
COMPLETED = "completed"
STAGES = frozenset({PRE_TAPER, CROSSOVER, ACTIVE, FINAL_PHASE, HELD, MAINTENANCE, COMPLETED})


class InvalidStageInput(ValueError):
    """Inputs the stage cannot be derived from; the message names the input, never its value."""


def stage_after_dose(
    previous_stage: str | None,
    start_dose: Decimal,
    new_dose: Decimal,
    *,
    rules: StageRules | None = None,
) -> str:
    """The stage after a dose reduction to ``new_dose`` from a taper that began at ``start_dose``.

    ``completed`` at zero, ``final_phase`` below the configured fraction of the start (⚠ 10%),
    otherwise ``active``. ``previous_stage`` is ``None`` for a patient's first reduction.
    """
    if previous_stage is not None and previous_stage not in STAGES:
        raise InvalidStageInput("previous_stage is not a known stage")
    if not start_dose > 0:
        raise InvalidStageInput("start_dose must be greater than 0")
    if new_dose < 0:
        raise InvalidStageInput("new_dose must not be negative")
    rules = rules or stages_v1()
    if new_dose == 0:
        return COMPLETED
    if new_dose < start_dose * rules.final_phase_below_fraction:
        return FINAL_PHASE
    return ACTIVE


# The stages a scheduler event names that the dose alone cannot show: trusted over the derivation.
# ``active`` is not among them: schedulers before issue 13 announced ``active`` even in the final
# phase, so for ``active`` the derivation still tells active from final phase.
_ANNOUNCED_OVER_DERIVED = frozenset({CROSSOVER, FINAL_PHASE, COMPLETED})


def stage_from_event(announced: str | None, derived: str) -> str:
    """The stage after a dose event: the scheduler's ``taper_stage`` when it names a stage only it
    can know (it measures the final phase from the taper's real start dose, group matching from
    the first step it saw for the plan), else the stage derived from the doses."""
    return announced if announced in _ANNOUNCED_OVER_DERIVED else derived
