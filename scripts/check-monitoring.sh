#!/usr/bin/env bash
# promtool (Debian's prometheus package) on what deploy/ ships: the alert rules, the example
# Prometheus config, and every PromQL expression of the Grafana dashboard (wrapped as recording
# rules with Grafana's variables substituted, so promtool parses them).
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules deploy/prometheus/fanline-alerts.yml
promtool check config deploy/prometheus/prometheus.yml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - deploy/grafana/fanline-dashboard.json >"$tmp/dashboard-rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []))
        walk(p.get("panels", []))
walk(d["panels"])
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
    print(f"      - record: dashboard:expr{i}\n        expr: {json.dumps(e)}")
PY
promtool check rules "$tmp/dashboard-rules.yml"
