"""Scheduler: holds each patient's taper, records clinician decisions and emits DoseReduced."""
