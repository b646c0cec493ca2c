#!/usr/bin/env bash
# Captures the key dashboard queries on real traffic, as the README shows them:
# a release fanline (embedded Kafka mock cluster) on loopback, Debian's Prometheus scraping its
# admin /metrics every second with deploy/prometheus/fanline-alerts.yml loaded, fanline-bench
# driving WebSocket and SSE clients (a few of them stalled), and the
# Prometheus graph page of each query captured by headless Chromium into docs/img/.
# No Grafana server is installable from the package registries here, so the Grafana dashboard
# itself (deploy/grafana/fanline-dashboard.json) is not rendered; its queries are the same.
#
#   apt-get install -y --no-install-recommends prometheus chromium
#   cargo build --release --workspace --bins && deploy/screenshots.sh
#
# Load is bounded (DURATION seconds, ≤ 300) and every process started here is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${FANLINE_BIN:-target/release/fanline}
BENCH=${BENCH_BIN:-target/release/fanline-bench}
DURATION=${DURATION:-90}
[ "$DURATION" -le 300 ] || { echo "DURATION ≤ 300" >&2; exit 2; }
OUT=${OUT:-docs/img}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL SECONDS
    for _ in $(seq 1 "$(( $2 * 5 ))"); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.2
    done
    echo "no answer from $1" >&2; return 1
}

pub=$(free_port); adm=$(free_port); prom=$(free_port)
"$BIN" --listen "127.0.0.1:$pub" --admin-listen "127.0.0.1:$adm" --shards 2 >"$tmp/fanline.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$adm/health/ready" 60

cp deploy/prometheus/fanline-alerts.yml "$tmp/"
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 5s
rule_files: [fanline-alerts.yml]
scrape_configs:
  - job_name: fanline
    static_configs:
      - targets: ["127.0.0.1:$adm"]
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$prom" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$prom/-/ready" 30
sleep 5 # a few idle scrapes first

# 200 WebSocket clients on 4 channels, 5 of them stalled; 400 events/s published through Kafka.
"$BENCH" --url "ws://127.0.0.1:$pub/v1/ws" --publish "http://127.0.0.1:$adm/v1/publish" \
    --conns 200 --channels 4 --rate 400 --slow 5 --duration "$DURATION" --quiet \
    >"$tmp/bench-ws.log" 2>&1 &
bench_ws=$!
pids+=("$bench_ws")
sleep 20
# 50 SSE clients join later on the same channels (they only read).
"$BENCH" --transport sse --url "http://127.0.0.1:$pub/v1/sse" --publish none \
    --conns 50 --channels 4 --rate 400 --duration "$(( DURATION - 25 ))" --quiet \
    >"$tmp/bench-sse.log" 2>&1 &
pids+=($!)
# Shoot once the load is over (Chromium's own CPU would otherwise show in the latency), with
# the whole run in the 2-minute window.
wait "$bench_ws" || true
sleep 5

shot() { # shot NAME EXPR
    local q
    q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$2")
    timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --disable-quic \
        --user-data-dir="$tmp/chrome" --window-size=1100,900 --hide-scrollbars \
        --virtual-time-budget=8000 --screenshot="$OUT/$1.png" \
        "http://127.0.0.1:$prom/classic/graph?g0.expr=$q&g0.tab=0&g0.range_input=2m" \
        >>"$tmp/chromium.log" 2>&1
    echo "$OUT/$1.png: $2"
}
mkdir -p "$OUT"
shot prometheus-deliveries 'sum(rate(fanline_deliveries_total[10s]))'
shot prometheus-latency 'label_replace(histogram_quantile(0.5, sum by (le) (rate(fanline_ingest_to_write_seconds_bucket[10s]))), "q", "p50", "", "") or label_replace(histogram_quantile(0.99, sum by (le) (rate(fanline_ingest_to_write_seconds_bucket[10s]))), "q", "p99", "", "") or label_replace(histogram_quantile(0.999, sum by (le) (rate(fanline_ingest_to_write_seconds_bucket[10s]))), "q", "p99.9", "", "")'
shot prometheus-connections 'sum by (transport) (fanline_connections_total{transport!="http"})'
echo "bench (ws):"; tail -5 "$tmp/bench-ws.log" || true
curl -s "http://127.0.0.1:$adm/metrics" | grep -E '^fanline_(deliveries_total|dropped_total|gaps_sent_total|connections_total)' || true
