#!/usr/bin/env bash
# RFC 6455 conformance: Autobahn|Testsuite fuzzingclient against a fanline echo route.
#
#   scripts/autobahn.sh                 # server already listening on $AUTOBAHN_URL
#   FANLINE_BIN=target/release/fanline scripts/autobahn.sh      # start/stop it here
#   FANLINE_BIN=target/release/examples/ws_echo scripts/autobahn.sh
#
# Env: AUTOBAHN_URL (default ws://127.0.0.1:9001/echo), FANLINE_BIN (optional binary to start
# with `--listen 127.0.0.1:9001 --admin-listen 127.0.0.1:0 --echo-path /echo`),
# AUTOBAHN_CASES (optional JSON list overriding "cases", e.g. '["1.*","2.*"]').
# Gate and diff: scripts/autobahn_check.py against tests/autobahn/expected.json.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PY2="${PY2:-/root/.pyenv/versions/2.7.18/bin/python}"
VENV="$ROOT/target/autobahn-venv"
REPORT="$ROOT/target/autobahn-report"
URL="${AUTOBAHN_URL:-ws://127.0.0.1:9001/echo}"
SPEC_IN="$ROOT/tests/autobahn/fuzzingclient.json"
SPEC_RUN="$ROOT/target/autobahn-fuzzingclient.json"

# 1. Autobahn (Python 2.7) in a cached virtualenv, created only if missing.
if [ ! -x "$VENV/bin/wstest" ]; then
    echo "autobahn: creating $VENV (once, ~60 s)"
    "$PY2" -m pip install --quiet "virtualenv<20.22"
    rm -rf "$VENV"
    "$PY2" -m virtualenv --quiet "$VENV"
    "$VENV/bin/pip" install --quiet autobahntestsuite==25.10.1
fi

# 2. Optionally start the server under test; always stop it on exit.
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

if [ -n "${FANLINE_BIN:-}" ]; then
    # Limits still apply on the echo route; Autobahn's 9.x cases send up to 16 MiB messages
    # and thousands of messages back to back, so raise those two limits for the run.
    FANLINE_LIMITS_MAX_INBOUND_BYTES=16777216 FANLINE_LIMITS_INBOUND_MSGS_PER_S=1000000 \
    FANLINE_LIMITS_INBOUND_BURST=1000000 FANLINE_KAFKA_MODE=direct \
    "$FANLINE_BIN" --listen 127.0.0.1:9001 --admin-listen 127.0.0.1:0 --echo-path /echo \
        >"$ROOT/target/autobahn-server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 50); do
        if (exec 3<>/dev/tcp/127.0.0.1/9001) 2>/dev/null; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$ROOT/target/autobahn-server.log"; exit 1; }
        sleep 0.1
    done
fi

# 3. Run the suite with the URL (and optional case list) substituted into the committed spec.
rm -rf "$REPORT"
mkdir -p "$REPORT"
"$PY2" - "$SPEC_IN" "$SPEC_RUN" "$URL" "$REPORT" "${AUTOBAHN_CASES:-}" <<'EOF'
import json, sys
src, dst, url, report, cases = sys.argv[1:6]
spec = json.load(open(src))
spec["servers"][0]["url"] = url
spec["outdir"] = report
if cases:
    spec["cases"] = json.loads(cases)
json.dump(spec, open(dst, "w"), indent=2)
EOF

start=$(date +%s)
(cd "$ROOT/target" && timeout 900 "$VENV/bin/wstest" -m fuzzingclient -s "$SPEC_RUN")
echo "autobahn: suite took $(( $(date +%s) - start )) s"

# 4. Gate + diff against the committed expectations.
"$PY2" "$ROOT/scripts/autobahn_check.py" "$REPORT/index.json" "$ROOT/tests/autobahn/expected.json"
