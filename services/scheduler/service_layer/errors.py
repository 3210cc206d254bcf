"""The scheduler's refusals as the chassis' safe errors: rule violations are 422, state
conflicts 409, a missing taper or plan 404; a timer that cannot do its work is parked."""

from __future__ import annotations

from services.chassis.errors import Conflict, NotFound, PermanentError, SafeError
from services.scheduler.adapters.repository import StaleTaper as StaleTaper
from services.scheduler.domain import model


class TaperNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no taper for this patient")


class PlanNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such plan for this patient")


class TaperConflict(Conflict):
    pass


class RuleRefused(PermanentError):
    """A taper rule refused the request; ``field`` names the input (never its value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InconsistentStep(PermanentError):
    """A timer names a step that cannot be emitted (parked for an operator, never guessed at)."""


def translate(exc: model.TaperError) -> SafeError:
    """A domain refusal as the error a caller sees."""
    if isinstance(exc, model.TaperRuleViolation):
        return RuleRefused(exc.field, exc.problem)
    return TaperConflict(str(exc))
