"""Free text a client may send (a clinician's note, a search filter): the checks every such field
needs, whatever the database.

PostgreSQL cannot store U+0000 in ``text``/``varchar`` (asyncpg raises
``CharacterNotInRepertoireError``), SQLite can: without this check the same request was a 500 on
one and accepted on the other. Refused as a 422 naming the field, never echoing the value.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

NUL_REFUSED = "must not contain the NUL character (U+0000)"


def refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_REFUSED)
    return value


# Use for every client-supplied string that is not already held to a pattern that excludes NUL.
FreeText = Annotated[str, AfterValidator(refuse_nul)]
