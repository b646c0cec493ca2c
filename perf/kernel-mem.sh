#!/usr/bin/env bash
# Measures kernel memory per idle loopback socket end: /proc/meminfo Slab and the TCP line of
# /proc/net/sockstat before and while N idle clients are connected to a server (default: the
# uWS peer, whose own memory per connection is tiny). Each connection has two socket ends on
# loopback (client and server), so the slab delta is divided by 2N. Other work on the box adds
# noise: run it several times.
#   perf/kernel-mem.sh [N=10000] [server=uws]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N="${1:-10000}"
SRV="${2:-uws}"
trap 'cleanup' EXIT
trap 'exit 130' INT TERM
slab() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
start_server "$SRV" "$ROOT/perf/out/kernel-mem-$SRV.log"
before=$(slab); sock_before=$(grep '^TCP:' /proc/net/sockstat)
"$BENCH" --url "ws://127.0.0.1:$WS_PORT/v1/ws" --publish none --conns "$N" --sources 2 \
    --rate 0 --duration 1 --settle 10 --quiet >/dev/null 2>&1 &
BENCH_PIDS=($!)
sleep $(( 4 + N / 2000 ))
during=$(slab); sock_during=$(grep '^TCP:' /proc/net/sockstat)
wait "${BENCH_PIDS[0]}" || true
BENCH_PIDS=()
echo "sockstat before: $sock_before"
echo "sockstat during: $sock_during"
echo "Slab before ${before} KiB, during ${during} KiB, delta $((during - before)) KiB"
awk -v d=$((during - before)) -v n="$N" 'BEGIN {printf "kernel slab per idle socket end: %.2f KiB (%d connections, %d ends)\n", d / (2 * n), n, 2 * n}'
