"""Walk a paged list through its API (services/chassis/pagination.py) and say what it saw:
every page, following X-Next-Cursor, with a hook to insert rows between pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx


async def walk(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    limit: int,
    between: Callable[[], Awaitable[None]] | None = None,
    **params: Any,
) -> list[list[dict[str, Any]]]:
    """Every page of ``url``; ``between`` runs once, after the first page (rows arriving while a
    client pages)."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await client.get(url, params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body, list)
        pages.append(body)
        cursor = r.headers.get("x-next-cursor")
        if cursor is None:
            assert "link" not in r.headers
            return pages
        assert r.headers["link"].endswith('>; rel="next"') and "cursor=" in r.headers["link"]
        if len(pages) == 1 and between is not None:
            await between()
        assert len(pages) < 50, "the cursor does not advance"


def each_once(pages: list[list[dict[str, Any]]], expected: set[str], key: str = "id") -> None:
    """Every expected row exactly once over the pages (rows inserted mid-walk may appear once,
    where they sort, never twice)."""
    seen = [str(row[key]) for page in pages for row in page]
    assert len(seen) == len(set(seen)), "a row was listed twice"
    assert expected <= set(seen), f"missed {expected - set(seen)}"
