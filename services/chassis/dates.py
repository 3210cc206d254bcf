"""Plausible dates for request bodies and queries: a bounded window instead of year 1..9999.

A date far in the future (9999-12-20) passed validation and made date arithmetic overflow into a
500 (issue 13 item 11). Every date or datetime a request carries uses these types, so such input
is a 422 naming the field. The window is not clinical: it only keeps arithmetic (a taper of many
years, a rotation of many shifts) far from the ``date`` type's limits.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

EARLIEST = date(1900, 1, 1)
LATEST = date(2100, 12, 31)

PlausibleDate = Annotated[date, Field(ge=EARLIEST, le=LATEST)]
PlausibleAwareDatetime = Annotated[
    AwareDatetime,
    Field(
        ge=datetime(EARLIEST.year, 1, 1, tzinfo=UTC),
        le=datetime(LATEST.year, 12, 31, 23, 59, 59, tzinfo=UTC),
    ),
]
