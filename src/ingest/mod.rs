//! Ingest: the single thread that turns records into [`Event`](crate::event::Event)s and hands
//! them to the fan-out ([`crate::fanout::Publisher`]). Owns routes and the replay buffer.

use serde::{Deserialize, Serialize};

/// `[kafka]`: brokers and consumer settings. Empty `brokers` = embedded mock cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, e.g. `host:9092`; empty runs librdkafka's mock cluster in process.
    pub brokers: String,
    /// `kafka` (default) or `direct` (no Kafka: publishes go straight to the fan-out).
    pub mode: String,
}

/// `[replay]`: replay buffer bounds per partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {}

/// One `[[route]]`: Kafka topic → channel template.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    pub topic: String,
    pub channel: String,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub raw: bool,
}

pub mod direct;
pub mod publish;

pub use publish::{PublishAck, PublishError, PublishRequest, PublishSink};

use std::sync::atomic::{AtomicBool, Ordering};

/// Parses a JSON document with simd-json (which works in place, hence `scratch`).
pub fn parse_json(raw: &[u8], scratch: &mut Vec<u8>) -> Result<serde_json::Value, String> {
    scratch.clear();
    scratch.extend_from_slice(raw);
    simd_json::serde::from_slice::<serde_json::Value>(scratch).map_err(|e| e.to_string())
}

/// What readiness and clients need to know about the ingest side. Written by ingest only.
#[derive(Debug, Default)]
pub struct IngestStatus {
    /// Every served partition is assigned (readiness input).
    pub assigned: AtomicBool,
    /// The broker link is down (and for longer than `ready_grace` when `degraded` is set).
    pub degraded: AtomicBool,
}

impl IngestStatus {
    /// Ready for traffic as far as ingest is concerned.
    pub fn ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && !self.degraded.load(Ordering::Acquire)
    }
}
