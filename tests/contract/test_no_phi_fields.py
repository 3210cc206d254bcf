"""No event carries PHI: no property, at any depth, is named like a personal detail or free text.

Events identify people by opaque UUIDs and explain themselves with codes (``contracts.envelope``).
A property named like ``patient_name``, ``email``, ``date_of_birth`` or ``clinician_note`` is a
design error even when it is "only for display": events are retained, replayed and dead-lettered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import ALL_TOPICS, Topic
from contracts.compat import schema_for

# A word of a property name that starts with one of these suggests PHI or free text...
PHI_PREFIXES = (
    "name",
    "email",
    "mail",
    "phone",
    "address",
    "dob",
    "birth",
    "note",
    "comment",
    "text",
    "message",
    "freetext",
    "street",
    "postcode",
    "zip",
    "ssn",
)
# ...and so does one that ends with one of these (surname, username, telephone, e_mail).
PHI_SUFFIXES = ("name", "phone", "mail", "address")
# Property name -> why it is harmless; keep this empty unless a reviewer agrees.
ALLOWED: dict[str, str] = {}


def words(name: str) -> list[str]:
    """``dateOfBirth`` -> date, of, birth; ``free_text`` -> free, text."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[^a-zA-Z]+", spaced.lower()) if w]


def suggests_phi(name: str) -> bool:
    if name in ALLOWED:
        return False
    tokens = words(name)
    joined = "".join(tokens)
    return (
        any(t.startswith(PHI_PREFIXES) or t.endswith(PHI_SUFFIXES) for t in tokens)
        or "freetext" in joined
        or "dateofbirth" in joined
    )


def properties(schema: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """(location, name) of every property anywhere: top level, ``$defs``, items, inline objects."""
    if isinstance(schema, dict):
        for name in schema.get("properties", {}):
            yield f"{where}/properties/{name}", name
        for key, value in schema.items():
            yield from properties(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from properties(value, f"{where}/{i}")


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=[t.name for t in ALL_TOPICS])
def test_no_event_property_suggests_phi(topic: Topic) -> None:
    suspicious = [where for where, name in properties(schema_for(topic)) if suggests_phi(name)]
    assert suspicious == [], f"{topic.name} has PHI-like properties: {suspicious}"


@pytest.mark.parametrize(
    "name",
    [
        "name",
        "patient_name",
        "firstName",
        "surname",
        "username",
        "email",
        "contact_email",
        "e_mail",
        "phone_number",
        "telephone",
        "home_address",
        "ip_address",
        "dob",
        "date_of_birth",
        "dateOfBirth",
        "birthdate",
        "clinician_note",
        "notes",
        "comment",
        "text",
        "free_text",
        "freeText",
        "message",
        "zip_code",
    ],
)
def test_detector_flags_phi_like_name(name: str) -> None:
    assert suggests_phi(name)


@pytest.mark.parametrize(
    "name",
    [
        "patient_id",
        "event_type",
        "occurred_at",
        "context_id",
        "instrument",
        "band",
        "drug",
        "code",
        "severity",
        "red_flags",
        "reasons",
        "taper_stage",
        "step_number",
        "half_life_class",
    ],
)
def test_detector_passes_opaque_name(name: str) -> None:
    assert not suggests_phi(name)


class _Detail(BaseModel):
    code: str
    clinician_note: str | None = None


class _Leaky(BaseModel):
    patient_id: str
    details: tuple[_Detail, ...] = ()
    extra: dict[str, _Detail] = {}


def test_walk_finds_phi_inside_nested_models() -> None:
    schema = _Leaky.model_json_schema(mode="serialization")
    found = [where for where, name in properties(schema) if suggests_phi(name)]
    assert found == ["#/$defs/_Detail/properties/clinician_note"]
