"""Retries and concurrent edits are part of the contract (issue 18 part 7): every state-changing
POST of the four services declares ``Idempotency-Key``, and every write honouring ``If-Match``
documents it with its 412 and the ETag it answers — so a generated client sends them.

Exempt: the previews (pure: repeating one changes nothing) and ``submitSymptomReport``'s header
is its own older one (patient-scoped, same semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.openapi_stats import documents

PURE = {"previewPlan", "previewPlanDispensing"}
# Resources two people edit: their writes take If-Match, their reads send the ETag.
CONDITIONAL_WRITES = {
    "approvePlan",
    "adjustPlan",
    "cancelPlan",
    "putEscalationPolicy",
    "putOnCallSchedule",
    "addOnCallOverride",
    "removeOnCallOverride",
}
ETAG_READS = {"getPlan", "getEscalationPolicy", "getOnCallSchedule"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), op["operationId"], op)
        for doc in documents().values()
        for item in doc["paths"].values()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    ]


def _headers(op: dict[str, Any]) -> set[str]:
    return {p["name"].lower() for p in op.get("parameters", []) if p.get("in") == "header"}


def posts_without_key(operations: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return sorted(
        name
        for method, name, op in operations
        if method == "POST" and name not in PURE and "idempotency-key" not in _headers(op)
    )


@pytest.fixture(scope="module")
def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return _operations()


def test_every_state_changing_post_declares_idempotency_key(
    operations: list[tuple[str, str, dict[str, Any]]],
) -> None:
    posts = [name for method, name, _ in operations if method == "POST"]
    assert len(posts) >= 20  # the check sees them all (17 listed in the brief, 1 older, 2 pure)
    assert posts_without_key(operations) == []


def test_the_check_finds_a_post_without_the_header() -> None:
    bare = [("POST", "approvePlan", {"parameters": [{"name": "If-Match", "in": "header"}]})]
    assert posts_without_key(bare) == ["approvePlan"]
    assert posts_without_key([("POST", "previewPlan", {})]) == []


def test_conditional_writes_take_if_match_and_document_412_and_the_etag(
    operations: list[tuple[str, str, dict[str, Any]]],
) -> None:
    by_name = {name: op for _, name, op in operations}
    for name in sorted(CONDITIONAL_WRITES):
        op = by_name[name]
        assert "if-match" in _headers(op), name
        assert "412" in op["responses"], name
        success = next(code for code in op["responses"] if code.startswith("2"))
        assert "ETag" in op["responses"][success].get("headers", {}), name
    for name in sorted(ETAG_READS):
        assert "ETag" in by_name[name]["responses"]["200"].get("headers", {}), name
