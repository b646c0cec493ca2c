#!/usr/bin/env bash
# The Python client's tests: a venv under the repo's ignored target/, the package and its test
# dependencies from PyPI, then pytest (unit tests + integration tests against the real gateway
# binary, target/release/fanline or $FANLINE_BIN), after mypy --strict on the package.
#
#   clients/python/test.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/target/pyclient-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$here[test]"
FANLINE_BIN="${FANLINE_BIN:-$repo/target/release/fanline}"
case "$FANLINE_BIN" in /*) ;; *) FANLINE_BIN="$PWD/$FANLINE_BIN" ;; esac # relative to the caller
export FANLINE_BIN
cd "$here"
"$venv/bin/python" -m mypy --strict src/fanline
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
