"""The HTTP API's OpenAPI documents: each service's, and one merged document for frontends.

``contracts/openapi/<service>.json`` are each service's document as it serves it; ``taper.json``
is the four merged, as the gateway serves it at ``/api/openapi.json`` (paths keep their
``/api/<service>`` prefixes, components merged without clashes, ``servers``, the bearer scheme,
the shared error schema). They are committed: a frontend's generated client is built from them,
and a change to the API shows in review. A breaking change is refused unless the version in
``contracts/http_api.py`` is bumped and the break recorded (``deploy/openapi_compat.py``).

    python -m deploy.openapi --write    # regenerate (make openapi); refuses unrecorded breaks
    python -m deploy.openapi --check    # exit 1 when a document is stale or broken (a test runs it)
    python -m deploy.openapi --write --allow-breaking   # overwrite anyway (a new baseline)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.http_api import MERGED_API_VERSION, api_version
from deploy.doc_runtimes import doc_runtimes

OUT_DIR = Path(__file__).resolve().parents[1] / "contracts" / "openapi"
MERGED_NAME = "taper"
#: service name -> its path prefix behind the gateway (services/chassis/settings.py url_prefix)
SERVICES = ("scheduler", "monitoring", "notifications", "group_matching")
ERROR_SCHEMA = "ErrorBody"
BEARER = "HTTPBearer"
SERVERS = [
    {"url": "/", "description": "The gateway this document was fetched from (same origin)."},
    {"url": "http://127.0.0.1:8080", "description": "`make run` on this machine."},
]

Document = dict[str, Any]


class MergeError(ValueError):
    """The services' documents cannot be merged as they are (a clash only a service can fix)."""


def service_documents() -> dict[str, Document]:
    """Each service's OpenAPI document, as its app serves it."""
    # Nothing is connected: the app is built only to read its OpenAPI document.
    runtimes = doc_runtimes(environment="test", kafka_provision_topics=False)
    with tempfile.TemporaryDirectory() as db_dir:
        return {name: make(db_dir).app.openapi() for name, make in runtimes.items()}


def _pascal(service: str) -> str:
    return "".join(part.capitalize() for part in service.split("_"))


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    """``node`` with every ``#/components/schemas/<old>`` reference pointing at its new name."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix, _, name = value.rpartition("/")
                if prefix == "#/components/schemas" and name in renames:
                    value = f"{prefix}/{renames[name]}"
            out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _renames(merged: Mapping[str, Any], schemas: Mapping[str, Any], service: str) -> dict[str, str]:
    """Which of ``service``'s schemas must be renamed (``<Service><Name>``) because a schema of
    the same name but another shape is already merged. To a fixpoint: renaming one schema
    changes every schema that refers to it."""
    renames: dict[str, str] = {}
    while True:
        grown = False
        for name, schema in schemas.items():
            if name in renames or name not in merged:
                continue
            if merged[name] != _rewrite_refs(schema, renames):
                renames[name] = f"{_pascal(service)}{name}"
                grown = True
        if not grown:
            return renames


def merge(documents: Mapping[str, Document], version: str = MERGED_API_VERSION) -> Document:
    """One document of every service's operations (service order as given)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    security_schemes: dict[str, Any] = {}
    tags: dict[str, dict[str, Any]] = {}
    operation_ids: dict[str, str] = {}
    versions = []
    for service, original in documents.items():
        doc = copy.deepcopy(original)
        versions.append(f"{service} {doc['info']['version']}")
        components = doc.get("components", {})
        renames = _renames(schemas, components.get("schemas", {}), service)
        doc = _rewrite_refs(doc, renames)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(renames.get(name, name), schema)
        for name, scheme in components.get("securitySchemes", {}).items():
            if security_schemes.setdefault(name, scheme) != scheme:
                raise MergeError(f"security scheme {name!r} of {service} differs from another's")
        for tag in doc.get("tags", []):
            tags.setdefault(tag["name"], tag)
        for path, operations in doc.get("paths", {}).items():
            if path in paths:
                raise MergeError(f"path {path} is served by two services (the second: {service})")
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                for tag in operation.get("tags", []):
                    tags.setdefault(tag, {"name": tag})
                op_id = operation.get("operationId")
                if op_id is None:
                    raise MergeError(f"{method.upper()} {path} ({service}) has no operationId")
                if op_id in operation_ids:
                    raise MergeError(
                        f"operationId {op_id!r} of {method.upper()} {path} ({service}) is also "
                        f"{operation_ids[op_id]}'s: operationIds must be unique across services"
                    )
                operation_ids[op_id] = f"{method.upper()} {path}"
                # Which service answers it: for a frontend's logs and for routing questions.
                operation["x-taper-service"] = service
            paths[path] = operations
    if ERROR_SCHEMA not in schemas:
        raise MergeError(f"no service documents the shared error schema {ERROR_SCHEMA}")
    if BEARER not in security_schemes:
        raise MergeError(f"no service documents the bearer security scheme {BEARER}")
    security_schemes[BEARER] = {
        **security_schemes[BEARER],
        "bearerFormat": "JWT",
        "description": "A token of the identity provider (development: "
        "`python -m services.chassis.devtoken`), sent as `Authorization: Bearer <token>`.",
    }
    return {
        "openapi": next(iter(documents.values()))["openapi"],
        "info": {
            "title": "taper API",
            "version": version,
            "description": (
                "Every service of the taper program behind its gateway, in one document for "
                "frontends. Every refusal has the shape of `ErrorBody`. Versions: "
                + ", ".join(versions)
                + "."
            ),
        },
        "servers": SERVERS,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": security_schemes,
        },
        "tags": list(tags.values()),
    }


def render(document: Document) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def documents_path(name: str, directory: Path = OUT_DIR) -> Path:
    return directory / f"{name}.json"


def current_documents() -> dict[str, Document]:
    """What ``--write`` would commit: every service's document and the merged one."""
    services = service_documents()
    for name in SERVICES:
        if services[name]["info"]["version"] != api_version(name):
            raise MergeError(f"{name} serves version {services[name]['info']['version']}")
    return {**services, MERGED_NAME: merge(services)}


def main(argv: list[str] | None = None) -> int:
    from deploy import openapi_compat

    parser = argparse.ArgumentParser(prog="python -m deploy.openapi", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    parser.add_argument("--allow-breaking", action="store_true", help="with --write")
    args = parser.parse_args(argv)
    if args.allow_breaking and not args.write:
        parser.error("--allow-breaking only goes with --write")
    try:
        current = current_documents()
    except MergeError as exc:
        print(f"cannot merge the services' documents: {exc}", file=sys.stderr)
        return 1
    problems = openapi_compat.problems(current, OUT_DIR)
    breaking = [p for p in problems if p.breaking]
    if args.write:
        if breaking and not args.allow_breaking:
            print("\n".join(str(p) for p in breaking), file=sys.stderr)
            print(openapi_compat.HOW_TO_BREAK, file=sys.stderr)
            return 1
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for name, document in current.items():
            path = documents_path(name)
            if not path.exists() or path.read_text() != render(document):
                path.write_text(render(document))
                print(f"wrote {path}")
        return 0
    if problems:
        print("\n".join(str(p) for p in problems), file=sys.stderr)
        if breaking:
            print(openapi_compat.HOW_TO_BREAK, file=sys.stderr)
        return 1
    print(f"{len(current)} OpenAPI documents are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
