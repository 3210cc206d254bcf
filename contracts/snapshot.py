"""Committed JSON Schema snapshots of every topic's event: ``contracts/schemas/<topic>.json``.

    python -m contracts.snapshot --check    # exit 1 if a snapshot is missing, stale or broken
    python -m contracts.snapshot --write    # (re)write snapshots; refuses breaking changes
    python -m contracts.snapshot --write --allow-breaking   # overwrite anyway (rarely right)

A breaking change belongs in a new topic version (``VERSION = 2`` gives ``...v2``, a new file),
not in an overwritten snapshot: consumers of the old topic still read the old shape.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.compat import Schema, breaking_changes, schema_for
from contracts.topics import ALL_TOPICS, Topic

SCHEMA_DIR = Path(__file__).parent / "schemas"


def snapshot_path(topic: Topic, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{topic.name}.json"


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def check(directory: Path = SCHEMA_DIR) -> list[str]:
    """Problems with the committed snapshots; [] when every one exists and is current."""
    problems = []
    for topic in ALL_TOPICS:
        path = snapshot_path(topic, directory)
        if not path.exists():
            problems.append(f"{topic.name}: no snapshot at {path}; run --write")
            continue
        current = schema_for(topic)
        committed = json.loads(path.read_text())
        breaks = breaking_changes(committed, current)
        problems += [f"{topic.name}: BREAKING: {b}" for b in breaks]
        if not breaks and render(current) != path.read_text():
            problems.append(f"{topic.name}: snapshot is stale (compatible change); run --write")
    return problems


def write(directory: Path = SCHEMA_DIR, *, allow_breaking: bool = False) -> list[str]:
    """Write every snapshot; return the breaking changes that stopped a file being written."""
    directory.mkdir(parents=True, exist_ok=True)
    refused = []
    for topic in ALL_TOPICS:
        path = snapshot_path(topic, directory)
        current = schema_for(topic)
        if path.exists() and not allow_breaking:
            breaks = breaking_changes(json.loads(path.read_text()), current)
            if breaks:
                refused += [f"{topic.name}: BREAKING: {b}" for b in breaks]
                continue
        if not path.exists() or path.read_text() != render(current):
            path.write_text(render(current))
            print(f"wrote {path}")
    return refused


def orphans(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Snapshots of topics no longer in ALL_TOPICS (retired versions)."""
    known = {snapshot_path(t, directory) for t in ALL_TOPICS}
    return sorted(p for p in directory.glob("*.json") if p not in known)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.snapshot", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify snapshots (the default)")
    mode.add_argument("--write", action="store_true", help="write current schemas")
    parser.add_argument(
        "--allow-breaking", action="store_true", help="with --write: overwrite breaking changes"
    )
    args = parser.parse_args(argv)
    if args.allow_breaking and not args.write:
        parser.error("--allow-breaking only goes with --write")

    for path in orphans():
        print(f"note: {path.name} has no topic in ALL_TOPICS (retired?)", file=sys.stderr)
    if args.write:
        refused = write(allow_breaking=args.allow_breaking)
        if refused:
            print("\n".join(refused), file=sys.stderr)
            print(
                "refused: a breaking change needs a new topic version (VERSION = n+1); "
                "--allow-breaking overwrites anyway",
                file=sys.stderr,
            )
            return 1
        return 0
    problems = check()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"{len(ALL_TOPICS)} schema snapshots are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
