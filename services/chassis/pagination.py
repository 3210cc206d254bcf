"""Keyset pagination, the one way every list in the API is paged.

A page is the body (a JSON list, so an unpaged client keeps working) plus, when more rows follow,
the next page's opaque cursor in ``X-Next-Cursor`` and an RFC 8288 ``Link: <…>; rel="next"``.
The cursor holds the sort key of the page's last row (newest first: a timestamp, then a unique
tie-breaker), so rows inserted while a client pages never shift, repeat or hide what it has not
read yet, unlike an offset. Nothing is cut silently: a list stops only where no cursor is given.

A route takes ``page: PageQuery`` and documents its 200 with ``paginated(list[Model])``; the
service layer builds a select ordered by :func:`newest_first` and calls :func:`fetch_page`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_LIMIT = 50
#: the documented maximum page size; a larger ``limit`` is a 422 naming it
MAX_LIMIT = 200
CURSOR_DOC = "Opaque; from the previous page's X-Next-Cursor header (or its Link rel=next)."
SINCE_DOC = "Only those at or after this instant (ISO 8601 with offset)."
UNTIL_DOC = "Only those before this instant (ISO 8601 with offset)."
NEXT_CURSOR_HEADER = "X-Next-Cursor"


class BadCursor(ValueError):
    """A cursor this API did not hand out (or for another list): the chassis answers 422 naming
    ``cursor`` (services/chassis/http.py)."""


@dataclass(frozen=True)
class PageParams:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def page_params(
    default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT
) -> Callable[[int, str | None], PageParams]:
    """The ``limit``/``cursor`` query dependency; a list whose published contract already
    allowed larger pages (the audit logs: 1000) keeps its bounds rather than break clients:
    ``Annotated[PageParams, Depends(page_params(100, 1000))]``."""

    def params(limit: int = default, cursor: str | None = None) -> PageParams:
        return PageParams(limit=limit, cursor=cursor)

    # Real objects, not the strings ``from __future__ import annotations`` would leave: FastAPI
    # could not resolve ``maximum`` from a string.
    params.__annotations__ = {
        "limit": Annotated[
            int,
            Query(ge=1, le=maximum, description=f"Page size, 1 to {maximum} (default {default})."),
        ],
        "cursor": Annotated[str | None, Query(max_length=500, description=CURSOR_DOC)],
        "return": PageParams,
    }
    return params


PageQuery = Annotated[PageParams, Depends(page_params())]

KeyValue = datetime | uuid.UUID | int | str


def _dump(value: KeyValue) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite hands back naive UTC
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def encode_cursor(keys: Sequence[KeyValue]) -> str:
    raw = json.dumps([_dump(k) for k in keys], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _aware(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("naive")
    return at


#: how each kind of sort key is read back from a cursor
PARSERS: dict[type, Callable[[Any], Any]] = {
    datetime: _aware,
    uuid.UUID: lambda v: uuid.UUID(str(v)),
    int: lambda v: v if isinstance(v, int) and not isinstance(v, bool) else int("x"),
    str: lambda v: v if isinstance(v, str) else int("x"),
}


def decode_cursor(cursor: str, kinds: Sequence[type]) -> list[Any]:
    """The sort key in ``cursor``, each part read as ``kinds`` says; :class:`BadCursor` if it
    is not a cursor of this shape."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("shape")
        return [PARSERS[kind](value) for kind, value in zip(kinds, values, strict=True)]
    except (ValueError, TypeError, KeyError) as exc:  # binascii/Unicode/JSON errors included
        raise BadCursor("cursor is not one this list returned") from exc


def within(
    query: sa.Select[Any],
    column: sa.ColumnElement[Any],
    since: datetime | None,
    until: datetime | None,
) -> sa.Select[Any]:
    """``query`` narrowed to ``since <= column < until`` (either bound optional): the time-range
    filter every list with a time offers, half-open so adjacent windows neither overlap nor
    leave a gap."""
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def _kind(column: sa.ColumnElement[Any]) -> type:
    python_type = column.type.python_type  # UtcDateTime names its own (services/chassis/db.py)
    for kind in (datetime, uuid.UUID, int, str):
        if issubclass(python_type, kind):
            return kind
    raise TypeError(f"cannot page on {column}")  # a programming error, caught by tests


async def fetch_page(
    session: AsyncSession,
    query: sa.Select[Any],
    keys: Sequence[sa.ColumnElement[Any]],
    page: PageParams,
    *,
    ascending: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """``page.limit`` rows of ``query`` newest first by ``keys`` (most significant first, the
    last unique), after ``page.cursor``; and the next page's cursor, None on the last page.
    ``ascending``: in key order instead, for configuration listed by name (care teams, ...).

    ``query`` must select every key column under its own name.
    """
    kinds = [_kind(k) for k in keys]
    if page.cursor is not None:
        query = query.where(_past(keys, decode_cursor(page.cursor, kinds), ascending))
    order = [k.asc() if ascending else k.desc() for k in keys]
    query = query.order_by(*order).limit(page.limit + 1)
    rows = [dict(r) for r in (await session.execute(query)).mappings()]
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]
    return rows, encode_cursor([last[k.key] for k in keys])


def _past(
    keys: Sequence[sa.ColumnElement[Any]], values: Sequence[Any], ascending: bool
) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in the list's order: (k1 < v1) or (k1 = v1 and (…)),
    ``>`` when ascending. Spelled out rather than a row-value comparison, which SQLite and
    PostgreSQL index alike."""
    head, value = keys[0], values[0]
    beyond = head > value if ascending else head < value
    if len(keys) == 1:
        return beyond
    return sa.or_(beyond, sa.and_(head == value, _past(keys[1:], values[1:], ascending)))


T = TypeVar("T")


def page_of(
    items: Sequence[T], key: Callable[[T], str], page: PageParams
) -> tuple[list[T], str | None]:
    """The same paging over a list built in memory (its items unique by ``key``, e.g. shipped
    defaults merged with stored rows), in ``key`` order."""
    ordered = sorted(items, key=key)
    if page.cursor is not None:
        (after,) = decode_cursor(page.cursor, [str])
        ordered = [item for item in ordered if key(item) > after]
    if len(ordered) <= page.limit:
        return ordered, None
    ordered = ordered[: page.limit]
    return ordered, encode_cursor([key(ordered[-1])])


def link_next(request: Request, response: Response, next_cursor: str | None) -> None:
    """Tell the client where the next page is (nothing on the last page)."""
    if next_cursor is None:
        return
    url = request.url.include_query_params(cursor=next_cursor)
    response.headers[NEXT_CURSOR_HEADER] = next_cursor
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'


def paginated(model: Any, description: str = "Newest first.") -> dict[int | str, dict[str, Any]]:
    """The 200 of a paged list, for ``responses=``: its body's type and the paging headers."""
    return {
        200: {
            "model": model,
            "description": f"{description} More pages follow while X-Next-Cursor is present.",
            "headers": {
                NEXT_CURSOR_HEADER: {
                    "description": "Pass as ``cursor`` for the next page; absent on the last.",
                    "schema": {"type": "string"},
                },
                "Link": {
                    "description": 'RFC 8288 rel="next" link to the next page.',
                    "schema": {"type": "string"},
                },
            },
        }
    }
