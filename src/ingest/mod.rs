//! Ingest: the single thread that turns records into [`Event`](crate::event::Event)s and hands
//! them to the fan-out ([`crate::fanout::Publisher`]). Owns routes and the replay buffer.
//!
//! ```text
//! config.rs   [kafka], [replay], [[route]]
//! routes.rs   route templates; record -> Event (pure, no I/O)
//! replay.rs   per-partition replay buffer (resume, latest)
//! kafka.rs    the ingest thread: BaseConsumer, assign-all (no consumer group), broker health
//! produce.rs  PublishSink over a Kafka producer (POST /v1/publish)
//! direct.rs   PublishSink without Kafka (kafka.mode = "direct")
//! ```

pub mod config;
#[cfg(feature = "kafka")]
mod consumer;
pub mod direct;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
mod produce;
pub mod publish;
pub mod replay;
pub mod routes;

pub use config::{KafkaConfig, ReplayConfig, RouteConfig};
#[cfg(feature = "kafka")]
pub use kafka::spawn_ingest;
#[cfg(not(feature = "kafka"))]
pub use nokafka::spawn_ingest;
pub use publish::{PublishAck, PublishError, PublishRequest, PublishSink};
pub use replay::{Replay, ReplayBuffer};

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

/// Builds without the `kafka` feature (fuzzing, embedded use): only `kafka.mode = "direct"`.
#[cfg(not(feature = "kafka"))]
mod nokafka {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;

    use super::{IngestStatus, PublishSink, ReplayBuffer, direct::DirectSink};
    use crate::config::Config;
    use crate::fanout::Publisher;
    use crate::metrics::Metrics;

    /// Same contract as the Kafka build's `spawn_ingest`, for `kafka.mode = "direct"` only.
    pub fn spawn_ingest(
        cfg: &Config,
        publisher: Publisher,
        replay: Arc<ReplayBuffer>,
        metrics: Arc<Metrics>,
        status: Arc<IngestStatus>,
        _shutdown: Arc<AtomicBool>,
    ) -> anyhow::Result<(JoinHandle<()>, Arc<dyn PublishSink>)> {
        anyhow::ensure!(
            cfg.kafka.mode == "direct",
            "this build has no Kafka support: set kafka.mode = \"direct\""
        );
        status.assigned.store(true, Ordering::Release);
        let sink: Arc<dyn PublishSink> =
            Arc::new(DirectSink::new(publisher, metrics).with_replay(replay));
        Ok((std::thread::spawn(|| {}), sink))
    }
}
