"""What the population asked for and what it must cause: one entry per request the gateway
accepted, plus the poison the harness injected. The checker compares this with what the system
did; nothing here talks to the system.

Synthetic PHI: every free-text value the population sends carries :data:`PHI_MARKER`, so a scan of
logs and spans finds a leak by that one string (no real patient data exists in a run)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

PHI_MARKER = "SYNTHPHI"  # in every free text a run sends: found in a log or span = a leak

RequestKind = Literal[
    "enrol",  # taper started by a clinician
    "plan_approved",
    "dose_reduction",  # a manual step: exactly one DoseReduced
    "report",  # a symptom report (new)
    "report_replay",  # the same Idempotency-Key again: nothing new may happen
    "acknowledge",
    "resolve",
    "peer_support",
    "preferences",
]


def synthetic_phi(label: str, rng_hex: str) -> str:
    """A made-up free text that a PHI scan recognises (never real data)."""
    return f"{PHI_MARKER}-{label}-{rng_hex}"


@dataclass(frozen=True)
class Accepted:
    """A request the gateway answered with 2xx."""

    kind: RequestKind
    patient_id: str
    at: float  # wall-clock seconds since the run started
    status: int
    severity: str | None = None  # reports: RED / AMBER / None
    idempotency_key: str | None = None
    ref: str | None = None  # report id, plan id, escalation id ...


@dataclass(frozen=True)
class Poison:
    """A message no consumer can read, put on a consumed topic: it must end on that topic's
    dead-letter topic exactly once, with a reason."""

    topic: str
    key: str  # unique per poison message, so the DLQ record is attributable


@dataclass
class Ledger:
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    accepted: list[Accepted] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # "<kind> <status>" -> count
    # "<kind> <status>" -> the first answer's detail (our synthetic requests: no real PHI)
    refusal_examples: dict[str, str] = field(default_factory=dict)

    def accept(self, entry: Accepted) -> None:
        self.accepted.append(entry)

    def refuse(self, kind: str, status: int, detail: str = "") -> None:
        label = f"{kind} {status}"
        self.refused[label] = self.refused.get(label, 0) + 1
        self.refusal_examples.setdefault(label, detail[:300])

    def of_kind(self, *kinds: RequestKind) -> Iterator[Accepted]:
        return (a for a in self.accepted if a.kind in kinds)

    def patients(self) -> set[str]:
        return {a.patient_id for a in self.accepted}

    def red_patients(self) -> set[str]:
        return {a.patient_id for a in self.of_kind("report") if a.severity == "RED"}

    def new_reports_by_patient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.of_kind("report"):
            counts[a.patient_id] = counts.get(a.patient_id, 0) + 1
        return counts

    def save(self, path: Path) -> None:
        data = {
            "run_id": self.run_id,
            "accepted": [asdict(a) for a in self.accepted],
            "poison": [asdict(p) for p in self.poison],
            "refused": self.refused,
        }
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> Ledger:
        data = json.loads(path.read_text())
        return cls(
            run_id=data["run_id"],
            accepted=[Accepted(**a) for a in data["accepted"]],
            poison=[Poison(**p) for p in data["poison"]],
            refused=data["refused"],
        )
