"""Notifications: pages clinicians when monitoring escalates, and (issue 5) reminds patients."""
