"""Issue 18, parts 3 and 4: the committed OpenAPI documents (each service's and the merged one)
are current, the merge keeps every operation without clashes, and oasdiff's breaking-change check
refuses a planted break (a removed operation or field, a narrowed type, a new required input, a
changed status code) unless the major version is raised and the break recorded; an additive
change passes."""

from __future__ import annotations

import copy
import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from contracts.http_api import API_VERSIONS, MERGED_API_VERSION
from deploy import openapi, openapi_compat
from tests.plugins.infra import unavailable

Document = dict[str, Any]


@pytest.fixture(autouse=True)
def _oasdiff() -> None:
    try:
        openapi_compat.find_oasdiff()
    except openapi_compat.OasdiffMissing as exc:
        unavailable(str(exc))


@cache
def _current() -> dict[str, Document]:
    return openapi.current_documents()


def current() -> dict[str, Document]:
    return copy.deepcopy(_current())


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    """A copy of the committed documents, to plant breaks against."""
    for name in _current():
        shutil.copy(openapi.documents_path(name), tmp_path)
    (tmp_path / openapi_compat.RECORD_NAME).write_text("{}")
    return tmp_path


def _scheduler_only(doc: Document) -> dict[str, Document]:
    return {"scheduler": doc}


def _breaks(found: list[openapi_compat.Problem]) -> list[str]:
    return [str(p) for p in found if p.breaking]


def test_the_committed_documents_are_current_and_compatible() -> None:
    assert openapi.main(["--check"]) == 0, "run `make openapi` (python -m deploy.openapi --write)"


def test_the_merged_document_has_every_operation_once_with_servers_security_and_errors() -> None:
    docs = current()
    merged = docs[openapi.MERGED_NAME]
    operations = {
        (method, path)
        for name in openapi.SERVICES
        for path, ops in docs[name]["paths"].items()
        for method in ops
    }
    assert {(m, p) for p, ops in merged["paths"].items() for m in ops} == operations
    ids = [op["operationId"] for ops in merged["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert merged["info"]["version"] == MERGED_API_VERSION
    assert merged["servers"] and merged["servers"][0]["url"] == "/"
    assert merged["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "ErrorBody" in merged["components"]["schemas"]
    for name in openapi.SERVICES:
        assert docs[name]["info"]["version"] == API_VERSIONS[name]
    # Every reference resolves in the merged document.
    refs = set(_refs(merged))
    assert refs <= {f"#/components/schemas/{n}" for n in merged["components"]["schemas"]}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _doc(schemas: dict[str, Any], path: str, ref: str, op_id: str) -> Document:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1.0.0"},
        "paths": {
            path: {
                "get": {
                    "operationId": op_id,
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": {"$ref": ref}}},
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def test_schemas_of_one_name_but_two_shapes_are_both_kept_under_distinct_names() -> None:
    error = {"type": "object", "properties": {"detail": {"type": "string"}}}
    a = _doc(
        {
            "ErrorBody": error,
            "OverrideIn": {"type": "object", "properties": {"a": {"type": "string"}}},
            "Wrapper": {"properties": {"o": {"$ref": "#/components/schemas/OverrideIn"}}},
        },
        "/api/a/x",
        "#/components/schemas/Wrapper",
        "readA",
    )
    b = copy.deepcopy(a)
    b["paths"] = {"/api/group-matching/x": b["paths"].pop("/api/a/x")}
    b["paths"]["/api/group-matching/x"]["get"]["operationId"] = "readB"
    b["components"]["schemas"]["OverrideIn"] = {"type": "object", "properties": {"b": {}}}
    merged = openapi.merge({"scheduler": a, "group_matching": b})
    schemas = merged["components"]["schemas"]
    assert schemas["OverrideIn"]["properties"] == {"a": {"type": "string"}}
    assert schemas["GroupMatchingOverrideIn"]["properties"] == {"b": {}}
    # Wrapper refers to a renamed schema in b, so b's Wrapper is another shape: renamed too.
    assert schemas["GroupMatchingWrapper"]["properties"]["o"]["$ref"].endswith(
        "/GroupMatchingOverrideIn"
    )
    op = merged["paths"]["/api/group-matching/x"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/GroupMatchingWrapper"
    )
    assert list(schemas).count("ErrorBody") == 1  # identical: shared


def test_an_operation_id_used_by_two_services_is_refused() -> None:
    error = {"ErrorBody": {"type": "object"}}
    a = _doc(error, "/api/a/x", "#/components/schemas/ErrorBody", "getHealth")
    b = _doc(error, "/api/b/x", "#/components/schemas/ErrorBody", "getHealth")
    with pytest.raises(openapi.MergeError, match="getHealth"):
        openapi.merge({"scheduler": a, "monitoring": b})


# --- the breaking-change check -------------------------------------------------------------------


def _a_response_schema_with_required(doc: Document) -> str:
    for name, schema in doc["components"]["schemas"].items():
        if name.endswith("Out") and schema.get("required"):
            return str(name)
    raise AssertionError("no response schema with a required field")


def test_a_removed_response_field_is_caught(snapshots: Path) -> None:
    doc = current()["scheduler"]
    name = _a_response_schema_with_required(doc)
    field = doc["components"]["schemas"][name]["required"][0]
    del doc["components"]["schemas"][name]["properties"][field]
    doc["components"]["schemas"][name]["required"].remove(field)
    breaks = _breaks(openapi_compat.problems(_scheduler_only(doc), snapshots))
    assert breaks and all("response-required-property-removed" in b for b in breaks), breaks
    assert all(field in b for b in breaks), (field, breaks)


def test_a_removed_optional_response_field_is_caught(snapshots: Path) -> None:
    """A response field with a default is optional in the document but always sent: a client
    reads it, so its removal is a break (oasdiff calls it INFO unless told otherwise)."""
    doc = current()["scheduler"]
    name, field = next(
        (n, f)
        for n, s in doc["components"]["schemas"].items()
        if n.endswith("Out")
        for f in s.get("properties", {})
        if f not in s.get("required", [])
    )
    del doc["components"]["schemas"][name]["properties"][field]
    breaks = _breaks(openapi_compat.problems(_scheduler_only(doc), snapshots))
    assert breaks and all("response-optional-property-removed" in b for b in breaks), breaks
    assert all(field in b for b in breaks), (field, breaks)


def test_a_removed_operation_is_caught(snapshots: Path) -> None:
    doc = current()["scheduler"]
    path = next(p for p in doc["paths"] if "{patient_id}" in p)
    del doc["paths"][path]
    breaks = _breaks(openapi_compat.problems(_scheduler_only(doc), snapshots))
    assert any("api-path-removed" in b and path in b for b in breaks), breaks


def test_a_new_required_input_a_narrowed_type_and_a_changed_status_are_caught(
    snapshots: Path,
) -> None:
    doc = current()["scheduler"]
    path, ops = next((p, o) for p, o in doc["paths"].items() if "get" in o and "{patient_id}" in p)
    ops["get"].setdefault("parameters", []).append(
        {"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}}
    )
    post_path, post = next((p, o["post"]) for p, o in doc["paths"].items() if "post" in o)
    code = next(c for c in post["responses"] if c.startswith("2"))
    post["responses"]["299" if code != "299" else "298"] = post["responses"].pop(code)
    breaks = _breaks(openapi_compat.problems(_scheduler_only(doc), snapshots))
    assert any("new-required-request-parameter" in b and path in b for b in breaks), breaks
    assert any("response-success-status-removed" in b and post_path in b for b in breaks), breaks

    narrowed = current()["scheduler"]
    schema = next(
        s
        for n, s in narrowed["components"]["schemas"].items()
        if n.endswith("In")
        and any(p.get("type") == "string" for p in s.get("properties", {}).values())
    )
    prop = next(p for p in schema["properties"].values() if p.get("type") == "string")
    prop["maxLength"] = 1
    breaks = _breaks(openapi_compat.problems(_scheduler_only(narrowed), snapshots))
    assert any("max-length" in b for b in breaks), breaks


def test_an_additive_change_passes_as_a_stale_snapshot(snapshots: Path) -> None:
    doc = current()["scheduler"]
    name = _a_response_schema_with_required(doc)
    doc["components"]["schemas"][name]["properties"]["added_later"] = {"type": "string"}
    doc["paths"]["/api/scheduler/new-thing"] = copy.deepcopy(next(iter(doc["paths"].values())))
    found = openapi_compat.problems(_scheduler_only(doc), snapshots)
    assert [p.breaking for p in found] == [False]
    assert "stale" in found[0].message


def test_a_break_passes_only_with_a_major_bump_and_a_record(snapshots: Path) -> None:
    doc = current()["scheduler"]
    path = next(p for p in doc["paths"] if "{patient_id}" in p)
    del doc["paths"][path]
    doc["info"]["version"] = "1.1.0"  # a minor bump is not enough
    refused = [p for p in openapi_compat.problems(_scheduler_only(doc), snapshots) if p.breaking]
    assert refused and all("major version not raised" in p.message for p in refused)

    doc["info"]["version"] = "2.0.0"  # raised, but not recorded
    refused = [p for p in openapi_compat.problems(_scheduler_only(doc), snapshots) if p.breaking]
    assert refused and all("not recorded" in p.message for p in refused)
    entries = [json.loads(p.message.split("record: ", 1)[1]) for p in refused]

    record = {"scheduler": {"2.0.0": entries[:-1]}}  # all but one: still refused
    (snapshots / openapi_compat.RECORD_NAME).write_text(json.dumps(record))
    assert len(_breaks(openapi_compat.problems(_scheduler_only(doc), snapshots))) == 1
    entry = entries[-1]
    record = {"scheduler": {"2.0.0": entries}}
    (snapshots / openapi_compat.RECORD_NAME).write_text(json.dumps(record))
    found = openapi_compat.problems(_scheduler_only(doc), snapshots)
    assert [p.breaking for p in found] == [False]  # accepted: only the snapshot is now stale
    # recorded under another version: not accepted
    (snapshots / openapi_compat.RECORD_NAME).write_text(
        json.dumps({"scheduler": {"3.0.0": [entry]}})
    )
    assert _breaks(openapi_compat.problems(_scheduler_only(doc), snapshots))


def test_the_merged_document_needs_its_own_major_bump(snapshots: Path) -> None:
    docs = current()
    path = next(p for p in docs["scheduler"]["paths"] if "{patient_id}" in p)
    merged = docs[openapi.MERGED_NAME]
    del merged["paths"][path]
    entry = {"id": "api-path-removed-without-deprecation"}
    found = _breaks(openapi_compat.problems({openapi.MERGED_NAME: merged}, snapshots))
    assert found and all("major version not raised" in b for b in found), found
    merged["info"]["version"] = "2.0.0"
    changes = openapi_compat.breaking_changes(snapshots / "taper.json", merged)
    record = {"scheduler": {"2.0.0": [c.record() for c in changes]}}
    assert all(c.id.startswith(entry["id"].split("-without")[0]) for c in changes)
    (snapshots / openapi_compat.RECORD_NAME).write_text(json.dumps(record))
    assert not _breaks(openapi_compat.problems({openapi.MERGED_NAME: merged}, snapshots))
