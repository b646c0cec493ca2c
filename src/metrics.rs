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
pub const REJECT_REASONS: [&str; 16] = [
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
    "pending_heads",
    "fd_limit",
    "identity_limit",
    "rest_rate_limited",
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
    /// From the record's (Kafka) timestamp to the writev carrying it, by the wall clock.
    pub kafka_to_write: Histogram,
    /// Items waiting in the shard's ring at its last turn, and the ring's size.
    pub ring_items: Gauge,
    pub ring_capacity: Gauge,
    /// Reactor turns, and the time each spent working (from poll's return to the end).
    pub turns: Counter,
    pub turn_time: Histogram,
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
    /// Events whose channel had no subscriber on any shard (delivered to no one).
    pub events_no_subscriber: Counter,
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

    /// One sample of `f` per shard, labelled `shard="N"`.
    pub fn each_shard(
        &self,
        f: impl Fn(&ShardMetrics) -> i128,
        sample: &mut dyn FnMut(&str, i128),
    ) {
        for (i, s) in self.shards.iter().enumerate() {
            sample(&format!("shard=\"{i}\""), f(s));
        }
    }

    /// Sum of gauge `f` over shards.
    pub fn sum_gauge(&self, f: impl Fn(&ShardMetrics) -> i64) -> i64 {
        self.shards.iter().map(|s| f(s)).sum()
    }

    /// Prometheus text exposition of everything this struct holds: one `# HELP`/`# TYPE` and
    /// the samples of each entry of [`FAMILIES`], in order.
    pub fn render(&self, out: &mut String) {
        for f in FAMILIES {
            let name = f.name;
            let _ = writeln!(
                out,
                "# HELP fanline_{name} {}\n# TYPE fanline_{name} {}",
                f.help,
                f.kind.as_str()
            );
            let mut sample = |labels: &str, v: i128| {
                let _ = match labels {
                    "" => writeln!(out, "fanline_{name} {v}"),
                    l => writeln!(out, "fanline_{name}{{{l}}} {v}"),
                };
            };
            match f.read {
                Read::Value(r) => sample("", r(self)),
                Read::Labeled(key, rows) => {
                    for (value, r) in rows {
                        sample(&format!("{key}=\"{value}\""), r(self));
                    }
                }
                Read::Each(r) => r(self, &mut sample),
                Read::Histogram(h) => self.render_histogram(out, name, h),
            }
        }
    }

    /// A histogram family's `_bucket`, `_sum` and `_count` lines, summed over shards.
    fn render_histogram(&self, out: &mut String, name: &str, h: fn(&ShardMetrics) -> &Histogram) {
        let mut cum = 0u64;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.sum(|s| h(s).buckets[i].load(Relaxed));
            let _ = writeln!(out, "fanline_{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.sum(|s| h(s).buckets[LATENCY_BUCKETS.len()].load(Relaxed));
        let sum = self.sum(|s| h(s).sum_ns.load(Relaxed)) as f64 / 1e9;
        let _ = writeln!(
            out,
            "fanline_{name}_bucket{{le=\"+Inf\"}} {cum}\nfanline_{name}_sum {sum}\nfanline_{name}_count {cum}"
        );
    }
}

/// Prometheus metric type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Reads one sample value.
type Reader = fn(&Metrics) -> i128;
/// Receives one sample: its labels (`key="value",…`, or empty) and value.
type Sample<'a> = &'a mut dyn FnMut(&str, i128);

/// How a family's samples are read at scrape time.
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// One sample without labels.
    Value(Reader),
    /// One sample per `(label value, reader)`, all under label `key`.
    Labeled(&'static str, &'static [(&'static str, Reader)]),
    /// Samples whose label sets are only known at scrape time (topics, partitions, reasons):
    /// the function calls `sample(labels, value)` for each, `labels` like `topic="t"`.
    Each(fn(&Metrics, Sample<'_>)),
    /// A per-shard [`Histogram`], summed over shards.
    Histogram(fn(&ShardMetrics) -> &Histogram),
}

/// One metric family: every `fanline_*` name is spelled here and nowhere else.
#[derive(Debug)]
pub struct Family {
    /// Without the `fanline_` prefix.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub read: Read,
}

/// Everything `/metrics` exposes, in exposition order.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "connections",
        help: "Open WebSocket connections.",
        kind: Kind::Gauge,
        read: Read::Value(|m| m.sum_gauge(|s| s.connections.get()) as i128),
    },
    Family {
        name: "connections_total",
        help: "Accepted connections by transport.",
        kind: Kind::Counter,
        read: Read::Labeled(
            "transport",
            &[
                ("ws", |m| m.sum(|s| s.connections_total_ws.get()) as i128),
                ("http", |m| {
                    m.sum(|s| s.connections_total_http.get()) as i128
                }),
                ("sse", |m| m.sum(|s| s.connections_total_sse.get()) as i128),
            ],
        ),
    },
    Family {
        name: "handshake_rejected_total",
        help: "Upgrades refused, by reason.",
        kind: Kind::Counter,
        read: Read::Each(|m, sample| {
            for (i, r) in REJECT_REASONS.iter().enumerate() {
                let v = m.sum(|s| s.handshake_rejected[i].get());
                sample(&format!("reason=\"{r}\""), v as i128);
            }
        }),
    },
    Family {
        name: "subscriptions",
        help: "Active channel subscriptions.",
        kind: Kind::Gauge,
        read: Read::Value(|m| m.sum_gauge(|s| s.subscriptions.get()) as i128),
    },
    Family {
        name: "deliveries_total",
        help: "Event frames queued to connections.",
        kind: Kind::Counter,
        read: Read::Value(|m| m.sum(|s| s.deliveries.get()) as i128),
    },
    Family {
        name: "dropped_total",
        help: "Events dropped, by reason.",
        kind: Kind::Counter,
        read: Read::Labeled(
            "reason",
            &[
                ("slow_consumer", |m| {
                    m.sum(|s| s.dropped_slow_consumer.get()) as i128
                }),
                ("ring_full", |m| m.ingest.ring_full_drops.get() as i128),
            ],
        ),
    },
    Family {
        name: "gaps_sent_total",
        help: "gap frames sent.",
        kind: Kind::Counter,
        read: Read::Value(|m| m.sum(|s| s.gaps_sent.get()) as i128),
    },
    Family {
        name: "outbox_bytes",
        help: "Bytes queued in connection outboxes.",
        kind: Kind::Gauge,
        read: Read::Value(|m| m.sum_gauge(|s| s.outbox_bytes.get()) as i128),
    },
    Family {
        name: "writev_calls_total",
        help: "writev system calls (one per connection per turn at most).",
        kind: Kind::Counter,
        read: Read::Value(|m| m.sum(|s| s.writev_calls.get()) as i128),
    },
    Family {
        name: "bytes_written_total",
        help: "Bytes written to sockets.",
        kind: Kind::Counter,
        read: Read::Value(|m| m.sum(|s| s.bytes_written.get()) as i128),
    },
    Family {
        name: "closed_total",
        help: "Connections closed by the server, by reason.",
        kind: Kind::Counter,
        read: Read::Labeled(
            "reason",
            &[
                ("slow_consumer", |m| {
                    m.sum(|s| s.closed_slow_consumer.get()) as i128
                }),
                ("heartbeat", |m| m.sum(|s| s.closed_heartbeat.get()) as i128),
                ("too_big", |m| m.sum(|s| s.closed_too_big.get()) as i128),
                ("protocol", |m| m.sum(|s| s.closed_protocol.get()) as i128),
            ],
        ),
    },
    Family {
        name: "events_ingested_total",
        help: "Records turned into events, by topic.",
        kind: Kind::Counter,
        read: Read::Each(|m, sample| {
            let topics = m.ingest.topics.lock().unwrap_or_else(|e| e.into_inner());
            if topics.is_empty() {
                sample("", m.ingest.events_ingested.get() as i128);
            }
            for (t, c) in topics.iter() {
                sample(&format!("topic=\"{t}\""), c.get() as i128);
            }
        }),
    },
    Family {
        name: "events_no_subscriber_total",
        help: "Events for channels with no subscriber on any shard.",
        kind: Kind::Counter,
        read: Read::Value(|m| m.ingest.events_no_subscriber.get() as i128),
    },
    Family {
        name: "ingest_errors_total",
        help: "Records skipped or Kafka errors, by kind.",
        kind: Kind::Counter,
        read: Read::Labeled(
            "kind",
            &[
                ("not_json", |m| m.ingest.errors_not_json.get() as i128),
                ("missing_field", |m| {
                    m.ingest.errors_missing_field.get() as i128
                }),
                ("no_route", |m| m.ingest.errors_no_route.get() as i128),
                ("kafka", |m| m.ingest.errors_kafka.get() as i128),
            ],
        ),
    },
    Family {
        name: "kafka_lag",
        help: "Consumer lag in records (high watermark - next offset), by topic/partition.",
        kind: Kind::Gauge,
        read: Read::Each(|m, sample| {
            let lag = m.ingest.lag.lock().unwrap_or_else(|e| e.into_inner());
            for (tp, v) in lag.iter() {
                sample(&format!("partition=\"{tp}\""), *v as i128);
            }
        }),
    },
    Family {
        name: "ingest_to_write_seconds",
        help: "Ingest of an event to the writev carrying it.",
        kind: Kind::Histogram,
        read: Read::Histogram(|s| &s.ingest_to_write),
    },
    Family {
        name: "kafka_to_write_seconds",
        help: "The record's Kafka timestamp to the writev carrying it (wall clock; producer clock skew included).",
        kind: Kind::Histogram,
        read: Read::Histogram(|s| &s.kafka_to_write),
    },
    Family {
        name: "ring_items",
        help: "Items waiting in a shard's ring when it last looked, by shard.",
        kind: Kind::Gauge,
        read: Read::Each(|m, sample| m.each_shard(|s| s.ring_items.get() as i128, sample)),
    },
    Family {
        name: "ring_capacity",
        help: "Size of a shard's ring (server.ring_capacity), by shard.",
        kind: Kind::Gauge,
        read: Read::Each(|m, sample| m.each_shard(|s| s.ring_capacity.get() as i128, sample)),
    },
    Family {
        name: "shard_turns_total",
        help: "Reactor turns, by shard (at least one a second while the shard runs).",
        kind: Kind::Counter,
        read: Read::Each(|m, sample| m.each_shard(|s| s.turns.get() as i128, sample)),
    },
    Family {
        name: "shard_turn_seconds",
        help: "Time a reactor turn spends working (from poll's return to its end).",
        kind: Kind::Histogram,
        read: Read::Histogram(|s| &s.turn_time),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_help_type_and_samples_under_its_own_name() {
        let m = Metrics::new(2);
        m.shards[0].deliveries.add(3);
        m.shards[1].deliveries.add(4);
        m.shards[1].reject("tls");
        m.ingest.topic_counter("t1").add(5);
        m.ingest.set_lag("t1", 0, 9);
        m.shards[0].turns.add(2);
        m.shards[0]
            .ingest_to_write
            .record(Duration::from_micros(70));
        let mut out = String::new();
        m.render(&mut out);
        for f in FAMILIES {
            let n = f.name;
            assert!(out.contains(&format!("# HELP fanline_{n} ")), "{n}");
            assert!(
                out.contains(&format!("# TYPE fanline_{n} {}\n", f.kind.as_str())),
                "{n}"
            );
        }
        let names: std::collections::BTreeSet<_> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FAMILIES.len(), "a family name is repeated");
        for l in [
            "fanline_deliveries_total 7\n",
            "fanline_handshake_rejected_total{reason=\"tls\"} 1\n",
            "fanline_handshake_rejected_total{reason=\"timeout\"} 0\n",
            "fanline_events_ingested_total{topic=\"t1\"} 5\n",
            "fanline_kafka_lag{partition=\"t1/0\"} 9\n",
            "fanline_connections_total{transport=\"sse\"} 0\n",
            "fanline_dropped_total{reason=\"ring_full\"} 0\n",
            "fanline_ingest_to_write_seconds_bucket{le=\"0.00005\"} 0\n",
            "fanline_ingest_to_write_seconds_bucket{le=\"0.0001\"} 1\n",
            "fanline_ingest_to_write_seconds_bucket{le=\"+Inf\"} 1\n",
            "fanline_ingest_to_write_seconds_count 1\n",
            "fanline_ring_capacity{shard=\"1\"} 0\n",
            "fanline_shard_turns_total{shard=\"0\"} 2\n",
            "fanline_kafka_to_write_seconds_count 0\n",
        ] {
            assert!(out.contains(l), "missing {l:?} in\n{out}");
        }
        // every sample line belongs to the family announced just before it
        let mut current = "";
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE fanline_") {
                current = rest.split(' ').next().unwrap_or_default();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(&format!("fanline_{current}")), "{l}");
            }
        }
    }
}
