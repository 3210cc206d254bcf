"""What a chaos test may believe: real counts (or an error, never a stand-in value), the
duplicates a service really skipped (its own log), and the dead letters it really wrote."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.helpers import read_topic

DUPLICATE_SKIPPED = "duplicate event skipped"  # services/chassis/consumer.py's log line


async def count(dsn: str, query: str, **params: Any) -> int:
    """``query``'s single number; any error (a missing table too) is raised, not hidden.

    List parameters expand (``WHERE event_id IN :ids``), so a count can name the run's rows."""
    statement = sa.text(query)
    for name, value in params.items():
        if isinstance(value, list | tuple | set | frozenset):
            statement = statement.bindparams(sa.bindparam(name, expanding=True))
            params[name] = list(value)
    engine = create_async_engine(dsn)
    try:
        async with engine.connect() as conn:
            value = (await conn.execute(statement, params)).scalar_one()
            return int(value)
    finally:
        await engine.dispose()


async def migrated(dsn: str, table: str) -> bool:
    """True once ``table`` exists (the service ran its migrations); False before, never an
    error standing in for a count."""
    engine = create_async_engine(dsn)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})
            return bool(found)
    finally:
        await engine.dispose()


def skipped_duplicates(log: Path, event_ids: Iterable[uuid.UUID]) -> list[str]:
    """The run's event ids the consumer skipped as duplicates (inbox hits), one entry per skip,
    read from the process's JSON log (every run of the process appends to it)."""
    wanted = {str(e) for e in event_ids}
    skipped = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # not a log record (a traceback line, the launcher's output)
        if record.get("message") == DUPLICATE_SKIPPED and record.get("event_id") in wanted:
            skipped.append(record["event_id"])
    return skipped


async def dead_letters(bootstrap: str, dlq: str, keys: Iterable[bytes]) -> list[Any]:
    """Records the run's keys left on ``dlq`` (read from its start; other runs' are ignored)."""
    wanted = set(keys)
    records = await read_topic(bootstrap, dlq, expect=10**6, timeout=5)
    return [r for r in records if r.key in wanted]
