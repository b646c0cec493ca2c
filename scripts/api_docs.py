#!/usr/bin/env python3
"""Validates the API documents (run by scripts/api-docs.sh inside its venv).

- docs/openapi.yaml against the OpenAPI 3.1 schema (openapi-spec-validator);
- docs/openapi.json (what admin `GET /openapi.json` serves) equals the YAML, or is rewritten
  from it with --write;
- docs/asyncapi.yaml against the AsyncAPI 3.0.0 JSON schema (@asyncapi/specs), every local
  $ref resolves, and every message example validates against its payload schema.
"""
import json
import pathlib
import sys

import jsonschema
import referencing
import yaml
from openapi_spec_validator import validate

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def openapi(write: bool) -> list[str]:
    doc = yaml.safe_load((DOCS / "openapi.yaml").read_text())
    validate(doc)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    out = DOCS / "openapi.json"
    if write:
        out.write_text(text)
        return []
    if not out.exists() or json.loads(out.read_text()) != doc:
        return ["docs/openapi.json differs from docs/openapi.yaml: run scripts/api-docs.sh --write"]
    if out.read_text() != text:
        return ["docs/openapi.json is not in canonical form: run scripts/api-docs.sh --write"]
    return []


def pointer(doc, ref: str):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def local_refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.append(v)
            else:
                local_refs(v, out)
    elif isinstance(node, list):
        for v in node:
            local_refs(v, out)


def resolve_all(doc, node):
    """A copy of `node` with every local $ref replaced by its target."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return resolve_all(doc, pointer(doc, node["$ref"]))
        return {k: resolve_all(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_all(doc, v) for v in node]
    return node


def asyncapi(specs: pathlib.Path) -> list[str]:
    errors = []
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    schema = json.loads((specs / "3.0.0.json").read_text())
    registry = referencing.Registry().with_resource(
        schema["$id"], referencing.Resource.from_contents(schema, referencing.jsonschema.DRAFT7)
    )
    for d in schema.get("definitions", {}).values():
        if isinstance(d, dict) and "$id" in d:
            registry = registry.with_resource(
                d["$id"], referencing.Resource.from_contents(d, referencing.jsonschema.DRAFT7)
            )
    v = jsonschema.Draft7Validator(schema, registry=registry)
    for e in sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        errors.append(f"asyncapi.yaml {'/'.join(map(str, e.absolute_path))}: {e.message}")
    refs = []
    local_refs(doc, refs)
    for r in refs:
        try:
            pointer(doc, r)
        except (KeyError, TypeError):
            errors.append(f"asyncapi.yaml: unresolved $ref {r}")
    if errors:
        return errors
    for name, msg in doc["components"]["messages"].items():
        payload = resolve_all(doc, msg["payload"])
        for ex in msg.get("examples", []):
            for e in jsonschema.Draft7Validator(payload).iter_errors(ex["payload"]):
                errors.append(f"asyncapi.yaml message {name} example: {e.message}")
    return errors


def main() -> int:
    write = "--write" in sys.argv
    specs = pathlib.Path(sys.argv[sys.argv.index("--specs") + 1])
    errors = openapi(write) + asyncapi(specs)
    for e in errors:
        print(e, file=sys.stderr)
    if not errors:
        print("openapi.yaml, openapi.json and asyncapi.yaml: OK")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
