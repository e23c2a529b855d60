"""The documented JSON shapes of ``criu-cr --format json`` (docs/schemas/), and a small validator.

The validator knows the part of JSON Schema (2020-12) the schemas use:
``type`` (one or a list), ``enum``, ``const``, ``minimum``, ``properties``,
``required``, ``additionalProperties`` (false or a schema), ``items``, ``pattern``,
``$ref`` to another file of docs/schemas or to ``#/$defs/NAME`` of the same file.
A keyword it does not know fails loudly rather than passing silently.
``jsonschema`` is not a dependency of criu-cr, and this much is enough to pin the shapes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"

#: The schema of each command's JSON result (docs/cli-json.md has one section per entry).
COMMAND_SCHEMAS = {
    "state": "state.json", "list": "list.json", "ps": "ps.json", "check": "check.json",
    "version": "version.json", "checkpoint": "checkpoint.json", "restore": "restore.json",
    "create": "state.json", "start": "state.json", "run": "state.json", "pause": "state.json",
    "resume": "state.json", "adopt": "state.json", "kill": "kill.json", "delete": "delete.json",
    "dump": "dump.json", "restore-tree": "restore-tree.json", "inspect": "inspect.json", "diff": "diff.json",
}

#: Schemas of what is not one command's result.
OTHER_SCHEMAS = ("error.json", "log.json", "batch.json")

#: Commands whose output is not JSON, and why.
NO_JSON = {
    "exec": "prints what the command in the container writes; exits with its status",
    "logs": "prints what the container wrote",
    "receive": "a server: one line per migration received",
    "migrate": "not converted yet: prints the pid on the destination",
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "null": (type(None),),
    "integer": (int,), "number": (int, float),
}


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def _is(value: Any, type_name: str) -> bool:
    if type_name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[type_name])


_KNOWN = {"type", "enum", "const", "minimum", "properties", "required", "additionalProperties", "items", "pattern",
          "$ref", "$schema", "$id", "title", "description", "$defs"}


def errors(value: Any, schema: dict[str, Any], where: str = "$", root: dict[str, Any] | None = None) -> list[str]:
    """Where ``value`` breaks ``schema``, as "path: problem" lines ([] when it fits)."""
    root = schema if root is None else root
    unknown = set(schema) - _KNOWN
    assert not unknown, f"schema keyword(s) this validator does not know: {sorted(unknown)}"
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref.startswith("#/$defs/"):
            return errors(value, root["$defs"][ref.removeprefix("#/$defs/")], where, root)
        target = load(ref)
        return errors(value, target, where, target)
    out: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is(value, t) for t in names):
            return [f"{where}: {type(value).__name__} {value!r:.60} is not {'/'.join(names)}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        out.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        out.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += errors(item, props[key], f"{where}.{key}", root)
            elif extra is False:
                out.append(f"{where}: {key!r} is not documented")
            elif isinstance(extra, dict):
                out += errors(item, extra, f"{where}.{key}", root)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(item, schema["items"], f"{where}[{i}]", root)
    return out


def check(value: Any, schema_name: str) -> None:
    """Fail (AssertionError naming every problem) unless ``value`` fits docs/schemas/``schema_name``."""
    found = errors(value, load(schema_name))
    assert not found, f"{schema_name}:\n" + "\n".join(found)
