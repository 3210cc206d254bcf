"""Is a new OpenAPI document compatible with the committed one? oasdiff decides (its ``breaking``
command: a removed operation, field or enum value, a narrowed type, a new required input, a
changed status code, ~300 rules); this module decides what a break needs to be accepted.

A break (oasdiff level ERR or WARN: both are something a client built on the old document can
trip on) is accepted only when the document's major version is raised and the break is recorded in
``contracts/openapi/breaking.json``::

    {"scheduler": {"2.0.0": [{"id": "api-path-removed-without-deprecation", "operation": "POST",
                              "path": "/api/scheduler/...", "text": "API path removed ..."}]}}

(each entry as oasdiff reports it; a refused break is printed in this form, ready to record).

The merged document's breaks are its services' (same paths): recorded under any of them, with its
own major raised (``MERGED_API_VERSION``). oasdiff is a Go module, built by ``make tools``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OASDIFF_IN_TREE = ROOT / "var" / "tools" / "bin" / "oasdiff"
#: rules whose oasdiff default level we raise to a break. A response field with a default is
#: "optional" in the documents but always sent, so a client reads it: removing it breaks that
#: client, which oasdiff by default reports only as INFO (response-optional-property-removed).
SEVERITY_LEVELS = ROOT / "contracts" / "openapi" / "oasdiff-severity.txt"
RECORD_NAME = "breaking.json"
#: oasdiff's levels (its JSON "level"): 3 ERR, 2 WARN, 1 INFO
BREAKING_LEVELS = {3, 2}
HOW_TO_BREAK = (
    "A breaking change to the HTTP API breaks the clients built on it. Prefer an additive change; "
    "else raise the major version in contracts/http_api.py (the service's and "
    "MERGED_API_VERSION), record each break in contracts/openapi/breaking.json under the service "
    "and its new version, and run `make openapi`."
)


class OasdiffMissing(RuntimeError):
    """oasdiff is not built: ``make tools``."""


@dataclass(frozen=True)
class Change:
    """One breaking change as oasdiff reports it."""

    id: str
    operation: str
    path: str
    text: str
    level: int

    def key(self) -> tuple[str, str, str, str]:
        return (self.id, self.operation, self.path, self.text)

    def record(self) -> dict[str, str]:
        """Its entry in breaking.json."""
        return {"id": self.id, "operation": self.operation, "path": self.path, "text": self.text}

    def __str__(self) -> str:
        return f"{self.operation} {self.path}: {self.text} [{self.id}]"


@dataclass(frozen=True)
class Problem:
    document: str
    message: str
    breaking: bool

    def __str__(self) -> str:
        return f"{self.document}: {'BREAKING: ' if self.breaking else ''}{self.message}"


def find_oasdiff() -> str:
    found = str(OASDIFF_IN_TREE) if OASDIFF_IN_TREE.exists() else shutil.which("oasdiff")
    if found is None:
        raise OasdiffMissing("oasdiff not found: `make tools` builds it into var/tools/bin")
    return found


def breaking_changes(base: Path, revision: dict[str, Any]) -> list[Change]:
    """oasdiff's breaking changes from the document at ``base`` to ``revision``."""
    with tempfile.TemporaryDirectory() as tmp:
        new = Path(tmp) / "revision.json"
        new.write_text(json.dumps(revision))
        done = subprocess.run(
            [
                find_oasdiff(),
                "breaking",
                str(base),
                str(new),
                "--severity-levels",
                str(SEVERITY_LEVELS),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"oasdiff failed (rc={done.returncode}): {done.stderr[-2000:]}")
    found = json.loads(done.stdout or "[]") or []
    return [
        Change(
            id=c["id"],
            operation=c.get("operation", ""),
            path=c.get("path", ""),
            text=c.get("text", ""),
            level=int(c.get("level", 3)),
        )
        for c in found
        if int(c.get("level", 3)) in BREAKING_LEVELS
    ]


def major(version: str) -> int:
    return int(version.split(".", 1)[0])


def recorded(directory: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    path = directory / RECORD_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def _recorded_keys(record: dict[str, Any], documents: list[str], version: str | None) -> set[Any]:
    keys = set()
    for name in documents:
        for ver, changes in record.get(name, {}).items():
            if version is None or ver == version:
                keys |= {(c["id"], c["operation"], c["path"], c["text"]) for c in changes}
    return keys


def problems(current: dict[str, dict[str, Any]], directory: Path) -> list[Problem]:
    """Every document that is missing, broken without a bump and a record, or stale."""
    from deploy.openapi import MERGED_NAME, render

    record = recorded(directory)
    found: list[Problem] = []
    for name, document in current.items():
        path = directory / f"{name}.json"
        if not path.exists():
            found.append(Problem(name, f"no snapshot at {path}; run `make openapi`", False))
            continue
        committed = json.loads(path.read_text())
        old, new = committed["info"]["version"], document["info"]["version"]
        changes = breaking_changes(path, document)
        bumped = major(new) > major(old)
        merged = name == MERGED_NAME
        # the merged document's breaks are its services': recorded under any of them
        keys = _recorded_keys(record, list(record) if merged else [name], None if merged else new)
        refused = [c for c in changes if not (bumped and c.key() in keys)]
        for change in refused:
            need = (
                f"not recorded in {RECORD_NAME} under {name} {new}"
                if bumped
                else f"major version not raised: {old} -> {new}"
            )
            entry = json.dumps(change.record())
            found.append(Problem(name, f"{change} ({need}); record: {entry}", True))
        if not refused and render(document) != path.read_text():
            stale = "snapshot is stale (compatible change); run `make openapi`"
            found.append(Problem(name, stale, False))
    return found
