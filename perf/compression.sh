#!/usr/bin/env bash
# permessage-deflate cost: the same fan-out with compression off (clients do not offer it) and
# on (clients offer it, fanline compresses once per event), ~1 KiB JSON events; and a
# per-socket compressor for contrast: uWebSockets with DEDICATED_COMPRESSOR (every publish
# compressed again for each socket; target/peers/uws-deflate-peer, built here when missing).
#
#   perf/compression.sh [CONNS] [RATE] [DURATION] [PAYLOAD_BYTES]    defaults 10000 10 20 1000
# Env: PROCS (generator processes, default 2), SOURCES (loopback source IPs per process, 2).
# Prints a markdown table (bytes on loopback, server CPU-s per 1M deliveries, p50/p99) and the
# raw results under perf/out/compression-<stamp>/. Bytes on the wire = loopback rx bytes over
# the run (TCP/IP headers included; both directions; publish traffic included, identical in
# both runs). Needs target/release/{fanline,fanline-bench}.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

CONNS="${1:-10000}" RATE="${2:-10}" DURATION="${3:-20}" PAYLOAD="${4:-1000}"
PROCS="${PROCS:-2}" SOURCES="${SOURCES:-2}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/perf/out/compression-$STAMP"
mkdir -p "$OUT"
trap 'cleanup' EXIT
trap 'cleanup; exit 130' INT TERM

lo_rx() { awk '$1 == "lo:" { print $2 }' /proc/net/dev; }

# run LABEL SERVER TRANSPORT: one measured run against a fresh SERVER; writes $OUT/LABEL.json
# and $OUT/LABEL.bytes.
run() {
    local label="$1" server="$2" tr="$3" per=$((CONNS / PROCS)) start pids=() parts=() i rc=0
    start_server "$server" "$OUT/$label.server.log" || return 1
    start=$(($(date +%s) + 8 + per / 400))
    local before; before="$(lo_rx)"
    for ((i = 0; i < PROCS; i++)); do
        local pub="none"
        [ "$i" -eq 0 ] && pub="http://127.0.0.1:$ADMIN_PORT/v1/publish"
        "$BENCH" --url "ws://127.0.0.1:$WS_PORT/v1/ws" --transport "$tr" --payload-bytes "$PAYLOAD" \
            --server-pid "$SERVER_PID" --label "$label" --conns "$per" --sources "$SOURCES" \
            --source-offset $((i * SOURCES)) --rate "$RATE" --duration "$DURATION" --settle 2 --drain 3 \
            --start-at "$start" --publish "$pub" --json "$OUT/$label.$i.json" --quiet \
            >"$OUT/$label.$i.txt" 2>&1 &
        pids+=($!); parts+=("$OUT/$label.$i.json")
    done
    BENCH_PIDS=("${pids[@]}")
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    BENCH_PIDS=()
    echo $(($(lo_rx) - before)) >"$OUT/$label.bytes"
    stop_server
    "$BENCH" merge "${parts[@]}" --out "$OUT/$label.json" --label "$label" >/dev/null || rc=1
    return $rc
}

echo "- command: \`perf/compression.sh $CONNS $RATE $DURATION $PAYLOAD\` (PROCS=$PROCS)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); git: $(cd "$ROOT" && git rev-parse --short HEAD)"
echo "- load before: $(uptime | sed 's/^ *//')"
[ -x "$PEERS/uws-deflate-peer" ] || bash "$ROOT/perf/peers/build.sh" uws-deflate >&2
RUNS=("ws fanline ws" "ws-deflate fanline ws-deflate" "uws-deflate uws-deflate ws-deflate")
STATUS=0
for r in "${RUNS[@]}"; do
    read -r label server tr <<<"$r"
    run "$label" "$server" "$tr" || { echo "- $label: run FAILED (see $OUT/$label.*.txt)"; STATUS=1; }
done
echo "- load after: $(uptime | sed 's/^ *//')"
echo
"$BENCH" compare "$OUT/ws.json" "$OUT/ws-deflate.json" "$OUT/uws-deflate.json" || STATUS=1
echo
echo "| run | loopback bytes | bytes per delivery |"
echo "|---|---|---|"
for tr in ws ws-deflate uws-deflate; do
    d="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('deliveries', 0))" "$OUT/$tr.json" 2>/dev/null || echo 0)"
    b="$(cat "$OUT/$tr.bytes" 2>/dev/null || echo 0)"
    per="n/a"; [ "${d:-0}" -gt 0 ] 2>/dev/null && per=$((b / d))
    echo "| $tr | $b | $per |"
done
exit $STATUS
