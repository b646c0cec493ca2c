//! Metrics: plain atomics, each shard writing only its own cache-padded block, summed when
//! `/metrics` is scraped. Nothing here takes a lock; recording is a relaxed `fetch_add`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// A fixed-bucket histogram (Prometheus shape) of atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    #[inline]
    pub fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }
}

/// Why a handshake was refused (label `reason`).
pub const REJECT_REASONS: [&str; 12] = [
    "bad_request",
    "not_found",
    "head_too_large",
    "timeout",
    "unauthorized",
    "forbidden_origin",
    "forbidden_channel",
    "rate_limited",
    "per_ip_limit",
    "max_connections",
    "draining",
    "tls",
];

/// Counters one shard writes.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub connections: Gauge,
    pub connections_total_ws: Counter,
    /// Plain HTTP requests answered on the public listener (health, errors, refusals).
    pub connections_total_http: Counter,
    pub connections_total_sse: Counter,
    pub subscriptions: Gauge,
    pub deliveries: Counter,
    pub dropped_slow_consumer: Counter,
    pub dropped_ring_full: Counter,
    pub gaps_sent: Counter,
    pub outbox_bytes: Gauge,
    pub writev_calls: Counter,
    pub bytes_written: Counter,
    pub closed_slow_consumer: Counter,
    pub closed_heartbeat: Counter,
    pub closed_too_big: Counter,
    pub closed_protocol: Counter,
    pub handshake_rejected: [Counter; REJECT_REASONS.len()],
    /// Milliseconds since start at the shard's last reactor turn (watchdog liveness).
    pub last_turn_ms: Gauge,
    pub ingest_to_write: Histogram,
}

impl ShardMetrics {
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.handshake_rejected[i].inc();
        }
    }
}

/// Counters the ingest thread writes.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub events_ingested: Counter,
    pub ring_full_drops: Counter,
    pub errors_not_json: Counter,
    pub errors_missing_field: Counter,
    pub errors_no_route: Counter,
    pub errors_kafka: Counter,
    /// Events ingested per topic. The lock is taken only when a topic is first seen and at
    /// scrape time; ingest keeps the `Arc<Counter>` it got from [`IngestMetrics::topic_counter`].
    pub topics: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<Counter>>>,
    /// Consumer lag (high watermark − next offset) per `topic/partition`, refreshed ~1/s.
    pub lag: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl IngestMetrics {
    /// The per-topic ingested counter (created on first use).
    pub fn topic_counter(&self, topic: &str) -> std::sync::Arc<Counter> {
        let mut t = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(topic.to_string()).or_default().clone()
    }

    /// Records the lag of `topic/partition`.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let mut l = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        match l.get_mut(&format!("{topic}/{partition}")) {
            Some(v) => *v = lag,
            None => {
                l.insert(format!("{topic}/{partition}"), lag);
            }
        }
    }
}

/// All metrics of one gateway.
#[derive(Debug)]
pub struct Metrics {
    pub shards: Vec<CachePadded<ShardMetrics>>,
    pub ingest: CachePadded<IngestMetrics>,
}

impl Metrics {
    pub fn new(shards: usize) -> Metrics {
        Metrics {
            shards: (0..shards)
                .map(|_| CachePadded::new(ShardMetrics::default()))
                .collect(),
            ingest: CachePadded::new(IngestMetrics::default()),
        }
    }

    /// Sum of `f` over shards.
    pub fn sum(&self, f: impl Fn(&ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(|s| f(s)).sum()
    }

    /// Sum of gauge `f` over shards.
    pub fn sum_gauge(&self, f: impl Fn(&ShardMetrics) -> i64) -> i64 {
        self.shards.iter().map(|s| f(s)).sum()
    }

    /// Prometheus text exposition of everything this struct holds.
    pub fn render(&self, out: &mut String) {
        let g = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP fanline_{name} {help}\n# TYPE fanline_{name} {kind}"
            );
            out.push_str(&v);
        };
        let line = |name: &str, labels: &str, v: i128| format!("fanline_{name}{labels} {v}\n");
        g(
            out,
            "connections",
            "Open WebSocket connections.",
            "gauge",
            line(
                "connections",
                "",
                self.sum_gauge(|s| s.connections.get()) as i128,
            ),
        );
        g(
            out,
            "connections_total",
            "Accepted connections by transport.",
            "counter",
            format!(
                "{}{}{}",
                line(
                    "connections_total",
                    "{transport=\"ws\"}",
                    self.sum(|s| s.connections_total_ws.get()) as i128
                ),
                line(
                    "connections_total",
                    "{transport=\"http\"}",
                    self.sum(|s| s.connections_total_http.get()) as i128
                ),
                line(
                    "connections_total",
                    "{transport=\"sse\"}",
                    self.sum(|s| s.connections_total_sse.get()) as i128
                )
            ),
        );
        let mut rej = String::new();
        for (i, r) in REJECT_REASONS.iter().enumerate() {
            let v = self.sum(|s| s.handshake_rejected[i].get());
            rej.push_str(&line(
                "handshake_rejected_total",
                &format!("{{reason=\"{r}\"}}"),
                v as i128,
            ));
        }
        g(
            out,
            "handshake_rejected_total",
            "Upgrades refused, by reason.",
            "counter",
            rej,
        );
        g(
            out,
            "subscriptions",
            "Active channel subscriptions.",
            "gauge",
            line(
                "subscriptions",
                "",
                self.sum_gauge(|s| s.subscriptions.get()) as i128,
            ),
        );
        g(
            out,
            "deliveries_total",
            "Event frames queued to connections.",
            "counter",
            line(
                "deliveries_total",
                "",
                self.sum(|s| s.deliveries.get()) as i128,
            ),
        );
        g(
            out,
            "dropped_total",
            "Events dropped, by reason.",
            "counter",
            format!(
                "{}{}",
                line(
                    "dropped_total",
                    "{reason=\"slow_consumer\"}",
                    self.sum(|s| s.dropped_slow_consumer.get()) as i128
                ),
                line(
                    "dropped_total",
                    "{reason=\"ring_full\"}",
                    self.ingest.ring_full_drops.get() as i128
                )
            ),
        );
        g(
            out,
            "gaps_sent_total",
            "gap frames sent.",
            "counter",
            line(
                "gaps_sent_total",
                "",
                self.sum(|s| s.gaps_sent.get()) as i128,
            ),
        );
        g(
            out,
            "outbox_bytes",
            "Bytes queued in connection outboxes.",
            "gauge",
            line(
                "outbox_bytes",
                "",
                self.sum_gauge(|s| s.outbox_bytes.get()) as i128,
            ),
        );
        g(
            out,
            "writev_calls_total",
            "writev system calls (one per connection per turn at most).",
            "counter",
            line(
                "writev_calls_total",
                "",
                self.sum(|s| s.writev_calls.get()) as i128,
            ),
        );
        g(
            out,
            "bytes_written_total",
            "Bytes written to sockets.",
            "counter",
            line(
                "bytes_written_total",
                "",
                self.sum(|s| s.bytes_written.get()) as i128,
            ),
        );
        g(
            out,
            "closed_total",
            "Connections closed by the server, by reason.",
            "counter",
            format!(
                "{}{}{}{}",
                line(
                    "closed_total",
                    "{reason=\"slow_consumer\"}",
                    self.sum(|s| s.closed_slow_consumer.get()) as i128
                ),
                line(
                    "closed_total",
                    "{reason=\"heartbeat\"}",
                    self.sum(|s| s.closed_heartbeat.get()) as i128
                ),
                line(
                    "closed_total",
                    "{reason=\"too_big\"}",
                    self.sum(|s| s.closed_too_big.get()) as i128
                ),
                line(
                    "closed_total",
                    "{reason=\"protocol\"}",
                    self.sum(|s| s.closed_protocol.get()) as i128
                )
            ),
        );
        let mut ing = String::new();
        {
            let topics = self.ingest.topics.lock().unwrap_or_else(|e| e.into_inner());
            for (t, c) in topics.iter() {
                ing.push_str(&line(
                    "events_ingested_total",
                    &format!("{{topic=\"{t}\"}}"),
                    c.get() as i128,
                ));
            }
            if topics.is_empty() {
                ing = line(
                    "events_ingested_total",
                    "",
                    self.ingest.events_ingested.get() as i128,
                );
            }
        }
        g(
            out,
            "events_ingested_total",
            "Records turned into events, by topic.",
            "counter",
            ing,
        );
        let mut errs = String::new();
        for (kind, c) in [
            ("not_json", &self.ingest.errors_not_json),
            ("missing_field", &self.ingest.errors_missing_field),
            ("no_route", &self.ingest.errors_no_route),
            ("kafka", &self.ingest.errors_kafka),
        ] {
            errs.push_str(&line(
                "ingest_errors_total",
                &format!("{{kind=\"{kind}\"}}"),
                c.get() as i128,
            ));
        }
        g(
            out,
            "ingest_errors_total",
            "Records skipped or Kafka errors, by kind.",
            "counter",
            errs,
        );
        let mut lag = String::new();
        for (tp, v) in self
            .ingest
            .lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            lag.push_str(&line(
                "kafka_lag",
                &format!("{{partition=\"{tp}\"}}"),
                *v as i128,
            ));
        }
        g(
            out,
            "kafka_lag",
            "Consumer lag in records (high watermark - next offset), by topic/partition.",
            "gauge",
            lag,
        );
        let mut h = String::new();
        let mut cum = 0u64;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.sum(|s| s.ingest_to_write.buckets[i].load(Relaxed));
            h.push_str(&format!(
                "fanline_ingest_to_write_seconds_bucket{{le=\"{b}\"}} {cum}\n"
            ));
        }
        cum += self.sum(|s| s.ingest_to_write.buckets[LATENCY_BUCKETS.len()].load(Relaxed));
        let sum = self.sum(|s| s.ingest_to_write.sum_ns.load(Relaxed)) as f64 / 1e9;
        h.push_str(&format!(
            "fanline_ingest_to_write_seconds_bucket{{le=\"+Inf\"}} {cum}\nfanline_ingest_to_write_seconds_sum {sum}\nfanline_ingest_to_write_seconds_count {cum}\n"
        ));
        g(
            out,
            "ingest_to_write_seconds",
            "Ingest of an event to the writev carrying it.",
            "histogram",
            h,
        );
    }
}
