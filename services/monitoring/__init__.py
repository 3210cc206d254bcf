"""Monitoring: scores symptom reports and raises ThresholdExceeded when a clinician must look."""
