//! Ingest: the single thread that turns records into [`Event`](crate::event::Event)s and hands
//! them to the fan-out ([`crate::fanout::Publisher`]). Owns routes and the replay buffer.
//!
//! Its settings (`[kafka]`, `[replay]`, `[[route]]`) live in [`crate::config`], below it.
//!
//! ```text
//! mod.rs            spawn_ingest: picks kafka | direct once
//! routes.rs         route templates; record -> Event (pure, no I/O)
//! replay.rs         per-partition replay buffer (resume, latest)
//! kafka/mod.rs      the ingest thread and its records: poll batch -> route -> replay -> fan-out
//! kafka/assign.rs   assign-all (no consumer group) and start offsets
//! kafka/link.rs     broker link health: librdkafka callbacks, degraded / ok
//! consumer.rs       the consumer's librdkafka settings
//! produce.rs        PublishSink over a Kafka producer (POST /v1/publish)
//! direct.rs         PublishSink without Kafka (kafka.mode = "direct")
//! ```

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

pub use crate::config::{KafkaConfig, ReplayConfig, RouteConfig};
pub use publish::{PublishAck, PublishError, PublishRequest, PublishSink};
pub use replay::ReplayBuffer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::config::KafkaMode;
use crate::fanout::Publisher;
use crate::metrics::Metrics;
use routes::Routes;

/// Starts ingest. Returns the ingest thread (it exits once `shutdown` is set) and the sink
/// behind `POST /v1/publish`. `kafka.mode` is looked at here, once:
///
/// - `direct`: no Kafka; the sink is a [`direct::DirectSink`] that publishes in process, and
///   the thread marks ingest assigned and delivers ring-full `gap`s on a timer
///   ([`direct::spawn`]).
/// - `kafka`: the Kafka ingest thread (see `kafka/mod.rs`); with `kafka.brokers` empty it runs
///   an in-process librdkafka mock cluster. A build without the `kafka` feature refuses it.
///
/// Errors: invalid `[kafka]` / `[[route]]` settings, or a consumer/producer that cannot be
/// created (bad librdkafka property). Broker reachability is not an error: ingest starts and
/// reports `degraded` after `ready_grace_ms`.
pub fn spawn_ingest(
    kafka: &KafkaConfig,
    routes: &[RouteConfig],
    publisher: Publisher,
    replay: Arc<ReplayBuffer>,
    metrics: Arc<Metrics>,
    status: Arc<IngestStatus>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<(JoinHandle<()>, Arc<dyn PublishSink>)> {
    kafka
        .validate()
        .map_err(|(k, why)| anyhow::anyhow!("invalid setting {k}: {why}"))?;
    let routes = Routes::compile(routes, &kafka.default_topic)
        .map_err(|e| anyhow::anyhow!("invalid route: {e}"))?;
    match kafka.mode {
        KafkaMode::Direct => Ok(direct::spawn(publisher, metrics, replay, status, shutdown)?),
        #[cfg(feature = "kafka")]
        KafkaMode::Kafka => kafka::spawn(
            kafka.clone(),
            routes,
            publisher,
            replay,
            metrics,
            status,
            shutdown,
        ),
        #[cfg(not(feature = "kafka"))]
        KafkaMode::Kafka => {
            drop(routes);
            anyhow::bail!("this build has no Kafka support: set kafka.mode = \"direct\"")
        }
    }
}

/// Parses a JSON document with simd-json (which works in place, hence `scratch`).
pub fn parse_json(raw: &[u8], scratch: &mut Vec<u8>) -> Result<serde_json::Value, String> {
    scratch.clear();
    scratch.extend_from_slice(raw);
    simd_json::serde::from_slice::<serde_json::Value>(scratch).map_err(|e| e.to_string())
}

/// What readiness and clients need to know about the ingest side. Written by ingest only
/// (except `route_update`, which SIGHUP fills and the ingest thread empties).
#[derive(Debug, Default)]
pub struct IngestStatus {
    /// Every served partition is assigned (readiness input).
    pub assigned: AtomicBool,
    /// The broker link is down (and for longer than `ready_grace` when `degraded` is set).
    pub degraded: AtomicBool,
    /// A new route table from a SIGHUP reload, for the ingest thread to take.
    pub route_update: RouteUpdate,
}

/// A one-slot mailbox carrying a reloaded route table to the ingest thread: the thread checks
/// one atomic per loop and takes the table when it is set (a newer table replaces one not yet
/// taken).
#[derive(Debug, Default)]
pub struct RouteUpdate {
    pending: AtomicBool,
    next: std::sync::Mutex<Option<Routes>>,
}

impl RouteUpdate {
    /// Hands `routes` to the ingest thread.
    pub fn send(&self, routes: Routes) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(routes);
        self.pending.store(true, Ordering::Release);
    }

    /// Ingest thread: the table sent since the last call, if any.
    pub fn take(&self) -> Option<Routes> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.next.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl IngestStatus {
    /// Ready for traffic as far as ingest is concerned.
    pub fn ready(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && !self.degraded.load(Ordering::Acquire)
    }
}
