"""Generate each service's AsyncAPI 3.0 document from the service itself (its FastStream broker).

Produced topics come from the publishers each runtime declares; consumed topics from its
subscribers, whose payload (read as raw bytes so that poison messages reach the DLQ) is replaced by
each topic's event schema from ``contracts``. Output: ``contracts/asyncapi/<service>.json``.

    python -m deploy.asyncapi --write | --check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI

from deploy.doc_runtimes import doc_runtimes
from services.chassis.runtime import ServiceRuntime

OUT_DIR = Path(__file__).resolve().parent.parent / "contracts" / "asyncapi"


def document(runtime: ServiceRuntime) -> dict[str, Any]:
    spec = AsyncAPI(
        runtime.broker,
        title=f"taper {runtime.service}",
        version="0.1.0",
        description=f"Events {runtime.service} produces (via its outbox) and consumes.",
    )
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    messages = components.setdefault("messages", {})
    title = runtime.subscriber.title
    for topic in runtime.consumed_topics:
        event_schema = topic.event.model_json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
        for name, definition in event_schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(topic.event.__name__, event_schema)
        # FastStream names the channel after the title alone when there is only one topic.
        message = (
            messages.get(f"{title}:{topic.name}:SubscribeMessage")
            or messages[f"{title}:SubscribeMessage"]
        )
        message["payload"] = {"$ref": f"#/components/schemas/{topic.event.__name__}"}
    # The subscriber reads raw bytes (so poison messages reach the DLQ); its shared byte-string
    # payload is replaced above by each topic's event schema.
    schemas.pop(f"{title}:Message:Payload", None)
    return doc


def render_all() -> dict[str, str]:
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as db_dir:
        for service, make in doc_runtimes().items():
            doc = document(make(db_dir))
            out[service] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for service, text in render_all().items():
        path = OUT_DIR / f"{service}.json"
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.exists() or path.read_text() != text:
            stale.append(service)
    if stale:
        print(f"stale AsyncAPI documents: {', '.join(stale)}; run `make asyncapi`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
