#!/usr/bin/env bash
# Validates docs/openapi.yaml (OpenAPI 3.1), checks docs/openapi.json is generated from it, and
# validates docs/asyncapi.yaml (AsyncAPI 3.0). Tools go to target/ (a venv with
# openapi-spec-validator from PyPI, @asyncapi/specs from npm); nothing is installed globally.
#
#   scripts/api-docs.sh           # check
#   scripts/api-docs.sh --write   # regenerate docs/openapi.json from docs/openapi.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/docs-venv
specs=target/asyncapi/node_modules/@asyncapi/specs/schemas
if ! "$venv/bin/python" -c 'import openapi_spec_validator, jsonschema, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'openapi-spec-validator==0.9.*'
fi
if [ ! -f "$specs/3.0.0.json" ]; then
    mkdir -p target/asyncapi
    npm install --prefix target/asyncapi --no-audit --no-fund --silent @asyncapi/specs@6.11.1
fi
"$venv/bin/python" scripts/api_docs.py --specs "$specs" "$@"
