"""Taking in a submitted report: its safety part first, then its instrument. Pure: no I/O.

A patient in danger who mistypes one answer must still reach a clinician, so a report is not
accepted or refused whole. It is split in two:

* the **safety part** — red flags, the orientation answer, the instrument's red items (PHQ-9
  item 9, BWSQ hallucinations: ``red_items`` in the instrument data) and the pulse. Each piece is
  checked on its own; a valid piece is kept (and escalated by the rules) whatever is wrong with
  the rest, an invalid piece is refused on its own.
* the **scored instrument** — scored only when every answer is valid and every required item is
  there (and, for a gated instrument, the patient is oriented). Otherwise it is not scored at all:
  a partial total would be a guess.

Every refused piece is listed (instrument, item, reason; never the value). ``oriented=False`` is
a failed orientation gate for any instrument: the report escalates (RED) rather than dropping
the answer because the instrument has no gate; a gated instrument is then not scored and its
answers are not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.monitoring.domain import instruments, vitals
from services.monitoring.domain.instruments import InstrumentDefinition
from services.monitoring.domain.model import InvalidReport, Score

_ECHOABLE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # an item code's shape: safe to name back


@dataclass(frozen=True)
class Refusal:
    instrument: str | None  # None: red_flags and pulse_bpm belong to no instrument
    item: str
    reason: str


@dataclass(frozen=True)
class Intake:
    instrument: str
    score: Score | None  # None: the instrument was refused (not scored, never guessed)
    answers: Mapping[str, int]  # the valid answers only
    red_flags: tuple[str, ...]  # the known red-flag codes reported
    oriented: bool | None
    pulse_bpm: int | None
    refused: tuple[Refusal, ...]


def take(
    defn: InstrumentDefinition,
    *,
    answers: Mapping[str, object],
    red_flags: Sequence[object],
    oriented: object,
    pulse_bpm: object,
    known_red_flags: frozenset[str],
) -> Intake:
    """Split and check one report; see the module docstring."""
    refused: list[Refusal] = []
    flags: list[str] = []
    for flag in red_flags:
        if isinstance(flag, str) and flag in known_red_flags:
            flags.append(flag)
        else:
            refused.append(Refusal(None, "red_flags", "unknown red flag code"))
    pulse: int | None = None
    if pulse_bpm is not None:
        try:
            pulse = vitals.pulse_bpm().check(pulse_bpm)
        except InvalidReport as exc:
            refused.append(Refusal(None, exc.field, exc.problem))
    gate: bool | None = None
    if isinstance(oriented, bool):
        gate = oriented
    elif oriented is not None:
        refused.append(Refusal(defn.code, "oriented", "must be true, false or null"))
    if gate is True and not defn.orientation_gate:
        # Said so, so that a caller who believes a gate applies finds out; nothing else changes.
        refused.append(Refusal(defn.code, "oriented", "not used by this instrument"))
    valid: dict[str, int] = {}
    answer_refusals: list[Refusal] = []
    if not (defn.orientation_gate and gate is False):
        # A failed gate skips this: not scored, escalated, the answers not read nor refused.
        valid, answer_refusals = _answers(defn, answers)
    refused += answer_refusals
    score = _score(defn, valid, gate, bool(answer_refusals), refused)
    return Intake(defn.code, score, valid, tuple(dict.fromkeys(flags)), gate, pulse, tuple(refused))


def _answers(
    defn: InstrumentDefinition, answers: Mapping[str, object]
) -> tuple[dict[str, int], list[Refusal]]:
    specs = {item.code: item for item in defn.items}
    valid: dict[str, int] = {}
    refused: list[Refusal] = []
    for code, value in answers.items():
        spec = specs.get(code)
        if spec is None:
            item = f"answers.{code}" if _ECHOABLE.match(code) else "answers"
            refused.append(Refusal(defn.code, item, "unknown item"))
        elif type(value) is not int or not spec.min <= value <= spec.max:
            refused.append(Refusal(defn.code, code, f"must be an integer {spec.min}..{spec.max}"))
        else:
            valid[code] = value
    for spec in defn.items:
        if spec.code not in answers and spec.code not in defn.observed_items:
            refused.append(Refusal(defn.code, spec.code, "missing item"))
    present = [code for code in defn.observed_items if code in answers]
    if present and len(present) != len(defn.observed_items):
        reason = "clinician-observed items must be all present or all absent"
        refused.append(Refusal(defn.code, "answers", reason))
    return valid, refused


def _score(
    defn: InstrumentDefinition,
    valid: dict[str, int],
    oriented: bool | None,
    answers_refused: bool,
    refused: list[Refusal],
) -> Score | None:
    if defn.orientation_gate:
        if oriented is None:
            refused.append(Refusal(defn.code, "oriented", "required for this instrument"))
            return None
        if not oriented:  # not scored and escalated; the answers are not read
            return instruments.score(defn, {}, oriented=False)
    if answers_refused:
        return None
    return instruments.score(defn, valid, oriented=oriented if defn.orientation_gate else None)
