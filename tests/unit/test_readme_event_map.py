"""The README's service table (who produces and who consumes each event) is the first map a
newcomer reads: it must say what ``contracts/topics.py`` says (which the subscriptions must match,
test_architecture.py), so a new event or consumer cannot leave it stale."""

from __future__ import annotations

import re
from pathlib import Path

from contracts import ALL_TOPICS, topics_consumed_by, topics_produced_by

README = Path(__file__).resolve().parents[2] / "README.md"
EVENT_TYPES = {t.event.EVENT_TYPE for t in ALL_TOPICS}
SERVICES = ("scheduler", "monitoring", "notifications", "group_matching")


def _table() -> dict[str, tuple[set[str], set[str]]]:
    """service -> (events it produces, events it consumes), as the README's table names them
    (backticked words that are not event types, like `taper_stage`, are notes)."""
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].strip("`") in SERVICES:
            produces, consumes = (set(re.findall(r"`(\w+)`", c)) & EVENT_TYPES for c in cells[2:])
            rows[cells[0].strip("`")] = (produces, consumes)
    return rows


def test_the_readme_table_names_every_producer_and_consumer_as_topics_py_does() -> None:
    table = _table()
    assert sorted(table) == sorted(SERVICES)
    for service, (produces, consumes) in table.items():
        assert produces == {t.event.EVENT_TYPE for t in topics_produced_by(service)}, service
        assert consumes == {t.event.EVENT_TYPE for t in topics_consumed_by(service)}, service
