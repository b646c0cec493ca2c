#!/usr/bin/env bash
# Runs the same fanline-bench scenario against fanline and its peers (naive tokio-tungstenite
# broadcast, uWebSockets), one server at a time on loopback, the generator(s) in separate
# processes, and appends a ratio table to perf/RESULTS.md.
#
#   perf/compare.sh --small                    CI smoke: scenario small, < ~2 min once built
#   perf/compare.sh broadcast-10k idle-10k     named scenarios from perf/scenarios/
#   perf/compare.sh --all                      every scenario except small (a recording run)
# Options: --servers "fanline naive uws" (also fanline-epoll, fanline-uring: one backend each)   --no-record (do not touch RESULTS.md)
#          --runs N (repeat each scenario N times; the table shows every run)
# Ports: FANLINE_BENCH_WS_PORT (28080), FANLINE_BENCH_ADMIN_PORT (29091).
# Exit: 0 when every run of a built server completed without loss; 1 when the harness broke
# or a peer lost events. A fanline that is not built or does not come up is reported, not fatal.
set -uo pipefail
ARGS="$*"
source "$(dirname "$0")/lib.sh"

SERVERS="fanline naive uws"
SCENARIOS=()
RECORD=1
RUNS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --small) SCENARIOS+=(small) ;;
        --all) SCENARIOS+=(idle-10k broadcast-10k saturation-1k slow-consumer step-up-19k) ;;
        --servers) SERVERS="$2"; shift ;;
        --no-record) RECORD=0 ;;
        --runs) RUNS="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) SCENARIOS+=("$1") ;;
    esac
    shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(small)

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/perf/out/$STAMP"
mkdir -p "$OUT"
trap 'cleanup' EXIT
trap 'cleanup; exit 130' INT TERM

echo "== building (release)" >&2
(cd "$ROOT" && nice cargo build --release -p fanline --bin fanline -p fanline-bench -j1) >&2 || exit 1
[ -x "$PEERS/release/naive-peer" ] || "$ROOT/perf/peers/build.sh" naive >&2 || true
[ -x "$PEERS/uws-peer" ] || "$ROOT/perf/peers/build.sh" uws >&2 || true

STATUS=0
REPORT="$OUT/report.md"
{
    echo "### Run $STAMP"
    echo
    echo "- command: \`perf/compare.sh $ARGS\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); git: $(cd "$ROOT" && git rev-parse --short HEAD)"
    echo "- load before: $(uptime | sed 's/^ *//')"
    echo "- machine: $(nproc) CPUs; servers: $SERVERS; ports $WS_PORT/$ADMIN_PORT (loopback)"
    echo
} >"$REPORT"

for sc in "${SCENARIOS[@]}"; do
    f="$ROOT/perf/scenarios/$sc.toml"
    [ -f "$f" ] || { echo "no scenario $f" >&2; STATUS=1; continue; }
    rates="$(scenario_get "$f" rates)"
    [ -n "$rates" ] || rates="-"
    for rate in $rates; do
        for ((run = 1; run <= RUNS; run++)); do
            tag="$sc"; [ "$rate" != "-" ] && tag="$sc-r$rate"; [ "$RUNS" -gt 1 ] && tag="$tag-$run"
            files=()
            notes=()
            for srv in $SERVERS; do
                echo "== $tag on $srv" >&2
                if ! start_server "$srv" "$OUT/$tag-$srv.log"; then
                    notes+=("$srv: not run (did not start; see $(basename "$OUT")/$tag-$srv.log)")
                    [[ "$srv" == fanline* ]] || STATUS=1
                    continue
                fi
                r="${rate#-}"
                rc=0
                run_bench "$f" "$srv" "$OUT/$tag-$srv.json" $r >"$OUT/$tag-$srv.txt" \
                    2>"$OUT/$tag-$srv.bench.err" || rc=$?
                cat "$OUT/$tag-$srv.txt" >&2
                stop_server
                if [ -f "$OUT/$tag-$srv.json" ]; then
                    files+=("$OUT/$tag-$srv.json")
                    [ "$rc" -eq 0 ] || notes+=("$srv: run flagged (exit $rc: loss, errors or failed connects; see $tag-$srv.txt)")
                else
                    notes+=("$srv: no result (exit $rc; see $(basename "$OUT")/$tag-$srv.bench.err)")
                fi
                if [ "$rc" -ne 0 ] && [[ "$srv" != fanline* ]] && [ "$sc" = small ]; then STATUS=1; fi
                [ "$rc" -eq 1 ] || [ "$rc" -eq 3 ] && [[ "$srv" != fanline* ]] && STATUS=1
                sleep 1
            done
            {
                rl=""; [ "$rate" != "-" ] && rl=" (rate $rate/s)"
                echo "#### $tag — $(scenario_get "$f" description)$rl"
                echo
                if [ ${#files[@]} -ge 2 ]; then
                    "$BENCH" compare "${files[@]}"
                elif [ ${#files[@]} -eq 1 ]; then
                    "$BENCH" compare "${files[0]}" "${files[0]}" | cut -d'|' -f1-3 | sed 's/$/|/'
                fi
                echo
                for n in "${notes[@]}"; do echo "- $n"; done
                [ ${#notes[@]} -gt 0 ] && echo
            } >>"$REPORT"
        done
    done
done
echo "- load after: $(uptime | sed 's/^ *//')" >>"$REPORT"
echo >>"$REPORT"
cat "$REPORT"
if [ "$RECORD" -eq 1 ]; then
    RES="$ROOT/perf/RESULTS.md"
    [ -f "$RES" ] || printf '# Results\n\n' >"$RES"
    grep -q '^## Runs' "$RES" || printf '\n## Runs\n\nAppended by perf/compare.sh, newest last. Ratios are first column / peer.\n\n' >>"$RES"
    cat "$REPORT" >>"$RES"
    echo "appended to $RES" >&2
fi
exit $STATUS
