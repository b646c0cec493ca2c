#!/usr/bin/env bash
# Handshake throughput: new WebSocket connections per second through limits + auth + 101 +
# welcome, for anonymous, HS256 and RS256 JWT verification, measured side by side in one run
# with the same generator (fanline-bench, a separate process). Appends a table to RESULTS.md.
#
#   perf/handshake.sh [CONNS]      # default 4000 connections per mode
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CONNS="${1:-4000}"
PORT=48180
ADMIN=48191
OUT="$ROOT/perf/out/handshake"
mkdir -p "$OUT"
cargo build --release -p fanline --bin fanline --example mint_jwt -p fanline-bench >/dev/null 2>&1
SECRET="test-only-hmac-secret-0123456789abcdef"
RSA_KEY="$ROOT/tests/fixtures/test-only-rsa1.key.pem"
RSA_PUB="$ROOT/tests/fixtures/test-only-rsa1.pub.pem"

config() { # config MODE -> path of a config file
    local f="$OUT/$1.toml"
    printf '[kafka]\nmode = "direct"\n[log]\nlevel = "warn"\n' >"$f"
    case $1 in
        anonymous) ;;
        hs256) printf '[[auth.jwt]]\nalgorithms = ["HS256"]\nsecret = "%s"\n' "$SECRET" >>"$f" ;;
        rs256) printf '[[auth.jwt]]\nalgorithms = ["RS256"]\npublic_key_pem = "%s"\n' "$RSA_PUB" >>"$f" ;;
    esac
    echo "$f"
}

token() {
    case $1 in
        anonymous) echo "" ;;
        hs256) target/release/examples/mint_jwt HS256 "$SECRET" ;;
        rs256) target/release/examples/mint_jwt RS256 "$RSA_KEY" ;;
    esac
}

rows=()
load_before=$(uptime)
for mode in anonymous hs256 rs256; do
    target/release/fanline --config "$(config $mode)" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
        >"$OUT/$mode.log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do curl -sf "127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
    t=$(token $mode)
    timeout 120 target/release/fanline-bench --url "ws://127.0.0.1:$PORT/v1/ws" \
        --publish "http://127.0.0.1:$ADMIN/v1/publish" --conns "$CONNS" --rate 0 --duration 1 \
        --settle 1 --server-pid "$pid" ${t:+--token "$t"} --json "$OUT/$mode.json" >"$OUT/$mode.txt" 2>&1 || true
    kill -INT $pid; wait $pid 2>/dev/null || true
    trap - EXIT
    cps=$(grep -E '^connects/s|connect rate' "$OUT/$mode.txt" | grep -Eo '[0-9]+(\.[0-9]+)?' | head -1)
    rows+=("| $mode | ${cps:-n/a} |")
    echo "$mode: ${cps:-n/a} connects/s"
done
{
    echo
    echo "### Handshake throughput, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- command: \`perf/handshake.sh $CONNS\` (git $(git rev-parse --short HEAD)); generator: fanline-bench, separate process, loopback"
    echo "- load before: $load_before"
    echo "- load after: $(uptime)"
    echo
    echo "| auth | new connections/s (limits + auth + 101 + welcome) |"
    echo "|---|---|"
    printf '%s\n' "${rows[@]}"
} >>"$ROOT/perf/RESULTS.md"
