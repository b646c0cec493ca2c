#!/usr/bin/env bash
# The JavaScript client's checks: npm ci, type check + build, the committed dist/ equals a
# fresh build (the gateway embeds dist/fanline.js), unit tests (node:test, fake sockets),
# integration tests against the real gateway binary (target/release/fanline or $FANLINE_BIN),
# and the headless-Chromium browser tests (/usr/bin/chromium or $CHROMIUM; screenshots in
# target/jsclient-artifacts/).
#
#   clients/js/test.sh            # everything
#   clients/js/test.sh unit       # npm ci, build check, unit tests only
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# A relative FANLINE_BIN is the caller's (scripts/test.sh passes target/release/fanline).
case "${FANLINE_BIN:-}" in
    "") FANLINE_BIN="$repo/target/release/fanline" ;;
    /*) ;;
    *) FANLINE_BIN="$PWD/$FANLINE_BIN" ;;
esac
export FANLINE_BIN
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
fresh="$repo/target/jsclient-dist-check"
node build.mjs "$fresh"
if ! diff -r dist "$fresh"; then
    echo "clients/js/dist differs from a fresh build: run 'npm run build' in clients/js and commit dist/" >&2
    exit 1
fi
npm test
[ "${1:-all}" = unit ] && exit 0
npm run test:integration
npm run test:browser
