"""Keyset pagination (services/chassis/pagination.py): every row once, in order, while rows are
inserted between pages; a forged cursor is the client's 422, never a 500."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine

from services.chassis.pagination import (
    MAX_LIMIT,
    BadCursor,
    PageParams,
    PageQuery,
    decode_cursor,
    encode_cursor,
    fetch_page,
    link_next,
)

metadata = sa.MetaData()
rows = sa.Table(
    "rows",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _insert(conn: AsyncConnection, n: int, start: datetime) -> list[uuid.UUID]:
    # Several rows share each instant, so the tie-breaker is exercised.
    made = [(uuid.uuid4(), start + timedelta(seconds=i // 3)) for i in range(n)]
    await conn.execute(rows.insert(), [{"id": i, "created_at": at} for i, at in made])
    return [i for i, _ in made]


async def test_every_row_once_in_order_while_rows_arrive() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        first = await _insert(conn, 23, T0)
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    pages = 0
    while True:
        async with AsyncSession(engine) as session:
            got, cursor = await fetch_page(
                session,
                sa.select(rows.c.id, rows.c.created_at),
                (rows.c.created_at, rows.c.id),
                PageParams(limit=5, cursor=cursor),
            )
        seen.extend(got)
        pages += 1
        if pages == 2:  # newer rows arrive mid-way: they belong before page 1, not in the rest
            async with engine.begin() as conn:
                await _insert(conn, 7, T0 + timedelta(days=1))
        if cursor is None:
            break
    assert sorted(r["id"] for r in seen) == sorted(first)  # each once, none of the newcomers
    keys = [(r["created_at"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert pages == 5  # 23 rows by 5: the last page says so with no cursor
    await engine.dispose()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "bm90IGpzb24",
        encode_cursor(["2026-01-01T00:00:00", str(uuid.uuid4())]),
        encode_cursor([1]),
    ],
)
def test_a_cursor_it_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(cursor, [datetime, uuid.UUID])


def test_round_trip() -> None:
    key = [T0, uuid.uuid4()]
    assert decode_cursor(encode_cursor(key), [datetime, uuid.UUID]) == key


def test_api_names_the_field_and_links_the_next_page() -> None:
    from services.chassis.http import _install_error_handlers

    app = FastAPI()
    _install_error_handlers(app)

    @app.get("/things")
    async def things(page: PageQuery, request: Request, response: Response) -> list[int]:
        decode_cursor(page.cursor, [int]) if page.cursor else None
        link_next(request, response, encode_cursor([7]))
        return [1]

    client = TestClient(app)
    ok = client.get("/things", params={"status": "x"})
    assert ok.headers["X-Next-Cursor"] == encode_cursor([7])
    assert 'rel="next"' in ok.headers["Link"] and "cursor=" in ok.headers["Link"]
    bad = client.get("/things", params={"cursor": "garbage"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    too_big = client.get("/things", params={"limit": MAX_LIMIT + 1})
    assert too_big.status_code == 422 and too_big.json()["detail"][0]["loc"] == ["query", "limit"]
