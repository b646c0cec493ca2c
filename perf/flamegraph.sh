#!/usr/bin/env bash
# Profiles a server while a scenario runs and renders a flamegraph:
#   perf/flamegraph.sh SCENARIO [--server fanline|fanline-epoll|fanline-uring|naive|uws]
#                      [--secs N] [--delay S]
# -> perf/out/flamegraph-SCENARIO[-SERVER].svg (plus .folded and a top-25 self-time list on
# stdout), and over the same window `perf stat` of the server (task-clock, context switches,
# migrations, page faults; cycles and instructions where the CPU exposes them) divided by the
# deliveries the clients counted: perf/out/perfstat-SCENARIO-SERVER.txt.
#
# Samples with `perf record -F 999 -g -e cpu-clock -p PID` (hardware counters are not available
# in this VM; cpu-clock is). Stacks through Rust code without frame pointers are short with
# plain -g; set PERF_CALLGRAPH=dwarf for full stacks (bigger files, slower), or build with
# RUSTFLAGS="-C force-frame-pointers=yes". Installs linux-perf (apt) and inferno (cargo) if
# missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SC="${1:?usage: perf/flamegraph.sh SCENARIO [--server NAME] [--secs N] [--delay S]}"
shift
SERVER=fanline
SECS=10
DELAY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --server) SERVER="$2"; shift ;;
        --secs) SECS="$2"; shift ;;
        --delay) DELAY="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
F="$ROOT/perf/scenarios/$SC.toml"
[ -f "$F" ] || { echo "no scenario $F" >&2; exit 2; }

command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    cargo install inferno --locked -j1
fi
export PATH="$HOME/.cargo/bin:$PATH"

OUT="$ROOT/perf/out"
mkdir -p "$OUT"
SUFFIX=""; [ "$SERVER" != fanline ] && SUFFIX="-$SERVER"
DATA="$OUT/perf-$SC$SUFFIX.data"
SVG="$OUT/flamegraph-$SC$SUFFIX.svg"
STAT="$OUT/perfstat-$SC-$SERVER.txt"
trap 'cleanup; [ -n "${BENCH_PID:-}" ] && kill "$BENCH_PID" 2>/dev/null; true' EXIT
trap 'exit 130' INT TERM

(cd "$ROOT" && nice cargo build --release -p fanline --bin fanline -p fanline-bench -j1) >&2
start_server "$SERVER" "$OUT/flamegraph-$SC-$SERVER.log"
(
    trap 'for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null; done; exit 143' TERM
    run_bench "$F" "$SERVER" "$OUT/flamegraph-$SC-$SERVER.json"
) >"$OUT/flamegraph-$SC-bench.txt" 2>&1 &
BENCH_PID=$!
# Start sampling once the clients are connected and publishing has begun.
if [ -z "$DELAY" ]; then
    conns="$(scenario_get "$F" conns)"
    settle="$(scenario_get "$F" settle)"
    DELAY=$(( 2 + ${conns:-100} / 1000 + ${settle:-1} ))
fi
sleep "$DELAY"
echo "== perf record -F 999 -g -p $SERVER_PID for $SECS s" >&2
perf stat -e task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions \
    -x, -o "$STAT.raw" -p "$SERVER_PID" -- sleep "$SECS" &
STAT_PID=$!
perf record -F 999 -e cpu-clock --call-graph "${PERF_CALLGRAPH:-fp}" -p "$SERVER_PID" \
    -o "$DATA" -- sleep "$SECS" >&2 2>"$OUT/perf-record-$SC.log" || true
wait "$STAT_PID" || true
wait "$BENCH_PID" || true
BENCH_PID=""
stop_server
FOLDED="$OUT/flamegraph-$SC$SUFFIX.folded"
perf script -i "$DATA" 2>/dev/null | inferno-collapse-perf >"$FOLDED"
inferno-flamegraph --title "$SERVER: $SC (cpu-clock, 999 Hz)" <"$FOLDED" >"$SVG"
echo "wrote $SVG" >&2
# perf stat per delivery: the clients' delivery rate over the run times the sampled window.
rate=$(python3 - "$OUT/flamegraph-$SC-$SERVER.json" <<'PY' 2>/dev/null || echo 0
import json, sys
r = json.load(open(sys.argv[1]))
print(r["deliveries"] / r["window_s"] if r.get("window_s") else 0)
PY
)
{
    echo "perf stat of $SERVER under $SC for $SECS s (load: $(cut -d' ' -f1-3 /proc/loadavg)); deliveries/s seen by the clients: $rate"
    awk -F, -v secs="$SECS" -v rate="$rate" '$3 != "" {
        v = $1; ev = $3; d = rate * secs
        if (v ~ /not/) { printf "%-18s %s\n", ev, v; next }
        if (d > 0 && ev == "task-clock") printf "%-18s %14.0f ms  %8.2f us per delivery\n", ev, v, 1000 * v / d
        else if (d > 0) printf "%-18s %14.0f  %10.4f per delivery\n", ev, v, v / d
        else printf "%-18s %14.0f\n", ev, v }' "$STAT.raw"
} | tee "$STAT"
echo "top self time (leaf frames): weight (cpu-clock ns), share"
awk '{n=$NF; $NF=""; k=split($0, f, ";"); leaf=f[k]; gsub(/ +$/, "", leaf); s[leaf]+=n; t+=n}
     END {for (l in s) printf "%7d %5.1f%%  %s\n", s[l], 100*s[l]/t, l}' \
    "$FOLDED" | sort -rn | head -25
