"""Errors whose message is safe to show, log and put in a dead-letter header (no PHI).

Anything else is reported by its type name only: third-party messages (SQL parameters, pydantic
``input_value``) can carry patient data.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any


class SafeError(Exception):
    """Base for errors whose message is written by us with opaque ids only."""


class PermanentError(SafeError):
    """Processing can never succeed (unknown patient, rule violation): dead-letter it at once."""


class NotFound(SafeError):
    pass


class Conflict(SafeError):
    """The request is valid but conflicts with the current state (HTTP 409)."""


class FieldRefusal(SafeError):
    """A request the domain refuses, naming what it refuses: the chassis answers 422 with the
    documented body (``http.py``), the shape of a body's own field errors.

    The services' domain errors (``RuleRefused``, ``PlanningError``, ``InvalidReport`` ...) carry
    a field and a problem; their entrypoint maps them here (the domain layers may not import the
    chassis), choosing where the field sits (``body``, ``plan``, ``query``, ``header``) and the
    error's ``type``. The message is ours, never the input (it may be PHI).
    """

    def __init__(self, loc: Sequence[str | int], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.problems: list[tuple[list[str | int], str, str]] = [(list(loc), msg, kind)]

    @classmethod
    def naming(
        cls,
        field: str,
        msg: str,
        kind: str,
        *,
        where: str = "body",
        known: Container[str] | None = None,
    ) -> FieldRefusal:
        """``loc`` is ``[where, field]``; ``[where]`` alone when the field is not ``known`` (it
        is no field the client sent, e.g. a stored plan's)."""
        return cls([where, field] if known is None or field in known else [where], msg, kind)

    @classmethod
    def of_all(cls, problems: Iterable[tuple[Sequence[str | int], str, str]]) -> FieldRefusal:
        """Several fields refused at once (``loc``, ``msg``, ``type`` each)."""
        found = [(list(loc), msg, kind) for loc, msg, kind in problems]
        refusal = cls([], "; ".join(msg for _, msg, _ in found), "")
        refusal.problems = found
        return refusal

    def detail(self) -> list[dict[str, Any]]:
        """The 422 body's ``detail``: ``ErrorBody``'s list of ``FieldError`` (http.py)."""
        return [{"loc": loc, "msg": msg, "type": kind} for loc, msg, kind in self.problems]


def safe_reason(exc: BaseException) -> str:
    """A description of ``exc`` that can never leak PHI."""
    if isinstance(exc, SafeError):
        return f"{type(exc).__name__}: {exc}"[:500]
    return type(exc).__name__
