"""`genbac schema`: the JSON Schema of the IR and of plan.json, byte-stable, and what genbac writes
validates against it.

jsonschema is not a dependency of genbac, so the keywords pydantic emits are checked by the small
validator below; a test shows that it rejects broken documents, so a pass means something.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest

from genbac.cli import main
from genbac.spec.lower import load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.genba"))

# JSON Schema 2020-12 keywords (validation and annotations) a pydantic schema may use
KEYWORDS = {"$defs", "$ref", "title", "description", "default", "examples", "deprecated", "type",
            "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
            "maxItems", "uniqueItems", "anyOf", "allOf", "oneOf", "enum", "const", "minimum",
            "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
            "maxLength", "pattern", "format", "readOnly", "writeOnly"}
TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}


def schema_text(capsys, *args) -> str:
    assert main(["schema", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def schemas() -> dict[str, str]:
    out = {}
    for name, args in [("spec", []), ("plan", ["--plan"])]:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(["schema", *args]) == 0
        out[name] = buffer.getvalue()
    return out


def subschemas(schema: dict):
    """Every schema nested in `schema` (where a keyword takes a schema or a list of them)."""
    yield schema
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            yield from subschemas(sub)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield from subschemas(schema[key])
    for key in ("prefixItems", "anyOf", "allOf", "oneOf"):
        for sub in schema.get(key, []):
            yield from subschemas(sub)


def is_type(value, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str, "boolean": bool,
                              "null": type(None)}[name])


def errors(value, schema: dict, root: dict, where: str = "$") -> list[str]:
    """Why `value` does not validate against `schema` (empty if it does)."""
    if "$ref" in schema:
        return errors(value, root["$defs"][schema["$ref"].removeprefix("#/$defs/")], root, where)
    found = []
    if "anyOf" in schema and all(errors(value, s, root, where) for s in schema["anyOf"]):
        found.append(f"{where}: {value!r} matches no alternative")
    for s in schema.get("allOf", []):
        found += errors(value, s, root, where)
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} is not {schema['const']!r}")
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(is_type(value, t) for t in types):
            return found + [f"{where}: {value!r} is not {' or '.join(types)}"]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{where}: no {k!r}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], root, f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                found += errors(item, extra, root, f"{where}.{key}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if isinstance(sub, dict):
                found += errors(item, sub, root, f"{where}[{i}]")
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            found.append(f"{where}: {len(value)} items")
    if is_type(value, "number"):
        for key, bad in [("minimum", lambda v, b: v < b), ("maximum", lambda v, b: v > b),
                         ("exclusiveMinimum", lambda v, b: v <= b),
                         ("exclusiveMaximum", lambda v, b: v >= b)]:
            if key in schema and bad(value, schema[key]):
                found.append(f"{where}: {value!r} fails {key} {schema[key]}")
    return found


# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, title", [("spec", "Spec"), ("plan", "Plan")])
def test_schema_is_byte_stable_sorted_json(schemas, capsys, name, title):
    text = schemas[name]
    assert text.endswith("}\n") and text == schema_text(capsys, *(["--plan"] if name == "plan" else []))
    schema = json.loads(text)
    assert text == json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert schema["title"] == title and schema["type"] == "object"


@pytest.mark.parametrize("name", ["spec", "plan"])
def test_schema_is_json_schema(schemas, name):
    schema = json.loads(schemas[name])
    nested = list(subschemas(schema))
    assert len(nested) > 50
    for sub in nested:
        assert isinstance(sub, dict) and set(sub) <= KEYWORDS, set(sub) - KEYWORDS
        kinds = sub.get("type", [])
        assert set(kinds if isinstance(kinds, list) else [kinds]) <= TYPES
        if "$ref" in sub:
            assert sub["$ref"].startswith("#/$defs/")
            assert sub["$ref"].removeprefix("#/$defs/") in schema["$defs"], sub["$ref"]
        assert set(sub.get("required", [])) <= set(sub.get("properties", {}))
    # spans never reach serialised output, so they are not in the schema either
    assert not [s for s in nested if {"span", "spans"} & set(s.get("properties", {}))]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_ir_of_every_example_validates(schemas, path):
    spec, _ = load(path.read_text(encoding="utf-8"), str(path))
    schema = json.loads(schemas["spec"])
    assert errors(spec.to_json(), schema, schema) == []


def test_a_compiled_plan_json_validates_and_broken_ones_do_not(schemas, tmp_path, capsys):
    assert main(["compile", str(ROOT / "examples" / "llama-genba-10b.genba"),
                 "-o", str(tmp_path / "out")]) == 0
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    schema = json.loads(schemas["plan"])
    assert errors(plan, schema, schema) == []

    broken = copy.deepcopy(plan)
    del broken["schedule"]["total_steps"]
    broken["growth"]["layers"] = "forty"
    broken["spec"]["train"]["precision"] = "fp8"
    broken["surprise"] = 1
    broken["schedule"]["phases"][0]["shares"][0]["sequences"] = -0.5
    found = errors(broken, schema, schema)
    for expected in ["$.schedule: no 'total_steps'", "$.growth.layers: 'forty' is not integer",
                     "$.spec.train.precision: 'fp8'", "$: unexpected 'surprise'",
                     "$.schedule.phases[0].shares[0].sequences: -0.5 is not integer"]:
        assert any(f.startswith(expected) for f in found), (expected, found)
