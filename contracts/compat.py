"""Is a new event schema wire-compatible with its committed snapshot?

``schema_for`` gives a topic's JSON Schema; ``breaking_changes`` compares two such schemas and
names every change that needs a new ``.v<major+1>`` topic instead. Pure functions, no I/O: the
``contracts.snapshot`` CLI and ``tests/contract`` read and write the files.

The schema is pydantic's *serialization* schema: it describes the bytes ``Event.to_bytes()`` puts
on the wire (e.g. a ``Decimal`` is a JSON string), which is what every consumer reads, in any
language. The validation schema describes what pydantic *accepts* (a ``Decimal`` as number or
string, lax coercions), a property of one Python reader rather than of the contract. The cost:
constraints pydantic only renders in validation mode (``Decimal`` bounds and digits) are not
snapshotted.

The rule is *full* compatibility, because a topic is read both by consumers older than its
producer and, on replay of retained events, by consumers newer than the events. So for a field
both schemas have, any change to its type, format, enum values or constraints is breaking, in
either direction: a widened enum or constraint lets a new producer emit values an old consumer
rejects; a narrowed one makes a new consumer reject old events. Removing (or renaming) a field,
adding a required field, or making an optional field required is breaking. Adding an optional
field is fine (consumers ignore unknown fields), and so is required -> optional, since pydantic
always serialises every field. Titles, descriptions, examples and defaults are documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contracts.topics import Topic

Schema = dict[str, Any]

CONSTRAINTS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
)


def schema_for(topic: Topic) -> Schema:
    """The JSON Schema of the event ``topic`` carries, tagged with the topic's name."""
    return {**topic.event.model_json_schema(mode="serialization"), "x-topic": topic.name}


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every change from ``old`` to ``new`` that breaks a reader of either; [] if compatible."""
    problems = []
    if old.get("x-topic") != new.get("x-topic"):
        problems.append(f"topic changed {old.get('x-topic')} -> {new.get('x-topic')}")
    return problems + _compare(old, new, old, new, "", set())


def _compare(
    old: Schema, new: Schema, old_root: Schema, new_root: Schema, path: str, seen: set
) -> list[str]:
    key = (old.get("$ref"), new.get("$ref"))
    if key[0] and key[1]:  # recursive models: compare each pair of definitions once
        if key in seen:
            return []
        seen = seen | {key}
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    where = f"field '{path}'" if path else "schema root"

    old_type, new_type = _type_label(old, old_root), _type_label(new, new_root)
    if old_type != new_type:
        return [f"{where} type changed {old_type} -> {new_type}"]

    problems = []
    old_enum, new_enum = _enum(old), _enum(new)
    if old_enum is not None or new_enum is not None:
        removed = sorted(map(repr, (old_enum or set()) - (new_enum or set())))
        added = sorted(map(repr, (new_enum or set()) - (old_enum or set())))
        if removed:
            problems.append(f"{where} enum value(s) removed: {', '.join(removed)}")
        if added:
            problems.append(
                f"{where} enum value(s) added: {', '.join(added)} (old consumers may reject them)"
            )
    for constraint in CONSTRAINTS:
        if old.get(constraint) != new.get(constraint):
            problems.append(
                f"{where} constraint '{constraint}' changed "
                f"{old.get(constraint)!r} -> {new.get(constraint)!r}"
            )

    def child(name: str) -> str:  # reasons -> reasons[] (items) -> reasons[].code
        return f"{path}.{name}" if path and name[0] not in "[{" else path + name

    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    for name in old_props:
        if name not in new_props:
            problems.append(f"field '{child(name)}' removed")
    for name in new_props:
        if name not in old_props and name in new_required:
            problems.append(f"field '{child(name)}' added as required")
        elif name in new_required and name not in old_required:
            problems.append(f"field '{child(name)}' changed optional -> required")
    for name in old_props.keys() & new_props.keys():
        problems += _compare(
            old_props[name], new_props[name], old_root, new_root, child(name), seen
        )

    for keyword, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(old.get(keyword), dict) and isinstance(new.get(keyword), dict):
            problems += _compare(
                old[keyword], new[keyword], old_root, new_root, child(suffix), seen
            )

    # Same variant labels (checked above), so pair the variants up by label.
    old_variants, new_variants = _variants(old, old_root), _variants(new, new_root)
    for (_, old_variant), (_, new_variant) in zip(old_variants, new_variants, strict=True):
        problems += _compare(old_variant, new_variant, old_root, new_root, path, seen)
    return sorted(problems)


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Follow ``$ref`` into ``$defs``; keywords beside the ``$ref`` win over the definition's."""
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**root["$defs"][name], **siblings}
    return schema


def _variants(schema: Schema, root: Schema) -> list[tuple[str, Schema]]:
    """The ``anyOf``/``oneOf`` alternatives, sorted by type label (``null`` last)."""
    options = schema.get("anyOf") or schema.get("oneOf") or []
    labelled = [(_type_label(_resolve(o, root), root), o) for o in options]
    return sorted(labelled, key=lambda pair: (pair[0] == "null", pair[0]))


def _type_label(schema: Schema, root: Schema) -> str:
    """A readable type: ``string(uuid)``, ``array``, ``object``, ``string|null``..."""
    schema = _resolve(schema, root)
    if "anyOf" in schema or "oneOf" in schema:
        return "|".join(label for label, _ in _variants(schema, root))
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "|".join(sorted(kind))
    if kind is None:
        kind = "object" if "properties" in schema else "any"
    return f"{kind}({schema['format']})" if "format" in schema else kind


def _enum(schema: Schema) -> set | None:
    if "const" in schema:
        return {schema["const"]}
    return set(schema["enum"]) if "enum" in schema else None
