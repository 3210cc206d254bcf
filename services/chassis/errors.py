"""Errors whose message is safe to show, log and put in a dead-letter header (no PHI).

Anything else is reported by its type name only: third-party messages (SQL parameters, pydantic
``input_value``) can carry patient data.
"""

from __future__ import annotations


class SafeError(Exception):
    """Base for errors whose message is written by us with opaque ids only."""


class PermanentError(SafeError):
    """Processing can never succeed (unknown patient, rule violation): dead-letter it at once."""


class NotFound(SafeError):
    pass


class Conflict(SafeError):
    """The request is valid but conflicts with the current state (HTTP 409)."""


def safe_reason(exc: BaseException) -> str:
    """A description of ``exc`` that can never leak PHI."""
    if isinstance(exc, SafeError):
        return f"{type(exc).__name__}: {exc}"[:500]
    return type(exc).__name__
