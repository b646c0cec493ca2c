//! Results: the machine-readable record of one run (`--json`), merging several generator
//! processes' records, the readable table, and the markdown ratio table of `compare`.
//!
//! The histogram travels as hdrhistogram's V2 serialization, base64-encoded, in µs. Counters
//! are sums. Server figures in merged results: CPU is the largest delta any process saw (all
//! processes watch the same server over overlapping windows), RSS before is the smallest and
//! RSS idle the largest reading, so idle KiB per connection covers every process's connections.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::shared::new_histogram;

/// Server-side figures read from procfs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerStats {
    pub pid: u32,
    /// CPU seconds used over the delivery window.
    pub cpu_s: f64,
    pub rss_before_kib: u64,
    /// RSS with every connection open and idle, just before publishing.
    pub rss_idle_kib: u64,
    pub rss_end_kib: u64,
}

/// One step of `--step-up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub conns: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub deliveries_per_s: f64,
}

/// Everything one generator process (or a merge of several) measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub label: String,
    pub processes: u32,
    pub started_unix: f64,
    pub conns_target: u64,
    pub conns_connected: u64,
    /// Connections open when the idle RSS and the connect rate were taken (all of them, or
    /// the first step of `--step-up`); 0 in old files means `conns_connected`.
    #[serde(default)]
    pub idle_conns: u64,
    pub connect_failed: u64,
    pub connect_secs: f64,
    pub slow: u64,
    pub channels: u32,
    pub rate: f64,
    pub duration_s: f64,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_max_lag_us: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub clients_with_loss: u64,
    pub gaps: u64,
    pub gap_dropped: u64,
    pub closed_early: u64,
    /// Seconds from the first scheduled publish to the last delivery.
    pub window_s: f64,
    pub server: Option<ServerStats>,
    pub generator_cpu_s: f64,
    pub steps: Vec<Step>,
    pub capacity_conns: Option<u64>,
    pub first_error: Option<String>,
    /// Latency histogram (µs), V2-serialized, base64.
    pub hist_v2_b64: String,
}

pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into a Vec cannot fail");
    B64.encode(buf)
}

pub fn decode_hist(s: &str) -> anyhow::Result<Histogram<u64>> {
    if s.is_empty() {
        return Ok(new_histogram());
    }
    let bytes = B64.decode(s).context("histogram base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram: {e:?}"))?;
    Ok(h)
}

impl RunResult {
    pub fn hist(&self) -> Histogram<u64> {
        decode_hist(&self.hist_v2_b64).unwrap_or_else(|_| new_histogram())
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn deliveries_per_s(&self) -> f64 {
        if self.window_s > 0.0 {
            self.deliveries as f64 / self.window_s
        } else {
            0.0
        }
    }

    fn idle_conns(&self) -> u64 {
        if self.idle_conns > 0 {
            self.idle_conns
        } else {
            self.conns_connected
        }
    }

    pub fn connects_per_s(&self) -> f64 {
        if self.connect_secs > 0.0 {
            self.idle_conns() as f64 / self.connect_secs
        } else {
            0.0
        }
    }

    /// Server CPU seconds per million deliveries.
    pub fn cpu_per_million(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        (self.deliveries > 0).then(|| s.cpu_s * 1e6 / self.deliveries as f64)
    }

    /// Server RSS growth per idle connection, KiB.
    pub fn kib_per_idle_conn(&self) -> Option<f64> {
        let s = self.server.as_ref()?;
        (self.idle_conns() > 0)
            .then(|| (s.rss_idle_kib as f64 - s.rss_before_kib as f64) / self.idle_conns() as f64)
    }

    pub fn quantile_ms(&self, h: &Histogram<u64>, q: f64) -> f64 {
        if h.is_empty() {
            f64::NAN
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// A failed run: loss, duplicates, reordering, failed connects or publish errors.
    pub fn failed(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.connect_failed + self.publish_errors > 0
    }

    /// Merges results of several generator processes of one run.
    pub fn merge(parts: &[RunResult]) -> anyhow::Result<RunResult> {
        let first = parts.first().context("nothing to merge")?;
        let mut m = first.clone();
        let mut h = first.hist();
        for p in &parts[1..] {
            h.add(p.hist())
                .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
            m.processes += p.processes;
            m.started_unix = m.started_unix.min(p.started_unix);
            m.conns_target += p.conns_target;
            m.idle_conns = m.idle_conns() + p.idle_conns();
            m.conns_connected += p.conns_connected;
            m.connect_failed += p.connect_failed;
            m.connect_secs = m.connect_secs.max(p.connect_secs);
            m.slow += p.slow;
            m.published += p.published;
            m.publish_errors += p.publish_errors;
            m.publish_max_lag_us = m.publish_max_lag_us.max(p.publish_max_lag_us);
            m.deliveries += p.deliveries;
            m.expected_deliveries += p.expected_deliveries;
            m.lost += p.lost;
            m.duplicated += p.duplicated;
            m.reordered += p.reordered;
            m.clients_with_loss += p.clients_with_loss;
            m.gaps += p.gaps;
            m.gap_dropped += p.gap_dropped;
            m.closed_early += p.closed_early;
            m.window_s = m.window_s.max(p.window_s);
            m.generator_cpu_s += p.generator_cpu_s;
            m.first_error = m.first_error.or_else(|| p.first_error.clone());
            m.server = match (m.server.take(), &p.server) {
                (Some(a), Some(b)) => Some(ServerStats {
                    pid: a.pid,
                    cpu_s: a.cpu_s.max(b.cpu_s),
                    rss_before_kib: a.rss_before_kib.min(b.rss_before_kib),
                    rss_idle_kib: a.rss_idle_kib.max(b.rss_idle_kib),
                    rss_end_kib: a.rss_end_kib.max(b.rss_end_kib),
                }),
                (a, b) => a.or_else(|| b.clone()),
            };
        }
        m.hist_v2_b64 = encode_hist(&h);
        Ok(m)
    }

    /// The readable table printed on stdout.
    pub fn table(&self) -> String {
        let h = self.hist();
        let mut rows: Vec<(&str, String)> = vec![
            ("server", self.label.clone()),
            ("generator processes", self.processes.to_string()),
            (
                "connections",
                format!(
                    "{}/{} ({} failed, {} slow)",
                    self.conns_connected, self.conns_target, self.connect_failed, self.slow
                ),
            ),
            (
                "connect rate",
                format!(
                    "{:.0} conn/s over {:.2} s",
                    self.connects_per_s(),
                    self.connect_secs
                ),
            ),
            (
                "channels × rate",
                format!(
                    "{} × {:.1}/s for {:.1} s",
                    self.channels, self.rate, self.duration_s
                ),
            ),
            (
                "published",
                format!(
                    "{} ({} errors, max send lag {:.1} ms)",
                    self.published,
                    self.publish_errors,
                    self.publish_max_lag_us as f64 / 1000.0
                ),
            ),
            (
                "deliveries",
                format!(
                    "{} of {} expected",
                    self.deliveries, self.expected_deliveries
                ),
            ),
            ("deliveries/s", format!("{:.0}", self.deliveries_per_s())),
            (
                "lost / dup / reordered",
                format!(
                    "{} / {} / {} ({} clients with loss)",
                    self.lost, self.duplicated, self.reordered, self.clients_with_loss
                ),
            ),
            (
                "gap frames",
                format!("{} ({} dropped)", self.gaps, self.gap_dropped),
            ),
            ("closed early", self.closed_early.to_string()),
        ];
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            rows.push((name, format!("{:.3} ms", self.quantile_ms(&h, q))));
        }
        rows.push(("max", format!("{:.3} ms", h.max() as f64 / 1000.0)));
        if let Some(s) = &self.server {
            rows.push(("server CPU", format!("{:.2} s", s.cpu_s)));
            if let Some(c) = self.cpu_per_million() {
                rows.push(("server CPU-s / M deliveries", format!("{c:.2}")));
            }
            if let Some(k) = self.kib_per_idle_conn() {
                rows.push(("server KiB RSS / idle conn", format!("{k:.2}")));
            }
            rows.push((
                "server RSS before/idle/end",
                format!(
                    "{} / {} / {} KiB",
                    s.rss_before_kib, s.rss_idle_kib, s.rss_end_kib
                ),
            ));
        }
        rows.push(("generator CPU", format!("{:.2} s", self.generator_cpu_s)));
        for s in &self.steps {
            rows.push((
                "step",
                format!(
                    "{} conns: p50 {:.2} ms p99 {:.2} ms {:.0} deliv/s",
                    s.conns, s.p50_ms, s.p99_ms, s.deliveries_per_s
                ),
            ));
        }
        if let Some(c) = self.capacity_conns {
            rows.push(("capacity (p99 bound)", format!("{c} connections")));
        }
        if let Some(e) = &self.first_error {
            rows.push(("first error", e.clone()));
        }
        rows.push((
            "verdict",
            if self.failed() {
                "FAILED (loss/errors)"
            } else {
                "ok"
            }
            .into(),
        ));
        let w = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<w$}  {v}\n"))
            .collect()
    }
}

/// Reads one figure out of a result (`None` when it was not measured).
type Metric = Box<dyn Fn(&RunResult) -> Option<f64>>;

/// Markdown table: baseline (first) against each peer, with ratios baseline/peer.
pub fn compare_markdown(results: &[RunResult]) -> String {
    let fmt = |v: Option<f64>, d: usize| match v {
        Some(x) if x.is_finite() => format!("{x:.d$}"),
        _ => "n/a".into(),
    };
    let metrics: Vec<(&str, Metric, usize)> = vec![
        ("deliveries/s", Box::new(|r| Some(r.deliveries_per_s())), 0),
        (
            "p50 ms",
            Box::new(|r| Some(r.quantile_ms(&r.hist(), 0.5))),
            3,
        ),
        (
            "p99 ms",
            Box::new(|r| Some(r.quantile_ms(&r.hist(), 0.99))),
            3,
        ),
        ("CPU-s / M deliveries", Box::new(|r| r.cpu_per_million()), 2),
        (
            "KiB RSS / idle conn",
            Box::new(|r| r.kib_per_idle_conn()),
            2,
        ),
        ("connects/s", Box::new(|r| Some(r.connects_per_s())), 0),
        ("generator CPU-s", Box::new(|r| Some(r.generator_cpu_s)), 2),
        (
            "lost+dup+reordered",
            Box::new(|r| Some((r.lost + r.duplicated + r.reordered) as f64)),
            0,
        ),
    ];
    let base = &results[0];
    let mut out = String::from("| metric |");
    for r in results {
        out.push_str(&format!(" {} |", r.label));
    }
    for r in &results[1..] {
        out.push_str(&format!(" {} / {} |", base.label, r.label));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(2 * results.len() - 1));
    out.push('\n');
    for (name, f, d) in &metrics {
        out.push_str(&format!("| {name} |"));
        for r in results {
            out.push_str(&format!(" {} |", fmt(f(r), *d)));
        }
        for r in &results[1..] {
            let ratio = match (f(base), f(r)) {
                (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
                _ => None,
            };
            out.push_str(&format!(" {} |", fmt(ratio, 2)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_roundtrips_and_merges() {
        let mut a = new_histogram();
        a.record(100).unwrap();
        let mut b = new_histogram();
        b.record(3000).unwrap();
        let ra = RunResult {
            processes: 1,
            deliveries: 1,
            hist_v2_b64: encode_hist(&a),
            ..Default::default()
        };
        let rb = RunResult {
            processes: 1,
            deliveries: 1,
            hist_v2_b64: encode_hist(&b),
            ..Default::default()
        };
        let m = RunResult::merge(&[ra, rb]).unwrap();
        assert_eq!(m.processes, 2);
        assert_eq!(m.deliveries, 2);
        let h = m.hist();
        assert_eq!(h.len(), 2);
        assert!(h.max() >= 3000 && h.min() <= 100);
    }
}
