"""Reference data over HTTP: the codes a client must send (drugs, products, questionnaire items,
red flags, languages), each served by the service whose domain owns them.

The body is built from the domain data on every request (no copy in the endpoint, so a code
added to the domain is served without touching it) and answered with a strong ``ETag`` (a hash
of the body) and ``Cache-Control``: the data change only with a deploy, so a client revalidates
at most every ``MAX_AGE_S`` and gets ``304 Not Modified`` while nothing changed.

Any authenticated principal may read them (a login is still required: they describe the
service, not a patient). They are not audited: the audit log records who touched which
patient's data, and these hold none.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

#: how long a client may reuse reference data without asking again (then it revalidates)
MAX_AGE_S = 300
CACHE_CONTROL = f"public, max-age={MAX_AGE_S}"

#: the 200 and 304 of a reference-data operation, for ``responses=`` (merged with its model)
CACHED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": f"The current data. Cacheable for {MAX_AGE_S} s; revalidate with "
        "If-None-Match.",
        "headers": {
            "ETag": {
                "description": "A strong validator of this body; send it as If-None-Match.",
                "schema": {"type": "string"},
            },
            "Cache-Control": {
                "description": f"{CACHE_CONTROL}: the data change only with a deploy.",
                "schema": {"type": "string"},
            },
        },
    },
    304: {"description": "Not modified: the If-None-Match ETag is still current (no body)."},
}


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: ``*`` or any listed tag, compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def cached_reference(request: Request, body: BaseModel) -> Response:
    """``body`` as JSON with its ETag, or a bodiless 304 when the client already holds it."""
    content = body.model_dump_json().encode()
    etag = etag_of(content)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/json", headers=headers)
