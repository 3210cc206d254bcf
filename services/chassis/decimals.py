"""The one decimal format of every HTTP body the services send (issue 18, part 8).

Doses, fractions and quantities are decimals; a JSON number would lose them to binary floating
point, so they travel as strings. They used to come out as each value happened to be stored:
``"9.0000"`` (a NUMERIC column), ``"9.0"`` (arithmetic), ``"0.375"``, sometimes ``"1E+1"``. A
response field typed :data:`DecimalStr` is always the canonical plain form: no exponent, no
trailing zeros, no ``+``, no ``-0`` — ``"9"``, ``"0.375"``, ``"12.5"``; the same value is the same
string, so a client may compare them as text. Requests still accept any valid decimal (a JSON
number or string): this type is for what the services send.

Event payloads (``contracts/``) keep their own schemas; this is the HTTP API's format only.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import PlainSerializer, WithJsonSchema

#: the canonical plain form: an optional ``-`` (never on zero), an integer part without leading
#: zeros, and a fraction without trailing zeros (none at all for a whole number)
DECIMAL_PATTERN = r"^(0|-?(0\.[0-9]*[1-9]|[1-9][0-9]*(\.[0-9]*[1-9])?))$"
DECIMAL_FORMAT = "decimal"
DECIMAL_DESCRIPTION = (
    "A decimal as a canonical plain string: no exponent, no trailing zeros ('9', '0.375', '12.5')."
)
#: what every decimal field of a response body says in the OpenAPI documents (a contract test
#: holds every decimal-shaped property to it); a field's own description comes first
DECIMAL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": DECIMAL_DESCRIPTION,
    "format": DECIMAL_FORMAT,
    "pattern": DECIMAL_PATTERN,
    "examples": ["9", "0.375", "12.5"],
}


def canonical(value: Decimal) -> str:
    """``value`` in the canonical plain form (``Decimal("9.0000")`` -> ``"9"``)."""
    if not value.is_finite():  # never stored nor computed; refuse rather than send "NaN"
        raise ValueError("a decimal in a response must be finite")
    if value.is_zero():
        return "0"  # also -0 and 0E-4
    # normalize() strips trailing zeros (and may use an exponent: 1E+2); "f" writes it plain
    return format(value.normalize(), "f")


def _serialize(value: Decimal) -> str:
    return canonical(Decimal(value))


DecimalStr = Annotated[
    Decimal,
    PlainSerializer(_serialize, return_type=str, when_used="json"),
    WithJsonSchema(DECIMAL_SCHEMA, mode="serialization"),
]
"""A decimal field of a response body (see the module's docstring)."""


def is_decimal_str(metadata: list[Any]) -> bool:
    """Whether a field's annotation metadata is :data:`DecimalStr`'s (contract test helper)."""
    return any(isinstance(m, PlainSerializer) and m.func is _serialize for m in metadata)


#: keys of a free-form JSON object (a stored plan's input or summary) whose values are decimals:
#: doses, volumes, fractions, quantities, and the equivalence table (drug -> mg)
DECIMAL_KEY = re.compile(r"(^|_)(mg|ml|fraction|quantity|equivalence)(_|$)")


def canonical_json(value: Any, *, decimal: bool = False) -> Any:
    """A copy of a free-form JSON value with every decimal string under a :data:`DECIMAL_KEY`
    key in canonical form: the typed fields are :data:`DecimalStr`, and an untyped object the
    API echoes (a plan's stored input and summary) follows the same format."""
    if isinstance(value, dict):
        return {
            k: canonical_json(v, decimal=decimal or bool(DECIMAL_KEY.search(str(k))))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [canonical_json(v, decimal=decimal) for v in value]
    if decimal and isinstance(value, str):
        try:
            return canonical(Decimal(value))
        except (InvalidOperation, ValueError):
            return value  # not a decimal after all (a code): as it is
    return value
