# Shared helpers for perf/compare.sh and perf/flamegraph.sh (sourced, not run).
# Servers listen on loopback only: WS on $WS_PORT, publish/admin on $ADMIN_PORT.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/target/release/fanline-bench"
# BENCH_FANLINE_BIN: measure another fanline build (e.g. a before/after pair). Not FANLINE_*:
# the gateway reads every FANLINE_* variable as a config key.
FANLINE="${BENCH_FANLINE_BIN:-$ROOT/target/release/fanline}"
PEERS="$ROOT/target/peers"
WS_PORT="${FANLINE_BENCH_WS_PORT:-28080}"
ADMIN_PORT="${FANLINE_BENCH_ADMIN_PORT:-29091}"
SERVER_PID=""
BENCH_PIDS=()
# One process may hold at most 20,000 fds (hard limit); raise the soft limit to it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# scenario_get FILE KEY: the value of a flat `key = value` line, quotes stripped.
scenario_get() {
    sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | head -1 | sed 's/^"//; s/"[[:space:]]*$//; s/[[:space:]]*#.*$//'
}

# scenario_args FILE: fanline-bench flags for the scenario's keys (not conns/processes/rates).
scenario_args() {
    local f="$1" k v out=()
    for k in sources rate duration settle drain slow step step_secs p99_bound_ms threads \
             channels pub_conns connect_concurrency; do
        v="$(scenario_get "$f" "$k")"
        [ -n "$v" ] && out+=("--${k//_/-}" "$v")
    done
    [ "$(scenario_get "$f" step_up)" = "true" ] && out+=(--step-up)
    echo "${out[@]}"
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME LOG: starts fanline[-epoll|-uring]|naive|uws, sets SERVER_PID; non-zero if it won't come up.
start_server() {
    local name="$1" log="$2" cmd
    port_free "$WS_PORT" && port_free "$ADMIN_PORT" || {
        echo "ports $WS_PORT/$ADMIN_PORT busy: set FANLINE_BENCH_WS_PORT/_ADMIN_PORT" >&2
        return 1
    }
    case "$name" in
        # Anonymous access: the benchmark measures fan-out, not auth (FANLINE_AUTH_ANONYMOUS
        # overrides the config's default of false). Set FANLINE_BENCH_TOKEN to test with JWTs.
        # The harness's own FANLINE_BENCH_* port variables are not config keys: unset them.
        fanline|fanline-epoll|fanline-uring)
            # fanline-epoll / fanline-uring: the same binary on that I/O backend.
            local backend=()
            [ "$name" != fanline ] && backend=(--io-backend "${name#fanline-}")
            cmd=(env -u FANLINE_BENCH_WS_PORT -u FANLINE_BENCH_ADMIN_PORT
                      "FANLINE_AUTH_ANONYMOUS=${FANLINE_AUTH_ANONYMOUS:-true}" "$FANLINE"
                      --listen "127.0.0.1:$WS_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT"
                      "${backend[@]}") ;;
        naive) cmd=("$PEERS/release/naive-peer" --listen "127.0.0.1:$WS_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT") ;;
        uws) cmd=("$PEERS/uws-peer" --listen "127.0.0.1:$WS_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT") ;;
        uws-deflate) cmd=("$PEERS/uws-deflate-peer" --listen "127.0.0.1:$WS_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT") ;;
        *) echo "unknown server $name" >&2; return 1 ;;
    esac
    local bin="${cmd[0]}"; [ "$bin" = env ] && bin="$FANLINE"
    [ -x "$bin" ] || { echo "$name: $bin not built" >&2; return 1; }
    "${cmd[@]}" >"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    if ! wait_port "$WS_PORT" 20 || ! wait_port "$ADMIN_PORT" 5; then
        echo "$name did not listen on $WS_PORT/$ADMIN_PORT within 20 s (log: $log)" >&2
        stop_server
        return 1
    fi
    sleep 0.5
}

# cleanup: kills the generators and the server this shell started (by pid). For traps.
cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    BENCH_PIDS=()
    stop_server
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 120; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# run_bench SCENARIO LABEL OUT.json [RATE]: runs the scenario against the running server,
# in `processes` generator processes (connections split, one publisher), merged into OUT.json.
run_bench() {
    local f="$1" label="$2" out="$3" rate="${4:-}" procs conns args per start i rc=0 pids=() parts=()
    procs="$(scenario_get "$f" processes)"; procs="${procs:-1}"
    conns="$(scenario_get "$f" conns)"
    args="$(scenario_args "$f")"
    [ -n "$rate" ] && args="$args --rate $rate"
    local common=(--url "ws://127.0.0.1:$WS_PORT/v1/ws" --server-pid "$SERVER_PID" --label "$label" $args)
    if [ "$procs" -le 1 ]; then
        "$BENCH" "${common[@]}" --conns "$conns" \
            --publish "http://127.0.0.1:$ADMIN_PORT/v1/publish" --json "$out" &
        BENCH_PIDS=($!)
        wait "${BENCH_PIDS[0]}" || rc=$?
        BENCH_PIDS=()
        return $rc
    fi
    per=$((conns / procs))
    # Shared schedule: every process connects, then all start at the same unix time.
    start=$(($(date +%s) + 8 + per / 400))
    local srcs; srcs="$(scenario_get "$f" sources)"; srcs="${srcs:-1}"
    for ((i = 0; i < procs; i++)); do
        local pub="none"
        [ "$i" -eq 0 ] && pub="http://127.0.0.1:$ADMIN_PORT/v1/publish"
        "$BENCH" "${common[@]}" --conns "$per" --source-offset $((i * srcs)) --start-at "$start" \
            --publish "$pub" --json "$out.$i" --quiet >"$out.$i.txt" 2>&1 &
        pids+=($!); parts+=("$out.$i")
    done
    BENCH_PIDS=("${pids[@]}")
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { local r=$?; [ "$r" -gt "$rc" ] && rc=$r; }
    done
    BENCH_PIDS=()
    for i in "${!parts[@]}"; do
        [ -f "${parts[$i]}" ] || { cat "${parts[$i]}.txt" >&2; return 1; }
    done
    "$BENCH" merge "${parts[@]}" --out "$out" --label "$label" || true
    return $rc
}
