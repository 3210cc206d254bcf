"""Group matching: tracks each patient's taper stage from DoseReduced to place peer cohorts."""
