"""The chassis' Idempotency-Key parts on their own: the request fingerprint, the key's format,
If-Match's comparison, and keys pruned after 24 real hours (issue 18 part 7)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import HTTPException

from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.idempotency import fingerprint, valid_key
from services.chassis.preconditions import check_if_match
from services.chassis.retention import RetentionPolicy, RetentionPruner
from services.chassis.uow import UnitOfWorkFactory
from services.monitoring.adapters.orm import metadata
from tests.runtimes import migrated_engine


def test_the_fingerprint_is_the_json_not_its_layout() -> None:
    path = {"patient_id": "p1"}
    a = fingerprint(path, [], b'{"a": 1, "b": [1, 2]}')
    assert a == fingerprint(path, [], b'{"b":[1,2],"a":1}')
    assert a != fingerprint(path, [], b'{"a": 2, "b": [1, 2]}')
    assert a != fingerprint({"patient_id": "p2"}, [], b'{"a": 1, "b": [1, 2]}')
    assert a != fingerprint(path, [("format", "svg")], b'{"a": 1, "b": [1, 2]}')
    assert fingerprint(path, [], b"") != fingerprint(path, [], b"null!")


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\t", "nul\x00", "caf\u00e9"])
def test_a_malformed_key_is_refused_naming_the_header(key: str) -> None:
    with pytest.raises(HTTPException) as refused:
        valid_key(key)
    assert refused.value.status_code == 422
    assert refused.value.detail[0]["loc"] == ["header", "Idempotency-Key"]


def test_a_key_of_printable_ascii_up_to_255_is_taken() -> None:
    assert valid_key(None) is None
    assert valid_key("x" * 255) == "x" * 255
    assert valid_key("a b~!") == "a b~!"


@pytest.mark.parametrize(
    ("if_match", "current", "ok"),
    [
        (None, '"3"', True),
        (None, None, True),
        ('"3"', '"3"', True),
        ('"1", "3"', '"3"', True),
        ("*", '"3"', True),
        ('"2"', '"3"', False),
        ('W/"3"', '"3"', False),  # If-Match compares strongly
        ("*", None, False),  # nothing to match
        ('"3"', None, False),
    ],
)
def test_if_match(if_match: str | None, current: str | None, ok: bool) -> None:
    if ok:
        check_if_match(if_match, current)
        return
    with pytest.raises(HTTPException) as refused:
        check_if_match(if_match, current)
    assert refused.value.status_code == 412
    assert "If-Match" in refused.value.detail


async def test_keys_are_pruned_after_24_real_hours(tmp_path: Path) -> None:
    engine = await migrated_engine("monitoring", tmp_path)
    clock = FrozenClock(scale=1440)  # a day of the clock is a real minute: keys stay 24 real h
    uows = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    async with uows() as uow:
        keys = uow.table("idempotency_keys")
        for key, age in (("old", timedelta(days=1441)), ("young", timedelta(days=1439))):
            await uow.session.execute(
                sa.insert(keys).values(
                    subject="s",
                    operation="op",
                    key=key,
                    fingerprint="f",
                    created_at=clock.now() - age,
                    status_code=200,
                )
            )
        await uow.commit()
    pruner = RetentionPruner(service="monitoring", uow_factory=uows, policy=RetentionPolicy())
    assert (await pruner.prune())["idempotency_keys"] == 1
    async with uows() as uow:
        left = (await uow.session.scalars(sa.select(uow.table("idempotency_keys").c.key))).all()
    assert left == ["young"]
    await engine.dispose()
