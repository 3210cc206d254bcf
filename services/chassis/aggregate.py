"""Aggregates record the events their changes cause; the unit of work publishes them on commit.

This is cosmicpython's ``collect_new_events`` fed into the outbox: a use case changes an aggregate
(``plan.approve(...)``), the aggregate appends the event it implies to ``events``, and the
repository that loaded or added the aggregate hands it to the unit of work (``uow.track``). On
``commit`` the unit of work writes every tracked aggregate's new events to the outbox in the same
transaction as the state, so a use case never builds an event by hand and cannot forget one.
"""

from __future__ import annotations

from typing import Protocol

from contracts import Event


class Aggregate:
    """Base for domain aggregates: a list of events recorded by state changes, not yet published."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)

    def pull_events(self) -> list[Event]:
        """The recorded events, oldest first; the aggregate forgets them (published once)."""
        events, self.events = self.events, []
        return events


class RecordsEvents(Protocol):
    """What the unit of work needs from a tracked object (dataclass aggregates satisfy it too)."""

    def pull_events(self) -> list[Event]: ...
