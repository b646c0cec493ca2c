//! `[kafka]`, `[replay]` and `[[route]]`: the ingest side of the configuration.
//!
//! Every field has a default so `fanline` with no file runs against the embedded mock cluster.
//! Section names contain no `_` (env keys are `FANLINE_<SECTION>_<KEY>`); keys may.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Topic of the default route and of `POST /v1/publish` for channels no route claims.
pub const DEFAULT_TOPIC: &str = "fanline.events";

/// `[kafka]`: brokers and consumer settings.
///
/// The consumer is latency-tuned by default (each set only when `properties` does not set it):
/// - `fetch.min.bytes = 1` and `fetch.wait.max.ms = 100`: the broker answers a fetch as soon as
///   one byte is there; the wait bound only sets how often an idle partition is re-polled.
/// - `fetch.error.backoff.ms = 50`, `reconnect.backoff.ms = 100`,
///   `reconnect.backoff.max.ms = 2000`: recover quickly after a broker blip.
/// - `queued.max.messages.kbytes = 16384`: librdkafka prefetches up to this much per instance
///   (default 64 MiB); it counts in the memory budget.
/// - `socket.nagle.disable = true`, `enable.auto.commit = false`, `enable.partition.eof = false`,
///   `topic.metadata.refresh.interval.ms = metadata_refresh_ms`.
///
/// The producer behind `POST /v1/publish` uses `linger.ms = 0`, `acks = all`,
/// `enable.idempotence = true` and `message.timeout.ms = 5000`; `properties` apply to it too
/// (consumer-only keys are skipped).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `kafka` (default) or `direct` (no Kafka: publishes go straight to the fan-out with offsets
    /// assigned in process, see `ingest::direct::DirectSink`).
    pub mode: KafkaMode,
    /// Bootstrap servers, e.g. `host:9092`. Empty (default) runs librdkafka's mock cluster in
    /// process and logs its address so `kcat -b <addr>` can produce to it.
    pub brokers: String,
    /// Where each partition starts: `latest` (default), `earliest`, or `warm` (the last
    /// `warm_records` of every partition go into the replay buffer only, then live).
    pub start: KafkaStart,
    /// Records per partition read into the replay buffer at a `warm` start. Default 1000.
    pub warm_records: i64,
    /// Broker link down for longer than this → readiness 503 and a `degraded` status to every
    /// client. Default 5000.
    pub ready_grace_ms: u64,
    /// Topic of the default route and of publishes no route claims. Default `fanline.events`.
    pub default_topic: String,
    /// Partitions of each topic the embedded cluster creates. Default 3.
    pub partitions: i32,
    /// Metadata is re-read this often to pick up partitions and topics added later. Default 5000.
    pub metadata_refresh_ms: u64,
    /// Passed verbatim to librdkafka (consumer and producer), after fanline's own settings, so
    /// they win: `security.protocol`, `sasl.*`, `ssl.*`, tuning.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            mode: KafkaMode::Kafka,
            brokers: String::new(),
            start: KafkaStart::Latest,
            warm_records: 1000,
            ready_grace_ms: 5000,
            default_topic: DEFAULT_TOPIC.into(),
            partitions: 3,
            metadata_refresh_ms: 5000,
            properties: BTreeMap::new(),
        }
    }
}

/// `kafka.mode`: where events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "serde_json::Value")]
pub enum KafkaMode {
    /// Kafka (the brokers of `kafka.brokers`, or the embedded mock cluster).
    Kafka,
    /// No Kafka: `POST /v1/publish` goes straight to the fan-out.
    Direct,
}

impl TryFrom<serde_json::Value> for KafkaMode {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        match v.as_str().unwrap_or_default() {
            "kafka" => Ok(KafkaMode::Kafka),
            "direct" => Ok(KafkaMode::Direct),
            _ => Err(format!(
                "invalid setting kafka.mode: {v} is not \"kafka\" or \"direct\""
            )),
        }
    }
}

/// `kafka.start`: where each partition is first read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "serde_json::Value")]
pub enum KafkaStart {
    /// The high watermark: only records produced from now on.
    Latest,
    /// The low watermark: everything the broker still has.
    Earliest,
    /// The last `warm_records` into the replay buffer only, then live.
    Warm,
}

impl TryFrom<serde_json::Value> for KafkaStart {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        match v.as_str().unwrap_or_default() {
            "latest" => Ok(KafkaStart::Latest),
            "earliest" => Ok(KafkaStart::Earliest),
            "warm" => Ok(KafkaStart::Warm),
            _ => Err(format!(
                "invalid setting kafka.start: {v} is not \"latest\", \"earliest\" or \"warm\""
            )),
        }
    }
}

impl KafkaConfig {
    /// Checks enumerations and ranges; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.warm_records < 0 {
            return Err(("kafka.warm_records", "must not be negative".into()));
        }
        if self.partitions < 1 {
            return Err(("kafka.partitions", "must be at least 1".into()));
        }
        if self.metadata_refresh_ms < 100 {
            return Err(("kafka.metadata_refresh_ms", "must be at least 100".into()));
        }
        if self.default_topic.is_empty() {
            return Err(("kafka.default_topic", "must not be empty".into()));
        }
        Ok(())
    }
}

/// `[replay]`: replay buffer bounds, per partition; the first bound reached evicts the oldest.
///
/// Defaults are sized for ~2 minutes of traffic assuming ≤ 100 events/s per partition of
/// ≤ ~1 KiB each: 12,000 records, 16 MiB, 120 s. Memory ceiling is `max_bytes` × partitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Records kept per partition. Default 12000.
    pub max_records: usize,
    /// Bytes kept per partition (encoded frames plus per-event overhead). Default 16 MiB.
    pub max_bytes: usize,
    /// Oldest event kept, seconds since it was ingested. Default 120.
    pub max_age_s: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            max_records: 12_000,
            max_bytes: 16 * 1024 * 1024,
            max_age_s: 120,
        }
    }
}

/// One `[[route]]`: Kafka topic → channel (SPEC §3). At most one route per topic.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    pub topic: String,
    /// Channel template: literal text with `{/json/pointer}`, `{key}` and `{header:NAME}` parts.
    pub channel: String,
    /// `"/json/pointer"` into the value or `"header:NAME"`. Default: header `event-type`.
    pub event_type: Option<String>,
    /// `"/json/pointer"` into the value or `"header:NAME"`. Default: header `correlation-id`.
    pub correlation_id: Option<String>,
    /// A value that is not JSON is delivered as a JSON string instead of being skipped.
    pub raw: bool,
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, KafkaMode, KafkaStart};

    #[test]
    fn kafka_settings_from_file_and_env() {
        let dir = std::env::temp_dir().join(format!("fanline-kcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(
            &path,
            r#"
[kafka]
brokers = "k1:9092,k2:9092"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "PLAIN"
[[route]]
topic = "issues.enriched"
channel = "issues"
event_type = "/type"
"#,
        )
        .unwrap();
        let env = vec![
            ("FANLINE_KAFKA_START".to_string(), "warm".to_string()),
            (
                "FANLINE_KAFKA_READY_GRACE_MS".to_string(),
                "250".to_string(),
            ),
            ("FANLINE_REPLAY_MAX_RECORDS".to_string(), "5".to_string()),
        ];
        let c = Config::load(Some(&path), env).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(c.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(c.kafka.start, KafkaStart::Warm);
        assert_eq!(c.kafka.mode, KafkaMode::Kafka);
        assert_eq!(c.kafka.ready_grace_ms, 250);
        assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka.default_topic, "fanline.events");
        assert_eq!(c.kafka.partitions, 3);
        assert_eq!(c.replay.max_records, 5);
        assert_eq!(c.replay.max_age_s, 120);
        assert_eq!(c.routes[0].event_type.as_deref(), Some("/type"));
    }

    #[test]
    fn bad_kafka_settings_are_rejected_by_name() {
        for (k, v, name) in [
            ("FANLINE_KAFKA_START", "\"middle\"", "kafka.start"),
            ("FANLINE_KAFKA_MODE", "\"mqtt\"", "kafka.mode"),
            ("FANLINE_KAFKA_PARTITIONS", "0", "kafka.partitions"),
            ("FANLINE_KAFKA_START", "3", "kafka.start"),
        ] {
            let e = Config::load(None, vec![(k.to_string(), v.to_string())])
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
