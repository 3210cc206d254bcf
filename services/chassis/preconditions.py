"""``ETag`` / ``If-Match`` on resources two people edit (RFC 9110 §8.8.3, §13.1.1).

Two administrators open the same escalation policy, both change it, both save: without a
precondition the second save silently drops the first one's change. Each such resource has a
version; its ``ETag`` is that version as a strong entity tag (``"7"``), sent by its GET and by
every successful write. A write carrying ``If-Match`` goes through only while the resource is
still at one of the versions it lists (``*``: any, as long as it exists); otherwise 412 naming
``If-Match``, with the current ``ETag``, and nothing changes. No ``If-Match``: the write goes
through as before (a client opts in).

The version is checked inside the write's transaction, against the row the write is about to
change (locked on PostgreSQL, or guarded by the write's own version check), so two stale
writers cannot both pass.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, HTTPException, status

IF_MATCH = "If-Match"

IF_MATCH_DESCRIPTION = (
    "Write only if the resource is still at this ETag (from its GET or the last write); a "
    "stale one is refused with 412 and changes nothing. '*': any version, if it exists. "
    "Absent: no check."
)

IfMatch = Annotated[
    str | None,
    Header(
        alias=IF_MATCH,
        description=IF_MATCH_DESCRIPTION,
        max_length=1000,
        examples=['"3"'],
    ),
]

# OpenAPI: the ETag a GET or a successful write answers with, and the 412 of a stale If-Match.
ETAG_HEADER: dict[str, Any] = {
    "ETag": {
        "description": "The resource's version as a strong entity tag: send it back in If-Match.",
        "schema": {"type": "string", "examples": ['"3"']},
    }
}
PRECONDITION_FAILED: dict[str, Any] = {
    "description": "If-Match names an older version: the resource changed since it was read "
    "(its current ETag is in the header). Read it again and reapply the change.",
    "headers": ETAG_HEADER,
}


def etag(version: int) -> str:
    """The strong entity tag of a resource at ``version``."""
    return f'"{version}"'


def with_etag(
    responses: dict[int | str, dict[str, Any]] | None = None, *, code: int = 200
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of an operation answering ``code`` with an ETag (and 412 if it writes)."""
    merged: dict[int | str, dict[str, Any]] = dict(responses or {})
    merged[code] = {**merged.get(code, {}), "headers": ETAG_HEADER}
    return merged


def conditional(
    responses: dict[int | str, dict[str, Any]] | None = None, *, code: int = 200
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a write honouring If-Match: the ETag on ``code``, and the 412."""
    from services.chassis.http import ErrorBody  # the shared error schema (http imports us not)

    merged = with_etag(responses, code=code)
    merged[412] = {"model": ErrorBody, **PRECONDITION_FAILED}
    return merged


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def check_if_match(if_match: str | None, current: str | None) -> None:
    """Refuse (412 naming If-Match) a write whose ``If-Match`` does not name ``current`` (the
    resource's ETag; None: it does not exist). Weak tags never match (strong comparison)."""
    if if_match is None:
        return
    tags = _tags(if_match)
    if current is not None and ("*" in tags or current in tags):
        return
    headers = {"ETag": current} if current is not None else None
    raise HTTPException(
        status.HTTP_412_PRECONDITION_FAILED,
        detail=f"{IF_MATCH} does not match: the resource changed since it was read"
        if current is not None
        else f"{IF_MATCH} given for a resource that does not exist",
        headers=headers,
    )
