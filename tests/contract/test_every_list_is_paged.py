"""Every list the four services serve is paged the one chassis way (issue 18, part 2).

A GET whose 200 body is a JSON array must take ``limit`` and ``cursor`` and document the
``X-Next-Cursor`` header: otherwise a frontend either gets an unbounded body or a silently cut
one. The check reads the documents ``deploy.openapi`` builds (what the services serve), so a list
added later (plans, check-ins, ...) is held to it too.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from deploy.openapi import service_documents
from services.chassis.pagination import NEXT_CURSOR_HEADER, PageQuery, link_next, paginated

HOW = (
    "page it with services/chassis/pagination.py: take `page: PageQuery`, document the 200 with "
    "`responses=paginated(list[YourOut])`, build the query newest first and call "
    "`fetch_page(session, query, (table.c.<time>, table.c.id), page)`, then "
    "`link_next(request, response, next_cursor)` (see listPatientMessages in "
    "services/notifications/entrypoints/preferences_api.py)"
)


def _is_array(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" or any(
        s.get("type") == "array" for s in schema.get("anyOf", [])
    )


def unpaged(document: dict[str, Any]) -> list[str]:
    """``GET <path>: missing …`` for every list operation not paged the chassis way."""
    problems = []
    for path, operations in document.get("paths", {}).items():
        get = operations.get("get")
        if get is None:
            continue
        ok = get.get("responses", {}).get("200", {})
        schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
        if not _is_array(schema):
            continue
        query = {p["name"] for p in get.get("parameters", []) if p.get("in") == "query"}
        missing = sorted({"limit", "cursor"} - query)
        if NEXT_CURSOR_HEADER not in ok.get("headers", {}):
            missing.append(f"the {NEXT_CURSOR_HEADER} response header")
        if missing:
            problems.append(f"GET {path} ({get.get('operationId')}): missing {', '.join(missing)}")
    return problems


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return service_documents()


def test_every_list_is_paged(documents: dict[str, dict[str, Any]]) -> None:
    problems = [f"{name}: {p}" for name, doc in documents.items() for p in unpaged(doc)]
    assert problems == [], "\n".join([*problems, f"To fix: {HOW}."])


def test_there_are_lists_to_check(documents: dict[str, dict[str, Any]]) -> None:
    # Guards the check itself: if the array detection broke, every document would pass empty.
    lists = [
        path
        for doc in documents.values()
        for path, ops in doc["paths"].items()
        if _is_array(
            ops.get("get", {})
            .get("responses", {})
            .get("200", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema", {})
        )
    ]
    assert len(lists) >= 16  # the 16 lists of 2026-12; more are welcome


def test_an_unpaged_list_is_named() -> None:
    app = FastAPI()

    @app.get("/paged", responses=paginated(list[int]), response_model=list[int])
    async def paged(page: PageQuery, request: Request, response: Response) -> list[int]:
        link_next(request, response, None)
        return []

    @app.get("/unpaged", response_model=list[int])
    async def bare() -> list[int]:
        return []

    @app.get("/one", response_model=int)
    async def one() -> int:
        return 1

    assert unpaged(app.openapi()) == [
        "GET /unpaged (bare_unpaged_get): missing cursor, limit, the X-Next-Cursor response header"
    ]
