"""What a page is and what goes on the wire. Pure: no I/O.

The webhook body follows the PagerDuty Events API v2 shape so that real paging providers (or a
bridge to them) accept it; ``dedup_key`` is the provider-side idempotency key: a page sent twice
after a crash is one incident, never two.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

SEVERITY_TO_PD = {"RED": "critical", "AMBER": "warning"}


@dataclass(frozen=True)
class Page:
    page_id: uuid.UUID
    episode_id: uuid.UUID
    level: int
    patient_id: uuid.UUID
    severity: str
    reason_codes: tuple[str, ...]

    @property
    def dedup_key(self) -> str:
        """One page per episode and level, whatever happens (resends collapse at the provider)."""
        return f"taper-episode-{self.episode_id}-level-{self.level}"


def dedup_key_for(episode_id: uuid.UUID, level: int) -> str:
    return f"taper-episode-{episode_id}-level-{level}"


def pagerduty_event(page: Page, routing_key: str) -> dict[str, Any]:
    """The Events v2 ``trigger`` body. Opaque ids and reason codes only: no PHI leaves here."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": page.dedup_key,
        "payload": {
            "summary": f"{page.severity} withdrawal escalation (level {page.level})",
            "severity": SEVERITY_TO_PD.get(page.severity, "error"),
            "source": "taper-monitoring",
            "component": "withdrawal-monitoring",
            "custom_details": {
                "patient_id": str(page.patient_id),
                "episode_id": str(page.episode_id),
                "level": page.level,
                "reasons": list(page.reason_codes),
            },
        },
    }
