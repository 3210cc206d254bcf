"""What monitoring's events do to a taper: a threshold holds it, a resolved episode may lift it."""

from __future__ import annotations

from contracts import EscalationResolved, Severity, ThresholdExceeded
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.repository import TaperRepository
from services.scheduler.service_layer.taper_commands import ClinicianAction, resume_taper

RED_HOLD_REASON = "red_threshold_exceeded"
AMBER_HOLD_REASON = "amber_threshold_exceeded"
MONITORING_HOLDS = {Severity.RED: RED_HOLD_REASON, Severity.AMBER: AMBER_HOLD_REASON}


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """RED holds the patient's taper at once; so does AMBER, before the next step (clinical
    reference §3.5: "holds the next DoseReduced until a clinician acts"). The clinician acts by
    resuming, or by resolving the episode with ``resume_taper`` (``on_escalation_resolved``).

    The hold is announced as ``TaperHeld`` caused by the threshold event (same correlation). A
    taper already held keeps its first reason.
    """
    tapers = TaperRepository.of(uow)
    taper = await tapers.get(event.patient_id)
    if taper is None:
        return  # monitored but not (yet) tapering with us
    if taper.hold(MONITORING_HOLDS[event.severity], at=uow.clock.now(), cause=event):
        await tapers.save(taper)


async def on_escalation_resolved(event: EscalationResolved, uow: UnitOfWork) -> None:
    """A clinician resolved monitoring's episode with ``resume_taper``: lift the hold monitoring
    put on the taper, recorded as that clinician's resume decision. A hold with any other reason
    (a clinician's, the patient's, a return to the prior dose) waits for a direct resume."""
    if event.resolution != "resume_taper":
        return
    taper = await TaperRepository.of(uow).get(event.patient_id)
    if taper is None or taper.held_reason not in MONITORING_HOLDS.values():
        return
    await resume_taper(
        ClinicianAction(event.patient_id, event.resolved_by, "escalation_resolved"), uow
    )
