"""The HTTP API's versions: each service's OpenAPI ``info.version`` and the merged document's.

Semantic versioning, held by ``python -m deploy.openapi --check`` (a test) against the committed
documents in ``contracts/openapi/``: a breaking change (oasdiff's rules: a removed operation or
field, a narrowed type, a new required input, a changed status code ...) is refused unless the
major version here is raised AND each break is recorded in ``contracts/openapi/breaking.json``;
the merged document's major is raised with any service's. An additive change needs no bump, only
a refreshed snapshot (``make openapi``), as for the events (contracts/snapshot.py).
"""

from __future__ import annotations

API_VERSIONS: dict[str, str] = {
    "scheduler": "1.1.0",
    "monitoring": "1.1.0",
    "notifications": "1.1.0",
    "group_matching": "1.1.0",
}
#: the gateway's merged document (/api/openapi.json), what a frontend's generated client follows
MERGED_API_VERSION = "1.1.0"


def api_version(service: str) -> str:
    """``service``'s API version; a service not listed here has none yet (0.1.0)."""
    return API_VERSIONS.get(service, "0.1.0")
