"""The symptom-instrument catalogue (CIWA-B, BWSQ, PHQ-9, GAD-7) and one scorer for all of them.

Each instrument version is a data file ``data/<name>.v<version>.json`` with ``"kind": "instrument"``
(schema below); nothing instrument-specific lives in code. A clinical team changes an instrument by
shipping a new data version. Pure: the only I/O is reading the packaged data files.

File schema: ``instrument`` (code), ``version``, ``source`` (citing the clinical reference),
``method_default``, ``orientation_gate``, ``items`` (``code``, ``min``, ``max``, ``loinc``,
``text``), ``observed_items`` (clinician-observed, all-or-none), ``total_loinc``, ``bands``
(``band``, ``min``, ``max``; empty when the instrument has no validated bands), ``unconfirmed``
(what the reference marks ⚠), and optional ``notes`` for readers and ``red_items`` (``item``,
``at_or_above``, ``source``): items whose answer is itself a red flag (clinical reference §3.4),
RED in the safety family whatever the total and read even when the rest of the report is refused.

Scoring rules (``score``):

- Orientation gate (only instruments with ``orientation_gate``, i.e. CIWA-B): ``oriented`` is
  required; ``False`` means "not scored" (possible delirium, escalate) and the answers are not
  read at all. Instruments without a gate refuse any ``oriented`` other than ``None``, so a
  caller who believes a gate applies finds out instead of having a failed gate silently dropped.
- Then, in this order: an unknown item, a missing required item, a value that is not an integer in
  the item's range (``bool`` is not an integer here), and a partial set of clinician-observed
  items are refused with ``InvalidReport``; fields name the item, messages never echo a value.
- Method: with observed items present ``clinician``; instruments that have observed items but
  were answered without them ``self-report-modified``; otherwise the instrument's
  ``method_default`` (``self-report``).
- Band: the band containing the total, or ``unbanded`` for an instrument without bands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from services.monitoring.domain.model import InvalidReport, Score
from services.monitoring.domain.reference import Band, _load

UNBANDED = "unbanded"
NOT_SCORED = "not_scored"
METHOD_CLINICIAN = "clinician"
METHOD_MODIFIED = "self-report-modified"
METHOD_NOT_SCORED = "not-scored"

_FILE_NAME = re.compile(r"^[a-z0-9_]+\.v(?P<version>[0-9]+)\.json$")
_ITEM_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_INSTRUMENT_CODE = re.compile(r"^[a-z][a-z0-9-]*$")
_LOINC = re.compile(r"^[0-9]{1,7}-[0-9]$")
_REQUIRED_KEYS = frozenset(
    {
        "kind",
        "instrument",
        "version",
        "source",
        "method_default",
        "orientation_gate",
        "items",
        "observed_items",
        "total_loinc",
        "bands",
        "unconfirmed",
    }
)
_OPTIONAL_KEYS = frozenset({"notes", "red_items"})
_RESERVED_BANDS = frozenset({UNBANDED, NOT_SCORED})


@dataclass(frozen=True)
class ItemSpec:
    code: str
    min: int
    max: int
    loinc: str | None = None
    text: str | None = None  # the reference's wording, when it gives one


@dataclass(frozen=True)
class RedItem:
    """An item whose answer at or above ``at_or_above`` is a red flag (RED, safety family)."""

    item: str
    at_or_above: int
    source: str


@dataclass(frozen=True)
class InstrumentDefinition:
    code: str
    version: str
    source: str
    items: tuple[ItemSpec, ...]
    observed_items: tuple[str, ...]  # clinician-observed; all present or all absent
    bands: tuple[Band, ...]  # empty: no validated bands, every score is "unbanded"
    orientation_gate: bool
    method_default: str = "self-report"
    unconfirmed: tuple[str, ...] = ()
    total_loinc: str | None = None
    red_items: tuple[RedItem, ...] = ()

    @property
    def item_codes(self) -> tuple[str, ...]:
        return tuple(item.code for item in self.items)

    @property
    def total_min(self) -> int:
        return sum(item.min for item in self.items)

    @property
    def total_max(self) -> int:
        return sum(item.max for item in self.items)

    def band_for(self, total: int) -> str:
        if not self.bands:
            return UNBANDED
        for band in self.bands:
            if band.low <= total <= band.high:
                return band.name
        raise ValueError(f"total {total} outside every band")


def score(
    defn: InstrumentDefinition, answers: Mapping[str, int], *, oriented: bool | None = None
) -> Score:
    """Score one complete report; see the module docstring for the rules."""
    if defn.orientation_gate:
        if oriented is None:
            raise InvalidReport("oriented", "required for this instrument")
        if not oriented:
            return Score(defn.code, defn.version, METHOD_NOT_SCORED, 0, NOT_SCORED, scored=False)
    elif oriented is not None:
        raise InvalidReport("oriented", "not used by this instrument")
    specs = {item.code: item for item in defn.items}
    for code in answers:
        if code not in specs:
            raise InvalidReport(f"answers.{code}", "unknown item")
    for item in defn.items:
        if item.code not in answers and item.code not in defn.observed_items:
            raise InvalidReport(f"answers.{item.code}", "missing item")
    for code, value in answers.items():
        spec = specs[code]
        if type(value) is not int or not spec.min <= value <= spec.max:
            raise InvalidReport(f"answers.{code}", f"must be {spec.min}..{spec.max}")
    present = [code for code in defn.observed_items if code in answers]
    if present and len(present) != len(defn.observed_items):
        raise InvalidReport("answers", "clinician-observed items must be all present or all absent")
    if present:
        method = METHOD_CLINICIAN
    elif defn.observed_items:
        method = METHOD_MODIFIED
    else:
        method = defn.method_default
    total = sum(answers.values())
    return Score(defn.code, defn.version, method, total, defn.band_for(total))


def definition(code: str, version: str) -> InstrumentDefinition:
    found = _catalogue().get((code, version))
    if found is None:
        raise InvalidReport("instrument_version", "unknown instrument or version")
    return found


def catalogue() -> dict[tuple[str, str], InstrumentDefinition]:
    """Every packaged instrument version, keyed by (code, version); a fresh dict per call."""
    return dict(_catalogue())


@cache
def _catalogue() -> Mapping[tuple[str, str], InstrumentDefinition]:
    found: dict[tuple[str, str], InstrumentDefinition] = {}
    data_dir = resources.files(__package__).joinpath("data")
    for entry in sorted(data_dir.iterdir(), key=lambda e: e.name):
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        raw = _load(entry.name)
        if raw.get("kind") != "instrument":
            continue
        defn = parse_definition(raw, file_version=match["version"])
        key = (defn.code, defn.version)
        if key in found:
            raise ValueError(f"{entry.name}: duplicate instrument {key}")
        found[key] = defn
    return MappingProxyType(found)


def parse_definition(
    raw: Mapping[str, Any], *, file_version: str | None = None
) -> InstrumentDefinition:
    """Build and check one definition from its data file; a bad file raises ``ValueError``."""
    keys = set(raw)
    if missing := _REQUIRED_KEYS - keys:
        raise ValueError(f"instrument data lacks {sorted(missing)}")
    if extra := keys - _REQUIRED_KEYS - _OPTIONAL_KEYS:
        raise ValueError(f"instrument data has unknown keys {sorted(extra)}")
    code, version = raw["instrument"], raw["version"]
    if not isinstance(code, str) or not _INSTRUMENT_CODE.match(code):
        raise ValueError("instrument code must be lower-case letters, digits and hyphens")
    if not isinstance(version, str) or not version.isdigit():
        raise ValueError(f"{code}: version must be a string of digits")
    if file_version is not None and version != file_version:
        raise ValueError(f"{code}: version {version} differs from the file name's {file_version}")
    source = raw["source"]
    if not isinstance(source, str) or "clinical-reference.md §" not in source:
        raise ValueError(f"{code}: source must cite shared/domain/clinical-reference.md §...")
    for key in ("items", "observed_items", "bands", "unconfirmed"):
        if not isinstance(raw[key], list):
            raise ValueError(f"{code}: {key} must be a list")
    items = tuple(_item(code, spec) for spec in raw["items"])
    codes = [item.code for item in items]
    if not items or len(set(codes)) != len(codes):
        raise ValueError(f"{code}: items must be non-empty and unique")
    observed = tuple(raw["observed_items"])
    if len(set(observed)) != len(observed) or not set(observed) <= set(codes):
        raise ValueError(f"{code}: observed_items must be unique items of the instrument")
    gate, method = raw["orientation_gate"], raw["method_default"]
    if not isinstance(gate, bool) or not isinstance(method, str) or not method:
        raise ValueError(f"{code}: orientation_gate must be a bool, method_default a string")
    unconfirmed = tuple(raw["unconfirmed"])
    if not all(isinstance(note, str) and note for note in unconfirmed):
        raise ValueError(f"{code}: unconfirmed must list non-empty strings")
    defn = InstrumentDefinition(
        code=code,
        version=version,
        source=source,
        items=items,
        observed_items=observed,
        bands=tuple(_band(code, band) for band in raw["bands"]),
        orientation_gate=gate,
        method_default=method,
        unconfirmed=unconfirmed,
        total_loinc=_loinc(code, raw["total_loinc"]),
        red_items=_red_items(code, items, raw.get("red_items", [])),
    )
    _check_bands(defn)
    return defn


def _item(instrument: str, raw: Mapping[str, Any]) -> ItemSpec:
    code, low, high, text = raw["code"], raw["min"], raw["max"], raw.get("text")
    if not isinstance(code, str) or not _ITEM_CODE.match(code):
        raise ValueError(f"{instrument}: item codes must be snake_case")
    if type(low) is not int or type(high) is not int or not 0 <= low < high:
        raise ValueError(f"{instrument}.{code}: min and max must be integers, 0 <= min < max")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{instrument}.{code}: text must be a string or null")
    return ItemSpec(code, low, high, _loinc(f"{instrument}.{code}", raw["loinc"]), text)


def _red_items(instrument: str, items: tuple[ItemSpec, ...], raw: object) -> tuple[RedItem, ...]:
    """Each must name an item of the instrument, once, with a level the item can reach above its
    minimum (a level at the minimum would make every report RED), and cite §3.4."""
    if not isinstance(raw, list):
        raise ValueError(f"{instrument}: red_items must be a list")
    specs = {item.code: item for item in items}
    found: list[RedItem] = []
    for entry in raw:
        item, at, source = entry.get("item"), entry.get("at_or_above"), entry.get("source")
        spec = specs.get(item) if isinstance(item, str) else None
        if spec is None or any(r.item == item for r in found):
            raise ValueError(f"{instrument}: red_items must name items of the instrument, once")
        if type(at) is not int or not spec.min < at <= spec.max:
            raise ValueError(f"{instrument}.{item}: at_or_above must be in min+1..max")
        if not isinstance(source, str) or "clinical-reference.md §" not in source:
            raise ValueError(f"{instrument}.{item}: source must cite clinical-reference.md §...")
        found.append(RedItem(spec.code, at, source))
    return tuple(found)


def _band(instrument: str, raw: Mapping[str, Any]) -> Band:
    name, low, high = raw["band"], raw["min"], raw["max"]
    if not isinstance(name, str) or not _ITEM_CODE.match(name):
        raise ValueError(f"{instrument}: band names must be snake_case")
    if type(low) is not int or type(high) is not int:
        raise ValueError(f"{instrument}.{name}: band min and max must be integers")
    return Band(name, low, high)


def _loinc(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _LOINC.match(value):
        raise ValueError(f"{where}: loinc must be a LOINC code like 44260-8, or null")
    return value


def _check_bands(defn: InstrumentDefinition) -> None:
    """Bands, when given, must tile the possible totals exactly, in order, with no gap."""
    if not defn.bands:
        return
    names = [band.name for band in defn.bands]
    if len(set(names)) != len(names) or _RESERVED_BANDS & set(names):
        raise ValueError(f"{defn.code}: band names must be unique and not reserved")
    expected_low = defn.total_min
    for band in defn.bands:
        if band.low != expected_low or band.high < band.low:
            raise ValueError(f"{defn.code}: bands must cover the totals in order without gaps")
        expected_low = band.high + 1
    if expected_low != defn.total_max + 1:
        raise ValueError(f"{defn.code}: bands must end at the maximum total {defn.total_max}")
