//! The shipped Grafana dashboard (deploy/grafana/fanline-dashboard.json) and Prometheus alert
//! rules (deploy/prometheus/fanline-alerts.yml) query only series the real server exports:
//! every `fanline_*` name they use is on the admin `/metrics` after some traffic (WebSocket and
//! SSE clients, published events through the embedded Kafka cluster, a refused upgrade), and
//! every label they group or match by is on one of the series they use.
//! PromQL syntax itself is checked by promtool (scripts/check-monitoring.sh).

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// Series the dashboard and rules use that the server does not export yet (none today; an
/// entry is removed as soon as the series exists, the test says when).
const PENDING_SERIES: &[&str] = &[];

fn read(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every PromQL expression of the dashboard: panel targets (rows included) and the template
/// variables' queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    fn panels(list: &Value, out: &mut Vec<String>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(t["expr"].as_str().expect("target has expr").to_string());
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["definition"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// The `expr:` values of a rules file: inline, or a `>-` / `|` block of deeper lines.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(v) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let v = v.trim();
        if !matches!(v, ">-" | ">" | "|" | "|-") {
            out.push(v.to_string());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while i < lines.len() && lines[i].len() - lines[i].trim_start().len() > indent {
            block.push_str(lines[i].trim());
            block.push(' ');
            i += 1;
        }
        out.push(block.trim().to_string());
    }
    out
}

/// `fanline_*` identifiers in an expression.
fn series_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in expr.match_indices("fanline_") {
        if i > 0 && expr.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let end = expr[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| i + n);
        out.insert(expr[i..end].to_string());
    }
    out
}

/// Label names an expression groups by (`by (a, b)`) or matches on (`{a="x"}`).
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in expr.match_indices("by (") {
        let rest = &expr[i + 4..];
        let end = rest.find(')').expect("closing paren of by (…)");
        out.extend(rest[..end].split(',').map(|l| l.trim().to_string()));
    }
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("closing brace") + open;
        for m in rest[open + 1..close].split(',') {
            let name: String = m
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = &rest[close + 1..];
    }
    out
}

/// Series name → label names seen, from a Prometheus text exposition.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).expect("sample line");
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line.as_bytes()[name_end] == b'{' {
            let close = line.rfind('}').expect("closing brace");
            for kv in line[name_end + 1..close].split("\",") {
                if let Some((k, _)) = kv.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    out
}

/// An SSE stream held open (the `200` head read).
fn open_sse(addr: std::net::SocketAddr, channel: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /v1/sse?channels={channel} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("response head");
    assert_eq!(&head, b"HTTP/1.1 200", "SSE stream opens");
    s
}

#[test]
fn rule_and_dashboard_parsers_read_what_is_there() {
    let exprs = rule_exprs(
        "      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: >-\n          sum by (a) (fanline_x{b=\"1\", c!~\"2\"})\n          > 0\n        for: 1m\n",
    );
    assert_eq!(
        exprs,
        vec!["up == 0", "sum by (a) (fanline_x{b=\"1\", c!~\"2\"}) > 0"]
    );
    assert_eq!(
        series_names(&exprs[1]),
        BTreeSet::from(["fanline_x".to_string()])
    );
    assert_eq!(
        label_names(&exprs[1]),
        ["a", "b", "c"].map(String::from).into()
    );
}

#[test]
fn every_series_the_dashboard_and_alerts_use_is_exported() {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/fanline-dashboard.json")).expect("JSON");
    let mut exprs = dashboard_exprs(&dashboard);
    let n_dashboard = exprs.len();
    exprs.extend(rule_exprs(&read("deploy/prometheus/fanline-alerts.yml")));
    assert_eq!(n_dashboard, 25, "dashboard expressions");
    assert_eq!(exprs.len() - n_dashboard, 10, "alert rule expressions");

    let s = util::start_kafka(|_| {});
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let text = rt.block_on(async {
        let mut ws = util::connect(&s).await;
        util::subscribe(&mut ws, &["dash"], None).await;
        let sse = open_sse(s.local_addr, "dash");
        for n in 0..20 {
            util::publish(&s, "dash", json!({ "n": n }));
        }
        for _ in 0..20 {
            let ev = util::next_json(&mut ws).await;
            assert_eq!(ev["type"], "event", "{ev}");
        }
        // A refused upgrade and a plain request.
        assert_eq!(util::http(s.local_addr, "GET", "/v1/ws", None).0, 426);
        assert_eq!(util::http(s.local_addr, "GET", "/health/live", None).0, 200);
        let lag_reported = util::eventually(Duration::from_secs(20), || {
            util::http(s.admin_addr, "GET", "/metrics", None)
                .1
                .contains("fanline_kafka_lag{")
        })
        .await;
        assert!(lag_reported, "kafka lag is reported within 20 s");
        // The shards the two subscribers live on (a connection id is `<hex>-<shard>-<seq>`).
        let (_, conns) = util::http(s.admin_addr, "GET", "/v1/connections", None);
        let conns: Value = serde_json::from_str(&conns).expect("connections json");
        let shards: BTreeSet<String> = conns["connections"]
            .as_array()
            .expect("connections")
            .iter()
            .filter_map(|c| Some(c["id"].as_str()?.split('-').nth(1)?.to_string()))
            .collect();
        assert_eq!(
            conns["connections"].as_array().map(Vec::len),
            Some(2),
            "{conns}"
        );
        drop(sse);
        (
            util::http(s.admin_addr, "GET", "/metrics", None).1,
            shards.len() as u64,
        )
    });
    let (text, shards) = text;
    // Both latency histograms count the same writes: each event once per shard delivering it.
    let count = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    let ingest = count("fanline_ingest_to_write_seconds_count");
    assert_eq!(
        ingest,
        20 * shards,
        "20 events written by {shards} shard(s)"
    );
    assert_eq!(count("fanline_kafka_to_write_seconds_count"), ingest);
    let series = exported(&text);
    let mut used = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for e in &exprs {
        let names = series_names(e);
        missing.extend(names.iter().filter(|n| !series.contains_key(*n)).cloned());
        used.extend(names.iter().cloned());
        if names.is_empty() || names.iter().any(|n| !series.contains_key(n)) {
            continue; // none of ours (e.g. `up{job="fanline"}`), or reported as missing
        }
        let labels_here: BTreeSet<&String> = names.iter().flat_map(|n| &series[n]).collect();
        for l in label_names(e) {
            // instance and job are added by Prometheus; le is every histogram bucket's.
            let known = matches!(l.as_str(), "instance" | "job" | "le") || labels_here.contains(&l);
            assert!(known, "label {l:?} (in `{e}`) is on none of {names:?}");
        }
    }
    let unexpected: Vec<_> = missing
        .iter()
        .filter(|n| !PENDING_SERIES.contains(&n.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "not on /metrics: {unexpected:?}; exported: {:?}",
        series.keys().collect::<Vec<_>>()
    );
    let exported_now: Vec<_> = PENDING_SERIES
        .iter()
        .filter(|n| series.contains_key(**n))
        .collect();
    if !exported_now.is_empty() {
        eprintln!("exported now, remove from PENDING_SERIES: {exported_now:?}");
    }
    assert_eq!(used.len(), 21, "distinct fanline series used: {used:?}");
    s.shutdown();
}

/// `fanline_events_no_subscriber_total` counts exactly the events no one was subscribed to.
#[test]
fn events_without_a_subscriber_are_counted() {
    let s = util::start(|_| {});
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        for n in 0..3 {
            util::publish(&s, "nobody", json!({ "n": n }));
        }
        let mut ws = util::connect(&s).await;
        util::subscribe(&mut ws, &["somebody"], None).await;
        for n in 0..2 {
            util::publish(&s, "somebody", json!({ "n": n }));
        }
        for _ in 0..2 {
            let ev = util::next_json(&mut ws).await;
            assert_eq!(ev["type"], "event", "{ev}");
        }
    });
    assert_eq!(util::metric(&s, "fanline_events_no_subscriber_total"), 3.0);
    assert_eq!(util::metric(&s, "fanline_deliveries_total"), 2.0);
    s.shutdown();
}
