"""How usable the four services' OpenAPI documents are for a frontend team (issue 18, part 1).

Builds each service's app in-process (SQLite, no broker; ``TAPER_ENV`` must be set, as for any
service) and prints, per service and in total:

- operations, and those whose every 2xx response is typed: a JSON body whose schema names its
  fields (a model, an array of models, a scalar), or no body (204); a bare object, a map of
  anything or ``{}`` is untyped;
- request and response bodies (2xx) with at least one example;
- properties (of every component schema) with a description, of all properties;
- operationIds that are not ``lowerCamelCase`` starting with a verb, duplicated across the four
  services, and operations without a tag.

    TAPER_ENV=test python -m deploy.openapi_stats [--json]

``tests/contract/test_openapi_quality.py`` holds the documents to these figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from deploy.openapi import service_documents

METHODS = {"get", "put", "post", "delete", "patch"}
# The first word of an operationId: what the client call does.
VERBS = frozenset(
    "get list read submit create add put set update replace approve adjust cancel preview "
    "acknowledge resolve resume hold start reduce return end request remove delete join leave "
    "override activate deactivate check".split()
)
CAMEL = re.compile(r"^([a-z]+)([A-Z][a-z0-9]*)*$")


@dataclass
class Stats:
    operations: int = 0
    typed_operations: int = 0
    bodies: int = 0
    bodies_with_example: int = 0
    properties: int = 0
    described_properties: int = 0
    untagged: list[str] = field(default_factory=list)
    untyped: list[str] = field(default_factory=list)
    undescribed: list[str] = field(default_factory=list)
    without_example: list[str] = field(default_factory=list)
    non_verb_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)

    def add(self, other: Stats) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def documents() -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, as its app serves it (built as the snapshots are)."""
    return service_documents()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def is_typed(doc: dict[str, Any], schema: dict[str, Any] | None) -> bool:
    """Whether a client generator gets named fields (or a scalar) out of ``schema``."""
    if not schema:
        return False
    schema = _resolve(doc, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return all(
                is_typed(doc, s) for s in schema[key] if _resolve(doc, s).get("type") != "null"
            )
    kind = schema.get("type")
    if kind == "array":
        return is_typed(doc, schema.get("items"))
    if kind == "object" or kind is None:
        return bool(schema.get("properties")) and schema.get("additionalProperties") in (
            None,
            False,
        )
    return True  # string, integer, number, boolean (an HTML page is a string)


def has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = media.get("schema") or {}
    if schema.get("type") == "array":
        schema = schema.get("items") or {}
    for branch in schema.get("anyOf", []):  # a nullable body: the example is the model's
        if branch.get("type") != "null":
            schema = branch
    schema = _resolve(doc, schema) if schema else {}
    return bool(schema.get("examples") or schema.get("example") is not None)


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def service_stats(doc: dict[str, Any]) -> Stats:
    stats = Stats()
    for method, path, op in operations(doc):
        where = f"{method} {path}"
        stats.operations += 1
        if not op.get("tags"):
            stats.untagged.append(where)
        bodies = [("request", m) for m in op.get("requestBody", {}).get("content", {}).values()]
        typed = True
        for status, response in op.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            content = response.get("content") or {}
            if not content and status == "204":
                continue
            if not content:
                typed = False
            for media in content.values():
                typed = typed and is_typed(doc, media.get("schema"))
                bodies.append((status, media))
        stats.typed_operations += typed
        if not typed:
            stats.untyped.append(where)
        for which, media in bodies:
            stats.bodies += 1
            if has_example(doc, media):
                stats.bodies_with_example += 1
            else:
                stats.without_example.append(f"{where} {which}")
        op_id = op.get("operationId", "")
        verb = CAMEL.match(op_id)
        if not verb or verb.group(1) not in VERBS:
            stats.non_verb_ids.append(f"{where}: {op_id}")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        for prop_name, prop in schema.get("properties", {}).items():
            stats.properties += 1
            if prop.get("description"):
                stats.described_properties += 1
            else:
                stats.undescribed.append(f"{name}.{prop_name}")
    return stats


def all_stats(docs: dict[str, dict[str, Any]]) -> dict[str, Stats]:
    per = {name: service_stats(doc) for name, doc in docs.items()}
    ids = Counter(op.get("operationId") for doc in docs.values() for *_, op in operations(doc))
    for name, doc in docs.items():
        per[name].duplicate_ids = sorted(
            f"{m} {p}: {op.get('operationId')}"
            for m, p, op in operations(doc)
            if ids[op.get("operationId")] > 1
        )
    total = Stats()
    for stats in per.values():
        total.add(stats)
    return {**per, "total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print every list, as JSON")
    args = parser.parse_args(argv)
    stats = all_stats(documents())
    if args.json:
        print(json.dumps({k: asdict(v) for k, v in stats.items()}, indent=2))
        return 0
    print(
        f"{'':16}{'typed ops':>12}{'examples':>12}{'described':>12}"
        f"{'non-verb ids':>14}{'duplicate ids':>15}{'untagged':>10}"
    )
    for name, s in stats.items():
        print(
            f"{name:16}{f'{s.typed_operations}/{s.operations}':>12}"
            f"{f'{s.bodies_with_example}/{s.bodies}':>12}"
            f"{f'{s.described_properties}/{s.properties}':>12}"
            f"{len(s.non_verb_ids):>14}{len(s.duplicate_ids):>15}{len(s.untagged):>10}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
